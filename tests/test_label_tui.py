"""The stepper's context strip colours an ids row by the chat role recovered from its ids, mask on top."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from rich.color import Color
from synthetic import synthetic_result

from tokstep.engine.chat.structure import ROLES, Part, Turn, TurnLayout
from tokstep.engine.inputs.sample import MaskReason
from tokstep.engine.inputs.spec import SampleSpec
from tokstep.tui.screens.app import PrecomputedBackend, TokstepApp
from tokstep.tui.screens.stepper import StepperScreen
from tokstep.tui.widgets.context_strip import ROLE_COLOURS, ContextStrip

USER, REPLY = range(3, 13), range(17, 31)  # token ranges of the user's words and the assistant's reply


def user_trained_result():
    """A 40-token row: user header, user words, end, assistant header, reply, end; labels on the USER words."""
    result = synthetic_result(40, seed=3)
    roles = np.full(40, -1, dtype=np.int8)
    parts = np.zeros(40, dtype=np.int8)
    for span, role in ((range(0, 14), "user"), (range(14, 32), "assistant")):
        roles[span.start : span.stop] = ROLES.index(role)
    parts[0:3] = parts[14:17] = Part.HEADER
    parts[USER.start : USER.stop] = parts[REPLY.start : REPLY.stop] = Part.CONTENT
    parts[13] = parts[31] = Part.END
    turns = (Turn("user", 0, 3, 13, 14, True), Turn("assistant", 14, 17, 31, 32, True))
    ids = result.sample.input_ids
    labels = np.where(np.isin(np.arange(40), list(USER)), ids, -100)
    reasons = tuple(MaskReason.SUPERVISED if label != -100 else MaskReason.USER for label in labels)
    sample = replace(
        result.sample, labels=labels, mask_reasons=reasons, layout=TurnLayout(turns, roles, parts)
    )
    return replace(result, sample=sample)


def background(style) -> Color | None:
    return None if style.bgcolor is None else style.bgcolor


def test_user_words_have_the_user_colour_and_stay_bright_when_trained():
    strip = ContextStrip(user_trained_result())
    strip.cursor = 39  # keep the cursor's own style away from the tokens checked
    user_colours = {Color.parse(c) for c in ROLE_COLOURS["user"]}
    reply_colours = {Color.parse(c) for c in ROLE_COLOURS["assistant"]}
    for i in USER:
        style = strip._style(i)
        assert background(style) in user_colours and not style.dim  # trained: bright, on the user colour
    for i in REPLY:
        style = strip._style(i)
        assert background(style) in reply_colours and style.dim  # the reply: masked, dim
    assert background(strip._style(1)) not in user_colours | reply_colours  # header: template grey


def test_no_color_keeps_the_plain_shades():
    strip = ContextStrip(user_trained_result(), no_color=True)
    strip.cursor = 39
    user_colours = {Color.parse(c) for c in ROLE_COLOURS["user"]}
    assert all(background(strip._style(i)) not in user_colours for i in USER)


@pytest.mark.parametrize("size", [(100, 30)])
async def test_the_legend_names_the_roles(size):
    app = TokstepApp(sample_spec=SampleSpec(text="x"), backend=PrecomputedBackend(user_trained_result(), []))
    async with app.run_test(size=size) as pilot:
        for _ in range(100):
            if isinstance(app.screen, StepperScreen):
                break
            await pilot.pause(0.02)
        await pilot.pause()
        legend = str(app.screen.query_one("#context-box").border_subtitle)
        assert "user" in legend and "assistant" in legend and "bright = trained" in legend


def test_a_chat_from_messages_is_coloured_by_role_like_its_ids_row():
    """One path: a chat built from messages carries the same TurnLayout vocabulary as an ids row, so the strip
    colours both alike (the reply on the assistant colour, the user's words on the user colour)."""
    import templates as tpl

    from tokstep.engine.inputs.spec import build_sample
    from tokstep.tui.widgets.context_strip import token_roles

    tokenizer = tpl.FAMILIES["qwen2.5"].tokenizer()
    chat = build_sample(SampleSpec(chat=tpl.FAMILIES["qwen2.5"].chat), tokenizer)
    ids = build_sample(
        SampleSpec(ids={"input_ids": chat.input_ids.tolist(), "labels": chat.labels.tolist()}), tokenizer
    )
    as_result = lambda sample: replace(synthetic_result(len(sample), seed=1), sample=sample)  # noqa: E731
    roles = token_roles(as_result(chat))
    assert roles == token_roles(as_result(ids))
    assert {"user", "assistant", "system"} <= set(roles)  # the injected default system prompt too
    strip = ContextStrip(as_result(chat))
    strip.cursor = len(chat) - 1
    reply = roles.index("assistant")
    assert background(strip._style(reply)) in {Color.parse(c) for c in ROLE_COLOURS["assistant"]}
    assert not strip._style(reply).dim
    user = roles.index("user")
    assert background(strip._style(user)) in {Color.parse(c) for c in ROLE_COLOURS["user"]}
    assert strip._style(user).dim
