"""JATS and PubMed readers: paragraphs present by kind, documents in vs records out, and speed next to lxml's
plain itertext, in one run.

Corpora: the JATS conformance files (tests/fixtures/xml/jats) and ../shared/evaldata/pmc_pdf_jats (its
fulltext.xml files); PubMed: the conformance files (tests/fixtures/xml/pubmed) and generated baseline-like
files (seeded; journal citations with author lists, MeSH terms, labelled and plain abstracts, references).

Paragraph presence: every paragraph of an article is found in the XML with plain lxml (not with curate) and
given a kind: `box` (inside boxed-text, its caption included), `list` (a list item), `appendix` (in
back/app-group or back/app) or `prose` (abstracts and body); paragraphs of figures, tables, footnotes,
references, sub-articles and other back matter are left out, as the reader leaves them out by design. Its
own words (nested blocks and formulas apart) are lowercased and NFKC-normalised; it is present when at least
80% of its word 4-grams are in curate's text of the same file.

Documents in vs records out: the JATS corpus as a bulk tarball (every article in one folder), as a plain
folder and as an E-utilities article set; the PubMed files; each through its stage (in-process executor), the
articles and citations counted on the bytes.

Speed, CPU seconds in this process (= per core), the best of --repeat runs; the ratio to the anchor is the
median over --repeat pairs run back to back: articles/s for JATS (reader vs
`"".join(fromstring(data).itertext())`), citations/s for PubMed (reader vs iterparse + itertext + clear).
With `--baseline DIR` (a checkout of another commit, e.g. `git worktree add /tmp/base bb97414`), the same
timing runs on that code in a child process; each reader is compared with its own anchor, so the ratio of
ratios says how much faster or slower the code got.

    .venv/bin/python benchmarks/xml_fidelity.py [--repeat 7] [--citations 5000] [--baseline DIR] [--out DIR]

Prints a summary and writes xml_fidelity.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' tarball builder: the same layouts as the conformance tests

from _results import write_results  # noqa: E402

from tests.parse.tarballs import write_tar  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "xml"
EVALDATA = REPO.parent / "shared" / "evaldata" / "pmc_pdf_jats"
NGRAM = 4
PRESENT = 0.8

# ------------------------------------------------------------------------------------ paragraph presence

_WORD = re.compile(r"\w+")
_MATHML = "{http://www.w3.org/1998/Math/MathML}math"
# Paragraphs under these are not reading text (left out by design): figures, tables, notes, references...
_OUT = {
    "table-wrap", "table-wrap-group", "fig", "fig-group", "fn", "fn-group", "table-wrap-foot", "ref-list",
    "ack", "notes", "glossary", "sub-article", "response", "trans-abstract", "author-notes", "bio",
    "sig-block", "supplementary-material", "chem-struct-wrap", "media", "graphic", "kwd-group",
}  # fmt: skip
_NESTED = {"list", "boxed-text", "disp-quote", "p", "def-list", "statement", "speech", "verse-group", "fig",
           "table-wrap", "fn", "disp-formula", "inline-formula", "tex-math", "math", _MATHML, "label",
           "caption", "title"}  # fmt: skip
_SKIP_ABSTRACTS = {"graphical", "teaser", "toc"}


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def words(text: str) -> list[str]:
    """Lowercased NFKC words, as the scores compare them."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


_BREAK = "\x00"  # where a nested block, formula or entity stood: no n-gram spans it


