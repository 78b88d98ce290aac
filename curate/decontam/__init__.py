"""Decontamination against evaluation sets: test-item n-gram index, matching, the `decontaminate` step."""
