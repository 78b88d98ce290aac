"""The mixing arithmetic as plain functions: component specs, token targets, copies per document, splits.

A component asks for either a `share` of the mixture's tokens or a number of `epochs` (passes over its own
tokens). Documents are sampled whole: every document of a component gets floor(r) copies and a seeded random
subset gets one more, where r = target tokens / available tokens; the subset is the longest prefix of a seeded
permutation that stays within the fraction left over, topped up with the remaining documents whose lengths
best fill what is still missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

from curate.errors import ConfigError

SHARE_TOLERANCE = 1e-6  # shares given as decimals (0.1 + 0.2 ...) do not sum exactly to 1
SPLIT_SEED = 0  # the validation split never depends on the sampling seed, so it is stable across mixes
TOP_UP_ROUNDS = 8  # documents added after the seeded prefix to close the gap to a component's target


@dataclass(frozen=True)
class ComponentSpec:
    """One component of a mixture: a share of tokens or a number of epochs, and the source tags it takes."""

    name: str
    share: float | None = None
    epochs: float | None = None
    sources: tuple[str, ...] = ()


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"component {name!r}: {key} must be a number, not {value!r}")
    if value < 0:
        raise ConfigError(f"component {name!r}: {key} must not be negative (got {value})")
    return float(value)


def parse_components(raw: Any, total_tokens: int | None = None) -> list[ComponentSpec]:
    """Check and normalise `components:` ({name: {share|epochs, sources}}); ValueError says what to fix."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(
            "mix needs 'components': a mapping of component name to {share: 0.5} or {epochs: 2} "
            "(e.g. components: {guidelines: {share: 0.5}, replay: {share: 0.5}})"
        )
    specs = []
    owner: dict[str, str] = {}
    for name, spec in raw.items():
        name = str(name)
        if spec is None or isinstance(spec, (int, float)) and not isinstance(spec, bool):
            spec = {"share": spec}  # `guidelines: 0.5` is short for {share: 0.5}
        if not isinstance(spec, Mapping):
            raise ConfigError(f"component {name!r}: expected {{share: X}} or {{epochs: X}}, not {spec!r}")
        unknown = sorted(set(spec) - {"share", "epochs", "sources"})
        if unknown:
            raise ConfigError(
                f"component {name!r}: unknown key(s) {', '.join(unknown)}; it takes share, epochs, sources"
            )
        if ("share" in spec) == ("epochs" in spec):
            raise ConfigError(f"component {name!r}: give exactly one of share (of tokens) or epochs")
        share = _number(name, "share", spec["share"]) if "share" in spec else None
        epochs = _number(name, "epochs", spec["epochs"]) if "epochs" in spec else None
        if share is not None and share > 1:
            raise ConfigError(f"component {name!r}: share must be between 0 and 1 (got {share})")
        sources = spec.get("sources") or []
        if isinstance(sources, str):
            sources = [sources]
        for tag in map(str, sources):
            if tag in owner:
                raise ConfigError(f"source {tag!r} is listed by both components {owner[tag]!r} and {name!r}")
            owner[tag] = name
        specs.append(ComponentSpec(name, share, epochs, tuple(map(str, sources))))
    shares = [s.share for s in specs if s.share is not None]
    total = sum(shares)
    by_epochs = [s.name for s in specs if s.epochs is not None]
    if not by_epochs and abs(total - 1) > SHARE_TOLERANCE:
        listed = ", ".join(f"{s.name}={s.share:g}" for s in specs)
        raise ConfigError(f"component shares must sum to 1, but {listed} sum to {total:g}")
    if by_epochs and shares and total >= 1 - SHARE_TOLERANCE:
        raise ConfigError(
            f"the shares sum to {total:g}, leaving nothing for {', '.join(by_epochs)} (given in epochs); "
            "with epochs for some components the shares of the others must sum to less than 1"
        )
    if total_tokens is not None and by_epochs:
        raise ConfigError(
            "total_tokens needs a share for every component (components given in epochs fix their own "
            f"tokens: {', '.join(by_epochs)})"
        )
    return specs


def source_map(specs: Iterable[ComponentSpec]) -> dict[str, str]:
    """Source tag -> component name: the tags each component lists, else a component named like the tag."""
    specs = list(specs)
    mapping = {s.name: s.name for s in specs}
    for spec in specs:
        mapping.update(dict.fromkeys(spec.sources, spec.name))
    return mapping


