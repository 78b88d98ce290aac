"""Megatron-LM's MMap indexed dataset (`.bin` + `.idx`), written and read without torch or Megatron.

The layout, as megatron/core/datasets/indexed_dataset.py writes it (_IndexWriter) and reads it (_IndexReader),
all little-endian:

    .idx  magic b"MMIDIDX\\x00\\x00" (9 bytes) | version uint64 = 1 | dtype code uint8
          | sequence count uint64 | document count uint64 (= documents + 1)
          | sequence lengths int32[sequences] | sequence pointers int64[sequences] (byte offsets into .bin)
          | document indices int64[documents + 1] (0, then the sequence index where each document ends)
    .bin  the tokens of every sequence, back to back, in the dtype (no header)

Dtype codes: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16; Megatron's
preprocessing writes uint16 when the vocabulary has fewer than 65,500 tokens, else int32. As its
preprocess_data.py does without sentence splitting, each document is one sequence, its tokens followed by
the end-of-document token.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from curate.io import sha256_file

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, sequence count, document count
DTYPE_CODES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.int8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.int64): 5,
    np.dtype(np.float64): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.uint16): 8,
}
UINT16_VOCAB = 65_500  # Megatron's DType.optimal_dtype: uint16 below this many token ids, else int32
COPY_CHUNK = 1 << 24  # bytes per read when merging .bin files


class FormatError(ValueError):
    """A file that is not a Megatron MMap index (bad magic, version, dtype code or sizes)."""


def token_dtype(vocab_size: int) -> np.dtype:
    """The token dtype Megatron picks for a vocabulary size."""
    return np.dtype(np.uint16) if vocab_size < UINT16_VOCAB else np.dtype(np.int32)


def index_bytes(lengths: np.ndarray, dtype: np.dtype) -> bytes:
    """The .idx file of documents (one sequence each) with these token lengths."""
    lengths = np.asarray(lengths, np.int32)
    pointers = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1].astype(np.int64) * np.dtype(dtype).itemsize, out=pointers[1:])
    documents = np.arange(len(lengths) + 1, dtype=np.int64)
    header = HEADER.pack(MAGIC, VERSION, DTYPE_CODES[np.dtype(dtype)], len(lengths), len(documents))
    return header + lengths.astype("<i4").tobytes() + pointers.astype("<i8").tobytes() + documents.tobytes()


@dataclass
class Index:
    """The arrays of an .idx file (memory-mapped: a large index is not read into memory)."""

    dtype: np.dtype
    lengths: np.ndarray  # int32, tokens per sequence
    pointers: np.ndarray  # int64, byte offset of each sequence in .bin
    documents: np.ndarray  # int64, document boundaries in sequences (first 0, last = sequence count)

    @property
    def tokens(self) -> int:
        """Tokens in the .bin file (end-of-document tokens included)."""
        return int(self.lengths.sum(dtype=np.int64))


def read_index(path: str | os.PathLike) -> Index:
    """An .idx file's header and arrays; FormatError when it is not one."""
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER.size:
        raise FormatError(f"{path}: {size} bytes, shorter than an index header")
    with open(path, "rb") as f:
        magic, version, code, sequences, documents = HEADER.unpack(f.read(HEADER.size))
    if magic != MAGIC or version != VERSION:
        raise FormatError(f"{path}: not a Megatron MMap index (magic {magic!r}, version {version})")
    dtypes = {v: k for k, v in DTYPE_CODES.items()}
    if code not in dtypes:
        raise FormatError(f"{path}: unknown dtype code {code}")
    expected = HEADER.size + 12 * sequences + 8 * documents
    if size != expected:
        raise FormatError(f"{path}: {size} bytes, the header says {expected}")
    data = np.memmap(path, dtype=np.uint8, mode="r")
    at = HEADER.size
    lengths = data[at : at + 4 * sequences].view("<i4")
    at += 4 * sequences
    pointers = data[at : at + 8 * sequences].view("<i8")
    at += 8 * sequences
    return Index(dtypes[code], lengths, pointers, data[at : at + 8 * documents].view("<i8"))


def read_tokens(prefix: str | os.PathLike, index: Index | None = None) -> list[np.ndarray]:
    """Every sequence of a dataset (PREFIX.bin / PREFIX.idx) as arrays of token ids."""
    index = index or read_index(f"{prefix}.idx")
    data = np.memmap(f"{prefix}.bin", dtype=index.dtype, mode="r") if index.tokens else np.zeros(0)
    starts = index.pointers // index.dtype.itemsize
    return [np.asarray(data[s : s + n]) for s, n in zip(starts.tolist(), index.lengths.tolist(), strict=True)]


def merge(prefixes: list[str], out_prefix: str) -> dict[str, object]:
    """Concatenate datasets into OUT.bin / OUT.idx (as Megatron's IndexedDatasetBuilder.add_index does).

    Memory stays bounded: the indices are memory-mapped and written part by part, the .bin files copied in
    chunks. Both files are written under temporary names and renamed; returns counts (all tokens in the
    .bin, end-of-document tokens included) and SHA-256s."""
    indices = [read_index(f"{p}.idx") for p in prefixes]
    dtypes = {i.dtype for i in indices}
    if len(dtypes) > 1:
        raise FormatError(f"cannot merge datasets of different token dtypes: {sorted(map(str, dtypes))}")
    dtype = dtypes.pop() if dtypes else np.dtype(np.uint16)
    sequences = sum(len(i.lengths) for i in indices)
    documents = sum(len(i.documents) - 1 for i in indices)
    out_bin, out_idx = Path(f"{out_prefix}.bin"), Path(f"{out_prefix}.idx")
    tmp_bin, tmp_idx = out_bin.with_name(f".{out_bin.name}.tmp"), out_idx.with_name(f".{out_idx.name}.tmp")
    try:
        bin_sha = hashlib.sha256()
        with open(tmp_bin, "wb") as out:
            for p in prefixes:
                with open(f"{p}.bin", "rb") as f:
                    _copy(f, out, bin_sha)
        with open(tmp_idx, "wb") as out:
            out.write(HEADER.pack(MAGIC, VERSION, DTYPE_CODES[dtype], sequences, documents + 1))
            for i in indices:
                out.write(np.ascontiguousarray(i.lengths).tobytes())
            offset = 0
            for i, p in zip(indices, prefixes, strict=True):
                out.write((i.pointers + offset).astype("<i8").tobytes())
                offset += os.path.getsize(f"{p}.bin")
            out.write(np.zeros(1, "<i8").tobytes())
            base = 0
            for i in indices:
                out.write((i.documents[1:] + base).astype("<i8").tobytes())
                base += len(i.lengths)
        os.replace(tmp_bin, out_bin)
        os.replace(tmp_idx, out_idx)
    finally:
        tmp_bin.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)
    return {
        "documents": documents,
        "tokens_with_eod": sum(i.tokens for i in indices),
        "bin_bytes": out_bin.stat().st_size,
        "bin_sha256": bin_sha.hexdigest(),
        "idx_sha256": sha256_file(out_idx),
    }


def _copy(src: BinaryIO, dst: BinaryIO, digest: Any) -> None:
    while chunk := src.read(COPY_CHUNK):
        digest.update(chunk)
        dst.write(chunk)
