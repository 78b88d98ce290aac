"""JATS, PubMed XML and PMC package readers, on small files written here and on the shared evaluation data."""

from __future__ import annotations

import csv
import gzip
import io
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pymupdf
import pytest

from curate.executors import LocalExecutor
from curate.parse.jats import parse_jats, read_jats, read_jats_file
from curate.parse.pmc import iter_folder, iter_tarball
from curate.parse.pubmed import Deleted, PubmedRecord, iter_pubmed
from curate.parse.xml_stages import PmcStage, PubmedStage
from curate.runner import run_stage
from curate.schema import Rejection
from curate.stage import Input
from tests.parse.tarballs import write_tar

JATS = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.1 20151215//EN"
  "JATS-archivearticle1.dtd">
<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="research-article">
 <front>
  <journal-meta><journal-title-group><journal-title>Journal of Made-Up Medicine</journal-title>
  </journal-title-group></journal-meta>
  <article-meta>
   <article-id pub-id-type="pmid">12345678</article-id>
   <article-id pub-id-type="pmc">7654321</article-id>
   <article-id pub-id-type="doi">10.1000/jmm.2020.1</article-id>
   <title-group><article-title>Walking after <italic>knee</italic> surgery</article-title></title-group>
   <pub-date pub-type="epub"><year>2021</year></pub-date>
   <pub-date pub-type="ppub"><year>2020</year></pub-date>
   <permissions><license xlink:href="https://creativecommons.org/licenses/by/4.0/">
     <license-p>Open access under CC BY.</license-p></license></permissions>
   <abstract><p>We followed forty patients who walked daily after surgery.</p></abstract>
  </article-meta>
 </front>
 <body>
  <sec><title>Introduction</title>
   <p>Knee surgery is common <xref ref-type="bibr" rid="r1">[1]</xref>.</p>
   <sec><title>Aims</title><p>We asked whether walking helps.</p></sec>
  </sec>
  <sec><title>Results</title>
   <p>Patients who walked recovered sooner.
    <table-wrap id="t1"><label>Table 1</label><caption><p>Recovery in days</p></caption>
     <table><tr><th>Group</th><th>Days</th></tr><tr><td>Walkers</td><td>21</td></tr></table>
    </table-wrap>
   </p>
   <fig id="f1"><label>Figure 1</label><caption><p>Daily steps by week</p></caption></fig>
   <list list-type="bullet"><list-item><p>Walking was safe.</p></list-item></list>
   <disp-formula><mml:math xmlns:mml="http://www.w3.org/1998/Math/MathML"><mml:mi>x</mml:mi></mml:math>
   </disp-formula>
  </sec>
 </body>
 <back><ref-list><title>References</title>
  <ref id="r1"><mixed-citation>Smith J. Knees. Knee J. 1999;1:1-2.</mixed-citation></ref>
 </ref-list></back>