def _own_text(el) -> str:
    """A paragraph's text without the blocks and formulas nested in it (scored on their own, or written
    differently: TeX, MathML), a break where each stood."""
    parts = [el.text or ""]
    for child in el:
        if not isinstance(child.tag, str) or _local(child.tag) in _NESTED or child.tag == _MATHML:
            parts.append(_BREAK)
        else:
            parts.append(_own_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def reference_paragraphs(article) -> list[tuple[str, str]]:
    """(kind, text) of every reading paragraph of one lxml `<article>` element (see the module docstring)."""
    out: list[tuple[str, str]] = []
    regions = []
    meta = next((m for m in article.iter("{*}article-meta", "article-meta")), None)
    if meta is not None:
        regions += [
            a for a in meta if _local(a.tag) == "abstract" and a.get("abstract-type") not in _SKIP_ABSTRACTS
        ]
    for part in article:
        name = _local(part.tag)
        if name in ("body", "floats-group"):
            regions.append(part)
        elif name == "back":
            regions += [c for c in part if _local(c.tag) in ("app-group", "app")]
    for region in regions:
        for el in region.iter():
            name = _local(el.tag)
            is_item = name == "list-item" and not any(_local(c.tag) == "p" for c in el)
            if name != "p" and not is_item:
                continue
            chain = [_local(a.tag) for a in el.iterancestors()]
            if any(a in _OUT for a in chain) or (
                name == "p" and chain and chain[0] == "caption" and "boxed-text" not in chain
            ):
                continue
            if "boxed-text" in chain:
                kind = "box"
            elif "list-item" in chain or "def-item" in chain or is_item:
                kind = "list"
            elif "app" in chain or "app-group" in chain:
                kind = "appendix"
            else:
                kind = "prose"
            text = _own_text(el)
            if words(text):
                out.append((kind, text))
    return out


def ngrams(tokens: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(max(0, len(tokens) - n + 1))}


def text_grams(text: str) -> dict[int, set[tuple[str, ...]]]:
    """The word n-grams of an output text, n from 1 to NGRAM (short paragraphs are matched whole)."""
    tokens = words(text)
    return {n: ngrams(tokens, n) for n in range(1, NGRAM + 1)}


def is_present(paragraph: str, grams: dict[int, set[tuple[str, ...]]]) -> bool:
    """Whether at least 80% of a reference paragraph's word 4-grams are in the output."""
    segments = [words(s) for s in paragraph.split(_BREAK)]
    n = min(NGRAM, max(len(s) for s in segments))
    wanted = [g for s in segments for g in ngrams(s, n)]
    return sum(1 for g in wanted if g in grams[n]) >= PRESENT * len(wanted)


def score_jats(files: list[Path]) -> dict[str, object]:
    """Paragraph presence by kind over JATS files, and the paragraphs missed (for a look)."""
    from lxml import etree

    from curate.parse.jats import read_jats_file

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    totals: dict[str, list[int]] = {}
    missed: list[str] = []
    for path in files:
        data = path.read_bytes()
        grams = text_grams("\n\n".join(d.text for d in read_jats_file(data) if hasattr(d, "text")))
        root = etree.fromstring(data, parser)
        articles = [root] if _local(root.tag) == "article" else list(root.iter("{*}article"))
        for article in articles:
            for kind, paragraph in reference_paragraphs(article):
                present = is_present(paragraph, grams)
                entry = totals.setdefault(kind, [0, 0])
                entry[0] += present
                entry[1] += 1
                if not present:
                    missed.append(f"{path.name} [{kind}] {' '.join(words(paragraph))[:100]}")
    by_kind = {
        k: {"present": p, "paragraphs": t, "share": round(p / t, 4)} for k, (p, t) in sorted(totals.items())
    }
    return {"by_kind": by_kind, "missed": missed}


# ------------------------------------------------------------------------------------- generated PubMed

_VOCABULARY = (
    "patients",
    "treatment",
    "clinical",
    "study",
    "trial",
    "randomised",
    "cohort",
    "outcome",
    "mortality",
    "risk",
    "hospital",
    "care",
    "therapy",
    "dose",
    "placebo",
    "infection",
    "blood",
    "pressure",
    "heart",
    "failure",
    "diabetes",
    "insulin",
    "cancer",
    "tumour",
    "survival",
    "analysis",
    "children",
    "adults",
    "women",
    "men",
    "age",
    "years",
    "months",
    "weeks",
    "days",
    "follow-up",
    "baseline",
    "primary",
    "secondary",
    "endpoint",
    "significant",
    "reduced",
    "increased",
    "associated",
    "compared",
    "control",
    "group",
    "intervention",
    "effect",
    "adverse",
    "events",
    "diagnosis",
    "screening",
    "sensitivity",
    "specificity",
    "imaging",
    "lung",
    "kidney",
    "liver",
    "brain",
    "stroke",
    "vaccine",
    "antibody",
    "protein",
    "gene",
    "expression",
    "cells",
    "mice",
    "model",
    "mechanism",
    "pathway",
    "inflammation",
    "oxygen",
    "exercise",
    "nutrition",
)


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_VOCABULARY) for _ in range(n)).capitalize() + "."


