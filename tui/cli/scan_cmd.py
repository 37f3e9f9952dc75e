"""`tokstep scan DATA --model M --out DIR`: score every row of a data set into Parquet (see engine/scan/run.py).

`python -m tokstep scan ...` works, so `torchrun --nproc_per_node=8 -m tokstep scan ...` runs one process per
GPU; each writes its own shard and rank 0 the manifest. Kill it at any moment and rerun the same command:
it continues from the last committed chunk.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokstep.engine.errors import TokstepError
from tokstep.tui.cli.lint_cmd import DATA_HELP, add_row_flags, columns_from_args, open_data_from_args
from tokstep.tui.cli.progress import RowProgress

if TYPE_CHECKING:
    from tokstep.tui.cli.run_config import RunConfig

DEFAULT_CHUNK_ROWS = 1024
DEFAULT_BATCH_TOKENS = 16384


def add_scan_parser(commands: Any, add_model_flags: Any, add_column_flags: Any) -> None:
    scan = commands.add_parser(
        "scan",
        help="score every row of a data set (loss, worst positions, masks, lints) into Parquet",
        description="Score every row of a data file, save_to_disk folder or cached data set with the model: "
        "loss, supervised and total tokens, the worst positions, mask reasons and lints, written as Parquet shards plus a "
        "manifest. Resumable (rerun the same command); data parallel under torchrun.",
    )
    scan.add_argument("data", help=DATA_HELP)
    scan.add_argument("--out", metavar="DIR", help="folder for the shards and manifest (required)")
    scan.add_argument("--force", action="store_true", help="replace a different scan already in DIR")
    add_model_flags(scan)
    add_column_flags(scan)

    add_row_flags(scan)
    group = scan.add_argument_group("throughput")
    group.add_argument(
        "--batch-tokens",
        type=int,
        default=DEFAULT_BATCH_TOKENS,
        metavar="N",
        help=f"padded tokens per forward batch (rows x longest row; default {DEFAULT_BATCH_TOKENS})",
    )
    group.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        metavar="N",
        help=f"rows per committed chunk: what a rerun may redo (default {DEFAULT_CHUNK_ROWS})",
    )


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop): handled as Ctrl-C is, but the exit status is 128 + 15."""


def _terminate(_signum: int, _frame: Any) -> None:
    raise _Terminated


