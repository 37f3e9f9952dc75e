"""The `tokstep` command line. Imports stay lazy so `tokstep --help` never loads torch."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokstep.engine.compare_spec import CompareSpec
    from tokstep.engine.inputs import SampleSpec
    from tokstep.engine.loading import ModelSpec

DEMOS = ("qa", "text", "chat")


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="local HF folder or hub id (default: the bundled tokstep-mini)")
    group.add_argument("--revision", help="hub revision (branch, tag or commit)")
    group.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    group.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    group.add_argument("--device-map", help="e.g. auto: spread a large model over GPUs (needs accelerate)")
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
        default="train",
        choices=["train", "mask"],
        help="chat: train the end-of-turn token(s) after each assistant turn (default) or mask them",
    )
    group.add_argument(
        "--inserted",
        default="train",
        choices=["train", "mask"],
        help="chat: train tokens the template inserts inside an assistant turn (think blocks, tool-call "
        "wrappers; default) or mask them",
    )
    group.add_argument(
        "--truncate", type=int, metavar="N", help="keep only the first N tokens (else too long is an error)"
    )
    group.add_argument("--top-k", type=int, default=10, help="alternatives kept per position (default 10)")


def build_parser() -> argparse.ArgumentParser:
    from tokstep.tui.batch_report import add_batch_flags

    parser = argparse.ArgumentParser(
        prog="tokstep",
        description="Step through the training loss of a causal LM, token by token. "
        "With no sub-command, opens the interactive debugger.",
    )
    _add_model_flags(parser)
    _add_compare_flags(parser)
    _add_sample_flags(parser)
    _add_data_flags(parser)
    add_batch_flags(parser)
    commands = parser.add_subparsers(dest="command", metavar="{report,lint,scan}")
    report = commands.add_parser("report", help="print the per-position loss table and HF's reference loss")
    _add_model_flags(report)
    _add_compare_flags(report)
    _add_sample_flags(report)
    add_batch_flags(report)
    report.add_argument("--json", metavar="PATH", help="also write the trace as JSON ('-' for stdout)")
    report.add_argument("--force", action="store_true", help="allow --json to overwrite an existing file")
    report.add_argument(
        "--incremental",
        action="store_true",
        help="also trace token by token with the KV cache and report the drift",
    )
    report.add_argument(
        "--no-reference", action="store_true", help="skip HF's reference loss (saves a forward pass)"
    )
    report.add_argument(
        "--limit", type=int, metavar="N", help="print at most N rows (the summary still covers all)"
    )
    from tokstep.tui.lint_cmd import add_lint_parser

    add_lint_parser(commands, _add_model_flags)
    from tokstep.tui.lint_cmd import add_column_flags
    from tokstep.tui.scan_cmd import add_scan_parser

    add_scan_parser(commands, _add_model_flags, add_column_flags)
    _keep_flags_given_before_the_command(parser, commands)
    return parser


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


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    from tokstep.tui.lint_cmd import add_column_flags

    parser.add_argument(
        "--data",
        metavar="FILE|DIR",
        help="browse the rows of a .jsonl / .json / .parquet file (loss, lints per row), "
        "or a folder written by `tokstep scan` (sort/filter every row)",
    )
    add_column_flags(parser)


def model_spec(args: argparse.Namespace) -> ModelSpec:
    from tokstep.engine.loading import ModelSpec

    spec = ModelSpec(
        revision=args.revision,
        dtype=args.dtype,
        device=args.device,
        device_map=args.device_map,
        trust_remote_code=args.trust_remote_code,
    )
    if args.model:
        from dataclasses import replace

        spec = replace(spec, name_or_path=args.model)
    return spec


def compare_spec(args: argparse.Namespace, a: ModelSpec) -> CompareSpec | None:
    """B from the --compare* flags (unset ones default to A's), or None when nothing is compared."""
    from dataclasses import replace

    from tokstep.engine.compare_spec import CompareSpec
    from tokstep.engine.errors import TokstepError

    model_flags = [
        getattr(args, name, None)
        for name in ("compare", "compare_revision", "compare_dtype", "compare_device")
    ]
    tokenizer = getattr(args, "compare_tokenizer", None)
    if tokenizer is not None:
        if any(flag is not None for flag in model_flags):
            raise TokstepError(
                "--compare-tokenizer compares tokenization only: give it without --compare/--compare-*"
            )
        return CompareSpec(tokenizer=tokenizer)
    if all(flag is None for flag in model_flags):
        return None
    if getattr(args, "data", None):
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


def sample_spec(args: argparse.Namespace) -> SampleSpec:
    """Turn the sample flags into a SampleSpec; exactly one source, or the demo."""
    from tokstep.engine import defaults
    from tokstep.engine.errors import TokstepError
    from tokstep.engine.inputs import SampleSpec, read_json, read_text

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
        return SampleSpec(text=args.text, name="--text", **common)
    if args.file is not None:
        return SampleSpec(text=read_text(args.file), name=os.path.basename(args.file), **common)
    if args.prompt is not None or args.answer is not None:
        return SampleSpec(prompt=args.prompt, answer=args.answer, name="prompt+answer", **common)
    if args.chat is not None:
        messages = read_json(args.chat, "chat")
        if isinstance(messages, dict) and "messages" in messages:
            messages = messages["messages"]
        if not isinstance(messages, list):
            raise TokstepError(
                f'chat file {args.chat} must hold a JSON list of messages (or {{"messages": [...]}})'
            )
        from tokstep.engine.chat_masks import check_messages

        check_messages(messages)  # bad content is one line before any model is loaded
        return SampleSpec(chat=tuple(messages), name=os.path.basename(args.chat), **common)
    if args.ids is not None:
        data = read_json(args.ids, "ids")
        if not isinstance(data, dict):
            raise TokstepError(f'ids file {args.ids} must hold a JSON object with "input_ids" and "labels"')
        return SampleSpec(ids=data, name=os.path.basename(args.ids), **common)
    return demo_spec(args.demo or "qa", defaults, common)


def demo_spec(which: str, defaults, common: dict) -> SampleSpec:  # type: ignore[no-untyped-def]
    from tokstep.engine.inputs import SampleSpec, read_json, read_text

    if which == "text":
        return SampleSpec(text=read_text(defaults.DEMO_TEXT).strip(), name="demo: text", **common)
    if which == "chat":
        return SampleSpec(chat=tuple(read_json(defaults.DEMO_CHAT, "demo chat")), name="demo: chat", **common)
    qa = read_json(defaults.DEMO_QA, "demo")
    return SampleSpec(prompt=qa["prompt"], answer=qa["answer"], name="demo: question + answer", **common)


def _no_sample_with_batches(args: argparse.Namespace) -> None:
    from tokstep.engine.errors import TokstepError

    given = [
        name
        for name in ("text", "file", "chat", "ids", "demo", "prompt", "answer", "data")
        if getattr(args, name, None)
    ]
    if given:
        raise TokstepError(
            f"--batches opens a file of trainer batches: drop {', '.join('--' + g for g in given)}"
        )


def _fail(message: str, code: int = 2) -> int:
    print(f"tokstep: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from tokstep.engine.errors import TokstepError
    except ImportError as error:  # a broken install: still one line
        return _fail(f"cannot import tokstep's engine: {error}")
    try:
        if getattr(args, "batches", None) is not None:
            _no_sample_with_batches(args)
        if args.command == "report" and args.batches is not None:
            from tokstep.tui.batch_report import run_batch_report

            return run_batch_report(args, model_spec(args))
        if args.command == "report":
            spec = model_spec(args)
            compare = compare_spec(args, spec)
            if compare is not None:
                from tokstep.tui.compare_report import run_compare_report

                return run_compare_report(args, spec, compare, sample_spec(args))
            from tokstep.tui.report import run_report

            return run_report(args, spec, sample_spec(args))
        if args.command == "lint":
            from tokstep.tui.lint_cmd import run_lint

            spec = model_spec(args)
            return run_lint(args, spec.name_or_path, spec.display_name)
        if args.command == "scan":
            from tokstep.tui.scan_cmd import run_scan_cmd

            return run_scan_cmd(args, model_spec(args))
        if args.data:
            from tokstep.engine.scan_files import is_scan

            if is_scan(args.data):  # a scan's folder: check it reads, and default to the scan's model
                from tokstep.engine.scan_view import ScanView

                args.scan_view = ScanView(args.data)  # read once; the browser screen takes it
                args.model = args.model or args.scan_view.model
            else:
                from tokstep.tui.lint_cmd import open_data_from_args

                open_data_from_args(
                    args, args.data
                ).close()  # a missing or unreadable file: one line, before the TUI
        from tokstep.tui.app import run_app

        if args.batches is not None:
            from tokstep.engine.batches import read_batches

            read_batches(args.batches)  # a missing or unreadable file: one line, before the TUI
            return run_app(args, model_spec(args), None)  # type: ignore[arg-type]
        spec = model_spec(args)
        compare = compare_spec(args, spec)
        sample = None if args.data else sample_spec(args)
        return run_app(args, spec, sample, compare=compare)  # type: ignore[arg-type]
    except TokstepError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - the promise is one line, never a traceback
        if os.environ.get("TOKSTEP_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(error).__name__}: {error} (set TOKSTEP_DEBUG=1 for the traceback)", 1
        )


if __name__ == "__main__":
    sys.exit(main())
