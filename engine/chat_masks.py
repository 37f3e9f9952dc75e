"""Which tokens of a rendered chat are trained, and why the others are not (tokstep's mask convention).

THE CONVENTION (default: `eot="train"`, `inserted="train"`)
-----------------------------------------------------------
The conversation is rendered ONCE (`apply_chat_template(messages, tokenize=False)`), the text is tokenized with
`add_special_tokens=False` and the tokenizer's character offsets, and every character of the rendered text is
attributed to a message or to the template:

1. **Message content.** Each message's content is located in the rendered text, in order (the template copies
   it, possibly stripped; content split by the template, e.g. `<think>…</think>answer`, is located piece by
   piece; content a template drops from history, e.g. Qwen3's / DeepSeek-R1's earlier reasoning, is simply
   absent). An assistant message's `reasoning_content` and its tool calls' names and arguments count as its
   content. A token overlapping an assistant message's content is **SUPERVISED**; one overlapping a system /
   user / tool message is masked as **SYSTEM** / **USER** / **TOOL**.
2. **End of turn.** Right after an assistant turn's last content character, the whitespace-only tokens and
   the first special (added) token after them (`<|im_end|>`, `<|eot_id|>`, `</s>`, `<end_of_turn>`,
   `<|end|>`, …) are the turn's end-of-turn: **SUPERVISED** by default (the convention of `{% generation %}`
   training templates and TRL's `assistant_only_loss`). What follows (the `\\n` after `<|im_end|>`, Phi-3's
   trailing `<|endoftext|>`, the next header) is **TEMPLATE**. `eot="mask"` (CLI `--eot mask`) is the
   alternative: the end-of-turn is masked with reason **END_OF_TURN**.
3. **Template-inserted tokens.** Inside an assistant turn (from the end of the header the template writes for
   `add_generation_prompt=True` to the end-of-turn), characters that belong to no message field are
   template-inserted: an empty `<think>\\n\\n</think>\\n\\n` block, the `<think>` tags around reasoning,
   tool-call wrappers (`<tool_call>`, `{"name": …`). By default they are trained, with reason
   **INSERTED_TRAINED** (again as `{% generation %}` training templates do); `inserted="mask"` (CLI
   `--inserted mask`) masks them with reason **INSERTED**. The `template-inserted` lint reports them whenever
   they are not just the wrapping of the message's own tool calls.
4. **Everything else** is **TEMPLATE**: role headers, separators, BOS. A system prompt the template injects
   when the chat has none (Qwen2.5's "You are Qwen, …") is **SYSTEM**, not template markup. Position 0 is
   always **FIRST** (nothing predicts it).
5. **`{% generation %}` templates.** When the template has generation markers, the trained tokens are exactly
   `apply_chat_template(..., return_assistant_tokens_mask=True)`'s mask (with the default flags); the reasons
   of the masked tokens still come from steps 1-4. The flags then mask the end-of-turn / inserted tokens found
   by steps 2-3 inside that mask.
"""

from __future__ import annotations
