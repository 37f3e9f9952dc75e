"""Lints: problems in a training sample that the tokenizer alone can reveal (no forward pass).

Each `Finding` has a code (see `LINTS`), a severity, the token positions it concerns, and one line a user
understands. `lint_sample` runs them all; `lint_spec` builds the sample first and reports a build failure
as a finding too, so a data file can be checked row by row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from weakref import WeakKeyDictionary

import numpy as np

from tokstep.engine.data import DataRow
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs import SampleSpec, build_sample
from tokstep.engine.inspector import roundtrip, special_ids, token_bytes
from tokstep.engine.sample import IGNORE_INDEX, MaskReason, Sample
from tokstep.engine.tokens import make_visible, trained_text

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
WHITESPACE_RUN = 8  # this many whitespace-only tokens in a row is worth a look
PRE_SHIFTED_SHARE = 0.8  # share of supervised labels equal to the NEXT input id that means "already shifted"
MAX_POSITIONS = 50  # positions kept per finding


@dataclass(frozen=True)
class Finding:
    """One problem found in one sample."""

    code: str
    severity: Severity
    positions: tuple[int, ...]  # token indices into the sample's input_ids
    message: str

    @property
    def fix(self) -> str:
        """How to fix it (the lint's documented fix; the README's table shows the same text)."""
        doc = LINTS.get(self.code)
        return doc.fix if doc is not None else ""


@dataclass(frozen=True)
class LintDoc:
    """What a lint means and how to fix it (the README table and `tokstep lint` are built from this)."""

    code: str
    severity: Severity
    meaning: str
    fix: str


LINTS: dict[str, LintDoc] = {
    doc.code: doc
    for doc in [
        LintDoc(
            "double-bos",
            "error",
            "BOS twice at the start: the chat template writes one and the tokenizer adds another.",
            "Tokenize rendered chat text with add_special_tokens=False (or apply_chat_template(tokenize=True)).",
        ),
        LintDoc(
            "missing-bos",
            "warning",
            "No BOS at the start, although the tokenizer adds one by default (pretraining saw it).",
            "Tokenize with add_special_tokens=True, or prepend tokenizer.bos_token_id; info-level for chat "
            "templates that never write BOS.",
        ),
        LintDoc(
            "no-eos",
            "warning",
            "A supervised answer / assistant turn does not end in EOS or the template's end-of-turn token: "
            "the model never learns to stop.",
            "Append tokenizer.eos_token (or the end-of-turn token) to every answer and keep it supervised.",
        ),
        LintDoc(
            "eos-masked",
            "error",
            "The EOS / end-of-turn token right after the answer is masked (-100), typically because "
            "pad == eos and the collator masked every pad id.",
            "Use a pad token distinct from EOS, or mask padding by attention_mask, not by token id.",
        ),
        LintDoc(
            "nothing-trained",
            "error",
            "Every label is -100: the sample trains nothing (a batch of such samples has loss NaN).",
            "Check the masking: the assistant/answer span was not found, or it was truncated away.",
        ),
        LintDoc(
            "labels-pre-shifted",
            "error",
            "labels[i] == input_ids[i+1]: the labels were shifted already and the model shifts them "
            "again, so it learns to predict the token after next.",
            "Pass labels aligned with input_ids (labels = input_ids, masked); the model does the shift.",
        ),
        LintDoc(
            "labels-differ",
            "warning",
            "Supervised labels differ from the input ids at the same position: the model is trained on "
            "other tokens than the text it reads.",
            "Build labels from the same ids as input_ids (copy, then set -100 where not trained).",
        ),
        LintDoc(
            "id-beyond-tokenizer",
            "error",
            "An input id or label is not a token of this tokenizer (or a negative label other than -100).",
            "Re-tokenize with this model's tokenizer; only -100 is ignored by the loss.",
        ),
        LintDoc(
            "unknown-token",
            "warning",
            "The tokenizer produced its unknown token: some characters cannot be represented.",
            "Normalize or drop those characters, or use a tokenizer with byte fallback.",
        ),
        LintDoc(
            "pad-trained",
            "warning",
            "Padding tokens are supervised: the model learns to emit padding.",
            "Set labels to -100 where attention_mask is 0.",
        ),
        LintDoc(
            "token-spans-boundary",
            "warning",
            "Tokenized as one string, a token covers the end of the prompt and the start of the answer: "
            "a split inside a word, so the answer's ids differ from running text.",
            "Split prompt and answer at a word boundary (put the space at the start of the answer).",
        ),
        LintDoc(
            "answer-leading-space",
            "warning",
            "The answer's first word tokenizes differently with and without the space before it: the "
            "space sits at the end of the prompt, or the tokenizer adds one the text does not have.",
            "Move the space from the end of the prompt to the start of the answer; for SentencePiece, "
            "tokenize prompt + answer together and mask by offsets.",
        ),
        LintDoc(
            "double-template",
            "error",
            "A chat message already contains template tokens (e.g. <|im_start|>): the template is applied "
            "twice.",
            "Pass plain message contents, or the already-rendered text as `text` (not as messages).",
        ),
        LintDoc(
            "chat-as-text",
            "warning",
            "Plain text that contains chat-template tokens: every turn is trained, the user's too.",
            "Pass the conversation as messages so only the assistant turns are supervised.",
        ),
        LintDoc(
            "whitespace-run",
            "warning",
            f"{WHITESPACE_RUN} or more whitespace-only tokens in a row: padding written as text or broken "
            "formatting.",
            "Strip or collapse the whitespace when building the data.",
        ),
        LintDoc(
            "no-roundtrip",
            "warning",
            "decode(encode(text)) != text: the tokenizer normalizes or drops something, so the model "
            "trains on other text than what is written.",
            "Inspect the first difference; normalize the data the same way, or pick a lossless tokenizer.",
        ),
        LintDoc(
            "truncated",
            "info",
            "The sample was truncated (--truncate): its end, and the EOS, may be cut off.",
            "Raise the limit or split long samples.",
        ),
        LintDoc(
            "bad-row",
            "error",
            "A row of the data file cannot be read: invalid JSON, not an object, or no usable columns.",
            "Fix the row at the line shown (or point --text-column / --prompt-column... at your columns).",
        ),
        LintDoc(
            "cross-document-attention",
            "error",
            "A packed row's documents attend to each other: traced as the trainer's forward saw it, a document's "
            "log-probs differ from the same document traced alone (tokstep --batches).",
            "Pass position_ids restarting at 0 with no 2D attention_mask and use_cache=False, or a flash-attention "
            "varlen path (cu_seq_lens), or a 4D block-diagonal mask.",
        ),
        LintDoc(
            "unbuildable",
            "error",
            "The row could not be turned into a sample (empty answer, no assistant turn, bad ids...).",
            "Fix the row as the message says.",
        ),
    ]
}


def finding(code: str, positions: Iterator[int] | tuple[int, ...] | list[int], message: str) -> Finding:
    kept = tuple(int(p) for p in positions)[:MAX_POSITIONS]
    return Finding(code, LINTS[code].severity, kept, message)


# ---------------------------------------------------------------- tokenizer facts (cached per tokenizer)


@dataclass(frozen=True)
class TokenizerFacts:
    """What the lints need to know about a tokenizer, computed once."""

    size: int
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    unk_id: int | None
    specials: frozenset[int]
    special_texts: tuple[str, ...]  # every special token's text, longest first
    adds_bos: bool  # tokenizer(text) prepends BOS by default
    has_template: bool
    template_writes_bos: bool
    end_ids: frozenset[int]  # EOS plus the template's end-of-turn token
    names: dict[int, str] = field(default_factory=dict, compare=False)  # special id -> its text

    def name(self, token_id: int | None) -> str:
        return "none" if token_id is None else f"`{self.names.get(token_id, token_id)}`"


_FACTS: WeakKeyDictionary[Any, TokenizerFacts] = WeakKeyDictionary()
PROBE = [
    {"role": "user", "content": "tokstep probe question"},
    {"role": "assistant", "content": "tokstep probe"},
]


def tokenizer_facts(tokenizer: Any) -> TokenizerFacts:
    try:
        return _FACTS[tokenizer]
    except (KeyError, TypeError):
        pass
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    with_special = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    without = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    adds_bos = bos is not None and bool(with_special) and with_special[0] == bos and without[:1] != [bos]
    specials = special_ids(tokenizer)
    special_texts = tuple(sorted({str(t) for t in tokenizer.all_special_tokens if t}, key=len, reverse=True))
    has_template = bool(getattr(tokenizer, "chat_template", None))
    writes_bos, end_ids = False, {eos} if eos is not None else set()
    if has_template:
        try:
            rendered = tokenizer.apply_chat_template(PROBE, tokenize=False)
            bos_text = tokenizer.bos_token
            writes_bos = bool(bos_text) and rendered.startswith(bos_text)
            after = rendered[rendered.rindex("tokstep probe") + len("tokstep probe") :]
            tail = list(tokenizer(after, add_special_tokens=False)["input_ids"])
            end_ids |= {next(i for i in tail if i in specials)} if any(i in specials for i in tail) else set()
        except Exception:  # noqa: BLE001 - a template that rejects the probe: EOS alone ends turns
            pass
    facts = TokenizerFacts(
        size=len(tokenizer),
        bos_id=bos,
        eos_id=eos,
        pad_id=tokenizer.pad_token_id,
        unk_id=tokenizer.unk_token_id,
        specials=specials,
        special_texts=special_texts,
        adds_bos=adds_bos,
        has_template=has_template,
        template_writes_bos=writes_bos,
        end_ids=frozenset(end_ids),
        names={i: str(tokenizer.convert_ids_to_tokens(i)) for i in specials if 0 <= i < len(tokenizer)},
    )
    with contextlib.suppress(TypeError):
        _FACTS[tokenizer] = facts
    return facts


# ---------------------------------------------------------------- helpers


def _piece(tokenizer: Any, token_id: int) -> str:
    if not 0 <= token_id < len(tokenizer):
        return f"<id {token_id}>"
    if token_id in special_ids(tokenizer):
        return str(tokenizer.convert_ids_to_tokens(int(token_id)))
    text = token_bytes(tokenizer, token_id).decode("utf-8", errors="backslashreplace")
    return make_visible(text)


def _supervised_runs(sample: Sample) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of supervised tokens (index >= 1: labels[0] is never used)."""
    counted = sample.labels != IGNORE_INDEX  # (N,) a fresh array
    counted[:1] = False
    runs, start = [], None
    for i, on in enumerate(counted):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(counted)))
    return runs


