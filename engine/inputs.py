"""Build a `Sample` from what the user has: text, prompt + answer, chat messages, or a trainer's ids/labels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tokstep.engine.errors import TokstepError
from tokstep.engine.sample import IGNORE_INDEX, MaskReason, Sample

Toggle = Literal["auto", "add", "none"]


@dataclass(frozen=True)
class SampleSpec:
    """What the user asked for, before tokenization (one of text / prompt+answer / chat / ids)."""

    text: str | None = None
    prompt: str | None = None
    answer: str | None = None
    chat: tuple[dict[str, Any], ...] | None = None
    ids: dict[str, Any] | None = None
    bos: Toggle = "auto"  # auto: whatever the tokenizer does by default
    eos: Toggle = "auto"  # auto: the tokenizer's default for text, added after an answer
    truncate: int | None = None  # keep only the first N tokens
    name: str = "sample"


def build_sample(spec: SampleSpec, tokenizer: Any) -> Sample:
    """Dispatch on which field of the spec is set."""
    if spec.ids is not None:
        sample = from_ids(spec.ids, name=spec.name, pad_id=tokenizer.pad_token_id)
    elif spec.chat is not None:
        sample = from_chat(tokenizer, list(spec.chat), name=spec.name)
    elif spec.prompt is not None or spec.answer is not None:
        if spec.prompt is None or spec.answer is None:
            raise TokstepError("--prompt and --answer go together: give both")
        eos: Toggle = "add" if spec.eos == "auto" else spec.eos
        sample = from_prompt_answer(
            tokenizer, spec.prompt, spec.answer, bos=spec.bos, eos=eos, name=spec.name
        )
    elif spec.text is not None:
        sample = from_text(tokenizer, spec.text, bos=spec.bos, eos=spec.eos, name=spec.name)
    else:
        raise TokstepError("no sample given: pass --text, --file, --prompt/--answer, --chat or --ids")
    return truncate(sample, spec.truncate) if spec.truncate else sample


def _encode(tokenizer: Any, text: str, *, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _apply_toggles(tokenizer: Any, ids: list[int], bos: Toggle, eos: Toggle) -> list[int]:
    bos_id, eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos == "add" and bos_id is not None and (not ids or ids[0] != bos_id):
        ids = [bos_id, *ids]
    if bos == "none" and bos_id is not None:
        while ids and ids[0] == bos_id:
            ids = ids[1:]
    if eos == "add" and eos_id is not None and (not ids or ids[-1] != eos_id):
        ids = [*ids, eos_id]
    if eos == "none" and eos_id is not None:
        while ids and ids[-1] == eos_id:
            ids = ids[:-1]
    return ids


def _reasons_for(
    labels: np.ndarray, ids: np.ndarray, masked_as: MaskReason, pad_id: int | None
) -> list[MaskReason]:
    reasons = []
    for i, (label, token) in enumerate(zip(labels, ids, strict=True)):
        if i == 0:
            reasons.append(MaskReason.FIRST)
        elif label != IGNORE_INDEX:
            reasons.append(MaskReason.SUPERVISED)
        elif pad_id is not None and token == pad_id and masked_as is not MaskReason.PROMPT:
            reasons.append(MaskReason.PAD)
        else:
            reasons.append(masked_as)
    return reasons


def _make(
    ids: list[int], supervised: list[bool], kind: str, name: str, masked_as: MaskReason, **extra: Any
) -> Sample:
    input_ids = np.asarray(ids, dtype=np.int64)
    labels = np.where(np.asarray(supervised, dtype=bool), input_ids, IGNORE_INDEX).astype(np.int64)
    reasons = _reasons_for(labels, input_ids, masked_as, None)
    return Sample(input_ids, labels, tuple(reasons), kind=kind, name=name, **extra)


def _require_tokens(ids: list[int], what: str) -> None:
    if not ids:
        raise TokstepError(f"{what} is empty: nothing to predict")
    if len(ids) == 1:
        raise TokstepError(f"{what} is a single token: nothing to predict (need at least 2)")


def from_text(
    tokenizer: Any, text: str, *, bos: Toggle = "auto", eos: Toggle = "auto", name: str = "text"
) -> Sample:
    """Plain text, every token supervised (labels = input_ids), BOS/EOS as the tokenizer adds them by default."""
    if not text:
        raise TokstepError("the text is empty: nothing to predict")
    ids = _apply_toggles(tokenizer, _encode(tokenizer, text, special=True), bos, eos)
    _require_tokens(ids, "the text")
    return _make(ids, [True] * len(ids), "text", name, MaskReason.GIVEN)


def from_prompt_answer(
    tokenizer: Any,
    prompt: str,
    answer: str,
    *,
    bos: Toggle = "auto",
    eos: Toggle = "add",
    name: str = "prompt+answer",
) -> Sample:
    """Prompt tokens masked (-100), answer tokens (and the EOS after them, by default) supervised.

    The two parts are tokenized separately and concatenated, as SFT pipelines do, so the boundary is exact.
    """
    if not answer:
        raise TokstepError("the answer is empty: nothing to supervise")
    prompt_ids = _apply_toggles(tokenizer, _encode(tokenizer, prompt, special=True), bos, "none")
    answer_ids = _apply_toggles(tokenizer, _encode(tokenizer, answer, special=False), "none", eos)
    ids = prompt_ids + answer_ids
    _require_tokens(ids, "the prompt + answer")
    supervised = [False] * len(prompt_ids) + [True] * len(answer_ids)
    return _make(ids, supervised, "prompt+answer", name, MaskReason.PROMPT)


def _chat_render(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _message_spans(
    tokenizer: Any, messages: list[dict[str, Any]]
) -> tuple[str, list[tuple[int, int, str, bool]]]:
    """Render the chat; for each message, the char span its turn adds and whether it is its content span.

    Returns (rendered, [(start, end, role, is_content)]). Assistant spans run from the end of the generation
    prompt to the end of the turn (content + end-of-turn token), trailing whitespace excluded.
    """
    rendered = _chat_render(tokenizer, messages)
    spans: list[tuple[int, int, str, bool]] = []
    for i, message in enumerate(messages):
        role, content = message.get("role", ""), message.get("content") or ""
        if role == "assistant":
            before = _chat_render(tokenizer, messages[:i], generation_prompt=True) if i else ""
            after = _chat_render(tokenizer, messages[: i + 1])
            if not rendered.startswith(before) or not rendered.startswith(after):
                raise TokstepError(
                    "cannot find the assistant turns: this chat template does not render prefixes consistently "
                    "and has no {% generation %} markers (pass --ids with your own labels instead)"
                )
            spans.append((len(before), len(after.rstrip()), role, True))
        elif isinstance(content, str) and content:
            start = rendered.find(content, spans[-1][1] if spans else 0)
            if start >= 0:
                spans.append((start, start + len(content), role, True))
    return rendered, spans


def from_chat(tokenizer: Any, messages: list[dict[str, Any]], *, name: str = "chat") -> Sample:
    """Chat through the tokenizer's template; only assistant turns are supervised.

    Uses the template's `{% generation %}` mask when it has one; otherwise derives the assistant spans by
    rendering the conversation prefix by prefix. Never returns an all-masked sample silently.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise TokstepError(
            "the tokenizer has no chat template: pass the conversation as --text or --ids instead"
        )
    _check_messages(messages)
    if not any(m.get("role") == "assistant" for m in messages):
        raise TokstepError("the chat has no assistant message: nothing would be supervised")
    rendered, spans = _message_spans(tokenizer, messages)
    encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), list(encoded["offset_mapping"])
    mask = _generation_mask(tokenizer, messages, ids)
    notes: tuple[str, ...]
    if mask is not None:
        supervised = mask
        notes = ("assistant tokens from the template's {% generation %} mask",)
    else:
        starts = np.fromiter((start for start, _ in offsets), dtype=np.int64, count=len(offsets))
        in_assistant = np.zeros(len(offsets), dtype=bool)
        for s, e, role, _ in spans:
            if role == "assistant":
                in_assistant |= (starts >= s) & (starts < e)
        supervised = in_assistant.tolist()
        notes = (
            "assistant tokens derived from the rendered turns (the template has no {% generation %} mask)",
        )
    _require_tokens(ids, "the chat")
    if not any(supervised[1:]):
        raise TokstepError("the chat template left no assistant token supervised (all labels would be -100)")
    input_ids = np.asarray(ids, dtype=np.int64)
    labels = np.where(np.asarray(supervised, dtype=bool), input_ids, IGNORE_INDEX).astype(np.int64)
    reasons = _chat_reasons([start for start, _ in offsets], supervised, spans)
    return Sample(input_ids, labels, reasons, kind="chat", name=name, notes=notes)


