"""Mixing (the "Replay" of GAP-Replay): sample components to target shares of tokens, with a split."""

from curate.mix.mixing import ComponentSpec, choose_copies, parse_components, targets, validation_mask
from curate.mix.stage import MixStage, read_documents

__all__ = [
    "ComponentSpec",
    "MixStage",
    "choose_copies",
    "parse_components",
    "read_documents",
    "targets",
    "validation_mask",
]
