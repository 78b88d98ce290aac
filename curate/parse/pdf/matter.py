"""Front and back matter: title, identifiers, journal furniture, the author block, the references."""

from __future__ import annotations

import html
import re
from collections.abc import Collection

from curate.parse.pdf.layout import margin_key, prose
from curate.parse.pdf.model import (
    PROSE_MIN_CHARS,
    SOFT_BACK_MATTER,
    SPACES,
    TERMINAL,
    WORDS,
    Page,
    Para,
    back_matter,
)
from curate.parse.pdf.repair import clean

_CUT_FROM = 0.3  # a References heading cuts the text only when it comes after this share of the text
_SOFT_TAIL = 0.15  # the most of the text that may lie between a soft back-matter heading and the references
_SENTENCE_MIN_CHARS = 100  # before the abstract, shorter text is a label, a name or an address
_ABSTRACT_WORDS = {"abstract", "summary", "background", "abstracts"}
# Figure and table captions ("Figure 2:", "Fig. 3.", "Table 1 |"): the JATS references leave them out.
_CAPTION = re.compile(
    r"^(?:figure|fig\.?|table|scheme|chart|plate)[\s\-–]*[a-z]?\d+[a-z]?\s*(?:[.:|(\-–—]|$)", re.I
)
# Captions whose label runs straight into their title ("Fig. 1 Effect of ...", "TABLE 2 Marker parameters"):
# prose that starts with a label goes on in lowercase ("Table 1 summarises ...") or names a panel ("Figure 1
# A and B show ..."). Case matters here.
_CAPTION_TITLED = re.compile(
    r"^(?:Figure|FIGURE|Fig\.?|FIG\.?|Table|TABLE|Scheme|SCHEME|Chart|CHART|Plate|PLATE)\s*[A-Z]?\d+[a-z]?\s+[A-Z][A-Za-z]"
)
_CAPTION_LABEL = re.compile(r"^(?:figure|fig\.?|table|scheme|chart|plate)\s*[a-z]?\d+[a-z]?\s*[.:|]?$", re.I)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
# A date as mastheads print it: "5 March 2018", "March 5, 2018", "05/03/2018", "2018-03-05".
_DATE = (
    rf"(?:\d{{1,2}}\s+{_MONTH}\s+\d{{4}}|{_MONTH}\s+\d{{1,2}},?\s+\d{{4}}"
    r"|\d{1,2}(?P<sep>[/.-])\d{1,2}(?P=sep)\d{2,4}\b|\d{4}-\d\d-\d\d\b)"
)
# Front-page and margin furniture: licence notes, dates, correspondence, editors, citation hints.
_FURNITURE = re.compile(
    r"copyright|©|creative\s*commons|open[\s-]*access\s+article|this\s+(?:article|work)\s+is\s+(?:licensed|distributed)"
    r"|\breceived\b.{0,40}\d.{0,80}\baccepted\b|correspondence\s*(?:should|to|:)|corresponding\s*author|e-?mail\s*:"
    r"|academic\s*editor|cite\s*this\s*article|please\s*cite|^keywords?\b|^article\s*(?:history|info)|\barticle\s*id\b"
    r"|^(?:edited|reviewed)\s*by\b|\b[\w.+-]+@[\w-]+\.[\w.]+"
    r"|^(?:funding|competing\s+interests|conflicts?\s+of\s+interests?|source\s+of\s+support|financial\s+support"
    r"|data\s+availability(?:\s+statement)?)\s*:\s*\S"
    r"|^communicated\s+by\b|^subject\s+categor(?:y|ies)\b|^\W{0,3}\d{0,2}\s*(?:present|current|permanent)\s+address"
    r"|^electronic\s+supplementary\s+material\b|^\d{4}-\d{3}[\dX]/(?:\d{2}|\$)"  # ISSN/year: "1874-2106/16"
    r"|^(?:https?://|www\.)\s?\S+$|^vol(?:ume)?\.?\s*\d+\s*(?:\(\s*\d+\s*\))?$|^volume\s+\d{4},\s+article\s+id\b"
    # Other publishers' mastheads, dates and stamps: Elsevier, Springer, PLOS, OUP/JAMA/NEJM download stamps.
    r"|^contents\s+lists?\s+available\s+at\b|^journal\s+homepage\s*:|^peer\s+review\s+under\s+responsibility\s+of\b"
    r"|^check\s+for\s+updates$|^(?:citation|(?:handling\s+)?editor)\s*:\s*\S|^(?:key\s+words?|index\s+terms)\s*[:—–-]"
    r"|^downloaded\s+from\s*:?\s*(?:https?://)?[\w.-]+\.(?:org|com|net|edu|gov)\b"
    r"|contributed\s+equally\s+to\s+this\s+(?:work|study|article|paper)\W*$|^(?:table\s+of\s+)?contents$",
    re.I,
)
# A masthead's dates: "Received: 28 January 2015", "Published online: 12 March 2019", "Accepted 2018-03-05"
# (without a colon only before a whole date: "Received 5 days of physiotherapy, ..." is a sentence).
_DATED = re.compile(
    rf"^(?:received|revised|accepted|published(?:\s+online)?)\s*(?::\s*(?:\d|{_MONTH})|\s+{_DATE})", re.I
)
# Separators (commas; also semicolons and stops) per word in a list of affiliations: commas alone run
# 0.25-0.29 in PMC's lists, ~0.05-0.1 in prose.
_AFFILIATION_SEPARATOR_RATE = 0.18
# An affiliation list names institutions and places but never says anything: no verbs, no pronouns.
_INSTITUTION = re.compile(  # no letter before it, but a marker may be: "1Department", "²Institute"
    r"(?<![^\W\d_])(?:department|dept|division|school|faculty|institute|centre|center|laborator(?:y|ies)|unit|college"
    r"|universit(?:y|ies|ät|é|à|ad|ade)|hospital|clinic|academy|ministry|foundation)\b",
    re.I,
)
_AFFILIATION_SEPARATOR = re.compile(r"[,;]|\.\s")
_SAYS = re.compile(
    r"\b(?:is|are|was|were|be|been|we|our|this|these|that|which|has|have|had|may|can|could|should|showed?|found)\b",
    re.I,
)
# Words of a title or a sentence that an author list never holds ("A" is not one: it is an initial).
_NOT_NAMES = re.compile(
    r"\b(?:the|of|in|for|with|on|to|an|from|by|at|its|their|versus|vs|via|under|after|during|among|between"
    r"|against|into|using|effects?)\b",
    re.I,
)
# Lowercase words inside personal names ("Lucas de Araujo", "Ludwig van Beethoven", "Maria e Silva").
_NAME_PARTICLE = re.compile(
    r"and|de|da|das|do|dos|del|della|der|den|di|du|e|el|la|le|van|von|y|bin|al|ben|ter|ten|zu"
)
_NAME_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
_NAME_SEPARATOR = re.compile(r"[,;&]|\band\b")
_APPENDIX = re.compile(
    r"^(?:[\divx]+\.?\s*)?(?:appendi(?:x|ces)|annex(?:es)?)\b(?:\s+[A-Z0-9]{1,3}\b)?", re.I
)
PMCID = re.compile(r"\b(PMC\d{4,9})\b")
PMID = re.compile(r"\bPMID:?\s*(\d{1,9})\b")
_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+)")
# Metadata titles that are file names or producer defaults rather than the article's title.
_FAKE_TITLE = re.compile(
    r"(\.(pdf|docx?|rtf|txt|fm|indd|qxd|qxp|tex|dvi|ps|eps|pm\d|p65|xml|html?)\b)"
    r"|^(untitled|microsoft word|adobe photoshop|powerpoint)|^(title|document\d*|slide \d+)$",
    re.I,
)
_YEAR = re.compile(r"\b(19|20)\d\d\b")
_JOURNAL = re.compile(r"\bjournal\b", re.I)
# Labels set in the title's font on some first pages ("Review Article" above the title).
_ARTICLE_LABEL = re.compile(
    r"^(original|review|research|clinical|case|short|brief|special)?\s*(article|paper|report|communication)s?$"
    r"|^(open access|corrigendum|erratum|editorial|review|research|letter|commentary)$",
    re.I,
)
REFERENCE_WORDS = {
    "reference",
    "references",
    "bibliography",
    "literaturecited",
    "workscited",
    "referencelist",
    "citedliterature",
}


