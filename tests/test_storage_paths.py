"""Storage paths: file:// URIs are local folders; on object storage a folder lists its *.parquet files and
a stage's writes stay inside its folder.

Object storage is moto's S3 server on 127.0.0.1 (the fixture of tests/cluster/test_s3_storage.py).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs

from curate.executors import LocalExecutor
from curate.filter.language import LanguageFilter
from curate.io import sha256_file, write_bytes, write_parquet
from curate.runner import run_stage
from curate.schema import records_table
from curate.stage import Input
from curate.stats.compute import collect_stats
from curate.storage import StoragePath
from curate.verify import verify
from tests.cluster.test_s3_storage import BUCKET, s3  # noqa: F401 - the fixture, used by name
from tests.test_runner_resume_and_containment import Escaping

TEXT = "Offer a statin to adults with a ten-year cardiovascular risk of ten percent or more."


def _shard(path: str | Path, n: int = 2) -> None:
    rows = [{"id": f"s:{i}", "text": f"{TEXT} Case {i}.", "source": "x"} for i in range(n)]
    write_parquet(records_table(rows), path)


def _keys(prefix: str) -> list[str]:
    root = StoragePath(f"s3://{BUCKET}/{prefix}")
    selector = pafs.FileSelector(root.fs_path, recursive=True, allow_not_found=True)
    return sorted(i.path for i in root.filesystem.get_file_info(selector) if i.type == pafs.FileType.File)


def test_file_uris_name_local_folders(tmp_path: Path):
    src = tmp_path / "src"
    _shard(src / "part-0.parquet")
    plain = run_stage(LanguageFilter(name="language"), [Input(str(src))], tmp_path / "plain", LocalExecutor())
    by_uri = run_stage(
        LanguageFilter(name="language"), [Input(src.as_uri())], (tmp_path / "uri").as_uri(), LocalExecutor()
    )
    assert by_uri["counts"] == plain["counts"] == {"in": 2, "kept": 2, "rejected": 0, "errored": 0}
    assert sha256_file(tmp_path / "uri" / "part-0.parquet") == sha256_file(
        tmp_path / "plain" / "part-0.parquet"
    )


def test_an_s3_folder_lists_only_its_parquet_files_and_a_stage_writes_there(s3, tmp_path: Path):  # noqa: F811
    src = f"s3://{BUCKET}/kills/src"
    _shard(f"{src}/part-0.parquet")
    write_bytes(b"not a shard", f"{src}/notes.txt")
    write_bytes(b"a folder named like a shard", f"{src}/more.parquet/readme.txt")
    out = f"s3://{BUCKET}/kills/out"
    # Every document is kept: the task removes a rejected file that does not exist (missing_ok on S3).
    manifest = run_stage(LanguageFilter(name="language"), [Input(src)], out, LocalExecutor())
    assert manifest["status"] == "complete" and manifest["tasks"]["total"] == 1
    assert manifest["counts"] == {"in": 2, "kept": 2, "rejected": 0, "errored": 0}
    assert f"{BUCKET}/kills/out/part-0.parquet" in _keys("kills/out")
    # An operator's folder named like a shard in the stage folder: stats and verify read only the shards.
    write_bytes(b"archived", f"{out}/archive.parquet/old.txt")
    stats = collect_stats(out)
    assert stats["kind"] == "stage" and stats["documents"] == 2
    assert verify(out)[1] == []


def test_a_side_file_leading_out_of_an_s3_stage_folder_is_refused(s3, tmp_path: Path):  # noqa: F811
    src = tmp_path / "src"
    _shard(src / "part-0.parquet")
    out = f"s3://{BUCKET}/contained/out"
    # out/../out-evil/ shares out's name as a prefix: it is still another folder.
    stage = Escaping(name="escaping", escape_to="../out-evil/escaped.txt")
    manifest = run_stage(stage, [Input(str(src))], out, LocalExecutor())
    assert not any("out-evil" in key for key in _keys("contained"))
    [failed] = manifest["failed_tasks"]
    assert "outside the stage folder" in failed["error"]
