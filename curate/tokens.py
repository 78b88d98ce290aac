"""Token counts per document: exact with a `tokenizers` tokenizer.json, else approximate (characters / 4).

Shared by stats, mix, shard and tokenize, so every report counts a document's tokens the same way. Every
number that comes from the approximation carries a label (`TokenCounter.label`, APPROXIMATE_RULE), so a
report never shows an estimate as if it were a tokenizer's count.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import ConfigError
from curate.io import sha256_file

CHARS_PER_TOKEN = 4
APPROXIMATE_RULE = f"characters / {CHARS_PER_TOKEN} (approximate, no tokenizer)"
APPROXIMATE_LABEL = f"approximate: characters / {CHARS_PER_TOKEN} (no tokenizer configured)"
ENCODE_BATCH = 512  # texts per encode_batch call: bounds the memory of the encodings list


def load_tokenizer(tokenizer: str | os.PathLike) -> Any:
    """A Tokenizer from a tokenizer.json file; a clear error if the package or file is missing."""
    try:
        from tokenizers import Tokenizer  # optional and heavy: imported only when token counts are asked for
    except ImportError as e:
        raise ImportError(
            f"counting tokens with {str(tokenizer)!r} needs the `tokenizers` package: pip install tokenizers "
            "(or leave out the tokenizer to get tokens_approximate = characters / 4)"
        ) from e
    path = Path(tokenizer)
    if not path.is_file():
        raise ConfigError(f"tokenizer file not found: {path} (expected a tokenizer.json saved by tokenizers)")
    return Tokenizer.from_file(str(path))


def count_tokens(text: pa.Array | pa.ChunkedArray | Sequence[str], tokenizer: Any) -> pa.Array:
    """Tokens per document with a tokenizers.Tokenizer (no special tokens); nulls count 0."""
    if isinstance(text, pa.Array | pa.ChunkedArray):
        text = pc.fill_null(text, "").to_pylist()
    encodings = tokenizer.encode_batch(list(text), add_special_tokens=False)
    return pa.array([len(e.ids) for e in encodings], pa.int64())


def approximate_tokens(characters: int | np.ndarray | pa.Array) -> Any:
    """The token count used without a tokenizer: characters / 4, rounded (always labelled approximate)."""
    if isinstance(characters, pa.Array | pa.ChunkedArray):
        return pc.cast(pc.round(pc.divide(pc.cast(characters, pa.float64()), CHARS_PER_TOKEN)), pa.int64())
    if isinstance(characters, np.ndarray):
        return np.rint(characters / CHARS_PER_TOKEN).astype(np.int64)
    return round(characters / CHARS_PER_TOKEN)


def tokenizer_file(path: str | os.PathLike) -> tuple[str, str]:
    """(absolute path, SHA-256) of a tokenizer.json named in a stage's options; ConfigError when missing."""
    found = Path(path)
    if not found.is_file():
        raise ConfigError(
            f"tokenizer file not found: {found} (expected a tokenizer.json saved by tokenizers)"
        )
    return str(found.resolve()), sha256_file(found)


@functools.lru_cache(maxsize=4)
def cached_tokenizer(path: str, sha256: str) -> Any:
    """The loaded tokenizer of a file, kept per worker process (a few, keyed by path and content)."""
    # Keyed by content hash too, so a tokenizer file replaced on disk is reloaded in a long-lived worker.
    return load_tokenizer(path)


class TokenCounter:
    """Counts tokens of texts with a tokenizer file, or approximately when none is given."""

    def __init__(self, tokenizer: str | os.PathLike | None = None, sha256: str | None = None):
        self.path = str(tokenizer) if tokenizer else None
        self.sha256 = (sha256 or sha256_file(self.path)) if self.path else None

    @property
    def approximate(self) -> bool:
        """True when counts are estimates (no tokenizer)."""
        return self.path is None

    @property
    def label(self) -> str:
        """How the counts were made, for reports: the tokenizer file, or the approximation rule."""
        return f"tokenizer: {self.path}" if self.path else APPROXIMATE_LABEL

    def count(self, text: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Tokens per text as float64 (nulls count as empty texts)."""
        # The same per-document rules as `curate stats`, so the two agree on the same rows.
        text = pc.fill_null(text, "")
        if self.path is None:
            chars = pc.utf8_length(text).to_numpy(zero_copy_only=False)
            return approximate_tokens(chars).astype(np.float64)
        tokenizer = cached_tokenizer(self.path, self.sha256)
        counts = np.zeros(len(text), dtype=np.float64)
        for start in range(0, len(text), ENCODE_BATCH):
            batch = count_tokens(text.slice(start, ENCODE_BATCH), tokenizer)
            counts[start : start + len(batch)] = batch.to_numpy()
        return counts
