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
   curate's OCR path (skew and orientation checks, render, recognition, layout), the text path on the
   original PDFs, and plain Tesseract on the same 200 dpi page images with its own defaults: the
   `tesseract` command line (`--psm 3`, plain text out, a process per page as a user runs it) and the same
   library curate uses, in this process (tesserocr, `PSM.AUTO`, model loaded once), each in pages per
   second per core. With `--repeat N` each article's timings are taken N times and the fastest kept.

    .venv/bin/python benchmarks/pdf_ocr.py                  # 6 shortest PMC articles (about 50 pages)
    .venv/bin/python benchmarks/pdf_ocr.py --articles 25    # all 25 (287 pages, ~15 min on one core)

Prints a table; writes benchmarks/results/pdf_ocr.json (machine, date and versions inside).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
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
from _results import write_results  # noqa: E402
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


# Plain Tesseract through the library curate uses, in a fresh process: some of Tesseract's variables are
# process-wide, and curate's instance sets its own.
_PLAIN_API = """
import json, sys
from tesserocr import PSM, PyTessBaseAPI
with PyTessBaseAPI(path=sys.argv[1], lang="eng", psm=PSM.AUTO) as api:
    texts = []
    for image in sys.argv[2:]:
        api.SetImageFile(image)
        texts.append(api.GetUTF8Text())
print(json.dumps(texts))
"""


def tesseract_api(images: list[Path], tessdata: Path) -> tuple[list[str], float]:
    """Plain Tesseract (tesserocr with its defaults, the model loaded once) on each image; texts, CPU s."""
    start = cpu()
    done = subprocess.run(
        [sys.executable, "-c", _PLAIN_API, str(tessdata), *map(str, images)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout), cpu() - start


def _scores(predicted: str, reference: str) -> dict[str, float]:
    return dict(
        zip(("precision", "recall", "f1"), (round(x, 4) for x in prf(predicted, reference)), strict=True)
    )


def pmc(articles: int, tmp: Path, repeat: int) -> tuple[list[dict], dict]:
    """Rendered PMC articles: F1 against JATS for OCR, the text path and plain Tesseract, and their speeds."""
    root = EVALDATA / "pmc_pdf_jats"
    with (root / "index.csv").open(newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["pdf_pages"]))[:articles]
    plain = {"tesseract_api": tesseract_api}
    if shutil.which("tesseract"):
        plain["tesseract_cli"] = tesseract_cli
    methods = ["curate_ocr", "curate_text", *plain]
    seconds = dict.fromkeys(methods, 0.0)
    out, pages_total, text_pages_ocred = [], 0, 0
    for row in rows:
        reference = read_jats(root / row["xml"]).text
        scan, image_dir = tmp / f"{row['pmcid']}.pdf", tmp / row["pmcid"]
        pages = render_scans(root / row["pdf"], scan, image_dir)
        images = sorted(image_dir.glob("*.png"))
        fastest = dict.fromkeys(methods, float("inf"))
        texts: dict[str, str] = {}
        for _ in range(repeat):
            for method in methods:
                start = cpu()
                if method == "curate_ocr":
                    scanned = parse_pdf(scan)
                    texts[method] = scanned.text
                elif method == "curate_text":
                    born = parse_pdf(root / row["pdf"])
                    texts[method] = born.text
                else:
                    texts[method] = "\n".join(plain[method](images, ocr.tessdata())[0])
                fastest[method] = min(fastest[method], cpu() - start)
        entry = {
            "pmcid": row["pmcid"],
            "pages": pages,
            **{method: _scores(texts[method], reference) for method in methods},
            "ocr_pages": len(scanned.meta.get("ocr", {}).get("pages", [])),
            "text_path_ocr_pages": len(born.meta.get("ocr", {}).get("pages", [])),
            "mean_confidence": scanned.meta.get("ocr", {}).get("mean_confidence"),
            "cpu_s": {method: round(fastest[method], 3) for method in methods},
        }
        for method in methods:
            seconds[method] += fastest[method]
        pages_total += pages
        text_pages_ocred += entry["text_path_ocr_pages"]
        out.append(entry)
        print(
            f"{row['pmcid']:12} {pages:>3} pages  F1 "
            + "  ".join(f"{method} {entry[method]['f1']:.3f}" for method in methods)
            + f"  ({fastest['curate_ocr'] / pages:.2f} s/page OCR)",
            flush=True,
        )
    speed = {method: round(pages_total / seconds[method], 3) for method in methods}
    summary = {
        "pages": pages_total,
        "median_f1": {m: round(statistics.median(e[m]["f1"] for e in out), 4) for m in methods},
        "pages_per_s_per_core": speed,
        "curate_ocr_vs_tesseract_api": round(speed["curate_ocr"] / speed["tesseract_api"], 2),
        "text_path_pages_ocred": text_pages_ocred,
    }
    return out, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=6, help="PMC articles to render (shortest first)")
    parser.add_argument("--repeat", type=int, default=1, help="timings per article (the fastest is kept)")
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
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pdf-ocr-") as tmp:
        articles, summary = pmc(args.articles, Path(tmp), args.repeat)
    print(f"\n{'':14}{'median F1':>10}{'pages/s/core':>14}")
    for method, f1 in summary["median_f1"].items():
        print(f"{method:14}{f1:>10.3f}{summary['pages_per_s_per_core'][method]:>14.3f}")
    print(
        f"curate OCR / plain Tesseract (same library, same images): "
        f"{summary['curate_ocr_vs_tesseract_api']:.2f}x; text-path pages OCRed: "
        f"{summary['text_path_pages_ocred']}"
    )
    report = {
        "load_average_before": load,
        "repeat": args.repeat,
        "engine": ocr.engine_version(),
        "model": str(ocr.tessdata() / "eng.traineddata"),
        "pymupdf": pymupdf.VersionBind,
        "dpi": DPI,
        "curate_ocr_settings": {"dpi": ocr.DPI, "squeeze": ocr.SQUEEZE, "tesseract": ocr._VARIABLES},
        "hard_cases": hard,
        "pmc": {"articles": articles, "summary": summary},
    }
    write_results("pdf_ocr", report, args.out)


if __name__ == "__main__":
    main()
