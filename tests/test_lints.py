"""Every lint fires on a sample that really has its problem, and stays quiet on a clean one."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import CHATML_NO_END, byte_bpe, gpt2_style, llama3_style, sentencepiece_handmade
from tokenizers import normalizers

from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.lints.catalogue import LINTS, WHITESPACE_RUN
from tokstep.engine.lints.sample_lints import lint_sample, lint_spec

CHAT = (
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris"},
)


@pytest.fixture(scope="module")
def chatml():
    """Byte-level BPE that adds <s> by default, ChatML template without <s> (like tokstep-mini)."""
    return byte_bpe(adds_bos=True)


@pytest.fixture(scope="module")
def gpt2():
    return gpt2_style()


def codes(findings):
    return {f.code for f in findings}


def only(findings, code):
    found = [f for f in findings if f.code == code]
    assert len(found) == 1, findings
    return found[0]


def lint(tokenizer, **spec):
    sample, findings = lint_spec(tokenizer, SampleSpec(**spec))
    assert sample is not None, findings
    return sample, findings


def test_clean_prompt_answer_has_no_findings(chatml):
    _, findings = lint(chatml, prompt="The capital of France is", answer=" Paris")
    assert findings == []


def test_clean_chat_has_no_warnings_or_errors(chatml):
    _, findings = lint(chatml, chat=CHAT)
    assert all(f.severity == "info" for f in findings), findings


def test_double_bos_when_llama3_rendered_text_is_tokenized_with_special_tokens():
    tokenizer = llama3_style()
    rendered = tokenizer.apply_chat_template(list(CHAT), tokenize=False)  # starts with <|begin_of_text|>
    sample, findings = lint(tokenizer, text=rendered)  # tokenizer(text) adds a second one
    found = only(findings, "double-bos")
    assert found.severity == "error" and found.positions == (0, 1)
    assert "template" in found.message
    assert sample.input_ids[0] == sample.input_ids[1] == tokenizer.bos_token_id


def test_missing_bos_when_the_tokenizer_adds_one_by_default(chatml):
    sample, findings = lint(chatml, text="the cat sat on the mat", bos="none")
    found = only(findings, "missing-bos")
    assert found.severity == "warning" and found.positions == (0,)
    assert sample.input_ids[0] != chatml.bos_token_id


def test_missing_bos_is_only_info_for_a_chat_template_that_never_writes_it(chatml):
    _, findings = lint(chatml, chat=CHAT)
    assert only(findings, "missing-bos").severity == "info"


def test_no_bos_expected_from_a_tokenizer_that_adds_none(gpt2):
    _, findings = lint(gpt2, text="the cat sat on the mat")
    assert "missing-bos" not in codes(findings)


def test_answer_without_eos(chatml):
    sample, findings = lint(chatml, prompt="Q: capital of France?\nA:", answer=" Paris", eos="none")
    found = only(findings, "no-eos")
    assert found.positions == (len(sample) - 1,)
    assert "never learns to stop" in found.message


def test_chat_template_whose_assistant_turn_has_no_end_token():
    tokenizer = byte_bpe(template=CHATML_NO_END, adds_bos=True)
    sample, findings = lint(tokenizer, chat=CHAT)
    found = only(findings, "no-eos")
    assert sample.labels[found.positions[0]] != -100  # the last supervised token, and it is not an end token


def test_eos_masked_because_pad_equals_eos(gpt2):
    ids = gpt2("The answer is Paris")["input_ids"]
    eos = gpt2.eos_token_id
    input_ids = ids + [eos, eos, eos]  # the answer's EOS, then two pads (pad == eos)
    labels = [-100, -100, *ids[2:], -100, -100, -100]  # the collator masked every pad id, the real EOS too
    _, findings = lint(gpt2, ids={"input_ids": input_ids, "labels": labels})
    found = only(findings, "eos-masked")
    assert found.severity == "error" and found.positions == (len(ids),)
    assert "pad == eos" in found.message


def test_all_labels_masked(gpt2):
    ids = gpt2("The answer is Paris")["input_ids"]
    _, findings = lint(gpt2, ids={"input_ids": ids, "labels": [-100] * len(ids)})
    assert only(findings, "nothing-trained").severity == "error"


def test_pre_shifted_labels(gpt2):
    ids = gpt2("the cat sat on the mat and the dog sat on the log")["input_ids"] + [gpt2.eos_token_id]
    shifted = ids[1:] + [-100]  # what a user gets by shifting before the model shifts again
    _, findings = lint(gpt2, ids={"input_ids": ids, "labels": shifted})
    found = only(findings, "labels-pre-shifted")
    assert found.severity == "error" and found.positions[0] == 0
    assert "labels-differ" not in codes(findings)
    assert "eos-masked" not in codes(findings)  # the shift moved the EOS label: not a second problem


def test_labels_differ_without_shift_pattern(gpt2):
    ids = gpt2("the cat sat on the mat")["input_ids"]
    labels = list(ids)
    labels[3] = ids[1]
    _, findings = lint(gpt2, ids={"input_ids": ids, "labels": labels})
    assert only(findings, "labels-differ").positions == (3,)


def test_label_beyond_the_tokenizer(gpt2):
    ids = gpt2("the cat sat")["input_ids"]
    labels = [*ids[:-1], len(gpt2) + 100]
    _, findings = lint(gpt2, ids={"input_ids": ids, "labels": labels})
    found = only(findings, "id-beyond-tokenizer")
    assert found.positions == (len(ids) - 1,) and str(len(gpt2) + 100) in found.message


def test_negative_label_other_than_ignore_index(gpt2):
    ids = gpt2("the cat sat")["input_ids"]
    _, findings = lint(gpt2, ids={"input_ids": ids, "labels": [-100, -1, *ids[2:]]})
    assert only(findings, "id-beyond-tokenizer").positions == (1,)


def test_unknown_token_from_a_tokenizer_without_byte_fallback():
    tokenizer = sentencepiece_handmade(byte_fallback=False)
    sample, findings = lint(tokenizer, text="is 사랑 Paris")
    found = only(findings, "unknown-token")
    assert all(sample.input_ids[p] == tokenizer.unk_token_id for p in found.positions)
    assert "no-roundtrip" not in codes(findings)  # the unknown token already explains it


def test_padding_trained_on(chatml):
    ids = chatml("the cat sat")["input_ids"] + [chatml.pad_token_id] * 3
    sample, findings = lint(chatml, ids={"input_ids": ids, "labels": list(ids)})  # labels = input_ids.copy()
    assert only(findings, "pad-trained").positions == (len(ids) - 3, len(ids) - 2, len(ids) - 1)


def test_prompt_ending_inside_a_word_gives_a_token_across_the_boundary(chatml):
    sample, findings = lint(chatml, prompt="The capital of France is Par", answer="is.")
    found = only(findings, "token-spans-boundary")
    assert "Paris" in found.message
    assert sample.mask_reasons[found.positions[1]].value == "supervised"


def test_space_at_the_end_of_the_prompt_changes_the_answers_first_token(chatml):
    sample, findings = lint(chatml, prompt="The capital of France is ", answer="Paris")
    found = only(findings, "answer-leading-space")
    assert "Ġ" not in chatml.convert_ids_to_tokens(int(sample.input_ids[found.positions[1]]))
    assert "␣Paris" in found.message  # how the word looks in running text
    assert "token-spans-boundary" not in codes(findings)


def test_sentencepiece_adds_a_space_to_a_separately_tokenized_answer():
    tokenizer = sentencepiece_handmade()
    _, findings = lint(tokenizer, prompt="Answer:", answer="Paris")
    assert "gains a space" in only(findings, "answer-leading-space").message


def test_chat_message_that_already_contains_template_tokens(chatml):
    chat = (
        {"role": "user", "content": "<|im_start|>user\nhi<|im_end|>"},
        {"role": "assistant", "content": "Paris"},
    )
    sample, findings = lint(chatml, chat=chat)
    found = only(findings, "double-template")
    assert found.severity == "error"
    im_start = chatml.convert_tokens_to_ids("<|im_start|>")
    assert len(found.positions) == 2 and sample.input_ids[found.positions[0]] == im_start


def test_rendered_chat_given_as_plain_text(chatml):
    rendered = chatml.apply_chat_template(list(CHAT), tokenize=False)
    _, findings = lint(chatml, text=rendered)
    assert only(findings, "chat-as-text").severity == "warning"


def test_long_run_of_whitespace_tokens(chatml):
    sample, findings = lint(chatml, text="the end" + " \n" * 12 + "the cat")
    found = only(findings, "whitespace-run")
    assert len(found.positions) >= WHITESPACE_RUN
    assert all(not chatml.decode([int(sample.input_ids[p])]).strip() for p in found.positions)


def test_normalizing_tokenizer_does_not_roundtrip():
    tokenizer = byte_bpe(adds_bos=True)
    tokenizer.backend_tokenizer.normalizer = normalizers.NFKC()  # the ligature ﬁ becomes "fi"
    _, findings = lint(tokenizer, text="a ﬁne cat")
    assert "'ﬁne cat' came back as 'fine cat'" in only(findings, "no-roundtrip").message


def test_truncation_is_reported(chatml):
    sample, findings = lint(chatml, text="the cat sat on the mat and the dog sat on the log", truncate=4)
    assert only(findings, "truncated").severity == "info" and len(sample) == 4


def test_unbuildable_row_is_an_error_finding(chatml):
    sample, findings = lint_spec(chatml, SampleSpec(chat=({"role": "user", "content": "hi"},)))
    assert sample is None and only(findings, "unbuildable").severity == "error"


def test_lint_sample_works_without_a_spec(gpt2):
    from tokstep.engine.inputs.spec import from_ids

    ids = gpt2("the cat sat on the mat")["input_ids"]
    sample = from_ids({"input_ids": ids, "labels": ids[1:] + [-100]}, pad_id=gpt2.pad_token_id)
    assert "labels-pre-shifted" in codes(lint_sample(gpt2, sample))


def test_every_documented_lint_has_a_test_here():
    here = Path(__file__).parent
    source = "".join(
        (here / name).read_text(encoding="utf-8") for name in ("test_lints.py", "test_label_lints.py", "test_findings.py")
    )
    untested = [code for code in LINTS if f'"{code}"' not in source]
    assert untested == []


def test_unreadable_data_row_is_a_bad_row_error(chatml):
    from tokstep.engine.inputs.data import DataRow
    from tokstep.engine.lints.rows import lint_row

    result = lint_row(chatml, DataRow(index=3, line=7, spec=None, error="not valid JSON"))
    assert only(list(result.findings), "bad-row").message == "not valid JSON"
    assert result.num_tokens is None and result.count("error") == 1


def test_readable_data_row_counts_tokens_and_supervised(chatml):
    from tokstep.engine.inputs.data import DataRow
    from tokstep.engine.lints.rows import lint_row

    spec = SampleSpec(prompt="The capital of France is", answer=" Paris")
    result = lint_row(chatml, DataRow(index=0, line=1, spec=spec))
    assert result.findings == ()
    assert result.num_supervised == result.sample.num_supervised > 0
    assert result.num_tokens == len(chatml("The capital of France is Paris")["input_ids"]) + 1  # + EOS


def test_docs_table_lists_every_lint():
    table = (Path(__file__).parent.parent / "docs" / "lints.md").read_text(encoding="utf-8")
    missing = [code for code in LINTS if f"| `{code}` | {LINTS[code].severity} |" not in table]
    assert missing == []


@pytest.mark.parametrize("make", [byte_bpe, sentencepiece_handmade], ids=["byte-level", "sentencepiece"])
def test_template_space_before_the_reply_is_reported(make):
    """Vicuna's generation prompt ends with a space, so the reply's first token starts in the template: it is
    trained (it overlaps the reply, as transformers' generation mask would also train it) and reported."""
    from tiny import VICUNA

    tokenizer = make()
    tokenizer.chat_template = VICUNA
    chat = (
        {"role": "user", "content": "What is the capital?"},
        {"role": "assistant", "content": "Paris is."},
    )
    sample, findings = lint(tokenizer, chat=chat)
    found = only(findings, "answer-leading-space")
    (index,) = found.positions
    assert tokenizer.convert_ids_to_tokens(int(sample.input_ids[index])) in ("ĠParis", "▁Paris")
    assert sample.labels[index] != -100 and "is trained" in found.message


@pytest.fixture(scope="module")
def bundled():
    """The bundled tokstep-mini tokenizer (byte-level BPE, adds <s>, ChatML template that never writes <s>)."""
    from tokstep.engine.defaults import DEFAULT_MODEL
    from tokstep.engine.model.loading import load_tokenizer

    return load_tokenizer(str(DEFAULT_MODEL))


def test_bundled_tokenizer_chat_only_notes_the_bos_the_template_leaves_out(bundled):
    _, findings = lint(bundled, chat=CHAT)
    assert [(f.code, f.severity) for f in findings] == [("missing-bos", "info")]


def test_bundled_tokenizer_catches_a_rendered_chat_trained_as_text_and_pad_trained(bundled):
    rendered = bundled.apply_chat_template(list(CHAT), tokenize=False)
    _, findings = lint(bundled, text=rendered)
    assert "chat-as-text" in codes(findings)
    ids = bundled("The answer is Paris.")["input_ids"] + [bundled.eos_token_id, bundled.pad_token_id]
    _, findings = lint(bundled, ids={"input_ids": ids, "labels": ids})
    assert only(findings, "pad-trained").positions == (len(ids) - 1,)


def test_a_row_that_breaks_the_tokenizer_is_an_error_finding_not_a_crash(chatml):
    from tokstep.engine.inputs.data import DataRow
    from tokstep.engine.lints.rows import lint_row

    chat = (
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None},
    )  # content None: jinja fails
    result = lint_row(chatml, DataRow(index=0, line=1, spec=SampleSpec(chat=chat)))
    assert result.sample is None and only(list(result.findings), "unbuildable").severity == "error"