def drop_captions(paras: list[Para]) -> list[Para]:
    """The paragraphs without figure and table captions: those that start with their label ("Figure 2:",
    "Fig. 1 Effect of"), and the text set right under a label that stands on its own line."""
    kept: list[Para] = []
    label: Para | None = None
    for para in paras:
        if label is not None and _right_under(label, para):
            label = None
            continue
        label = None
        if _CAPTION.match(para.text) or _CAPTION_TITLED.match(para.text):
            label = para if _CAPTION_LABEL.match(para.text) else None
            continue
        kept.append(para)
    return kept


def _right_under(label: Para, para: Para) -> bool:
    """Whether a paragraph starts within half a line below a label, across from it: the label's caption."""
    above, below = label.lines[-1], para.first
    height = above.y1 - above.y0
    return (
        para.page == label.page
        and -0.2 * height <= below.y0 - above.y1 <= 0.5 * height
        and below.x0 < above.x1
        and above.x0 < max(line.x1 for line in para.lines)
    )


def furniture(para: Para) -> bool:
    """Journal furniture (licence, dates, correspondence, affiliations): not body text."""
    text = para.text
    if len(text) < 700 and (_FURNITURE.search(text) or _DATED.match(text)):
        return True
    # A heading is a list too when it names several institutions (OCR reads some lists as large type).
    return affiliations(text) and (not para.heading or len(_INSTITUTION.findall(text)) >= 3)


