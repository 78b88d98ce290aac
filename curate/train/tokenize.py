"""The `tokenize` step: token ids of every document, as Megatron-LM indexed datasets, per shard and merged.

One task per input shard encodes its documents with the user's tokenizer.json (the `tokenizers` library, no
special tokens added: the same ids, and so the same counts, as the `token_count` of `shard`, `mix` and
`curate stats`), appends the end-of-document token to each, and writes `<shard>.bin` / `<shard>.idx` (one
sequence per document, in row order) and `<shard>.tokens.json`. Kept rows are the shard's rows with a
`token_count` column (tokens without the end-of-document token). `finish` merges the shards, in name
order, into `train.bin/.idx` (and `validation.bin/.idx` from a mix's validation shards), and writes
`tokenize.json`: tokenizer, end-of-document id, dtype, and per shard and dataset the documents, tokens and
SHA-256 of each file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import ConfigError
from curate.io import read_json, read_parquet, write_json
from curate.layout import VALIDATION_PREFIX
from curate.schema import conform
from curate.stage import DERIVED, StageResult, TableStage, Task, empty_rejected
from curate.storage import StoragePath
from curate.tokens import ENCODE_BATCH, cached_tokenizer, tokenizer_file
from curate.train import megatron

log = logging.getLogger("curate")

REPORT = "tokenize.json"
PART_SUFFIX = ".tokens.json"
COUNT_COLUMN = "token_count"
# End-of-document tokens of common tokenizers, tried in order when `eod_token` is not given.
EOD_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eot_id|>", "[SEP]")


def encode(texts: list[str], tokenizer: Any, eod: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(tokens of every document back to back, each followed by eod; tokens per document without eod)."""
    parts, counts = [], np.zeros(len(texts), np.int64)
    encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)  # no offsets: faster
    for start in range(0, len(texts), ENCODE_BATCH):
        flat: list[int] = []
        for n, encoding in enumerate(
            encode_batch(texts[start : start + ENCODE_BATCH], add_special_tokens=False)
        ):
            ids = encoding.ids
            counts[start + n] = len(ids)
            flat.extend(ids)
            flat.append(eod)
        parts.append(np.array(flat, dtype))
    return (np.concatenate(parts) if parts else np.zeros(0, dtype)), counts


def eod_id(tokenizer: Any, eod_token: str | None) -> tuple[str, int]:
    """The end-of-document token and its id: the one named, else the first of EOD_CANDIDATES it knows."""
    for token in [eod_token] if eod_token else EOD_CANDIDATES:
        found = tokenizer.token_to_id(token)
        if found is not None:
            return token, int(found)
    if eod_token:
        raise ConfigError(f"eod_token {eod_token!r} is not in the tokenizer's vocabulary")
    raise ConfigError(
        f"the tokenizer has none of the usual end-of-document tokens ({', '.join(EOD_CANDIDATES)}): "
        "name its own with eod_token"
    )


