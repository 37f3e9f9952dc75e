"""Which flags each way of running tokstep uses: a flag given where it is not used is an error, never ignored.

The table is keyed by mode: a sub-command (`report`, `lint`, `report --data`, `report --batches`) or the interactive debugger
on one sample (`stepper`), over a data file (`browser`, `tokstep --data FILE`) or over trainer batches
(`batches`, `tokstep --batches FILE`). A flag is named by its argparse `dest`.
To make a sub-command accept a flag, add its dest to that mode's set here (and the flag to its parser).
"""

from __future__ import annotations

MODEL_LOAD = frozenset({"model", "revision", "dtype", "device", "device_map", "trust_remote_code"})
TOKENIZER_ONLY = frozenset({"model", "revision", "trust_remote_code"})
SAMPLE_SOURCES = frozenset({"text", "file", "prompt", "answer", "chat", "ids", "demo"})
SAMPLE_OPTIONS = frozenset({"bos", "eos", "eot", "inserted", "truncate"})
DATA = frozenset(
    {
        "data",
        "text_column",
        "prompt_column",
        "answer_column",
        "messages_column",
        "ids_column",
        "labels_column",
        "split",
    }
)
COLUMNS = DATA - {"data"}
BATCHES = frozenset({"batches", "attn_implementation", "use_cache"})
LABEL_CONVENTION = frozenset({"eot", "inserted"})  # the expected mask of chat turns recovered from ids
COMPARE = frozenset({"compare", "compare_revision", "compare_dtype", "compare_device", "compare_tokenizer"})

ACCEPTS: dict[str, frozenset[str]] = {
    "report": MODEL_LOAD
    | SAMPLE_SOURCES
    | SAMPLE_OPTIONS
    | COMPARE
    | {"top_k", "json", "jsonl", "force", "incremental", "reference", "limit", "html", "svg", "colour_by"},
    "report-data": MODEL_LOAD | DATA | SAMPLE_OPTIONS | {"rows", "json", "force"},
    "lint": TOKENIZER_ONLY
    | COLUMNS
    | SAMPLE_OPTIONS
    | {"file", "json", "force", "max_rows", "show", "fail_on", "strict", "jobs"},
    "scan": MODEL_LOAD
    | DATA
    | LABEL_CONVENTION
    | {"bos", "eos", "truncate", "out", "force", "batch_tokens", "chunk_rows"},
    "scan-query": frozenset({"scan_dir", "query", "out", "sort"}),
    "report-batches": MODEL_LOAD | BATCHES | LABEL_CONVENTION | {"top_k", "json", "force", "reference"},
    "stepper": MODEL_LOAD | SAMPLE_SOURCES | SAMPLE_OPTIONS | COMPARE | {"top_k", "reference"},
    "browser": MODEL_LOAD | DATA | SAMPLE_OPTIONS | {"top_k", "reference"},
    "batches": MODEL_LOAD | BATCHES | LABEL_CONVENTION | {"top_k"},
}

WHERE = {
    "report": "`tokstep report`",
    "lint": "`tokstep lint`",
    "scan": "`tokstep scan`",
    "scan-query": "`tokstep scan-query`",
    "report-data": "`tokstep report --data FILE`",
    "report-batches": "`tokstep report --batches`",
    "stepper": "`tokstep` on one sample",
    "browser": "`tokstep --data FILE`",
    "batches": "`tokstep --batches FILE`",
}


def hint(mode: str, dest: str) -> str | None:
    """Why `dest` is not used in `mode`, when that is not obvious."""
    if dest == "rows":
        return "--rows picks rows of a data file: `tokstep report --data FILE --rows 11-15`"
    if mode == "report-data" and dest in SAMPLE_SOURCES:
        return "each row of the data file is a sample"
    if mode == "report-data":
        return "the data report prints counts, loss, lints and trained text per row (one sample: drop --data)"
    if mode == "lint" and dest in MODEL_LOAD - TOKENIZER_ONLY:
        return "lint loads only the tokenizer"
    if mode == "lint" and dest in SAMPLE_SOURCES | {"top_k", "data"}:
        return "lint checks the rows of the FILE it is given"
    if mode == "browser" and dest in SAMPLE_SOURCES:
        return "each row of the data file is a sample"
    if dest in BATCHES - {"batches"}:
        return "it applies to --batches FILE only"
    if dest in COMPARE:
        return "a comparison works on one sample (`tokstep` or `tokstep report`)"
    if dest in COLUMNS:
        return "column flags name the columns of a data file (`tokstep --data FILE`, `tokstep lint FILE`)"
    return None


def mode_of(command: str | None, data_given: bool, batches_given: bool = False) -> str:
    """The mode a command line runs in."""
    if batches_given:
        return "report-batches" if command == "report" else (command or "batches")
    if command == "report" and data_given:
        return "report-data"
    if command:
        return command
    return "browser" if data_given else "stepper"


def unused(mode: str, given: set[str]) -> list[str]:
    """The dests among `given` that `mode` does not use, in a stable order."""
    return sorted(given - ACCEPTS[mode])


def not_used_message(flag: str, dest: str, mode: str) -> str:
    if mode in ("batches", "report-batches") and dest in SAMPLE_SOURCES | DATA:
        return f"--batches opens a file of trainer batches: drop {flag}"
    why = hint(mode, dest)
    return f"{flag} is not used by {WHERE[mode]}: " + (why or "remove it")