def _citation(rng: random.Random, pmid: int) -> str:
    """One PubmedArticle shaped like a baseline citation: lengths drawn from typical ranges."""
    authors = "".join(
        f'<Author ValidYN="Y"><LastName>{rng.choice(_VOCABULARY).title()}</LastName><ForeName>'
        f"{rng.choice(_VOCABULARY).title()}</ForeName><Initials>A</Initials><AffiliationInfo><Affiliation>"
        f"{_sentence(rng, rng.randint(8, 20))}</Affiliation></AffiliationInfo></Author>"
        for _ in range(rng.randint(1, 15))
    )
    shape = rng.choice(["none", "plain", "plain", "plain", "labelled"])
    if shape == "none":
        abstract = ""
    elif shape == "plain":
        text = " ".join(_sentence(rng, rng.randint(12, 30)) for _ in range(rng.randint(4, 12)))
        abstract = f"<Abstract><AbstractText>{text}</AbstractText></Abstract>"
    else:
        parts = "".join(
            f'<AbstractText Label="{label}" NlmCategory="{label}">'
            f"{' '.join(_sentence(rng, rng.randint(10, 25)) for _ in range(rng.randint(1, 4)))}"
            "</AbstractText>"
            for label in ("BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS")
        )
        abstract = f"<Abstract>{parts}</Abstract>"
    mesh = "".join(
        f'<MeshHeading><DescriptorName UI="D{rng.randint(1, 99999):06d}" MajorTopicYN="N">'
        f"{rng.choice(_VOCABULARY).title()}</DescriptorName></MeshHeading>"
        for _ in range(rng.randint(3, 15))
    )
    references = "".join(
        f'<Reference><Citation>{_sentence(rng, 15)}</Citation><ArticleIdList><ArticleId IdType="pubmed">'
        f"{rng.randint(1, 39_999_999)}</ArticleId></ArticleIdList></Reference>"
        for _ in range(rng.choice([0, 0, 15, 40]))
    )
    return (
        f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">{pmid}</PMID>'
        f'<Article PubModel="Print"><Journal><ISSN IssnType="Electronic">1234-5678</ISSN><JournalIssue '
        f'CitedMedium="Internet"><Volume>{rng.randint(1, 99)}</Volume><PubDate>'
        f"<Year>{rng.randint(1975, 2025)}</Year><Month>Jan</Month></PubDate></JournalIssue>"
        f"<Title>{_sentence(rng, 4)}</Title></Journal>"
        f'<ArticleTitle>{_sentence(rng, rng.randint(6, 22))}</ArticleTitle><ELocationID EIdType="doi" '
        f'ValidYN="Y">10.9999/{pmid}</ELocationID>{abstract}<AuthorList CompleteYN="Y">{authors}</AuthorList>'
        f'<Language>eng</Language><PublicationTypeList><PublicationType UI="D016428">Journal Article'
        f"</PublicationType></PublicationTypeList></Article><MedlineJournalInfo><MedlineTA>J Gen</MedlineTA>"
        f"</MedlineJournalInfo><MeshHeadingList>{mesh}</MeshHeadingList></MedlineCitation><PubmedData>"
        f'<ArticleIdList><ArticleId IdType="pubmed">{pmid}</ArticleId></ArticleIdList><ReferenceList>'
        f"{references}</ReferenceList></PubmedData></PubmedArticle>\n"
    )


def write_pubmed(path: Path, citations: int, seed: int = 0, first_pmid: int = 1_000_000) -> Path:
    """A gzipped PubmedArticleSet of generated citations (the same bytes for the same arguments)."""
    rng = random.Random(seed)
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(
            b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD '
            b'PubMedArticle, 1st January 2025//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
            b"<PubmedArticleSet>\n"
        )
        for n in range(citations):
            f.write(_citation(rng, first_pmid + n).encode())
        f.write(b"</PubmedArticleSet>\n")
    return path


# ----------------------------------------------------------------------------------------------- speed


