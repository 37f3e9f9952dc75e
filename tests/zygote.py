"""A launcher that starts `tokstep` on a given terminal without paying Python's imports each time.

Run as `python zygote.py SOCKET`: it imports tokstep's CLI, app, engine, torch and transformers once, says
`ready` on stdout, then serves one JSON request per connection on the Unix socket SOCKET:
`{"tty": "/dev/pts/N", "argv": [...], "env": {...}}`. For each, it forks a child that becomes a new session
whose controlling terminal is that tty (as the process a terminal emulator starts is), with stdin, stdout and
stderr on it, and runs `tokstep.tui.cli.main.console_main()` there: the real program, its imports already done.
The reply is the child's pid (one line), then, when the child has ended, its exit status (`exit N`, or
`signal N` when a signal killed it). Used by tests/test_tui_kill_points.py to kill 50 runs in well under the
time 50 fresh interpreters would take to import torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading


def preload() -> None:
    """Everything a run imports before it shows anything (the lazy imports of the CLI, done once here)."""
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    import tokstep.engine.model.session  # noqa: F401
    import tokstep.tui.cli.main  # noqa: F401
    import tokstep.tui.screens.app  # noqa: F401
    import tokstep.tui.screens.browser  # noqa: F401
    import tokstep.tui.screens.scan_browser  # noqa: F401
    import tokstep.tui.screens.stepper  # noqa: F401


def run_child(tty: str, argv: list[str], env: dict[str, str]) -> None:
    """In the forked child: take `tty` as the controlling terminal and run tokstep; never returns."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        fd = os.open(tty, os.O_RDWR)  # a session leader without a terminal: this one becomes it
        for target in (0, 1, 2):
            os.dup2(fd, target)
        if fd > 2:
            os.close(fd)
        os.environ.update(env)
        sys.argv = ["tokstep", *argv]
        from tokstep.tui.cli.main import console_main

        console_main()
    except SystemExit as done:
        os._exit(done.code if isinstance(done.code, int) else 1)
    except KeyboardInterrupt:  # what Python does with one nobody caught: end by SIGINT itself
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # noqa: BLE001 - the child must never return into the zygote's loop
        os._exit(70)
    os._exit(0)


def serve(connection: socket.socket) -> None:
    request = json.loads(connection.makefile().readline())
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        connection.close()
        run_child(request["tty"], request["argv"], request.get("env", {}))
    connection.sendall(f"{pid}\n".encode())

    def report() -> None:
        _pid, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status)
        ended = f"signal {os.WTERMSIG(status)}" if killed else f"exit {os.WEXITSTATUS(status)}"
        with contextlib.suppress(OSError):  # the test stopped listening
            connection.sendall(f"{ended}\n".encode())
        connection.close()

    threading.Thread(target=report, daemon=True).start()


def main(path: str) -> None:
    preload()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    print("ready", flush=True)
    while True:
        connection, _address = server.accept()
        serve(connection)


if __name__ == "__main__":
    main(sys.argv[1])
