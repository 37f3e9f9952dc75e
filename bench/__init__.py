"""tokstep's benchmark suite: `python -m bench.run` (see the Performance section of README.md)."""
