"""Sample builders: what is supervised, what is masked and why, BOS/EOS handling, chat templates."""

from __future__ import annotations

import pytest
import tiny

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.sample import IGNORE_INDEX, MaskReason
from tokstep.engine.inputs.spec import (
    SampleSpec,
    build_sample,
    from_chat,
    from_ids,
    from_prompt_answer,
    from_text,
    truncate,
)


def supervised_text(tokenizer, sample) -> str:
    ids = [int(i) for i, label in zip(sample.input_ids, sample.labels, strict=True) if label != IGNORE_INDEX]
    return tokenizer.decode(ids, skip_special_tokens=False)


def test_text_uses_the_tokenizers_own_bos(sp_tokenizer, bpe_tokenizer):
    sp = from_text(sp_tokenizer, "I love dogs")
    assert sp.input_ids[0] == sp_tokenizer.bos_token_id  # Llama-style adds <s>
    bpe = from_text(bpe_tokenizer, "I love dogs")
    assert bpe.input_ids[0] != bpe_tokenizer.bos_token_id  # GPT-2 adds nothing
    assert (sp.labels == sp.input_ids).all()
    assert sp.mask_reasons[0] is MaskReason.FIRST


def test_bos_and_eos_flags(sp_tokenizer):
    no_bos = from_text(sp_tokenizer, "I love dogs", bos="none")
    assert sp_tokenizer.bos_token_id not in no_bos.input_ids.tolist()
    with_eos = from_text(sp_tokenizer, "I love dogs", eos="add")
    assert with_eos.input_ids[-1] == sp_tokenizer.eos_token_id
    once = from_text(sp_tokenizer, "I love dogs", bos="add")
    assert (
        once.input_ids.tolist().count(sp_tokenizer.bos_token_id) == 1
    )  # "add" never doubles an existing BOS


def test_prompt_answer_masks_the_prompt_and_supervises_answer_plus_eos(sp_tokenizer):
    sample = from_prompt_answer(sp_tokenizer, "Question: what is the capital of France?\nAnswer:", " Paris.")
    assert supervised_text(sp_tokenizer, sample).startswith(" Paris.") or "Paris." in supervised_text(
        sp_tokenizer, sample
    )
    assert (
        sample.input_ids[-1] == sp_tokenizer.eos_token_id and sample.labels[-1] == sp_tokenizer.eos_token_id
    )
    masked = [r for r in sample.mask_reasons[1:] if r is not MaskReason.SUPERVISED]
    assert masked and set(masked) == {MaskReason.PROMPT}
    assert sample.num_supervised == len(sp_tokenizer(" Paris.", add_special_tokens=False)["input_ids"]) + 1


def test_prompt_answer_without_eos(sp_tokenizer):
    sample = build_sample(SampleSpec(prompt="Q:", answer=" Paris.", eos="none"), sp_tokenizer)
    assert sample.input_ids[-1] != sp_tokenizer.eos_token_id


@pytest.mark.parametrize(
    "template",
    [tiny.CHATML, tiny.CHATML_NO_GENERATION, tiny.LLAMA3, tiny.LLAMA3_NO_GENERATION],
    ids=["chatml-gen", "chatml", "llama3-gen", "llama3"],
)
@pytest.mark.parametrize("family", ["bpe", "sp"])
def test_chat_supervises_exactly_the_assistant_turns(template, family):
    tokenizer = (tiny.byte_level_bpe if family == "bpe" else tiny.sentencepiece_bpe)(chat_template=template)
    sample = from_chat(tokenizer, tiny.CHAT)
    text = supervised_text(tokenizer, sample)
    end = "<|im_end|>" if "im_end" in template else "<|eot_id|>"
    assert text.replace(" ", "") == f"Paris.{end}Rome,Ithink.{end}".replace(" ", "")
    reasons = set(sample.mask_reasons)
    assert {MaskReason.SYSTEM, MaskReason.USER, MaskReason.TEMPLATE} <= reasons
    uses_mask = "{% generation %}" in template
    assert any("generation" in note for note in sample.notes) == uses_mask
    # the same ids apply_chat_template produces
    assert sample.input_ids.tolist() == list(
        tokenizer.apply_chat_template(tiny.CHAT, tokenize=True, return_dict=True)["input_ids"]
    )


def test_chat_without_template_is_a_clear_error(sp_tokenizer):
    plain = tiny.sentencepiece_bpe()
    with pytest.raises(TokstepError, match="no chat template"):
        from_chat(plain, tiny.CHAT)


