"""`python -m tokstep ...` runs the CLI (so `torchrun -m tokstep scan ...` works too)."""

import sys

from tokstep.tui.cli import main

if __name__ == "__main__":
    sys.exit(main())