</article>
"""


def test_jats_title_abstract_sections_and_paragraphs() -> None:
    doc = parse_jats(JATS)
    assert doc.title == "Walking after knee surgery"
    blocks = doc.text.split("\n\n")
    assert blocks[:3] == [
        "# Walking after knee surgery",
        "## Abstract",
        "We followed forty patients who walked daily after surgery.",
    ]
    assert "## Introduction" in blocks and "### Aims" in blocks and "## Results" in blocks
    assert "Knee surgery is common [1]." in blocks
    assert "- Walking was safe." in blocks
    # Tables, captions, references and formulas are not running text by default.
    for absent in ("Recovery in days", "Walkers", "Daily steps", "Smith J.", "Table 1"):
        assert absent not in doc.text
    assert doc.text.index("## Introduction") < doc.text.index("### Aims") < doc.text.index("## Results")


def test_jats_options_keep_tables_captions_references() -> None:
    doc = parse_jats(JATS, tables=True, captions=True, references=True)
    assert "Table 1: Recovery in days" in doc.text
    assert "Figure 1: Daily steps by week" in doc.text
    assert "| Walkers | 21 |" in doc.text
    assert "- Smith J. Knees. Knee J. 1999;1:1-2." in doc.text


def test_jats_metadata() -> None:
    meta = parse_jats(JATS).meta
    assert meta["pmcid"] == "PMC7654321"
    assert meta["pmid"] == "12345678"
    assert meta["doi"] == "10.1000/jmm.2020.1"
    assert meta["journal"] == "Journal of Made-Up Medicine"
    assert meta["year"] == 2020
    assert meta["license"] == "https://creativecommons.org/licenses/by/4.0/"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<article><front><article-meta><title-group>", "xml_broken"),
        (b"not xml at all", "xml_broken"),
        (b"<html><body><p>a web page</p></body></html>", "xml_not_jats"),
        (b"<article><front/><body/></article>", "xml_no_text"),
    ],
)
def test_jats_bad_input_is_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(Rejection) as caught:
        parse_jats(data)
    assert caught.value.reason == reason


def test_jats_ignores_external_entities(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    data = (
        f'<?xml version="1.0"?><!DOCTYPE article [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<article><front><article-meta><title-group><article-title>T &x;</article-title>"
        "</title-group></article-meta></front></article>"
    ).encode()
    try:
        doc = parse_jats(data)
    except Rejection:
        return  # refusing the file is fine too; reading the file is not
    assert "TOPSECRET" not in doc.text
    assert doc.meta["unresolved_entities"] == {"x": 1}  # not read, and said so


def test_jats_real_articles(evaldata: Path) -> None:
    root = evaldata / "pmc_pdf_jats"
    with (root / "index.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 25
    for row in rows:
        article = read_jats(root / row["xml"])
        assert article.meta["pmcid"] == row["pmcid"]
        if row["doi"]:
            assert article.meta["doi"].lower() == row["doi"].lower()
        assert article.title and article.blocks[0] == f"# {article.title}"
        # The prose (abstract + body paragraphs) is most of the body text the index counts (which has tables).
        prose = sum(len(p) for p in article.paragraphs)
        assert prose >= 0.5 * int(row["body_text_chars"]), row["pmcid"]
        assert "creativecommons.org" in str(article.meta.get("license", "")), row["pmcid"]


# ------------------------------------------------------------------------------------------------ PubMed


def _citation(pmid: str, title: str, *, abstract: str = "", labelled: bool = False) -> str:
    if labelled:
        abstract_xml = (
            '<Abstract><AbstractText Label="BACKGROUND">Why we looked.</AbstractText>'
            '<AbstractText Label="RESULTS">What we found.</AbstractText></Abstract>'
        )
    else:
        abstract_xml = f"<Abstract><AbstractText>{abstract}</AbstractText></Abstract>" if abstract else ""
    return f"""<PubmedArticle><MedlineCitation Status="MEDLINE"><PMID Version="1">{pmid}</PMID>
 <Article><Journal><JournalIssue><PubDate><MedlineDate>1998 Dec-1999 Jan</MedlineDate></PubDate>
 </JournalIssue><Title>Made-Up Journal</Title></Journal><ArticleTitle>{title}</ArticleTitle>{abstract_xml}
 <Language>eng</Language>
 <PublicationTypeList><PublicationType UI="D016428">Journal Article</PublicationType>
 <PublicationType UI="D016454">Review</PublicationType></PublicationTypeList></Article>
 <MeshHeadingList><MeshHeading><DescriptorName UI="D007717">Knee</DescriptorName></MeshHeading>
 <MeshHeading><DescriptorName UI="D014851">Walking</DescriptorName></MeshHeading></MeshHeadingList>
 </MedlineCitation><PubmedData><ArticleIdList><ArticleId IdType="pubmed">{pmid}</ArticleId>
 <ArticleId IdType="doi">10.1000/{pmid}</ArticleId></ArticleIdList></PubmedData></PubmedArticle>"""


def _pubmed_file(path: Path, *parts: str) -> Path:
    xml = '<?xml version="1.0"?>\n<PubmedArticleSet>' + "".join(parts) + "</PubmedArticleSet>\n"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(xml)
    return path


def test_pubmed_labels_in_capitals_read_as_sentences_and_mixed_case_labels_keep_their_acronyms(
    tmp_path: Path,
) -> None:
    citation = _citation("101", "Walking helps", labelled=True).replace(
        '<AbstractText Label="RESULTS">', '<AbstractText Label="Role of HIV testing">'
    )
    (record,) = [
        i
        for i in iter_pubmed(_pubmed_file(tmp_path / "pubmed26n0002.xml.gz", citation))
        if isinstance(i, PubmedRecord)
    ]
    assert record.abstract == "## Background\n\nWhy we looked.\n\n## Role of HIV testing\n\nWhat we found."


def test_pubmed_records_and_deletions(tmp_path: Path) -> None:
    path = _pubmed_file(
        tmp_path / "pubmed26n0001.xml.gz",
        _citation("101", "Walking helps", labelled=True),
        _citation("102", "Knees and <i>stairs</i>", abstract="Stairs are hard."),
        "<DeleteCitation><PMID Version='1'>55</PMID><PMID Version='1'>66</PMID></DeleteCitation>",
    )
    items = list(iter_pubmed(path))
    records = [i for i in items if isinstance(i, PubmedRecord)]
    assert [r.pmid for r in records] == ["101", "102"]
    first = records[0]
    assert first.title == "Walking helps"
    assert first.abstract == "## Background\n\nWhy we looked.\n\n## Results\n\nWhat we found."
    assert first.text.startswith("# Walking helps\n\n## Background")
    assert first.journal == "Made-Up Journal"
    assert first.year == 1998
    assert first.mesh == ["Knee", "Walking"]
    assert first.publication_types == ["Journal Article", "Review"]
    assert first.doi == "10.1000/101"
    assert records[1].title == "Knees and stairs"
    assert [i.pmids for i in items if isinstance(i, Deleted)] == [["55", "66"]]


def test_pubmed_truncated_gzip_yields_what_it_read_then_rejects(tmp_path: Path) -> None:
    whole = _pubmed_file(
        tmp_path / "whole.xml.gz",
        *[_citation(str(n), f"Title {n}", abstract="An abstract. " * 50) for n in range(1, 200)],
    )
    data = whole.read_bytes()
    cut = tmp_path / "pubmed26n0002.xml.gz"
    cut.write_bytes(data[: len(data) // 2])
    seen = []
    with pytest.raises(Rejection) as caught:
        for item in iter_pubmed(cut):
            seen.append(item)
    assert caught.value.reason == "pubmed_truncated"
    assert 0 < len(seen) < 199


def _serial_map(fn, args_list):
    return [fn(*args) for args in args_list]


def test_pubmed_later_files_supersede_and_delete_earlier_citations(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _pubmed_file(
        folder / "pubmed26n0001.xml.gz",
        _citation("1", "One", abstract="First."),
        _citation("2", "Two, first version", abstract="Old."),
        _citation("3", "Three", abstract="Gone."),
    )
    _pubmed_file(
        folder / "pubmed26n0002.xml.gz",
        _citation("2", "Two, corrected", abstract="New."),
        _citation("4", "Four", abstract="Added."),
    )
    _pubmed_file(
        folder / "pubmed26n0003.xml.gz", "<DeleteCitation><PMID Version='1'>3</PMID></DeleteCitation>"
    )
    out = tmp_path / "out"
    stage = PubmedStage(name="pubmed", licenses={"pubmed": None})
    manifest = run_stage(stage, [Input(str(folder))], out, LocalExecutor())
    kept = pq.ParquetDataset(sorted(str(p) for p in out.glob("*.parquet"))).read().to_pylist()
    assert sorted((r["id"], r["title"]) for r in kept) == [
        ("pubmed:1", "One"),
        ("pubmed:2", "Two, corrected"),
        ("pubmed:4", "Four"),
    ]
    rejected = (
        pq.ParquetDataset(sorted(str(p) for p in (out / "rejected").glob("*.parquet"))).read().to_pylist()
    )
    reasons = sorted((r["id"], r["drop_reason"], r["drop_detail"]) for r in rejected)
    assert reasons == [
        ("pubmed:2", "pubmed_superseded", "a later version is in pubmed26n0002.xml.gz"),
        ("pubmed:3", "pubmed_deleted", "<DeleteCitation> in pubmed26n0003.xml.gz"),  # one row, not two
    ]
    assert manifest["counts"] == {"in": 5, "kept": 3, "rejected": 2, "errored": 0}


def test_pubmed_stage_accounts_for_every_citation(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    good = _pubmed_file(
        tmp_path / "in" / "pubmed26n0003.xml.gz",
        _citation("201", "Kept", abstract="Long enough abstract."),
        _citation("202", "No abstract"),
        _citation("203", "Deleted in the same file", abstract="Soon gone."),
        "<PubmedBookArticle><BookDocument><PMID>204</PMID><ArticleTitle>A chapter</ArticleTitle>"
        "<Book><BookTitle>Made-Up Handbook</BookTitle><PubDate><Year>2019</Year></PubDate></Book>"
        "<Abstract><AbstractText>What the chapter says.</AbstractText></Abstract></BookDocument>"
        "</PubmedBookArticle>",
        "<PubmedArticle><MedlineCitation><Article><ArticleTitle>No id</ArticleTitle></Article>"
        "</MedlineCitation></PubmedArticle>",
        "<DeleteCitation><PMID Version='1'>203</PMID><PMID Version='1'>999</PMID></DeleteCitation>",
    )
    (tmp_path / "in" / "pubmed26n0004.xml.gz").write_bytes(gzip.compress(b"<PubmedArticleSet><Pub")[:15])
    stage = PubmedStage(name="pubmed", min_abstract_chars=1)
    tasks = stage.prepare(stage.plan([Input(str(good.parent))]), _serial_map, tmp_path)
    kept, rejected = {}, {}
    for task in tasks:
        result = stage.process(task)
        assert result.documents_in == result.kept.num_rows + result.rejected.num_rows
        kept.update(
            zip(result.kept.column("id").to_pylist(), result.kept.column("meta").to_pylist(), strict=True)
        )
        rejected.update(
            zip(
                result.rejected.column("id").to_pylist(),
                result.rejected.column("drop_reason").to_pylist(),
                strict=True,
            )
        )
    assert list(kept) == ["pubmed:201", "pubmed:204"]
    assert json.loads(kept["pubmed:204"])["year"] == 2019
    assert json.loads(kept["pubmed:201"])["mesh"] == ["Knee", "Walking"]
    assert rejected == {
        "pubmed:202": "pubmed_no_abstract",
        "pubmed:203": "pubmed_deleted",
        "pubmed:999": "pubmed_deleted",
        "pubmed:pubmed26n0004": "pubmed_truncated",
        "pubmed:pubmed26n0003#5": "pubmed_no_pmid",
    }


# ------------------------------------------------------------------------------------------- PMC packages


def _pdf_bytes(text: str) -> bytes:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_textbox(pymupdf.Rect(72, 72, 520, 770), text, fontsize=11)
    data = doc.tobytes()
    doc.close()
    return data


def test_pmc_xml_wins_and_pdf_only_packages_parse(tmp_path: Path) -> None:
    prose = "Walking after surgery shortens recovery in most of the patients we followed. " * 12
    tarball = write_tar(
        tmp_path / "oa.tar.gz",
        {
            # The PDF here is not even a PDF: the XML wins, so it is never parsed.
            "PMC7654321/article.nxml": JATS,
            "PMC7654321/article.pdf": b"not a pdf",
            "PMC7654321/fig1.jpg": b"\xff\xd8",
            "PMC1111111/paper.pdf": _pdf_bytes(prose),
            "PMC2222222/readme.txt": b"nothing here",
        },
    )
    items = list(iter_tarball(tarball, "oa", read_jats_file))
    assert [i.key for i in items] == ["oa/PMC7654321/article", "oa/PMC1111111", "oa/PMC2222222"]
    xml_doc = items[0].doc
    assert xml_doc.title == "Walking after knee surgery"
    assert xml_doc.meta["pdf_skipped"] == ["article.pdf"]
    assert items[0].where == f"{tarball.resolve().as_uri()}#PMC7654321/article.nxml"
    pdf_doc = items[1].doc
    assert pdf_doc.meta["format"] == "pdf" and "shortens recovery" in pdf_doc.text
    assert items[2].doc is None and items[2].problem.reason == "pmc_no_article"
    folder = tmp_path / "PMC1111111"
    folder.mkdir()
    (folder / "paper.pdf").write_bytes(_pdf_bytes(prose))
    (folder / "supplement.pdf").write_bytes(_pdf_bytes("A short supplement."))
    [item] = iter_folder(folder, "PMC1111111", read_jats_file)
    assert item.key == "PMC1111111" and item.doc.meta["pdf_supplements"] == ["supplement.pdf"]


def test_pmc_stage_on_folders_and_damaged_tarball(tmp_path: Path) -> None:
    folder = tmp_path / "in" / "PMC7654321"
    folder.mkdir(parents=True)
    (folder / "article.nxml").write_bytes(JATS)
    whole = write_tar(tmp_path / "whole.tar.gz", {"PMC1/a.nxml": JATS, "PMC2/b.nxml": JATS * 40})
    data = whole.read_bytes()
    (tmp_path / "in" / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    assert [i.doc.title for i in iter_folder(folder, "PMC7654321", read_jats_file)] == [
        "Walking after knee surgery"
    ]
    stage = PmcStage(name="pmc")
    tasks = stage.plan([Input(str(tmp_path / "in"))])
    result = stage.process(tasks[0])
    assert result.documents_in == result.kept.num_rows + result.rejected.num_rows
    assert "pmc:PMC7654321" in result.kept.column("id").to_pylist()
    reasons = result.rejected.column("drop_reason").to_pylist()
    assert reasons and set(reasons) <= {"pmc_truncated", "xml_broken"}


def test_pmc_symlinked_tarball_is_a_rejected_row_not_followed(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    outside = write_tar(tmp_path / "outside.tar.gz", {"PMC9/a.nxml": JATS})
    (tmp_path / "in" / "linked.tar.gz").symlink_to(outside)
    stage = PmcStage(name="pmc")
    [task] = stage.plan([Input(str(tmp_path / "in"))])
    result = stage.process(task)
    assert result.kept.num_rows == 0
    assert result.rejected.column("drop_reason").to_pylist() == ["input_symlink"]
    assert str(outside) in result.rejected.column("drop_detail")[0].as_py()


class _Zeros(io.RawIOBase):
    """A stream of zero bytes, so a test can pack a huge member without holding it in memory."""

    def readinto(self, buffer) -> int:  # type: ignore[override]
        buffer[:] = bytes(len(buffer))
        return len(buffer)


def test_pmc_tarball_bomb_is_skipped_without_reading_it_into_memory(tmp_path: Path) -> None:
    import tracemalloc

    bomb = 300_000_000  # declared and real size of one member; compresses to about 300 KB
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("PMC3/article.nxml")
        info.size = bomb
        tar.addfile(info, _Zeros())
        info = tarfile.TarInfo("PMC4/article.nxml")
        info.size = len(JATS)
        tar.addfile(info, io.BytesIO(JATS))
    assert path.stat().st_size < 5_000_000
    stage = PmcStage(name="pmc")
    [task] = stage.plan([Input(str(path))])
    tracemalloc.start()
    try:
        result = stage.process(task)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000  # the 300 MB member was skipped while streaming, never held
    assert result.kept.column("title").to_pylist() == ["Walking after knee surgery"]
    assert result.rejected.column("drop_reason").to_pylist() == ["pmc_too_large"]
    assert "article.nxml: 300000000 bytes" in result.rejected.column("drop_detail")[0].as_py()
    assert result.documents_in == 2


def test_pmc_pdfs_held_for_a_package_are_capped(tmp_path: Path) -> None:
    tarball = write_tar(
        tmp_path / "many.tar.gz",
        {f"PMC5/supplement{n}.pdf": b"%PDF" + b"a" * 1000 for n in range(5)} | {"PMC5/a.nxml": JATS},
    )
    [item] = iter_tarball(tarball, "many", read_jats_file, max_package_bytes=3_500)
    assert item.doc.meta["pdf_skipped"] == ["supplement0.pdf", "supplement1.pdf", "supplement2.pdf"]
    assert len(item.doc.meta["skipped"]) == 2 and "would hold" in item.doc.meta["skipped"][0]


def test_pmc_real_packages_use_the_xml(evaldata: Path) -> None:
    root = evaldata / "pmc_pdf_jats"
    folder = next(p.parent for p in sorted(root.rglob("fulltext.xml")))
    [item] = iter_folder(folder, folder.name, read_jats_file)
    doc = item.doc
    assert doc.meta["format"] == "jats" and doc.meta["pmcid"] == folder.name
    assert doc.meta["pdf_skipped"] == ["fulltext.pdf"]
