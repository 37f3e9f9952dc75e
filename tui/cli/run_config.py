"""One frozen, typed run configuration: built once by `tui/cli/main.py` from the parsed flags and passed down.

Nothing past cli.py reads argparse. A field's default is what the command line gives when the flag is absent
(tests/test_run_config.py checks that every flag has a field with the same default, and no field lacks a flag).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from tokstep.engine.policies import (
    DEFAULT_EOT,
    DEFAULT_INSERTED,
    DEFAULT_REFERENCE,
    DEFAULT_TOP_K,
    Policy,
    Reference,
)


@dataclass(frozen=True)
class RunConfig:
    """Every flag of every mode, typed; `command` is None for the TUI."""

    command: str | None = None
    # model
    model: str | None = None
    revision: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False
    # compare
    compare: str | None = None
    compare_revision: str | None = None
    compare_dtype: str | None = None
    compare_device: str | None = None
    compare_tokenizer: str | None = None
    # sample (`file` is also `lint FILE`)
    text: str | None = None
    file: str | None = None
    prompt: str | None = None
    answer: str | None = None
    chat: str | None = None
    ids: str | None = None
    demo: str | None = None
    bos: str = "auto"
    eos: str = "auto"
    eot: Policy = DEFAULT_EOT
    inserted: Policy = DEFAULT_INSERTED
    truncate: int | None = None
    top_k: int = DEFAULT_TOP_K
    reference: Reference = DEFAULT_REFERENCE
    # data files
    data: str | None = None
    text_column: str = "text"
    prompt_column: str = "prompt"
    answer_column: str | None = None
    messages_column: str | None = None
    ids_column: str = "input_ids"
    labels_column: str = "labels"
    split: str | None = None
    # trainer batches
    batches: str | None = None
    attn_implementation: str | None = None
    use_cache: str | None = None
    # report
    json: str | None = None
    jsonl: str | None = None
    html: str | None = None
    svg: str | None = None
    colour_by: str = "ce"
    force: bool = False
    rows: str | None = None
    incremental: bool = False
    limit: int | None = None
    # lint
    max_rows: int | None = None
    jobs: int | None = None
    show: int = 20
    fail_on: str = "error"
    strict: bool = False
    # scan
    out: str | None = None
    batch_tokens: int = 16384
    chunk_rows: int = 1024
    # scan-query
    scan_dir: str | None = None
    query: str = ""
    sort: str = "row"

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> RunConfig:
        """The parsed flags as a RunConfig; a flag without a field is a programming error, named."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(vars(args)) - names)
        if unknown:
            raise TypeError(f"RunConfig has no field for the flag(s) {', '.join(unknown)}: add them")
        return cls(**{name: value for name, value in vars(args).items()})


__all__ = ["RunConfig"]
