"""Labels a trainer built, checked against the chat structure recovered from the ids (engine.chat.structure).

Six template families (tests/label_templates.py), each with a clean row and the label bugs people ship:
supervising the user turn (a pattern that matched the user header), an off-by-one span, a masked
end-of-turn, a supervised header, labels built with another template. The reference masks and positions
are built from character offsets and each family's known end-of-turn text, not from engine.chat.structure.
"""

from __future__ import annotations

import numpy as np
import pytest
from label_templates import (
    BUG_LINT,
    FAMILIES,
    bug_rows,
    chats,
    correct,
    render_row,
    tokenizer_for,
)
from templates import QWEN3

from tokstep.engine.chat.structure import ROLES, Part, recover_layout
from tokstep.engine.inputs.sample import MaskReason
from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.lints.sample_lints import lint_spec

NAMES = list(FAMILIES)


@pytest.fixture(scope="module")
def tokenizers():
    return {name: tokenizer_for(name) for name in NAMES}


def lint_ids(tokenizer, ids, labels, **extra):
    return lint_spec(tokenizer, SampleSpec(ids={"input_ids": list(ids), "labels": list(labels), **extra}))


@pytest.mark.parametrize("name", NAMES)
def test_recovered_mask_equals_the_hand_built_one(tokenizers, name):
    tokenizer = tokenizers[name]
    row = render_row(tokenizer, name)
    layout = recover_layout(tokenizer, row.ids)
    assert layout is not None
    assert set(np.flatnonzero(layout.expected()).tolist()) == correct(row)
    user_words = {i for start, end, _ in row.user for i in row.tokens_in(start, end)}
    assert all(layout.role(i) == "user" and layout.parts[i] == Part.CONTENT for i in user_words)
    assert [t.role for t in layout.turns if t.role == "assistant"] == ["assistant", "assistant"]


@pytest.mark.parametrize("name", NAMES)
def test_clean_rows_of_every_shape_have_no_finding(tokenizers, name):
    """1-4 exchanges, with and without a system message, with and without right padding (attention_mask 0)."""
    tokenizer = tokenizers[name]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for chat in chats(name):
        row = render_row(tokenizer, name, chat=chat)
        labels = row.labels(correct(row))
        for padding in (0, 5):
            ids = row.ids + [pad] * padding
            mask = {"attention_mask": [1] * len(row.ids) + [0] * padding} if padding else {}
            sample, findings = lint_ids(tokenizer, ids, labels + [-100] * padding, **mask)
            assert sample.layout is not None
            assert [f for f in findings if f.severity != "info"] == [], (len(chat), padding)


@pytest.mark.parametrize("name", NAMES)
def test_clean_row_has_no_finding_and_roles_as_mask_reasons(tokenizers, name):
    tokenizer = tokenizers[name]
    ids, labels, _ = bug_rows(tokenizer, name)["clean"]
    sample, findings = lint_ids(tokenizer, ids, labels)
    assert findings == []
    reasons = set(sample.mask_reasons)
    assert MaskReason.USER in reasons and MaskReason.TEMPLATE in reasons
    assert MaskReason.GIVEN not in reasons  # every -100 is explained by the structure


def test_the_bugs_map_to_these_lints():
    assert BUG_LINT == {
        "user-header": "trains-on-user",
        "off-by-one": "mask-off-by-one",
        "eot-masked": "eos-masked",
        "header": "trains-on-markup",
        "other-template": "labels-other-template",
    }


@pytest.mark.parametrize("bug", list(BUG_LINT))
@pytest.mark.parametrize("name", NAMES)
def test_each_bug_is_found_at_its_positions(tokenizers, name, bug):
    tokenizer = tokenizers[name]
    ids, labels, want = bug_rows(tokenizer, name)[bug]
    _, findings = lint_ids(tokenizer, ids, labels)
    found = [f for f in findings if f.code == BUG_LINT[bug]]
    assert len(found) == 1, findings
    assert found[0].severity == "error"
    assert set(found[0].positions) == want and want
    if bug != "other-template":
        assert found[0].convention and "convention" not in found[0].message  # stated once per run


