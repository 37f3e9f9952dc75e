"""Lint many rows fast: render each chat once, batch-encode with the tokenizers library, then run the very
same per-row code (`lints.lint_row`) against a caching stand-in for the tokenizer.

The per-row path renders a two-turn chat about eleven times (`apply_chat_template` from `from_chat`, the
prefix renders that find the assistant spans, the `{% generation %}` mask, the boundary lint...) and
encodes the same rendered text three times. `BatchTokenizer` answers those calls from caches filled once
per batch of rows: one render (with the template's generation indices) per distinct conversation prefix,
one `encode_batch` for every rendered chat / text of the batch. Everything else is forwarded to the real
tokenizer, so the findings are exactly those of the per-row path (tested on hundreds of rows).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np

import tokstep.engine.lints.tokenizer_differs as lints
from tokstep.engine.chat.masks import OFFSET_ARRAY, offset_array
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.data import DataRow
from tokstep.engine.inputs.spec import reject_far_too_long
from tokstep.engine.lints.direct_render import DirectRenderer
from tokstep.engine.lints.facts import tokenizer_facts
from tokstep.engine.lints.length import max_positions_for
from tokstep.engine.lints.rows import RowLint, lint_row

GENERATION_TAG = re.compile(r"\{\%-?\s*generation\s*-?\%\}")


def _template_tools() -> tuple[Any, Any] | None:
    """transformers' own renderer and message normalizer (internal API: None when they moved)."""
    try:
        # lazy: loads transformers
        from transformers.utils.chat_template_utils import _normalize_chat_messages, render_jinja_template
    except ImportError:
        return None
    return render_jinja_template, _normalize_chat_messages


