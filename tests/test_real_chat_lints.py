"""On the real tokenizer of every chat family: tokstep's own masks pass tokstep's own lints in every command, and
each generated bug is found with its documented code, severity and positions, and nothing else (issue 17).

The tokenizer of each family is loaded once per module (`AutoTokenizer.from_pretrained` on a family's folder answers
from that one load); CLI commands run in-process."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest
import real_tokenizers as rt
import transformers

from tokstep.engine.chat.masks import derive
from tokstep.engine.inputs.sample import IGNORE_INDEX, MaskReason
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.lints.catalogue import LINTS
from tokstep.tui.cli.main import main

SINGLE = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there!"}]
MULTI = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, I think."},
]
SYSTEM = [{"role": "system", "content": "You are terse."}, *MULTI]
TOOL = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call12345",
                "type": "function",
                "function": {"name": "weather", "arguments": {"city": "Paris"}},
            }
        ],
    },  # a call id of 9 characters: Mistral-Nemo's template refuses any other
    {"role": "tool", "name": "weather", "tool_call_id": "call12345", "content": "sunny, 21 C"},
    {"role": "assistant", "content": "It is sunny in Paris."},
]
LABEL_CODES = {
    code
    for code in LINTS
    if code.startswith(("trains-on", "assistant-", "eos-", "no-eos", "mask-", "labels-"))
}
LABEL_CODES |= {"nothing-trained", "double-bos", "truncated?", "pad-trained", "template-inserted"}


@pytest.fixture(scope="module", autouse=True)
def one_load_per_tokenizer():
    """`AutoTokenizer.from_pretrained(<a family's folder>)` returns that family's one loaded tokenizer."""
    folders: dict[str, str] = {}
    original = transformers.AutoTokenizer.from_pretrained.__func__

    def cached(cls, location, *args, **kwargs):
        name = folders.get(str(location).rstrip("/"))
        return rt.chat_tokenizer(name) if name else original(cls, location, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transformers.AutoTokenizer, "from_pretrained", classmethod(cached))
        yield folders


FAMILIES = (*rt.CHAT_FAMILIES, "llama2_chat")  # Llama-2's tokenizer with Meta's Llama-2-chat template


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory, one_load_per_tokenizer):
    """(name, tokenizer, folder with a tiny random Llama over its vocabulary, the chats its template takes)."""
    name = request.param
    folder = rt.tiny_llama_dir(name, tmp_path_factory.mktemp(name))
    one_load_per_tokenizer[str(folder)] = name
    tokenizer = rt.chat_tokenizer(name)
    chats = {"single": SINGLE, "multi": MULTI, "system": SYSTEM}
    if tokenizer.apply_chat_template(SYSTEM, tokenize=False) == tokenizer.apply_chat_template(
        MULTI, tokenize=False
    ):
        del chats["multi"]  # Mistral-Nemo writes the system prompt into a last user turn only: the same row
    if _takes_tools(tokenizer):
        chats["tool"] = TOOL
    return name, tokenizer, folder, chats


