"""The `tokstep` command line. Imports stay lazy so `tokstep --help` never loads torch."""

from __future__ import annotations

import argparse
import contextlib
import copy
import errno
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

import tokstep.tui.cli.flag_rules as flag_rules
import tokstep.tui.cli.output as output
from tokstep.engine import defaults
from tokstep.engine.errors import TokstepError
from tokstep.engine.model import torch_free
from tokstep.engine.policies import (
    DEFAULT_EOT,
    DEFAULT_INSERTED,
    DEFAULT_REFERENCE,
    DEFAULT_TOP_K,
    POLICIES,
    REFERENCES,
)
from tokstep.engine.scan.files import is_scan
from tokstep.tui import exit_codes
from tokstep.tui.cli.run_config import RunConfig
from tokstep.tui.exit_codes import EXIT_STATUS_HELP

if TYPE_CHECKING:
    from tokstep.engine.compare.spec import CompareSpec
    from tokstep.engine.inputs.spec import SampleSpec
    from tokstep.engine.model.loading import ModelSpec

DEMOS = ("qa", "text", "chat")
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class UsageError(Exception):
    """A command-line mistake found by argparse: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (raised, so `main` returns its status instead of exiting)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `lint --text` must not become --text-column
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


class _Unset:
    """The default of every flag while parsing: after parsing, a value that is still _UNSET was not given."""

    def __repr__(self) -> str:
        return "<not given>"


_UNSET = _Unset()


def _add_model_flags(parser: argparse.ArgumentParser, tokenizer_only: bool = False) -> None:
    group = parser.add_argument_group("tokenizer (from the model)" if tokenizer_only else "model")
    group.add_argument("--model", help="local HF folder or hub id (default: the bundled tokstep-mini)")
    group.add_argument("--revision", help="hub revision (branch, tag or commit)")
    if not tokenizer_only:
        group.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
        group.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
        group.add_argument(
            "--device-map", help="e.g. auto: spread a large model over GPUs (needs accelerate)"
        )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the model repo's own Python code (off by default)",
    )


def _add_compare_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("compare (a second model, dtype, device or tokenizer)")
    group.add_argument(
        "--compare", metavar="MODEL_B", help="model B: per position KL(A||B), ΔCE, top-1 agreement"
    )
    group.add_argument("--compare-revision", metavar="REV", help="B's hub revision")
    group.add_argument(
        "--compare-dtype",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="B's dtype (alone: the same weights in another dtype)",
    )
    group.add_argument(
        "--compare-device", metavar="DEVICE", help="B's device (alone: the same weights elsewhere)"
    )
    group.add_argument(
        "--compare-tokenizer",
        metavar="PATH",
        help="a second tokenizer only: token boundaries of the same text, aligned by bytes",
    )


def _add_sample_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sample (default: the bundled question + answer demo)")
    group.add_argument("--text", help="plain text, every token supervised")
    group.add_argument("--file", help="read plain text from a file")
    group.add_argument("--prompt", help="prompt text (masked, -100)")
    group.add_argument("--answer", help="answer text (supervised); EOS appended unless --eos none")
    group.add_argument(
        "--chat", metavar="FILE", help='JSON list of {"role", "content"} messages; assistant turns supervised'
    )
    group.add_argument(
        "--ids",
        metavar="FILE",
        help='JSON {"input_ids": [...], "labels": [...]} exactly as your trainer built it',
    )
    group.add_argument("--demo", choices=DEMOS, help="one of the bundled demo samples")
    group.add_argument(
        "--bos", default="auto", choices=["auto", "add", "none"], help="auto: as the tokenizer does"
    )
    group.add_argument(
        "--eos",
        default="auto",
        choices=["auto", "add", "none"],
        help="auto: as the tokenizer does; added after an answer",
    )
    group.add_argument(
        "--eot",
        default=DEFAULT_EOT,
        choices=POLICIES,
        help="chat: train the end-of-turn token(s) after each assistant turn (default) or mask them",
    )
    group.add_argument(
        "--inserted",
        default=DEFAULT_INSERTED,
        choices=POLICIES,
        help="chat: train tokens the template inserts inside an assistant turn (think blocks, tool-call "
        "wrappers; default) or mask them",
    )
    group.add_argument(
        "--truncate", type=int, metavar="N", help="keep only the first N tokens (else too long is an error)"
    )
    group.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_TOP_K,
        help=f"alternatives kept per position (default {DEFAULT_TOP_K})",
    )


def build_parser() -> argparse.ArgumentParser:
    # lazy: loads rich
    from tokstep.tui.cli.batch_report import add_batch_flags

    parser = Parser(
        prog="tokstep",
        description="Step through the training loss of a causal LM, token by token. "
        "With no sub-command, opens the interactive debugger.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_flags(parser)
    _add_compare_flags(parser)
    _add_sample_flags(parser)
    _add_reference_flag(parser)
    _add_data_flags(parser)
    add_batch_flags(parser)
    commands = parser.add_subparsers(dest="command", metavar="{report,lint,scan}")
    report = commands.add_parser(
        "report",
        help="print the per-position loss table and HF's reference loss",
        description="Print the per-position loss table of one sample and HF's reference loss.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_flags(report)
    _add_compare_flags(report)
    _add_sample_flags(report)
    _add_reference_flag(report)
    add_batch_flags(report)
    report.add_argument(
        "--json",
        metavar="PATH",
        help="also write the trace and its findings as JSON ('-' for stdout; schema: README, JSON output)",
    )
    report.add_argument(
        "--jsonl",
        metavar="PATH",
        help="also write the trace as JSON Lines: a header line (model, loss, findings), then one line per "
        "position ('-' for stdout)",
    )
    report.add_argument(
        "--html",
        metavar="FILE",
        help="also write a self-contained HTML page: coloured context, summary, worst",
    )
    report.add_argument("--svg", metavar="FILE", help="the same as a self-contained SVG image")
    report.add_argument(
        "--colour-by",
        "--color-by",
        dest="colour_by",
        default="ce",
        choices=["ce", "reason"],
        help="--html/--svg context colours: the CE of predicting each token (default) or its mask reason",
    )
    report.add_argument(
        "--force", action="store_true", help="allow --json/--html/--svg to overwrite an existing file"
    )
    report.add_argument(
        "--data",
        metavar="FILE",
        help="report every row of a data file, save_to_disk folder or cached data set (counts, loss, lints, supervised text)",
    )
    report.add_argument(
        "--rows",
        metavar="RANGES",
        help="with --data: only these rows, by the line (JSONL/JSON) or row (Parquet) numbers the "
        "screens show, e.g. 11-15 or 3,7,20-",
    )
    # lazy: loads rich
    from tokstep.tui.cli.lint_cmd import add_column_flags

    add_column_flags(report)
    report.add_argument(
        "--incremental",
        action="store_true",
        help="also trace token by token with the KV cache and report the drift",
    )
    report.add_argument(
        "--no-reference",
        dest="reference",
        action="store_const",
        const="off",
        help="the same as --reference off (saves a forward pass)",
    )
    report.add_argument(
        "--limit", type=int, metavar="N", help="print at most N rows (the summary still covers all)"
    )
    # lazy: loads rich
    from tokstep.tui.cli.lint_cmd import add_lint_parser

    add_lint_parser(commands, _add_model_flags)
    # lazy: loads rich
    from tokstep.tui.cli.lint_cmd import add_column_flags
    from tokstep.tui.cli.scan_cmd import add_scan_parser, add_scan_query_parser

    add_scan_parser(commands, _add_model_flags, add_column_flags)
    add_scan_query_parser(commands)
    _know_every_flag_at_the_top(parser, commands)
    _keep_flags_given_before_the_command(parser, commands)
    defaults: dict[str, object] = {}
    for action in _actions(parser):
        if action.default is not argparse.SUPPRESS and action.dest not in ("help", "command"):
            defaults.setdefault(action.dest, action.default)
            action.default = _UNSET  # see parse(): tells a given flag from a default
    parser.real_defaults = defaults  # type: ignore[attr-defined]
    return parser


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every flag of the parser and of its sub-commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        else:
            yield action


def _flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """The flag a user types for each dest (--top-k for top_k)."""
    names: dict[str, str] = {}
    for action in _actions(parser):
        if action.dest in ("help", "command"):
            continue
        if action.option_strings:
            names.setdefault(action.dest, max(action.option_strings, key=len))
        else:
            names.setdefault(action.dest, action.dest.upper())
    return names


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, set[str]]:
    """Parse; return the arguments (defaults filled in) and the dests the user gave.

    A flag that exists for another mode (`--data` after `report`) or that the mode does not use
    (`tokstep --data F report`) is a one-line error naming the flag and the mode.
    """

    names = _flag_names(parser)
    defaults: dict[str, object] = parser.real_defaults  # type: ignore[attr-defined]
    args, extras = parser.parse_known_args(argv)
    given = {dest for dest, value in vars(args).items() if value is not _UNSET and dest != "command"}
    mode = flag_rules.mode_of(args.command, "data" in given, "batches" in given)
    flag_of = {name: dest for dest, name in names.items()}
    for extra in extras:
        if extra.startswith("-") and extra != "-":
            flag = extra.split("=", 1)[0]
            dest = flag_of.get(flag)
            if dest is not None:
                raise UsageError(flag_rules.not_used_message(names[dest], dest, mode))
            raise UsageError(f"unknown flag {flag} (see `tokstep --help`)")
        raise UsageError(f"unexpected argument {extra!r} (see `tokstep --help`)")
    tokens = sys.argv[1:] if argv is None else argv
    if "--no-reference" in tokens and any(t == "--reference" or t.startswith("--reference=") for t in tokens):
        raise UsageError("give --no-reference or --reference MODE, not both")
    unused = flag_rules.unused(mode, given)
    if unused:
        raise UsageError(flag_rules.not_used_message(names.get(unused[0], unused[0]), unused[0], mode))
    for dest, default in defaults.items():
        if getattr(args, dest, _UNSET) is _UNSET:
            setattr(args, dest, default)
    return args, given


def _know_every_flag_at_the_top(
    parser: argparse.ArgumentParser, commands: argparse._SubParsersAction
) -> None:
    """A sub-command's own flag given at the top (`tokstep --json x`) parses there, hidden from --help, so that
    the flag rules can say which mode does not use it (instead of argparse taking `x` for a sub-command)."""
    known = {option for action in parser._actions for option in action.option_strings}
    for sub in commands.choices.values():
        for action in sub._actions:
            if action.option_strings and not known.intersection(action.option_strings):
                hidden = copy.copy(action)
                hidden.help = argparse.SUPPRESS
                parser._add_action(hidden)
                known.update(action.option_strings)


def _keep_flags_given_before_the_command(
    parser: argparse.ArgumentParser, commands: argparse._SubParsersAction
) -> None:
    """`tokstep --model M report` must not lose --model: a sub-command's copy of a top-level flag sets
    nothing unless it is given (argparse would otherwise overwrite the top-level value with its default)."""
    top_level = {action.dest for action in parser._actions if action.dest != "help"}
    for sub in commands.choices.values():
        for action in sub._actions:
            if action.dest in top_level:
                action.default = argparse.SUPPRESS


def _add_reference_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reference",
        default=DEFAULT_REFERENCE,
        choices=REFERENCES,
        help="HF's loss beside ours: chunked (default: HF's head and loss function over chunks, no "
        "[T, vocab] tensor), full (model(input_ids, labels=labels).loss, HF's full logits) or off",
    )


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    # lazy: loads rich
    from tokstep.tui.cli.lint_cmd import add_column_flags

    parser.add_argument(
        "--data",
        metavar="FILE",
        help="browse the rows of a data file, save_to_disk folder or cached data set (loss, lints per row)",
    )
    add_column_flags(parser)


def model_spec(args: RunConfig) -> ModelSpec:
    # lazy: loads numpy
    from tokstep.engine.model.loading import ModelSpec

    spec = ModelSpec(
        revision=args.revision,
        dtype=args.dtype,
        device=args.device,
        device_map=args.device_map,
        trust_remote_code=args.trust_remote_code,
    )
    if args.model:
        spec = replace(spec, name_or_path=args.model)
    return spec


def compare_spec(args: RunConfig, a: ModelSpec) -> CompareSpec | None:
    """B from the --compare* flags (unset ones default to A's), or None when nothing is compared."""
    # lazy: loads numpy
    from tokstep.engine.compare.spec import CompareSpec

    model_flags = [args.compare, args.compare_revision, args.compare_dtype, args.compare_device]
    tokenizer = args.compare_tokenizer
    if tokenizer is not None:
        if any(flag is not None for flag in model_flags):
            raise TokstepError(
                "--compare-tokenizer compares tokenization only: give it without --compare/--compare-*"
            )
        return CompareSpec(tokenizer=tokenizer)
    if all(flag is None for flag in model_flags):
        return None
    if args.data:
        raise TokstepError("--compare works on one sample, not with --data")
    name, revision, dtype, device = model_flags
    b = replace(
        a,
        name_or_path=name or a.name_or_path,
        revision=revision if revision is not None else (a.revision if name is None else None),
        dtype=dtype or a.dtype,
        device=device or (a.device if a.device_map is None else "auto"),
        device_map=None,
        trust_remote_code=False,
    )
    return CompareSpec(model=b)


def sample_spec(args: RunConfig) -> SampleSpec:
    """Turn the sample flags into a SampleSpec; exactly one source, or the demo."""
    # lazy: loads numpy
    from tokstep.engine.inputs.spec import (
        SampleSpec,
        from_ids,
        read_json,
        read_text,
        reject_negative_ids,
    )

    given = [name for name in ("text", "file", "chat", "ids", "demo") if getattr(args, name) is not None]
    if args.prompt is not None or args.answer is not None:
        given.append("prompt/answer")
    if len(given) > 1:
        raise TokstepError(f"give one sample source, not several: {', '.join('--' + g for g in given)}")
    common = {
        "bos": args.bos,
        "eos": args.eos,
        "truncate": args.truncate,
        "eot": args.eot,
        "inserted": args.inserted,
    }
    if args.text is not None:
        if not args.text:
            raise TokstepError("--text is empty: nothing to predict")
        return SampleSpec(text=args.text, name="--text", **common)
    if args.file is not None:
        text = read_text(args.file)
        if not text:
            raise TokstepError(f"text file {args.file} is empty: nothing to predict")
        return SampleSpec(text=text, name=os.path.basename(args.file), **common)
    if args.prompt is not None or args.answer is not None:
        if not args.answer:
            raise TokstepError("--answer is empty: nothing to supervise")
        return SampleSpec(prompt=args.prompt, answer=args.answer, name="prompt+answer", **common)
    if args.chat is not None:
        messages = read_json(args.chat, "chat")
        if isinstance(messages, dict) and "messages" in messages:
            messages = messages["messages"]
        if not isinstance(messages, list):
            raise TokstepError(
                f'chat file {args.chat} must hold a JSON list of messages (or {{"messages": [...]}})'
            )
        # lazy: loads numpy
        from tokstep.engine.chat.masks import check_messages

        check_messages(messages)  # bad content is one line before any model is loaded
        if not any(m.get("role") == "assistant" for m in messages):
            raise TokstepError(f"chat file {args.chat} has no assistant message: nothing would be supervised")
        return SampleSpec(chat=tuple(messages), name=os.path.basename(args.chat), **common)
    if args.ids is not None:
        data = read_json(args.ids, "ids")
        if not isinstance(data, dict):
            raise TokstepError(f'ids file {args.ids} must hold a JSON object with "input_ids" and "labels"')
        spec = SampleSpec(ids=data, name=os.path.basename(args.ids), **common)
        reject_negative_ids(from_ids(data))  # what the model would refuse, now (no tokenizer needed)
        return spec
    return demo_spec(args.demo or "qa", defaults, common)


def demo_spec(which: str, defaults, common: dict) -> SampleSpec:  # type: ignore[no-untyped-def]
    # lazy: loads numpy
    from tokstep.engine.inputs.spec import SampleSpec, read_json, read_text

    if which == "text":
        return SampleSpec(text=read_text(defaults.DEMO_TEXT).strip(), name="demo: text", **common)
    if which == "chat":
        return SampleSpec(chat=tuple(read_json(defaults.DEMO_CHAT, "demo chat")), name="demo: chat", **common)
    qa = read_json(defaults.DEMO_QA, "demo")
    return SampleSpec(prompt=qa["prompt"], answer=qa["answer"], name="demo: question + answer", **common)


ATTENTION_NAMES = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


def _known_attention(name: str) -> bool:
    """An attention implementation transformers accepts by name (a kernel from the hub is `org/name`)."""
    base = name.removeprefix("paged|")
    return base in ATTENTION_NAMES or bool(re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.-]+)?", base))


