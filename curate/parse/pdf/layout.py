"""Page layout: upright pages, running headers and footers, tables, reading order across columns, paragraphs.

Everything here works on positioned lines (`model.Page`), whether they came from the text layer or from OCR.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections import Counter

from curate.parse.pdf.model import (
    DIGITS,
    PROSE_MIN_CHARS,
    SOFT_BACK_MATTER,
    SPACES,
    TERMINAL,
    WORDS,
    Block,
    Line,
    Page,
    Para,
    back_matter,
)

_COLUMN_MIN = 0.05  # a page is two-column when each side holds this share of its text (last pages: less)
_THREE_COLUMN_MIN = 0.15  # a page is three-column when each third holds this share of its text
_GUTTER = 8.0  # points: the narrowest empty strip between columns of unequal width
_ACROSS = 0.7  # a block wider than this share of the text's width goes across the columns
_MARGIN = 0.12  # share of the page height at the top and bottom where running headers/footers live
_TABLE_MAX_LETTERS = 0.4  # paragraphs with fewer letters than this share are table cells (numbers)
_TABLE_ROW_SHARE = 0.5  # a block with at least this share of its text in table rows is a table
_TABLE_PAGE_SHARE = 0.4  # a page with this share of its text in table rows is a table page
_PROSE_LINE_CHARS = 40  # running text has lines at least this long on average
_RUNNING_LINE_CHARS = 20  # ... and at least this long in a narrow column (three to a page)
_LINE_GAP_MAX = 1.6  # of a line's height: the widest gap between the lines of a (double-spaced) paragraph
_LINE_BLOCKS_MIN, _LINE_BLOCKS_SHARE = 10, 0.8  # a page of one-line blocks: its producer drew line by line
_EDGE_BUCKET = 6.0  # points: lines starting this close together share a column's right edge
_ROW_SPREAD = 0.3  # of a line's size: how far apart the bottoms of one table row's cells may be
_SENTENCE_CHARS = 40  # a shorter line ending in a stop is a label or a note, not a sentence
SMALL_PRINT = 0.9  # points below the body size: table cells, footnotes, affiliations
# A manuscript's line numbers: integers in a margin of their own, left or right of all the text (every
# line's, or every fifth's). Table cells and a list's numbers stand inside the text's width.
_LINE_NUMBER = re.compile(r"\d{1,5}")
_LINE_NUMBERS_MIN = 5
_NUMBER_LINE = re.compile(
    r"^[\s\-–—(\[]*(?:page\s*)?[\divxlc]{1,4}(?:\s*(?:of|/)\s*\d+)?[\s\-–—)\].]*$", re.I
)
# A list item ("1. Offer ...") or a numbered heading ("2.3. Inhibition of ...", "1.1.2 Offer ..."): not the
# rest of a sentence, as "38% had ...", "45.0 Gy in 25 fractions" or "0.493. Genetic ..." are.
_NUMBERED = re.compile(r"^\d+[.)]\s|^[1-9]\d?(?:\.\d{1,2})+\.\s+[A-Z]|^[1-9]\d?(?:\.\d{1,2}){2,}\s+[A-Z]")
_HYPHENS = "-\u2010\u2011\u00ad"
# A list item's mark: each item is a paragraph of its own, as a reader sees it (its wrapped lines are not).
_BULLET = re.compile(r"\s*[•●○◦▪■□◆♦►▸➢✓✔](?:\s|$)")
# A line that ends a list's lead or an item: a bullet after it starts an item.
_ITEM_END = re.compile(r"[.;:!?]\s*$")
_RUN_IN_LABEL = re.compile(r"[A-Z][A-Za-z ]{2,30}:\s")  # "Conclusion: ", "Main outcome measures: "
_CITED_END = re.compile(r"[^\W\d_][.!?][\"”’)]*\d+(?:[,\-–]\d+)*$")  # "... reported before.12,13"
# A sentence ending inside a text ("... in ancient literature. Tulsi is ..."), not a numbered heading's
# "2.3. Methods" or an "e.g." (three letters before the stop).
_SENTENCE_END = re.compile(r"[^\W\d_]{3}[.!?]\s+[^\W\d_]")
_COMPOUNDS = re.compile(r"[^\W\d_]+-[^\W\d_]+")


def upright(page: Page) -> Page:
    """A page whose text mostly runs up or down (a landscape table, a page set sideways), turned upright.

    Lines in the page's main direction get coordinates in that direction's frame and count as horizontal,
    so margins, tables and reading order work as on any page.
    """
    chars: Counter[tuple[int, int]] = Counter()
    for block in page.blocks:
        for line in block.lines:
            chars[line.direction] += len(line.text)
    if not chars:
        return page
    main, count = chars.most_common(1)[0]
    if main not in ((0, -1), (0, 1)) or count < 0.5 * sum(chars.values()):
        return page
    width, height = page.width, page.height
    blocks = []
    for block in page.blocks:
        for line in block.lines:
            line.horizontal = line.direction == main
            x0, y0, x1, y1 = line.x0, line.y0, line.x1, line.y1
            if main == (0, -1):  # bottom to top: the next line is to the right
                line.x0, line.x1, line.y0, line.y1 = height - y1, height - y0, x0, x1
            else:  # top to bottom: the next line is to the left
                line.x0, line.x1, line.y0, line.y1 = y0, y1, width - x1, width - x0
        blocks.append(Block.around(block.lines))
    return Page(height, width, blocks, page.images)


def body_size(pages: list[Page]) -> float:
    """The font size that carries most characters: body text."""
    sizes: Counter[float] = Counter()
    for page in pages:
        for block in page.blocks:
            for line in block.lines:
                sizes[round(line.size, 1)] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 10.0


def margin_key(line: Line, page: Page) -> str | None:
    """A comparable key for a line in the top or bottom margin (digits masked: page numbers vary)."""
    centre = (line.y0 + line.y1) / 2
    if page.height * _MARGIN < centre < page.height * (1 - _MARGIN):
        return None
    return DIGITS.sub("#", SPACES.sub(" ", line.text).strip().lower())


def running_lines(pages: list[Page]) -> set[str]:
    """Margin lines that repeat on several pages: running headers, footers, licence lines."""
    seen: Counter[str] = Counter()
    for page in pages:
        keys = set()
        for block in page.blocks:
            for line in block.lines:
                key = margin_key(line, page)
                if key:
                    keys.add(key)
        seen.update(keys)
    # Odd and even pages often carry different headers, so each appears on only half the pages.
    need = max(2, math.ceil(0.2 * len(pages)))
    return {key for key, count in seen.items() if count >= need}


def strip_margins(page: Page, running: set[str]) -> list[Block]:
    """The page's blocks without running headers/footers, page numbers, and stray vertical text."""
    horizontal = sum(len(ln.text) for b in page.blocks for ln in b.lines if ln.horizontal)
    total = sum(b.chars for b in page.blocks)
    keep_vertical = horizontal < 0.5 * total  # a page set sideways keeps its text
    numbers = _line_numbers(page)
    out = []
    for block in page.blocks:
        lines = []
        for line in block.lines:
            if not line.horizontal and not keep_vertical:
                continue  # "Downloaded from ..." and licence notes printed up the margin
            if id(line) in numbers:
                continue
            key = margin_key(line, page)
            if key is not None and (key in running or _NUMBER_LINE.match(line.text)):
                continue
            lines.append(line)
        if len(lines) == len(block.lines):
            out.append(block)
        elif lines:
            out.append(Block.around(lines))
    return out


