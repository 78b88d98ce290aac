"""Where benchmark results go: benchmarks/results/<name>.json, with the machine, the date and the command."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, memory, OS, Python, and how busy it was."""
    cpu, memory_gib = platform.processor(), None
    if Path("/proc/cpuinfo").exists():
        models = [
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")
        ]
        cpu = models[0].split(":", 1)[1].strip() if models else cpu
    if Path("/proc/meminfo").exists():
        total_kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory_gib = round(total_kib / 2**20, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "arch": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # others' work on the machine skews timings
    }


def write_results(name: str, data: dict[str, Any], out: Path | None = None) -> Path:
    """Write data as <out>/<name>.json (default benchmarks/results/) with machine, date and command."""
    folder = Path(out) if out is not None else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    given = data.get("machine")  # a script's own machine facts (a dict) win; a bare string is the arch
    stamped = {
        "benchmark": name,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        **data,
        "machine": {**machine(), **(given if isinstance(given, dict) else {})},
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(stamped, indent=2) + "\n")
    print(f"wrote {path}")
    return path
