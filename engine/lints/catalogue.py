"""Lints: problems in a training sample that the tokenizer alone can reveal (no forward pass).

Each `Finding` has a code (see `LINTS`), a severity, the token positions it concerns, and one line a user
understands. `lint_sample` runs them all; `lint_spec` builds the sample first and reports a build failure
as a finding too, so a data file can be checked row by row.
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from weakref import WeakKeyDictionary

import numpy as np

from tokstep.engine.chat.masks import (
    ChatLayout,
    convention,
    derive,
    offset_array,
    render,
    trl_training_template,
)
from tokstep.engine.chat.structure import NO_ROLE, ROLES, Part, TurnLayout, _occurrences
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.data import DataRow
from tokstep.engine.inputs.sample import IGNORE_INDEX, MaskReason, Sample
from tokstep.engine.inputs.spec import SampleSpec, build_sample, kept_spec, with_layout
from tokstep.engine.lints.foreign_ids import foreign_message
from tokstep.engine.model.inspector import roundtrip, special_ids, token_bytes
from tokstep.engine.model.tokens import make_visible, trained_text

if TYPE_CHECKING:
    from tokstep.engine.chat.structure import TurnLayout

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
    convention: str = ""  # the mask convention a label lint compared against (printed once per run, not here)

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
            "The EOS / end-of-turn token right after the answer is masked (-100): a collator that masks "
            "every pad id when pad == eos, or an answer mask that stops before the end-of-turn.",
            "If pad == eos, use a distinct pad token or mask padding by attention_mask; otherwise extend the "
            "answer's mask over its EOS / end-of-turn (the finding says which applies).",
        ),
        LintDoc(
            "truncated?",
            "warning",
            "A supervised answer ends mid-word with no EOS / end-of-turn after it: it was probably cut "
            "(max_length) and the model learns to stop mid-sentence.",
            "Raise max_length or drop/split rows longer than it; never cut inside an answer.",
        ),
        LintDoc(
            "trains-on-user",
            "error",
            "Supervised tokens inside a user turn (recovered from the ids with the chat template): the model "
            "learns to write the user's words, e.g. a pattern that matched the user header, not the assistant's; "
            "also a chat row with nothing masked.",
            "Supervise only the assistant turns: match the assistant header (or use the template's "
            "{% generation %} mask).",
        ),
        LintDoc(
            "trains-on-system",
            "error",
            "Supervised tokens inside the system prompt (recovered from the ids with the chat template).",
            "Mask the system turn; supervise only the assistant turns.",
        ),
        LintDoc(
            "trains-on-tool",
            "error",
            "Supervised tokens inside a tool result (recovered from the ids with the chat template).",
            "Mask tool results; supervise only the assistant turns.",
        ),
        LintDoc(
            "trains-on-markup",
            "error",
            "Supervised role headers or template markup (e.g. `<|im_start|>assistant`); info when only a newline / "
            "EOS right after the end-of-turn or right before the reply is (what TRL trains for Qwen, Gemma-3, "
            "Phi-3: no finding at all on a template TRL recognises).",
            "Start each supervised span after the assistant header and end it at the end-of-turn token.",
        ),
        LintDoc(
            "assistant-not-trained",
            "error",
            "An assistant reply in the ids is masked, wholly or partly (error when no reply is trained; "
            "warning for some; info when only the last reply is trained, a common choice).",
            "Supervise every assistant turn's content and end-of-turn (or mean to train the last one only).",
        ),
        LintDoc(
            "mask-off-by-one",
            "error",
            "The supervised span misses an assistant reply's first or last tokens, or is shifted by one or "
            "two tokens against it (a header length or an index off by one).",
            "Recompute the span boundaries from the tokenizer's offsets; the finding gives the shift.",
        ),
        LintDoc(
            "labels-other-template",
            "error",
            "The labels follow another rendering of the chat than the ids (built with a different template): "
            "the supervised text sits elsewhere in input_ids, or the labels hold another template's markup.",
            "Build input_ids and labels from one rendering, with the model's own chat template.",
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
            "template-inserted",
            "info",
            "The chat template writes tokens inside an assistant turn that are not in the message (an empty "
            "<think></think> block, tags around reasoning): trained by default, as {% generation %} templates do.",
            "Decide: --inserted mask masks them; or put the text in the message (reasoning_content) so it is "
            "the model's own.",
        ),
        LintDoc(
            "generation-mask-empty",
            "error",
            "The template has {% generation %} markers but return_assistant_tokens_mask is all zeros: a trainer "
            "using it (TRL assistant_only_loss) trains nothing.",
            "Fix the template's generation block (it must wrap the assistant content), or do not use "
            "assistant_only_loss with it.",
        ),
        LintDoc(
            "tokenizer-differs",
            "warning",
            "transformers' tokenizer class encodes the text into other ids than the folder's tokenizer.json read "
            "by the tokenizers library (transformers 5.x LlamaTokenizer drops <unk> and the `▁` after special "
            "tokens): the two pipelines train on different ids.",
            "Load the tokenizer as PreTrainedTokenizerFast(tokenizer_file=...) or fix tokenizer_config.json's "
            "tokenizer_class, and tokenize the same way in training and inference.",
        ),
        LintDoc(
            "too-long",
            "error",
            "The sample has more tokens than the model has positions: `tokstep report` refuses it and a trainer "
            "cuts it (often silently, losing the answer and its EOS).",
            "Pass --truncate N to look at the start, or split / filter long rows (max_length in the trainer).",
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
            "duplicate-rows",
            "warning",
            "The row's input_ids and labels are identical to an earlier row's: the model sees the same sample "
            "twice per epoch (a join or a concatenation repeated rows).",
            "Deduplicate the data set (hash input_ids + labels) before training.",
        ),
        LintDoc(
            "foreign-ids",
            "error",
            "The ids were made by another tokenizer: another family's special or marker ids, and decoding then "
            "re-encoding them changes most tokens; the model reads nonsense.",
            "Re-tokenize the text with this model's tokenizer (the finding names the likely family).",
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
    describe: Any = field(default=None, compare=False)  # any other id -> its visible text (`↵`), never a bare id

    def name(self, token_id: int | None) -> str:
        if token_id is None:
            return "none"
        known = self.names.get(token_id)
        if known is None:
            known = self.describe(token_id) if self.describe is not None else str(token_id)
        return f"`{known}`"


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
            marks = specials | set(tokenizer.added_tokens_decoder)  # Phi-3's `<|end|>` is added, not special
            end_ids |= {next(i for i in tail if i in marks)} if any(i in marks for i in tail) else set()
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
        names={
            i: str(tokenizer.convert_ids_to_tokens(i)) for i in specials | end_ids if 0 <= i < len(tokenizer)
        },
        describe=_describer(tokenizer),
    )
    with contextlib.suppress(TypeError):
        _FACTS[tokenizer] = facts
    return facts


# ---------------------------------------------------------------- helpers


def _describer(tokenizer: Any) -> Any:
    """id -> the token's visible text, holding the tokenizer weakly (the facts are cached per tokenizer)."""
    try:
        held = weakref.ref(tokenizer)
    except TypeError:
        return lambda token_id: _piece(tokenizer, token_id)
    return lambda token_id: _piece(held(), token_id) if held() is not None else str(token_id)


