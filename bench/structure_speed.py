"""What recovering the chat structure of ids rows costs `tokstep lint` (engine.chat.structure), on the bundled
tokstep-mini tokenizer (ChatML template).

    python -m bench.structure_speed

Prints: the one-off template probe per tokenizer, and per row (a 2-exchange chat, and the same chat repeated to
80 turns) the cost of `recover_layout` alone, of linting with the structure, and of the lints without it.
Measured side by side in one run; absolute times depend on the machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome is the capital of Italy."},
]


def per_call(call, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    from tokstep.engine.chat.structure import markup_for, recover_layout
    from tokstep.engine.defaults import DEFAULT_MODEL
    from tokstep.engine.inputs.spec import SampleSpec, from_ids
    from tokstep.engine.lints.sample_lints import lint_sample, lint_spec
    from tokstep.engine.model.loading import load_tokenizer

    tokenizer = load_tokenizer(str(DEFAULT_MODEL))
    plain_tokenizer = load_tokenizer(str(DEFAULT_MODEL))
    plain_tokenizer.chat_template = None  # the same lints with no chat structure to recover
    started = time.perf_counter()
    markup_for(tokenizer)
    print(f"template probe, once per tokenizer: {1000 * (time.perf_counter() - started):.1f} ms")
    out = tokenizer.apply_chat_template(
        CHAT, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(out["input_ids"])
    labels = [t if m else -100 for t, m in zip(ids, out["assistant_masks"], strict=True)]
    for repeat in (1, 40):
        row_ids, row_labels = ids * repeat, labels * repeat
        spec = SampleSpec(ids={"input_ids": row_ids, "labels": row_labels})
        plain = from_ids(spec.ids, pad_id=tokenizer.pad_token_id)
        recover = per_call(lambda i=row_ids: recover_layout(tokenizer, i), 200)
        linted = per_call(lambda s=spec: lint_spec(tokenizer, s), 200)
        without = per_call(lambda p=plain, s=spec: lint_sample(plain_tokenizer, p, s), 200)
        print(
            f"{len(row_ids):5d} tokens, {5 * repeat:3d} turns: recover_layout {1000 * recover:.2f} ms, "
            f"lint with structure {1000 * linted:.2f} ms, lints without it {1000 * without:.2f} ms"
        )


if __name__ == "__main__":
    main()
