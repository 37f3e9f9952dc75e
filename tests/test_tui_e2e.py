"""End to end: `tokstep` in a real terminal (tmux), keys pressed, the screen read back as text.

Needs tmux (CI installs it: .ci/run). A tiny model saved to a temp folder keeps it fast.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import tiny

TOKSTEP = Path(sys.executable).with_name("tokstep")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tokenizer = tiny.sentencepiece_bpe(chat_template=tiny.CHATML)
    return tiny.save_model_folder(tmp_path_factory.mktemp("tiny-llama-e2e"), tokenizer)


class Terminal:
    """One tmux session running a command; `screen()` is what a user would see.

    Each terminal has its own tmux server (`-L`): no race with another test's server shutting down, and no
    window size imposed by a tmux the user has open.
    """

    def __init__(
        self, command: list[str], cols: int = 100, rows: int = 30, env: dict[str, str] | None = None
    ):
        assert shutil.which("tmux"), "tmux is required for the end-to-end test (apt-get install -y tmux)"
        self.name = f"tokstep-e2e-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        # after the program exits, print its status and keep the pane alive so the test can read it
        shell = f'env TERM=xterm-256color {exports} {shlex.join(command)}; echo "[exit $?]"; sleep 60'
        self.tmux = ["tmux", "-L", self.name]
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", self.name, "-x", str(cols), "-y", str(rows), shell],
            check=True,
        )
        subprocess.run(
            [*self.tmux, "resize-window", "-t", self.name, "-x", str(cols), "-y", str(rows)], check=False
        )

    def screen(self) -> str:
        out = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True
        )
        return out.stdout

    def wait_for(self, text: str, seconds: float = 90.0) -> str:
        return self.wait_until(lambda screen: text in screen, seconds, f"{text!r} never appeared")

    def wait_until(self, done, seconds: float = 30.0, failure: str = "the screen never changed as expected") -> str:
        """Wait until `done(screen)` holds; the screen then."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            screen = self.screen()
            if done(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{failure}; the screen was:\n{self.screen()}")

    def press(self, *keys: str) -> None:
        for key in keys:
            subprocess.run([*self.tmux, "send-keys", "-t", self.name, key], check=True)
            time.sleep(0.15)

    def exit_status(self, seconds: float = 15.0) -> int:
        screen = self.wait_for("[exit ", seconds)
        return int(screen.split("[exit ")[1].split("]")[0])

    def modes(self) -> dict[str, int]:
        """What the program left set in the terminal: alternate screen, mouse tracking, cursor visible."""
        out = subprocess.run(
            [
                *self.tmux,
                "display-message",
                "-p",
                "-t",
                self.name,
                "#{alternate_on} #{mouse_any_flag} #{cursor_flag}",
            ],
            capture_output=True,
            text=True,
        ).stdout.split()
        return dict(zip(("alternate", "mouse", "cursor"), map(int, out), strict=True))

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.fixture
def terminal():
    opened: list[Terminal] = []

    def open_terminal(*args, **kwargs) -> Terminal:
        opened.append(Terminal(*args, **kwargs))
        return opened[-1]

    yield open_terminal
    for term in opened:
        term.close()


def test_tokstep_steps_through_a_sample_in_a_real_terminal(model_dir, terminal):
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        str(TOKSTEP),
        "--model",
        model_dir,
        "--device",
        "cpu",
        "--prompt",
        "Question: 2+2?",
        "--answer",
        " 4",
    ]
    term = terminal(command, cols=100, rows=30, env=env)
    screen = term.wait_for("t 0 / ")
    assert "top-10 next tokens" in screen and "CE = −log q(target)" in screen and "one-hot target" in screen

    term.press("Right", "Right", "l")
    screen = term.wait_for("t 3 / ")
    total = int(screen.split("t 3 / ")[1].split()[0])

    term.press("End")
    term.wait_for(f"t {total - 1} / {total}")
    # HF's reference is computed after the stepper shows; the badge turns to ✓ match when it arrives
    screen = term.wait_for("✓ match")  # our mean equals HF's model(input_ids, labels=labels).loss
    assert f"t {total - 1} / {total}" in screen

    term.press("?")
    assert "Keys" in term.wait_for("a token: jump to it")
    # q closes the help, then quits. (Not Escape then q: within tmux's escape-time a quick Escape + q reaches
    # the program as one Alt+q, which neither closes the help nor quits.)
    term.press("q")
    term.wait_until(lambda screen: "a token: jump to it" not in screen)
    term.press("q")
    assert term.exit_status() == 0