def _is_sft(sample: Sample) -> bool:
    """Samples where an answer is carved out (prompt masked): EOS at the end of the answer matters."""
    if sample.kind in ("prompt+answer", "chat"):
        return True
    return sample.kind == "ids" and bool((sample.labels[1:] == IGNORE_INDEX).any())


def _fmt_positions(positions: list[int] | tuple[int, ...]) -> str:
    shown = ", ".join(str(p) for p in positions[:5])
    return shown + (f", … ({len(positions)} in all)" if len(positions) > 5 else "")


# ---------------------------------------------------------------- the lints


def _bos_lints(tokenizer: Any, sample: Sample, facts: TokenizerFacts) -> Iterator[Finding]:
    ids, bos = sample.input_ids, facts.bos_id
    if bos is None or not len(ids):
        return
    if len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
        cause = (
            "the chat template writes it and the tokenizer adds it again"
            if facts.template_writes_bos
            else "it was added twice"
        )
        yield finding(
            "double-bos",
            (0, 1),
            f"BOS {facts.name(bos)} twice at the start ({cause}): tokenize with add_special_tokens=False",
        )
    elif ids[0] != bos and facts.adds_bos:
        if sample.kind == "chat" and not facts.template_writes_bos:
            yield Finding(
                "missing-bos",
                "info",
                (0,),
                f"the chat template does not write BOS {facts.name(bos)} though tokenizer(text) adds one: "
                "check which one your training used",
            )
        else:
            yield finding(
                "missing-bos",
                (0,),
                f"no BOS {facts.name(bos)} at the start, though this tokenizer adds one by default",
            )