class BatchTokenizer:
    """A stand-in for a Hugging Face fast tokenizer that caches renders and encodings for one batch of rows.

    Only the exact calls the lints make are answered from the caches; any other call, or a tokenizer
    without the tokenizers library behind it, goes to the real tokenizer. Call `prepare(rows)` before
    linting a batch and `clear()` after (cache keys use the identity of the batch's message dicts).
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        template = getattr(tokenizer, "chat_template", None)
        self._template = template if isinstance(template, str) else None
        self._marks = bool(self._template and GENERATION_TAG.search(self._template))
        self._tools = _template_tools() if self._template else None
        backend = getattr(tokenizer, "_tokenizer", None)
        self._backend = backend if hasattr(backend, "encode_batch") else None
        self._renders: dict[tuple[tuple[int, ...], bool], tuple[str, list[tuple[int, int]] | None]] = {}
        self._encodings: dict[tuple[str, bool], dict[str, list[Any]]] = {}
        self._alive: list[list[Any]] = []  # the message lists keyed by id in `_renders`, kept alive
        self._raw: _RawEncodings | bool | None = None  # None: not looked for yet; False: there is none
        self._direct: DirectRenderer | None = None  # made at the first render
        self._direct_checked = False  # this batch's first direct render was compared with the usual one

    @property
    def wrapped(self) -> Any:
        return self._tok

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)

    def __len__(self) -> int:
        return len(self._tok)

    # -- caches ------------------------------------------------------------------------------------------

    def warm(self) -> None:
        """Work out now what every batch needs (the tokenizer's facts, tokenizer.json and whether it matches),
        so that processes forked after this start with it done."""
        with contextlib.suppress(Exception):  # best effort: the first batch does (and reports) it otherwise
            tokenizer_facts(self)
            if self._backend is not None:
                self._prepare_raw([], [])
        self.clear()  # the probes' renders: a batch starts with empty caches

    def clear(self) -> None:
        self._direct_checked = False
        self._renders.clear()
        self._alive.clear()
        self._encodings.clear()
        if self._raw:
            self._raw.cache.clear()

    def prepare(self, rows: Sequence[DataRow]) -> None:
        """Render every chat of `rows` once and encode all their texts in one `encode_batch` per flag."""
        if self._backend is None:
            return
        plain: list[str] = []  # encoded without special tokens
        special: list[str] = []  # with them (text, prompt: as the tokenizer adds them by default)
        limit = max_positions_for(self)
        for row in rows:
            spec = row.spec
            if spec is None or spec.ids is not None or spec.truncate:
                continue  # ids, or --truncate: the row's own build tokenizes only the prefix it keeps
            if limit is not None:
                try:
                    reject_far_too_long(spec, self, limit)
                except TokstepError:
                    continue  # the row's own build refuses it, from its size
            if spec.chat is not None:
                try:
                    plain.append(self._render(list(spec.chat), False, spans=True)[0])
                except Exception:  # noqa: BLE001 - the per-row path reports it, row by row
                    continue
            elif spec.prompt is not None and spec.answer is not None:
                special.append(spec.prompt)
                plain.append(spec.answer)
            elif spec.text is not None:
                special.append(spec.text)
        for texts, flag in ((plain, False), (special, True)):
            todo = [t for t in dict.fromkeys(texts) if (t, flag) not in self._encodings]
            if not todo:
                continue
            for text, encoding in zip(
                todo, self._backend.encode_batch(todo, add_special_tokens=flag), strict=True
            ):
                offsets = encoding.offsets  # [(start, end)] of Python ints
                self._encodings[(text, flag)] = {
                    "input_ids": encoding.ids,
                    "offset_mapping": offsets,
                    OFFSET_ARRAY: offset_array(offsets),  # (N, 2) the same, made once for every reader
                }
        self._prepare_raw(plain, special)

    def _prepare_raw(self, plain: list[str], special: list[str]) -> None:
        """The `library` lint encodes every text again with tokenizer.json read by the tokenizers library:
        batch that too (behind the same per-tokenizer slot the lint reads it from). When tokenizer.json
        serializes to exactly what transformers' backend holds (checked once per tokenizer), the two encode
        every text alike, so the backend's encodings of `plain` (same flag) are reused, not recomputed."""

        if self._raw is None:
            raw = lints.raw_tokenizer(self._tok)  # loaded once per tokenizer, whatever wraps it
            self._raw = _RawEncodings(raw) if raw is not None else False
            if raw is not None:
                lints._RAW[self] = self._raw
                self._raw.same = _same_tokenizer(self._tok, raw, self._backend)
        if not self._raw:
            return
        todo = list(dict.fromkeys([*plain, *special]))
        if self._raw.same:
            for text in plain:
                hit = self._encodings.get((text, False))
                if hit is not None:
                    self._raw.cache[(text, False)] = _Ids(hit["input_ids"])
            todo = [t for t in todo if (t, False) not in self._raw.cache]
        if todo:
            encoded = self._raw.raw.encode_batch(todo, add_special_tokens=False)
            for text, encoding in zip(todo, encoded, strict=True):
                self._raw.cache[(text, False)] = encoding

    def _render(
        self, messages: list[Any], generation_prompt: bool, spans: bool = False
    ) -> tuple[str, list[tuple[int, int]] | None]:
        """The chat rendered (cached per batch); with the `{% generation %}` spans when `spans` and the
        template has them (a plain render otherwise: probes need only the text)."""
        key = (tuple(map(id, messages)), generation_prompt)
        hit = self._renders.get(key)
        marks = self._tools is not None and self._marks and not generation_prompt
        if hit is None or (spans and marks and hit[1] is None):
            hit = self._direct_render(messages, generation_prompt, spans and marks)
            if hit is None:
                hit = self._usual_render(messages, generation_prompt, spans and marks)
            self._renders[key] = hit
            self._alive.append(messages)  # the ids in the key stay this batch's messages' until clear()
        return hit

    def _usual_render(
        self, messages: list[Any], generation_prompt: bool, spans: bool
    ) -> tuple[str, list[tuple[int, int]] | None]:
        """The render as transformers does it (apply_chat_template; with spans, its renderer)."""
        if spans:
            assert self._tools is not None
            render, normalize = self._tools
            texts, indices = render(
                conversations=[normalize(messages)],
                tools=None,
                documents=None,
                chat_template=self._template,
                return_assistant_tokens_mask=True,
                add_generation_prompt=False,
                **self._tok.special_tokens_map,
            )
            return texts[0], [tuple(span) for span in indices[0]]
        return self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt), None

    def _direct_render(
        self, messages: list[Any], generation_prompt: bool, spans: bool
    ) -> tuple[str, list[tuple[int, int]] | None] | None:
        """The same render through the compiled template (plain chats only: engine.lints.direct_render); the
        first of every batch is checked against the usual render, and a difference turns this off."""
        if self._direct is None:
            assert self._template is not None
            self._direct = DirectRenderer(self._template, self._tok.special_tokens_map)
        hit = self._direct.render(messages, generation_prompt, spans)
        if hit is not None and not self._direct_checked:
            self._direct_checked = True
            usual = self._usual_render(messages, generation_prompt, spans)
            if usual != hit:
                self._direct.enabled = False
                return usual
        return hit

    # -- the calls the lints make -----------------------------------------------------------------------

    def __call__(self, text: Any, add_special_tokens: bool = True, **kwargs: Any) -> Any:
        if isinstance(text, str) and set(kwargs) <= {"return_offsets_mapping"}:
            hit = self._encodings.get((text, bool(add_special_tokens)))
            if hit is not None:
                return hit
        return self._tok(text, add_special_tokens=add_special_tokens, **kwargs)

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        generation_prompt = bool(kwargs.pop("add_generation_prompt", False))
        if self._template is None or not isinstance(conversation, list):
            return self._tok.apply_chat_template(
                conversation, add_generation_prompt=generation_prompt, **kwargs
            )
        if kwargs == {"tokenize": False}:
            return self._render(conversation, generation_prompt)[0]
        wants_mask = {"tokenize": True, "return_dict": True, "return_assistant_tokens_mask": True}
        if kwargs == wants_mask and not generation_prompt:
            text, spans = self._render(conversation, False, spans=True)
            encoded = self(text, add_special_tokens=False, return_offsets_mapping=True)
            if spans is not None and "offset_mapping" in encoded:
                return {
                    "input_ids": encoded["input_ids"],
                    "assistant_masks": _assistant_mask(
                        encoded.get(OFFSET_ARRAY, encoded["offset_mapping"]), spans
                    ),
                }
        return self._tok.apply_chat_template(conversation, add_generation_prompt=generation_prompt, **kwargs)