def affiliations(text: str) -> bool:
    """A list of affiliations ("1 Department of ..., University of ..., City, Country 2 ..."), not prose:
    institutions, no verbs, and a separator every few words (prose naming an institution has one in ten)."""
    if len(text) > 3000 or len(_INSTITUTION.findall(text)) < 2 or _SAYS.search(text):
        return False
    # "Senior lecturer. Department of ...; Professor. Department of ..." lists by stops and semicolons too.
    return len(_AFFILIATION_SEPARATOR.findall(text)) >= _AFFILIATION_SEPARATOR_RATE * len(text.split())


def byline(text: str) -> bool:
    """A list of authors ("Reshma Kochikar Pai, Sham S Bhat, Afreen Salman"): two or more names of two to
    five capitalised words (markers and degrees aside), and nothing a title or a sentence would hold."""
    if len(text) > 400 or _SAYS.search(text) or _NOT_NAMES.search(text):
        return False
    names = [words for part in _NAME_SEPARATOR.split(text) if (words := _NAME_WORD.findall(part))]
    if len(names) < 2:
        return False
    words = [w for name in names for w in name]
    # Two letters or fewer: a particle, or a name OCR split at a letter it could not read ("Concei¢ao").
    if any(not w[0].isupper() and len(w) > 2 and not _NAME_PARTICLE.fullmatch(w.lower()) for w in words):
        return False
    return all(2 <= sum(w[0].isupper() for w in name) <= 5 for name in names)


def cut_front_matter(paras: list[Para], title: str | None, typed: bool = True) -> list[Para]:
    """On page 1, drop what comes before the abstract (authors, affiliations, dates), except the title.

    Untyped pages (OCR: sizes are estimates, nothing is bold) cannot tell a name from a label or a
    heading by its type: there only author lists go, and every paragraph may start the text.
    """
    start = None
    for i, para in enumerate(paras):
        if para.page > 0:
            break
        key = SPACES.sub("", para.text).lower().rstrip(":.")
        first_word = para.text.split(None, 1)[0].lower().rstrip(":.")
        if (
            key in _ABSTRACT_WORDS
            or (first_word in _ABSTRACT_WORDS and len(para.text) >= 2 * PROSE_MIN_CHARS)
            or (not (typed and para.heading) and prose(para.text) and len(para.text) >= 2 * PROSE_MIN_CHARS)
        ):
            start = i
            break
    if not start:
        return paras
    title_words = set(WORDS.findall((title or "").lower()))

    def keep(para: Para) -> bool:
        words = set(WORDS.findall(para.text.lower()))
        if title_words and words <= title_words:
            return True  # the title, perhaps over several lines
        if byline(para.text):
            return False  # also when its last degree ends it like a sentence ("..., A. Name Ph.D.")
        # Sentences stay (a guideline's opening lines); names, affiliations and labels do not end like one.
        return not typed or (len(para.text) >= _SENTENCE_MIN_CHARS and para.text[-1] in TERMINAL)

    return [p for p in paras[:start] if keep(p)] + paras[start:]


