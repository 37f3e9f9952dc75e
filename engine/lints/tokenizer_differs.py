"""`tokenizer-differs`: transformers' tokenizer class against tokenizer.json read by the `tokenizers`
library."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from tokstep.engine.chat.masks import render
from tokstep.engine.inputs.sample import Sample
from tokstep.engine.inputs.spec import SampleSpec
from tokstep.engine.lints.catalogue import Finding, finding

_RAW: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


def raw_tokenizer(tokenizer: Any) -> Any:
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


def library_lints(tokenizer: Any, sample: Sample, spec: SampleSpec) -> Iterator[Finding]:
    """Ids transformers' tokenizer class drops (or adds) compared with tokenizer.json read by `tokenizers`."""
    raw = raw_tokenizer(tokenizer)
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
