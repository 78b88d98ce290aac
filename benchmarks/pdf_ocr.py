"""OCR accuracy and speed: curate's PDF parser on scans, next to plain Tesseract on the same images, one run.

1. Hard cases with ground truth (../shared/evaldata/pdf_hard_cases): the six scanned variants of `linn`
   (plain, skewed, turned and skewed, four turns, CCITT, JBIG2) against `linn.txt` (repeated once per page
   for the four-page `cardinal.pdf`): word F1 (bag of tokens, as in benchmarks/pdf_fidelity.py) and
   character error rate (edit distance over the reference's length, both texts lowercased, NFKC, spaces
   collapsed; reading order counts, so two-column pages read in another order cost CER, not F1).
2. Born-digital PMC articles (../shared/evaldata/pmc_pdf_jats) rendered at 200 dpi in grey into image-only
   PDFs, so the JATS text is the reference: token precision/recall/F1 of curate with OCR, and of the text
   path on the original PDFs (which must OCR no page).
3. Speed, CPU seconds in this process and its children (= per core; Tesseract runs single-threaded):
   curate's OCR path (render, orientation check, recognition, layout), the text path on the original PDFs,
   and the `tesseract` command line on the same 200 dpi page images (`--psm 3`, plain text out, process
   start included), each in pages per second per core.

    .venv/bin/python benchmarks/pdf_ocr.py                  # 6 shortest PMC articles (about 50 pages)
    .venv/bin/python benchmarks/pdf_ocr.py --articles 25    # all 25 (287 pages, ~10 min on one core)

Prints a table; writes benchmarks/results/pdf_ocr.json (machine, date and versions inside).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # per-core figures: Tesseract's OpenMP threads off

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import pymupdf  # noqa: E402
from pdf_fidelity import prf  # noqa: E402

from curate.parse.jats import read_jats  # noqa: E402
from curate.parse.pdf import ocr, parse_pdf  # noqa: E402
from curate.schema import Rejection  # noqa: E402

EVALDATA = REPO.parent / "shared" / "evaldata"
HARD = EVALDATA / "pdf_hard_cases" / "ocrmypdf" / "tests" / "resources"
LINN_VARIANTS = ("linn.pdf", "skew.pdf", "rotated_skew.pdf", "cardinal.pdf", "ccitt.pdf", "jbig2.pdf")
DPI = 200


def cpu() -> float:
    """CPU seconds of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def cer(predicted: str, reference: str) -> float:
    """Character error rate: Levenshtein distance / reference length (numpy, one row at a time)."""
    a, b = normalised(predicted), normalised(reference)
    if not b:
        return float(bool(a))
    codes_b = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    index = np.arange(len(b) + 1)
    row = index.copy()
    for ch in a:
        substitution = row[:-1] + (codes_b != ord(ch))
        deletion = row[1:] + 1
        best = np.empty_like(row)
        best[0] = row[0] + 1
        best[1:] = np.minimum(substitution, deletion)
        # Insertions chain along the row: best[j] = min over k <= j of best[k] + (j - k).
        row = np.minimum.accumulate(best - index) + index
    return float(row[-1]) / len(b)


def hard_cases() -> list[dict]:
    """Word F1 and CER of curate on each scanned linn variant."""
    reference = (HARD / "linn.txt").read_text(encoding="utf-8")
    rows = []
    for name in LINN_VARIANTS:
        start = cpu()
        try:
            doc = parse_pdf(HARD / name)
        except Rejection as rejection:
            rows.append({"file": name, "error": f"{rejection.reason}: {rejection.detail}"})
            continue
        seconds = cpu() - start
        pages = int(doc.meta["pages"])
        expected = "\n".join([reference] * pages)
        rows.append(
            {
                "file": name,
                "pages": pages,
                "word_f1": round(prf(doc.text, expected)[2], 4),
                "cer": round(cer(doc.text, expected), 4),
                "mean_confidence": doc.meta["ocr"]["mean_confidence"],
                "rotated": doc.meta["ocr"].get("rotated", {}),
                "cpu_s": round(seconds, 2),
            }
        )
    return rows


def render_scans(pdf: Path, out_pdf: Path, image_dir: Path) -> int:
    """The PDF's pages as 200 dpi grey images: one image-only PDF, and PNG files for the tesseract CLI."""
    image_dir.mkdir(parents=True, exist_ok=True)
    with pymupdf.open(pdf) as source, pymupdf.open() as scan:
        for number, page in enumerate(source):
            pixmap = page.get_pixmap(dpi=DPI, colorspace=pymupdf.csGRAY)
            pixmap.save(image_dir / f"{number:04d}.png")
            target = scan.new_page(width=page.rect.width, height=page.rect.height)
            target.insert_image(target.rect, pixmap=pixmap)
        scan.save(out_pdf, deflate=True)
        return source.page_count


def tesseract_cli(images: list[Path], tessdata: Path) -> tuple[list[str], float]:
    """Plain Tesseract on each image, one process per page as a user runs it; texts and CPU seconds."""
    start = cpu()
    texts = []
    for image in images:
        done = subprocess.run(
            ["tesseract", str(image), "-", "--psm", "3", "--tessdata-dir", str(tessdata), "-l", "eng"],
            capture_output=True,
            text=True,
            check=True,
        )
        texts.append(done.stdout)
    return texts, cpu() - start


