"""Chat masks on every mainstream template family (tests/templates.py): the documented convention, the flags,
and agreement with `{% generation %}` masks computed by transformers itself."""

from __future__ import annotations

import pytest
import templates as tpl
from templates import FAMILIES

from tokstep.engine.chat.masks import derive
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.sample import IGNORE_INDEX, MaskReason
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.lints.sample_lints import lint_sample


def supervised_runs(layout, reasons=None) -> list[str]:
    """The rendered text under each run of trained tokens (offsets merged, so pieces are never doubled)."""
    out, cur = [], None
    for (s, e), r in zip(layout.offsets, reasons or layout.reasons, strict=True):
        if r.counted:
            cur = (s, e) if cur is None else (min(cur[0], s), max(cur[1], e))
        elif cur is not None:
            out.append(layout.rendered[cur[0] : cur[1]])
            cur = None
    if cur is not None:
        out.append(layout.rendered[cur[0] : cur[1]])
    return out


TOOL_JSON = '{"name": "get_weather", "%s": {"city": "Paris"}}'

# tokstep's mask for each family's multi-turn chat: the rendered text of each supervised run.
EXPECTED = {
    "llama2": [" Paris. </s>", " Rome, I think. </s>"],
    "llama3": ["Paris.<|eot_id|>", "Rome, I think.<|eot_id|>"],
    "mistral": ["Paris.</s>", "Rome, I think.</s>"],
    "qwen2.5": ["Paris.<|im_end|>", "Rome, I think.<|im_end|>"],
    "qwen3": ["Paris.<|im_end|>", "<think>\n\n</think>\n\nRome, I think.<|im_end|>"],
    "phi3": ["Paris.<|end|>", "Rome, I think.<|end|>"],
    "phi4": ["Paris.<|im_end|>", "Rome, I think.<|im_end|>"],
    "gemma2": ["Paris.<end_of_turn>", "Rome, I think.<end_of_turn>"],
    "gemma3": ["Paris.<end_of_turn>", "Rome, I think.<end_of_turn>"],
    "deepseek-r1": ["Paris.<｜end▁of▁sentence｜>", "Rome, I think.<｜end▁of▁sentence｜>"],
}
EXPECTED_TOOLS = {
    "llama3": [TOOL_JSON % "parameters" + "<|eot_id|>", "It is 21 C and sunny.<|eot_id|>"],
    "mistral": ["[TOOL_CALLS][" + TOOL_JSON % "arguments" + "]</s>", "It is 21 C and sunny.</s>"],
    "qwen2.5": [
        "<tool_call>\n" + TOOL_JSON % "arguments" + "\n</tool_call><|im_end|>",
        "It is 21 C and sunny.<|im_end|>",
    ],
    "qwen3": [
        "<tool_call>\n" + TOOL_JSON % "arguments" + "\n</tool_call><|im_end|>",
        "<think>\n\n</think>\n\nIt is 21 C and sunny.<|im_end|>",
    ],
    "deepseek-r1": [
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>',
        "It is 21 C and sunny.<｜end▁of▁sentence｜>",
    ],
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_gives_the_documented_mask_and_reasons(name):
    family = FAMILIES[name]
    tokenizer = family.tokenizer()
    layout = derive(tokenizer, list(family.chat))
    assert supervised_runs(layout) == EXPECTED[name]
    assert layout.ids == tuple(
        tokenizer.apply_chat_template(list(family.chat), tokenize=True, return_dict=True)["input_ids"]
    )
    reasons = set(layout.reasons)
    assert MaskReason.USER in reasons and MaskReason.TEMPLATE in reasons
    has_system = name not in ("gemma2",)  # Gemma-2 has no system role; Qwen2.5's is injected
    assert (MaskReason.SYSTEM in reasons) == has_system
    # the user's words are never trained, and every user/system token's text is in a user/system message
    for (s, e), r in zip(layout.offsets, layout.reasons, strict=True):
        if r in (MaskReason.USER, MaskReason.SYSTEM) and e > s:
            text = layout.rendered[s:e].strip()
            pool = " ".join(str(m["content"]) for m in family.chat if m["role"] != "assistant")
            assert not text or text in pool or text in tpl._QWEN_DEFAULT_SYSTEM


@pytest.mark.parametrize("name", sorted(EXPECTED_TOOLS))
def test_tool_calls_are_trained_and_tool_results_are_a_tool_turn(name):
    family = FAMILIES[name]
    layout = derive(family.tokenizer(), list(family.tool_chat))
    assert supervised_runs(layout) == EXPECTED_TOOLS[name]
    tool_text = "".join(
        layout.rendered[s:e]
        for (s, e), r in zip(layout.offsets, layout.reasons, strict=False)
        if r is MaskReason.TOOL
    )
    assert "21 C, sunny" in tool_text
    # the wrapper of a tool call is template-inserted (trained by default); the call's own name/args are content
    assert MaskReason.INSERTED_TRAINED in layout.reasons


def test_qwen25_default_system_prompt_is_a_system_turn():
    layout = derive(FAMILIES["qwen2.5"].tokenizer(), list(tpl.TURNS))
    assert layout.default_system is not None
    s, e = layout.default_system
    assert layout.rendered[s:e] == tpl._QWEN_DEFAULT_SYSTEM
    system_text = "".join(
        layout.rendered[a:b]
        for (a, b), r in zip(layout.offsets, layout.reasons, strict=False)
        if r is MaskReason.SYSTEM
    )
    assert tpl._QWEN_DEFAULT_SYSTEM in system_text


def test_qwen3_history_rewrite_and_reasoning_content():
    tokenizer = FAMILIES["qwen3"].tokenizer()
    layout = derive(tokenizer, list(tpl.THINK_LAST))
    # earlier reasoning is dropped by the template (said in a note); the last turn's reasoning is content
    assert "France: Paris." not in layout.rendered
    assert any("did not render" in n for n in layout.notes)
    assert supervised_runs(layout) == [
        "Paris.<|im_end|>",
        "<think>\nItaly: Rome.\n</think>\n\nRome, I think.<|im_end|>",
    ]
    inserted = "".join(
        layout.rendered[s:e]
        for (s, e), r in zip(layout.offsets, layout.reasons, strict=False)
        if r is MaskReason.INSERTED_TRAINED
    )
    assert "Italy" not in inserted and "<think>" in inserted and "</think>" in inserted


def test_flags_mask_the_end_of_turn_and_the_inserted_tokens():
    tokenizer = FAMILIES["qwen3"].tokenizer()
    chat = list(tpl.THINK_CHAT)
    no_eot = derive(tokenizer, chat, eot="mask")
    assert supervised_runs(no_eot) == ["Paris.", "<think>\n\n</think>\n\nRome, I think."]
    assert no_eot.reasons.count(MaskReason.END_OF_TURN) == 2
    no_inserted = derive(tokenizer, chat, inserted="mask")
    assert supervised_runs(no_inserted) == ["Paris.<|im_end|>", "Rome, I think.<|im_end|>"]
    assert (
        MaskReason.INSERTED in no_inserted.reasons and MaskReason.INSERTED_TRAINED not in no_inserted.reasons
    )
    sample = build_sample(SampleSpec(chat=tuple(chat), eot="mask", inserted="mask"), tokenizer)
    trained = [int(i) for i, lab in zip(sample.input_ids, sample.labels, strict=False) if lab != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "Paris.Rome, I think."


@pytest.mark.parametrize("name", ["chatml", "llama3", "qwen2.5", "gemma3", "phi3"])
def test_masks_equal_transformers_generation_mask(name):
    """tokstep's located mask on the plain template equals the mask transformers computes from the same template
    with {% generation %} markers; and with the markers, tokstep uses exactly that mask."""
    import copy

    import tiny

    if name in ("chatml", "llama3"):
        tokenizer = copy.deepcopy(tiny.byte_level_bpe())
        plain = tiny.CHATML_NO_GENERATION if name == "chatml" else tiny.LLAMA3_NO_GENERATION
        marked = tiny.CHATML if name == "chatml" else tiny.LLAMA3
        chats = [list(tiny.CHAT)]
    else:
        family = FAMILIES[name]
        tokenizer = copy.deepcopy(family.tokenizer())
        plain, marked = family.template, tpl.GENERATION_VARIANTS[name]
        chats = [list(family.chat)] + ([list(family.tool_chat)] if family.tool_chat else [])
    for chat in chats:
        tokenizer.chat_template = marked
        out = tokenizer.apply_chat_template(
            chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        theirs = [bool(m) for m in out["assistant_masks"]]
        assert sum(theirs) > 4
        via_mask = derive(tokenizer, chat)
        assert via_mask.method == "generation mask"
        assert [r.counted for r in via_mask.reasons][1:] == theirs[1:]
        tokenizer.chat_template = plain
        located = derive(tokenizer, chat)
        assert located.method == "located content"
        assert list(located.ids) == list(out["input_ids"])
        assert [r.counted for r in located.reasons][1:] == theirs[1:]


def test_generation_mask_that_trains_nothing_is_a_lint_and_falls_back():
    import copy

    import tiny

    tokenizer = copy.deepcopy(tiny.byte_level_bpe())
    # the markers wrap nothing (a real mistake: the block closed before the content)
    tokenizer.chat_template = tiny.CHATML.replace(
        "{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}",
        "{% generation %}{% endgeneration %}{{ m['content'] }}<|im_end|>",
    )
    chat = list(tiny.CHAT)
    out = tokenizer.apply_chat_template(
        chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert not any(out["assistant_masks"])
    spec = SampleSpec(chat=tuple(chat))
    sample = build_sample(spec, tokenizer)
    assert sample.num_supervised > 0  # located instead
    codes = {f.code for f in lint_sample(tokenizer, sample, spec)}
    assert "generation-mask-empty" in codes


@pytest.mark.parametrize("name", list(FAMILIES))
def test_clean_rows_of_every_family_have_no_finding(name):
    family = FAMILIES[name]
    tokenizer = family.tokenizer()
    chats = [family.chat]
    if family.tool_chat and name != "qwen3":  # qwen3's last turn gets an empty think block: a finding (below)
        chats.append(family.tool_chat)
    if name in ("qwen3", "deepseek-r1"):
        chats = [tpl.THINK_LAST, *chats[1:]]  # the last answer has its own reasoning: nothing inserted
    if name == "qwen2.5":
        chats.append(tpl.CHAT)
    for chat in chats:
        spec = SampleSpec(chat=tuple(chat))
        sample = build_sample(spec, tokenizer)
        findings = lint_sample(tokenizer, sample, spec)
        # missing-bos is info-level for templates that never write BOS (ChatML); nothing else may fire
        assert [(f.code, f.message) for f in findings if f.code != "missing-bos"] == [], name
        assert all(f.severity == "info" for f in findings)


def test_qwen3_inserted_think_block_is_a_lint():
    tokenizer = FAMILIES["qwen3"].tokenizer()
    spec = SampleSpec(chat=tpl.THINK_CHAT)
    sample = build_sample(spec, tokenizer)
    found = [f for f in lint_sample(tokenizer, sample, spec) if f.code == "template-inserted"]
    assert len(found) == 1 and "<think>" in found[0].message and "trained" in found[0].message
    inserted = [tokenizer.convert_ids_to_tokens(int(sample.input_ids[p])) for p in found[0].positions]
    assert "<think>" in inserted and "</think>" in inserted


def test_template_refusal_and_bad_content_are_one_line_errors():
    gemma2 = FAMILIES["gemma2"].tokenizer()
    with pytest.raises(TokstepError, match="refused this chat: System role not supported"):
        derive(gemma2, list(tpl.CHAT))
    qwen = FAMILIES["qwen2.5"].tokenizer()
    for bad, words in ((42, "not a number"), (None, "not null")):
        chat = [{"role": "user", "content": bad}, {"role": "assistant", "content": "x"}]
        with pytest.raises(
            TokstepError, match=f"chat message 0: content must be a string or a list of text parts, {words}"
        ):
            derive(qwen, chat)
    parts = [
        {"role": "user", "content": [{"type": "image", "url": "x"}]},
        {"role": "assistant", "content": "x"},
    ]
    with pytest.raises(TokstepError, match="only text parts"):
        derive(qwen, parts)


def test_openai_content_parts_are_accepted_where_the_template_handles_them():
    gemma3 = FAMILIES["gemma3"].tokenizer()
    layout = derive(gemma3, list(FAMILIES["gemma3"].chat))  # the first user message is a list of parts
    assert "What is the capital of France?" in layout.rendered
    # a template that takes strings only: the text parts are joined (and a note says so)
    qwen = FAMILIES["qwen2.5"].tokenizer()
    chat = [
        {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
    ]
    layout = derive(qwen, chat)
    assert "user\nHello there<|im_end|>" in layout.rendered
    assert supervised_runs(layout) == ["Hi.<|im_end|>"]
    assert any("content parts joined" in n for n in layout.notes)


def test_every_mask_reason_has_a_colour_in_the_context_strip():
    from tokstep.tui.palette import REASON_COLOURS

    assert set(REASON_COLOURS) == {r.value for r in MaskReason}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_tokstep_lint_on_every_family_exits_0(name, tmp_path, capsys):
    import json

    from tokstep.tui.cli.main import main

    family = FAMILIES[name]
    family.tokenizer().save_pretrained(tmp_path / "tok")
    chats = [family.chat] + ([family.tool_chat] if family.tool_chat else [])
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"messages": list(c)}) + "\n" for c in chats), encoding="utf-8")
    assert main(["lint", str(rows), "--model", str(tmp_path / "tok"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["rows"] == len(chats) and payload["counts"]["error"] == 0


@pytest.mark.parametrize("name", ["qwen3", "phi3"])  # the two families prefix rendering refused
def test_report_on_a_chat_of_the_refused_families_exits_0(name, tmp_path, capsys):
    import json

    import tiny

    from tokstep.tui.cli.main import main

    family = FAMILIES[name]
    folder = tiny.save_model_folder(tmp_path / "m", family.tokenizer(), max_positions=256)
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(list(family.chat)), encoding="utf-8")
    assert main(["report", "--model", folder, "--chat", str(chat)]) == 0
    out = capsys.readouterr().out
    assert "✓ match" in out and "supervised tokens" in out


def test_a_turn_without_end_of_turn_does_not_borrow_the_next_one():
    import tiny as tiny_tokenizers

    template = tiny_tokenizers.CHATML_NO_END.replace("{%- generation -%}", "").replace(
        "{%- endgeneration -%}", ""
    )
    tokenizer = tiny_tokenizers.byte_bpe(template=template)
    chat = list(tpl.CHAT)
    layout = derive(tokenizer, chat)
    assert supervised_runs(layout) == ["Paris.", "Rome, I think."]
    assert MaskReason.INSERTED_TRAINED not in layout.reasons
    user = "".join(
        layout.rendered[s:e]
        for (s, e), r in zip(layout.offsets, layout.reasons, strict=True)
        if r is MaskReason.USER
    )
    assert "And of Italy?" in user
    spec = SampleSpec(chat=tuple(chat))
    findings = lint_sample(tokenizer, build_sample(spec, tokenizer), spec)
    assert "no-eos" in {f.code for f in findings}


def test_cli_flags_reach_the_chat_masks(tmp_path, capsys):
    import json

    from tokstep.tui.cli.main import main

    FAMILIES["qwen3"].tokenizer().save_pretrained(tmp_path / "tok")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"messages": list(tpl.THINK_CHAT)}) + "\n", encoding="utf-8")
    for flags in ([], ["--inserted", "mask"], ["--eot", "mask", "--inserted", "mask"]):
        # exit 0: with --eot mask the end-of-turn is masked on purpose, not an `eos-masked` error
        assert main(["lint", str(rows), "--model", str(tmp_path / "tok"), "--json", *flags]) == 0
        payload = json.loads(capsys.readouterr().out)
        assert len(payload["results"]) == 1
        message = next(f["message"] for f in payload["findings"] if f["code"] == "template-inserted")
        assert ("masked" in message) == bool(flags)


