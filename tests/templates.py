"""Chat templates that reproduce the behaviour of each mainstream family, with tokenizers to match.

Written for tokstep's tests from reading how the public templates behave (not copied): what each family
writes around a turn, where it puts BOS / EOS, what it injects (Qwen2.5's default system prompt, Qwen3's empty
think block, Llama-3.1's date lines), what it rewrites or drops (Qwen3 / DeepSeek-R1 earlier reasoning,
Phi-3's EOS after a full render), and how it renders tool calls and tool results.

`FAMILIES[name]` gives a `Family`: its template, its tokenizer (`family.tokenizer()`, built in milliseconds
from the tiny tokenizers, no download), a multi-turn chat (a system message where the family allows one) and,
where the family has tool calls, a tool chat. `EXPECTED[name]` is tokstep's documented mask for that chat:
the rendered text of every supervised run of tokens, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from tiny import family_tokenizer
from transformers import PreTrainedTokenizerFast

LLAMA2 = (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set rest = messages[1:] -%}"
    "{%- else -%}{%- set system = none -%}{%- set rest = messages -%}{%- endif -%}"
    "{%- for m in rest -%}"
    "{%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}"
    "{%- endif -%}"
    "{%- if m['role'] == 'user' -%}"
    "{%- if loop.first and system is not none -%}"
    "{%- set text = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + m['content'] -%}"
    "{%- else -%}{%- set text = m['content'] -%}{%- endif -%}"
    "{{- bos_token + '[INST] ' + text | trim + ' [/INST]' -}}"
    "{%- else -%}"
    "{{- ' ' + m['content'] | trim + ' ' + eos_token -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

LLAMA3 = (
    "{{- bos_token -}}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] | trim -%}{%- set rest = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- set rest = messages -%}{%- endif -%}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' -}}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' -}}"
    "{{- system + '<|eot_id|>' -}}"
    "{%- for m in rest -%}"
    "{%- if m['role'] == 'assistant' and m.get('tool_calls') -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}"
    "{%- for call in m['tool_calls'] -%}{%- set f = call['function'] -%}"
    "{{- '{\"name\": \"' + f['name'] + '\", \"parameters\": ' + f['arguments'] | tojson + '}' -}}"
    "{%- endfor -%}"
    "{{- '<|eot_id|>' -}}"
    "{%- elif m['role'] in ('tool', 'ipython') -%}"
    "{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' -}}"
    "{%- else -%}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

MISTRAL = (
    "{{- bos_token -}}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{- '[SYSTEM_PROMPT]' + m['content'] + '[/SYSTEM_PROMPT]' -}}"
    "{%- elif m['role'] == 'user' -%}{{- '[INST]' + m['content'] + '[/INST]' -}}"
    "{%- elif m['role'] == 'assistant' and m.get('tool_calls') -%}"
    "{{- '[TOOL_CALLS][' -}}"
    "{%- for call in m['tool_calls'] -%}"
    "{{- '{\"name\": \"' + call['function']['name'] + '\", \"arguments\": ' -}}"
    "{{- call['function']['arguments'] | tojson + '}' -}}{%- if not loop.last -%}{{- ', ' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{{- ']' + eos_token -}}"
    "{%- elif m['role'] == 'assistant' -%}{{- m['content'] + eos_token -}}"
    "{%- elif m['role'] == 'tool' -%}{{- '[TOOL_RESULTS]' + m['content'] + '[/TOOL_RESULTS]' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

_QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
_QWEN_TOOL_CALLS = (
    "{%- for call in m.get('tool_calls') or [] -%}{%- set f = call['function'] -%}"
    "{%- if content or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '<tool_call>\\n{\"name\": \"' + f['name'] + '\", \"arguments\": ' + f['arguments'] | tojson -}}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
)

QWEN25 = (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' -}}"
    "{%- else -%}{{- '<|im_start|>system\\n" + _QWEN_DEFAULT_SYSTEM + "<|im_end|>\\n' -}}{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' and loop.first -%}"
    "{%- elif m['role'] == 'assistant' -%}"
    "{%- set content = m['content'] or '' -%}"
    "{{- '<|im_start|>assistant\\n' + content -}}" + _QWEN_TOOL_CALLS + "{{- '<|im_end|>\\n' -}}"
    "{%- elif m['role'] == 'tool' -%}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + m['content'] + '\\n</tool_response><|im_end|>\\n' -}}"
    "{%- else -%}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

QWEN3 = (
    "{%- set ns = namespace(last_user=-1) -%}"
    "{%- for m in messages -%}{%- if m['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}"
    "{%- set content = m['content'] or '' -%}"
    "{%- set reasoning = m.get('reasoning_content') or '' -%}"
    "{%- if not reasoning and '</think>' in content -%}"
    "{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\\n') -%}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if loop.index0 > ns.last_user and (loop.last or reasoning) -%}"
    "{{- '<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') -}}"
    "{%- else -%}{{- content -}}{%- endif -%}" + _QWEN_TOOL_CALLS + "{{- '<|im_end|>\\n' -}}"
    "{%- elif m['role'] == 'tool' -%}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + m['content'] + '\\n</tool_response><|im_end|>\\n' -}}"
    "{%- else -%}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}{%- endif -%}"
)

PHI3 = (
    "{{- bos_token -}}"
    "{%- for m in messages -%}{{- '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- else -%}{{- eos_token -}}{%- endif -%}"
)

PHI4 = (
    "{%- for m in messages -%}"
    "{{- '<|im_start|>' + m['role'] + '<|im_sep|>' + m['content'] + '<|im_end|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant<|im_sep|>' -}}{%- endif -%}"
)

_GEMMA_CONTENT = (
    "{%- if m['content'] is string -%}{{- m['content'] | trim -}}"
    "{%- else -%}{%- for part in m['content'] -%}{%- if part['type'] == 'text' -%}"
    "{{- part['text'] | trim -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
)

GEMMA2 = (
    "{{- bos_token -}}"
    "{%- if messages[0]['role'] == 'system' -%}{{- raise_exception('System role not supported') -}}{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- set role = 'model' if m['role'] == 'assistant' else m['role'] -%}"
    "{{- '<start_of_turn>' + role + '\\n' -}}" + _GEMMA_CONTENT + "{{- '<end_of_turn>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)

GEMMA3 = (
    "{{- bos_token -}}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set prefix = messages[0]['content'] + '\\n\\n' -%}{%- set rest = messages[1:] -%}"
    "{%- else -%}{%- set prefix = '' -%}{%- set rest = messages -%}{%- endif -%}"
    "{%- for m in rest -%}"
    "{%- set role = 'model' if m['role'] == 'assistant' else m['role'] -%}"
    "{{- '<start_of_turn>' + role + '\\n' + (prefix if loop.first else '') -}}"
    + _GEMMA_CONTENT
    + "{{- '<end_of_turn>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)

DEEPSEEK_R1 = (
    "{%- set ns = namespace(system='') -%}"
    "{%- for m in messages -%}{%- if m['role'] == 'system' -%}{%- set ns.system = m['content'] -%}"
    "{%- endif -%}{%- endfor -%}"
    "{{- bos_token + ns.system -}}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}{{- '<｜User｜>' + m['content'] -}}"
    "{%- elif m['role'] == 'assistant' -%}"
    "{%- set content = m['content'] or '' -%}"
    "{%- if '</think>' in content -%}{%- set content = content.split('</think>')[-1] -%}{%- endif -%}"
    "{{- '<｜Assistant｜>' + content -}}"
    "{%- if m.get('tool_calls') -%}{{- '<｜tool▁calls▁begin｜>' -}}"
    "{%- for call in m['tool_calls'] -%}"
    "{{- '<｜tool▁call▁begin｜>function<｜tool▁sep｜>' + call['function']['name'] + '\\n```json\\n' -}}"
    "{{- call['function']['arguments'] | tojson + '\\n```<｜tool▁call▁end｜>' -}}"
    "{%- endfor -%}{{- '<｜tool▁calls▁end｜>' -}}{%- endif -%}"
    "{{- '<｜end▁of▁sentence｜>' -}}"
    "{%- elif m['role'] == 'tool' -%}"
    "{{- '<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + m['content'] -}}"
    "{{- '<｜tool▁output▁end｜><｜tool▁outputs▁end｜>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<｜Assistant｜><think>\\n' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class Family:
    name: str
    template: str
    make: Callable[[], PreTrainedTokenizerFast]
    chat: tuple[dict[str, Any], ...]
    tool_chat: tuple[dict[str, Any], ...] | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def tokenizer(self) -> PreTrainedTokenizerFast:
        return _cached(self.name)


SYSTEM = {"role": "system", "content": "You are terse."}
TURNS = (
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, I think."},
)
CHAT = (SYSTEM, *TURNS)
_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
TOOL_CHAT = (
    SYSTEM,
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [_CALL]},
    {"role": "tool", "content": "21 C, sunny"},
    {"role": "assistant", "content": "It is 21 C and sunny."},
)
# Qwen3 / DeepSeek-R1: the first answer carries reasoning the template drops from history.
THINK_CHAT = (
    SYSTEM,
    TURNS[0],
    {"role": "assistant", "content": "<think>\nFrance: Paris.\n</think>\n\nParis."},
    TURNS[2],
    TURNS[3],
)
THINK_LAST = (
    *THINK_CHAT[:4],
    {"role": "assistant", "content": "Rome, I think.", "reasoning_content": "Italy: Rome."},
)

QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
MISTRAL_SPECIALS = ["<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CALLS]"]
MISTRAL_SPECIALS += ["[TOOL_RESULTS]", "[/TOOL_RESULTS]"]
R1_SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"]
R1_SPECIALS += [
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
]
R1_SPECIALS += [
    "<｜tool▁sep｜>",
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
]
R1_SPECIALS += ["<｜tool▁output▁end｜>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]

_MAKERS: dict[str, Callable[[], PreTrainedTokenizerFast]] = {
    "llama2": lambda: family_tokenizer("sp", LLAMA2, bos="<s>", eos="</s>", specials=["<s>", "</s>"]),
    "llama3": lambda: family_tokenizer(
        "bpe", LLAMA3, bos="<|begin_of_text|>", eos="<|eot_id|>", specials=LLAMA3_SPECIALS
    ),
    "mistral": lambda: family_tokenizer("sp", MISTRAL, bos="<s>", eos="</s>", specials=MISTRAL_SPECIALS),
    "qwen2.5": lambda: family_tokenizer(
        "bpe",
        QWEN25,
        bos=None,
        eos="<|im_end|>",
        specials=QWEN_SPECIALS,
        plain=("<tool_call>", "</tool_call>"),
    ),
    "qwen3": lambda: family_tokenizer(
        "bpe",
        QWEN3,
        bos=None,
        eos="<|im_end|>",
        specials=QWEN_SPECIALS,
        plain=("<think>", "</think>", "<tool_call>", "</tool_call>"),
    ),
    "phi3": lambda: family_tokenizer(
        "sp",
        PHI3,
        bos="<s>",
        eos="<|endoftext|>",
        specials=["<s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
    ),
    "phi4": lambda: family_tokenizer(
        "bpe", PHI4, bos=None, eos="<|im_end|>", specials=["<|im_start|>", "<|im_sep|>", "<|im_end|>"]
    ),
    "gemma2": lambda: family_tokenizer(
        "sp",
        GEMMA2,
        bos="<bos>",
        eos="<eos>",
        specials=["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
    ),
    "gemma3": lambda: family_tokenizer(
        "sp",
        GEMMA3,
        bos="<bos>",
        eos="<eos>",
        specials=["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
    ),
    "deepseek-r1": lambda: family_tokenizer(
        "bpe",
        DEEPSEEK_R1,
        bos="<｜begin▁of▁sentence｜>",
        eos="<｜end▁of▁sentence｜>",
        specials=R1_SPECIALS,
        plain=("<think>", "</think>"),
    ),
}


@cache
def _cached(name: str) -> PreTrainedTokenizerFast:
    return _MAKERS[name]()


_GEMMA3_CHAT = (
    SYSTEM,
    {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
    *TURNS[1:],
)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "llama2", LLAMA2, _MAKERS["llama2"], CHAT, notes="[INST] … [/INST] answer </s>; system in <<SYS>>"
        ),
        Family("llama3", LLAMA3, _MAKERS["llama3"], CHAT, TOOL_CHAT, notes="headers, <|eot_id|>, date lines"),
        Family(
            "mistral", MISTRAL, _MAKERS["mistral"], CHAT, TOOL_CHAT, notes="[SYSTEM_PROMPT], [TOOL_CALLS]"
        ),
        Family(
            "qwen2.5", QWEN25, _MAKERS["qwen2.5"], TURNS, TOOL_CHAT, notes="ChatML, default system prompt"
        ),
        Family("qwen3", QWEN3, _MAKERS["qwen3"], THINK_CHAT, TOOL_CHAT, notes="think block, history rewrite"),
        Family("phi3", PHI3, _MAKERS["phi3"], CHAT, notes="<|end|>, EOS after a full render"),
        Family("phi4", PHI4, _MAKERS["phi4"], CHAT, notes="<|im_sep|>, no newlines"),
        Family("gemma2", GEMMA2, _MAKERS["gemma2"], TURNS, notes="no system role, `model` role"),
        Family(
            "gemma3", GEMMA3, _MAKERS["gemma3"], _GEMMA3_CHAT, notes="system folded into the first user turn"
        ),
        Family(
            "deepseek-r1", DEEPSEEK_R1, _MAKERS["deepseek-r1"], THINK_CHAT, TOOL_CHAT, notes="drops reasoning"
        ),
    ]
}


# The same families with `{% generation %}` around the assistant output and its end-of-turn, as TRL's training
# templates write them: transformers then computes the assistant mask itself (an independent reference).
QWEN25_GENERATION = QWEN25.replace(
    "{{- '<|im_start|>assistant\\n' + content -}}",
    "{{- '<|im_start|>assistant\\n' -}}{%- generation -%}{{- content -}}",
).replace(
    "{{- '<|im_end|>\\n' -}}{%- elif m['role'] == 'tool'",
    "{{- '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}{%- elif m['role'] == 'tool'",
)
GEMMA3_GENERATION = GEMMA3.replace(
    _GEMMA_CONTENT + "{{- '<end_of_turn>\\n' -}}",
    "{%- if role == 'model' -%}{%- generation -%}"
    + _GEMMA_CONTENT
    + "{{- '<end_of_turn>' -}}{%- endgeneration -%}"
    "{%- else -%}" + _GEMMA_CONTENT + "{{- '<end_of_turn>' -}}{%- endif -%}{{- '\\n' -}}",
)
PHI3_GENERATION = PHI3.replace(
    "{{- '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>\\n' -}}",
    "{{- '<|' + m['role'] + '|>\\n' -}}{%- if m['role'] == 'assistant' -%}{%- generation -%}"
    "{{- m['content'] + '<|end|>' -}}{%- endgeneration -%}{%- else -%}{{- m['content'] + '<|end|>' -}}"
    "{%- endif -%}{{- '\\n' -}}",
)
GENERATION_VARIANTS = {"qwen2.5": QWEN25_GENERATION, "gemma3": GEMMA3_GENERATION, "phi3": PHI3_GENERATION}
for _name, _variant in GENERATION_VARIANTS.items():
    assert "{%- generation -%}" in _variant and "{%- endgeneration -%}" in _variant, _name