def _eos_lints(tokenizer: Any, sample: Sample, facts: TokenizerFacts) -> Iterator[Finding]:
    ids, labels = sample.input_ids, sample.labels
    ends = facts.end_ids
    if not ends:
        return
    end_names = " / ".join(facts.name(i) for i in sorted(ends))
    masked_ends = [
        j
        for j in range(2, len(ids))
        if ids[j] in ends and labels[j] == IGNORE_INDEX and labels[j - 1] != IGNORE_INDEX
    ]
    if masked_ends:
        pad_is_eos = facts.pad_id is not None and facts.pad_id == facts.eos_id
        why = " (pad == eos, so masking the padding masked it too)" if pad_is_eos else ""
        yield finding(
            "eos-masked",
            masked_ends,
            f"the {facts.name(int(ids[masked_ends[0]]))} that ends the answer is masked (-100){why}: "
            "the model never learns to stop",
        )
    if not _is_sft(sample):
        return
    missing = []
    for _start, end in _supervised_runs(sample):
        last = end - 1
        if ids[last] in ends or (end < len(ids) and ids[end] in ends and labels[end] == IGNORE_INDEX):
            continue  # ends properly, or its masked EOS is reported above
        missing.append(last)
    if missing:
        cut = (
            " (the sample was truncated there)"
            if sample.truncated_from and missing[-1] == len(ids) - 1
            else ""
        )
        yield finding(
            "no-eos",
            missing,
            f"the answer ends with {_piece(tokenizer, int(ids[missing[0]]))!r} and no {end_names}{cut}: "
            "the model never learns to stop",
        )


