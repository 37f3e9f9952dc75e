"""Placeholder until the Textual app lands: run the report instead."""

from __future__ import annotations

import argparse
from typing import Any


def run_app(args: argparse.Namespace, model: Any, sample: Any) -> int:
    from tui.report import run_report

    for name, value in {
        "json": None,
        "force": False,
        "incremental": False,
        "no_reference": False,
        "limit": None,
    }.items():
        setattr(args, name, getattr(args, name, value))
    return run_report(args, model, sample)
