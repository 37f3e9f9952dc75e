"""A catalogue of hostile command lines, files and model folders: each ends with the exit status it should,
exactly the stderr lines it should (one `tokstep: error: …` line for a failure), no traceback, and no file
written that the user did not ask for.

Every case runs in-process (`tokstep.tui.cli.main(argv)` with capsys) against module-scoped tiny models,
and most fail before any model loads, so the whole catalogue takes seconds. Placeholders in the argv:
`{M}` a tiny Llama folder (chat template, 128 positions), `{G}` a GPT-2 folder without a chat template,
`{F}` the folder of hostile input files, `{X}` a folder of hostile model folders, `{T}` the test's own
empty folder (the working directory, where stray files would appear).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import tiny
import torch

from tokstep.tui import exit_codes
from tokstep.tui.cli.main import main

OK, FINDINGS, BAD, NAN = exit_codes.OK, exit_codes.FINDINGS, exit_codes.BAD_INPUT, exit_codes.NONFINITE
DEEP = 100_000  # nesting levels: far beyond Python's recursion limit


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    code: int
    fragment: str = ""  # must appear in the one stderr line (or, for lint findings, on stdout)
    stderr_lines: int = 1  # 1: the error (or a notice); 0: a clean run or lint findings
    absent: str = ""  # must not appear anywhere in the output
    seconds: float = 0.0  # when > 0: must finish within this many seconds


def case(name: str, argv: str | list[str], code: int = BAD, fragment: str = "", **kw) -> Case:
    return Case(name, tuple(argv.split() if isinstance(argv, str) else argv), code, fragment, **kw)


# -- hostile inputs, written once per module -----------------------------------------------------------------


def deep(opening: str, closing: str, inner: str = "1") -> str:
    return opening * DEEP + inner + closing * DEEP


CHAT_OK = [{"role": "user", "content": "What is the capital?"}, {"role": "assistant", "content": "Paris."}]


def chat_with(**content) -> str:
    return json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", **content}])


FILES: dict[str, str | bytes] = {
    # chats
    "chat-content-42.json": chat_with(content=42),
    "chat-content-null.json": chat_with(content=None),
    "chat-content-true.json": chat_with(content=True),
    "chat-content-part-image.json": chat_with(content=[{"type": "image", "url": "x"}]),
    "chat-content-part-5.json": chat_with(content=[5]),
    "chat-content-part-text-5.json": chat_with(content=[{"type": "text", "text": 5}]),
    "chat-content-object.json": chat_with(content={"text": "hi"}),
    "chat-content-float.json": chat_with(content=1.5),
    "chat-content-nan.json": '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": NaN}]',
    "chat-content-huge-int.json": chat_with(content=10**400),
    "chat-role-5.json": json.dumps([{"role": 5, "content": "hi"}, {"role": "assistant", "content": "x"}]),
    "chat-role-null.json": json.dumps([{"role": None, "content": "hi"}]),
    "chat-no-role.json": json.dumps([{"content": "hi"}]),
    "chat-no-content.json": json.dumps([{"role": "user"}]),
    "chat-message-string.json": json.dumps(["hello"]),
    "chat-message-number.json": json.dumps([7]),
    "chat-message-null.json": json.dumps([None]),
    "chat-empty-list.json": "[]",
    "chat-object.json": json.dumps({"conversation": CHAT_OK}),
    "chat-messages-5.json": json.dumps({"messages": 5}),
    "chat-messages-empty.json": json.dumps({"messages": []}),
    "chat-messages-bad.json": json.dumps({"messages": [{"role": "user", "content": 42}]}),
    "chat-string.json": json.dumps("hello"),
    "chat-number.json": "42",
    "chat-null.json": "null",
    "chat-deep-list.json": deep("[", "]"),
    "chat-deep-object.json": deep('{"a":', "}"),
    "chat-deep-content.json": '[{"role": "user", "content": ' + deep("[", "]") + "}]",
    "chat-no-assistant.json": json.dumps([{"role": "user", "content": "hi"}]),
    "chat-system-only.json": json.dumps([{"role": "system", "content": "be terse"}]),
    "chat-invalid.json": '[{"role": "user", "content": "hi"',
    "chat-trailing-comma.json": '[{"role": "user", "content": "hi"},]',
    "chat-ok.json": json.dumps(CHAT_OK),
    "chat-bom.json": "\ufeff" + json.dumps(CHAT_OK),
    "chat-10mb.json": json.dumps(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "I love dogs. " * 800_000}]
    ),
    "chat-many-turns.json": json.dumps(
        [{"role": r, "content": "word " * 400} for _ in range(1500) for r in ("user", "assistant")]
    ),
    # ids
    "ids-deep.json": deep("[", "]"),
    "ids-deep-value.json": '{"input_ids": ' + deep("[", "]") + "}",
    "ids-floats.json": json.dumps({"input_ids": [1.0, 2.5, 3.0]}),
    "ids-strings.json": json.dumps({"input_ids": ["1", "2", "3"]}),
    "ids-bools.json": json.dumps({"input_ids": [True, False, True]}),
    "ids-null.json": json.dumps({"input_ids": None}),
    "ids-batch-of-two.json": json.dumps({"input_ids": [[1, 2], [3, 4]]}),
    "ids-empty.json": json.dumps({"input_ids": []}),
    "ids-single.json": json.dumps({"input_ids": [5]}),
    "ids-object.json": json.dumps({"input_ids": {"0": 1}}),
    "ids-huge.json": json.dumps({"input_ids": [1, 2**70, 3]}),
    "ids-negative.json": json.dumps({"input_ids": [1, -5, 3]}),
    "ids-beyond-vocab.json": json.dumps({"input_ids": [1, 2, 99999]}),
    "ids-labels-short.json": json.dumps({"input_ids": [1, 2, 3], "labels": [1, 2]}),
    "ids-labels-floats.json": json.dumps({"input_ids": [1, 2, 3], "labels": [1.0, 2, 3]}),
    "ids-labels-minus-5.json": json.dumps({"input_ids": [1, 2, 3], "labels": [-100, -5, 3]}),
    "ids-labels-beyond.json": json.dumps({"input_ids": [1, 2, 3], "labels": [-100, 2, 99999]}),
    "ids-mask-short.json": json.dumps({"input_ids": [1, 2, 3], "attention_mask": [1, 1]}),
    "ids-mask-two.json": json.dumps({"input_ids": [1, 2, 3], "attention_mask": [1, 2, 1]}),
    "ids-list.json": json.dumps([1, 2, 3]),
    "ids-null-top.json": "null",
    "ids-no-key.json": json.dumps({"ids": [1, 2, 3]}),
    "ids-empty-object.json": "{}",
    "ids-invalid.json": '{"input_ids": [1, 2,',
    "ids-too-long.json": json.dumps({"input_ids": [5] * 5000}),
    "ids-all-masked.json": json.dumps({"input_ids": [1, 40, 41, 42], "labels": [-100] * 4}),
    # text
    "empty.txt": "",
    "whitespace.json": "   \n\t  ",
    "bad-utf8.txt": b"I love \xff\xfe dogs",
    "bad-utf8.json": b'{"input_ids": [1, 2]}\xff',
    "text-10mb.txt": "I love dogs and cats. " * 480_000,
    "text-ok.txt": "I love dogs and I love cats.",
    "text-bom.txt": "\ufeffI love dogs and I love cats.",
    # data files (lint, --data)
    "rows-deep.jsonl": '{"text": "I love dogs."}\n' + deep("[", "]") + '\n{"text": "I love cats."}\n',
    "rows-deep-object.jsonl": '{"text": "one"}\n{"text": ' + deep("[", "]") + "}\n",
    "rows-whitespace.jsonl": '{"text": "I love dogs."}\n   \n\t\n\r\n{"text": "I love cats."}\n  ',
    "rows-blank-only.jsonl": "\n   \n\t\n",
    "rows-empty.jsonl": "",
    "rows-crlf.jsonl": '{"text": "I love dogs."}\r\n{"text": "I love cats."}\r\n',
    "rows-bom.jsonl": '\ufeff{"text": "I love dogs."}\n{"text": "I love cats."}\n',
    "rows-bad-utf8.jsonl": b'{"text": "ok"}\n{"text": "\xff"}\n',
    "rows-list.jsonl": '{"text": "ok"}\n[1, 2, 3]\n',
    "rows-number.jsonl": '{"text": "ok"}\n42\n',
    "rows-null.jsonl": '{"text": "ok"}\nnull\n',
    "rows-string.jsonl": '{"text": "ok"}\n"just a string"\n',
    "rows-content-42.jsonl": '{"messages": [{"role": "user", "content": 42}]}\n',
    "rows-content-null.jsonl": json.dumps({"messages": json.loads(chat_with(content=None))}) + "\n",
    "rows-huge-ids.jsonl": json.dumps({"input_ids": [1, 2**70, 3]}) + "\n",
    "rows-float-ids.jsonl": json.dumps({"input_ids": [1.5, 2, 3]}) + "\n",
    "rows-text-number.jsonl": json.dumps({"text": 5}) + "\n",
    "rows-prompt-list.jsonl": json.dumps({"prompt": "Q", "completion": ["A"]}) + "\n",
    "rows-no-columns.jsonl": json.dumps({"foo": "bar"}) + "\n",
    "rows-invalid.jsonl": '{"text": "ok"}\n{"text": \n',
    "rows-deep.json": "[" + '{"text": "ok"}, ' + deep("[", "]") + "]",
    "rows-deep-single.json": deep('{"a":', "}"),
    "rows-empty-array.json": "[]",
    "rows-invalid.json": '[{"text": "ok"}, {"text": ]',
    "rows-garbage.parquet": b"PAR1 this is not parquet at all",
    "rows.txt": '{"text": "ok"}\n',
    "rows-ok.jsonl": '{"text": "I love dogs."}\n{"prompt": "Question: hi?", "completion": " Paris."}\n',
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-files")
    for name, content in FILES.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    (folder / "a-folder.json").mkdir()
    (folder / "exists.json").write_text("precious")
    (folder / "dangling.json").symlink_to(folder / "no-such-target.json")
    (folder / "link-to-file.json").symlink_to(folder / "exists.json")
    for name in ("fifo.json", "fifo.jsonl"):
        os.mkfifo(folder / name)
    for name in ("zero.json", "zero.jsonl"):
        (folder / name).symlink_to("/dev/zero")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "sock.json"))  # a socket file stays after the socket closes
    listener.close()
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("hostile-llama")
    return tiny.save_model_folder(path, tiny.sentencepiece_bpe(chat_template=tiny.LLAMA3), max_positions=128)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> str:
    return tiny.save_model_folder(tmp_path_factory.mktemp("hostile-gpt2"), tiny.byte_level_bpe(), "gpt2")


class Pwned:
    """A pickle that would run code when unpickled without weights_only (it must never run)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def models(tmp_path_factory, model_dir) -> Path:
    """Broken and odd model folders, each built from the tiny Llama's files."""
    root = tmp_path_factory.mktemp("hostile-models")
    source = Path(model_dir)
    config = json.loads((source / "config.json").read_text())
    tokenizer_files = [p for p in source.iterdir() if p.name.startswith(("tokenizer", "chat_template"))]

    def folder(name: str, *, weights: bool = True, tokenizer: bool = True, cfg: object = config) -> Path:
        path = root / name
        path.mkdir()
        if cfg is not None:
            (path / "config.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
        if weights:
            (path / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes())
        for file in tokenizer_files if tokenizer else []:
            (path / file.name).write_bytes(file.read_bytes())
        return path

    (root / "empty").mkdir()
    folder("config-only", weights=False, tokenizer=False)
    folder("no-weights", weights=False)
    folder("config-invalid", cfg="{not json")
    folder("config-list", cfg="[]")
    folder("config-unknown-type", cfg={**config, "model_type": "frobnicator"})
    folder("not-causal", cfg={**config, "model_type": "vit", "architectures": ["ViTModel"]})
    folder("no-tokenizer", tokenizer=False)
    (folder("weights-garbage", weights=False) / "model.safetensors").write_bytes(b"\x00garbage" * 64)
    half = (source / "model.safetensors").read_bytes()
    (folder("weights-truncated", weights=False) / "model.safetensors").write_bytes(half[: len(half) // 2])
    (folder("tokenizer-garbage") / "tokenizer.json").write_text("{broken")
    from safetensors.torch import load_file

    state = load_file(source / "model.safetensors")
    torch.save(state, folder("bin-only", weights=False) / "pytorch_model.bin")
    torch.save(
        {"x": Pwned(str(root / "PWNED"))}, folder("bin-pickle-code", weights=False) / "pytorch_model.bin"
    )
    (folder("bin-garbage", weights=False) / "pytorch_model.bin").write_bytes(b"not a pickle at all")
    nan_state = {k: (v.fill_(float("inf")) if k == "model.norm.weight" else v) for k, v in state.items()}
    from safetensors.torch import save_file

    save_file(
        nan_state, folder("nan-weights", weights=False) / "model.safetensors", metadata={"format": "pt"}
    )
    (root / "a-file").write_text("not a folder")
    import transformers as tf

    encoder = root / "bert-encoder"  # AutoModelForCausalLM loads it, but it attends both ways
    config = tf.BertConfig(vocab_size=512, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    tf.BertLMHeadModel(
        tf.BertConfig(**{**config.to_dict(), "intermediate_size": 32, "is_decoder": False})
    ).save_pretrained(encoder)
    for file in tokenizer_files:
        (encoder / file.name).write_bytes(file.read_bytes())
    return root


# -- the catalogue ---------------------------------------------------------------------------------------------

R = "report --model {M}"
U = "--model {M}"  # the TUI entry (no sub-command): every case here fails before the UI would start
L = "lint --model {M}"
TEXT = "--text I_love_dogs."

CASES: list[Case] = [
    # numbers out of range, and not numbers
    *[
        case(f"report-top-k-{v}", f"{R} {TEXT} --top-k {v}", BAD, "--top-k must be at least 1")
        for v in ("0", "-5")
    ],
    *[
        case(f"report-top-k-{v}", f"{R} {TEXT} --top-k {v}", BAD, "invalid int value")
        for v in ("x", "1.5", "1e3")
    ],
    case("report-top-k-empty", [*R.split(), "--top-k", ""], BAD, "invalid int value"),
    case("report-top-k-beyond-vocab", f"{R} {TEXT} --top-k 100000", BAD, "less than the vocabulary size"),
    *[
        case(f"report-truncate-{v}", f"{R} {TEXT} --truncate {v}", BAD, "at least 2")
        for v in ("1", "0", "-3")
    ],
    case("report-truncate-abc", f"{R} {TEXT} --truncate abc", BAD, "invalid int value"),
    case("report-limit-minus-1", f"{R} {TEXT} --limit -1", BAD, "--limit must be at least 0"),
    case("report-limit-x", f"{R} {TEXT} --limit x", BAD, "invalid int value"),
    # choices and devices
    case("report-dtype-float64", f"{R} {TEXT} --dtype float64", BAD, "invalid choice"),
    case("report-dtype-empty", [*R.split(), "--dtype", ""], BAD, "invalid choice"),
    *[
        case(f"report-device-{name}", [*R.split(), *TEXT.split(), "--device", value], BAD, "--device")
        for name, value in [
            ("cuda-x", "cuda:x"),
            ("cuda-minus-1", "cuda:-1"),
            ("gpu", "gpu"),
            ("empty", ""),
            ("trailing-space", "cuda:0 "),
            ("cuda-colon", "cuda:"),
            ("cpu-0", "cpu:0"),
            ("cudax", "cudax"),
            ("upper", "CUDA"),
        ]
    ],
    case("report-device-cuda-7", f"{R} {TEXT} --device cuda:7", BAD, "CUDA"),
    case("report-device-map-balanced", f"{R} {TEXT} --device-map balanced", BAD, "only auto"),
    case("report-device-map-and-device", f"{R} {TEXT} --device-map auto --device cpu", BAD, "not both"),
    case("report-bos-maybe", f"{R} {TEXT} --bos maybe", BAD, "invalid choice"),
    case("report-eos-x", f"{R} {TEXT} --eos x", BAD, "invalid choice"),
    case("report-demo-nope", f"{R} --demo nope", BAD, "invalid choice"),
    # sample sources
    case("report-prompt-only", f"{R} --prompt Q", BAD, "--prompt and --answer go together"),
    case("report-answer-only", f"{R} --answer A", BAD, "--prompt and --answer go together"),
    case("report-answer-empty", [*R.split(), "--prompt", "Q", "--answer", ""], BAD, "--answer is empty"),
    case("report-text-empty", [*R.split(), "--text", ""], BAD, "--text is empty"),
    case("report-text-and-file", f"{R} --text a --file {{F}}/text-ok.txt", BAD, "give one sample source"),
    case("report-text-and-chat", f"{R} --text a --chat {{F}}/chat-ok.json", BAD, "give one sample source"),
    case("report-ids-and-demo", f"{R} --ids {{F}}/ids-single.json --demo qa", BAD, "give one sample source"),
    case("report-text-and-prompt", f"{R} --text a --prompt p --answer a", BAD, "give one sample source"),
    case("report-text-before-and-demo-after", "--text a report --model {M} --demo text", BAD, "one sample"),
    # flags that report does not use, wherever they stand
    case(
        "report-data",
        f"{R} {TEXT} --data {{F}}/rows-ok.jsonl",
        BAD,
        "--text is not used by `tokstep report --data",
    ),
    case(
        "data-before-report",
        "--model {M} --data {F}/rows-ok.jsonl report --top-k 3",
        BAD,
        "--top-k is not used by `tokstep report --data FILE`",
    ),
    case(
        "data-before-report-text",
        f"--data {{F}}/rows-ok.jsonl report {R[7:]} {TEXT}",
        BAD,
        "--text is not used by `tokstep report --data",
    ),
    *[
        case(f"report-{flag}", f"{R} {TEXT} --{flag} x", BAD, f"--{flag} is not used by `tokstep report`")
        for flag in (
            "text-column",
            "prompt-column",
            "answer-column",
            "messages-column",
            "ids-column",
            "labels-column",
        )
    ],
    case("column-before-report", f"--text-column t {R} {TEXT}", BAD, "--text-column is not used by"),
    *[
        case(
            f"report-lint-flag-{flag}",
            f"{R} {TEXT} --{flag} 3",
            BAD,
            f"--{flag} is not used by `tokstep report`",
        )
        for flag in ("max-rows", "show")
    ],
    case("report-fail-on", f"{R} {TEXT} --fail-on warning", BAD, "--fail-on is not used by `tokstep report`"),
    case("report-unknown-flag", f"{R} {TEXT} --frobnicate", BAD, "unknown flag --frobnicate"),
    case("report-unknown-flag-value", f"{R} {TEXT} --frobnicate=3", BAD, "unknown flag --frobnicate"),
    case("report-positional", f"{R} {TEXT} stray", BAD, "unexpected argument 'stray'"),
    case("report-missing-value", f"{R} --text", BAD, "expected one argument"),
    case("report-model-empty", ["report", "--model", "", "--text", "hi"], BAD, "--model needs"),
    case("report-model-blank", ["report", "--model", "  ", "--text", "hi"], BAD, "--model needs"),
    case(
        "report-revision-bundled",
        "report --revision main --text hi",
        BAD,
        "the bundled model has no revisions",
    ),
    case("report-revision-local", f"{R} {TEXT} --revision main", BAD, "(a local folder) has no revisions"),
    case(
        "report-revision-empty",
        ["report", "--model", "org/x", "--revision", "", "--text", "hi"],
        BAD,
        "--revision",
    ),
    # --json targets: checked before the model loads, never overwritten or followed
    case("report-json-empty", [*R.split(), *TEXT.split(), "--json", ""], BAD, "--json needs a file name"),
    case("report-json-blank", [*R.split(), *TEXT.split(), "--json", "  "], BAD, "--json needs a file name"),
    case("report-json-dir", f"{R} {TEXT} --json {{F}}/a-folder.json", BAD, "is a directory"),
    case("report-json-dir-force", f"{R} {TEXT} --json {{F}}/a-folder.json --force", BAD, "is a directory"),
    case("report-json-cwd", f"{R} {TEXT} --json .", BAD, "is a directory"),
    case("report-json-exists", f"{R} {TEXT} --json {{F}}/exists.json", BAD, "pass --force"),
    case("report-json-dangling", f"{R} {TEXT} --json {{F}}/dangling.json", BAD, "pass --force"),
    case(
        "report-json-dangling-force", f"{R} {TEXT} --json {{F}}/dangling.json --force", BAD, "symbolic link"
    ),
    case(
        "report-json-link-force", f"{R} {TEXT} --json {{F}}/link-to-file.json --force", BAD, "symbolic link"
    ),
    case("report-json-no-folder", f"{R} {TEXT} --json {{T}}/no/such/x.json", BAD, "no such folder"),
    case(
        "report-json-slow-model",
        f"report --model {{X}}/nan-weights {TEXT} --json {{F}}/exists.json",
        BAD,
        "--force",
    ),
    # the TUI entry: argument errors before any model loads
    *[
        case(f"tui-{flag}", f"{U} {TEXT} --{flag}", BAD, f"--{flag} is not used by `tokstep` on one sample")
        for flag in ("force", "incremental")  # --no-reference = --reference off, which the stepper uses
    ],
    *[
        case(f"tui-{flag}", f"{U} {TEXT} --{flag} 3", BAD, f"--{flag} is not used by `tokstep` on one sample")
        for flag in ("json", "limit", "max-rows", "show")
    ],
    *[
        case(f"tui-{flag}", f"{U} {TEXT} --{flag} x", BAD, f"--{flag} is not used by `tokstep` on one sample")
        for flag in ("text-column", "ids-column", "labels-column", "messages-column", "answer-column")
    ],
    *[
        case(
            f"tui-data-{flag}",
            f"{U} --data {{F}}/rows-ok.jsonl --{flag} {value}",
            BAD,
            "is not used by `tokstep --data",
        )
        for flag, value in [
            ("text", "hi"),
            ("file", "{F}/text-ok.txt"),
            ("chat", "{F}/chat-ok.json"),
            ("ids", "{F}/ids-single.json"),
            ("demo", "qa"),
            ("prompt", "Q"),
            ("answer", "A"),
        ]
    ],
    case("tui-top-k-0", f"{U} {TEXT} --top-k 0", BAD, "--top-k must be at least 1"),
    case("tui-truncate-1", f"{U} {TEXT} --truncate 1", BAD, "--truncate must be at least 2"),
    case("tui-device-cuda-x", f"{U} {TEXT} --device cuda:x", BAD, "--device"),
    case("tui-prompt-only", f"{U} --prompt Q", BAD, "go together"),
    case("tui-revision-local", f"{U} {TEXT} --revision v1", BAD, "has no revisions"),
    case("tui-data-empty", [*U.split(), "--data", ""], BAD, "--data needs a file name"),
    case("tui-data-missing", f"{U} --data {{F}}/missing.jsonl", BAD, "data file not found"),
    case("tui-data-folder", f"{U} --data {{F}}/a-folder.json", BAD, "is a folder"),
    case("tui-data-txt", f"{U} --data {{F}}/rows.txt", BAD, "unsupported data format"),
    case("tui-data-garbage-parquet", f"{U} --data {{F}}/rows-garbage.parquet", BAD, "cannot read Parquet"),
    case("tui-unknown-flag", f"{U} --bogus", BAD, "unknown flag --bogus"),
    case("tui-unknown-command", f"{U} stray", BAD, "invalid choice: 'stray'"),
    case(
        "tui-chat-42",
        f"{U} --chat {{F}}/chat-content-42.json",
        BAD,
        "content must be a string or a list of text parts",
    ),
    case("tui-ids-deep", f"{U} --ids {{F}}/ids-deep.json", BAD, "nested too deeply"),
    # lint: flags it does not use, bad numbers, bad targets, bad files
    case("lint-no-file", "lint", BAD, "required: file"),
    case("lint-two-files", f"{L} {{F}}/rows-ok.jsonl {{F}}/rows-ok.jsonl", BAD, "unexpected argument"),
    *[
        case(
            f"lint-{flag}",
            f"{L} {{F}}/rows-ok.jsonl --{flag} {value}",
            BAD,
            f"--{flag} is not used by `tokstep lint`",
        )
        for flag, value in [
            ("dtype", "float16"),
            ("device", "cpu"),
            ("device-map", "auto"),
            ("text", "hi"),
            ("chat", "{F}/chat-ok.json"),
            ("ids", "{F}/ids-single.json"),
            ("top-k", "5"),
            ("data", "{F}/rows-ok.jsonl"),
            ("limit", "3"),
            ("demo", "qa"),
        ]
    ],
    case(
        "lint-incremental",
        f"{L} {{F}}/rows-ok.jsonl --incremental",
        BAD,
        "--incremental is not used by `tokstep lint`",
    ),
    case(
        "dtype-before-lint",
        f"--dtype float32 {L} {{F}}/rows-ok.jsonl",
        BAD,
        "--dtype is not used by `tokstep lint`",
    ),
    case(
        "text-before-lint", f"--text hi {L} {{F}}/rows-ok.jsonl", BAD, "--text is not used by `tokstep lint`"
    ),
    *[
        case(
            f"lint-max-rows-{v}",
            f"{L} {{F}}/rows-ok.jsonl --max-rows {v}",
            BAD,
            "--max-rows must be at least 1",
        )
        for v in ("0", "-1")
    ],
    case("lint-show-minus-1", f"{L} {{F}}/rows-ok.jsonl --show -1", BAD, "--show must be at least 0"),
    case("lint-fail-on-info", f"{L} {{F}}/rows-ok.jsonl --fail-on info", BAD, "invalid choice"),
    case("lint-truncate-1", f"{L} {{F}}/rows-ok.jsonl --truncate 1", BAD, "--truncate must be at least 2"),
    case("lint-json-empty", [*L.split(), "{F}/rows-ok.jsonl", "--json", ""], BAD, "--json needs a file name"),
    case("lint-json-dir", f"{L} {{F}}/rows-ok.jsonl --json {{F}}/a-folder.json", BAD, "is a directory"),
    case("lint-json-exists", f"{L} {{F}}/rows-ok.jsonl --json {{F}}/exists.json", BAD, "pass --force"),
    case("lint-json-dangling", f"{L} {{F}}/rows-ok.jsonl --json {{F}}/dangling.json", BAD, "pass --force"),
    case(
        "lint-json-dangling-force",
        f"{L} {{F}}/rows-ok.jsonl --json {{F}}/dangling.json --force",
        BAD,
        "symbolic link",
    ),
    case("lint-json-no-folder", f"{L} {{F}}/rows-ok.jsonl --json {{T}}/no/x.json", BAD, "no such folder"),
    case(
        "lint-json-before-tokenizer",
        "lint --model {X}/empty {F}/rows-ok.jsonl --json {F}/exists.json",
        BAD,
        "--force",
    ),
    case("lint-revision-bundled", "lint {F}/rows-ok.jsonl --revision main", BAD, "no revisions"),
    case("lint-revision-local", f"{L} {{F}}/rows-ok.jsonl --revision main", BAD, "has no revisions"),
    case("lint-model-missing", "lint --model ./no/such/model {F}/rows-ok.jsonl", BAD, "no such folder"),
    case("lint-model-no-tokenizer", "lint --model {X}/empty {F}/rows-ok.jsonl", BAD, "tokenizer"),
    case(
        "lint-model-tokenizer-garbage",
        "lint --model {X}/tokenizer-garbage {F}/rows-ok.jsonl",
        BAD,
        "tokenizer",
    ),
    case("lint-missing", f"{L} {{F}}/missing.jsonl", BAD, "data file not found"),
    case("lint-folder", f"{L} {{F}}/a-folder.json", BAD, "is a folder"),
    case("lint-txt", f"{L} {{F}}/rows.txt", BAD, "unsupported data format"),
    case("lint-garbage-parquet", f"{L} {{F}}/rows-garbage.parquet", BAD, "cannot read Parquet"),
    case("lint-empty", f"{L} {{F}}/rows-empty.jsonl", BAD, "has no rows"),
    case("lint-blank-only", f"{L} {{F}}/rows-blank-only.jsonl", BAD, "has no rows"),
    case("lint-empty-array", f"{L} {{F}}/rows-empty-array.json", BAD, "has no rows"),
]

# Data files whose hostile rows are findings (exit 1, the other rows still linted) or that are clean (exit 0):
# nothing on stderr; each is run as a table and as JSON on stdout.
DATA_ROWS = [
    ("rows-deep.jsonl", FINDINGS, "nested too deeply"),
    ("rows-deep-object.jsonl", FINDINGS, "nested too deeply"),
    ("rows-whitespace.jsonl", OK, ""),
    ("rows-crlf.jsonl", OK, ""),
    ("rows-bom.jsonl", OK, ""),
    ("rows-ok.jsonl", OK, ""),
    ("rows-bad-utf8.jsonl", FINDINGS, "not valid UTF-8"),
    ("rows-list.jsonl", FINDINGS, "not an object"),
    ("rows-number.jsonl", FINDINGS, "not an object"),
    ("rows-null.jsonl", FINDINGS, "not an object"),
    ("rows-string.jsonl", FINDINGS, "not an object"),
    ("rows-content-42.jsonl", FINDINGS, "must be a string or a list of text parts"),
    ("rows-content-null.jsonl", FINDINGS, "not null"),
    ("rows-huge-ids.jsonl", FINDINGS, "too large"),
    ("rows-float-ids.jsonl", FINDINGS, "list of integers"),
    ("rows-text-number.jsonl", FINDINGS, "must be a string"),
    ("rows-prompt-list.jsonl", FINDINGS, "must both be strings"),
    ("rows-no-columns.jsonl", FINDINGS, "no sample in this row"),
    ("rows-invalid.jsonl", FINDINGS, "not valid JSON"),
    ("rows-deep.json", FINDINGS, "nested too deeply"),
    ("rows-deep-single.json", FINDINGS, "nested too deeply"),
    ("rows-invalid.json", FINDINGS, "not valid JSON"),
]
for name, code, fragment in DATA_ROWS:
    stem = name.replace(".", "-")
    CASES.append(case(f"lint-{stem}", f"{L} {{F}}/{name}", code, fragment, stderr_lines=0))
    CASES.append(case(f"lint-json-{stem}", f"{L} {{F}}/{name} --json", code, fragment, stderr_lines=0))

# Sample files given to report: all fail before the model loads, except where the tokenizer must decide.
CHAT_FILES = [
    (
        "chat-content-42.json",
        "chat message 1: content must be a string or a list of text parts, not a number",
    ),
    ("chat-content-null.json", "content must be a string or a list of text parts, not null"),
    ("chat-content-true.json", "not a boolean"),
    ("chat-content-part-image.json", "only text parts are supported"),
    ("chat-content-part-5.json", 'content part 0 must be an object with a "type"'),
    ("chat-content-part-text-5.json", 'content part 0 needs a string "text"'),
    ("chat-content-object.json", "not an object"),
    ("chat-content-float.json", "not a number"),
    ("chat-content-nan.json", "not a number"),
    ("chat-content-huge-int.json", "not a number"),
    ("chat-role-5.json", 'must be an object with a string "role"'),
    ("chat-role-null.json", 'must be an object with a string "role"'),
    ("chat-no-role.json", 'must be an object with a string "role"'),
    ("chat-no-content.json", 'has no "content"'),
    ("chat-message-string.json", "must be an object"),
    ("chat-message-number.json", "must be an object"),
    ("chat-message-null.json", "must be an object"),
    ("chat-empty-list.json", "non-empty JSON list"),
    ("chat-object.json", "must hold a JSON list"),
    ("chat-messages-5.json", "must hold a JSON list"),
    ("chat-messages-empty.json", "non-empty JSON list"),
    ("chat-messages-bad.json", "content must be a string or a list of text parts"),
    ("chat-string.json", "must hold a JSON list"),
    ("chat-number.json", "must hold a JSON list"),
    ("chat-null.json", "must hold a JSON list"),
    ("chat-deep-list.json", "nested too deeply"),
    ("chat-deep-object.json", "nested too deeply"),
    ("chat-deep-content.json", "nested too deeply"),
    ("chat-no-assistant.json", "no assistant message"),
    ("chat-system-only.json", "no assistant message"),
    ("chat-invalid.json", "not valid JSON"),
    ("chat-trailing-comma.json", "not valid JSON"),
    ("whitespace.json", "not valid JSON"),
    ("bad-utf8.json", "not valid UTF-8"),
    ("missing.json", "chat file not found"),
    ("a-folder.json", "is a folder"),
]
CASES += [case(f"chat-{n[:-5]}", f"{R} --chat {{F}}/{n}", BAD, fragment) for n, fragment in CHAT_FILES]

IDS_FILES = [
    ("ids-deep.json", "nested too deeply"),
    ("ids-deep-value.json", "nested too deeply"),
    ("ids-floats.json", '"input_ids" must be a list of integers'),
    ("ids-strings.json", '"input_ids" must be a list of integers'),
    ("ids-bools.json", '"input_ids" must be a list of integers'),
    ("ids-null.json", '"input_ids"'),
    ("ids-batch-of-two.json", '"input_ids" must be a list of integers'),
    ("ids-empty.json", "empty"),
    ("ids-single.json", "single token"),
    ("ids-object.json", '"input_ids" must be a list of integers'),
    ("ids-huge.json", "too large"),
    ("ids-negative.json", "is negative"),
    ("ids-labels-short.json", "labels has 2 entries but input_ids has 3"),
    ("ids-labels-floats.json", '"labels" must be a list of integers'),
    ("ids-labels-minus-5.json", "a label is a token id or -100"),
    ("ids-mask-short.json", "attention_mask has 2 entries"),
    ("ids-mask-two.json", "only 0 and 1"),
    ("ids-list.json", "JSON object"),
    ("ids-null-top.json", "JSON object"),
    ("ids-no-key.json", '"input_ids"'),
    ("ids-empty-object.json", '"input_ids"'),
    ("ids-invalid.json", "not valid JSON"),
    ("empty.txt", "not valid JSON"),
    ("bad-utf8.txt", "not valid UTF-8"),
    ("missing.json", "ids file not found"),
]
CASES += [
    case(f"ids-{n.rsplit('.', 1)[0]}", f"{R} --ids {{F}}/{n}", BAD, fragment) for n, fragment in IDS_FILES
]

CASES += [
    case("file-missing", f"{R} --file {{F}}/missing.txt", BAD, "text file not found"),
    case("file-folder", f"{R} --file {{F}}/a-folder.json", BAD, "is a folder"),
    case("file-bad-utf8", f"{R} --file {{F}}/bad-utf8.txt", BAD, "not valid UTF-8"),
    case("file-empty", f"{R} --file {{F}}/empty.txt", BAD, "is empty"),
    case("file-dev-zero", f"{R} --file /dev/zero", BAD, "is a device, not a file", seconds=20),
]

# Cases that load a (tiny) model: the model or the tokenizer decides.
CASES += [
    case("model-missing", f"report --model ./no/such/model {TEXT}", BAD, "no such folder"),
    case("model-a-file", f"report --model {{X}}/a-file {TEXT}", BAD, "no such folder"),
    case("model-empty-folder", f"report --model {{X}}/empty {TEXT}", BAD, "cannot load model"),
    case("model-config-only", f"report --model {{X}}/config-only {TEXT}", BAD, "cannot load model"),
    case("model-no-weights", f"report --model {{X}}/no-weights {TEXT}", BAD, "cannot load model"),
    case("model-config-invalid", f"report --model {{X}}/config-invalid {TEXT}", BAD, "cannot load model"),
    case("model-config-list", f"report --model {{X}}/config-list {TEXT}", BAD, "cannot load model"),
    case(
        "model-config-unknown", f"report --model {{X}}/config-unknown-type {TEXT}", BAD, "cannot load model"
    ),
    case("model-not-causal", f"report --model {{X}}/not-causal {TEXT}", BAD, "not a causal language model"),
    case("model-no-tokenizer", f"report --model {{X}}/no-tokenizer {TEXT}", BAD, "tokenizer"),
    case("model-tokenizer-garbage", f"report --model {{X}}/tokenizer-garbage {TEXT}", BAD, "tokenizer"),
    case("model-weights-garbage", f"report --model {{X}}/weights-garbage {TEXT}", BAD, "cannot load model"),
    case(
        "model-weights-truncated", f"report --model {{X}}/weights-truncated {TEXT}", BAD, "cannot load model"
    ),
    case(
        "model-bin-pickle-code",
        f"report --model {{X}}/bin-pickle-code {TEXT}",
        BAD,
        "refused unread",
        absent="weights_only=False",
    ),
    case(
        "model-bin-garbage",
        f"report --model {{X}}/bin-garbage {TEXT}",
        BAD,
        "cannot load model",
        absent="weights_only",
    ),
    case(
        "model-bin-only-loads-with-a-notice",
        f"report --model {{X}}/bin-only {TEXT} --limit 0",
        OK,
        "tokstep: note: bin-only has only pytorch_model.bin",
    ),
    case(
        "model-hub-offline",
        f"report --model no-org-xyz/no-model {TEXT}",
        BAD,
        "nor a hub model in the local cache",
    ),
    case(
        "model-hub-revision-offline",
        f"report --model no-org-xyz/m --revision v2 {TEXT}",
        BAD,
        "the hub is off",
    ),
    case(
        "model-nan-float32",
        f"report --model {{X}}/nan-weights {TEXT}",
        NAN,
        "already float32",
        absent="try --dtype",
    ),
    case(
        "sample-ids-beyond-vocab",
        f"{R} --ids {{F}}/ids-beyond-vocab.json",
        BAD,
        "outside the model's vocabulary",
    ),
    case(
        "sample-labels-beyond-vocab",
        f"{R} --ids {{F}}/ids-labels-beyond.json",
        BAD,
        "neither -100 nor inside",
    ),
    case("sample-ids-too-long", f"{R} --ids {{F}}/ids-too-long.json", BAD, "at most 128 positions"),
    # nothing trained is an error-level lint: report prints it all, then exits 1 as `tokstep lint` would
    case(
        "sample-ids-all-masked", f"{R} --ids {{F}}/ids-all-masked.json", FINDINGS, "undefined", stderr_lines=0
    ),
    case("sample-chat-no-template", "report --model {G} --chat {F}/chat-ok.json", BAD, "no chat template"),
    case("sample-chat-bom", f"{R} --chat {{F}}/chat-bom.json --limit 0", OK, "✓ match", stderr_lines=0),
    case("sample-text-bom", f"{R} --file {{F}}/text-bom.txt --limit 0", OK, "✓ match", stderr_lines=0),
    case("sample-single-token", "report --model {G} --text I", BAD, "single token"),
    case("sample-chat-10mb", f"{R} --chat {{F}}/chat-10mb.json", BAD, "at most 128 positions", seconds=10),
    case("sample-chat-many-turns", f"{R} --chat {{F}}/chat-many-turns.json", BAD, "at most 128", seconds=10),
    case("sample-text-10mb", f"{R} --file {{F}}/text-10mb.txt", BAD, "at most 128 positions", seconds=10),
    case(
        "sample-truncate-all-masked",
        [*R.split(), "--prompt", "Question: what is the capital?", "--answer", " Paris.", "--truncate", "3"],
        BAD,
        "cuts off every supervised token",
    ),
    case(
        "sample-truncate-chat-all-masked",
        f"{R} --chat {{F}}/chat-ok.json --truncate 4",
        BAD,
        "cuts off every supervised token",
    ),
    case("sample-limit-0", f"{R} {TEXT} --limit 0", OK, "more positions", stderr_lines=0),
]


# Trainer batches (`--batches FILE`): the flag rules and unreadable files.
FILES.update(
    {
        "batches-blank.jsonl": "  \n\n\t\n",
        "batches-ok.jsonl": json.dumps({"input_ids": [1, 40, 41, 42]}) + "\n",
    }
)
CASES += [
    case("batches-missing", f"{R} --batches {{F}}/missing.jsonl", BAD, "batches file not found"),
    case("batches-blank", f"{R} --batches {{F}}/batches-blank.jsonl", BAD, "has no rows"),
    case("batches-folder", f"{R} --batches {{F}}/a-folder.json", BAD, "cannot read batches file"),
    case("batches-and-text", f"{R} --batches {{F}}/batches-ok.jsonl {TEXT}", BAD, "drop --text"),
    case(
        "batches-and-data",
        f"{U} --batches {{F}}/batches-ok.jsonl --data {{F}}/rows-ok.jsonl",
        BAD,
        "drop --data",
    ),
    case(
        "batches-truncate",
        f"{R} --batches {{F}}/batches-ok.jsonl --truncate 8",
        BAD,
        "--truncate is not used",
    ),
    case(
        "batches-incremental",
        f"{R} --batches {{F}}/batches-ok.jsonl --incremental",
        BAD,
        "--incremental is not",
    ),
    case(
        "batches-lint",
        f"{L} {{F}}/rows-ok.jsonl --batches {{F}}/batches-ok.jsonl",
        BAD,
        "not used by `tokstep lint`",
    ),
    case(
        "batches-use-cache-bad",
        f"{R} --batches {{F}}/batches-ok.jsonl --use-cache maybe",
        BAD,
        "invalid choice",
    ),
    case("use-cache-without-batches", f"{R} {TEXT} --use-cache on", BAD, "applies to --batches FILE only"),
]

# Flag mistakes are reported before the model loads: given a model that does not exist, the flag's error
# (not "no such folder") is what the user sees.
NO_MODEL = "--model ./no/such/model"
CASES += [
    case(f"before-load-{name}", f"{command} {NO_MODEL} {rest}", BAD, fragment)
    for name, command, rest, fragment in [
        ("report-top-k", "report", f"{TEXT} --top-k 0", "--top-k"),
        ("report-prompt-only", "report", "--prompt Q", "go together"),
        ("report-truncate", "report", f"{TEXT} --truncate 1", "--truncate"),
        ("report-limit", "report", f"{TEXT} --limit -1", "--limit"),
        ("report-device", "report", f"{TEXT} --device cuda:x", "--device"),
        ("report-json-exists", "report", f"{TEXT} --json {{F}}/exists.json", "pass --force"),
        ("report-chat-42", "report", "--chat {F}/chat-content-42.json", "must be a string"),
        ("report-ids-deep", "report", "--ids {F}/ids-deep.json", "nested too deeply"),
        ("report-unused-flag", "report", f"{TEXT} --data {{F}}/rows-ok.jsonl", "is not used"),
        ("tui-top-k", "", f"{TEXT} --top-k 0", "--top-k"),
        ("tui-data-missing", "", "--data {F}/missing.jsonl", "data file not found"),
        ("lint-max-rows", "lint {F}/rows-ok.jsonl", "--max-rows 0", "--max-rows"),
        ("lint-json-exists", "lint {F}/rows-ok.jsonl", "--json {F}/exists.json", "pass --force"),
        ("lint-data-missing", "lint {F}/missing.jsonl", "", "data file not found"),
    ]
]


# -- issue 18: bad rows, bounded input, special files, flag conflicts -----------------------------------------

SURROGATE_ROW = '{"text": "bad \\ud800 row"}'
BIG_INT = "9" * 5000
FILES.update(
    {
        "rows-surrogate.jsonl": '{"text": "I love dogs."}\n' + SURROGATE_ROW + '\n{"text": "I love cats."}\n',
        "rows-surrogate-key.jsonl": '{"text": "ok"}\n{"te\\udfffxt": "x", "text": "y"}\n',
        "rows-surrogate-chat.jsonl": '{"text": "ok"}\n{"messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "\\udc00"}]}\n',
        "rows-surrogate-prompt.jsonl": '{"text": "ok"}\n{"prompt": "Q \\ud83d", "completion": " A"}\n',
        "rows-bigint.jsonl": '{"text": "ok"}\n{"input_ids": [1, ' + BIG_INT + ", 3]}\n",
        "rows-bigint-labels.jsonl": '{"text": "ok"}\n{"input_ids": [1, 2, 3], "labels": [-100, '
        + BIG_INT
        + ", 3]}\n",
        "rows-ids-2d.jsonl": '{"text": "ok"}\n{"input_ids": [[1, 2], [3, 4]]}\n',
        "rows-labels-2d.jsonl": '{"text": "ok"}\n{"input_ids": [1, 2, 3], "labels": [[1], [2], [3]]}\n',
        "rows-labels-short.jsonl": '{"text": "ok"}\n{"input_ids": [1, 2, 3], "labels": [1, 2]}\n',
        "rows-ids-strings.jsonl": '{"text": "ok"}\n{"input_ids": ["1", "2"]}\n',
        "rows-bad-utf8-2.jsonl": b'{"text": "ok"}\n{"text": "caf\xe9"}\n{"text": "fine"}\n',
        "rows-surrogate.json": '[{"text": "ok"}, ' + SURROGATE_ROW + "]",
        "rows-bigint.json": '[{"text": "ok"}, {"input_ids": [' + BIG_INT + "]}]",
        "rows-pair-ok.jsonl": '{"text": "smile \\ud83d\\ude00 ok"}\n',
        "batches-surrogate.jsonl": '{"input_ids": [1, 40, 41, 42]}\n{"input_ids": [1, 2], "x": "\\ud800"}\n',
        "batches-bigint.jsonl": '{"input_ids": [1, 40, 41, 42]}\n{"input_ids": [1, ' + BIG_INT + "]}\n",
        "batches-bad-utf8.jsonl": b'{"input_ids": [1, 40, 41, 42]}\n{"input_ids": [1, 2], "x": "\xff"}\n',
        "batches-dup.jsonl": '{"batch": 0, "row": 0, "input_ids": [1, 40, 41, 42]}\n'
        '{"batch": 0, "row": 0, "input_ids": [1, 40, 41, 43]}\n',
        "batches-2d.jsonl": '{"input_ids": [1, 40, 41, 42]}\n{"input_ids": [[1, 2], [3, 4]]}\n',
        "batches-labels-short.jsonl": '{"input_ids": [1, 40, 41, 42]}\n{"input_ids": [1, 2, 3], "labels": [1]}\n',
        "chat-surrogate.json": '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\\ud800"}]',
        "chat-surrogate-role.json": '[{"role": "us\\udc00er", "content": "hi"}, '
        '{"role": "assistant", "content": "x"}]',
        "chat-bigint.json": '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": '
        + BIG_INT
        + "}]",
        "ids-bigint.json": '{"input_ids": [1, ' + BIG_INT + "]}",
        "ids-bigint-labels.json": '{"input_ids": [1, 2, 3], "labels": [-100, 2, ' + BIG_INT + "]}",
        "ids-surrogate-key.json": '{"input_ids": [1, 2, 3], "n\\ud800": 1}',
        "text-surrogate-escape.txt": "caf\\ud800 is not an escape in a text file",
    }
)

ROW_FILES = [
    ("rows-surrogate.jsonl", "lone surrogate"),
    ("rows-surrogate-key.jsonl", "lone surrogate"),
    ("rows-surrogate-chat.jsonl", "lone surrogate"),
    ("rows-surrogate-prompt.jsonl", "lone surrogate"),
    ("rows-bigint.jsonl", "more than 4300 digits"),
    ("rows-bigint-labels.jsonl", "more than 4300 digits"),
    ("rows-ids-2d.jsonl", "input_ids"),
    ("rows-labels-2d.jsonl", "labels"),
    ("rows-labels-short.jsonl", "labels"),
    ("rows-ids-strings.jsonl", "input_ids"),
    ("rows-bad-utf8-2.jsonl", "not valid UTF-8"),
    ("rows-surrogate.json", "lone surrogate"),
    ("rows-bigint.json", "4300 digits"),
]
# one bad row is that row's finding: lint and report --data go on and exit 1 (findings), never 4
CASES += [
    case(f"row-lint-{n}", f"{L} {{F}}/{n}", FINDINGS, fragment, stderr_lines=0) for n, fragment in ROW_FILES
]
CASES += [
    case(f"row-lint-json-{n}", f"{L} {{F}}/{n} --json -", FINDINGS, fragment.split()[0], stderr_lines=0)
    for n, fragment in ROW_FILES
]
CASES += [
    case(f"row-lint-strict-{n}", f"{L} {{F}}/{n} --strict", FINDINGS, fragment, stderr_lines=0)
    for n, fragment in ROW_FILES
]
CASES += [
    case(f"row-lint-jobs-2-{n}", f"{L} {{F}}/{n} --jobs 2", FINDINGS, fragment, stderr_lines=0)
    for n, fragment in ROW_FILES[:4]
]
CASES += [
    case(f"row-report-data-{n}", f"{R} --data {{F}}/{n}", FINDINGS, fragment, stderr_lines=0)
    for n, fragment in ROW_FILES
]
CASES += [
    case(f"row-report-data-rows-{n}", f"{R} --data {{F}}/{n} --rows 2", FINDINGS, fragment, stderr_lines=0)
    for n, fragment in ROW_FILES
    if not n.endswith(".json")
]
CASES += [
    case("row-pair-is-not-a-surrogate", f"{L} {{F}}/rows-pair-ok.jsonl", OK, "", stderr_lines=0),
    case("row-report-pair-ok", f"{R} --data {{F}}/rows-pair-ok.jsonl", OK, "1 row(s)", stderr_lines=0),
]

# a trainer batches line: that line's error (one stderr line), the other rows still traced (exit 1)
BATCH_LINES = [
    ("batches-surrogate.jsonl", "lone surrogate"),
    ("batches-bigint.jsonl", "4300 digits"),
    ("batches-bad-utf8.jsonl", "not valid UTF-8"),
    ("batches-dup.jsonl", "appears again (first on line 1)"),
    ("batches-2d.jsonl", "input_ids"),
    ("batches-labels-short.jsonl", "labels"),
]
CASES += [
    case(f"batch-line-{n}", f"{R} --batches {{F}}/{n} --reference off", FINDINGS, fragment)
    for n, fragment in BATCH_LINES
]
CASES += [
    case(f"batch-line-json-{n}", f"{R} --batches {{F}}/{n} --json -", FINDINGS, fragment)
    for n, fragment in BATCH_LINES
]

# single samples: exit 2 with one line, before the model loads where the file decides
SAMPLE_FILES = [
    ("chat", "chat-surrogate.json", "lone surrogate"),
    ("chat", "chat-surrogate-role.json", "lone surrogate"),
    ("chat", "chat-bigint.json", "4300 digits"),
    ("ids", "ids-bigint.json", "4300 digits"),
    ("ids", "ids-bigint-labels.json", "4300 digits"),
    ("ids", "ids-surrogate-key.json", "lone surrogate"),
]
for command, prefix in (("report", R), ("report-before-load", f"report {NO_MODEL}"), ("tui", f"{NO_MODEL}")):
    CASES += [
        case(f"sample-{command}-{n[:-5]}", f"{prefix} --{flag} {{F}}/{n}", BAD, fragment)
        for flag, n, fragment in SAMPLE_FILES
    ]
ARGV_TEXTS = [
    ("text", ["--text", "caf\udcff dogs"]),
    ("text-lone", ["--text", "\ud800"]),
    ("prompt", ["--prompt", "Q\udc80?", "--answer", " A"]),
    ("answer", ["--prompt", "Q?", "--answer", " A\udcfe"]),
]
CASES += [case(f"argv-{name}", [*R.split(), *argv], BAD, "lone surrogate") for name, argv in ARGV_TEXTS]
CASES += [
    case(f"argv-truncate-{name}", [*R.split(), *argv, "--truncate", "8"], BAD, "lone surrogate")
    for name, argv in ARGV_TEXTS
]
CASES += [
    case(f"argv-limit-{name}", [*R.split(), *argv, "--limit", "0"], BAD, "lone surrogate")
    for name, argv in ARGV_TEXTS
]
CASES += [
    case(
        "text-file-escape-is-text",
        f"{R} --file {{F}}/text-surrogate-escape.txt --limit 0",
        OK,
        stderr_lines=0,
    )
]

# files that are not files: /dev/zero (and links to it), FIFOs, sockets are refused at once, in bounded memory
READERS = [
    ("file", f"{R} --file", "text file"),
    ("ids", f"{R} --ids", "ids file"),
    ("chat", f"{R} --chat", "chat file"),
    ("batches", f"{R} --batches", "batches file"),
    ("lint", f"{L}", "not a regular file"),
    ("report-data", f"{R} --data", "not a regular file"),
    ("tui-data", f"{U} --data", "not a regular file"),
    ("scan", "scan --model {M} --out {T}/scan", "not a regular file"),
]
DEVICES = [("dev-zero", "/dev/zero"), ("zero-link", "{F}/zero.json"), ("zero-link-jsonl", "{F}/zero.jsonl")]
CASES += [
    case(f"device-{reader}-{name}", f"{prefix} {path}", BAD, fragment, seconds=10)
    for reader, prefix, fragment in READERS
    for name, path in DEVICES
]
CASES += [
    case(f"fifo-{reader}", f"{prefix} {{F}}/fifo.jsonl", BAD, "not a regular file", seconds=10)
    for reader, prefix, _ in READERS
    if reader in ("lint", "report-data", "tui-data", "scan")
]

# --force replaces regular files only: a device, FIFO or socket is refused by name, with or without --force
TARGETS = [
    ("dev-null", "/dev/null", "character device"),
    ("fifo", "{F}/fifo.json", "FIFO"),
    ("socket", "{F}/sock.json", "socket"),
    ("zero-link", "{F}/zero.json", "character device"),
    ("dev-full", "/dev/full", "character device"),
    ("dev-zero", "/dev/zero", "character device"),
]
WRITERS = [
    ("report-json", f"{R} {TEXT} --json"),
    ("report-html", f"{R} {TEXT} --html"),
    ("report-svg", f"{R} {TEXT} --svg"),
    ("lint-json", f"{L} {{F}}/rows-ok.jsonl --json"),
    ("batches-json", f"{R} --batches {{F}}/batches-ok.jsonl --json"),
    ("before-load-json", f"report {NO_MODEL} {TEXT} --json"),
]
for force in ("", " --force"):
    CASES += [
        case(
            f"special-{writer}-{target}{force.replace(' ', '-')}",
            f"{prefix} {path}{force}",
            BAD,
            kind,
            absent="pass --force",
        )
        for writer, prefix in WRITERS
        for target, path, kind in TARGETS
    ]

# one oversized row is that row's error, at once; --truncate never tokenizes all of a huge input
FILES["rows-oversized.jsonl"] = '{"text": "ok"}\n{"text": "' + "x" * (17 << 20) + '"}\n{"text": "fine"}\n'
FILES["rows-10mb-row.jsonl"] = '{"text": "ok"}\n' + json.dumps({"text": "I love dogs. " * 800_000}) + "\n"
CASES += [
    case(
        "oversized-row-lint",
        f"{L} {{F}}/rows-oversized.jsonl",
        FINDINGS,
        "larger than 16 MiB",
        stderr_lines=0,
        seconds=5,
    ),
    case(
        "oversized-row-report-data",
        f"{R} --data {{F}}/rows-oversized.jsonl",
        FINDINGS,
        "larger than 16 MiB",
        stderr_lines=0,
        seconds=5,
    ),
    case(
        "oversized-row-report-rows",
        f"{R} --data {{F}}/rows-oversized.jsonl --rows 2",
        FINDINGS,
        "larger than 16 MiB",
        stderr_lines=0,
        seconds=5,
    ),
    case(
        "10mb-row-lint",
        f"{L} {{F}}/rows-10mb-row.jsonl",
        FINDINGS,
        "at most 128 positions",
        stderr_lines=0,
        seconds=5,
    ),
    case(
        "10mb-row-report-data",
        f"{R} --data {{F}}/rows-10mb-row.jsonl",
        FINDINGS,
        "at most 128 positions",
        stderr_lines=0,
        seconds=5,
    ),
    case(
        "truncate-10mb-file",
        f"{R} --file {{F}}/text-10mb.txt --truncate 50 --limit 0",
        OK,
        "truncated from",
        stderr_lines=0,
        seconds=5,
    ),
    case(
        "truncate-10mb-text-json",
        f"{R} --file {{F}}/text-10mb.txt --truncate 50 --json -",
        OK,
        '"loss"',
        stderr_lines=0,
        seconds=5,
    ),
]

# --truncate on a chat with a 10 MB message (or 3000 turns): only a prefix of the rendered chat is tokenized
# (without --truncate, sample-chat-10mb: the size guard refuses it before rendering)
DOGS_10MB = "I love dogs. " * 800_000
FILES["chat-10mb-user.json"] = json.dumps([{"role": "user", "content": DOGS_10MB}, CHAT_OK[1]])
FILES["rows-chat-10mb.jsonl"] = (
    json.dumps({"messages": CHAT_OK})
    + "\n"
    + json.dumps({"messages": json.loads(FILES["chat-10mb.json"])})
    + "\n"
)
CASES += [
    case(
        "truncate-10mb-chat",
        f"{R} --chat {{F}}/chat-10mb.json --truncate 50 --limit 0",
        OK,
        "truncated from",
        stderr_lines=0,
        seconds=5,
    ),
    case(
        "truncate-10mb-chat-json",
        f"{R} --chat {{F}}/chat-10mb.json --truncate 50 --json -",
        OK,
        '"loss"',
        stderr_lines=0,
        seconds=5,
    ),
    case(
        "truncate-10mb-chat-user-first",
        f"{R} --chat {{F}}/chat-10mb-user.json --truncate 50",
        BAD,
        "--truncate 50 cuts off every supervised token of the chat",
        seconds=5,
    ),
    case(
        "truncate-10mb-chat-rows-report-data",
        f"{R} --data {{F}}/rows-chat-10mb.jsonl --truncate 50",
        OK,
        "2 row(s)",
        stderr_lines=0,
        seconds=5,
    ),
    case(
        "truncate-10mb-chat-rows-lint",  # the batched lint leaves --truncate rows to their own prefix build
        f"{L} {{F}}/rows-chat-10mb.jsonl --truncate 50 --jobs 1",
        OK,
        "2 rows in",
        stderr_lines=0,
        seconds=10,
    ),
    case(
        "truncate-chat-many-turns",  # 3000 turns: only those in the tokenized prefix are located
        f"{R} --chat {{F}}/chat-many-turns.json --truncate 50",
        BAD,
        "cuts off every supervised token of the chat: nothing would be counted (the first is token",
        seconds=5,
    ),
]

# one file named by two outputs
CASES += [
    case(
        f"same-target-{a}-{b}", f"{R} {TEXT} --{a} {{T}}/out.x --{b} {{T}}/./out.x", BAD, "name the same file"
    )
    for a, b in (("json", "html"), ("json", "svg"), ("html", "svg"))
] + [
    case(
        f"same-target-before-load-{a}-{b}",
        f"report {NO_MODEL} {TEXT} --{a} {{T}}/o --{b} {{T}}/o",
        BAD,
        "name the same file",
    )
    for a, b in (("json", "html"), ("json", "svg"), ("html", "svg"))
]

# every flag validated before any work (a model that does not exist: the flag's error is what shows)
ROWS_BAD = ["", " ", ",", "3,,5", "-", "a", "0", "5-3", "1-2-3", "x-", "2,", "-0"]
CASES += [
    case(
        f"rows-{i}",
        [*f"report {NO_MODEL} --data {{F}}/rows-ok.jsonl".split(), "--rows", value],
        BAD,
        "--rows",
    )
    for i, value in enumerate(ROWS_BAD)
]
CASES += [
    case(
        f"jobs-{value}",
        f"lint {{F}}/rows-ok.jsonl {NO_MODEL} --jobs {value}",
        BAD,
        "--jobs must be at least 1",
    )
    for value in ("0", "-1", "-8")
] + [case("jobs-x", f"lint {{F}}/rows-ok.jsonl {NO_MODEL} --jobs x", BAD, "invalid int value")]
CASES += [
    case(
        f"no-reference-and-reference-{mode}-{where}",
        f"{prefix} {TEXT} --no-reference --reference {mode}",
        BAD,
        "not both",
    )
    for mode in ("full", "chunked", "off")
    for where, prefix in (("report", f"report {NO_MODEL}"), ("tui", NO_MODEL))
] + [
    case(
        f"reference-and-no-reference-{mode}",
        f"report {NO_MODEL} {TEXT} --reference={mode} --no-reference",
        BAD,
        "not both",
    )
    for mode in ("full", "off")
]
ATTENTION_BAD = ["bogus", "EAGER", "flash", "sdpa2", "flash_attention_9", "paged|bogus", "a/b/c", "org/"]
CASES += [
    case(
        f"attn-{i}-{where}",
        [*f"{prefix} --batches {{F}}/batches-ok.jsonl".split(), "--attn-implementation", v],
        BAD,
        "--attn-implementation",
    )
    for i, v in enumerate(ATTENTION_BAD)
    for where, prefix in (("report", f"report {NO_MODEL}"), ("tui", NO_MODEL))
]
CASES += [
    case(f"scan-{name}", f"scan {{F}}/rows-ok.jsonl --model {{M}} {rest}", BAD, fragment)
    for name, rest, fragment in [
        ("no-out", "", "needs --out"),
        ("chunk-rows-0", "--out {T}/s --chunk-rows 0", "at least 1"),
        ("batch-tokens-0", "--out {T}/s --batch-tokens 0", "at least 1"),
        ("chunk-rows-x", "--out {T}/s --chunk-rows x", "invalid int value"),
        ("out-is-file", "--out {F}/exists.json", "is a file, not a folder"),
        ("out-not-a-scan", "--out {F}", "holds no tokstep scan"),
        ("model-typo", "--out {T}/s --model ./typo", "no such folder"),
        ("device-cuda", "--out {T}/s --device cuda:5", "CUDA"),
        ("device-bogus", "--out {T}/s --device gpu", "--device"),
        ("truncate-1", "--out {T}/s --truncate 1", "at least 2"),
        ("not-causal", "--out {T}/s --model {X}/bert-encoder", "not a causal language model"),
    ]
] + [
    case(f"scan-data-{name}", f"scan {{F}}/{file} --model {{M}} --out {{T}}/s", BAD, fragment)
    for name, file, fragment in [
        ("empty", "rows-empty.jsonl", "has no rows"),
        ("blank", "rows-blank-only.jsonl", "has no rows"),
        ("empty-array", "rows-empty-array.json", "has no rows"),
        ("missing", "missing.jsonl", "data file not found"),
        ("folder", "a-folder.json", "is a folder"),
        ("garbage-parquet", "rows-garbage.parquet", "parquet"),
        ("txt", "rows.txt", "unsupported data format"),
    ]
]

# the causality probe runs for every model tokstep loads, wherever it is loaded
CASES += [
    case(f"probe-{name}", argv, BAD, "not a causal language model")
    for name, argv in [
        ("report", "report --model {X}/bert-encoder --text I_love_dogs."),
        ("report-ids", "report --model {X}/bert-encoder --ids {F}/ids-all-masked.json"),
        ("compare-b", f"{R} {TEXT} --compare {{X}}/bert-encoder"),
        ("compare-a", f"report --model {{X}}/bert-encoder {TEXT} --compare {{M}}"),
        ("compare-both", f"report --model {{X}}/bert-encoder {TEXT} --compare {{X}}/bert-encoder"),
        ("data", "report --model {X}/bert-encoder --data {F}/rows-ok.jsonl"),
        ("data-rows", "report --model {X}/bert-encoder --data {F}/rows-ok.jsonl --rows 1"),
        ("batches", "report --model {X}/bert-encoder --batches {F}/batches-ok.jsonl"),
        ("batches-json", "report --model {X}/bert-encoder --batches {F}/batches-ok.jsonl --json -"),
        ("scan", "scan {F}/rows-ok.jsonl --model {X}/bert-encoder --out {T}/s"),
        ("report-limit", "report --model {X}/bert-encoder --text I_love_dogs. --limit 0"),
        ("report-no-reference", "report --model {X}/bert-encoder --text I_love_dogs. --no-reference"),
    ]
]


def expand(argv: tuple[str, ...], where: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        for key, value in where.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg.replace("I_love_dogs.", "I love dogs."))
    return out


def listing(*folders: Path) -> set[str]:
    return {str(p) for folder in folders for p in folder.rglob("*")}


@pytest.mark.parametrize("hostile", CASES, ids=[c.name for c in CASES])
def test_hostile_case(hostile: Case, files, models, model_dir, gpt2_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    where = {"M": model_dir, "G": gpt2_dir, "F": str(files), "X": str(models), "T": str(tmp_path)}
    argv = expand(hostile.argv, where)
    before = listing(files, models, tmp_path, Path(model_dir))
    started = time.monotonic()
    code = main(argv)
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == hostile.code, (
        f"exit {code}, expected {hostile.code}; stderr: {err!r}; stdout tail: {out[-500:]!r}"
    )
    assert len(lines) == hostile.stderr_lines, f"stderr: {err!r}"
    assert "Traceback" not in out + err and "internal error" not in out + err
    if hostile.stderr_lines:
        assert lines[0].startswith(("tokstep: error: ", "tokstep: note: ")), lines[0]
    shown = lines[0] if hostile.stderr_lines and code != OK else out
    if hostile.code == OK and hostile.stderr_lines:
        shown = lines[0]
    assert hostile.fragment in shown, f"{hostile.fragment!r} not in {shown[:1000]!r}"
    if hostile.absent:
        assert hostile.absent not in out + err
    if hostile.seconds:
        assert elapsed < hostile.seconds, f"took {elapsed:.1f}s"
    assert listing(files, models, tmp_path, Path(model_dir)) == before  # no stray file anywhere
    assert not (models / "PWNED").exists()  # a checkpoint's pickled code never ran


def test_the_catalogue_is_large_and_names_are_unique():
    assert len(CASES) >= 600
    assert len({c.name for c in CASES}) == len(CASES)


# -- the same promises, one level down ---------------------------------------------------------------------------


def test_ce_and_losses_never_print_as_negative_zero():
    from tokstep.tui.cli.report import fmt_loss
    from tokstep.tui.formatting import number

    assert number(-0.0) == "0.0000" and number(-1e-9) == "0.0000" and number(-0.00004) == "0.0000"
    assert number(-0.5) == "-0.5000" and number(0.0) == "0.0000" and number(-0.0, 3) == "0.000"
    assert fmt_loss(-0.0) == "0.000000" and fmt_loss(-2e-8) == "0.000000" and fmt_loss(1.5) == "1.500000"


@pytest.mark.parametrize(
    ("dtype", "hint"), [("float32", "already float32"), ("float16", "try --dtype float32")]
)
def test_the_nan_hint_suggests_float32_only_when_it_would_help(dtype, hint):
    from dataclasses import replace

    import numpy as np
    from synthetic import synthetic_result

    result = synthetic_result(20, seed=2)
    finite = result.trace.finite.copy()
    finite[3] = False
    result = replace(
        result, info=replace(result.info, dtype=dtype), trace=replace(result.trace, finite=finite)
    )
    assert np.flatnonzero(~result.trace.finite).tolist() == [3]
    message = result.nonfinite_error
    assert hint in message and "first at t=3" in message
    assert ("try --dtype" in message) == (dtype != "float32")


async def test_the_data_browser_lists_a_too_deep_row_as_an_error_instead_of_hanging(files, model_dir):
    """`tokstep --data` used to hang on "opening …" when one row was nested too deeply."""
    from textual.app import App
    from textual.widgets import DataTable

    from tokstep.engine.model.loading import load_model
    from tokstep.tui.screens.backend import EngineBackend
    from tokstep.tui.screens.browser import DataBrowserScreen

    loaded = load_model(model_dir, device="cpu")

    class Host(App[None]):
        def on_mount(self) -> None:
            screen = DataBrowserScreen(str(files / "rows-deep.jsonl"), backend=EngineBackend(), model=loaded)
            self.push_screen(screen)

    app = Host()
    async with app.run_test(size=(140, 40)) as pilot:
        for _ in range(200):
            table = app.screen.query(DataTable)
            if table and table.first().row_count == 3:
                break
            await pilot.pause(0.05)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 3
        assert "nested too deeply" in str(table.get_cell("1", "preview"))


def test_lint_goes_on_after_a_too_deep_row_and_reports_only_that_row(files, model_dir, capsys):
    assert main(["lint", str(files / "rows-deep.jsonl"), "--model", model_dir, "--json"]) == FINDINGS
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 3 and [r["line"] for r in report["results"]] == [2]
    assert [(f["line"], f["code"]) for f in report["findings"]] == [(2, "bad-row")]


def test_a_failure_is_never_mistaken_for_findings(files, model_dir, capsys, monkeypatch):
    """Exit 1 means "the data has problems"; tokstep's own failure is 4, with one line."""
    import tokstep.tui.cli.lint_cmd as lint_cmd

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(lint_cmd, "lint_file", broken)
    code = main(["lint", str(files / "rows-ok.jsonl"), "--model", model_dir])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == exit_codes.INTERNAL == 4 and len(err) == 1
    assert err[0].startswith("tokstep: error: internal error: RuntimeError: a bug")


def test_exit_statuses_are_distinct_and_in_the_help(capsys):
    codes = [
        exit_codes.OK,
        exit_codes.FINDINGS,
        exit_codes.BAD_INPUT,
        exit_codes.NONFINITE,
        exit_codes.INTERNAL,
    ]
    assert len(set(codes)) == len(codes)
    for argv in (["--help"], ["report", "--help"], ["lint", "--help"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert (
            "exit status:" in out
            and "1    findings: lint at or above --fail-on" in out
            and "4    internal error" in out
        )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("[" * DEEP + "]" * DEEP, "nested too deeply"),
        ('{"input_ids": [1, 100000000000000000000000]}', "is not a token id (too large)"),
    ],
)
def test_a_batches_line_that_cannot_be_read_is_that_line_s_error(raw, reason):
    from tokstep.engine.batches.files import RowError, parse_row

    with pytest.raises(RowError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_row(raw, 1)