def _label_lints(tokenizer: Any, sample: Sample, facts: TokenizerFacts) -> Iterator[Finding]:
    ids, labels = sample.input_ids, sample.labels
    if sample.num_supervised == 0:
        yield finding("nothing-trained", (), "every label is -100: this sample trains nothing")
    bad_ids = np.flatnonzero((ids < 0) | (ids >= facts.size)).tolist()
    bad_labels = np.flatnonzero((labels != IGNORE_INDEX) & ((labels < 0) | (labels >= facts.size))).tolist()
    if bad_labels:
        i = bad_labels[0]
        yield finding(
            "id-beyond-tokenizer",
            bad_labels,
            f"labels[{i}] = {int(labels[i])} is neither -100 nor a token of this tokenizer (0..{facts.size - 1})",
        )
    if bad_ids:
        i = bad_ids[0]
        yield finding(
            "id-beyond-tokenizer",
            bad_ids,
            f"input_ids[{i}] = {int(ids[i])} is not a token of this tokenizer (0..{facts.size - 1}): "
            "the data was tokenized with another tokenizer",
        )
    if sample.kind != "ids" or len(ids) < 3:
        return
    given = np.flatnonzero(labels[:-1] != IGNORE_INDEX)  # positions with a label and a next input id
    if len(given) >= 3:
        next_share = float((labels[given] == ids[given + 1]).mean())
        self_share = float((labels[given] == ids[given]).mean())
        if next_share >= PRE_SHIFTED_SHARE and self_share < 0.5:
            off = [int(i) for i in given if labels[i] != ids[i]]
            yield finding(
                "labels-pre-shifted",
                off,
                f"labels[i] == input_ids[i+1] at {next_share:.0%} of labelled positions: the labels are "
                "already shifted and the model shifts them again (it learns the token after next)",
            )
            return
    differ = [
        int(i)
        for i in np.flatnonzero(labels != IGNORE_INDEX)
        if i > 0 and labels[i] != ids[i] and 0 <= labels[i] < facts.size
    ]
    if differ:
        yield finding(
            "labels-differ",
            differ,
            f"{len(differ)} supervised label(s) differ from the input id at the same position "
            f"(t = {_fmt_positions(differ)}): the model is trained on other tokens than it reads",
        )