def measure_speed(jats_files: list[str], pubmed_file: str, repeat: int) -> dict[str, dict[str, float]]:
    """Articles/s and citations/s of CPU time: the reader and lxml's plain itertext on the same bytes."""
    from lxml import etree

    from curate.parse.jats import read_jats
    from curate.parse.pubmed import iter_pubmed

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    datas = [Path(f).read_bytes() for f in jats_files]

    def jats_anchor() -> int:
        for data in datas:
            "".join(etree.fromstring(data, parser).itertext())
        return len(datas)

    def jats_reader() -> int:
        for data in datas:
            read_jats(data)
        return len(datas)

    def pubmed_anchor() -> int:
        n = 0
        with gzip.open(pubmed_file, "rb") as f:
            for _, el in etree.iterparse(
                f,
                events=("end",),
                tag="PubmedArticle",
                resolve_entities=False,
                no_network=True,
                load_dtd=False,
            ):
                "".join(el.itertext())
                n += 1
                el.clear()
                while el.getprevious() is not None:
                    del el.getparent()[0]
        return n

    def pubmed_reader() -> int:
        return sum(1 for _ in iter_pubmed(pubmed_file))

    def cpu(fn) -> tuple[int, float]:
        start = time.process_time()
        count = fn()
        return count, time.process_time() - start

    out = {}
    for name, reader, anchor in (
        ("jats", jats_reader, jats_anchor),
        ("pubmed", pubmed_reader, pubmed_anchor),
    ):
        # Reader and anchor alternate, and the ratio is the median of the pairs: on a shared machine a busy
        # moment then slows both sides of one pair alike instead of one side of the comparison.
        pairs = []
        for _ in range(repeat):
            n_anchor, s_anchor = cpu(anchor)
            n_reader, s_reader = cpu(reader)
            pairs.append((n_reader / s_reader, n_anchor / s_anchor))
        ratios = sorted(r / a for r, a in pairs)
        out[name] = {
            "documents": n_reader,
            "reader_per_s": round(max(r for r, _ in pairs), 1),
            "itertext_per_s": round(max(a for _, a in pairs), 1),
            "ratio": round(ratios[len(ratios) // 2], 3),
        }
    return out


# ------------------------------------------------------------------------------------- documents in/out


def _articles_in(data: bytes) -> int:
    return len(re.findall(rb"<(?:[\w.-]+:)?article[\s>]", data))


def documents_in_out(jats_files: list[Path], pubmed_files: list[Path], work: Path) -> dict[str, dict]:
    """Each layout through its stage: articles/citations in the bytes vs records out (kept + rejected)."""
    from curate.executors import LocalExecutor
    from curate.parse.xml_stages import PmcStage, PubmedStage
    from curate.runner import run_stage
    from curate.stage import Input

    work.mkdir(parents=True, exist_ok=True)
    articles = [f for f in jats_files if _articles_in(f.read_bytes()) == 1]
    sets = [f for f in jats_files if _articles_in(f.read_bytes()) > 1]
    layouts: dict[str, tuple[Path, int]] = {}
    bulk = {f"PMC000xxxxxx/{i:04d}_{f.name}": f.read_bytes() for i, f in enumerate(articles)}
    layouts["pmc bulk tarball"] = (
        write_tar(work / "oa_comm_xml.PMC000xxxxxx.baseline.tar.gz", bulk),
        len(articles),
    )
    folder = work / "folder"
    folder.mkdir()
    for i, f in enumerate(articles):
        (folder / f"{i:04d}_{f.name}").write_bytes(f.read_bytes())
    layouts["pmc plain folder"] = (folder, len(articles))
    if sets:
        set_dir = work / "sets"
        set_dir.mkdir()
        for f in sets:
            (set_dir / f.name).write_bytes(f.read_bytes())
        layouts["pmc article sets"] = (set_dir, sum(_articles_in(f.read_bytes()) for f in sets))
    out: dict[str, dict] = {}
    for name, (path, expected) in layouts.items():
        manifest = run_stage(
            PmcStage(name="pmc"), [Input(str(path))], work / f"out-{len(out)}", LocalExecutor()
        )
        c = manifest["counts"]
        out[name] = {
            "articles": expected,
            "in": c["in"],
            "kept": c["kept"],
            "rejected": c["rejected"] + c["errored"],
        }
    pubmed_dir = work / "pubmed"
    pubmed_dir.mkdir()
    citations = 0
    for f in pubmed_files:
        data = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
        citations += len(re.findall(rb"<(?:PubmedArticle|PubmedBookArticle|MedlineCitation)[\s>]", data))
        citations -= len(re.findall(rb"<PubmedArticle[\s>]", data))  # its MedlineCitation counted it
        (pubmed_dir / f.name).write_bytes(f.read_bytes())
    manifest = run_stage(
        PubmedStage(name="pubmed"), [Input(str(pubmed_dir))], work / "out-pubmed", LocalExecutor()
    )
    c = manifest["counts"]
    # A deletion of a PMID that no input holds is a row of its own (kept for a later step to apply).
    out["pubmed files"] = {
        "citations": citations,
        "deletions_of_absent_pmids": c["in"] - citations,
        "in": c["in"],
        "kept": c["kept"],
        "rejected": c["rejected"] + c["errored"],
    }
    return out


# ------------------------------------------------------------------------------------------------ main


def _baseline_speed(code: Path, jats_files: list[str], pubmed_file: str, repeat: int) -> dict:
    """The same timing on another checkout's readers, in a child process that imports its curate."""
    command = [
        sys.executable, __file__, "--measure-only", "--code", str(code), "--repeat", str(repeat),
        "--pubmed-file", pubmed_file, *(f"--jats-file={f}" for f in jats_files),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=code)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--repeat", type=int, default=7, help="timing repeats (reader/anchor pairs)")
    parser.add_argument("--citations", type=int, default=5000, help="generated PubMed citations to time")
    parser.add_argument("--baseline", type=Path, help="a checkout of another commit to time the same way")
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)  # whose curate to import
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--jats-file", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--pubmed-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(args.code or REPO))
    if args.measure_only:
        print(json.dumps(measure_speed(args.jats_file, args.pubmed_file, args.repeat)))
        return

    jats_files = sorted((FIXTURES / "jats").glob("*.xml"))
    evaldata = sorted(EVALDATA.rglob("fulltext.xml")) if EVALDATA.is_dir() else []
    if not evaldata:
        print(f"note: {EVALDATA} not found; the JATS corpus is the conformance files only", file=sys.stderr)
    pubmed_fixtures = sorted((FIXTURES / "pubmed").glob("*.xml"))
    report: dict[str, object] = {}
    fidelity = {"conformance": score_jats(jats_files)}
    if evaldata:
        fidelity["pmc_evaldata"] = score_jats(evaldata)
    report["paragraph_presence"] = fidelity
    for corpus, result in fidelity.items():
        shares = ", ".join(
            f"{k} {v['share']:.3f} ({v['present']}/{v['paragraphs']})" for k, v in result["by_kind"].items()
        )
        print(f"paragraph presence, {corpus}: {shares}")
        for line in result["missed"][:10]:
            print(f"  missed: {line}")

    with tempfile.TemporaryDirectory(prefix="xml-fidelity-") as tmp:
        work = Path(tmp)
        generated = write_pubmed(work / "pubmed26n0001.xml.gz", args.citations)
        small = write_pubmed(work / "pubmed26n0002.xml.gz", 200, seed=1, first_pmid=5_000_000)
        accounting = documents_in_out([*jats_files, *evaldata], [*pubmed_fixtures, small], work / "runs")
        report["documents"] = accounting
        for name, c in accounting.items():
            print(f"documents, {name}: {c}")
        speed_files = [str(f) for f in (evaldata or jats_files)]
        speed = measure_speed(speed_files, str(generated), args.repeat)
        report["speed"] = {"corpus": "pmc_evaldata" if evaldata else "conformance", "current": speed}
        if args.baseline:
            base = _baseline_speed(args.baseline, speed_files, str(generated), args.repeat)
            report["speed"]["baseline"] = {"code": str(args.baseline), **base}
            report["speed"]["change"] = {k: round(speed[k]["ratio"] / base[k]["ratio"], 3) for k in speed}
    for name, s in report["speed"]["current"].items():
        unit = "articles" if name == "jats" else "citations"
        line = f"speed, {name}: {s['reader_per_s']} {unit}/s/core, itertext {s['itertext_per_s']}/s"
        line += f", ratio {s['ratio']}"
        if args.baseline:
            b, change = report["speed"]["baseline"][name], report["speed"]["change"][name]
            line += f"; baseline {b['reader_per_s']}/s (ratio {b['ratio']}), change x{change}"
        print(line)
    write_results("xml_fidelity", report, args.out)


if __name__ == "__main__":
    main()