def _line_numbers(page: Page) -> set[int]:
    """The ids of a line-numbered manuscript's numbers: integers in a margin, left or right of the text,
    counting down the page by a steady step."""
    lines = [line for block in page.blocks for line in block.lines if line.horizontal]
    numbers = [line for line in lines if _LINE_NUMBER.fullmatch(line.text.strip())]
    text = [line for line in lines if not _LINE_NUMBER.fullmatch(line.text.strip())]
    if len(numbers) < _LINE_NUMBERS_MIN or not text:
        return set()
    left, right = min(line.x0 for line in text), max(line.x1 for line in text)
    found: set[int] = set()
    for column in ([n for n in numbers if n.x1 < left], [n for n in numbers if n.x0 > right]):
        # They count down the page by a steady step (every line, or every fifth): values in a form do not.
        values = [int(n.text) for n in sorted(column, key=lambda n: n.y0)]
        steps = Counter(b - a for a, b in zip(values, values[1:], strict=False))
        if len(values) >= _LINE_NUMBERS_MIN and steps and max(steps.values()) >= 0.8 * (len(values) - 1):
            step = steps.most_common(1)[0][0]
            if step in (1, 2, 5, 10):
                found.update(id(n) for n in column)
    return found


def reading_order(page: Page, blocks: list[Block]) -> tuple[list[Block], int]:
    """Blocks in reading order, and 1 if the page was read in columns (else 0).

    On a page of two (or three) columns, blocks within a column are read column by column, band by band:
    blocks that straddle a column's edge (title, abstract, wide figures) split the page into bands.
    """
    if len(blocks) < 2:
        return blocks, 0
    wide = [b for b in blocks if b.chars >= 40] or blocks
    lo, hi = min(b.x0 for b in wide), max(b.x1 for b in wide)
    total = sum(b.chars for b in blocks)
    # Three equal columns, two, or columns of unequal width (a sidebar beside the text) split at the empty
    # strips that run down the page between blocks.
    candidates = [
        ([lo + (hi - lo) * i / count for i in range(1, count)], least, False)
        for count, least in ((3, _THREE_COLUMN_MIN), (2, _COLUMN_MIN))
    ]
    candidates.append((_gutters(blocks, lo, hi), _THREE_COLUMN_MIN, True))
    for edges, least, unequal in candidates:
        if not edges:
            continue
        columns, full = _columns(blocks, edges, 0.02 * (hi - lo))
        filled = min(sum(b.chars for b in column) for column in columns) >= least * total
        if filled and not (unequal and _paired(columns)):
            break
    else:
        return sorted(blocks, key=lambda b: (round(b.y0), b.x0)), 0
    # A back-matter heading ("REFERENCES") in a column across from a gap in the columns right of it starts a
    # band of its own (Frontiers sets the references below both columns): the columns above it come first.
    # In the last column no such care is needed: the columns before it are read first anyway.
    for i, column in enumerate(columns[:-1]):
        rest = [b for other in columns[i + 1 :] for b in other]
        for b in list(column):
            if _is_back_matter_heading(b) and _gap_across(rest, b.y0, 1.5 * (b.y1 - b.y0)):
                column.remove(b)
                full.append(b)
    full.sort(key=lambda b: b.y0)

    def band(block: Block) -> int:
        centre = (block.y0 + block.y1) / 2
        return sum(1 for f in full if f.y0 <= centre)

    ordered: list[Block] = []
    for i in range(len(full) + 1):
        for column in columns:
            ordered.extend(sorted((b for b in column if band(b) == i), key=lambda b: b.y0))
        if i < len(full):
            ordered.append(full[i])
    return ordered, 1