def _piece(tokenizer: Any, token_id: int) -> str:
    if not 0 <= token_id < len(tokenizer):
        return f"<id {token_id}>"
    if token_id in special_ids(tokenizer):
        return str(tokenizer.convert_ids_to_tokens(int(token_id)))
    text = token_bytes(tokenizer, token_id).decode("utf-8", errors="backslashreplace")
    return make_visible(text)


def _token_name(tokenizer: Any, facts: TokenizerFacts, token_id: int) -> str:
    """A token as text for a message: a special one by name, any other as its visible text (`↵`), never an id."""
    return facts.name(token_id) if token_id in facts.names else repr(_piece(tokenizer, token_id))


def _supervised_runs(sample: Sample) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of supervised tokens (index >= 1: labels[0] is never used)."""
    counted = sample.labels != IGNORE_INDEX  # (N,) a fresh array
    counted[:1] = False
    return _runs(counted)


def _is_blank(tokenizer: Any, token_id: int, facts: TokenizerFacts) -> bool:
    """A whitespace-only token (not a special one)."""
    if token_id in facts.specials or not 0 <= token_id < facts.size:
        return False
    data = token_bytes(tokenizer, token_id)
    return bool(data) and not data.strip()


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
        if (sample.kind == "chat" or sample.layout is not None) and not facts.template_writes_bos:
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
    candidates = (
        np.flatnonzero(  # (K,) end ids masked right after a supervised token
            (ids[2:, None] == np.fromiter(ends, dtype=np.int64, count=len(ends))).any(axis=1)
            & (labels[2:] == IGNORE_INDEX)
            & (labels[1:-1] != IGNORE_INDEX)
        )
        + 2
    )
    masked_ends = [
        j
        for j in candidates.tolist()
        if sample.mask_reasons[j] is not MaskReason.END_OF_TURN  # masked on purpose: --eot mask
        and int(ids[j - 1]) not in ends  # an EOS after a trained end-of-turn (Phi-3's `<|endoftext|>`)
    ]
    if masked_ends:
        token = int(ids[masked_ends[0]])
        yield finding(
            "eos-masked",
            masked_ends,
            f"the {facts.name(token)} that ends the answer is masked (-100) at t = {_fmt_positions(masked_ends)}: "
            f"the model never learns to stop; {eos_masked_hint(facts, token)}",
        )
    if not _is_sft(sample):
        return
    missing = []
    for start, end in _supervised_runs(sample):
        last = end - 1
        while last > start and ids[last] not in ends and _is_blank(tokenizer, int(ids[last]), facts):
            last -= 1  # `<|im_end|>` then `\n`, both supervised: the turn still ends properly
        if ids[last] in ends:
            continue
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
        yield from _truncated_answer(tokenizer, sample, missing[-1], end_names)


def eos_masked_hint(facts: TokenizerFacts, token_id: int) -> str:
    """The fix for a masked EOS / end-of-turn, for this tokenizer (pad == eos or not)."""
    name = facts.name(token_id)
    if facts.pad_id is not None and facts.pad_id == token_id:
        return (
            f"pad == eos ({name}) here, so a collator that masks every pad id masked it too: use a distinct pad "
            "token, or mask padding by attention_mask"
        )
    pad = (
        "this tokenizer has no pad token"
        if facts.pad_id is None
        else f"the pad token is {facts.name(facts.pad_id)}, not {name}"
    )
    return (
        f"{pad}, so padding did not mask it: the answer's mask stops before it; extend the mask over {name}"
    )


def _mid_word(tokenizer: Any, token_id: int) -> str | None:
    """The token's text when it ends inside a word (a letter or digit, no space or punctuation after it)."""
    if not 0 <= token_id < len(tokenizer) or token_id in special_ids(tokenizer):
        return None
    text = token_bytes(tokenizer, token_id).decode("utf-8", errors="replace")
    return text if text[-1:].isalnum() else None