def _fail(message: str, code: int = exit_codes.BAD_INPUT) -> int:
    print(f"tokstep: error: {message}", file=sys.stderr)
    return code


def check_args(args: RunConfig, given: set[str]) -> None:
    """Every mistake that needs no model: found before the (slow) model load. Raises TokstepError."""

    def at_least(dest: str, flag: str, low: int) -> None:
        value = getattr(args, dest, None)
        if value is not None and value < low:
            raise TokstepError(f"{flag} must be at least {low} (got {value})")

    at_least("top_k", "--top-k", 1)
    at_least("truncate", "--truncate", 2)
    at_least("limit", "--limit", 0)
    at_least("max_rows", "--max-rows", 1)
    at_least("show", "--show", 0)
    at_least("jobs", "--jobs", 1)
    if getattr(args, "rows", None) is not None:
        # lazy: loads rich
        from tokstep.tui.cli.report_data import parse_rows

        parse_rows(args.rows)
    attention = getattr(args, "attn_implementation", None)
    if attention is not None and not _known_attention(attention):
        raise TokstepError(
            f"--attn-implementation {attention!r}: expected {', '.join(ATTENTION_NAMES)}, paged|NAME "
            "or a hub kernel (org/name)"
        )
    if not DEVICE_PATTERN.fullmatch(args.device or ""):
        raise TokstepError(
            f"--device {args.device!r}: expected auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps"
        )
    if args.device_map is not None and args.device_map != "auto":
        raise TokstepError(f"--device-map {args.device_map!r}: only auto is supported")
    if args.device_map is not None and "device" in given:
        raise TokstepError("give --device or --device-map, not both")
    if args.model is not None and not args.model.strip():
        raise TokstepError("--model needs a folder or hub id")
    if args.revision is not None:
        if args.model is None or os.path.isdir(os.path.expanduser(args.model)):
            where = "the bundled model" if args.model is None else f"{args.model} (a local folder)"
            raise TokstepError(f"--revision picks a version of a hub model; {where} has no revisions")
        if not args.revision.strip():
            raise TokstepError("--revision needs a branch, tag or commit")
    if (args.prompt is None) != (args.answer is None):
        raise TokstepError("--prompt and --answer go together: give both")
    if "data" in given and not args.data.strip():
        raise TokstepError("--data needs a file name")
    targets: dict[str, str] = {}  # the real path -> the flag naming it
    for flag in ("--json", "--jsonl", "--html", "--svg"):
        path = getattr(args, flag[2:], None)
        if path is None:
            continue
        output.check_target(path, args.force, flag)
        if path == output.STDOUT or not path.strip():
            continue
        real = os.path.realpath(os.path.expanduser(path))
        if real in targets:
            raise TokstepError(f"{targets[real]} and {flag} name the same file {path}: give each its own")
        targets[real] = flag


