"""Token inspector: raw pieces, real bytes, characters split over several tokens, round-trip."""

from __future__ import annotations

import pytest
from tiny import byte_bpe, sentencepiece_handmade

from tokstep.engine.model.inspector import inspect_token, roundtrip, token_bytes

TEXT = "is 사랑 Paris"  # 사 = ec 82 ac, 랑 = eb 9e 91: both split into single bytes by these tokenizers


@pytest.fixture(scope="module")
def bpe():
    return byte_bpe()


@pytest.fixture(scope="module")
def sp():
    return sentencepiece_handmade()


def _index_of_piece(tokenizer, ids, piece):
    return tokenizer.convert_ids_to_tokens(ids).index(piece)


def test_byte_level_piece_maps_back_to_its_byte_and_completes_the_character(bpe):
    ids = bpe(TEXT, add_special_tokens=False)["input_ids"]
    middle = _index_of_piece(bpe, ids, "ŀ")  # GPT-2's stand-in character for byte 0x9e
    info = inspect_token(bpe, ids, middle)
    assert info.piece == "ŀ"
    assert info.utf8_hex == "9e"
    assert info.text == "\ufffd"  # what decoding it alone gives...
    assert info.partial
    assert info.completes == "랑"  # ...and what it really is, with its neighbours
    assert info.span == (middle - 1, middle + 2)
    assert "\ufffd" not in info.completes


def test_sentencepiece_byte_fallback_piece_is_the_byte_itself(sp):
    ids = sp(TEXT)["input_ids"]
    first = _index_of_piece(sp, ids, "<0xEC>")
    infos = [inspect_token(sp, ids, first + k) for k in range(3)]
    assert [i.piece for i in infos] == ["<0xEC>", "<0x82>", "<0xAC>"]
    assert [i.utf8_hex for i in infos] == ["ec", "82", "ac"]
    assert all(i.partial and i.completes == "사" and i.span == (first, first + 3) for i in infos)


def test_whole_token_is_not_partial_and_completes_itself(bpe, sp):
    ids = bpe(TEXT, add_special_tokens=False)["input_ids"]
    last = len(ids) - 1
    info = inspect_token(bpe, ids, last)
    assert (info.piece, info.text, info.utf8_hex) == ("ĠParis", " Paris", b" Paris".hex(" "))
    assert not info.partial and info.completes == " Paris" and info.span == (last, last + 1)
    sp_ids = sp(TEXT)["input_ids"]
    sp_info = inspect_token(sp, sp_ids, len(sp_ids) - 1)
    assert sp_info.piece == "▁Paris" and sp_info.utf8_hex.startswith("20")  # ▁ is a real space byte


def test_special_token_is_flagged(sp):
    ids = sp(TEXT)["input_ids"]
    info = inspect_token(sp, ids, 0)
    assert info.special and info.piece == "<s>" and not info.partial


def test_character_cut_by_the_end_of_the_sample_shows_escaped_bytes_not_replacement(sp):
    ids = sp(TEXT)["input_ids"]
    first = _index_of_piece(sp, ids, "<0xEB>")
    cut = ids[: first + 2]  # 랑 loses its last byte
    info = inspect_token(sp, cut, first)
    assert info.partial
    assert info.completes == "\\xeb\\x9e"
    assert "\ufffd" not in info.completes


def test_id_beyond_tokenizer_is_named_not_decoded(bpe):
    info = inspect_token(bpe, [5, len(bpe) + 7], 1)
    assert info.piece.startswith("<id ") and info.utf8_hex == ""


def test_token_bytes_reassemble_the_text_exactly(bpe):
    ids = bpe(TEXT, add_special_tokens=False)["input_ids"]
    assert b"".join(token_bytes(bpe, i) for i in ids).decode("utf-8") == TEXT


def test_roundtrip_ok_for_lossless_tokenizer(bpe):
    check = roundtrip(bpe, TEXT)
    assert check.ok and check.first_difference is None


def test_roundtrip_points_at_the_unknown_token():
    no_fallback = sentencepiece_handmade(byte_fallback=False)
    check = roundtrip(no_fallback, TEXT)
    assert not check.ok
    assert check.first_difference == TEXT.index("사")
    assert check.expected.startswith("사랑") and check.got.startswith("<unk>")
    pieces = no_fallback.convert_ids_to_tokens(no_fallback(TEXT, add_special_tokens=False)["input_ids"])
    assert pieces[check.token_index] == "<unk>"


def test_split_characters_lists_each_split_once(sp):
    from tokstep.engine.model.inspector import split_characters

    ids = sp(TEXT)["input_ids"]
    splits = split_characters(sp, ids)
    assert [s.completes for s in splits] == ["사", "랑"]
    assert splits[0].span[1] == splits[1].span[0]  # 사 ends where 랑 starts


# ------------------------------------------------ issue 9: byte-level honesty in the TUI inspector line


def test_inspector_line_tells_the_byte_truth_at_80x24(tmp_path):
    """A byte-fallback piece shows the character it is part of, in the report's words; `▁` shows as a space,
    never as '' or '�'; and the line fits in 80 columns."""
    import asyncio

    import tiny

    from tokstep.engine.inputs.spec import SampleSpec
    from tokstep.engine.model.loading import wrap_model
    from tokstep.engine.model.session import run_trace
    from tokstep.tui.screens.app import PrecomputedBackend, TokstepApp
    from tokstep.tui.screens.stepper import StepperScreen
    from tokstep.tui.widgets.inspector_line import InspectorLine

    tokenizer = tiny.sentencepiece_bpe()
    loaded = wrap_model(tiny.tiny_model("llama", len(tokenizer)), tokenizer, "tiny")
    result = run_trace(loaded, SampleSpec(text="Hello 기 world"), with_reference=False)
    pieces = tokenizer.convert_ids_to_tokens(result.sample.input_ids.tolist())
    byte_at = next(i for i, p in enumerate(pieces) if p.startswith("<0x"))
    space_at = next(i for i, p in enumerate(pieces) if p == "▁")
    assert tokenizer.decode([result.sample.input_ids[space_at]]) in ("", " ")  # what the old line showed

    async def lines_at(targets):
        app = TokstepApp(sample_spec=SampleSpec(text="x"), backend=PrecomputedBackend(result, None))
        shown = []
        async with app.run_test(size=(80, 24)) as pilot:
            for _ in range(100):
                if isinstance(app.screen, StepperScreen):
                    break
                await pilot.pause(0.02)
            for target in targets:
                app.screen.cursor = target - 1  # position t predicts token t+1
                await pilot.pause()
                line = app.screen.query_one(InspectorLine)
                shown.append((line.plain_text(), line.content_size.width))
        return shown

    (split, width), (space, _) = asyncio.run(lines_at([byte_at, space_at]))
    assert f"split character t={byte_at}..{byte_at + 2} = '기'" in split
    assert "\ufffd" not in split and width <= 80
    assert split.index("'기'") + 4 <= width - 4  # the character (2 cells wide) is well inside the line
    assert "text '␣'" in space