def _token_lints(tokenizer: Any, sample: Sample, facts: TokenizerFacts) -> Iterator[Finding]:
    ids, labels = sample.input_ids, sample.labels
    if facts.unk_id is not None:
        unknown = np.flatnonzero(ids == facts.unk_id).tolist()
        if unknown:
            trained = sum(1 for i in unknown if labels[i] != IGNORE_INDEX)
            yield finding(
                "unknown-token",
                unknown,
                f"{facts.name(facts.unk_id)} at {len(unknown)} position(s) ({trained} supervised): some "
                "characters cannot be represented by this tokenizer",
            )
    if facts.pad_id is not None:
        pads = np.flatnonzero((ids == facts.pad_id) & (labels != IGNORE_INDEX)).tolist()
        pads = [p for p in pads if p > 0]
        if facts.pad_id == facts.eos_id:
            pads = pads[1:]  # with pad == eos, one supervised EOS is right; more are padding
        if pads:
            yield finding(
                "pad-trained",
                pads,
                f"{len(pads)} padding token(s) {facts.name(facts.pad_id)} are supervised: "
                "the model learns to emit padding",
            )
    for run in _whitespace_runs(tokenizer, ids, facts):
        yield finding(
            "whitespace-run",
            run,
            f"{len(run)} whitespace-only tokens in a row (t = {run[0]}..{run[-1]}): padding written as "
            "text or broken formatting",
        )


_BLANK: WeakKeyDictionary[Any, np.ndarray] = WeakKeyDictionary()


def _blank_ids(tokenizer: Any, ids: np.ndarray, facts: TokenizerFacts) -> np.ndarray:
    """(N,) bool: the token is a non-special token of the tokenizer whose bytes are all whitespace.

    Decided once per token id and kept in a per-tokenizer table (-1 unknown, 0 no, 1 yes)."""
    table = _BLANK.get(tokenizer)
    if table is None:
        table = np.full(facts.size, -1, dtype=np.int8)
        with contextlib.suppress(TypeError):
            _BLANK[tokenizer] = table
    inside = (ids >= 0) & (ids < facts.size)  # (N,)
    known = np.where(inside, ids, 0)
    for token in np.unique(known[inside & (table[known] < 0)]).tolist():
        data = b"" if token in facts.specials else token_bytes(tokenizer, token)
        table[token] = 1 if (data and not data.strip()) else 0
    return inside & (table[known] == 1)


def _whitespace_runs(tokenizer: Any, ids: np.ndarray, facts: TokenizerFacts) -> list[list[int]]:
    """Maximal runs of at least WHITESPACE_RUN whitespace-only tokens, as lists of positions."""
    blank = _blank_ids(tokenizer, ids, facts).astype(np.int8)
    edges = np.diff(np.concatenate([[0], blank, [0]]))  # (N+1,) +1 where a run starts, -1 after it ends
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        list(range(s, e))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        if e - s >= WHITESPACE_RUN
    ]


def _text_lints(tokenizer: Any, sample: Sample, spec: SampleSpec, facts: TokenizerFacts) -> Iterator[Finding]:
    texts = [spec.text] if spec.text is not None else [t for t in (spec.prompt, spec.answer) if t]
    for text in texts:
        check = roundtrip(tokenizer, text)
        if not check.ok and not (facts.unk_id is not None and (sample.input_ids == facts.unk_id).any()):
            yield finding(
                "no-roundtrip",
                (),
                f"decode(encode(text)) differs from the text at character {check.first_difference}: "
                f"{check.expected!r} came back as {check.got!r}",
            )
    if spec.text is not None and facts.has_template:
        markup = [
            s
            for s in facts.special_texts
            if s in spec.text and s not in (tokenizer.bos_token, tokenizer.eos_token)
        ]
        if markup:
            marked = [int(i) for i in np.flatnonzero(np.isin(sample.input_ids, list(facts.specials)))]
            yield finding(
                "chat-as-text",
                marked,
                f"the text already contains chat markup ({markup[0]}): as plain text every turn is trained, "
                "the user's too; pass it as messages",
            )


