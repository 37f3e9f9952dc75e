"""Lints: the catalogue (`catalogue.py`), one module per kind of check, `lint_sample` (`sample_lints.py`) that
runs them on a sample, and the batched and parallel runners over data files (`batch.py`, `pool.py`)."""