@pytest.mark.parametrize("name", NAMES)
def test_user_header_bug_also_says_no_reply_is_trained(tokenizers, name):
    tokenizer = tokenizers[name]
    ids, labels, _ = bug_rows(tokenizer, name)["user-header"]
    _, findings = lint_ids(tokenizer, ids, labels)
    untrained = [f for f in findings if f.code == "assistant-not-trained"]
    assert [f.severity for f in untrained] == ["error"]
    assert "pad-trained" not in {f.code for f in findings}  # the user's end-of-turn is not padding


def test_masked_end_of_turn_hint_fits_the_tokenizer(tokenizers):
    chatml = tokenizers["chatml"]  # pad <|endoftext|> != end-of-turn <|im_end|>
    ids, labels, _ = bug_rows(chatml, "chatml")["eot-masked"]
    (found,) = [f for f in lint_ids(chatml, ids, labels)[1] if f.code == "eos-masked"]
    assert "pad == eos" not in found.message and "`<|endoftext|>`, not `<|im_end|>`" in found.message
    llama3 = tokenizers["llama3"]  # pad == eos == <|eot_id|>
    ids, labels, _ = bug_rows(llama3, "llama3")["eot-masked"]
    (found,) = [f for f in lint_ids(llama3, ids, labels)[1] if f.code == "eos-masked"]
    assert "pad == eos" in found.message
    mistral = tokenizers["mistral"]  # no pad token at all
    ids, labels, _ = bug_rows(mistral, "mistral")["eot-masked"]
    (found,) = [f for f in lint_ids(mistral, ids, labels)[1] if f.code == "eos-masked"]
    assert "no pad token" in found.message


def test_system_and_tool_turns_trained(tokenizers):
    tokenizer = tokenizers["llama3"]
    chat = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is the weather?"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "tool", "content": "sunny and yes"},
        {"role": "assistant", "content": "The weather is sunny."},
    ]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]

    def tokens_of(text):
        start = rendered.index(text)
        return {i for i, (s, e) in enumerate(offsets) if s < start + len(text) and e > start}

    system, tool = tokens_of("Answer briefly."), tokens_of("sunny and yes")
    layout = recover_layout(tokenizer, ids)
    assert {layout.role(i) for i in system} == {"system"} and {layout.role(i) for i in tool} == {"tool"}
    labels = [t if (layout.expected()[i] or i in system | tool) else -100 for i, t in enumerate(ids)]
    _, findings = lint_ids(tokenizer, ids, labels)
    by_code = {f.code: set(f.positions) for f in findings}
    assert by_code == {"trains-on-system": system, "trains-on-tool": tool}


def test_training_only_the_last_reply_is_info_and_the_newline_after_im_end_a_warning(tokenizers):
    tokenizer = tokenizers["chatml"]
    row = render_row(tokenizer, "chatml")
    last_start, _, last_end = row.assistant[-1]
    last = set(row.tokens_in(last_start, last_end))
    _, findings = lint_ids(tokenizer, row.ids, row.labels(last))
    assert [(f.code, f.severity) for f in findings] == [("assistant-not-trained", "info")]
    newline = {max(row.tokens_in(s, e)) + 1 for s, _, e in row.assistant}  # TRL-style: <|im_end|> then \n
    _, findings = lint_ids(tokenizer, row.ids, row.labels(correct(row) | newline))
    assert [(f.code, f.severity, set(f.positions)) for f in findings] == [
        ("trains-on-markup", "info", newline)  # at most info: harmless, and what TRL trains for ChatML
    ]


def test_think_block_the_template_inserts_is_neither_required_nor_flagged(tokenizers):
    tokenizer = tokenizer_for("chatml")
    tokenizer.chat_template = QWEN3
    chat = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
        {"role": "user", "content": "And Germany?"},
        {"role": "assistant", "content": "Berlin is the capital of Germany."},
    ]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    layout = recover_layout(tokenizer, ids)
    think = [i for i, t in enumerate(ids) if t in tokenizer.convert_tokens_to_ids(["<think>", "</think>"])]
    assert len(think) == 2 and all(layout.parts[i] == Part.INSERTED for i in think)
    assert layout.role(think[0]) == "assistant"
    expected = layout.expected()
    for trained_think in (False, True):
        labels = [
            t if expected[i] or (trained_think and layout.parts[i] == Part.INSERTED) else -100
            for i, t in enumerate(ids)
        ]
        assert lint_ids(tokenizer, ids, labels)[1] == []