@dataclass
class TokenizeStage(TableStage):
    """Token ids with the user's tokenizer, as Megatron .bin/.idx datasets per shard, merged per split."""

    step: ClassVar[str] = "tokenize"
    tokenizer: str | None = None  # a tokenizers JSON file (tokenizer.json), required
    eod_token: str | None = None  # default: the tokenizer's own end-of-text token
    merge: bool = True
    tokenizer_sha256: str = field(default="", metadata=DERIVED)  # of the file: another one recomputes

    def __post_init__(self) -> None:
        if not self.tokenizer:
            raise ConfigError("tokenize needs a tokenizer: the tokenizer.json of the model you will train")
        self.tokenizer, self.tokenizer_sha256 = tokenizer_file(self.tokenizer)
        loaded = cached_tokenizer(self.tokenizer, self.tokenizer_sha256)
        self.eod_token, self.eod = eod_id(loaded, self.eod_token)
        self.vocab_size = int(loaded.get_vocab_size(with_added_tokens=True))
        self.dtype = megatron.token_dtype(self.vocab_size)

    def process(self, task: Task) -> StageResult:
        table = conform(pa.concat_tables([read_parquet(p) for p in task.inputs], promote_options="default"))
        tokenizer = cached_tokenizer(self.tokenizer, self.tokenizer_sha256)
        texts = pc.fill_null(table.column("text"), "").to_pylist()
        tokens, counts = encode(texts, tokenizer, self.eod, self.dtype)
        data, index = tokens.tobytes(), megatron.index_bytes(counts + 1, self.dtype)
        part = {
            "documents": table.num_rows,
            "tokens": int(counts.sum()),
            "tokens_with_eod": int(len(tokens)),
            "bin_bytes": len(data),
            "bin_sha256": hashlib.sha256(data).hexdigest(),
            "idx_sha256": hashlib.sha256(index).hexdigest(),
        }
        if COUNT_COLUMN in table.column_names:
            table = table.drop_columns([COUNT_COLUMN])
        kept = table.append_column(COUNT_COLUMN, pa.array(counts, pa.int64()))
        sidecars = {
            f"{task.name}.bin": data,
            f"{task.name}.idx": index,
            f"{task.name}{PART_SUFFIX}": json.dumps(part, indent=2, sort_keys=True).encode(),
        }
        return StageResult(kept=kept, rejected=empty_rejected(kept.schema), sidecars=sidecars)

    def finish(self, out_dir: Path | StoragePath, manifest: dict[str, Any]) -> None:
        names = sorted(Path(o["path"]).stem for o in manifest["outputs"])
        for suffix in (".bin", ".idx", PART_SUFFIX):
            for f in out_dir.glob(f"*{suffix}"):
                if f.name.removesuffix(suffix) not in names and not _is_merged(f.name):
                    f.unlink()
        parts = {n: read_json(out_dir / f"{n}{PART_SUFFIX}") for n in names}
        report: dict[str, Any] = {
            "tokenizer": Path(self.tokenizer or "").name,
            "tokenizer_sha256": self.tokenizer_sha256,
            "vocab_size": self.vocab_size,
            "eod_token": self.eod_token,
            "eod_id": self.eod,
            "dtype": str(self.dtype),
            "documents": sum(p["documents"] for p in parts.values()),
            "tokens": sum(p["tokens"] for p in parts.values()),
            "tokens_with_eod": sum(p["tokens_with_eod"] for p in parts.values()),
            "shards": parts,
            "datasets": {},
        }
        if self.merge and names:
            if isinstance(out_dir, StoragePath):
                log.warning(
                    "stage %s: merged datasets are written to local folders only; not merging", self.name
                )
            else:
                report["datasets"] = self._merged(out_dir, parts)
        write_json(report, out_dir / REPORT)
        manifest["tokenize"] = report

    def _merged(self, out_dir: Path, parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """train (and validation) datasets from the shards; kept as they are when made from the same parts."""
        try:
            previous = read_json(out_dir / REPORT).get("datasets") or {}
        except (OSError, ValueError):
            previous = {}
        datasets = {}
        for split in ("train", "validation"):
            mine = [n for n in parts if n.startswith(VALIDATION_PREFIX) == (split == "validation")]
            if not mine:
                continue
            sources = {n: parts[n]["bin_sha256"] for n in mine}
            old = previous.get(split) or {}
            files = [out_dir / f"{split}{s}" for s in (".bin", ".idx")]
            intact = all(f.exists() for f in files) and files[0].stat().st_size == old.get("bin_bytes")
            if old.get("parts") == sources and intact:
                datasets[split] = old
                continue
            made = megatron.merge([str(out_dir / n) for n in mine], str(out_dir / split))
            tokens = sum(parts[n]["tokens"] for n in mine)
            datasets[split] = {"prefix": split, "tokens": tokens, **made, "parts": sources}
        return datasets


def _is_merged(name: str) -> bool:
    return name in {f"{s}{x}" for s in ("train", "validation") for x in (".bin", ".idx")}
