"""The one survivor rule of exact and near deduplication: which document of a cluster of duplicates stays.

The survivor has the best (lowest) source priority from sources.yaml, then the longest text, then the
smallest id, then the earliest position: the choice does not depend on how the corpus was split into
shards, nor on the order tasks finished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_PRIORITY = 100  # of a source sources.yaml gives none (lower wins when duplicates compete)


def choose_survivors(members: pa.Table, cluster: str, position: Sequence[str]) -> pa.Table:
    """Cluster members (columns `cluster`, priority, length, id and the `position` columns), sorted by
    cluster and the rule, with their survivor's id (`survivor`) and whether they are it (`is_survivor`)."""
    order = [
        (cluster, "ascending"),
        ("priority", "ascending"),
        ("length", "descending"),
        ("id", "ascending"),
        *[(p, "ascending") for p in position],
    ]
    ordered = members.take(pc.sort_indices(members, sort_keys=order))
    keys = ordered.column(cluster).to_numpy(zero_copy_only=False)
    first = np.concatenate([[True], keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, bool)
    ids = ordered.column("id").to_numpy(zero_copy_only=False)
    survivor = ids[np.flatnonzero(first)][np.cumsum(first) - 1] if len(keys) else ids
    return ordered.append_column("survivor", pa.array(survivor, pa.string())).append_column(
        "is_survivor", pa.array(first)
    )


def source_priorities(catalog: Mapping[str, Any]) -> dict[str, int]:
    """Each source's priority as sources.yaml gives it (catalog: name -> curate.sources.registry.Source)."""
    return {s.name: s.priority for s in catalog.values()}


def priorities(sources: Sequence[str | None], priority: dict[str, int]) -> pa.Array:
    """Each document's source priority (DEFAULT_PRIORITY for a source the mapping lacks)."""
    return pa.array([priority.get(s, DEFAULT_PRIORITY) for s in sources], pa.int32())