def test_a_load_failure_is_shown_in_the_app_then_left_as_one_line(terminal, tmp_path):
    missing = tmp_path / "no-such-model"
    term = terminal([str(TOKSTEP), "--model", str(missing), "--text", "hi"], env={"HF_HUB_OFFLINE": "1"})
    screen = term.wait_for("could not start")
    squeezed = "".join(screen.split())  # the reason may wrap over lines
    assert "".join(f"no such folder: {missing}".split()) in squeezed
    term.press("q")
    assert term.exit_status() == 2
    after = "".join(line.rstrip() for line in term.screen().splitlines())  # undo the terminal's wrapping
    # Textual draws on stderr: once it has restored the terminal, the same reason is left there as one line
    assert after == f"tokstep: error: no such folder: {missing}[exit 2]"


def test_no_color_still_marks_token_boundaries(model_dir, terminal):
    env = {"HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    command = [
        str(TOKSTEP),
        "--model",
        model_dir,
        "--device",
        "cpu",
        "--text",
        "I love dogs and I love cats.",
    ]
    term = terminal(command, env=env)
    term.wait_for("t 0 / ")
    screen = term.wait_for("<s>")
    context = next(line for line in screen.splitlines() if "<s>" in line)  # the context's first line
    assert "<s> " in context  # a space after each token: boundaries survive without colour


def wait_for_pid(path: Path, seconds: float = 30.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError("the program never wrote its pid")


def test_sigterm_in_the_stepper_gives_the_terminal_back(model_dir, terminal, tmp_path):
    pid_file = tmp_path / "pid"
    tokstep = shlex.join([str(TOKSTEP), "--model", model_dir, "--device", "cpu", "--text", "I love dogs."])
    term = terminal(["sh", "-c", f"echo $$ > {pid_file}; exec {tokstep}"], env={"HF_HUB_OFFLINE": "1"})
    term.wait_for("t 0 / ")
    assert term.modes() == {"alternate": 1, "mouse": 1, "cursor": 0}  # what the app turns on
    os.kill(wait_for_pid(pid_file), signal.SIGTERM)
    assert term.exit_status(seconds=60) == 143
    assert term.modes() == {"alternate": 0, "mouse": 0, "cursor": 1}  # all of it given back
    assert "tokstep: terminated (SIGTERM)" in term.screen()


# The model load, replaced by one that never ends (as a 70B checkpoint on a slow disk); the rest is real.
BLOCKED_LOAD = """
import sys, time
from tokstep.tui.screens import app
app.EngineBackend.load = lambda self, spec: time.sleep(600)
from tokstep.tui.cli.main import main
sys.exit(main(["--text", "I love dogs."]))
"""


def test_sighup_during_the_model_load_gives_the_terminal_back(terminal, tmp_path):
    pid_file = tmp_path / "pid"
    python = shlex.join([sys.executable, "-c", BLOCKED_LOAD])
    term = terminal(["sh", "-c", f"echo $$ > {pid_file}; exec {python}"], env={"HF_HUB_OFFLINE": "1"})
    term.wait_for("loading tokstep-mini")
    assert term.modes()["alternate"] == 1
    os.kill(wait_for_pid(pid_file), signal.SIGHUP)
    assert term.exit_status(seconds=60) == 129
    assert term.modes() == {"alternate": 0, "mouse": 0, "cursor": 1}
    assert "tokstep: hung up (SIGHUP)" in term.screen()
