"""Cross-check of the two ways tokstep knows a chat's structure: located from the messages
(engine.chat.masks) and recovered from the ids by probing the template (engine.chat.structure).

For every family of tests/templates.py: a chat rendered and masked by chat_masks, handed over as ids + labels,
gives no finding and the same role per token; the same row with the user turns supervised gives
trains-on-user at the user's tokens. Both end-of-turn conventions (--eot train / mask) are checked.
"""

from __future__ import annotations

import numpy as np
import pytest
import templates as tpl

from tokstep.engine.chat.masks import derive
from tokstep.engine.inputs.sample import MaskReason
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.lints.sample_lints import lint_sample

CASES = [
    (name, which, chat)
    for name, family in tpl.FAMILIES.items()
    for which, chat in (("chat", family.chat), ("tool chat", family.tool_chat))
    if chat is not None
]
IDS = [f"{name}-{which}" for name, which, _ in CASES]

# Where the ids alone cannot say what the messages say (both mask these tokens, so no label differs):
# Gemma-3 folds the system prompt into the first user turn (where it ends, only its training can tell:
# engine.lints.stray_labels). DeepSeek-R1 writes it after BOS with no header: recovered as the system's.
ROLE_GAPS = {"gemma3": ("system", "user")}


def as_ids(name, chat, eot="train", supervise_user=False):
    """The chat masked by chat_masks, handed back as an ids row: (chat layout, ids sample, findings)."""
    tokenizer = tpl.FAMILIES[name].tokenizer()
    layout = derive(tokenizer, list(chat), eot=eot)
    roles = layout.turn_layout.worded_roles()
    trained = [
        r.counted or (supervise_user and role == "user")
        for r, role in zip(layout.reasons, roles, strict=True)
    ]
    labels = [t if keep else -100 for t, keep in zip(layout.ids, trained, strict=True)]
    spec = SampleSpec(ids={"input_ids": list(layout.ids), "labels": labels}, eot=eot)
    sample = build_sample(spec, tokenizer)
    return layout, sample, lint_sample(tokenizer, sample, spec)


@pytest.mark.parametrize("eot", ["train", "mask"])
@pytest.mark.parametrize(("name", "which", "chat"), CASES, ids=IDS)
def test_chat_masks_labels_pass_the_structure_lints(name, which, chat, eot):
    layout, sample, findings = as_ids(name, chat, eot)
    assert sample.layout is not None and sample.layout.eot == eot
    assert findings == []
    assert sample.layout.disagreements(sample.labels).tolist() == []
    assert [r.counted for r in sample.mask_reasons] == [r.counted for r in layout.reasons]
    # the same reason per token, but where the ids cannot tell: tool-call wrappers (template-inserted for
    # chat_masks, part of the reply from the ids) and the system prompts of ROLE_GAPS
    gap = {MaskReason.SYSTEM, MaskReason.TEMPLATE} if name in ROLE_GAPS else set()
    unknowable = {MaskReason.INSERTED_TRAINED, *gap}
    differ = {i for i, (a, b) in enumerate(zip(sample.mask_reasons, layout.reasons, strict=True)) if a != b}
    assert {layout.reasons[i] for i in differ} <= unknowable
    if which == "chat" and name not in ROLE_GAPS:
        assert differ == set()


@pytest.mark.parametrize(("name", "which", "chat"), CASES, ids=IDS)
def test_both_paths_give_each_token_the_same_role(name, which, chat):
    layout, sample, _ = as_ids(name, chat)
    located, recovered = layout.turn_layout.worded_roles(), sample.layout.worded_roles()
    differ = [i for i, (a, b) in enumerate(zip(located, recovered, strict=True)) if a != b]
    if name not in ROLE_GAPS:
        assert differ == []
        return
    said, seen = ROLE_GAPS[name]
    system = [i for i, role in enumerate(located) if role == said]
    first_user = located.index("user")
    assert system and set(system) <= set(differ) <= set(
        range(system[0], first_user)
    )  # the system prompt only
    assert {recovered[i] for i in system} == {seen}


@pytest.mark.parametrize(("name", "which", "chat"), CASES, ids=IDS)
def test_a_supervised_user_turn_is_trains_on_user(name, which, chat):
    layout, sample, findings = as_ids(name, chat, supervise_user=True)
    user = {i for i, role in enumerate(layout.turn_layout.worded_roles()) if role == "user" and i > 0}
    found = [f for f in findings if f.code == "trains-on-user"]
    assert [f.severity for f in found] == ["error"]
    assert set(found[0].positions) == set(sorted(user)[: len(found[0].positions)])
    assert [f.code for f in findings if f.code != "trains-on-user"] == []


def test_the_recovered_reasons_use_the_chat_names():
    """An ids row gets the reasons a chat built from messages has: the same MaskReason members."""
    layout, sample, _ = as_ids("qwen3", tpl.FAMILIES["qwen3"].chat)  # an empty think block in the last turn
    assert sample.mask_reasons == layout.reasons
    names = {r.name for r in sample.mask_reasons}
    assert {"SUPERVISED", "INSERTED_TRAINED", "USER", "SYSTEM", "TEMPLATE", "FIRST"} <= names
    _, masked, _ = as_ids("qwen3", tpl.FAMILIES["qwen3"].chat, eot="mask")
    assert "END_OF_TURN" in {r.name for r in masked.mask_reasons}
    assert int(np.sum([r.counted for r in masked.mask_reasons])) < int(
        np.sum([r.counted for r in layout.reasons])
    )