def _boundary_lints(tokenizer: Any, sample: Sample, spec: SampleSpec) -> Iterator[Finding]:
    prompt, answer = spec.prompt or "", spec.answer or ""
    if not prompt or not answer:
        return
    first_answer = next((i for i, r in enumerate(sample.mask_reasons) if r is MaskReason.SUPERVISED), None)
    where = (first_answer - 1, first_answer) if first_answer else ()
    joint = tokenizer(prompt + answer, add_special_tokens=False, return_offsets_mapping=True)
    boundary = len(prompt)
    for token_id, (start, end) in zip(joint["input_ids"], joint["offset_mapping"], strict=False):
        if start < boundary < end and (prompt[start:boundary].strip() and answer[: end - boundary].strip()):
            yield finding(
                "token-spans-boundary",
                where,
                f"tokenized as one string, {_piece(tokenizer, token_id)!r} covers the prompt's "
                f"{prompt[start:boundary]!r} and the answer's {answer[: end - boundary]!r}: the prompt ends "
                "inside a word",
            )
            break
    alone = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    alone_text = b"".join(token_bytes(tokenizer, i) for i in alone).decode("utf-8", errors="replace")
    if alone_text.startswith(" ") and not answer[:1].isspace():
        yield finding(
            "answer-leading-space",
            where,
            f"tokenized on its own the answer gains a space ({_piece(tokenizer, alone[0])!r}) that the text "
            "does not have: the model is trained on a space that is not there",
        )
        return
    space = prompt[len(prompt.rstrip(" \t")) :]
    if space and not answer[:1].isspace():
        spaced = list(tokenizer(space + answer, add_special_tokens=False)["input_ids"])
        space_ids = list(tokenizer(space, add_special_tokens=False)["input_ids"])
        if spaced != space_ids + alone:
            yield finding(
                "answer-leading-space",
                where,
                f"the space before the answer ends the prompt, so the answer starts with "
                f"{_piece(tokenizer, alone[0])!r}; in running text it is {_piece(tokenizer, spaced[0])!r}: "
                "move the space into the answer",
            )


def _chat_boundary_lints(tokenizer: Any, sample: Sample, spec: SampleSpec) -> Iterator[Finding]:
    """A token that starts in the template and ends in the assistant's reply (where the mask is cut)."""
    from tokstep.engine.inputs import _message_spans  # the same spans from_chat masks by

    try:
        rendered, spans = _message_spans(tokenizer, list(spec.chat or ()))
        encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    except Exception:  # noqa: BLE001 - from_chat reports templates it cannot split
        return
    if list(encoded["input_ids"]) != sample.input_ids.tolist():
        return
    offsets = encoded["offset_mapping"]
    for start, _end, role, _content in spans:
        if role != "assistant":
            continue
        index = next((i for i, (s, e) in enumerate(offsets) if s < start < e), None)
        if index is None:
            continue
        token_start, token_end = offsets[index]
        template_side, reply_side = rendered[token_start:start], rendered[start:token_end]
        piece = _piece(tokenizer, int(sample.input_ids[index]))
        trained = "trained" if sample.labels[index] != IGNORE_INDEX else "not trained"
        if not template_side.strip():
            yield finding(
                "answer-leading-space",
                (index,),
                f"the template ends with {template_side!r} before the reply, and the reply's first token "
                f"{piece!r} takes it along: that token starts in the template and is {trained}; "
                "end the generation prompt without the space",
            )
        else:
            yield finding(
                "token-spans-boundary",
                (index,),
                f"{piece!r} covers the template's {template_side!r} and the reply's {reply_side!r} ({trained})",
            )


def _chat_lints(tokenizer: Any, sample: Sample, spec: SampleSpec, facts: TokenizerFacts) -> Iterator[Finding]:
    yield from _chat_boundary_lints(tokenizer, sample, spec)
    for number, message in enumerate(spec.chat or ()):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            continue
        markup = next((s for s in facts.special_texts if s in content), None)
        if markup is None:
            continue
        marked = _positions_of_text(tokenizer, sample, spec, content, facts)
        yield finding(
            "double-template",
            marked,
            f"message {number} ({message.get('role')}) already contains {markup}: the chat template adds "
            "its own markup, so it is applied twice",
        )


