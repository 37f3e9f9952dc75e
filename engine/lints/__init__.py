"""Lints: the catalogue, and the batched and parallel runners over data files."""