# ------------------------------------------------ issue 9: lints that are right on real tokenizers


def test_unknown_token_is_quiet_when_unk_is_the_eos(gpt2):
    """GPT-2 names one token unk, bos, eos and pad: the EOS after an answer is not an unknown character."""
    gpt2.unk_token = gpt2.eos_token
    sample, findings = lint(gpt2, prompt="The capital of France is", answer=" Paris.")
    assert int(sample.input_ids[-1]) == gpt2.unk_token_id == gpt2.eos_token_id
    assert "unknown-token" not in codes(findings)


def test_no_roundtrip_is_quiet_on_sentencepiece_prompt_answer():
    """' Paris' encoded on its own decodes as 'Paris' (the decoder strips a leading space); together with the
    prompt the ids decode to prompt + answer exactly, which is what the model trains on."""
    from tokenizers import decoders, pre_tokenizers

    tokenizer = (
        sentencepiece_handmade()
    )  # made Llama-3-era SentencePiece-like: Metaspace, prefix on the first word only
    backend = tokenizer.backend_tokenizer
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    assert tokenizer.tokenize(" Paris") == ["▁Paris"]
    alone = tokenizer.decode(tokenizer(" Paris", add_special_tokens=False)["input_ids"])
    assert alone != " Paris"  # the old check's false positive
    _, findings = lint(tokenizer, prompt="The capital is", answer=" Paris")
    assert "no-roundtrip" not in codes(findings)