def test_truncated_reply_is_no_eos_and_truncated(tokenizers):
    tokenizer = tokenizers["chatml"]
    row = render_row(tokenizer, "chatml")
    cut = row.tokens_in(*row.assistant[-1][:2])[-3]  # inside the last reply's last word
    ids = row.ids[: cut + 1]
    labels = row.labels(correct(row))[: cut + 1]
    text = tokenizer.decode(ids[-1:])
    assert text[-1:].isalnum()
    _, findings = lint_ids(tokenizer, ids, labels)
    by_code = {f.code: f for f in findings}
    assert set(by_code) == {"no-eos", "truncated?"}
    assert by_code["truncated?"].severity == "warning" and by_code["truncated?"].positions == (cut,)
    assert "truncated?" in by_code["truncated?"].message


def test_truncated_answer_without_structure(tokenizers):
    from tiny import byte_bpe

    tokenizer = byte_bpe(template=None)
    spec = SampleSpec(prompt="The capital of France is", answer=" Paris and the capi", eos="none")
    sample, findings = lint_spec(tokenizer, spec)
    assert {f.code for f in findings} >= {"no-eos", "truncated?"}
    complete = SampleSpec(prompt="The capital of France is", answer=" Paris.", eos="none")
    assert "truncated?" not in {f.code for f in lint_spec(tokenizer, complete)[1]}


def test_ids_from_another_template_get_no_structure(tokenizers):
    """Llama-3 ids under a ChatML tokenizer: no turn found, so no structural finding (and no crash)."""
    llama3_row = render_row(tokenizers["llama3"], "llama3")
    assert recover_layout(tokenizers["chatml"], llama3_row.ids) is None
    _, findings = lint_ids(tokenizers["chatml"], llama3_row.ids, llama3_row.labels(correct(llama3_row)))
    assert {f.code for f in findings} == {"no-eos"}  # <|eot_id|> is not this tokenizer's end: fair
    plain = tokenizers["chatml"]("the weather is sunny and the answer is yes")["input_ids"]
    assert recover_layout(tokenizers["chatml"], plain) is None


def test_turns_are_well_formed_in_every_family(tokenizers):
    """Every token of a clean row gets a role or is markup outside turns; headers precede their content."""
    for name in NAMES:
        tokenizer = tokenizers[name]
        row = render_row(tokenizer, name)
        layout = recover_layout(tokenizer, row.ids)
        for turn in layout.turns:
            assert turn.start <= turn.content_start < turn.content_end <= turn.end
            assert {layout.role(i) for i in turn.content} == {turn.role}
        assert set(layout.roles.tolist()) <= {-1, *range(len(ROLES))}


@pytest.mark.parametrize("fixture", ["bpe_tokenizer", "sp_tokenizer"])
def test_expected_mask_equals_the_templates_own_generation_mask(fixture, request):
    """Templates with {% generation %}: the recovered mask is what transformers' assistant mask says."""
    tokenizer = request.getfixturevalue(fixture)
    chat = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The answer is Paris."},
        {"role": "user", "content": "And the dog?"},
        {"role": "assistant", "content": "The dog sat on the log."},
    ]
    out = tokenizer.apply_chat_template(
        chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    layout = recover_layout(tokenizer, out["input_ids"])
    assert layout is not None
    assert layout.expected().astype(int).tolist() == list(out["assistant_masks"])
    labels = [t if m else -100 for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True)]
    assert [f for f in lint_ids(tokenizer, out["input_ids"], labels)[1] if f.severity != "info"] == []


