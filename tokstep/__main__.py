"""`python -m tokstep ...` runs the CLI (so `torchrun -m tokstep scan ...` works too)."""

from tokstep.tui.cli.main import console_main

if __name__ == "__main__":
    console_main()