def _scores(predicted: str, reference: str) -> dict[str, float]:
    return dict(
        zip(("precision", "recall", "f1"), (round(x, 4) for x in prf(predicted, reference)), strict=True)
    )


def pmc(articles: int, tmp: Path) -> tuple[list[dict], dict]:
    """Rendered PMC articles: F1 against JATS for OCR and the text path, and the three speeds."""
    root = EVALDATA / "pmc_pdf_jats"
    with (root / "index.csv").open(newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["pdf_pages"]))[:articles]
    has_cli = shutil.which("tesseract") is not None
    out, totals = (
        [],
        {"ocr_cpu_s": 0.0, "text_cpu_s": 0.0, "cli_cpu_s": 0.0, "pages": 0, "text_pages_ocred": 0},
    )
    for row in rows:
        reference = read_jats(root / row["xml"]).text
        scan, images = tmp / f"{row['pmcid']}.pdf", tmp / row["pmcid"]
        pages = render_scans(root / row["pdf"], scan, images)
        start = cpu()
        born = parse_pdf(root / row["pdf"])
        text_s = cpu() - start
        start = cpu()
        scanned = parse_pdf(scan)
        ocr_s = cpu() - start
        entry = {
            "pmcid": row["pmcid"],
            "pages": pages,
            "ocr": _scores(scanned.text, reference),
            "text": _scores(born.text, reference),
            "ocr_pages": len(scanned.meta.get("ocr", {}).get("pages", [])),
            "text_path_ocr_pages": len(born.meta.get("ocr", {}).get("pages", [])),
            "mean_confidence": scanned.meta.get("ocr", {}).get("mean_confidence"),
        }
        if has_cli:
            texts, cli_s = tesseract_cli(sorted(images.glob("*.png")), ocr.tessdata())
            entry["tesseract_cli"] = _scores("\n".join(texts), reference)
            totals["cli_cpu_s"] += cli_s
        totals["ocr_cpu_s"] += ocr_s
        totals["text_cpu_s"] += text_s
        totals["pages"] += pages
        totals["text_pages_ocred"] += entry["text_path_ocr_pages"]
        out.append(entry)
        print(
            f"{row['pmcid']:12} {pages:>3} pages  OCR F1 {entry['ocr']['f1']:.3f}  "
            f"text F1 {entry['text']['f1']:.3f}"
            + (f"  tesseract F1 {entry['tesseract_cli']['f1']:.3f}" if has_cli else "")
            + f"  ({ocr_s / pages:.2f} s/page OCR)",
            flush=True,
        )
    speed = {
        name: round(totals["pages"] / totals[f"{name}_cpu_s"], 3) if totals[f"{name}_cpu_s"] else None
        for name in ("ocr", "text", "cli")
    }
    summary = {
        "pages": totals["pages"],
        "median_f1": {
            "ocr": round(statistics.median(e["ocr"]["f1"] for e in out), 4),
            "text": round(statistics.median(e["text"]["f1"] for e in out), 4),
            **(
                {"tesseract_cli": round(statistics.median(e["tesseract_cli"]["f1"] for e in out), 4)}
                if has_cli
                else {}
            ),
        },
        "pages_per_s_per_core": {
            "curate_ocr": speed["ocr"],
            "curate_text": speed["text"],
            "tesseract_cli": speed["cli"],
        },
        "text_path_pages_ocred": totals["text_pages_ocred"],
    }
    return out, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=6, help="PMC articles to render (shortest first)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if not (EVALDATA / "pmc_pdf_jats" / "index.csv").exists() or not HARD.is_dir():
        sys.exit(f"evaluation data not found under {EVALDATA}")
    if why := ocr.unavailable("eng"):
        sys.exit(f"OCR unavailable: {why}")
    print("hard cases (linn.txt as reference)")
    hard = hard_cases()
    for row in hard:
        print(
            f"  {row['file']:18} "
            + (
                row.get("error")
                or f"F1 {row['word_f1']:.3f}  CER {row['cer']:.3f}  "
                f"confidence {row['mean_confidence']}  turned {row['rotated']}  {row['cpu_s']:.1f} s CPU"
            )
        )
    print(f"\nPMC articles rendered at {DPI} dpi (JATS as reference)")
    with tempfile.TemporaryDirectory(prefix="pdf-ocr-") as tmp:
        articles, summary = pmc(args.articles, Path(tmp))
    print(
        f"\nmedian F1: OCR {summary['median_f1']['ocr']:.3f}, text path {summary['median_f1']['text']:.3f}"
        + (
            f", tesseract CLI {summary['median_f1']['tesseract_cli']:.3f}"
            if "tesseract_cli" in summary["median_f1"]
            else ""
        )
        + f"; pages/s/core: {summary['pages_per_s_per_core']}; text-path pages OCRed: "
        f"{summary['text_path_pages_ocred']}"
    )
    report = {
        "benchmark": "pdf_ocr",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "load_average_before": os.getloadavg(),
        "engine": ocr.engine_version(),
        "pymupdf": pymupdf.VersionBind,
        "dpi": DPI,
        "hard_cases": hard,
        "pmc": {"articles": articles, "summary": summary},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "pdf_ocr.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