def main(argv: list[str] | None = None) -> int:
    """`tokstep`: returns the exit status (see EXIT_STATUS_HELP); every failure is one line on stderr.

    INT, TERM and HUP are caught from the first line (parsing included) to the last: one line, 128 + n."""
    try:
        with _signals_end_the_run():
            return _run(argv)
    except KeyboardInterrupt:
        line, status = "tokstep: interrupted (SIGINT)", exit_codes.INTERRUPTED
    except Terminated as stop:
        line, status = f"tokstep: {stop}", exit_codes.signalled(stop.signum)
    with contextlib.suppress(OSError, ValueError):  # hung up: stderr may be gone with the terminal
        print(line, file=sys.stderr)
    return status


def _run(argv: list[str] | None) -> int:
    try:
        args, given = parse(build_parser(), argv)
    except UsageError as error:
        return _fail(str(error).removeprefix("tokstep: "), exit_codes.BAD_INPUT)
    except SystemExit as done:  # --help
        return int(done.code or 0) if not isinstance(done.code, str) else exit_codes.BAD_INPUT
    if sys.stdout is None:  # `tokstep ... >&-`
        return _fail("standard output is closed: run it with stdout open (or > /dev/null)")
    try:
        return _dispatch(RunConfig.from_namespace(args), given)
    except TokstepError as error:
        return _fail(str(error))
    except OSError as error:  # a full disk or a closed pipe under stdout (`> /dev/full`, `| head -1`)
        if error.errno not in (errno.ENOSPC, errno.EPIPE, errno.EBADF, errno.EIO) and not _stdout_broken():
            return _internal(error)
        _stdout_broken()
        return _fail(f"cannot write the output: {error.strerror or error}")
    except RecursionError:
        return _fail("the input is nested too deeply to read")
    except MemoryError:
        return _fail(
            "out of memory (the input or the model is too large for this machine)", exit_codes.INTERNAL
        )
    except Exception as error:  # noqa: BLE001 - the promise is one line, never a traceback
        return _internal(error)