def _columns(blocks: list[Block], edges: list[float], tol: float) -> tuple[list[list[Block]], list[Block]]:
    """The blocks within each column between these edges, and those that straddle an edge."""
    count = len(edges) + 1
    columns: list[list[Block]] = [[] for _ in range(count)]
    full = []
    for b in blocks:
        for i in range(count):
            after_left = i == 0 or b.x0 >= edges[i - 1] - tol
            before_right = i == count - 1 or b.x1 <= edges[i] + tol
            if after_left and before_right:
                columns[i].append(b)
                break
        else:
            full.append(b)
    return columns, full


def _paired(columns: list[list[Block]]) -> bool:
    """Whether most blocks of the sparest column start on a row with a block of another column: side
    headings beside their text (questions and answers, a glossary), read row by row, not columns."""
    sparest = min(columns, key=len)
    others = [b for column in columns if column is not sparest for b in column]
    level = sum(any(abs(o.y0 - b.y0) <= b.lines[0].y1 - b.lines[0].y0 for o in others) for b in sparest)
    return 2 * level > len(sparest)


def _gutters(blocks: list[Block], lo: float, hi: float) -> list[float]:
    """The middles of the empty strips that run down the page between blocks (those across most of the
    text's width aside): the edges of columns of any width."""
    spans = sorted((b.x0, b.x1) for b in blocks if b.chars >= 40 and b.x1 - b.x0 < _ACROSS * (hi - lo))
    edges: list[float] = []
    reach: float | None = None
    for x0, x1 in spans:
        if reach is not None and x0 - reach >= _GUTTER:
            edges.append((reach + x0) / 2)
        reach = x1 if reach is None else max(reach, x1)
    return edges