def _positions_of_text(
    tokenizer: Any, sample: Sample, spec: SampleSpec, content: str, facts: TokenizerFacts
) -> list[int]:
    """Special tokens inside `content` once rendered (empty when the rendering cannot be matched)."""
    try:
        rendered = tokenizer.apply_chat_template(list(spec.chat or ()), tokenize=False)
        encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    except Exception:  # noqa: BLE001
        return []
    if list(encoded["input_ids"]) != sample.input_ids.tolist():
        return []
    start = rendered.find(content)
    end = start + len(content)
    return [
        i
        for i, ((s, _e), token) in enumerate(
            zip(encoded["offset_mapping"], encoded["input_ids"], strict=True)
        )
        if start <= s < end and token in facts.specials
    ]


def lint_sample(tokenizer: Any, sample: Sample, spec: SampleSpec | None = None) -> list[Finding]:
    """Every lint over one sample, errors first. Tokenizer only: no model, no forward pass."""
    facts = tokenizer_facts(tokenizer)
    findings: list[Finding] = []
    findings += _bos_lints(tokenizer, sample, facts)
    findings += _label_lints(tokenizer, sample, facts)
    if not any(f.code == "labels-pre-shifted" for f in findings):  # else where the answer ends is unclear
        findings += _eos_lints(tokenizer, sample, facts)
    findings += _token_lints(tokenizer, sample, facts)
    if spec is not None and spec.ids is None:
        if spec.chat is not None:
            findings += _chat_lints(tokenizer, sample, spec, facts)
        else:
            findings += _text_lints(tokenizer, sample, spec, facts)
            findings += _boundary_lints(tokenizer, sample, spec)
    if sample.truncated_from:
        findings.append(
            finding(
                "truncated",
                (len(sample) - 1,),
                f"truncated from {sample.truncated_from} to {len(sample)} tokens",
            )
        )
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def lint_spec(tokenizer: Any, spec: SampleSpec) -> tuple[Sample | None, list[Finding]]:
    """Build the sample, then lint it; a sample that cannot be built is itself an error finding."""
    try:
        sample = build_sample(spec, tokenizer)
    except TokstepError as error:
        return None, [finding("unbuildable", (), str(error))]
    return sample, lint_sample(tokenizer, sample, spec)


@dataclass(frozen=True)
class RowLint:
    """A data-file row after tokenization and linting (what `tokstep lint` and the browser list)."""

    row: DataRow
    sample: Sample | None  # None for an unreadable row, or once dropped to save memory (`slim`)
    findings: tuple[Finding, ...]
    num_tokens: int | None = None
    num_supervised: int | None = None
    trained: str | None = None  # the supervised labels decoded: what the row trains the model to say

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def slim(self) -> RowLint:
        """Only what a report needs: no sample arrays, no row text (for linting huge files)."""
        row = DataRow(self.row.index, self.row.line, None, self.row.error)
        return RowLint(row, None, self.findings, self.num_tokens, self.num_supervised)


def lint_row(tokenizer: Any, row: DataRow) -> RowLint:
    """Lint one data row; an unreadable row becomes a `bad-row` error finding."""
    if row.spec is None:
        return RowLint(row, None, (finding("bad-row", (), str(row.error)),))
    try:
        sample, findings = lint_spec(tokenizer, row.spec)
    except Exception as error:  # noqa: BLE001 - e.g. a template that chokes on this row: one row, not the run
        return RowLint(row, None, (finding("unbuildable", (), f"{type(error).__name__}: {error}"),))
    if sample is None:
        return RowLint(row, None, tuple(findings))
    trained = trained_text(tokenizer, sample.labels)
    return RowLint(row, sample, tuple(findings), len(sample), sample.num_supervised, trained)