_SAME: WeakKeyDictionary[Any, bool] = WeakKeyDictionary()  # tokenizer -> `_same_tokenizer`'s answer


def _same_tokenizer(tokenizer: Any, raw: Any, backend: Any) -> bool:
    """Whether `raw` (tokenizer.json) and `backend` (the tokenizer's) serialize identically (then they encode
    every text alike); serialized once per tokenizer (a 256k vocabulary takes a second)."""
    with contextlib.suppress(KeyError, TypeError):
        return _SAME[tokenizer]
    try:
        same = bool(raw.to_str() == backend.to_str())
    except Exception:  # noqa: BLE001 - cannot tell: encode with both
        same = False
    with contextlib.suppress(TypeError):
        _SAME[tokenizer] = same
    return same


class _Ids:
    """An encoding as the `library` lint reads it (only `.ids`)."""

    __slots__ = ("ids",)

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids


class _RawEncodings:
    """tokenizer.json's own `tokenizers.Tokenizer`, answering `encode` from a batch's cache when it can."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.same = False  # serializes as the transformers backend does: its encodings are reused
        self.cache: dict[tuple[str, bool], Any] = {}

    def encode(self, text: Any, add_special_tokens: bool = True, **kwargs: Any) -> Any:
        hit = None if kwargs else self.cache.get((text, bool(add_special_tokens)))
        if hit is not None:
            return hit
        return self.raw.encode(text, add_special_tokens=add_special_tokens, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def _assistant_mask(offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Every token overlapping a generation span, as transformers' `return_assistant_tokens_mask` computes
    it: one pointer over the (ordered) spans that only moves forward, past spans ending at or before the
    token's start; a token is masked when it ends after the start of the span under the pointer."""
    if len(offsets) == 0 or not spans:
        return [0] * len(offsets)
    bounds = offset_array(offsets)  # (N, 2)
    ends_at = np.asarray([e for _, e in spans], dtype=np.int64)  # (S,)
    begins_at = np.asarray([s for s, _ in spans], dtype=np.int64)  # (S,)
    reached = np.maximum.accumulate(bounds[:, 0])  # (N,) the pointer never moves back
    if np.all(np.diff(ends_at) >= 0):
        pointer = np.searchsorted(ends_at, reached, side="right")  # (N,) first span ending after it
    else:  # unordered spans: walk as transformers does
        pointer = np.empty(len(bounds), dtype=np.int64)
        j = 0
        for i, start in enumerate(bounds[:, 0].tolist()):
            while j < len(spans) and start >= spans[j][1]:
                j += 1
            pointer[i] = j
    inside = pointer < len(spans)
    mask = inside & (bounds[:, 1] > begins_at[np.minimum(pointer, len(spans) - 1)])
    return mask.astype(np.int64).tolist()


def lint_rows(tokenizer: BatchTokenizer, rows: Sequence[DataRow], *, slim: bool = False) -> list[RowLint]:
    """`lint_row` for each row, with the batch's renders and encodings done once up front. `slim`: return
    `RowLint.slim()`s and skip the work only the full result holds (decoding the trained text)."""
    try:
        tokenizer.prepare(rows)
    except Exception:  # noqa: BLE001 - a text the batch encoder refuses: each row is encoded on its own
        tokenizer.clear()
    try:
        if slim:
            return [lint_row(tokenizer, row, trained=False).slim() for row in rows]  # type: ignore[arg-type]
        return [lint_row(tokenizer, row) for row in rows]  # type: ignore[arg-type]
    finally:
        tokenizer.clear()


def batched(rows: Iterable[DataRow], size: int) -> Iterable[list[DataRow]]:
    batch: list[DataRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
