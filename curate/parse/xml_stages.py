"""Stages for PMC open-access packages (`pmc`) and PubMed baseline/update XML (`pubmed`).

Both read inputs that hold many documents each (a tarball of packages, a file of citations), so the number
of documents a task holds is known once it has been read: `process` records it for `count_in`, which the
runner calls after `process` in the same worker. For a task that failed as a whole, `count_in` falls back to
one document per input file (what the runner counts as errored).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from curate.parse.pdf.limits import PdfLimits
from curate.parse.stages import FileStage
from curate.schema import ERROR_REASON, ParsedDoc, Rejection, clean_str, dumps_meta, records_table, with_drop
from curate.stage import Input, StageResult, Task, describe_error


@dataclass
class _Rows:
    """Kept and rejected rows of one task, built up document by document."""

    stage: str
    kept: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def keep(self, row: dict, doc: ParsedDoc, meta: dict) -> None:
        self.kept.append(
            {**row, "text": clean_str(doc.text), "title": clean_str(doc.title), "meta": dumps_meta(meta)}
        )

    def drop(self, row: dict, reason: str, detail: str) -> None:
        self.dropped.append({**row, "text": row.get("text", "")})
        self.reasons.append(reason)
        self.details.append(detail)

    def result(self) -> StageResult:
        rejected = with_drop(records_table(self.dropped), self.stage, self.reasons, self.details)
        return StageResult(kept=records_table(self.kept), rejected=rejected)

    def __len__(self) -> int:
        return len(self.kept) + len(self.dropped)


@dataclass
class _MultiDocStage(FileStage):
    """A file stage whose inputs hold any number of documents each."""

    def __post_init__(self) -> None:
        self._counted: dict[str, int] = {}

    def count_in(self, task: Task) -> int:
        return self._counted.get(task.name, len(task.inputs))

    def _finish(self, task: Task, rows: _Rows) -> StageResult:
        self._counted[task.name] = len(rows)
        return rows.result()


@dataclass
class PmcStage(_MultiDocStage):
    """PMC OA packages (folders with .nxml/.pdf, or .tar.gz of them) to one record per article; XML wins."""

    step: ClassVar[str] = "pmc"
    suffixes: ClassVar[tuple[str, ...]] = (".tar.gz", ".tgz")
    source: str = "pmc"
    batch_size: int = 64
    max_pages: int = PdfLimits().max_pages
    references: bool = False
    tables: bool = False
    captions: bool = False

    def plan(self, inputs: list[Input]) -> list[Task]:
        from curate.parse.pmc import is_tarball, package_dirs

        units: list[tuple[str, str]] = []  # (path, source): a tarball or a package folder
        for item in inputs:
            source = item.source or self.source
            root = Path(item.path)
            if root.is_file():
                units.append((str(root), source))
            elif root.is_dir():
                for f in sorted(root.rglob("*")):
                    # Symlinks are listed, then rejected (as in FileStage): never followed, never lost.
                    if (f.is_symlink() or f.is_file()) and is_tarball(f.name):
                        units.append((str(f), source))
                units.extend((d, source) for d in package_dirs(root))
            else:
                raise FileNotFoundError(f"stage {self.name!r}: input not found: {root}")
        if not units:
            raise FileNotFoundError(f"stage {self.name!r}: no PMC packages under {[i.path for i in inputs]}")
        return self.batch(units)

    def process(self, task: Task) -> StageResult:
        from curate.parse.pmc import is_tarball, iter_tarball, read_dir

        rows = _Rows(self.name)
        for path, source in zip(task.inputs, task.payload, strict=True):
            if os.path.islink(path):
                row = self._row(source, Path(path).name, Path(path).absolute().as_uri())
                rows.drop(row, "input_symlink", f"symbolic link to {os.readlink(path)!r}, not followed")
                continue
            if is_tarball(path) and os.path.isfile(path):
                try:
                    for package in iter_tarball(path):
                        self._one(rows, package, source, f"{Path(path).resolve().as_uri()}#{package.key}")
                except Exception as exc:  # noqa: BLE001 - a tarball that cannot be read is one errored row
                    rows.drop(
                        self._row(source, Path(path).name, Path(path).resolve().as_uri()),
                        ERROR_REASON,
                        describe_error(exc),
                    )
            else:
                try:
                    package = read_dir(path)
                except OSError as exc:
                    rows.drop(
                        self._row(source, Path(path).name, Path(path).resolve().as_uri()),
                        ERROR_REASON,
                        describe_error(exc),
                    )
                    continue
                self._one(rows, package, source, Path(path).resolve().as_uri())
        return self._finish(task, rows)

    def _row(self, source: str, key: str, url: str) -> dict:
        return {"id": f"{source}:{key}", "text": "", "source": source, "url": url, "license": None}

    def _one(self, rows: _Rows, package, source: str, url: str) -> None:
        from curate.parse.pmc import parse_package

        row = self._row(source, package.key, url)
        row["license"] = self.licenses.get(source)
        try:
            doc = parse_package(
                package,
                max_pages=self.max_pages,
                references=self.references,
                tables=self.tables,
                captions=self.captions,
            )
        except Rejection as rejection:
            rows.drop(row, rejection.reason, rejection.detail)
            return
        except Exception as exc:  # noqa: BLE001 - one bad package must not fail its batch
            rows.drop(row, ERROR_REASON, describe_error(exc))
            return
        pmcid = doc.meta.get("pmcid")
        if pmcid:
            row["id"] = f"{source}:{pmcid}"
        # The article's own licence (JATS <license>) is more precise than the source's default.
        if doc.meta.get("license"):
            row["license"] = str(doc.meta["license"])
        meta = dict(doc.meta)
        if package.problem is not None:
            meta["tarball_problem"] = package.problem.detail
        rows.keep(row, doc, meta)


@dataclass
class PubmedStage(_MultiDocStage):
    """PubMed baseline/update XML (`pubmed*.xml.gz`) to one record per citation; deletions reported."""

    step: ClassVar[str] = "pubmed"
    suffixes: ClassVar[tuple[str, ...]] = (".xml.gz", ".xml")
    source: str = "pubmed"
    batch_size: int = 1
    min_abstract_chars: int = 0

    def prepare(self, tasks: list[Task], map_fn, scratch: Path, out: Any = None) -> list[Task]:
        """Index every file's PMIDs and deletions, so that a later file's version or deletion wins."""
        paths = sorted({p for t in tasks for p in t.inputs}, key=lambda p: (Path(p).name, p))
        indexes = map_fn(_pubmed_index, [(p,) for p in paths])
        later = _later_changes(paths, indexes)
        return [Task(t.name, t.inputs, (t.payload, {p: later.get(p, {}) for p in t.inputs})) for t in tasks]

    def process(self, task: Task) -> StageResult:
        from curate.parse.pubmed import Deleted, NoPmid, iter_pubmed

        rows = _Rows(self.name)
        payload, later = task.payload
        for path, (source, key) in zip(task.inputs, payload, strict=True):
            superseded = later[path]
            url = Path(path).resolve().as_uri()
            records: dict[str, dict] = {}  # pmid -> kept row, so a later deletion in the file can undo it
            try:
                for item in iter_pubmed(path):
                    if isinstance(item, Deleted):
                        for pmid in item.pmids:
                            # A citation of this same file that is deleted becomes the rejected row.
                            row = records.pop(pmid, None) or {
                                "id": f"{source}:{pmid}",
                                "text": "",
                                "source": source,
                                "url": url,
                            }
                            rows.drop(row, "pubmed_deleted", f"<DeleteCitation> in {Path(path).name}")
                        continue
                    if isinstance(item, NoPmid):
                        row = {
                            "id": f"{source}:{key}#{item.position}",
                            "text": "",
                            "source": source,
                            "url": url,
                        }
                        rows.drop(row, "pubmed_no_pmid", f"citation number {item.position} has no PMID")
                        continue
                    row = {
                        "id": f"{source}:{item.pmid}",
                        "source": source,
                        "url": f"https://pubmed.ncbi.nlm.nih.gov/{item.pmid}/",
                        "license": self.licenses.get(source),
                        "title": clean_str(item.title) or None,
                        "text": clean_str(item.text),
                        "meta": dumps_meta({**item.meta, "file": key}),
                    }
                    if len(item.abstract) < max(1, self.min_abstract_chars):
                        reason = "pubmed_no_abstract" if not item.abstract else "pubmed_short_abstract"
                        rows.drop(row, reason, f"abstract of {len(item.abstract)} characters")
                        continue
                    earlier = records.pop(item.pmid, None)
                    if earlier is not None:  # a citation repeated in one file: the last version wins
                        rows.drop(earlier, "pubmed_superseded", "a later version of this PMID is in the file")
                    records[item.pmid] = row
            except Rejection as rejection:
                rows.drop(
                    {"id": f"{source}:{key}", "text": "", "source": source, "url": url},
                    rejection.reason,
                    rejection.detail,
                )
            except Exception as exc:  # noqa: BLE001
                rows.drop(
                    {"id": f"{source}:{key}", "text": "", "source": source, "url": url},
                    ERROR_REASON,
                    describe_error(exc),
                )
            for pmid, row in records.items():
                if pmid in superseded:
                    rows.drop(row, *superseded[pmid])
                else:
                    rows.kept.append(row)
        return self._finish(task, rows)


def _pubmed_index(path: str) -> tuple[list[str], list[str]]:
    """(PMIDs of the citations, PMIDs deleted) in one PubMed file; a damaged file's up to the damage."""
    from curate.parse.pubmed import Deleted, PubmedRecord, iter_pubmed

    present: list[str] = []
    deleted: list[str] = []
    try:
        for item in iter_pubmed(path):
            if isinstance(item, PubmedRecord):
                present.append(item.pmid)
            elif isinstance(item, Deleted):
                deleted.extend(item.pmids)
    except Exception:  # noqa: BLE001 - the stage itself reports the damage; the index keeps what was read
        pass
    return present, deleted


def _later_changes(
    paths: list[str], indexes: list[tuple[list[str], list[str]]]
) -> dict[str, dict[str, tuple[str, str]]]:
    """For each file, its PMIDs that a later file replaces or deletes (PubMed names sort in release order)."""
    last_version: dict[str, int] = {}
    last_deletion: dict[str, int] = {}
    for n, (present, deleted) in enumerate(indexes):
        for pmid in present:
            last_version[pmid] = n
        for pmid in deleted:
            last_deletion[pmid] = n
    changes: dict[str, dict[str, tuple[str, str]]] = {}
    for n, (path, (present, _)) in enumerate(zip(paths, indexes, strict=True)):
        for pmid in present:
            if last_deletion.get(pmid, -1) > n:
                where = Path(paths[last_deletion[pmid]]).name
                changes.setdefault(path, {})[pmid] = ("pubmed_deleted", f"<DeleteCitation> in {where}")
            elif last_version[pmid] > n:
                where = Path(paths[last_version[pmid]]).name
                changes.setdefault(path, {})[pmid] = ("pubmed_superseded", f"a later version is in {where}")
    return changes