def _chat_reasons(
    starts: list[int], supervised: list[bool], spans: list[tuple[int, int, str, bool]]
) -> tuple[MaskReason, ...]:
    """Why each chat token is masked: the role of the first span (in turn order) holding its first
    character (system / user turn), template markup otherwise."""
    first = np.asarray(starts, dtype=np.int64)  # (N,)
    role = np.full(len(first), -1, dtype=np.int64)  # (N,) index of the first span holding the token
    for number, (s, e, _role, _content) in enumerate(spans):
        role[(role < 0) & (first >= s) & (first < e)] = number
    kinds = (MaskReason.TEMPLATE, MaskReason.SYSTEM, MaskReason.USER, MaskReason.SUPERVISED, MaskReason.FIRST)
    span_kind = np.asarray([{"system": 1, "user": 2}.get(r, 0) for _s, _e, r, _c in spans] + [0])  # (S+1,)
    code = span_kind[role]  # (N,) role -1 picks the trailing 0: template markup
    code[np.asarray(supervised, dtype=bool)] = 3
    code[:1] = 4
    return tuple(kinds[c] for c in code.tolist())


def _generation_mask(tokenizer: Any, messages: list[dict[str, Any]], ids: list[int]) -> list[bool] | None:
    """The template's own assistant mask, or None when it has no generation markers (or disagrees on ids)."""
    if "generation" not in (tokenizer.chat_template or ""):
        return None
    try:
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
    except Exception:  # noqa: BLE001 - fall back to deriving the spans
        return None
    mask = [bool(m) for m in out.get("assistant_masks", [])]
    if list(out["input_ids"]) != ids or not any(mask):
        return None
    return mask


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise TokstepError('a chat must be a non-empty JSON list of {"role": ..., "content": ...} messages')
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise TokstepError(f'chat message {i} must be an object with "role" and "content"')


