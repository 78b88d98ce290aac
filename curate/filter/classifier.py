"""A fastText quality classifier: train it on kept against rejected text, then filter by its score."""

from __future__ import annotations

import random
import re
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from curate.errors import ConfigError
from curate.io import parquet_files, read_parquet, sha256_file
from curate.schema import Verdict
from curate.stage import DERIVED, FilterStage

POSITIVE, NEGATIVE = "__label__keep", "__label__drop"
MAX_CHARS = 20_000  # the words of a document's start say enough about its quality
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_LETTER = re.compile(r"[^\W\d_]")


class TrainingError(ConfigError):
    """Training could not produce a model; the message says what to change."""


def normalise(text: str) -> str:
    """One lowercase line of space-separated tokens, as the classifier sees a document."""
    return " ".join(_TOKEN.findall(text[:MAX_CHARS].lower()))


def read_texts(path: str | Path) -> list[str]:
    """The `text` column of a stage directory's kept shards (or of the Parquet files given)."""
    files = parquet_files([path])
    if not files:
        raise TrainingError(f"no Parquet files in {path} (for rejected rows pass DIR/rejected)")
    return [t for f in files for t in read_parquet(f, ["text"]).column("text").to_pylist() if t]


def train_classifier(
    positive: list[str],
    negative: list[str],
    out: str | Path,
    *,
    epoch: int = 20,
    lr: float = 0.2,
    word_ngrams: int = 2,
    dim: int = 50,
    bucket: int = 200_000,
    seed: int = 0,
) -> dict[str, int]:
    """Train a fastText model on positive and negative texts and save it; returns the example counts."""
    import fasttext

    lines = [f"{POSITIVE} {s}" for s in map(normalise, positive) if s]
    lines += [f"{NEGATIVE} {s}" for s in map(normalise, negative) if s]
    counts = {"positive": sum(line.startswith(POSITIVE) for line in lines)}
    counts["negative"] = len(lines) - counts["positive"]
    if not counts["positive"] or not counts["negative"]:
        raise TrainingError(f"need text on both sides to train, got {counts}")
    random.Random(seed).shuffle(lines)  # fastText's SGD reads the file in order
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.txt"
        data.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="replace")
        try:
            # One thread and a fixed seed make the model reproducible from the same data.
            model = fasttext.train_supervised(
                str(data),
                epoch=epoch,
                lr=lr,
                wordNgrams=word_ngrams,
                # fastText's default (2M buckets x 100 dims) writes an 800 MB model; 40 MB is plenty here.
                dim=dim,
                bucket=bucket,
                minCount=1,
                thread=1,
                seed=seed,
                verbose=0,
            )
        except RuntimeError as exc:
            if "NaN" not in str(exc):
                raise
            raise TrainingError(
                f"fastText training diverged ({exc}). This happens on very small or trivially separable "
                f"data ({counts['positive']} + {counts['negative']} examples): add examples or lower "
                f"the learning rate (now {lr})."
            ) from exc
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(out))
    return counts


@lru_cache(maxsize=2)
def _load(path: str, sha256: str):
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None  # load_model's deprecation notice is noise
    return fasttext.load_model(path)


def score_texts(model_path: str, sha256: str, texts: list[str]) -> list[float | None]:
    """Probability of 'keep' for each text; None for text without letters."""
    lines = [normalise(t) if t and _LETTER.search(t[:MAX_CHARS]) else "" for t in texts]
    todo = [i for i, line in enumerate(lines) if line]
    scores: list[float | None] = [None] * len(texts)
    if todo:
        labels, probs = _load(model_path, sha256).predict([lines[i] for i in todo], k=2)
        for i, names, values in zip(todo, labels, probs, strict=True):
            by_label = dict(zip(names, values, strict=True))
            scores[i] = min(1.0, float(by_label.get(POSITIVE, 0.0)))
    return scores


@dataclass
class ClassifierFilter(FilterStage):
    """Keep documents that a trained fastText quality model scores at or above the threshold."""

    step: ClassVar[str] = "classify"
    model: str = ""
    threshold: float = 0.5
    model_sha256: str = field(default="", metadata=DERIVED)  # of the file: a retrained model recomputes

    def __post_init__(self) -> None:
        path = Path(self.model)
        if not self.model or not path.is_file():
            raise ConfigError(
                f"quality model not found: {self.model!r} "
                "(train one with `curate quality train POS NEG --out FILE`)"
            )
        self.model = str(path.resolve())
        self.model_sha256 = sha256_file(path)

    def filter_table(self, table: pa.Table) -> tuple[pa.Table, list[Verdict]]:
        scores = score_texts(self.model, self.model_sha256, table.column("text").to_pylist())
        table = table.append_column(
            "quality_score", pa.array([None if s is None else round(s, 4) for s in scores], pa.float64())
        )
        return table, [self._verdict(score) for score in scores]

    def _verdict(self, score: float | None) -> Verdict:
        if score is None:
            return False, "empty", "no letters to score"
        if not score >= self.threshold:
            return False, "classifier", f"quality score {score:.3f} (threshold {self.threshold})"
        return True