def _gap_across(column: list[Block], y: float, min_gap: float) -> bool:
    """Whether a column has blocks above y and an empty stretch of at least min_gap around y."""
    above = [b.y1 for b in column if b.y1 <= y + min_gap / 2]
    if not above or any(b.y0 < y < b.y1 for b in column):
        return False
    below = [b.y0 for b in column if b.y0 >= y - min_gap / 2]
    return (min(below) if below else math.inf) - max(above) >= min_gap


def _is_back_matter_heading(block: Block) -> bool:
    """A one-line block that is a back-matter heading (References, Acknowledgements, ...)."""
    if len(block.lines) != 1:
        return False
    word = back_matter(block.lines[0].text)
    # "Abbreviations" or "Disclosure" may head a section in mid-column: only sure back matter splits a page.
    return word is not None and not SOFT_BACK_MATTER.fullmatch(word)


def _is_heading(line: Line, body_size: float) -> bool:
    """Short bold or larger-than-body lines: section headings, titles, run-in labels on their own line."""
    if len(line.text) > 150 or not any(ch.isalpha() for ch in line.text):
        return False
    return line.bold or line.size >= body_size + 1.5


def _same_row(prev: Line, line: Line) -> bool:
    """Whether a line continues the previous one on the same row (a font change, a superscript)."""
    return line.y0 < prev.y1 - 0.3 * (prev.y1 - prev.y0) and line.x0 >= prev.x1 - 0.5 * line.size


def rejoin_lines(blocks: list[Block]) -> list[Block]:
    """Blocks in reading order, where a producer drew every line as a text object of its own (MuPDF then
    gives one block per line) regrouped into the runs of lines a paragraph makes; other pages as they are.

    A line goes on the one before it when that one runs to its column's right edge (prose wraps there;
    a table's cells, a list's items and a paragraph's last line stop short), starts where it starts (a
    first-line indent begins a paragraph), is as large, and lies within 1.6 line heights below it.
    """
    single = [b.lines[0] for b in blocks if len(b.lines) == 1]
    if len(single) < _LINE_BLOCKS_MIN or len(single) < _LINE_BLOCKS_SHARE * len(blocks):
        return blocks
    # A column's right edge: the furthest any line reaches among those starting within a few points.
    edges: dict[int, float] = {}
    for line in single:
        key = round(line.x0 / _EDGE_BUCKET)
        edges[key] = max(edges.get(key, line.x1), line.x1)
    out: list[Block] = []
    runs: list[list[Line]] = []
    for block in blocks:
        line = block.lines[0]
        if runs and len(block.lines) == 1 and _wraps_to(runs[-1], line, edges):
            runs[-1].append(line)
        else:
            out.append(block)
            runs.append(list(block.lines))
    return [Block.around(run) if len(run) > len(b.lines) else b for b, run in zip(out, runs, strict=True)]


def _wraps_to(run: list[Line], line: Line, edges: dict[int, float]) -> bool:
    """Whether `line` is the next line of the paragraph that `run` ends."""
    first, prev = run[0], run[-1]
    key = round(first.x0 / _EDGE_BUCKET)
    edge = max(edges.get(k, prev.x1) for k in (key - 1, key, key + 1))
    return (
        prev.horizontal
        and line.horizontal
        and abs(line.size - prev.size) < 1.0
        and 0 <= line.y0 - prev.y1 <= _LINE_GAP_MAX * (prev.y1 - prev.y0)  # double spacing too
        and abs(line.x0 - min(ln.x0 for ln in (first, prev))) < 0.8 * line.size
        and prev.x1 >= edge - 2 * prev.size
    )


def paragraphs(block: Block, body_size: float, spaced: bool = False) -> list[Para]:
    """Split a block into paragraphs at headings and at vertical gaps larger than a line's height (or, when
    the block may be `spaced`, than its usual gap: a double-spaced manuscript)."""
    paras: list[Para] = []
    prev: Line | None = None
    gaps = [b.y0 - a.y1 for a, b in itertools.pairwise(block.lines) if b.y0 > a.y1] if spaced else []
    usual = 1.2 * statistics.median(gaps) if len(gaps) >= 2 else 0.0
    for line in block.lines:
        heading = _is_heading(line, body_size)
        if prev is None:
            paras.append(Para([line], heading))
        else:
            same_row = _same_row(prev, line)
            gap = line.y0 - prev.y1
            para = paras[-1]
            if same_row or (
                heading == para.heading
                and not (
                    _BULLET.match(line.text)
                    and (_BULLET.match(para.lines[0].text) or _ITEM_END.search(prev.text))
                )
                and abs(line.size - prev.size) < 1.0
                and gap <= max(0.8 * max(line.y1 - line.y0, prev.y1 - prev.y0), usual)
            ):
                para.lines.append(line)
            else:
                paras.append(Para([line], heading))
        prev = line
    return paras