def _as_int_list(value: Any, key: str) -> list[int]:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]  # a batch of one, as trainers often save it
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TokstepError(f'"{key}" must be a list of integers')
    return value


def from_ids(data: dict[str, Any], *, name: str = "ids", pad_id: int | None = None) -> Sample:
    """A trainer's exact `input_ids` / `labels` (labels default to input_ids), taken verbatim."""
    if not isinstance(data, dict) or "input_ids" not in data:
        raise TokstepError(
            '--ids expects a JSON object with "input_ids" (and optionally "labels", "attention_mask")'
        )
    ids = _as_int_list(data["input_ids"], "input_ids")
    labels = _as_int_list(data["labels"], "labels") if data.get("labels") is not None else list(ids)
    if len(labels) != len(ids):
        raise TokstepError(f"labels has {len(labels)} entries but input_ids has {len(ids)}: they must match")
    _require_tokens(ids, "input_ids")
    attention = None
    if data.get("attention_mask") is not None:
        mask = _as_int_list(data["attention_mask"], "attention_mask")
        if len(mask) != len(ids):
            raise TokstepError(f"attention_mask has {len(mask)} entries but input_ids has {len(ids)}")
        if not all(m in (0, 1) for m in mask):
            raise TokstepError("attention_mask must contain only 0 and 1")
        if 0 in mask:
            attention = np.asarray(mask, dtype=np.int64)
    input_ids = np.asarray(ids, dtype=np.int64)
    label_array = np.asarray(labels, dtype=np.int64)
    reasons = _reasons_for(label_array, input_ids, MaskReason.GIVEN, pad_id)
    if attention is not None:
        reasons = [
            MaskReason.PAD if (a == 0 and r is not MaskReason.SUPERVISED) else r
            for a, r in zip(attention, reasons, strict=True)
        ]
    return Sample(input_ids, label_array, tuple(reasons), kind="ids", name=name, attention_mask=attention)


def truncate(sample: Sample, max_tokens: int) -> Sample:
    """Keep the first `max_tokens` tokens (the user asked for it; recorded in `truncated_from`)."""
    if max_tokens < 2:
        raise TokstepError("--truncate must keep at least 2 tokens")
    if len(sample) <= max_tokens:
        return sample
    return Sample(
        sample.input_ids[:max_tokens].copy(),
        sample.labels[:max_tokens].copy(),
        sample.mask_reasons[:max_tokens],
        kind=sample.kind,
        name=sample.name,
        attention_mask=None if sample.attention_mask is None else sample.attention_mask[:max_tokens].copy(),
        truncated_from=len(sample),
        notes=sample.notes,
    )


def read_json(path: str | Path, what: str) -> Any:
    """Read a JSON file given on the command line; every failure is one line."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokstepError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TokstepError(f"cannot read {what} file {path}: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise TokstepError(
            f"{what} file {path} is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None


def read_text(path: str | Path) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokstepError(f"text file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TokstepError(f"cannot read text file {path}: {error}") from None
