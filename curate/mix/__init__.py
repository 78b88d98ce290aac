"""Mixing (the "Replay" of GAP-Replay): sample components to target shares of tokens, with a split."""