def targets(
    specs: list[ComponentSpec], available: Mapping[str, float], total_tokens: int | None = None
) -> dict[str, float]:
    """Tokens each component contributes to the mixture.

    Epoch components fix their own tokens; share components fill their shares of the total, which is
    total_tokens if given, else what the epoch components leave, else (shares only) the largest mixture that
    repeats no component.
    """
    fixed = {s.name: s.epochs * available[s.name] for s in specs if s.epochs is not None}
    shared = {s.name: s.share for s in specs if s.share is not None}
    if total_tokens is not None:
        total = float(total_tokens)
    elif fixed:
        total = sum(fixed.values()) / (1 - sum(shared.values()))
    else:
        limits = [available[n] / share for n, share in shared.items() if share > 0]
        total = min(limits) if limits else 0.0
    for name, share in shared.items():
        if share > 0 and available[name] <= 0:
            raise ConfigError(
                f"component {name!r} has no tokens to sample (no documents reached it), but its share is "
                f"{share:g}: check its inputs or sources"
            )
    return {**fixed, **{n: share * total for n, share in shared.items()}}


def sampling_keys(ids: Iterable[str], seed: int) -> np.ndarray:
    """A seeded 64-bit hash per document id: the order in which documents are drawn."""
    return np.fromiter(
        (xxhash.xxh3_64_intdigest(i.encode("utf-8", "surrogateescape"), seed) for i in ids), dtype=np.uint64
    )


def validation_mask(ids: Iterable[str], fraction: float) -> np.ndarray:
    """True for documents in the validation split: the id's hash (independent of the seed) below fraction."""
    ids = list(ids)
    if fraction <= 0:
        return np.zeros(len(ids), dtype=bool)
    keys = sampling_keys(ids, SPLIT_SEED)
    # Compare in float: fraction * 2**64 does not fit a uint64 exactly, and a 1e-19 error is irrelevant here.
    return keys.astype(np.float64) < fraction * 2.0**64


def choose_copies(tokens: np.ndarray, keys: np.ndarray, target: float) -> np.ndarray:
    """Copies of each document so that their tokens come as close to target as whole documents allow."""
    n = len(tokens)
    available = float(tokens.sum())
    if n == 0 or target <= 0 or available <= 0:
        return np.zeros(n, dtype=np.uint32)
    ratio = target / available
    whole = math.floor(ratio + 1e-12)
    rest = max(0.0, target - whole * available)
    order = np.lexsort((np.arange(n), keys))  # by key; equal keys (repeated ids) by position
    cumulative = np.cumsum(tokens[order])
    cut = int(np.searchsorted(cumulative, rest, side="right"))  # the longest prefix not above `rest`
    taken = list(order[:cut])
    gap = rest - (float(cumulative[cut - 1]) if cut else 0.0)
    left = order[cut:]
    # Top up with the not-yet-drawn documents whose lengths best fill the gap: a few long documents would
    # otherwise leave it up to half a document wide, which for a small component is a visible share error.
    for _ in range(TOP_UP_ROUNDS):
        if gap <= 0 or len(left) == 0:
            break
        best = int(np.argmin(np.abs(tokens[left] - gap)))  # ties: the earliest in the seeded order
        if abs(float(tokens[left[best]]) - gap) >= gap:
            break
        gap -= float(tokens[left[best]])
        taken.append(left[best])
        left = np.delete(left, best)
    copies = np.full(n, whole, dtype=np.uint32)
    copies[np.asarray(taken, dtype=np.int64)] += 1
    return copies


def named_values(values: list[str] | None, option: str, number: bool) -> list[tuple[str, Any]]:
    """NAME=VALUE pairs of a repeatable command-line option (values as numbers when `number`); ConfigError
    for a malformed one."""
    pairs = []
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            example = f"{option} guidelines={'0.5' if number else 'work/shard'}"
            raise ConfigError(f"{option} takes NAME=VALUE (e.g. {example}), not {value!r}")
        if number:
            try:
                rest = float(rest)
            except ValueError:
                raise ConfigError(f"{option} {value!r}: {rest!r} is not a number") from None
        pairs.append((name, rest))
    return pairs


def component_options(
    components: list[str], shares: list[str] | None, epochs: list[str] | None
) -> tuple[list[tuple[str, str]], dict[str, dict[str, float]]]:
    """The command line's components (--component NAME=PATH, repeatable; a name may take several paths) and
    each one's {share: X} or {epochs: X} (--share/--epochs NAME=X): the (name, path) inputs, and the specs
    in the order the names first appear. ConfigError for an unknown or twice-given name."""
    inputs = named_values(components, "--component", number=False)
    names = list(dict.fromkeys(name for name, _ in inputs))
    specs: dict[str, dict[str, float]] = {}
    for option, key, pairs in (("--share", "share", shares), ("--epochs", "epochs", epochs)):
        for name, value in named_values(pairs, option, number=True):
            if name not in names:
                known = ", ".join(names)
                raise ConfigError(
                    f"unknown component {name!r} in {option}; components (from --component): {known}"
                )
            if name in specs:
                raise ConfigError(f"component {name!r} has more than one --share/--epochs")
            specs[name] = {key: value}
    return inputs, {name: specs.get(name, {}) for name in names}
