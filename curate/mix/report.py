"""The mix report: tokens per component, requested vs achieved share, epochs, documents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from curate.mix.mixing import ComponentSpec
from curate.tokens import TokenCounter

REPORT = "mix.json"  # in the mix stage's folder
FIELDS = ("documents", "documents_drawn", "rows", "tokens_available", "tokens")


def build_report(
    stage: str,
    specs: Sequence[ComponentSpec],
    counter: TokenCounter,
    settings: Mapping[str, Any],
    footers: list[dict[str, Any]],
    manifest: dict[str, Any],
) -> dict[str, Any]:
    """Sum the tasks' per-component counts into the mix report (tokens labelled when approximate);
    `settings`: the stage's seed, validation_fraction and total_tokens_requested, as reported."""
    names = [s.name for s in specs]
    sums: dict[str, dict[str, dict[str, float]]] = {
        split: {n: dict.fromkeys(FIELDS, 0.0) for n in names} for split in ("train", "validation")
    }
    wanted: dict[str, float] = {}
    for footer in footers:
        wanted = footer.get("targets") or wanted
        for name, counts in footer["components"].items():
            for key in FIELDS:
                sums[footer["split"]][name][key] += counts[key]
    train, validation = sums["train"], sums["validation"]
    total = sum(c["tokens"] for c in train.values())
    total_wanted = sum(wanted.values())
    components = []
    for spec in specs:
        c = train[spec.name]
        requested = spec.share if spec.share is not None else None
        if requested is None and total_wanted:
            requested = wanted.get(spec.name, 0.0) / total_wanted  # epochs fix tokens; their share follows
        components.append(
            {
                "component": spec.name,
                "requested": {"share": spec.share} if spec.share is not None else {"epochs": spec.epochs},
                "sources": list(spec.sources),
                "share_requested": requested,
                "share": c["tokens"] / total if total else None,
                "epochs": c["tokens"] / c["tokens_available"] if c["tokens_available"] else None,
                "tokens_target": wanted.get(spec.name),
                "tokens": c["tokens"],
                "tokens_available": c["tokens_available"],
                "documents": int(c["documents"]),
                "documents_drawn": int(c["documents_drawn"]),
                "rows": int(c["rows"]),
                "validation_documents": int(validation[spec.name]["documents"]),
                "validation_tokens": validation[spec.name]["tokens"],
            }
        )
    reasons = manifest.get("drop_reasons", {})
    return {
        "stage": stage,
        "status": manifest.get("status"),
        "tokens": {"counted_with": counter.label, "approximate": counter.approximate},
        **settings,
        "components": components,
        "train": {"rows": sum(int(c["rows"]) for c in train.values()), "tokens": total},
        "validation": {
            "rows": sum(int(c["rows"]) for c in validation.values()),
            "tokens": sum(c["tokens"] for c in validation.values()),
        },
        "not_sampled": int(reasons.get("not_sampled", 0)),
        "no_component": int(reasons.get("mix_no_component", 0)),
        "copies_id_suffix": "#copy<k> (k >= 2; the first copy keeps the original id)",
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _num(value: float | None, approximate: bool) -> str:
    if value is None:
        return "-"
    return ("~" if approximate else "") + f"{round(value):,}"


def print_mix_report(report: dict[str, Any], console: Console) -> None:
    """The mix report as a terminal table; approximate token counts are marked with ~ and a caption."""
    approximate = report["tokens"]["approximate"]
    table = Table(
        title=f"mix: {report['stage']} (seed {report['seed']})",
        title_justify="left",
        caption=f"tokens {report['tokens']['counted_with']}; val: validation documents",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    width = max([len("component")] + [len(c["component"]) for c in report["components"]])
    table.add_column("component", no_wrap=True, min_width=width)
    for column in ("asked", "share", "tokens", "epochs", "documents", "rows", "val"):
        table.add_column(column, justify="right", no_wrap=True)
    for c in report["components"]:
        requested = c["requested"]
        asked = _pct(requested["share"]) if "share" in requested else f"{requested['epochs']:g} epochs"
        table.add_row(
            c["component"],
            asked,
            _pct(c["share"]),
            _num(c["tokens"], approximate),
            "-" if c["epochs"] is None else f"{c['epochs']:.3f}",
            f"{c['documents']:,}",
            f"{c['rows']:,}",
            f"{c['validation_documents']:,}",
        )
    table.add_row(
        "total", "", "", _num(report["train"]["tokens"], approximate), "", "",
        f"{report['train']['rows']:,}", f"{report['validation']['rows']:,}",
    )  # fmt: skip
    console.print(table)
