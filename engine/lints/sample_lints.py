"""Every lint over one sample (`lint_sample`), and over a spec built first (`lint_spec`)."""

from __future__ import annotations

from typing import Any

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.sample import Sample
from tokstep.engine.inputs.spec import SampleSpec, build_sample, kept_spec, with_layout
from tokstep.engine.lints.catalogue import SEVERITIES, Finding, finding
from tokstep.engine.lints.chat_messages import chat_lints
from tokstep.engine.lints.chat_structure import structure_lints
from tokstep.engine.lints.convention import lift_convention
from tokstep.engine.lints.facts import recovered_layout, tokenizer_facts
from tokstep.engine.lints.foreign_ids import foreign_message
from tokstep.engine.lints.labels import label_lints
from tokstep.engine.lints.length import length_lints, max_positions_for
from tokstep.engine.lints.special_tokens import bos_lints, eos_lints
from tokstep.engine.lints.text import boundary_lints, boundary_net, text_lints
from tokstep.engine.lints.tokenizer_differs import library_lints
from tokstep.engine.lints.tokens import token_lints


def lint_sample(tokenizer: Any, sample: Sample, spec: SampleSpec | None = None) -> list[Finding]:
    """Every lint over one sample, errors first. Tokenizer only: no model, no forward pass."""
    if spec is not None and spec.truncate:
        spec = kept_spec(spec)  # the lints read what --truncate keeps, not all of a huge input
    facts = tokenizer_facts(tokenizer)
    if sample.kind == "ids" and sample.layout is None and facts.has_template:
        policy = {"eot": spec.eot, "inserted": spec.inserted} if spec is not None else {}
        sample = with_layout(
            sample, tokenizer, **policy
        )  # ids built elsewhere (scan): recover the turns here
    findings: list[Finding] = []
    findings += bos_lints(tokenizer, sample, facts)
    findings += label_lints(tokenizer, sample, facts)
    if not any(f.code == "labels-pre-shifted" for f in findings):  # else where the answer ends is unclear
        if (
            recovered_layout(sample) is not None
        ):  # ids with recovered chat turns: compare the labels with them
            findings += structure_lints(tokenizer, sample, facts)
        else:
            findings += eos_lints(tokenizer, sample, facts)
    findings += token_lints(tokenizer, sample, facts)
    if spec is not None and spec.ids is None:
        if spec.chat is not None:
            findings += chat_lints(tokenizer, sample, spec, facts)
        else:
            findings += text_lints(tokenizer, sample, spec, facts)
            boundary = list(boundary_lints(tokenizer, sample, spec))
            findings += boundary or list(boundary_net(tokenizer, sample, spec))
        findings += library_lints(tokenizer, sample, spec)
    findings += length_lints(tokenizer, sample)
    if sample.truncated_from:
        findings.append(
            finding(
                "truncated",
                (len(sample) - 1,),
                f"truncated from {sample.truncated_from_text} to {len(sample)} tokens",
            )
        )
    findings = with_foreign_ids(tokenizer, sample, findings)
    return sorted(lift_convention(findings), key=lambda f: SEVERITIES.index(f.severity))


def lint_spec(tokenizer: Any, spec: SampleSpec) -> tuple[Sample | None, list[Finding]]:
    """Build the sample, then lint it; a sample that cannot be built is itself an error finding."""
    try:  # a row far longer than the model's positions is refused from its size, before tokenizing it
        sample = build_sample(spec, tokenizer, max_tokens=max_positions_for(tokenizer))
    except TokstepError as error:
        return None, [finding("unbuildable", (), str(error))]
    return sample, lint_sample(tokenizer, sample, spec)


# what still holds for ids from another tokenizer; the rest (BOS, EOS, turns) only follows from the foreign ids
BESIDES_FOREIGN = frozenset(
    {"id-beyond-tokenizer", "nothing-trained", "labels-pre-shifted", "too-long", "truncated"}
)


def with_foreign_ids(tokenizer: Any, sample: Sample, findings: list[Finding]) -> list[Finding]:
    """An ids row made by another tokenizer (engine.lints.foreign_ids): `foreign-ids` instead of the findings that
    only follow from it."""
    if sample.kind not in ("ids", "batch row"):
        return findings
    facts = tokenizer_facts(tokenizer)
    message = foreign_message(
        tokenizer, sample.input_ids, recovered_layout(sample) is not None, facts.specials
    )
    if message is None:
        return findings
    foreign = finding("foreign-ids", (), message)
    return [foreign, *(f for f in findings if f.code in BESIDES_FOREIGN)]
