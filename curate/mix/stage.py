"""The `mix` step: sample components (shard sets, or source tags) to target shares of tokens, with a seed.

Tasks: one `train-...` and (with a validation fraction) one `validation-...` task per input file. The global
pass (prepare) counts every document's tokens, in parallel, one task per file, and the driver decides the
copies of every document (it holds about 25 bytes per document); each task then writes its file's share.

How the counts express sampling (documents in = kept + rejected + errored still holds per task):
  - a document drawn c >= 1 times is kept c times; the first copy keeps its id, copy k gets the id suffix
    `#copy{k}`, and each extra copy counts as one more document in (the stage makes it);
  - a document drawn 0 times is rejected with reason `not_sampled` (it is not lost: a later mix may draw it);
  - a document whose source tag belongs to no component is rejected with reason `mix_no_component`;
  - a JSONL line that is not a JSON object with a string `text` is rejected (`jsonl_broken`, `jsonl_no_text`).
Kept rows get `component`, `split` ("train"/"validation") and `copy` (1 for the original) columns.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from curate.errors import ConfigError, MissingInput
from curate.io import (
    input_stream,
    parquet_files,
    parquet_schema,
    read_parquet,
    write_json,
)
from curate.layout import MANIFEST, STATE_FILE, TMP_MARK
from curate.mix.mixing import (
    ComponentSpec,
    choose_copies,
    parse_components,
    sampling_keys,
    source_map,
    targets,
    validation_mask,
)
from curate.mix.report import REPORT, build_report
from curate.schema import (
    DROP_FIELDS,
    RECORD_COLUMNS,
    clean_str,
    conform,
    dumps_meta,
    records_table,
    split_invalid,
    with_drop,
)
from curate.stage import DERIVED, Input, Stage, StageResult, Task, describe_error
from curate.storage import StoragePath, as_path
from curate.tokens import TokenCounter, tokenizer_file
from curate.units import parse_count

MIX_META_KEY = b"curate.mix"  # a task's per-component counts, in its kept file's footer
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson", ".ndjson.gz", ".json", ".json.gz")
COPY_SUFFIX = "#copy"
MIX_COLUMNS = ("component", "split", "copy")
NOT_SAMPLED = "not_sampled"
NO_COMPONENT = "mix_no_component"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


# ------------------------------------------------------------------------------------------------ inputs


def input_kind(path: Path | StoragePath) -> str | None:
    """'parquet', 'jsonl' or None for a file the mix does not read."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return None


def mix_files(path: str) -> list[tuple[Path | StoragePath, str]]:
    """The Parquet and JSONL files of one input: a file as given, or a folder's top-level files."""
    p = as_path(path)  # a local path, or a storage URI (an earlier stage's output on S3)
    if p.is_dir():
        found = [(f, "parquet") for f in parquet_files([p])]
        entries = sorted(p.iterdir())
        # An earlier stage's output folder: its JSON files (manifest, state, stats, a mix report) are curate's
        # own, not documents. Hidden files never are.
        if not {MANIFEST, STATE_FILE} & {f.name for f in entries}:
            found += [
                (f, "jsonl")
                for f in entries
                if not f.name.startswith(".")
                and input_kind(f) == "jsonl"
                and TMP_MARK not in f.name
                and f.is_file()
            ]
        if not found:
            raise ConfigError(
                f"mix input {p}: no Parquet (*.parquet) or JSONL (*.jsonl[.gz|.zst]) files in it"
            )
        return found
    if not p.is_file():
        raise MissingInput(f"input not found: {p}")
    kind = input_kind(p)
    if kind is None:
        raise ConfigError(f"mix input {p}: not a Parquet or JSONL file (*.parquet, *.jsonl, *.jsonl.gz)")
    return [(p, kind)]


def _stem(path: Path | StoragePath) -> str:
    name = path.name
    for suffix in (".gz", ".zst", ".parquet", ".jsonl", ".ndjson", ".json"):
        name = name.removesuffix(suffix)
    return name


def _fallback_ids(source: str, path: Path | StoragePath, numbers: Sequence[int]) -> list[str]:
    # No id in the input: the file name and the line (row) number are the only stable key it has.
    return [f"{source}:{_stem(path)}:{n}" for n in numbers]


