"""Build a `Sample` from what the user has: text, prompt + answer, chat messages, or a trainer's ids/labels."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

import tokstep.engine.inputs.json_text as json_text
from tokstep.engine.chat.masks import Policy, derive
from tokstep.engine.chat.structure import recover_layout
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.prefix import encode_prefix, prefix_chars
from tokstep.engine.inputs.sample import COUNTED, IGNORE_INDEX, MaskReason, Sample

if TYPE_CHECKING:
    from tokstep.engine.chat.structure import TurnLayout

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
    eot: Policy = "train"  # chat: train the end-of-turn token(s) after an assistant turn, or mask them
    inserted: Policy = (
        "train"  # chat: train tokens the template inserts inside an assistant turn, or mask them
    )


def _check_unicode(value: Any, what: str) -> None:
    try:
        json_text.check_text(value, what)
    except json_text.UnusableJson as error:
        raise TokstepError(str(error)) from None


def build_sample(spec: SampleSpec, tokenizer: Any, max_tokens: int | None = None) -> Sample:
    """Dispatch on which field of the spec is set.

    `max_tokens` (the model's positions): a text or chat far longer than that is rejected from its size
    alone, before it is tokenized or rendered (a 10 MB chat would otherwise take minutes and gigabytes).
    """
    for what, value in (("the text", spec.text), ("the prompt", spec.prompt), ("the answer", spec.answer)):
        if value is not None:
            _check_unicode(value, what)
    if spec.chat is not None:
        _check_unicode(spec.chat, "the chat")
    if max_tokens is not None and spec.truncate is None:
        reject_far_too_long(spec, tokenizer, max_tokens)
    if spec.ids is not None:
        sample = from_ids(spec.ids, name=spec.name, pad_id=tokenizer.pad_token_id)
    elif spec.chat is not None:
        sample = from_chat(
            tokenizer,
            list(spec.chat),
            name=spec.name,
            eot=spec.eot,
            inserted=spec.inserted,
            keep=spec.truncate,
        )
    elif spec.prompt is not None or spec.answer is not None:
        if spec.prompt is None or spec.answer is None:
            raise TokstepError("--prompt and --answer go together: give both")
        eos: Toggle = "add" if spec.eos == "auto" else spec.eos
        sample = from_prompt_answer(
            tokenizer, spec.prompt, spec.answer, bos=spec.bos, eos=eos, name=spec.name
        )
    elif spec.text is not None:
        sample = _text_prefix(tokenizer, spec) or from_text(
            tokenizer, spec.text, bos=spec.bos, eos=spec.eos, name=spec.name
        )
    else:
        raise TokstepError("no sample given: pass --text, --file, --prompt/--answer, --chat or --ids")
    sample = truncate(sample, spec.truncate) if spec.truncate else sample
    if sample.kind == "ids":
        return with_layout(sample, tokenizer, eot=spec.eot, inserted=spec.inserted)
    return sample


def kept_spec(spec: SampleSpec) -> SampleSpec:
    """With --truncate: the spec's texts cut to what the checks of the kept tokens read (never a whole
    12 MB input encoded again by a lint)."""
    if not spec.truncate:
        return spec
    chars = prefix_chars(spec.truncate)
    cut: dict[str, Any] = {
        k: getattr(spec, k)[:chars] for k in ("text", "prompt", "answer") if getattr(spec, k)
    }
    if spec.chat is not None:
        cut["chat"] = _kept_chat(spec.chat, chars)
    return replace(spec, **cut)


_CUT_KEYS = ("content", "reasoning_content", "reasoning", "thinking")  # a message's texts a lint reads


def _kept_chat(chat: tuple[Any, ...], chars: int) -> tuple[Any, ...]:
    """A chat's message texts cut to `chars` characters in all (a later text gets what earlier ones left), for
    the checks of a truncated chat; its kept tokens are built from the whole chat (`from_chat` with `keep`)."""
    left = chars

    def cut(text: Any) -> Any:
        nonlocal left
        if not isinstance(text, str):
            return text
        text = text[:left]
        left -= len(text)
        return text

    kept = []
    for message in chat:
        if isinstance(message, dict):
            message = {k: cut(v) if k in _CUT_KEYS else v for k, v in message.items()}
            if isinstance(message.get("content"), list):
                parts = message["content"]
                message["content"] = [
                    {**p, "text": cut(p["text"])} if isinstance(p, dict) and "text" in p else p for p in parts
                ]
        kept.append(message)
    return tuple(kept)


def _text_prefix(tokenizer: Any, spec: SampleSpec) -> Sample | None:
    """With --truncate N, a long text is tokenized a growing prefix at a time instead of whole (a 12 MB file
    kept to 50 tokens took a minute and gigabytes). None: the text is short, tokenize it whole."""
    if not spec.truncate:
        return None
    cut = encode_prefix(
        lambda prefix: from_text(tokenizer, prefix, bos=spec.bos, eos="none", name=spec.name),
        len,
        spec.text or "",
        spec.truncate,
    )
    return None if cut is None else replace(cut[0], truncated_prefix=True)  # cut to `keep` by the caller


def with_layout(
    sample: Sample, tokenizer: Any, *, eot: Policy = "train", inserted: Policy = "train"
) -> Sample:
    """An ids row with its chat turns recovered from the template (when it has one and they are found); the
    expected mask follows the convention with these flags (`--eot`, `--inserted`, as for chats).

    Masked tokens then get the reason a chat built from messages would give them (user turn, template
    markup...); a masked token the structure expects trained keeps "masked in your labels" (GIVEN).
    """

    layout = recover_layout(tokenizer, sample.input_ids, eot=eot, inserted=inserted)
    return sample if layout is None else apply_layout(sample, layout)


KEPT_REASONS = (MaskReason.PAD, MaskReason.FIRST, MaskReason.DOCUMENT)


def apply_layout(sample: Sample, layout: TurnLayout) -> Sample:
    """`sample` with `layout` attached and the mask reasons a chat built from messages would give (padding,
    the first token, a packed document's start and labels the structure expects otherwise keep their own)."""
    reasons = list(layout.reasons())
    for i, given in enumerate(sample.mask_reasons):
        if given in KEPT_REASONS or given.counted != reasons[i].counted:
            reasons[i] = given  # padding, or a label the structure expects otherwise: the user's own word
    return replace(sample, mask_reasons=tuple(reasons), layout=layout)


def _text_bytes(spec: SampleSpec) -> int:
    """UTF-8 bytes of all the text a spec holds (message contents included)."""
    parts: list[Any] = [spec.text, spec.prompt, spec.answer]
    for message in spec.chat or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
            parts += [part.get("text") for part in content if isinstance(part, dict)]
        else:
            parts.append(content)
    return sum(len(p.encode("utf-8", "surrogatepass")) for p in parts if isinstance(p, str))


_PIECE_BYTES: dict[int, tuple[Any, int]] = {}  # id(tokenizer) -> (tokenizer, longest piece in UTF-8 bytes)


def longest_piece_bytes(tokenizer: Any) -> int:
    """The most UTF-8 bytes one vocabulary piece spells (its raw form: an upper bound on the text it covers)."""
    cached = _PIECE_BYTES.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    longest = max((len(p.encode("utf-8", "surrogatepass")) for p in pieces if isinstance(p, str)), default=1)
    if len(_PIECE_BYTES) > 8:
        _PIECE_BYTES.clear()
    _PIECE_BYTES[id(tokenizer)] = (tokenizer, max(longest, 1))
    return _PIECE_BYTES[id(tokenizer)][1]


def reject_far_too_long(spec: SampleSpec, tokenizer: Any, max_tokens: int) -> None:
    """Refuse, from its size alone, a text that must tokenize to more than `max_tokens` tokens.

    No token spells more bytes than the longest vocabulary piece, so a text of B bytes has at least
    B / longest tokens; a margin of 2 allows for normalizers that drop characters.
    """
    size = _text_bytes(spec)
    if size <= 2 * max_tokens * 16:  # small: no need to look at the vocabulary
        return
    at_least = size // (2 * longest_piece_bytes(tokenizer))
    if at_least > max_tokens:
        raise TokstepError(
            f"the sample is {size:,} bytes of text, at least {at_least:,} tokens, but the model accepts at "
            f"most {max_tokens} positions (pass --truncate {max_tokens} to keep the first {max_tokens})"
        )


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
    notes: tuple[str, ...] = ()
    if text.startswith("\ufeff"):
        notes = (
            "the text starts with a UTF-8 BOM: kept and tokenized as U+FEFF, as Python's utf-8 codec reads it",
        )
    return _make(ids, [True] * len(ids), "text", name, MaskReason.GIVEN, notes=notes)


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


def from_chat(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    *,
    name: str = "chat",
    eot: Policy = "train",
    inserted: Policy = "train",
    keep: int | None = None,
) -> Sample:
    """Chat through the tokenizer's template, masked by tokstep's convention (`tokstep.engine.chat.masks`).

    `keep` (--truncate): a long rendering is tokenized only as far as the first `keep` tokens need (the
    sample then ends past them, to be cut by `truncate`). Never returns an all-masked sample silently.
    """
    layout = derive(tokenizer, messages, eot=eot, inserted=inserted, keep=keep)
    ids = list(layout.ids)
    _require_tokens(ids, "the chat")
    supervised = np.fromiter(map(COUNTED.__contains__, layout.reasons), dtype=bool, count=len(layout.reasons))
    if keep and layout.prefix_chars is not None and not supervised[1:keep].any():
        trained = np.flatnonzero(supervised[1:])
        first = (
            f"the first is token {trained[0] + 1}; keep at least {trained[0] + 2} tokens"
            if trained.size
            else f"none in its first {len(ids)}"
        )
        raise TokstepError(
            f"--truncate {keep} cuts off every supervised token of the chat: nothing would be counted ({first})"
        )
    if not supervised[1:].any():
        raise TokstepError("the chat template left no assistant token supervised (all labels would be -100)")
    input_ids = np.asarray(ids, dtype=np.int64)
    labels = np.where(supervised, input_ids, IGNORE_INDEX).astype(np.int64)
    return Sample(
        input_ids,
        labels,
        layout.reasons,
        kind="chat",
        name=name,
        notes=layout.notes,
        layout=layout.turn_layout,
        truncated_prefix=layout.prefix_chars is not None,
    )


def as_int_list(value: Any, key: str, error: type[Exception] = TokstepError) -> list[int]:
    """A JSON list of integer ids (a batch of one, `[[...]]`, unwrapped); anything else raises `error`."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]  # a batch of one, as trainers often save it
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise error(f'"{key}" must be a list of integers')
    too_big = next((i for i, v in enumerate(value) if not -(2**63) <= v < 2**63), None)
    if too_big is not None:
        raise error(f"{key}[{too_big}] = {str(value[too_big])[:30]} is not a token id (too large)")
    return value


def from_ids(data: dict[str, Any], *, name: str = "ids", pad_id: int | None = None) -> Sample:
    """A trainer's exact `input_ids` / `labels` (labels default to input_ids), taken verbatim."""
    if not isinstance(data, dict) or "input_ids" not in data:
        raise TokstepError(
            '--ids expects a JSON object with "input_ids" (and optionally "labels", "attention_mask")'
        )
    ids = as_int_list(data["input_ids"], "input_ids")
    labels = as_int_list(data["labels"], "labels") if data.get("labels") is not None else list(ids)
    if len(labels) != len(ids):
        raise TokstepError(f"labels has {len(labels)} entries but input_ids has {len(ids)}: they must match")
    _require_tokens(ids, "input_ids")
    attention = None
    if data.get("attention_mask") is not None:
        mask = as_int_list(data["attention_mask"], "attention_mask")
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


def reject_negative_ids(sample: Sample) -> None:
    """What no model accepts, checked without one: a negative input id, a negative label other than -100.
    (The lints report the same as `id-beyond-tokenizer`, with positions, for rows of a data file.)"""
    negative = np.flatnonzero(sample.input_ids < 0)
    if negative.size:
        i = int(negative[0])
        raise TokstepError(f"input_ids[{i}] = {int(sample.input_ids[i])} is negative: not a token id")
    odd = np.flatnonzero((sample.labels < 0) & (sample.labels != IGNORE_INDEX))
    if odd.size:
        i = int(odd[0])
        raise TokstepError(f"labels[{i}] = {int(sample.labels[i])}: a label is a token id or -100 (ignored)")


def truncate(sample: Sample, max_tokens: int) -> Sample:
    """Keep the first `max_tokens` tokens (the user asked for it; recorded in `truncated_from`).

    A cut that leaves no supervised target where the whole sample had some is an error: the loss would be
    undefined because of the flag, not because of the data.
    """
    if max_tokens < 2:
        raise TokstepError("--truncate must keep at least 2 tokens")
    if len(sample) <= max_tokens:
        return sample
    supervised = np.flatnonzero(sample.labels[1:] != IGNORE_INDEX)  # (n,) targets t+1 that count
    if supervised.size and supervised[0] + 1 >= max_tokens:
        first = int(supervised[0]) + 1
        raise TokstepError(
            f"--truncate {max_tokens} cuts off every supervised token (the first is token {first} of "
            f"{len(sample)}): nothing would be counted; keep at least {first + 1} tokens"
        )
    return Sample(
        sample.input_ids[:max_tokens].copy(),
        sample.labels[:max_tokens].copy(),
        sample.mask_reasons[:max_tokens],
        kind=sample.kind,
        name=sample.name,
        attention_mask=None if sample.attention_mask is None else sample.attention_mask[:max_tokens].copy(),
        truncated_from=len(sample),
        truncated_prefix=sample.truncated_prefix,
        notes=sample.notes,
    )


MAX_SAMPLE_FILE = 64 << 20  # bytes: one sample's file; more is a mistake (or /dev/zero), not a sample


def read_bounded(
    path: str | Path, what: str, limit: int = MAX_SAMPLE_FILE, too_large: str = "not one sample"
) -> bytes:
    """A sample file's bytes, at most `limit` of them, its size checked before it is read; every failure is
    one line. A device (/dev/zero, or a link to it) is refused; a pipe is read up to the limit."""
    target = Path(path).expanduser()
    try:
        mode = target.stat()
        if stat.S_ISCHR(mode.st_mode) or stat.S_ISBLK(mode.st_mode):
            raise TokstepError(f"{what} file {path} is a device, not a file")
        if stat.S_ISREG(mode.st_mode) and mode.st_size > limit:
            raise TokstepError(f"{what} file {path} is larger than {limit >> 20} MiB: {too_large}")
        with target.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise TokstepError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise TokstepError(f"{path} is a folder, not a {what} file") from None
    except OSError as error:
        raise TokstepError(f"cannot read {what} file {path}: {error.strerror or error}") from None
    if len(data) > limit:
        raise TokstepError(f"{what} file {path} is larger than {limit >> 20} MiB: {too_large}")
    return data


def read_json(path: str | Path, what: str) -> Any:
    """Read a JSON file given on the command line; every failure is one line."""
    data = read_bounded(path, what)
    text = decode_utf8(data.removeprefix(UTF8_BOM), f"{what} file {path}")  # a BOM is not JSON content
    try:
        return json_text.loads(text)
    except json.JSONDecodeError as error:
        raise TokstepError(
            f"{what} file {path} is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    except json_text.UnusableJson as error:
        raise TokstepError(f"{what} file {path} {error}") from None
    except RecursionError:
        raise TokstepError(f"{what} file {path} is nested too deeply to read") from None


UTF8_BOM = b"\xef\xbb\xbf"


def decode_utf8(data: bytes, what: str) -> str:
    """Strict UTF-8, every byte kept (CRLF / CR stay as they are); an invalid byte is one line naming its offset.

    A UTF-8 BOM (EF BB BF) at the start is kept too, as the character U+FEFF, exactly as Python's "utf-8" codec
    (and so `open(..., encoding="utf-8")`, `datasets`) hands it to a tokenizer.
    """
    try:
        return data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as error:
        bad = data[error.start : error.end].hex(" ")
        raise TokstepError(
            f"{what} is not valid UTF-8: byte {error.start} (0x{bad}) {error.reason}"
        ) from None


def read_text(path: str | Path) -> str:
    """A text file exactly as its bytes say: read in binary, decoded as strict UTF-8, no newline translation."""
    return decode_utf8(read_bounded(path, "text"), f"text file {path}")
