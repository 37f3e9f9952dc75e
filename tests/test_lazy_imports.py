"""`tokstep --help` must stay fast: no torch, transformers or textual imported (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "textual")

PROBE = """
import json, sys
from tokstep.tui.cli.main import main
code = None
try:
    code = main(sys.argv[1:])  # --help returns 0 (older versions exited)
except SystemExit as stop:
    code = stop.code
print(json.dumps({"code": code, "heavy": [m for m in HEAVY if m in sys.modules]}), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))


def run_probe(*argv: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["report", "--help"]])
def test_help_imports_no_heavy_module(argv):
    result = run_probe(*argv)
    assert result["code"] == 0
    assert result["heavy"] == []


def test_importing_the_cli_imports_no_heavy_module():
    code = f"import json, sys, tokstep.tui.cli.main; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_the_probe_would_notice_a_heavy_import():
    """The check itself works: a module that imports torch shows up."""
    code = f"import json, sys, tokstep.engine.model.reduce; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "torch" in json.loads(done.stdout)


def test_every_tui_module_leaves_torch_out():
    """The seam: screens hold numpy-only result types; no tui module imports torch, even indirectly."""
    code = (
        "import importlib, json, pkgutil, sys, tokstep.tui as tui\n"
        "names = [m.name for m in pkgutil.walk_packages(tui.__path__, 'tokstep.tui.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(json.dumps({'names': names, 'heavy': [m for m in ('torch', 'transformers') if m in sys.modules]}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "tokstep.tui.screens.stepper" in result["names"] and "tokstep.tui.widgets.status_bar" in result["names"]
    assert result["heavy"] == []


def test_python_dash_m_tokstep_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "tokstep", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage: tokstep" in done.stdout


def test_every_replaced_file_gets_the_usual_mode_and_no_temporary_is_left(tmp_path):
    """One atomic writer (engine/atomic.py) serves --json/--html, save_batches and scan: a new file gets
    0666 less the umask like any other, never mkstemp's 0600, and a failed write leaves nothing behind."""
    import os

    from tokstep.engine.atomic import write_atomic, write_text_atomic

    umask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "out.json", "{}\n")
        assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o644

        def broken(path):
            path.write_text("half")
            raise OSError(28, "No space left on device")

        with pytest.raises(OSError):
            write_atomic(tmp_path / "out.json", broken)
    finally:
        os.umask(umask)
    assert (tmp_path / "out.json").read_text() == "{}\n"  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


LINT_PROBE = """
import json, sys
from tokstep.tui.cli import main as cli
sys.argv = ["tokstep", *sys.argv[1:]]
try:
    cli.console_main()
except SystemExit as stop:
    print(json.dumps({"code": stop.code, "heavy": [m for m in HEAVY if m in sys.modules]}), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))


def test_lint_as_a_command_keeps_torch_out_and_finds_the_same(tmp_path):
    """`tokstep lint` (the entry point) tokenizes without importing torch; its findings are byte-identical to
    those of an in-process run, where transformers comes with torch; stderr carries no transformers notice."""
    from tokstep.tui.cli.main import main

    command_json, in_process_json = tmp_path / "command.json", tmp_path / "in_process.json"
    data = str(ROOT / "docs" / "examples" / "train.jsonl")
    done = subprocess.run(
        [sys.executable, "-c", LINT_PROBE, "lint", data, "--json", str(command_json)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": ["transformers"]}, done.stderr
    assert "PyTorch" not in done.stderr
    assert main(["lint", data, "--json", str(in_process_json)]) == 0
    assert "torch" in sys.modules  # the in-process run is the reference: transformers with torch
    assert command_json.read_bytes() == in_process_json.read_bytes()