class _BadLine(ValueError):
    """A JSONL line that is not a document: its drop reason and detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _jsonl_record(line: str, source: str, fallback: str) -> dict[str, Any]:
    """One JSONL line as a record; _BadLine if it is not a JSON object with a string `text`."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than Python's stack
        raise _BadLine("jsonl_broken", f"{type(exc).__name__}: {exc}"[:500]) from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise _BadLine(
            "jsonl_no_text", "no string 'text' field" if isinstance(record, dict) else "not a JSON object"
        )
    tag = record.get("source") if isinstance(record.get("source"), str) and record["source"] else source
    given = record.get("id")
    doc_id = str(given) if given not in (None, "") else fallback
    if given not in (None, "") and not doc_id.startswith(f"{tag}:"):
        doc_id = f"{tag}:{doc_id}"
    meta = record.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else ({"meta": meta} if meta is not None else {})
    meta.update({k: v for k, v in record.items() if k not in (*RECORD_COLUMNS, "meta")})
    try:
        meta = dumps_meta(meta)
    except (ValueError, RecursionError) as exc:
        raise _BadLine("jsonl_broken", f"meta: {type(exc).__name__}: {exc}"[:500]) from None

    def text(key: str) -> str | None:  # JSON escapes may hold lone surrogates, which UTF-8 cannot store
        return clean_str(record[key]) if isinstance(record.get(key), str) else None

    return {
        "id": clean_str(doc_id),
        "text": text("text"),
        "source": clean_str(tag),
        "url": text("url"),
        "title": text("title"),
        "license": text("license"),
        "meta": meta,
    }