def _takes_tools(tokenizer) -> bool:
    try:
        return "weather" in tokenizer.apply_chat_template(TOOL, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that refuses tool turns
        return False


def true_findings_of(name, tokenizer, chats) -> set[str]:
    """The findings that are true of this tokenizer and template, not of labels: {"tokenizer-differs"} when
    transformers' class really encodes a rendered chat otherwise than tokenizer.json
    read by the tokenizers library (Phi-3's LlamaTokenizer under transformers 5: `S`,`ay` vs `▁Say` after a
    special token): a true finding about the tokenizer, not about labels."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(rt.real_tokenizer_dir(rt.TEMPLATED.get(name, name)) / "tokenizer.json"))
    for chat in chats.values():
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        if (
            tokenizer(text, add_special_tokens=False)["input_ids"]
            != raw.encode(text, add_special_tokens=False).ids
        ):
            return {"tokenizer-differs"} | inserts_think_block(tokenizer, chats)
    return inserts_think_block(tokenizer, chats)


def inserts_think_block(tokenizer, chats) -> set[str]:
    """{"template-inserted"} when the template writes a think block no message holds (Qwen3): an info finding
    that says so, true of the template, not of the labels."""
    for chat in chats.values():
        if "<think>" in tokenizer.apply_chat_template(chat, tokenize=False):
            return {"template-inserted"}
    return set()


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def lint(capsys, tmp_path, folder, rows):
    code = main(["lint", write_rows(tmp_path / "rows.jsonl", rows), "--model", str(folder), "--json"])
    return code, json.loads(capsys.readouterr().out)


def own_rows(tokenizer, chats):
    samples = [build_sample(SampleSpec(chat=tuple(chat)), tokenizer) for chat in chats.values()]
    return samples, [{"input_ids": s.input_ids.tolist(), "labels": s.labels.tolist()} for s in samples]


def test_own_masks_lint_clean_as_chats_and_as_ids(family, capsys, tmp_path):
    name, tokenizer, folder, chats = family
    true_findings = true_findings_of(name, tokenizer, chats)
    code, payload = lint(capsys, tmp_path, folder, [{"messages": chat} for chat in chats.values()])
    found = [(r["line"], f["code"], f["message"][:120]) for r in payload["results"] for f in r["findings"]]
    assert [f for f in found if f[1] not in true_findings] == []
    assert code == 0
    _samples, rows = own_rows(tokenizer, chats)
    code, payload = lint(capsys, tmp_path, folder, rows)
    found = [(r["line"], f["code"], f["message"][:120]) for r in payload["results"] for f in r["findings"]]
    assert [f for f in found if f[1] in LABEL_CODES] == [] and code == 0


def test_report_chat_exits_zero_with_no_finding(family, capsys, tmp_path):
    name, tokenizer, folder, chats = family
    true_findings = true_findings_of(name, tokenizer, chats)
    for kind, chat in chats.items():
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(chat), encoding="utf-8")
        code = main(["report", "--model", str(folder), "--chat", str(path), "--reference", "off"])
        out = capsys.readouterr().out
        named = sorted(
            c
            for c in LINTS
            if c not in true_findings and (f" {c} " in out or f" {c}:" in out or f"{c} @" in out)
        )
        assert (code, named) == (0, []), (kind, out[-2000:])


def test_own_masks_pass_scan_and_batches(family, capsys, tmp_path):
    _name, tokenizer, folder, chats = family
    _samples, rows = own_rows(tokenizer, chats)
    data = write_rows(tmp_path / "rows.jsonl", rows)
    assert main(["scan", data, "--model", str(folder), "--out", str(tmp_path / "scan")]) == 0
    capsys.readouterr()
    manifest = json.loads((tmp_path / "scan" / "manifest.json").read_text())
    table = [r for shard in manifest["shards"] for r in pq.read_table(tmp_path / "scan" / shard).to_pylist()]
    assert [(r["row"], [c for c in r["lints"] if c in LABEL_CODES]) for r in table] == [
        (r, []) for r in range(len(rows))
    ]
    packed = {
        "input_ids": sum((r["input_ids"] for r in rows), []),
        "labels": sum(([IGNORE_INDEX] + r["labels"][1:] for r in rows), []),
        "position_ids": sum((list(range(len(r["input_ids"]))) for r in rows), []),
    }
    batches = write_rows(tmp_path / "batches.jsonl", [packed, *rows])
    out = tmp_path / "batches.json"
    code = main(
        ["report", "--batches", batches, "--model", str(folder), "--reference", "off", "--json", str(out)]
    )
    capsys.readouterr()
    found = [
        (i, f["code"], f["severity"])
        for i, r in enumerate(json.loads(out.read_text())["rows"])
        for f in r["findings"]
    ]
    assert [f for f in found if f[1] in LABEL_CODES] == []
    # the packed row without attention boundaries is rightly an error of its own, not of its labels
    assert [f for f in found if f[1] not in LABEL_CODES] == [(0, "cross-document-attention", "error")]
    assert code == 1


# ---------------------------------------------------------------- generated bugs


def _positions(sample, *reasons) -> list[int]:
    return [j for j, r in enumerate(sample.mask_reasons) if r in reasons]


def _replies(sample) -> list[list[int]]:
    """Token positions of each trained reply (content + end-of-turn), in order."""
    trained = sample.labels != IGNORE_INDEX
    runs, start = [], None
    for j in range(1, len(sample) + 1):
        if j < len(sample) and trained[j]:
            start = j if start is None else start
        elif start is not None:
            runs.append(list(range(start, j)))
            start = None
    return runs


def _end_of_turn(tokenizer, ids, reply) -> int:
    """A trained reply's end-of-turn token: its last, before a trailing newline or an EOS after the end-of-turn
    (Phi-3's `<|end|>` then `<|endoftext|>`)."""
    marks = set(tokenizer.added_tokens_decoder)
    j = reply[-1]
    while j > reply[0] and (
        not tokenizer.decode([ids[j]]).strip() or (ids[j] == tokenizer.eos_token_id and ids[j - 1] in marks)
    ):
        j -= 1
    return j


def bugs(tokenizer, chats):
    """name -> (row, {code: (severity, positions or None)}) built from tokstep's own mask of the system chat."""
    chat = chats["system"]
    sample = build_sample(SampleSpec(chat=tuple(chat)), tokenizer)
    ids, labels = sample.input_ids.tolist(), sample.labels.tolist()
    replies = _replies(sample)
    out = {}

    def row(new_labels, new_ids=None):
        return {"input_ids": new_ids or ids, "labels": new_labels}

    def train(positions):
        return [ids[j] if j in set(positions) else lab for j, lab in enumerate(labels)]

    user = _positions(sample, MaskReason.USER)
    out["trains-on-user"] = (row(train(user)), {"trains-on-user": ("error", user)})
    system = _positions(sample, MaskReason.SYSTEM)
    if system:  # also where the template gives it no turn of its own (Gemma-3, DeepSeek-V3, Llama-2)
        out["trains-on-system"] = (row(train(system)), {"trains-on-system": ("error", system)})
    header = [
        j for j in range(replies[-1][0] - 3, replies[-1][0]) if sample.mask_reasons[j] is MaskReason.TEMPLATE
    ]
    words_of_header = [j for j in header if tokenizer.decode([ids[j]]).strip()]  # not its newline
    span = range(header[0], replies[-1][0] + 1)  # the header and the newline that ends it
    out["header-trained"] = (
        row(train(words_of_header)),
        {"trains-on-markup": ("error", (set(words_of_header), set(span)))},
    )
    ends = [_end_of_turn(tokenizer, ids, reply) for reply in replies]
    out["eot-masked"] = (
        row([IGNORE_INDEX if j in ends else lab for j, lab in enumerate(labels)]),
        {"eos-masked": ("error", ends)},
    )
    last = replies[-1]
    rome = {
        j for j in last if "Rome" in tokenizer.decode([ids[j]])
    }  # the reply's first word, in every family
    out["second-reply-masked"] = (  # named: the reply's words and its end-of-turn, within the reply
        row([IGNORE_INDEX if j in last else lab for j, lab in enumerate(labels)]),
        {"assistant-not-trained": ("warning", (rome, set(last) | {last[-1] + 1}))},
    )
    out["nothing-masked"] = (row(list(ids)), {"trains-on-user": ("error", None)})
    cut = replies[-1][0] + 2
    out["truncated"] = (
        {"input_ids": ids[:cut], "labels": labels[:cut]},
        {"no-eos": ("warning", [cut - 1]), "truncated?": (None, None)},  # truncated? only when cut mid-word
    )
    out["pre-shifted"] = (row([*labels[1:], IGNORE_INDEX]), {"labels-pre-shifted": ("error", None)})
    bos = tokenizer.bos_token_id
    if bos is not None and ids[0] == bos:
        out["double-bos"] = (
            {"input_ids": [bos, *ids], "labels": [IGNORE_INDEX, *labels]},
            {"double-bos": ("error", None)},
        )
    return out


def test_each_generated_bug_is_found_with_its_severity_and_nothing_else(family, capsys, tmp_path):
    _name, tokenizer, folder, chats = family
    cases = bugs(tokenizer, chats)
    _code, payload = lint(capsys, tmp_path, folder, [row for row, _ in cases.values()])
    for (name, (_row, expected)), result in zip(cases.items(), payload["results"], strict=True):
        harmful = {f["code"]: f for f in result["findings"] if f["severity"] in ("error", "warning")}
        optional = {code for code, (severity, _) in expected.items() if severity is None}
        assert set(expected) - optional <= set(harmful) <= set(expected), (
            name,
            [(f["code"], f["message"][:150]) for f in harmful.values()],
        )
        for code, (severity, positions) in expected.items():
            if code not in harmful:
                continue  # an optional one, absent
            assert harmful[code]["severity"] == (severity or "warning"), (name, code)
            named = set(harmful[code]["positions"])
            if isinstance(positions, tuple):  # (must be named, may be named)
                assert positions[0] <= named <= positions[1], (name, code, sorted(named))
            elif positions is not None:
                assert sorted(named) == sorted(positions), (name, code)
        for f in result["findings"]:
            assert not re.search(r"`\d+`", f["message"]), f["message"]  # tokens as text, never a bare id


PARAGRAPHS_SYSTEM = [{"role": "system", "content": "You are terse.\n\nAnswer in one line."}, *MULTI]
PARAGRAPHS_USER = [
    {"role": "user", "content": "Two things.\n\nWhat is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
]


def test_a_trained_system_prompt_is_trains_on_system_where_the_template_gives_it_no_turn(
    family, capsys, tmp_path
):
    """Gemma-3 folds the system prompt into the first user turn, DeepSeek-V3 writes it before the first header:
    trained, it is still `trains-on-system` (not the user's words, not markup), also when it has paragraphs;
    a first user message with paragraphs and no system prompt, trained, stays `trains-on-user`."""
    _name, tokenizer, folder, _chats = family
    rows, expected = [], []
    for chat, role in ((PARAGRAPHS_SYSTEM, MaskReason.SYSTEM), (PARAGRAPHS_SYSTEM, MaskReason.USER)):
        sample = build_sample(SampleSpec(chat=tuple(chat)), tokenizer)
        positions = _positions(sample, role)
        if not positions:
            continue  # Mistral-Nemo renders no system prompt in a chat that ends with a reply
        ids, labels = sample.input_ids.tolist(), sample.labels.tolist()
        rows.append(
            {"input_ids": ids, "labels": [ids[j] if j in positions else lab for j, lab in enumerate(labels)]}
        )
        expected.append((f"trains-on-{role.name.lower()}", positions))
    sample = build_sample(SampleSpec(chat=tuple(PARAGRAPHS_USER)), tokenizer)
    ids, labels = sample.input_ids.tolist(), sample.labels.tolist()
    user = _positions(sample, MaskReason.USER)
    rows.append({"input_ids": ids, "labels": [ids[j] if j in user else lab for j, lab in enumerate(labels)]})
    expected.append(("trains-on-user", user))
    _code, payload = lint(capsys, tmp_path, folder, rows)
    found = [
        [(f["code"], sorted(f["positions"])) for f in r["findings"] if f["severity"] in ("error", "warning")]
        for r in payload["results"]
    ]
    assert found == [[(code, positions)] for code, positions in expected]


@pytest.mark.parametrize(
    ("name", "replies"),
    [
        ("mistral_nemo", ["Paris.</s>", "Rome, I think.</s>"]),
        ("llama2_chat", [" Paris. </s>", " Rome, I think. </s>"]),
    ],
)
def test_inst_templates_train_the_reply_and_its_end_not_the_inst_before_it(name, replies):
    """`[INST] … [/INST] reply </s>` has no generation header: the `[/INST]` closes the user turn (markup), also
    when a system prompt makes the conversation so far render otherwise on its own (Mistral-Nemo)."""
    tokenizer = rt.chat_tokenizer(name)
    sample = build_sample(SampleSpec(chat=tuple(SYSTEM)), tokenizer)
    layout = derive(tokenizer, SYSTEM)
    assert list(layout.ids) == sample.input_ids.tolist()
    text = layout.rendered
    spans = [(layout.offsets[r[0]][0], layout.offsets[r[-1]][1]) for r in _replies(sample)]
    assert [text[a:b] for a, b in spans] == replies
    inst = [m.start() for m in re.finditer(re.escape("[/INST]"), text)]
    at_inst = [j for j, (a, b) in enumerate(layout.offsets) if any(a < i + 7 and i < b for i in inst)]
    assert len(inst) == 2 and at_inst and not (sample.labels[at_inst] != IGNORE_INDEX).any()
    if name == "mistral_nemo":  # it writes a system prompt into a last user turn only: none here, and says so
        assert "message 0 (system): the template did not render it (nothing trains on it)" in sample.notes