def _truncated_answer(tokenizer: Any, sample: Sample, last: int, end_names: str) -> Iterator[Finding]:
    """`truncated?` when a supervised answer ends the row mid-word (only padding may follow)."""
    after = sample.input_ids[last + 1 :]
    pad = tokenizer.pad_token_id
    tail_is_padding = all(int(t) == pad for t in after) or (
        sample.attention_mask is not None and not sample.attention_mask[last + 1 :].any()
    )
    if not tail_is_padding:
        return
    text = _mid_word(tokenizer, int(sample.input_ids[last]))
    if text is None:
        return
    yield finding(
        "truncated?",
        (last,),
        f"the answer stops mid-word at t = {last} ({make_visible(text)!r}) with no {end_names} after it: truncated? "
        "(cut at max_length); raise the limit or drop rows longer than it",
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


# ---------------------------------------------------------------- labels against the recovered chat structure


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _recovered(sample: Sample) -> TurnLayout | None:
    """The chat turns recovered from an ids row's ids (chats built from messages carry a layout too, located
    from the messages: their labels are tokstep's own, the chat lints check those)."""
    return sample.layout if sample.kind in ("ids", "batch row") else None


def _structure_lints(
    tokenizer: Any, sample: Sample, facts: TokenizerFacts, within: tuple[int, int] | None = None
) -> Iterator[Finding]:
    """Compare an ids row's labels with the chat turns recovered from its ids (engine.chat.structure).
    `within`: the [start, end) of one packed document of a batch row (its labels and turns only, the rest -100
    and markup): the comparison is that document's, in row positions."""

    layout = _recovered(sample)
    if layout is None or sample.num_supervised == 0:
        return
    ids, labels, n = sample.input_ids, sample.labels, len(sample)
    start, end = within or (0, n)
    supervised = labels != IGNORE_INDEX  # (N,) a fresh array
    supervised[: start + 1] = False
    other = list(_other_template(tokenizer, sample, facts, supervised))
    if other:
        yield from other
        return  # the labels belong to other positions: comparing them token by token would only add noise
    versus = f"(convention: {layout.convention})"
    train_eot = layout.eot == "train"
    if supervised[start + 1 : end].all():  # nothing masked: full-sequence training on a transcript
        words = np.flatnonzero((layout.parts == Part.CONTENT) & (layout.roles != ROLES.index("assistant")))
        words = words[(words > start) & (words < end)].tolist()
        if words:
            yield Finding(
                "trains-on-user",
                "error",
                tuple(words[:MAX_POSITIONS]),
                "nothing is masked: every token is trained, the user's and system's words and the template's "
                f"markup too ({len(words)} tokens not from the assistant); fine for pretraining on transcripts, "
                f"not for SFT: supervise only the assistant turns {versus}",
            )
        return
    expected = layout.expected()
    replies = [t for t in layout.turns if t.role == "assistant" and t.content_end > t.content_start]
    displaced = _displaced_mask(layout, supervised, replies)
    if displaced:
        moved = (
            np.flatnonzero(supervised ^ expected)[1:]
            if not expected[0]
            else np.flatnonzero(supervised ^ expected)
        )
        yield finding(
            "labels-other-template",
            moved.tolist(),
            f"each supervised span has the length of an assistant reply but sits {', '.join(f'{d:+d}' for d in displaced)} "
            "tokens away from it: the mask was computed on another rendering (a template with other header "
            "lengths); build ids and labels from one rendering",
        )
        return
    padding = np.zeros(n, dtype=bool) if sample.attention_mask is None else sample.attention_mask == 0
    if facts.pad_id is not None:
        padding |= (ids == facts.pad_id) & (layout.roles == NO_ROLE)  # pad-trained reports those
    explained = padding | (layout.parts == Part.INSERTED)
    untrained, holes, off, off_notes, masked_ends, unclosed = [], [], [], [], [], []
    trained_ends: list[int] = []  # --eot mask: end-of-turn tokens the labels supervise all the same
    for turn in replies:
        lo, hi = turn.content_start, turn.end if train_eot else turn.content_end
        shift = _shift(supervised, lo, hi)
        if shift:
            moved = set(range(lo + shift, hi + shift)) ^ set(range(lo, hi))
            off += sorted(moved)
            explained[sorted(moved)] = True
            off_notes.append(
                f"t = {lo}..{hi - 1} is supervised as t = {lo + shift}..{hi + shift - 1} ({shift:+d})"
            )
            continue
        content = supervised[turn.content_start : turn.content_end]
        if not content.any():
            untrained.append(turn)
            explained[lo:hi] = True
            continue
        first = turn.content_start + int(np.argmax(content))
        last = turn.content_end - 1 - int(np.argmax(content[::-1]))
        head = list(range(turn.content_start, first))
        tail = list(range(last + 1, turn.content_end))
        ends = (  # what ends the turn, masked (not Gemma's `\\n` after it: template, trained or not)
            [j for j in turn.end_of_turn if not supervised[j] and _ends_turn(tokenizer, ids, turn, j, facts)]
            if train_eot
            else []
        )
        trained_ends += [] if train_eot else [j for j in turn.end_of_turn if supervised[j]]
        inside = [j for j in range(first, last + 1) if not supervised[j]]
        if 0 < len(head) <= 2:
            off += head
            off_notes.append(f"the reply at t = {turn.content_start} starts {len(head)} token(s) late")
        elif head:
            holes += head
        if 0 < len(tail) <= 2:
            off += tail + ends
            off_notes.append(
                f"the reply ending at t = {turn.end - 1} stops {len(tail) + len(ends)} token(s) early"
            )
            ends = []
        elif tail:
            holes += tail
        holes += inside
        masked_ends += ends
        explained[lo:hi] = True
        explained[trained_ends] = True
        if not turn.closed and supervised[turn.content_end - 1]:
            unclosed.append(turn.content_end - 1)
    if untrained:
        yield _untrained_finding(untrained, replies, versus)
    if holes:
        yield finding(
            "assistant-not-trained",
            holes,
            f"{len(holes)} token(s) inside assistant replies are masked (t = {_fmt_positions(holes)}): "
            f"supervise each reply whole {versus}",
        )
    if off:
        yield finding(
            "mask-off-by-one",
            off,
            f"the supervised span is off against the assistant reply: {'; '.join(off_notes[:3])} {versus}",
        )
    if masked_ends:
        token = next(
            (int(ids[j]) for j in masked_ends if int(ids[j]) in facts.specials), int(ids[masked_ends[0]])
        )
        yield finding(
            "eos-masked",
            masked_ends,
            f"the end-of-turn {_token_name(tokenizer, facts, token)} after an assistant reply is masked (-100) at "
            f"t = {_fmt_positions(masked_ends)}: the model never learns to stop; {eos_masked_hint(facts, token)} "
            f"{versus}",
        )
    if trained_ends:
        token = int(ids[trained_ends[0]])
        yield Finding(
            "trains-on-markup",
            "warning",
            tuple(trained_ends[:MAX_POSITIONS]),
            f"the end-of-turn {facts.name(token)} after an assistant reply is supervised at "
            f"t = {_fmt_positions(trained_ends)}, but --eot mask says it is masked: drop --eot mask if your "
            f"trainer means to train it {versus}",
        )
    if unclosed:
        ends_named = " / ".join(facts.name(i) for i in sorted(facts.end_ids)) or "end-of-turn"
        yield finding(
            "no-eos",
            unclosed,
            f"the assistant reply ends at t = {unclosed[-1]} with no {ends_named} after it: the model never "
            f"learns to stop; end every reply with the template's end-of-turn {versus}",
        )
        yield from _truncated_answer(tokenizer, sample, unclosed[-1], ends_named)
    stray = supervised & ~expected & ~explained  # (N,) supervised where the structure says masked
    yield from _stray_findings(tokenizer, layout, ids, np.flatnonzero(stray).tolist(), versus, facts)


def _ends_turn(tokenizer: Any, ids: np.ndarray, turn: Any, j: int, facts: TokenizerFacts) -> bool:
    """Whether token j of a turn's recovered end teaches the model to stop: not whitespace after it (Gemma's
    `\\n`), and an end-of-turn / EOS id whenever the turn's end holds one (not the next header that a template
    always appending one, like Llama-3's base template, writes right after it)."""
    if _is_blank(
        tokenizer, int(ids[j]), facts
    ):  # whitespace after the end-of-turn is template (Gemma's `\\n`);
        return not any(
            int(ids[k]) in facts.end_ids for k in turn.end_of_turn if k < j
        )  # before it (` </s>`): end
    holds_end = any(int(ids[k]) in facts.end_ids for k in turn.end_of_turn)
    return not holds_end or int(ids[j]) in facts.end_ids


def _displaced_mask(layout: Any, supervised: np.ndarray, replies: list[Any]) -> list[int] | None:
    """Per reply, how far its supervised span was moved, when every span has a reply's length but sits 3+
    tokens away and covers no recovered turn exactly (a mask computed on another template's rendering)."""
    runs = _runs(supervised)
    if not replies or len(runs) != len(replies):
        return None
    starts = {t.content_start for t in replies}
    turn_spans = {(t.content_start, t.end if t.end > t.content_end else t.content_end) for t in layout.turns}
    turn_spans |= {(t.content_start, t.content_end) for t in layout.turns}
    shifts = []
    for turn, (start, end) in zip(replies, runs, strict=True):
        if start in starts or (start, end) in turn_spans:
            return None  # aligned with a reply, or exactly another role's turn (trains-on-... says it)
        if abs((end - start) - (turn.end - turn.content_start)) > 1 or abs(start - turn.content_start) < 3:
            return None
        shifts.append(start - turn.content_start)
    return shifts


def _shift(supervised: np.ndarray, lo: int, hi: int) -> int:
    """d in ±1, ±2 when exactly [lo+d, hi+d) is supervised around the expected span [lo, hi); else 0."""
    n = len(supervised)
    for d in (1, -1, 2, -2):
        a, b = lo + d, hi + d
        if a < 1 or b > n:
            continue
        window = supervised[max(lo - 2, 0) : min(hi + 2, n)]
        inside = supervised[a:b]
        if inside.all() and int(window.sum()) == b - a:
            return d
    return 0


def _untrained_finding(untrained: list[Any], replies: list[Any], versus: str) -> Finding:
    positions = [j for turn in untrained for j in range(turn.content_start, turn.end)]
    where = ", ".join(f"t = {t.content_start}..{t.end - 1}" for t in untrained[:3])
    if len(untrained) == len(replies):
        return finding(
            "assistant-not-trained",
            positions,
            f"no assistant reply is supervised ({where}): the labels train other tokens {versus}",
        )
    if untrained == replies[:-1]:
        return Finding(
            "assistant-not-trained",
            "info",
            tuple(positions[:MAX_POSITIONS]),
            f"only the last assistant reply is supervised; {len(untrained)} earlier one(s) are masked ({where}): "
            "fine if you meant it",
        )
    return Finding(
        "assistant-not-trained",
        "warning",
        tuple(positions[:MAX_POSITIONS]),
        f"{len(untrained)} of {len(replies)} assistant replies are masked ({where}): supervise every reply "
        f"{versus}",
    )


def _beside_reply(
    tokenizer: Any, layout: Any, ids: np.ndarray, stray: list[int], facts: TokenizerFacts
) -> set[int]:
    """Stray tokens trainers commonly train with a reply (what TRL's training templates train): whitespace or an
    EOS / end-of-turn token right after an assistant turn's end (Qwen's and Gemma's `\\n`, Phi-3's final
    `<|endoftext|>`), and the whitespace that ends an assistant header right before the reply (Qwen2.5's `\\n`)."""

    def harmless(j: int) -> bool:
        token = int(ids[j])
        return token in facts.end_ids or token == facts.eos_id or _is_blank(tokenizer, token, facts)

    def reply_end(j: int) -> bool:
        return j >= 0 and layout.role(j) == "assistant" and int(layout.parts[j]) == Part.END

    def reply_start(j: int) -> bool:
        return j < len(ids) and layout.role(j) == "assistant" and int(layout.parts[j]) == Part.CONTENT

    trained = set(stray)
    found: set[int] = set()
    for j in stray:  # in order: a run after the end-of-turn chains (`<|end|>`, `\\n`, `<|endoftext|>`)
        header_tail = reply_start(j + 1) and (j - 1) not in trained  # not the end of a header trained whole
        if harmless(j) and (reply_end(j - 1) or (j - 1) in found or header_tail):
            found.add(j)
    return found


def _stray_findings(
    tokenizer: Any, layout: Any, ids: np.ndarray, stray: list[int], versus: str, facts: TokenizerFacts
) -> Iterator[Finding]:
    """Supervised tokens the structure says are not trained: other roles' words, headers, markup."""

    by_role: dict[str, list[int]] = {}
    markup: list[int] = []
    beside = _beside_reply(tokenizer, layout, ids, stray, facts)
    for j in stray:
        role, kind = layout.role(j), int(layout.parts[j])
        if kind == Part.CONTENT and role in ("user", "system", "tool"):
            by_role.setdefault(role, []).append(j)
        elif j not in beside:
            markup.append(j)
    hints = {
        "user": "the model learns to write the user's words (a pattern that matched the user header, not the "
        "assistant's?)",
        "system": "the model learns to write the system prompt",
        "tool": "the model learns to write the tool's results",
    }
    for role in ("user", "system", "tool"):
        if role in by_role:
            found = by_role[role]
            yield finding(
                f"trains-on-{role}",
                found,
                f"{len(found)} supervised token(s) in the {role} turn(s) at t = {_fmt_positions(found)}: "
                f"{hints[role]} {versus}",
            )
    if beside and trl_training_template(getattr(tokenizer, "chat_template", None)) is None:
        near = sorted(beside)  # (what TRL trains for a template it recognises is no finding at all)
        pieces = ", ".join(repr(_piece(tokenizer, int(ids[j]))) for j in near[:3]) + (
            ", …" if len(near) > 3 else ""
        )
        yield Finding(
            "trains-on-markup",
            "info",
            tuple(near[:MAX_POSITIONS]),
            f"supervised beside a reply at t = {_fmt_positions(near)} ({pieces}): a newline / EOS right after the "
            "end-of-turn or right before the reply, as TRL's training templates train for some families; harmless",
        )
    if markup:
        pieces = ", ".join(repr(_piece(tokenizer, int(ids[j]))) for j in markup[:3]) + (
            ", …" if len(markup) > 3 else ""
        )
        yield finding(
            "trains-on-markup",
            markup,
            f"{len(markup)} supervised template token(s) at t = {_fmt_positions(markup)} ({pieces}): role "
            f"headers / markup are the template's, not the reply {versus}",
        )


def _other_template(
    tokenizer: Any, sample: Sample, facts: TokenizerFacts, supervised: np.ndarray
) -> Iterator[Finding]:
    """Labels built from another rendering: their text sits elsewhere in the ids, or they hold foreign markup."""

    ids, labels = sample.input_ids, sample.labels
    given = np.flatnonzero(supervised)
    differ = given[labels[given] != ids[given]]
    if len(differ) < max(2, len(given) // 2):
        return
    present = set(ids.tolist())
    foreign = sorted({int(t) for t in labels[given] if int(t) in facts.specials and int(t) not in present})
    shifts = []
    for start, end in _runs(supervised):
        chunk = tuple(int(t) for t in labels[start + 1 : min(end, start + 5)])
        if len(chunk) < 2:
            continue
        hits = _occurrences(ids, chunk)
        if hits:
            nearest = min(hits, key=lambda p: abs(p - (start + 1)))
            if nearest - (start + 1) not in (0, 1):
                shifts.append(nearest - (start + 1))
    if not foreign and not shifts:
        return
    why = []
    if shifts:
        why.append(f"the supervised text sits {shifts[0]:+d} tokens away in input_ids")
    if foreign:
        names = ", ".join(facts.name(t) for t in foreign[:3])
        why.append(f"the labels hold {names}, which these ids never contain")
    yield finding(
        "labels-other-template",
        differ.tolist(),
        f"the labels follow another rendering of the chat than the ids ({'; '.join(why)}): they were built "
        "with a different template; build ids and labels from one rendering",
    )


def _token_lints(tokenizer: Any, sample: Sample, facts: TokenizerFacts) -> Iterator[Finding]:
    ids, labels = sample.input_ids, sample.labels
    if facts.unk_id is not None and facts.unk_id not in (facts.eos_id, facts.bos_id, facts.pad_id):
        # (GPT-2 names one token unk, bos, eos and pad: its EOS is not an unknown character)
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
        layout = _recovered(sample)
        if layout is not None:  # end-of-turn tokens the structure expects supervised are not padding
            pads = [p for p in pads if layout.roles[p] < 0]  # inside a turn: the turn lints say it
        if (
            facts.pad_id == facts.eos_id
        ):  # an EOS right after a trained reply ends it (DeepSeek's, every turn)
            pads = [p for p in pads if labels[p - 1] == IGNORE_INDEX or ids[p - 1] == facts.pad_id]
        if pads:
            yield finding(
                "pad-trained",
                pads,
                f"{len(pads)} padding token(s) {facts.name(facts.pad_id)} are supervised: "
                "the model learns to emit padding",
            )
    if sample.attention_mask is not None:
        hidden = [
            int(i) for i in np.flatnonzero((sample.attention_mask == 0) & (labels != IGNORE_INDEX)) if i > 0
        ]
        if hidden:
            yield finding(
                "pad-trained",
                hidden,
                f"{len(hidden)} supervised position(s) have attention_mask 0 (t = {_fmt_positions(hidden)}): "
                "the loss trains on tokens the model is told to ignore",
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
    has_unknown = facts.unk_id is not None and bool((sample.input_ids == facts.unk_id).any())
    if spec.text is not None:
        check = roundtrip(tokenizer, spec.text)
        if not check.ok and not has_unknown:
            yield finding(
                "no-roundtrip",
                (),
                f"decode(encode(text)) differs from the text at character {check.first_difference}: "
                f"{check.expected!r} came back as {check.got!r}",
            )
    elif spec.prompt is not None and spec.answer is not None and not has_unknown:
        # The answer is encoded on its own, so its ids alone need not decode to it (SentencePiece drops the
        # leading space of ' Paris' when decoding); what the model trains on is prompt + answer, decoded together.
        text = spec.prompt + spec.answer
        body = [int(i) for i in sample.input_ids if int(i) not in facts.specials]
        decoded = tokenizer.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if decoded != text and decoded.strip() != text.strip():
            at = next((i for i, (a, b) in enumerate(zip(text, decoded, strict=False)) if a != b), None)
            at = min(len(text), len(decoded)) if at is None else at
            yield finding(
                "no-roundtrip",
                (),
                f"decode(prompt ids + answer ids) differs from prompt + answer at character {at}: "
                f"{text[at : at + 12]!r} came back as {decoded[at : at + 12]!r}",
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


def _render_prompt(tokenizer: Any, messages: list[dict[str, Any]]) -> str | None:
    try:
        return render(tokenizer, messages, generation_prompt=True) if messages else ""
    except Exception:  # noqa: BLE001 - a template that refuses a prefix says nothing here
        return None


def _chat_boundary_lints(
    tokenizer: Any, sample: Sample, spec: SampleSpec, layout: ChatLayout
) -> Iterator[Finding]:
    """A token that starts in the template and ends in the assistant's reply (where the mask is cut)."""
    rendered, offsets = layout.rendered, layout.offsets
    bounds: np.ndarray | None = None  # (N, 2) the offsets, made once when an assistant turn needs them
    for turn in layout.turns:
        if turn.role != "assistant" or not turn.pieces:
            continue
        start = turn.pieces[0][0]
        if bounds is None:
            bounds = offset_array(offsets)
        across = np.flatnonzero((bounds[:, 0] < start) & (start < bounds[:, 1]))  # tokens spanning `start`
        if not len(across):
            continue
        index = int(across[0])
        token_start, token_end = offsets[index]
        template_side, reply_side = rendered[token_start:start], rendered[start:token_end]
        piece = _piece(tokenizer, int(sample.input_ids[index]))
        trained = "trained" if sample.labels[index] != IGNORE_INDEX else "not trained"
        if not template_side.strip():
            prompt = _render_prompt(tokenizer, list(spec.chat or ())[: turn.index])
            if prompt is not None and not prompt.endswith(template_side):
                continue  # the space is written only after the prompt (Llama-2's `[/INST] Paris`): the model
                # generates `▁Paris` after `[/INST]` at inference too, so training on it is right
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


def _template_lints(sample: Sample, spec: SampleSpec, layout: ChatLayout) -> Iterator[Finding]:
    """Template-inserted tokens inside assistant turns, and {% generation %} masks that train nothing."""
    if layout.generation_mask_empty:
        yield finding(
            "generation-mask-empty",
            (),
            "the template has {% generation %} markers but return_assistant_tokens_mask is all zeros: "
            "a trainer using it (TRL assistant_only_loss) trains nothing on this chat",
        )
    positions = layout.inserted_tokens()
    if not positions:
        return
    text = "".join(
        layout.rendered[s:e] for t in layout.turns for s, e in t.inserted if (s, e) not in t.wrapper
    )
    trained = spec.inserted == "train"
    yield finding(
        "template-inserted",
        positions,
        f"{len(positions)} token(s) inside assistant turns are written by the template, not the message "
        f"({text[:40]!r}): {'trained (--inserted mask to mask them)' if trained else 'masked (--inserted mask)'}",
    )


def _chat_lints(tokenizer: Any, sample: Sample, spec: SampleSpec, facts: TokenizerFacts) -> Iterator[Finding]:
    try:
        layout = derive(tokenizer, list(spec.chat or ()), eot=spec.eot, inserted=spec.inserted)
    except TokstepError:
        layout = None
    if layout is not None and list(layout.ids) == sample.input_ids.tolist():
        yield from _chat_boundary_lints(tokenizer, sample, spec, layout)
        yield from _template_lints(sample, spec, layout)
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


_MAX_POSITIONS: WeakKeyDictionary[Any, int] = WeakKeyDictionary()
_RAW: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()
_SANE_MAX_LENGTH = 10_000_000  # tokenizers without a limit say model_max_length = 1e30


def set_max_positions(tokenizer: Any, positions: int | None) -> None:
    """Tell the lints how many positions the model accepts (from its config), for `too-long`."""
    if positions:
        with contextlib.suppress(TypeError):
            _MAX_POSITIONS[tokenizer] = positions


def max_positions_for(tokenizer: Any) -> int | None:
    """The model's positions when known, else the tokenizer's own model_max_length when it is a real limit."""
    for candidate in (tokenizer, getattr(tokenizer, "wrapped", None)):  # a BatchTokenizer: the one inside
        with contextlib.suppress(TypeError, KeyError):
            return _MAX_POSITIONS[candidate]
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < _SANE_MAX_LENGTH else None


def _length_lints(tokenizer: Any, sample: Sample) -> Iterator[Finding]:
    limit = max_positions_for(tokenizer)
    if limit is not None and len(sample) > limit:
        yield finding(
            "too-long",
            (limit,),
            f"{len(sample)} tokens, more than the model's {limit} positions: `tokstep report` refuses it "
            f"(--truncate {limit} keeps the first {limit}); a trainer would cut or drop it",
        )


def _raw_tokenizer(tokenizer: Any) -> Any:
    """The folder's tokenizer.json loaded by the `tokenizers` library itself (None when there is none)."""
    with contextlib.suppress(TypeError, KeyError):
        return _RAW[tokenizer]
    raw = None

    path = Path(str(getattr(tokenizer, "name_or_path", "") or "")) / "tokenizer.json"
    if path.is_file():
        try:
            # lazy: loads tokenizers
            from tokenizers import Tokenizer

            raw = Tokenizer.from_file(str(path))
        except Exception:  # noqa: BLE001 - a file the library cannot read: nothing to compare with
            raw = None
    with contextlib.suppress(TypeError):
        _RAW[tokenizer] = raw
    return raw


def _library_lints(tokenizer: Any, sample: Sample, spec: SampleSpec) -> Iterator[Finding]:
    """Ids transformers' tokenizer class drops (or adds) compared with tokenizer.json read by `tokenizers`."""
    raw = _raw_tokenizer(tokenizer)
    if raw is None:
        return
    if spec.chat is not None:
        try:
            texts = [render(tokenizer, list(spec.chat))]
        except Exception:  # noqa: BLE001
            return
    else:
        texts = [t for t in (spec.text, spec.prompt, spec.answer) if t]
    for text in texts:
        ours = list(map(int, tokenizer(text, add_special_tokens=False)["input_ids"]))
        theirs = raw.encode(text, add_special_tokens=False).ids
        if ours == theirs:
            continue
        k = next(
            (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
            min(len(ours), len(theirs)),
        )
        ours_piece = tokenizer.convert_ids_to_tokens(ours[k]) if k < len(ours) else "(end)"
        theirs_piece = raw.id_to_token(theirs[k]) if k < len(theirs) else "(end)"
        yield finding(
            "tokenizer-differs",
            (),
            f"{type(getattr(tokenizer, 'wrapped', tokenizer)).__name__} encodes this text into {len(ours)} ids, tokenizer.json (read by the "
            f"tokenizers library) into {len(theirs)}: first difference at token {k}, {ours_piece!r} vs "
            f"{theirs_piece!r}",
        )
        return


def _boundary_net(tokenizer: Any, sample: Sample, spec: SampleSpec) -> Iterator[Finding]:
    """Prompt and answer tokenized apart give other ids at the seam than tokenized together (`:▁`+`P`)."""
    prompt, answer = spec.prompt or "", spec.answer or ""
    if not prompt or not answer:
        return
    apart_p = [int(i) for i in tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    apart_a = [int(i) for i in tokenizer(answer, add_special_tokens=False)["input_ids"]]
    joint = [int(i) for i in tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]]
    if joint == apart_p + apart_a:
        return
    k = next((i for i, (a, b) in enumerate(zip(apart_p + apart_a, joint, strict=False)) if a != b), 0)
    lo = max(k - 1, 0)
    pieces = [_piece(tokenizer, i) for i in (apart_p + apart_a)[lo : len(apart_p) + 1]]
    together = [_piece(tokenizer, i) for i in joint[lo : lo + len(pieces)]]
    first = next((i for i, r in enumerate(sample.mask_reasons) if r.counted), None)
    yield finding(
        "answer-leading-space",
        (first - 1, first) if first else (),
        f"tokenized apart the seam is {' + '.join(map(repr, pieces))}; tokenized together it is "
        f"{' + '.join(map(repr, together))}: the model trains on ids it never sees in running text",
    )


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
    findings += _bos_lints(tokenizer, sample, facts)
    findings += _label_lints(tokenizer, sample, facts)
    if not any(f.code == "labels-pre-shifted" for f in findings):  # else where the answer ends is unclear
        if _recovered(sample) is not None:  # ids with recovered chat turns: compare the labels with them
            findings += _structure_lints(tokenizer, sample, facts)
        else:
            findings += _eos_lints(tokenizer, sample, facts)
    findings += _token_lints(tokenizer, sample, facts)
    if spec is not None and spec.ids is None:
        if spec.chat is not None:
            findings += _chat_lints(tokenizer, sample, spec, facts)
        else:
            findings += _text_lints(tokenizer, sample, spec, facts)
            boundary = list(_boundary_lints(tokenizer, sample, spec))
            findings += boundary or list(_boundary_net(tokenizer, sample, spec))
        findings += _library_lints(tokenizer, sample, spec)
    findings += _length_lints(tokenizer, sample)
    if sample.truncated_from:
        findings.append(
            finding(
                "truncated",
                (len(sample) - 1,),
                f"truncated from {sample.truncated_from} to {len(sample)} tokens",
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


@dataclass(frozen=True)
class RowLint:
    """A data-file row after tokenization and linting (what `tokstep lint` and the browser list)."""

    row: DataRow
    sample: Sample | None  # None for an unreadable row, or once dropped to save memory (`slim`)
    findings: tuple[Finding, ...]
    num_tokens: int | None = None
    num_supervised: int | None = None
    trained: str | None = None  # the supervised labels decoded: what the row trains the model to say
    disagree: int | None = None  # tokens whose label disagrees with the recovered chat structure (None: none)
    digest: bytes | None = None  # a hash of input_ids + labels (engine.lints.duplicates finds identical rows)

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def slim(self) -> RowLint:
        """Only what a report needs: no sample arrays, no row text (for linting huge files)."""
        row = DataRow(self.row.index, self.row.line, None, self.row.error)
        return RowLint(
            row,
            None,
            self.findings,
            self.num_tokens,
            self.num_supervised,
            disagree=self.disagree,
            digest=self.digest,
        )


def disagreements(sample: Sample) -> np.ndarray | None:
    """Token indices whose given label disagrees with the chat structure recovered from the ids (padding and
    template-inserted markup excepted); None when the row has no recovered structure."""
    layout = _recovered(sample)
    if layout is None:
        return None
    padding = None if sample.attention_mask is None else sample.attention_mask == 0
    return layout.disagreements(sample.labels, padding)


def batch_row_lints(
    tokenizer: Any, sample: Sample, skip: np.ndarray, documents: Sequence[tuple[int, int]]
) -> list[Finding]:
    """The label lints of a trainer's batch row against its recovered chat turns (`sample.layout`, from
    engine.batches.structure), one packed document at a time as if it were an ids row, in row positions.
    `skip` (N,) bool: padding and each document's first token, left out of the comparison; `documents`: the
    row's [start, end) document spans. Nothing when no turn was recovered."""

    layout = _recovered(sample)
    if layout is None:
        return []
    facts = tokenizer_facts(tokenizer)
    findings: list[Finding] = []
    for d, (start, end) in enumerate(documents):
        turns = tuple(t for t in layout.turns if start <= t.start < end)
        if not turns:
            continue
        inside = np.zeros(len(sample), dtype=bool)  # (N,)
        inside[start:end] = True
        labels = np.where(inside & ~skip, sample.labels, IGNORE_INDEX)  # (N,) this document's labels only
        alone = TurnLayout(  # this document's turns only: the rest of the row is markup, expected masked
            turns,
            np.where(inside, layout.roles, NO_ROLE).astype(np.int8),
            np.where(inside, layout.parts, int(Part.TEMPLATE)).astype(np.int8),
            layout.eot,
            layout.inserted,
        )
        compared = replace(sample, labels=labels, layout=alone)
        if not (labels != IGNORE_INDEX).any():
            continue  # a document that trains nothing: nothing to compare (the row's loss shows it)
        shifted = [
            f
            for f in _label_lints(tokenizer, replace(compared, kind="ids"), facts)
            if f.code == "labels-pre-shifted"
        ]
        found = shifted or list(_structure_lints(tokenizer, compared, facts, (start, end)))
        if len(documents) > 1:
            found = [
                replace(f, message=f"document {d} of 0..{len(documents) - 1}: {f.message}") for f in found
            ]
        findings += found
    return lift_convention(findings)


def lint_row(tokenizer: Any, row: DataRow, *, trained: bool = True) -> RowLint:
    """Lint one data row; an unreadable row becomes a `bad-row` error finding. `trained=False` skips decoding
    the trained text (`RowLint.trained` stays None), for callers that drop it (`RowLint.slim`)."""
    if row.spec is None:
        return RowLint(row, None, (finding("bad-row", (), str(row.error)),))
    try:
        sample, findings = lint_spec(tokenizer, row.spec)
    except Exception as error:  # noqa: BLE001 - e.g. a template that chokes on this row: one row, not the run
        return RowLint(row, None, (finding("unbuildable", (), f"{type(error).__name__}: {error}"),))
    if sample is None:
        return RowLint(row, None, tuple(findings))
    differ = disagreements(sample)
    text = trained_text(tokenizer, sample.labels) if trained else None
    return RowLint(
        row,
        sample,
        tuple(findings),
        len(sample),
        sample.num_supervised,
        text,
        None if differ is None else len(differ),
        sample_digest(sample),
    )


# ---------------------------------------------------------------- added across rows and runs


def lift_convention(findings: list[Finding]) -> list[Finding]:
    """Each label lint's trailing `(convention: ...)` moved into `Finding.convention`: a report states the
    convention once per run, not inside every finding."""
    suffixes = [f" (convention: {convention(e, i)})" for e in ("train", "mask") for i in ("train", "mask")]
    lifted = []
    for f in findings:
        hit = next((s for s in suffixes if s in f.message), None)
        if hit is None:
            lifted.append(f)
        else:
            message = f.message.replace(hit, "").rstrip()
            lifted.append(replace(f, message=message, convention=hit[len(" (convention: ") : -1]))
    return lifted


def sample_digest(sample: Sample) -> bytes:
    """16 bytes that identify a sample's input_ids + labels (equal rows, equal digests)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(sample.input_ids, dtype=np.int64).tobytes())
    digest.update(b"|")
    digest.update(np.ascontiguousarray(sample.labels, dtype=np.int64).tobytes())
    return digest.digest()


def batch_padding_lints(tokenizer: Any, labels: np.ndarray, padding: np.ndarray) -> list[Finding]:
    """`pad-trained` for a trainer's batch row: supervised labels where the row is padding (`padding` (N,)
    bool: attention_mask 0 or outside every document). An error when pad == eos: the collator that left
    them also cannot tell the answer's EOS from padding, and the model learns to emit EOS runs."""
    facts = tokenizer_facts(tokenizer)
    trained = np.flatnonzero(padding & (labels != IGNORE_INDEX))
    trained = trained[trained > 0].tolist()
    if not trained:
        return []
    same = facts.pad_id is not None and facts.pad_id == facts.eos_id
    message = (
        f"{len(trained)} padding position(s) are supervised (t = {_fmt_positions(trained)}): the model learns "
        "to emit padding"
    )
    if same:
        message += (
            f"; pad == eos ({facts.name(facts.pad_id)}), so it learns to emit EOS runs, and masking every pad "
            "id would mask the answer's EOS too: use a distinct pad token, or mask labels where attention_mask is 0"
        )
    found = finding("pad-trained", trained, message)
    return [replace(found, severity="error") if same else found]


# what still holds for ids from another tokenizer; the rest (BOS, EOS, turns) only follows from the foreign ids
BESIDES_FOREIGN = frozenset({"id-beyond-tokenizer", "nothing-trained", "labels-pre-shifted", "too-long", "truncated"})


def with_foreign_ids(tokenizer: Any, sample: Sample, findings: list[Finding]) -> list[Finding]:
    """An ids row made by another tokenizer (engine.lints.foreign_ids): `foreign-ids` instead of the findings that
    only follow from it."""
    if sample.kind not in ("ids", "batch row"):
        return findings
    facts = tokenizer_facts(tokenizer)
    message = foreign_message(tokenizer, sample.input_ids, _recovered(sample) is not None, facts.specials)
    if message is None:
        return findings
    foreign = finding("foreign-ids", (), message)
    return [foreign, *(f for f in findings if f.code in BESIDES_FOREIGN)]