def test_bundled_model_rows_train_on_the_user_turn_is_caught():
    from tokstep.engine.defaults import DEFAULT_MODEL
    from tokstep.engine.model.loading import load_tokenizer

    tokenizer = load_tokenizer(str(DEFAULT_MODEL))
    chat = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
    ]
    out = tokenizer.apply_chat_template(
        chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    start = ids.index(tokenizer.convert_tokens_to_ids("<|im_start|>")) + 3  # after `<|im_start|>user\n`
    end = ids.index(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    wrong = [t if start <= i < end else -100 for i, t in enumerate(ids)]
    _, findings = lint_ids(tokenizer, ids, wrong)
    (found,) = [f for f in findings if f.code == "trains-on-user"]
    assert found.positions == tuple(range(start, end))
    clean = lint_ids(tokenizer, ids, [t if m else -100 for t, m in zip(ids, mask, strict=True)])[1]
    assert [(f.code, f.severity) for f in clean] == [("missing-bos", "info")]  # as for chats from messages


def test_a_mask_computed_on_another_templates_rendering_is_named(tokenizers):
    """Llama-3 ids, mask positions from the ChatML rendering of the same chat (labels copy the ids there)."""
    from label_templates import mask_from_other_template

    ids, labels, wrong = mask_from_other_template(tokenizers["llama3"], "llama3")
    _, findings = lint_ids(tokenizers["llama3"], ids, labels)
    assert [f.code for f in findings] == ["labels-other-template"]
    assert set(findings[0].positions) <= wrong and "another rendering" in findings[0].message


def test_ids_with_no_mask_at_all_is_one_error(tokenizers):
    """labels = input_ids (full-sequence training on a transcript): an error (severity by training harm) naming
    the non-assistant words."""
    tokenizer = tokenizers["chatml"]
    row = render_row(tokenizer, "chatml")
    _, findings = lint_ids(tokenizer, row.ids, row.ids)
    assert [(f.code, f.severity) for f in findings] == [("trains-on-user", "error")]
    user_words = {i for start, end, _ in row.user for i in row.tokens_in(start, end)}
    assert user_words <= set(findings[0].positions) and "nothing is masked" in findings[0].message


def test_lint_sample_recovers_the_turns_of_ids_built_elsewhere(tokenizers):
    """A Sample made by from_ids (as batch/scan readers do) is checked against the structure too."""
    from tokstep.engine.inputs.spec import from_ids
    from tokstep.engine.lints.sample_lints import lint_sample

    tokenizer = tokenizers["gemma"]
    ids, labels, want = bug_rows(tokenizer, "gemma")["user-header"]
    sample = from_ids({"input_ids": ids, "labels": labels}, pad_id=tokenizer.pad_token_id)
    assert sample.layout is None
    (found,) = [f for f in lint_sample(tokenizer, sample) if f.code == "trains-on-user"]
    assert set(found.positions) == want


@pytest.mark.parametrize("name", NAMES)
def test_eot_mask_convention_on_ids_rows(tokenizers, name):
    """--eot mask: a trainer that masks the end-of-turn on purpose says so and gets no finding; training it
    is then the finding, and an off-by-one span is still one. The findings name the convention compared."""
    tokenizer = tokenizers[name]
    rows = bug_rows(tokenizer, name)
    ids, masked_eot, ends = rows["eot-masked"]
    mask = {"eot": "mask"}
    sample, findings = lint_spec(tokenizer, SampleSpec(ids={"input_ids": ids, "labels": masked_eot}, **mask))
    assert findings == [] and sample.layout.eot == "mask"
    pad_ends = {i for i in ends if ids[i] == tokenizer.pad_token_id}  # Llama-3: pad is <|eot_id|>: padding
    assert {sample.mask_reasons[i] for i in ends - pad_ends} == {MaskReason.END_OF_TURN} or ends == pad_ends
    _, findings = lint_ids(tokenizer, ids, masked_eot)  # the default convention trains it
    assert [f.code for f in findings] == ["eos-masked"] and "end-of-turn trained" in findings[0].convention
    clean_ids, clean, _ = rows["clean"]
    _, findings = lint_spec(tokenizer, SampleSpec(ids={"input_ids": clean_ids, "labels": clean}, **mask))
    assert [(f.code, f.severity, set(f.positions)) for f in findings] == [
        ("trains-on-markup", "warning", ends)
    ]
    assert "--eot mask" in findings[0].message and "end-of-turn masked (--eot mask)" in findings[0].convention
    shifted = [-100] + [
        t if label != -100 else -100 for t, label in zip(ids[1:], masked_eot[:-1], strict=True)
    ]
    _, findings = lint_spec(tokenizer, SampleSpec(ids={"input_ids": ids, "labels": shifted}, **mask))
    assert "mask-off-by-one" in [f.code for f in findings]