def run_scan_cmd(args: RunConfig, model_spec: Any) -> int:
    """The `scan` sub-command; TokstepError propagates to the CLI's one-line error."""

    # lazy: loads torch, numpy
    from tokstep.engine.model.loading import model_fingerprint
    from tokstep.engine.model.session import load
    from tokstep.engine.scan.run import ScanConfig, device_for, finish_ranks, init_ranks, run_scan

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise TokstepError(
            "tokstep scan writes Parquet and needs pyarrow: pip install 'tokstep[data]'"
        ) from None
    if not args.out:
        raise TokstepError("tokstep scan needs --out DIR: the folder for the shards and manifest")
    if args.chunk_rows < 1 or args.batch_tokens < 1:
        raise TokstepError("--chunk-rows and --batch-tokens must be at least 1")
    data = open_data_from_args(args, args.data)
    local = Path(args.data).expanduser()
    source = str(local.resolve()) if local.exists() else args.data  # a cached hub data set: its name
    data_bytes, data_mtime_ns = data.stamp()
    columns = columns_from_args(args)
    config = ScanConfig(
        data=source,
        data_bytes=data_bytes,
        data_mtime_ns=data_mtime_ns,
        model=model_spec.name_or_path,
        revision=model_spec.revision,
        dtype=model_spec.dtype,
        columns={k: list(v) if isinstance(v, tuple) else v for k, v in vars(columns).items()},
        options={
            "bos": args.bos,
            "eos": args.eos,
            "truncate": args.truncate,
            # the label convention only when stated: a scan from before these flags still resumes
            **{k: v for k, v in (("eot", args.eot), ("inserted", args.inserted)) if v != "train"},
            **({"split": args.split} if args.split else {}),
        },
        chunk_rows=args.chunk_rows,
        weights=model_fingerprint(model_spec.name_or_path, model_spec.revision),
        batch_tokens=args.batch_tokens,
    )
    out = Path(args.out).expanduser().resolve()
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM stops like Ctrl-C: chunks so far are kept
    ranks = init_ranks()
    spec = replace(model_spec, device=device_for(ranks, model_spec.device))
    err = sys.stderr
    leader = ranks.rank == 0
    bar = RowProgress(
        f"tokstep scan{f' (rank 0 of {ranks.world})' if ranks.distributed else ''}", None, enabled=leader
    )

    def on_start(rows: int, done_chunks: int) -> None:
        bar.total = rows
        if leader and done_chunks:
            print(
                f"tokstep scan: resuming: {done_chunks} chunk(s) already done in {out}", file=err, flush=True
            )
        bar.__enter__()

    try:
        outcome = run_scan(
            lambda: load(spec),
            data,
            out,
            config,
            ranks,
            force=args.force,
            on_start=on_start,
            progress=bar.update,
        )
    except KeyboardInterrupt as stop:
        bar.__exit__(None, None, None)
        if leader:
            saved = (
                f"finished chunks are saved in {out}: rerun the same command to continue"
                if out.exists()
                else "nothing was written"
            )
            print(f"tokstep scan: interrupted; {saved}", file=err)
        return 128 + signal.SIGTERM if isinstance(stop, _Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        data.close()
        finish_ranks(ranks)
    bar.__exit__(None, None, None)
    if not leader:
        return 0
    if outcome.already_complete:
        print(f"tokstep scan: {out} already holds this scan, complete ({outcome.rows:,} rows)", file=err)
    else:
        rate = f" · {outcome.tokens / max(outcome.seconds, 1e-9):,.0f} tokens/s" if outcome.tokens else ""
        shards = len((outcome.manifest or {}).get("shards", []))
        print(
            f"tokstep scan: {outcome.rows:,} rows → {out} ({shards} shard{'s' * (shards != 1)}) "
            f"in {outcome.seconds:.1f}s{rate}",
            file=err,
        )
    print(f"browse it: tokstep --data {os.path.relpath(out)}", file=err)
    return 0


def add_scan_query_parser(commands: Any) -> None:
    query = commands.add_parser(
        "scan-query",
        help="the rows of a finished scan that a filter keeps, as JSONL (the rows to fix)",
        description="Filter and sort every row of a folder written by `tokstep scan`, in place (DuckDB over "
        "its Parquet shards), and write the rows kept as JSONL: the scan's numbers for each row plus the "
        "row itself from the data file under `data`. The filter language is the scan browser's: "
        "loss>3 tokens<512 form=chat lint:eos-masked lint error ok !… (all words must hold).",
    )
    query.add_argument("scan_dir", metavar="DIR", help="a folder written by `tokstep scan`")
    query.add_argument("query", metavar="FILTER", nargs="?", default="", help="e.g. 'loss>3 lint:eos-masked'")
    query.add_argument("--out", metavar="FILE", help="the JSONL to write (atomically); - or none: stdout")
    query.add_argument(
        "--sort",
        default="row",
        metavar="KEY",
        help="row (file order, the default), loss, max_ce, lints, tokens or supervised (highest first)",
    )


def run_scan_query(args: RunConfig) -> int:
    """The `scan-query` sub-command: TokstepError (bad folder or filter) is the CLI's one line, status 2."""
    # lazy: loads numpy
    from tokstep.engine.scan.export import export_rows, write_rows
    from tokstep.engine.scan.view import ScanView

    view = ScanView(args.scan_dir)
    view.sort(args.sort)
    view.set_filter(args.query)
    if not args.out or args.out == "-":
        write_rows(view, sys.stdout)
        return 0
    written = export_rows(view, args.out)
    print(f"tokstep scan-query: {written:,} of {view.total:,} rows → {args.out}", file=sys.stderr)
    return 0
