"""Parse one JSON document from a user's file, refusing what parses but is not usable text or numbers.

`json.loads` accepts a lone UTF-16 surrogate escape (`"\\ud800"`), which no tokenizer can encode, and raises a
bare ValueError on an integer of more than 4300 digits. Both become `UnusableJson` with a one-line reason, so
a data row, a batches line or a sample file reports them as its own error.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE_ESCAPE = re.compile(r"\\[uU][dD][89a-fA-F]")  # only an escape can put a surrogate into JSON text


class UnusableJson(ValueError):
    """Valid JSON that tokstep cannot use (its message is the reason, one line)."""


def lone_surrogate(value: Any) -> str | None:
    """The first string inside `value` (nested lists/dicts) that is not valid Unicode, shown escaped."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as error:
                return f"\\u{ord(item[error.start]):04x} at character {error.start}"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def check_text(value: Any, what: str = "") -> None:
    """Refuse text (or a structure of it) holding a lone surrogate: `what` names it in the message."""
    where = lone_surrogate(value)
    if where is not None:
        raise UnusableJson(
            f"{what}{' ' * bool(what)}holds a lone surrogate ({where}): not valid Unicode text"
        )


def may_hold_surrogates(text: str) -> bool:
    """Cheap test on the JSON text: without a surrogate escape no parsed string can hold one."""
    return _SURROGATE_ESCAPE.search(text) is not None


def loads(text: str | bytes) -> Any:
    """json.loads, plus UnusableJson for lone surrogates and integers too long to convert."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError as error:  # "Exceeds the limit (4300 digits) for integer string conversion"
        if "digits" in str(error):
            raise UnusableJson(
                "holds an integer of more than 4300 digits: not a number tokstep reads"
            ) from None
        raise UnusableJson(str(error).splitlines()[0]) from None
    if may_hold_surrogates(text if isinstance(text, str) else text.decode("utf-8", "replace")):
        check_text(value)
    return value