def vocabulary(paras: list[Para]) -> tuple[set[str], set[str]]:
    """Words and hyphenated compounds written on one line, to decide how to join a word split by a hyphen."""
    words: set[str] = set()
    compounds: set[str] = set()
    for para in paras:
        for line in para.lines:
            lower = line.text.lower()
            words.update(WORDS.findall(lower))
            if "-" in lower:
                compounds.update(_COMPOUNDS.findall(lower))
    return words, compounds


def join(left: str, right: str, words: set[str], compounds: set[str]) -> str:
    """Join two pieces of running text, undoing end-of-line hyphenation."""
    if not left:
        return right
    if not right:
        return left
    if left[-1] in _HYPHENS and len(left) > 1 and left[-2].isalnum():
        if left[-1] == "\u00ad":
            return left[:-1] + right
        head = WORDS.findall(left[-40:].lower())
        tail = WORDS.findall(right[:40].lower())
        if right[0].islower() and head and tail and left[-2].isalpha():
            first, rest = head[-1], tail[0]
            if rest in ("and", "or", "to"):
                return left + " " + right  # "short- and long-term"
            # "anti-\ninflammatory" stays hyphenated when the document writes it so elsewhere.
            if f"{first}-{rest}" in compounds and first + rest not in words:
                return left + right
            return left[:-1] + right
        return left + right  # "IL-" + "1β", "Bcl-" + "2"
    return left + " " + right


def join_lines(lines: list[Line], words: set[str], compounds: set[str]) -> str:
    """A paragraph's lines as one string of running text."""
    text = ""
    prev: Line | None = None
    for line in lines:
        piece = SPACES.sub(" ", line.text).strip()
        if prev is not None and _same_row(prev, line) and line.x0 - prev.x1 < 0.15 * line.size:
            text += piece  # same row, touching: a superscript or a font change, not a new word
        else:
            text = join(text, piece, words, compounds)
        prev = line
    return text.strip()


def merge_continuations(
    paras: list[Para], words: set[str], compounds: set[str], body_size: float
) -> list[Para]:
    """Rejoin a paragraph split by a column or page break: no final punctuation, then a lowercase start.

    Small print met between the two halves (the affiliation or "Communicated by" footnote at the foot of
    a column) is set aside, so the sentence closes over it, and follows the rejoined paragraph.
    """
    out: list[Para] = []
    aside: list[Para] = []
    for i, para in enumerate(paras):
        if out and not out[-1].heading and not _finished(out[-1].text):
            if not para.heading and (
                para.size < min(body_size, out[-1].size) - SMALL_PRINT
                or _foot_of_column(out[-1], para, paras[i + 1] if i + 1 < len(paras) else None)
            ):
                aside.append(para)
                continue
            # Not body text onto small print (a table's note or link left without a stop).
            if not para.heading and _continues(para.text) and para.size < out[-1].size + SMALL_PRINT:
                out[-1].text = join(out[-1].text, para.text, words, compounds)
                continue
        out.extend(aside)
        aside = []
        out.append(para)
    return out + aside


def _finished(text: str) -> bool:
    """Whether a paragraph ends a sentence: a final stop, or a citation set after one ("before.12")."""
    return text[-1] in TERMINAL or _CITED_END.search(text) is not None


def _foot_of_column(before: Para, para: Para, following: Para | None) -> bool:
    """A short note between the halves of a sentence: it does not continue the running text before it,
    and that text goes on at the head of the next column or page (a footnote in type OCR cannot tell from
    the body's). A short line before it without a sentence's end is a heading, not running text: the note
    is then that heading's paragraph."""
    return (
        following is not None
        and (len(before.text) >= PROSE_MIN_CHARS or _SENTENCE_END.search(before.text) is not None)
        and len(para.text) < PROSE_MIN_CHARS
        and not _continues(para.text)
        and not following.heading
        and _continues(following.text)
        and (following.page != para.page or following.first.y0 < para.lines[-1].y0)
    )


