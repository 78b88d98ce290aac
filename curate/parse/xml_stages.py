"""Stages for PMC open-access packages (`pmc`) and PubMed baseline/update XML (`pubmed`).

Both read inputs that hold many documents each (a tarball of packages, a file of citations), so the number
of documents a task holds is known once it has been read: `process` returns it with its result
(StageResult.documents_in). A task that failed as a whole counts one document per input file (its error
rows).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from curate.errors import MissingInput
from curate.parse.pdf.limits import PdfLimits
from curate.parse.stages import DocumentRows, FileStage, strip_suffix
from curate.schema import ERROR_REASON, Rejection, clean_str, dumps_meta
from curate.stage import Input, StageResult, Task, describe_error


@dataclass
class _MultiDocStage(FileStage):
    """A file stage whose inputs hold any number of documents each."""

    def planned_documents(self, task: Task) -> int | None:
        return None  # known only once the files are read

    def _finish(self, task: Task, rows: DocumentRows) -> StageResult:
        result = rows.result()
        result.documents_in = len(rows)
        return result


@dataclass
class PmcStage(_MultiDocStage):
    """PMC OA inputs (package or bulk folders of .nxml/.xml/.pdf, or .tar.gz of them) to one record per
    article; XML wins over PDF; a PMCID seen twice is kept once (the last copy in input order)."""

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

        units: dict[str, tuple[str, str]] = {}  # path -> (source, id key prefix): a tarball or a folder
        for item in inputs:
            source = item.source or self.source
            root = Path(item.path)
            if root.is_file():
                units.setdefault(str(root), (source, strip_suffix(root.name, self.suffixes)))
            elif root.is_dir():
                for f in sorted(root.rglob("*")):
                    # Symlinks are listed, then rejected (as in FileStage): never followed, never lost.
                    if (f.is_symlink() or f.is_file()) and is_tarball(f.name):
                        units.setdefault(
                            str(f), (source, strip_suffix(f.relative_to(root).as_posix(), self.suffixes))
                        )
                for d in package_dirs(root):
                    # Keys are paths inside the input; its own files are named after it.
                    relative = Path(d).relative_to(root).as_posix()
                    units.setdefault(d, (source, root.absolute().name if relative == "." else relative))
            else:
                raise MissingInput(f"stage {self.name!r}: input not found: {root}")
        if not units:
            raise MissingInput(f"stage {self.name!r}: no PMC packages under {[i.path for i in inputs]}")
        return self.batch(list(units.items()))

    def prepare(self, tasks: list[Task], map_fn, scratch: Path, out: Any = None) -> list[Task]:
        """Index the PMCIDs of every input (a scan of the bytes), so that an article in two inputs is kept
        once: the last copy in input order (a later update package after the baseline) wins."""
        indexes = map_fn(_pmc_index, [(t.inputs,) for t in tasks])
        units = [p for t in tasks for p in t.inputs]
        losers = _duplicate_pmcids(units, [index for per_task in indexes for index in per_task])
        return [Task(t.name, t.inputs, (t.payload, {p: losers.get(p, {}) for p in t.inputs})) for t in tasks]

    def process(self, task: Task) -> StageResult:
        from curate.parse.jats import JatsOptions, read_jats_file
        from curate.parse.pmc import is_tarball, iter_folder, iter_tarball

        options = JatsOptions(references=self.references, tables=self.tables, captions=self.captions)

        def read_xml(data: bytes):
            return read_jats_file(data, options)

        # After the index pass the payload is (the units' payload, losers); a task run without it has none.
        prepared = isinstance(task.payload[-1], dict)
        payload, losers = task.payload if prepared else (task.payload, {})
        rows = DocumentRows(self.name)
        seen: dict[str, str] = {}  # id -> where, for ids repeated in this task that the index did not see
        for path, (source, key) in zip(task.inputs, payload, strict=True):
            url = Path(path).absolute().as_uri()
            if os.path.islink(path):
                row = _pmc_row(source, key, url)
                rows.drop(row, "input_symlink", f"symbolic link to {os.readlink(path)!r}, not followed")
                continue
            reader = iter_tarball if is_tarball(path) and os.path.isfile(path) else iter_folder
            try:
                for item in reader(path, key, read_xml, max_pages=self.max_pages):
                    self._one(rows, item, source, losers.get(path, {}), seen)
            except Exception as exc:  # noqa: BLE001 - an input that cannot be read is one errored row
                rows.drop(_pmc_row(source, f"{key}#error", url), ERROR_REASON, describe_error(exc))
        return self._finish(task, rows)

    def _one(self, rows: DocumentRows, item, source: str, losers: dict, seen: dict[str, str]) -> None:
        doc = item.doc
        pmcid = doc.meta.get("pmcid") if doc is not None else None
        row = _pmc_row(source, pmcid or item.key, item.where)
        if doc is None:
            rows.drop(row, item.problem.reason, item.problem.detail)
            return
        if item.position in losers:
            rows.drop(
                {**row, "text": clean_str(doc.text)},
                "duplicate_id",
                f"{pmcid} is also in {losers[item.position]}",
            )
            return
        if row["id"] in seen:
            detail = f"{seen[row['id']]} has the same id and comes first"
            rows.drop({**row, "text": clean_str(doc.text)}, "duplicate_id", detail)
            return
        seen[row["id"]] = item.where
        # Licences are facts of the article (its <license>, else its copyright statement), never a default:
        # PMC as a source holds articles under many licences.
        row["license"] = doc.meta.get("license")
        rows.keep(row, doc, doc.meta)


def _pmc_row(source: str, key: str, url: str) -> dict:
    return {"id": f"{source}:{key}", "text": "", "source": source, "url": url, "license": None}


def _pmc_index(paths: tuple[str, ...]) -> list:
    """The PMCID index of each input of one task (nothing for a symlink, which is never read)."""
    import numpy as np

    from curate.parse.pmc import pmcid_index

    out = []
    for path in paths:
        entries = [] if os.path.islink(path) else pmcid_index(path)
        out.append(np.array(entries, dtype=np.int64).reshape(-1, 3))
    return out


def _duplicate_pmcids(units: list[str], indexes: list) -> dict[str, dict[tuple[int, int], str]]:
    """For each input, its articles whose PMCID a later article (in input order) also has: position -> where
    the kept copy is. Only the duplicated hashes are looked at one by one, so the driver's memory stays at
    24 bytes per article."""
    import numpy as np

    if not indexes or not sum(len(i) for i in indexes):
        return {}
    hashes = np.concatenate([i[:, 2] for i in indexes])
    values, counts = np.unique(hashes, return_counts=True)
    duplicated = set(values[counts > 1].tolist())
    if not duplicated:
        return {}
    last: dict[int, tuple[int, int, int]] = {}
    for u, index in enumerate(indexes):
        for number, article, h in index[np.isin(index[:, 2], list(duplicated))].tolist():
            last[h] = (u, number, article)
    losers: dict[str, dict[tuple[int, int], str]] = {}
    for u, index in enumerate(indexes):
        for number, article, h in index[np.isin(index[:, 2], list(duplicated))].tolist():
            if last[h] != (u, number, article):
                wu, wn, wa = last[h]
                where = f"{units[wu]} (XML file {wn}{f', article {wa + 1}' if wa else ''}), which is kept"
                losers.setdefault(units[u], {})[(number, article)] = where
    return losers


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
        return [Task(t.name, t.inputs, (t.payload, {p: later[p] for p in t.inputs})) for t in tasks]

    def process(self, task: Task) -> StageResult:
        from curate.parse.pubmed import Broken, Deleted, NoPmid, iter_pubmed

        rows = DocumentRows(self.name)
        payload, later = task.payload
        for path, (source, key) in zip(task.inputs, payload, strict=True):
            superseded, elsewhere = later[path]
            url = Path(path).resolve().as_uri()
            records: dict[str, dict] = {}  # pmid -> kept row, so a later deletion in the file can undo it

            def file_row(suffix: str = "", url: str = url, source: str = source, key: str = key) -> dict:
                return {"id": f"{source}:{key}{suffix}", "text": "", "source": source, "url": url}

            try:
                for item in iter_pubmed(path):
                    if isinstance(item, Deleted):
                        for pmid in item.pmids:
                            detail = f"<DeleteCitation> in {Path(path).name}"
                            if pmid in records:  # a citation of this same file: it becomes the rejected row
                                rows.drop(records.pop(pmid), "pubmed_deleted", detail)
                            elif pmid not in elsewhere:  # in no input file: the deletion is the row
                                rows.drop({**file_row(), "id": f"{source}:{pmid}"}, "pubmed_deleted", detail)
                            # else the file that holds the citation rejects it: one row per citation.
                        continue
                    if isinstance(item, NoPmid):
                        detail = f"element {item.position} of the file is a citation without a PMID"
                        rows.drop(file_row(f"#{item.position}"), "pubmed_no_pmid", detail)
                        continue
                    if isinstance(item, Broken):
                        detail = item.detail + (f" (PMID {item.pmid})" if item.pmid else "")
                        rows.drop(file_row(f"#{item.position}"), item.reason, detail)
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
                rows.drop(file_row(), rejection.reason, rejection.detail)
            except Exception as exc:  # noqa: BLE001
                rows.drop(file_row(), ERROR_REASON, describe_error(exc))
            for pmid, row in records.items():
                if pmid in superseded:
                    rows.drop(row, *superseded[pmid])
                else:
                    rows.kept.append(row)
        return self._finish(task, rows)


def _pubmed_index(path: str) -> tuple[list[str], list[str]]:
    """(PMIDs of the citations, PMIDs deleted) in one PubMed file, from its bytes; up to any damage."""
    from curate.parse.pubmed import iter_pmids

    present: list[str] = []
    deleted: list[str] = []
    for is_deletion, pmid in iter_pmids(path):
        (deleted if is_deletion else present).append(pmid)
    return present, deleted


def _later_changes(
    paths: list[str], indexes: list[tuple[list[str], list[str]]]
) -> dict[str, tuple[dict[str, tuple[str, str]], set[str]]]:
    """For each file: its PMIDs that a later file replaces or deletes (PubMed names sort in release order),
    and the PMIDs it deletes that some input file holds (that file's row stands for the deletion)."""
    last_version: dict[str, int] = {}
    last_deletion: dict[str, int] = {}
    for n, (present, deleted) in enumerate(indexes):
        for pmid in present:
            last_version[pmid] = n
        for pmid in deleted:
            last_deletion[pmid] = n
    changes: dict[str, tuple[dict[str, tuple[str, str]], set[str]]] = {}
    for n, (path, (present, deleted)) in enumerate(zip(paths, indexes, strict=True)):
        replaced: dict[str, tuple[str, str]] = {}
        for pmid in present:
            if last_deletion.get(pmid, -1) > n:
                where = Path(paths[last_deletion[pmid]]).name
                replaced[pmid] = ("pubmed_deleted", f"<DeleteCitation> in {where}")
            elif last_version[pmid] > n:
                where = Path(paths[last_version[pmid]]).name
                replaced[pmid] = ("pubmed_superseded", f"a later version is in {where}")
        changes[path] = (replaced, {pmid for pmid in deleted if pmid in last_version})
    return changes