def test_chat_without_assistant_turn_is_never_silently_all_masked(bpe_tokenizer):
    with pytest.raises(TokstepError, match="no assistant"):
        from_chat(bpe_tokenizer, [{"role": "user", "content": "hi"}])


def test_chat_with_malformed_messages(bpe_tokenizer):
    with pytest.raises(TokstepError, match="role"):
        from_chat(bpe_tokenizer, [{"text": "hi"}])


def test_ids_taken_verbatim_with_given_reason():
    sample = from_ids({"input_ids": [[1, 2, 3, 4]], "labels": [[-100, -100, 3, 4]]})
    assert sample.input_ids.tolist() == [1, 2, 3, 4]
    assert sample.labels.tolist() == [-100, -100, 3, 4]
    assert sample.mask_reasons[1] is MaskReason.GIVEN


def test_ids_pad_tokens_and_attention_mask_give_padding_reason():
    sample = from_ids(
        {"input_ids": [1, 2, 3, 0, 0], "labels": [1, 2, 3, -100, -100], "attention_mask": [1, 1, 1, 0, 0]}
    )
    assert sample.mask_reasons[3:] == (MaskReason.PAD, MaskReason.PAD)
    assert sample.attention_mask is not None
    by_pad_id = from_ids({"input_ids": [1, 2, 3, 7], "labels": [1, 2, 3, -100]}, pad_id=7)
    assert by_pad_id.mask_reasons[3] is MaskReason.PAD


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"input_ids": [1, 2, 3], "labels": [1, 2]}, "labels has 2 entries but input_ids has 3"),
        ({"labels": [1, 2]}, "input_ids"),
        ({"input_ids": "abc"}, "list of integers"),
        ({"input_ids": [1, 2.5]}, "list of integers"),
        ({"input_ids": [1]}, "single token"),
        ({"input_ids": []}, "empty"),
    ],
)
def test_ids_bad_input(data, message):
    with pytest.raises(TokstepError, match=message):
        from_ids(data)


def test_empty_and_single_token_text(bpe_tokenizer):
    with pytest.raises(TokstepError, match="empty"):
        from_text(bpe_tokenizer, "")
    with pytest.raises(TokstepError, match="single token"):
        from_text(bpe_tokenizer, "I")  # GPT-2 style adds no BOS: one token, nothing to predict


def test_truncate_keeps_the_first_tokens_and_says_so():
    sample = truncate(from_ids({"input_ids": list(range(10))}), 4)
    assert sample.input_ids.tolist() == [0, 1, 2, 3]
    assert sample.truncated_from == 10


def test_truncate_of_a_huge_input_says_its_length_is_a_lower_bound(bpe_tokenizer):
    """--truncate on a text or chat too long to tokenize whole: the count is a prefix's, and says so."""
    huge = "the cat sat on the mat. " * 20_000
    text = build_sample(SampleSpec(text=huge, truncate=50), bpe_tokenizer)
    short = build_sample(SampleSpec(text=huge[:400], truncate=50), bpe_tokenizer)
    whole = len(from_text(bpe_tokenizer, huge[:400]))
    assert short.truncated_from == whole and not short.truncated_prefix and short.truncated_from_text == str(whole)
    assert text.truncated_prefix and 50 < text.truncated_from < len(from_text(bpe_tokenizer, huge))
    assert text.truncated_from_text == f"more than {text.truncated_from}"
    chat = [{"role": "user", "content": huge}, {"role": "assistant", "content": "ok"}]
    assert not build_sample(SampleSpec(chat=tuple(chat)), bpe_tokenizer).truncated_prefix
    with pytest.raises(TokstepError, match="cuts off every supervised token"):  # the reply is past the prefix
        build_sample(SampleSpec(chat=tuple(chat), truncate=50), bpe_tokenizer)
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": huge}]
    kept = build_sample(SampleSpec(chat=tuple(chat), truncate=50), bpe_tokenizer)
    assert kept.truncated_prefix and len(kept) == 50 and kept.truncated_from_text.startswith("more than")


def test_byte_fallback_tokens_for_unseen_characters(sp_tokenizer):
    sample = from_text(sp_tokenizer, "기분")
    pieces = sp_tokenizer.convert_ids_to_tokens(sample.input_ids.tolist())
    assert sum(p.startswith("<0x") for p in pieces) == 6  # two Hangul syllables, three UTF-8 bytes each
    assert sp_tokenizer.decode(sample.input_ids.tolist(), skip_special_tokens=True) == "기분"