def _continues(text: str) -> bool:
    """Whether a paragraph starts like the rest of a sentence ("38% had ..." does; "1. Offer ..." not)."""
    start = text[0]
    return start.islower() or (start.isdigit() and not _NUMBERED.match(text))


def drop_tables(blocks: list[Block], body_size: float) -> list[Block]:
    """Blocks without tables (drop_table_blocks) and the notes in small print right under them."""
    kept = drop_table_blocks(blocks)
    if len(kept) == len(blocks):
        return blocks
    kept_ids = {id(b) for b in kept}
    tables = [b for b in blocks if id(b) not in kept_ids]
    return [b for b in kept if not _table_note(b, tables, body_size)]


def _table_note(block: Block, tables: list[Block], body_size: float) -> bool:
    """Small print starting within two lines under a table: its notes (abbreviations, marks, sources)."""
    size = max(line.size for line in block.lines)
    return size <= body_size - SMALL_PRINT and any(
        0 <= block.y0 - t.y1 <= 2 * size and block.x0 < t.x1 and t.x0 < block.x1 for t in tables
    )


def drop_table_blocks(blocks: list[Block]) -> list[Block]:
    """Blocks that are mostly table rows: lines sharing a baseline with two or more other text pieces.

    Body text has at most two pieces per baseline (one per column); a table row has a cell per column.
    """
    lines = [(ln, b) for b, block in enumerate(blocks) for ln in block.lines if ln.horizontal]
    if len(lines) < 6:
        return blocks
    lines.sort(key=lambda item: item[0].y1)
    rows: list[list[Line]] = []
    i = 0
    while i < len(lines):
        j = i
        base = lines[i][0].y1
        # A row's lines end within a third of their size of each other (OCR's boxes end at descenders or
        # at the baseline; a text layer's all at the baseline).
        while j < len(lines) and lines[j][0].y1 - base < max(2.0, _ROW_SPREAD * lines[i][0].size):
            j += 1
        rows.append(sorted((lines[k][0] for k in range(i, j)), key=lambda ln: ln.x0))
        i = j
    # Columns of running text side by side put a line of each on every row: on a page of three columns
    # those are not a table's cells. One column beside a table's cells still counts (two cells and a
    # column's line make a row), as it always has.
    running = {id(ln): b for b, block in enumerate(blocks) if _running_text(block) for ln in block.lines}

    def row_cells(row: list[Line]) -> _Cells:
        if len({running[id(ln)] for ln in row if id(ln) in running}) < 2:
            return _pieces(row)
        return _pieces([ln for ln in row if id(ln) not in running])

    pieces = [row_cells(row) for row in rows]
    in_row = {id(ln) for row, cells in zip(rows, pieces, strict=True) if len(cells) >= 3 for ln in row}
    if not in_row:
        return blocks
    row_chars = [sum(len(ln.text) for ln in block.lines if id(ln) in in_row) for block in blocks]
    if sum(row_chars) >= _TABLE_PAGE_SHARE * sum(b.chars for b in blocks):
        # A page that is one big table: its multi-line cells do not line up row by row; keep only prose.
        return [b for b in blocks if _prose_block(b)]
    kept = [b for b, chars in zip(blocks, row_chars, strict=True) if chars < _TABLE_ROW_SHARE * b.chars]
    # A table's rows of two cells (a header over grouped columns, a sub-heading) next to its dropped rows.
    kept_lines = {id(ln) for b in kept for ln in b.lines}
    columns = [(blocks[b].x0, blocks[b].y0) for b in set(running.values())]
    header: set[int] = set()
    for k, row in enumerate(rows):
        if (
            len(pieces[k]) >= 2
            and any(
                not any(id(ln) in kept_lines for ln in rows[n])
                and _header_row(row, pieces[k], rows[n], pieces[n])
                for n in (k - 1, k + 1)
                if 0 <= n < len(rows)
            )
            and not _heads_columns(row, pieces[k], columns)
        ):
            header.update(id(ln) for ln in row)
    return [b for b in kept if not all(id(ln) in header for ln in b.lines)]


_Cells = list[tuple[float, float]]  # pieces of text on a row, (x0, x1) left to right


