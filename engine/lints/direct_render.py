"""Render plain chats straight through the compiled chat template, skipping what is a no-op for them.

`apply_chat_template(tokenize=False)` and `render_jinja_template` copy every conversation twice before the
template sees it (message objects -> dicts with None values dropped, then a deep copy of plain JSON types)
and alias reasoning fields. For a chat whose messages are dicts of strings only, with no reasoning field,
both copies equal the messages and the aliasing does nothing, so the compiled template (transformers' own,
cached per template) is called with the messages as they are: the same text, at about half the cost of a
render. Any other chat, or a transformers whose internals moved, goes the usual way (`render` returns None).
`BatchTokenizer` checks the first direct render of every batch against the usual one and stops using this
the moment they differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")  # transformers aliases these into each other


def _internals() -> tuple[Any, Any, Any] | None:
    """transformers' template compiler (cached), span tracker and plain-data copier (internal API: None when
    they moved)."""
    try:
        # lazy: loads transformers
        from transformers.utils.chat_template_utils import (
            _compile_jinja_template,
            _plain_template_data,
            _render_with_assistant_indices,
        )
    except ImportError:
        return None
    return _compile_jinja_template, _render_with_assistant_indices, _plain_template_data


def plain_chat(messages: Sequence[Any]) -> bool:
    """Messages that transformers' copies leave equal: dicts of strings, no reasoning field."""
    for message in messages:
        if type(message) is not dict:
            return False
        for key, value in message.items():
            if type(key) is not str or type(value) is not str or key in REASONING_FIELDS:
                return False
    return bool(messages)


class DirectRenderer:
    """One template, rendered directly for plain chats (`render` -> None for every other chat)."""

    def __init__(self, template: str, special_tokens_map: dict[str, Any]) -> None:
        internals = _internals()
        self.enabled = internals is not None
        self._compiled = self._tracked = None
        self._variables: dict[str, Any] = {}
        if internals is not None:
            compile_template, self._tracked, plain = internals
            try:
                self._compiled = compile_template(template)
                self._variables = plain(special_tokens_map)  # as render_jinja_template passes them
            except Exception:  # noqa: BLE001 - a template that does not compile: the usual way reports it
                self.enabled = False

    def render(
        self, messages: list[Any], generation_prompt: bool, spans: bool
    ) -> tuple[str, list[tuple[int, int]] | None] | None:
        """(text, `{% generation %}` spans when `spans`), or None: not a plain chat, or it raised (the usual
        way then raises the same error, or renders)."""
        if not self.enabled or not plain_chat(messages):
            return None
        common = {"tools": None, "documents": None, "add_generation_prompt": generation_prompt}
        try:
            if spans:
                text, indices = self._tracked(self._compiled, messages=messages, **common, **self._variables)
                return text, [tuple(span) for span in indices]
            return self._compiled.render(messages=messages, **common, **self._variables), None
        except Exception:  # noqa: BLE001 - let the usual way give the error exactly as it does
            return None