def test_no_roundtrip_still_fires_when_the_joint_text_changes():
    tokenizer = sentencepiece_handmade()
    tokenizer.backend_tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    _, findings = lint(tokenizer, prompt="the capital is", answer=" Paris")
    assert "no-roundtrip" in codes(findings)


def test_no_eos_is_quiet_on_a_trainer_row_that_supervises_im_end_then_newline(chatml):
    rendered = chatml.apply_chat_template(list(CHAT), tokenize=False)
    assert rendered.endswith("<|im_end|>\n")
    ids = chatml(rendered, add_special_tokens=False)["input_ids"]
    start = rendered.index("Paris")
    offsets = chatml(rendered, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    labels = [i if s >= start else -100 for i, (s, _e) in zip(ids, offsets, strict=True)]
    assert chatml.convert_ids_to_tokens(ids[-2:]) == ["<|im_end|>", "Ċ"] and labels[-1] != -100
    _, findings = lint(chatml, ids={"input_ids": ids, "labels": labels})
    assert "no-eos" not in codes(findings)
    _, findings = lint(chatml, ids={"input_ids": ids[:-2] + ids[-1:], "labels": labels[:-2] + labels[-1:]})
    assert "no-eos" in codes(findings)  # a newline with no <|im_end|> before it still does not end the turn


def test_boundary_where_sentencepiece_pieces_differ_apart_and_together():
    """A Gemma-like SentencePiece (no dummy prefix) with a `:▁` piece: 'Answer: ' + 'Paris' tokenized apart
    is `:▁` + `P`…, together `:` + `▁Paris`."""
    from tokenizers import Tokenizer, decoders, models

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in "AnswerPais:▁":
        vocab.setdefault(ch, len(vocab))
    merges = [("▁", "P"), ("▁P", "a"), ("▁Pa", "r"), ("▁Par", "i"), ("▁Pari", "s"), (":", "▁")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Replace("▁", " ")
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    assert tokenizer.tokenize("Answer: ")[-1] == ":▁" and tokenizer.tokenize("Answer: Paris")[-1] == "▁Paris"
    _, findings = lint(tokenizer, prompt="Answer: ", answer="Paris")
    found = [f for f in findings if f.code == "answer-leading-space"]
    assert found and any(
        "':▁'" in f.message or "':␣'" in f.message or "▁Paris" in f.message or "␣Paris" in f.message
        for f in found
    ), found


def test_tokenizer_differs_when_transformers_drops_ids_tokenizer_json_keeps(tmp_path):
    """transformers 5.x's LlamaTokenizer rebuilds the pipeline and drops <unk> and the `▁` after specials."""
    import json

    from transformers import AutoTokenizer

    sentencepiece_handmade(byte_fallback=False).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["tokenizer_class"] = "LlamaTokenizer"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    _, findings = lint(tokenizer, text="the cat 漢 sat")
    found = only(findings, "tokenizer-differs")
    assert "LlamaTokenizer" in found.message and "tokenizer.json" in found.message
    _, findings = lint(tokenizer, text="the cat sat")  # nothing dropped here
    assert "tokenizer-differs" not in codes(findings)


def test_pad_trained_when_attention_mask_hides_a_supervised_position(chatml):
    ids = chatml("The capital of France is Paris", add_special_tokens=False)["input_ids"]
    n = len(ids)
    sample, findings = lint(
        chatml, ids={"input_ids": ids, "labels": ids, "attention_mask": [1] * (n - 2) + [0, 0]}
    )
    found = [f for f in findings if f.code == "pad-trained" and "attention_mask 0" in f.message]
    assert found and found[0].positions == (n - 2, n - 1)


def test_too_long_when_the_model_has_fewer_positions(chatml):
    from tokstep.engine.lints.length import set_max_positions

    tokenizer = byte_bpe(adds_bos=True)
    set_max_positions(tokenizer, 8)
    sample, findings = lint(tokenizer, text="the cat sat on the mat and the dog sat on the log")
    assert len(sample) > 8
    assert only(findings, "too-long").severity == "error"
    _, findings = lint(tokenizer, text="the cat")
    assert "too-long" not in codes(findings)


def test_template_inserted_and_generation_mask_empty_lints():
    """Each on a real-shaped chat: Qwen3's empty think block; a generation block that wraps nothing."""
    import copy

    import templates as tpl
    import tiny

    qwen3 = tpl.FAMILIES["qwen3"].tokenizer()
    _, findings = lint(qwen3, chat=tpl.THINK_CHAT)
    assert "<think>" in only(findings, "template-inserted").message
    _, findings = lint(qwen3, chat=tpl.THINK_CHAT, inserted="mask")
    assert "masked" in only(findings, "template-inserted").message
    broken = copy.deepcopy(tiny.byte_level_bpe())
    broken.chat_template = tiny.CHATML.replace(
        "{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}",
        "{% generation %}{% endgeneration %}{{ m['content'] }}<|im_end|>",
    )
    _, findings = lint(broken, chat=tuple(tiny.CHAT))
    assert only(findings, "generation-mask-empty").severity == "error"


def test_cross_document_attention_finding_names_cause_and_fix():
    """`"cross-document-attention"` (tokstep --batches; traced against the model in tests/test_batches.py)."""
    import numpy as np

    from tokstep.engine.batches.files import Settings, parse_row
    from tokstep.engine.batches.packing import contamination_finding
    from tokstep.engine.batches.results import DocumentCheck

    row = parse_row('{"input_ids": [1, 2, 3, 4, 5], "position_ids": [0, 1, 2, 0, 1]}', 1)
    checks = (DocumentCheck(0, 0, 3, 1.0, 2, 0.0, 0.5), DocumentCheck(1, 3, 5, 1.0, 1, 2.5, 1.0))
    delta = np.array([0.0, 0.0, 0.0, 2.5])
    lint = contamination_finding(row, Settings(use_cache=True), checks, delta, 1e-3)
    assert lint.code == "cross-document-attention" and lint.positions == (4,)
    assert "use_cache=False" in lint.message and "1 of 2 documents" in lint.message
    assert contamination_finding(row, Settings(use_cache=False), checks[:1], delta * 0, 1e-3) is None