def _pieces(row: list[Line]) -> _Cells:
    """The row's pieces of text, left to right: lines closer than one and a half sizes make one piece."""
    if not row:
        return []
    out = [(row[0].x0, row[0].x1)]
    for left, right in zip(row, row[1:], strict=False):
        if right.x0 - left.x1 > 1.5 * max(left.size, right.size):
            out.append((right.x0, right.x1))
        else:
            out[-1] = (out[-1][0], right.x1)
    return out


def _header_row(row: list[Line], cells: _Cells, table: list[Line], table_cells: _Cells) -> bool:
    """Whether a row of two pieces or more belongs to the table row next to it: a header or a total row in
    the table's type, of short cells (a line of two-column text beside a table is half the table wide) as
    far apart as the table's (a numbered item's number and text are closer)."""
    size = table[0].size
    span = table_cells[-1][1] - table_cells[0][0]
    return (
        abs(row[0].y1 - table[0].y1) <= 2 * size
        and all(abs(ln.size - size) < 0.5 for ln in row)
        and all(x1 - x0 < span / 3 for x0, x1 in cells)
        and _narrowest_gap(cells) >= _narrowest_gap(table_cells)
    )


def _narrowest_gap(cells: _Cells) -> float:
    return min((right[0] - left[1] for left, right in itertools.pairwise(cells)), default=0.0)


def _heads_columns(row: list[Line], cells: _Cells, columns: list[tuple[float, float]]) -> bool:
    """Whether each piece of the row heads a column of running text that starts right under it (the
    headings of two columns of text under a table, not a row of it)."""
    bottom, size = max(ln.y1 for ln in row), max(ln.size for ln in row)
    return all(
        any(abs(x - x0) <= size and 0 <= y - bottom <= 2 * size for x, y in columns) for x0, _ in cells
    )


def _running_text(block: Block) -> bool:
    """A block of a column's running text: four lines or more of words, a sentence ending among them (a
    table's cells are shorter, or numbers)."""
    if len(block.lines) < 4:
        return False
    text = " ".join(ln.text for ln in block.lines)
    return (
        sum(ch.isalpha() for ch in text) >= 0.6 * len(text)
        and len(text) >= _RUNNING_LINE_CHARS * len(block.lines)
        and _SENTENCE_END.search(text) is not None
    )


def _prose_block(block: Block) -> bool:
    """A block of running text: long, mostly letters, in lines of a column's width (cells are narrower)."""
    text = " ".join(ln.text for ln in block.lines)
    letters = sum(ch.isalpha() for ch in text)
    return (
        len(text) >= PROSE_MIN_CHARS
        and letters >= 0.6 * len(text)
        and len(text) / len(block.lines) >= _PROSE_LINE_CHARS
    )


def prose(text: str) -> bool:
    """Running text: long enough and ending like a sentence, or long (cut by a column or page break)."""
    return len(text) >= PROSE_MIN_CHARS and (
        text.rstrip()[-1] in TERMINAL + ")" or len(text) >= 1.5 * PROSE_MIN_CHARS
    )


def drop_small_print(paras: list[Para], body_size: float) -> list[Para]:
    """Leave out small print (notes, cells, affiliations) but for running text: long paragraphs, and a
    sentence right after small prose of its size (a structured abstract's short last section)."""

    def small(para: Para) -> bool:
        return not para.heading and para.size < body_size - SMALL_PRINT

    return [
        para
        for i, para in enumerate(paras)
        if not small(para) or prose(para.text) or (i > 0 and _closes(paras[i - 1], para))
    ]


def _closes(before: Para, para: Para) -> bool:
    """Whether `para` is a labelled sentence ("Conclusion: ...") that ends the small prose `before` it: a
    structured abstract's last section, not a footnote after a long note."""
    text = para.text
    return (
        abs(before.size - para.size) < 0.5
        and prose(before.text)
        and _RUN_IN_LABEL.match(text) is not None
        and text[-1] in ".!?"
        and len(text) >= _SENTENCE_CHARS
    )


def tabular(text: str) -> bool:
    """A table cell or row of numbers: mostly digits and symbols, and not a sentence's end."""
    visible = [ch for ch in text if not ch.isspace()]
    letters = sum(ch.isalpha() for ch in visible)
    return letters < _TABLE_MAX_LETTERS * len(visible) and not text.endswith(".")