def cut_back_matter(paras: list[Para], ocr_pages: Collection[int] = ()) -> tuple[list[Para], str | None]:
    """Drop everything from the back matter's first heading on, when it comes near the end.

    Acknowledgements, funding and the like: the first such heading. "References": the last one, because
    the word also heads table columns ("References" of the studies a review table lists). On `ocr_pages`
    a heading OCR misread by a letter or two counts.
    """
    total = sum(len(p.text) for p in paras)
    offset = 0
    found: list[tuple[int, int, str, str]] = []  # index, offset, heading, matched word
    for i, para in enumerate(paras):
        if offset >= _CUT_FROM * total:
            for lead, candidate in ((False, para.first.text), (True, para.first.lead)):
                word = back_matter(candidate, misread=para.page in ocr_pages)
                # A bold "Abbreviations:" also leads a table's note: soft headings have a line of their own.
                if word and not (lead and SOFT_BACK_MATTER.fullmatch(word)):
                    found.append((i, offset, SPACES.sub(" ", candidate).strip(), word))
                    break
        offset += len(para.text)
    refs = [(i, at, heading) for i, at, heading, word in found if word in REFERENCE_WORDS][-1:]
    end = refs[0][1] if refs else total
    others = [
        (i, heading)
        for i, at, heading, word in found
        if word not in REFERENCE_WORDS
        and (not SOFT_BACK_MATTER.fullmatch(word) or end - at <= _SOFT_TAIL * total)
    ]
    cuts = others[:1] + [(i, heading) for i, _, heading in refs]
    if not cuts:
        return paras, None
    i, heading = min(cuts)
    # An appendix set after the references is the article's own text again.
    after = next((j for j in range(max(c for c, _ in cuts) + 1, len(paras)) if _appendix(paras[j])), None)
    return paras[:i] + (paras[after:] if after is not None else []), heading


def _appendix(para: Para) -> bool:
    """An appendix heading ("Appendix", "Appendix A: ...", "Appendices")."""
    return para.heading and _APPENDIX.match(para.text) is not None


def doi(metadata: dict[str, str], first: Page) -> str | None:
    """The DOI from the metadata, else the first one printed on page 1."""
    candidates = [metadata.get(k, "") for k in ("doi", "subject", "keywords", "title")]
    candidates.append(" ".join(line.text for block in first.blocks for line in block.lines))
    for text in candidates:
        match = _DOI.search(text or "")
        if match:
            doi = match.group(1).rstrip(".,;:]}'\"”’")
            # "(doi:10.1000/xyz)" ends with the sentence's bracket; "10.1002/(SICI)..." keeps its own.
            while doi.endswith(")") and doi.count(")") > doi.count("("):
                doi = doi[:-1].rstrip(".,;:")
            return doi
    return None


def title(metadata: dict[str, str], pages: list[Page]) -> str | None:
    """The metadata title when page 1 confirms it, else the largest-font text on page 1."""
    first = pages[0]
    meta_title = SPACES.sub(" ", clean(html.unescape(metadata.get("title", "")))).strip()
    page_words = set(
        WORDS.findall(" ".join(line.text for block in first.blocks for line in block.lines).lower())
    )
    if meta_title and not _FAKE_TITLE.search(meta_title):
        tokens = WORDS.findall(meta_title.lower())
        # File names, job numbers and journal names fail this: the real title is printed on page 1.
        if len(tokens) >= 2 and sum(t in page_words for t in tokens) >= 0.8 * len(tokens):
            return meta_title
    # Journal names are often set larger than the title; they also appear in a margin with the year.
    cited = [
        key
        for page in pages
        for block in page.blocks
        for line in block.lines
        if (key := margin_key(line, page)) and _YEAR.search(line.text)
    ]
    best: tuple[float, int, int] | None = None
    for b, block in enumerate(first.blocks):
        for i, line in enumerate(block.lines):
            text = SPACES.sub(" ", line.text).strip()
            lower = text.lower()
            if (
                sum(ch.isalpha() for ch in text) < 4
                or _ARTICLE_LABEL.match(text)
                or _JOURNAL.search(text)
                or (not _YEAR.search(text) and any(lower in key for key in cited))
            ):
                continue
            if best is None or line.size > best[0] + 0.1:
                best = (line.size, b, i)
    if best is None:
        return None
    size, b, i = best
    lines = [first.blocks[b].lines[i]]
    for line in first.blocks[b].lines[i + 1 :]:
        if abs(line.size - size) > 0.5:
            break
        lines.append(line)
    else:
        # A title wrapped over two lines is sometimes two blocks: follow blocks set in the same size below.
        for block in first.blocks[b + 1 :]:
            line = block.lines[0]
            if abs(line.size - size) > 0.5 or not 0 <= line.y0 - lines[-1].y1 < size:
                break
            lines.extend(ln for ln in block.lines if abs(ln.size - size) <= 0.5)
    title = SPACES.sub(" ", " ".join(line.text.strip() for line in lines)).strip()
    return title[:300] or None