def _jsonl_rows(path: Path | StoragePath, source: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records from a JSONL file (a `text` field at least), and rejected rows for lines that are not: one
    each, with the line as its text, so a bad line never hides the file's other documents."""
    rows, bad = [], []
    with input_stream(path) as stream:
        for number, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8", errors="replace"), 1):
            if not line.strip():
                continue  # a blank line is not a document
            fallback = _fallback_ids(source, path, [number])[0]
            try:
                rows.append(_jsonl_record(line, source, fallback))
            except _BadLine as exc:
                text = clean_str(line.rstrip("\n"))
                bad.append(
                    {"id": fallback, "text": text, "source": source, "reason": exc.reason, "detail": str(exc)}
                )
    for row in bad:
        row["url"] = path.resolve().as_uri()
    return rows, bad


def _parquet_records(path: Path | StoragePath, source: str, columns: list[str] | None) -> pa.Table:
    """A Parquet file's rows as records: ids, source and meta filled where a foreign corpus lacks them."""
    available = parquet_schema(path).names
    if "text" not in available:
        raise ConfigError(f"{path}: no 'text' column (columns: {', '.join(available)})")
    table = read_parquet(path, [c for c in columns if c in available] if columns else None)
    n = table.num_rows
    if "source" not in table.column_names:
        table = table.append_column("source", pa.array([source] * n, pa.string()))
    if "id" not in table.column_names:
        table = table.append_column("id", pa.array(_fallback_ids(source, path, range(n)), pa.string()))
    if "meta" in table.column_names and not pa.types.is_string(table.schema.field("meta").type):
        values = [
            dumps_meta(v if isinstance(v, dict) else {"meta": v}) for v in table.column("meta").to_pylist()
        ]
        table = table.set_column(table.column_names.index("meta"), "meta", pa.array(values, pa.string()))
    return table


def read_documents(
    path: str | Path | StoragePath, kind: str, source: str, columns: list[str] | None = None
) -> tuple[pa.Table, pa.Table]:
    """Documents of one input file as records (plus any extra columns), and rejected rows for broken lines."""
    path = as_path(path)
    if kind == "parquet":
        # Rows with a null, non-text or non-UTF-8 id, text or source: rejected one by one, like JSONL lines.
        table, invalid = split_invalid(_parquet_records(path, source, columns), "", str(path))
        return (table if columns else conform(table)), invalid
    rows, bad = _jsonl_rows(path, source)
    return records_table(rows), _rejected_rows(bad)


def _rejected_rows(bad: list[dict[str, Any]]) -> pa.Table:
    table = records_table(bad)
    return with_drop(table, "", [b["reason"] for b in bad], [b["detail"] for b in bad])


# ------------------------------------------------------------------------------------------------ tasks


@dataclass(frozen=True)
class FileDraw:
    """What the global pass decided for one input file's documents (arrays in file order)."""

    component: np.ndarray  # int16 index into the stage's components, -1: in no component
    validation: np.ndarray  # bool
    copies: np.ndarray  # uint32, train documents; validation documents have 1
    tokens: np.ndarray  # float64
    broken: int  # rejected lines (JSONL) before the documents
    ratios: dict[str, float]  # tokens wanted / available, per component (its epochs)
    targets: dict[str, float]
    error: str | None = None


@dataclass(frozen=True)
class MixFile:
    """The planned payload of a mix task: one input file, one split."""

    split: str
    kind: str
    source: str
    component: str | None
    index: int
    draw: FileDraw | None = field(default=None, repr=False, compare=False)


def _scan(stage: MixStage, task: Task) -> dict[str, Any]:
    """Global pass, one input file: component, split, sampling key and tokens of each document."""
    f: MixFile = task.payload
    try:
        table, broken = read_documents(task.inputs[0], f.kind, f.source, ["id", "source", "text"])
        ids = table.column("id").to_pylist()
        component = stage.component_index(table.column("source"), f.component)
        return {
            "component": component,
            "validation": validation_mask(ids, stage.validation) & (component >= 0),
            "keys": sampling_keys(ids, stage.seed),
            "tokens": stage.counter().count(table.column("text")),
            "broken": broken.num_rows,
        }
    except Exception as exc:  # noqa: BLE001 - a broken file fails its own task, not the whole mix
        return {"error": describe_error(exc)}


@dataclass
class MixStage(Stage):
    """Samples components to target shares of tokens (or epochs): whole documents, seeded, with a split."""

    step: ClassVar[str] = "mix"
    reads_storage: ClassVar[bool] = True
    reports: ClassVar[tuple[str, ...]] = (REPORT,)
    components: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    validation: float = 0.0
    total_tokens: int | str | None = None
    tokenizer: str | None = None
    tokenizer_sha256: str = field(default="", metadata=DERIVED)  # of the file: another one recomputes
    # Per input, from the `component:` of its pipeline YAML entry (or the CLI's NAME=PATH).
    input_components: list[str | None] = field(default_factory=list, metadata=DERIVED)

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, not {self.seed!r}")
        bad = isinstance(self.validation, bool) or not isinstance(self.validation, (int, float))
        if bad or not 0 <= self.validation < 1:
            raise ConfigError(
                f"validation must be a fraction in [0, 1), such as 0.01, not {self.validation!r}"
            )
        if self.total_tokens is not None:
            self.total_tokens = parse_count(self.total_tokens)
        self.specs: list[ComponentSpec] = parse_components(self.components, self.total_tokens)
        self.components = {
            s.name: {k: v for k, v in dataclasses.asdict(s).items() if k != "name" and v not in (None, ())}
            for s in self.specs
        }
        if self.tokenizer:
            self.tokenizer, self.tokenizer_sha256 = tokenizer_file(self.tokenizer)
        self.set_input_components(self.input_components)

    @property
    def names(self) -> list[str]:
        """Component names in the order given."""
        return [s.name for s in self.specs]

    def bind(self, catalog: Mapping[str, Any], inputs: list[Input]) -> None:
        """The component each input names (`component:` in its YAML entry), if any names one."""
        found = [None if i.option("component") is None else str(i.option("component")) for i in inputs]
        self.set_input_components(found if any(c is not None for c in found) else [])

    def set_input_components(self, components: Sequence[str | None]) -> None:
        """The component each input belongs to (None: by its documents' source tags)."""
        unknown = sorted({c for c in components if c is not None} - set(self.names))
        if unknown:
            raise ConfigError(
                f"input(s) name unknown component(s) {', '.join(map(repr, unknown))}; "
                f"components are: {', '.join(self.names)}"
            )
        self.input_components = list(components)

    def counter(self) -> TokenCounter:
        """The token counter this stage uses (exact with a tokenizer, else approximate)."""
        return TokenCounter(self.tokenizer, self.tokenizer_sha256 or None)

    def component_index(self, sources: pa.Array | pa.ChunkedArray, fixed: str | None) -> np.ndarray:
        """Component index of each document: the input's component, else by source tag (-1: none)."""
        n = len(sources)
        if fixed is not None:
            return np.full(n, self.names.index(fixed), dtype=np.int16)
        index = {tag: self.names.index(name) for tag, name in source_map(self.specs).items()}
        return np.array([index.get(s, -1) for s in sources.to_pylist()], dtype=np.int16)

    # ---------------------------------------------------------------------------------------- plan / run

    def plan(self, inputs: list[Input]) -> list[Task]:
        if self.input_components and len(self.input_components) != len(inputs):
            raise ConfigError(
                f"stage {self.name!r}: {len(self.input_components)} input components for {len(inputs)} inputs"
            )
        tasks: list[Task] = []
        seen: set[str] = set()
        index = 0
        for n, item in enumerate(inputs):
            component = self.input_components[n] if self.input_components else None
            source = item.source or component or "unknown"
            for path, kind in mix_files(item.path):
                base = _SAFE.sub("_", f"{component or as_path(item.path).name}-{_stem(path)}")
                name = base
                while name in seen:  # two inputs with files of the same name
                    name = f"{base}-{len(seen)}"
                seen.add(name)
                for split in ("train", "validation") if self.validation > 0 else ("train",):
                    payload = MixFile(split, kind, source, component, index)
                    tasks.append(Task(name=f"{split}-{name}", inputs=(str(path),), payload=payload))
                index += 1
        if not tasks:
            raise ConfigError(f"stage {self.name!r}: no input files")
        return tasks

    def prepare(self, tasks: list[Task], map_fn, scratch: Path, out: Any = None) -> list[Task]:
        train = [t for t in tasks if t.payload.split == "train"]
        scans = map_fn(_scan, [(self, t) for t in train])
        good = [s for s in scans if "error" not in s]

        def joined(key: str, dtype) -> np.ndarray:
            return np.concatenate([s[key] for s in good]) if good else np.zeros(0, dtype)

        component = joined("component", np.int16)
        validation = joined("validation", bool)
        keys = joined("keys", np.uint64)
        tokens = joined("tokens", np.float64)
        in_train = ~validation
        available = {
            name: float(tokens[(component == i) & in_train].sum()) for i, name in enumerate(self.names)
        }
        try:
            wanted = targets(self.specs, available, self.total_tokens)
        except ConfigError as exc:
            unread = [
                f"{t.inputs[0]} ({s['error']})" for t, s in zip(train, scans, strict=True) if "error" in s
            ]
            unreadable = "; unreadable inputs: " + "; ".join(unread) if unread else ""
            raise ConfigError(f"{exc}{unreadable}") from exc
        copies = np.zeros(len(tokens), dtype=np.uint32)
        for i, name in enumerate(self.names):
            idx = np.nonzero((component == i) & in_train)[0]
            copies[idx] = choose_copies(tokens[idx], keys[idx], wanted[name])
        copies[validation] = 1
        ratios = {n: (wanted[n] / available[n] if available[n] else 0.0) for n in self.names}
        draws: dict[int, FileDraw] = {}
        start = 0
        for task, scan in zip(train, scans, strict=True):
            if "error" in scan:
                draws[task.payload.index] = FileDraw(*[np.zeros(0)] * 4, 0, ratios, wanted, scan["error"])
                continue
            end = start + len(scan["tokens"])
            draws[task.payload.index] = FileDraw(
                component[start:end], validation[start:end], copies[start:end], tokens[start:end],
                scan["broken"], ratios, wanted,
            )  # fmt: skip
            start = end
        return [
            dataclasses.replace(t, payload=dataclasses.replace(t.payload, draw=draws[t.payload.index]))
            for t in tasks
        ]

    def count_in(self, task: Task) -> int:
        f: MixFile = task.payload
        draw = f.draw
        if draw is None or draw.error:  # a failed task: its documents, as read again from the file
            table, broken = read_documents(task.inputs[0], f.kind, f.source, ["id", "source", "text"])
            component = self.component_index(table.column("source"), f.component)
            val = validation_mask(table.column("id").to_pylist(), self.validation) & (component >= 0)
            return int(val.sum()) if f.split == "validation" else broken.num_rows + int((~val).sum())
        if f.split == "validation":
            return int(draw.validation.sum())
        train = ~draw.validation
        assigned = train & (draw.component >= 0)
        return draw.broken + int((train & ~assigned).sum()) + int(np.maximum(draw.copies[assigned], 1).sum())

    def process(self, task: Task) -> StageResult:
        f: MixFile = task.payload
        draw = f.draw
        if draw is None:
            raise RuntimeError("a mix task ran without the stage's global pass (prepare)")
        if draw.error:
            raise RuntimeError(f"reading {task.inputs[0]} failed: {draw.error}")
        table, broken = read_documents(task.inputs[0], f.kind, f.source)
        stage_names = pa.array([self.name] * broken.num_rows, pa.string())
        broken = broken.set_column(broken.schema.get_field_index("drop_stage"), DROP_FIELDS[0], stage_names)
        table = table.drop_columns([c for c in MIX_COLUMNS if c in table.column_names])  # an earlier mix's
        if table.num_rows != len(draw.copies):
            raise RuntimeError(f"{task.inputs[0]} changed while the stage ran; run it again")
        if f.split == "validation":
            take = np.nonzero(draw.validation)[0]
            copies = np.ones(len(take), dtype=np.uint32)
            rejected = [broken.slice(0, 0)]
        else:
            train = ~draw.validation
            assigned = train & (draw.component >= 0)
            take = np.nonzero(assigned & (draw.copies > 0))[0]
            copies = draw.copies[take]
            rejected = [
                broken,
                self._not_sampled(table, draw, assigned),
                self._unassigned(table, draw, train),
            ]
        kept, stats = self._kept(table, draw, take, copies, f.split)
        rejected_table = pa.concat_tables(rejected, promote_options="default")
        meta = dict(kept.schema.metadata or {})
        meta[MIX_META_KEY] = json.dumps(stats, sort_keys=True).encode()
        return StageResult(kept=kept.replace_schema_metadata(meta), rejected=rejected_table)

    def _kept(
        self, table: pa.Table, draw: FileDraw, take: np.ndarray, copies: np.ndarray, split: str
    ) -> tuple[pa.Table, dict[str, Any]]:
        rows = np.repeat(take, copies)
        # Copy number of each row: 1..c within each document's run of c rows.
        starts = np.repeat(np.cumsum(copies) - copies, copies)
        copy = (np.arange(len(rows)) - starts + 1).astype(np.int32)
        kept = table.take(pa.array(rows, pa.int64()))
        ids = kept.column("id").to_pylist()
        ids = [i if c == 1 else f"{i}{COPY_SUFFIX}{c}" for i, c in zip(ids, copy.tolist(), strict=True)]
        names = np.array(self.names, dtype=object)
        kept = kept.set_column(0, kept.schema.field("id"), pa.array(ids, pa.string()))
        kept = kept.append_column("component", pa.array(names[draw.component[rows]].tolist(), pa.string()))
        kept = kept.append_column("split", pa.array([split] * len(rows), pa.string()))
        kept = kept.append_column("copy", pa.array(copy, pa.int32()))
        # Rows in a seeded order, so a document's copies do not sit side by side in the file.
        order = np.argsort(sampling_keys(ids, self.seed), kind="stable")
        kept = kept.take(pa.array(order, pa.int64()))
        in_split = draw.validation if split == "validation" else ~draw.validation
        stats: dict[str, Any] = {"split": split, "components": {}}
        for i, name in enumerate(self.names):
            mine = in_split & (draw.component == i)
            drawn = draw.copies[mine] if split == "train" else np.ones(int(mine.sum()), dtype=np.uint32)
            stats["components"][name] = {
                "documents": int(mine.sum()),
                "documents_drawn": int((drawn > 0).sum()),
                "rows": int(drawn.sum()),
                "tokens_available": float(draw.tokens[mine].sum()),
                "tokens": float((draw.tokens[mine] * drawn).sum()),
            }
        stats["targets"] = draw.targets
        return kept, stats

    def _not_sampled(self, table: pa.Table, draw: FileDraw, assigned: np.ndarray) -> pa.Table:
        idx = np.nonzero(assigned & (draw.copies == 0))[0]
        details = [
            f"component {self.names[c]!r} takes {draw.ratios[self.names[c]]:.4g} epochs; "
            f"not drawn with seed {self.seed}"
            for c in draw.component[idx].tolist()
        ]
        return with_drop(table.take(pa.array(idx, pa.int64())), self.name, [NOT_SAMPLED] * len(idx), details)

    def _unassigned(self, table: pa.Table, draw: FileDraw, train: np.ndarray) -> pa.Table:
        idx = np.nonzero(train & (draw.component < 0))[0]
        rows = table.take(pa.array(idx, pa.int64()))
        details = [
            f"source {s!r} is in no component (components: {', '.join(self.names)})"
            for s in rows.column("source").to_pylist()
        ]
        return with_drop(rows, self.name, [NO_COMPONENT] * len(idx), details)

    def error_rows(self, task: Task, error: str) -> pa.Table:
        rows = super().error_rows(task, error)
        return rows.set_column(0, "id", pa.array([f"error:{task.payload.split}:{p}" for p in task.inputs]))

    def finish(self, out_dir: Path | StoragePath, manifest: dict[str, Any]) -> None:
        footers = []
        for output in manifest["outputs"]:
            meta = parquet_schema(out_dir / output["path"]).metadata or {}
            if MIX_META_KEY in meta:
                footers.append(json.loads(meta[MIX_META_KEY]))
        settings = {
            "seed": self.seed,
            "validation_fraction": self.validation,
            "total_tokens_requested": self.total_tokens,
        }
        report = build_report(self.name, self.specs, self.counter(), settings, footers, manifest)
        write_json(report, out_dir / REPORT)
        manifest["mix"] = {
            "report": REPORT,
            "tokens": report["tokens"],
            "components": {
                c["component"]: {k: c[k] for k in ("share_requested", "share", "epochs", "tokens", "rows")}
                for c in report["components"]
            },
        }