def _internal(error: Exception) -> int:
    if os.environ.get("TOKSTEP_DEBUG"):
        raise error
    message = " ".join(str(error).split())[:300]
    return _fail(
        f"internal error: {type(error).__name__}: {message} (set TOKSTEP_DEBUG=1 for the traceback)",
        exit_codes.INTERNAL,
    )


def _stdout_broken() -> bool:
    """Whether standard output can no longer be written (a full disk, a closed pipe): then stop quietly."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        with contextlib.suppress(OSError):  # nothing more may reach it, not even at interpreter exit
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return True
    return False


class Terminated(BaseException):
    """SIGTERM or SIGHUP outside the TUI: unwinds like Ctrl-C (Rich's spinner gives the cursor back)."""

    def __init__(self, signum: int) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"{'terminated' if name == 'SIGTERM' else 'hung up'} ({name})")
        self.signum = signum


@contextmanager
def _signals_end_the_run() -> Iterator[None]:
    """TERM and HUP raise `Terminated` in the main thread for the duration of a run (the TUI installs its own)."""
    names = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    previous = {name: signal.signal(getattr(signal, name), raise_terminated) for name in names}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def _dispatch(args: RunConfig, given: set[str]) -> int:
    """Run the mode the command line asks for; main turns every failure into one line."""
    check_args(args, given)
    if args.command == "report" and args.batches is not None:
        # lazy: loads rich
        from tokstep.tui.cli.batch_report import run_batch_report

        return run_batch_report(args, model_spec(args))
    if args.command == "report":
        spec = model_spec(args)
        compare = compare_spec(args, spec)
        if compare is not None:
            # lazy: loads rich
            from tokstep.tui.cli.compare_report import run_compare_report

            return run_compare_report(args, spec, compare, sample_spec(args))
        # lazy: loads numpy, rich
        from tokstep.tui.cli.report_cmd import run_report

        return run_report(args, spec, sample_spec(args))
    if args.command == "lint":
        # lazy: loads rich
        from tokstep.tui.cli.lint_cmd import run_lint

        spec = model_spec(args)
        return run_lint(args, spec.name_or_path, spec.display_name)
    if args.command == "scan-query":
        # lazy: loads rich
        from tokstep.tui.cli.scan_cmd import run_scan_query

        return run_scan_query(args)
    if args.command == "scan":
        # lazy: loads rich
        from tokstep.tui.cli.scan_cmd import run_scan_cmd

        return run_scan_cmd(args, model_spec(args))
    scan_view = None
    if args.data:
        if is_scan(args.data):  # a folder written by `tokstep scan`: check it reads; default to its model
            # lazy: loads numpy
            from tokstep.engine.scan.view import ScanView

            scan_view = ScanView(args.data)  # read once; the scan browser takes it
            args = replace(args, model=args.model or scan_view.model)
        else:
            # lazy: loads rich
            from tokstep.tui.cli.lint_cmd import open_data_from_args

            open_data_from_args(
                args, args.data
            ).close()  # a missing or unreadable file: one line, before the TUI
    # lazy: loads textual, rich
    from tokstep.tui.screens.app import run_app

    if args.batches is not None:
        # lazy: loads numpy
        from tokstep.engine.batches.files import read_batches

        read_batches(args.batches)  # a missing or unreadable file: one line, before the TUI
        return run_app(args, model_spec(args), None)
    spec = model_spec(args)
    compare = compare_spec(args, spec)
    sample = None if args.data else sample_spec(args)
    return run_app(args, spec, sample, compare=compare, scan_view=scan_view)


def console_main() -> None:
    """The `tokstep` command and `python -m tokstep`: `main()`, then the process ends with its status.

    If a worker thread is still inside torch (a model load or HF reference the user quit or signalled
    during), finalizing the interpreter under it can abort the process (SIGABRT) after the terminal was
    given back. Nothing is left to write by then (every output is written atomically before `main`
    returns), so the process ends at once instead of waiting for, or tearing down under, that thread.
    """
    torch_free.claim_process_for_one_command()
    code = main()
    if sys.stdout is not None and _stdout_broken() and code == exit_codes.OK:  # the last buffer did not fit
        code = _fail("cannot write to standard output")
    if any(t is not threading.main_thread() and t.is_alive() for t in threading.enumerate()):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console_main()