def test_a_header_only_the_last_turn_has_is_not_borrowed_by_earlier_turns():
    """Qwen3 asked for no thinking: its generation header carries an empty think block that only the last
    turn's render has; earlier turns must still be found (each header is looked for before its content), and
    the last turn's think block is then part of the prompt the model is given: template, not trained."""
    import copy

    tokenizer = copy.deepcopy(FAMILIES["qwen3"].tokenizer())
    tokenizer.chat_template = tpl.QWEN3.replace(
        "{%- if enable_thinking is defined and enable_thinking is false -%}", "{%- if true -%}"
    )
    layout = derive(tokenizer, list(tpl.THINK_CHAT))
    assert supervised_runs(layout) == ["Paris.<|im_end|>", "Rome, I think.<|im_end|>"]
    assert not any(turn.dropped for turn in layout.turns if turn.index == 4)
    assert MaskReason.INSERTED_TRAINED not in layout.reasons


def test_report_says_how_many_trained_tokens_the_template_inserted(tmp_path, capsys):
    import json

    import tiny

    from tokstep.tui.cli.main import main

    folder = tiny.save_model_folder(tmp_path / "m", FAMILIES["qwen3"].tokenizer(), max_positions=256)
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(list(tpl.THINK_CHAT)), encoding="utf-8")
    assert main(["report", "--model", folder, "--chat", str(chat)]) == 0
    out = capsys.readouterr().out
    assert "6 template-inserted, trained" in out and "info template-inserted" in out
    assert main(["report", "--model", folder, "--chat", str(chat), "--inserted", "mask"]) == 0
    out = capsys.readouterr().out
    assert "6 template-inserted" in out.split("masked (-100):")[1].splitlines()[0]
