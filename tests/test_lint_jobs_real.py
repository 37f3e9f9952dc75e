"""On every real tokenizer: `tokstep lint`'s batched, multi-process path gives exactly the findings of one
process, and the direct chat render (engine.lints.direct_render) exactly those of transformers' own render.

Rows: the mixed rows of test_lint_batch (chats, text, prompt+completion, ids, broken rows) plus chats with a
system prompt, tool calls, reasoning and content parts, in a JSON Lines file that the workers reopen."""

from __future__ import annotations

import json

import pytest
import real_tokenizers as rt
from test_lint_batch import make_records

from tokstep.engine.inputs.data import open_data
from tokstep.engine.lints import direct_render
from tokstep.engine.lints.batch import BatchTokenizer, lint_rows
from tokstep.engine.lints.pool import lint_data

EXTRA = [
    {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello."}]},
    {"messages": [{"role": "user", "content": "Weather?"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
                  {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}]},
    {"messages": [{"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "4", "reasoning_content": "two and two"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "Parts"}]},
                  {"role": "assistant", "content": "Fine."}]},
    {"messages": [{"role": "user", "content": "Spaces"}, {"role": "assistant", "content": "  padded \n\n"}]},
]  # fmt: skip


def comparable(results):
    return [(r.row.index, r.row.line, r.row.error, r.findings, r.num_tokens, r.num_supervised, r.disagree,
             r.digest) for r in results]  # fmt: skip


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rows") / "rows.jsonl"
    records = [*make_records(60, seed=3), *EXTRA * 2]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", sorted(rt.REAL_TOKENIZERS))
def test_two_processes_and_the_direct_render_give_the_same_findings(name, rows_file, monkeypatch):
    tokenizer = rt.real_tokenizer(name)
    data = open_data(rows_file)
    try:
        one = comparable(lint_data(tokenizer, data, jobs=1, batch_rows=16))
        two = comparable(lint_data(tokenizer, data, jobs=2, batch_rows=16))
        rows = list(data.rows())
    finally:
        data.close()
    assert two == one  # in order, every finding and count alike
    assert len(one) == len(rows) and any(findings for _, _, _, findings, *_ in one)

    direct = BatchTokenizer(tokenizer)
    fast = comparable(r for start in range(0, len(rows), 16) for r in lint_rows(direct, rows[start : start + 16]))
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        assert direct._direct is not None and direct._direct.enabled  # used, and never found to differ
    monkeypatch.setattr(direct_render.DirectRenderer, "render", lambda *args, **kwargs: None)
    usual = BatchTokenizer(tokenizer)
    slow = comparable(r for start in range(0, len(rows), 16) for r in lint_rows(usual, rows[start : start + 16]))
    assert fast == slow == one
