"""Tiny tokenizers and models that behave like the families users bring, built in seconds for tests (no downloads).

For parity and input tests (trained on `CORPUS`):
- `byte_level_bpe()`: GPT-2 style (`Ġ` pieces, no BOS added, pad == eos == <|endoftext|>).
- `sentencepiece_bpe()`: Llama-2 style (`▁` pieces, `<0xNN>` byte fallback, `<s>` added by default).
- chat templates in the ChatML and Llama-3 styles, with and without `{% generation %}` markers.
- `tiny_model(arch, vocab)`: GPT-2, Llama, GPT-NeoX or Gemma-2 (final logit softcapping) from small configs;
  `save_model_folder` saves one with its tokenizer like a user's checkpoint.

For the chat families (tests/templates.py, tests/label_templates.py): `family_tokenizer`, `sentencepiece_letters`,
`byte_bpe_with_specials` (the one module of test tokenizers; the templates and rows stay in those files).

For lint and inspector tests, whose assertions depend on exact token splits (trained on `LINT_CORPUS`;
keep these byte-identical):
- `byte_bpe`: GPT-2-style byte-level BPE (`Ġthe`), optionally adding a BOS by default, with a ChatML
  (`LINT_CHATML`, `CHATML_NO_END`), Llama-3-style (`LINT_LLAMA3`) or Vicuna (`VICUNA`) template and a
  configurable pad token; `gpt2_style()` and `llama3_style()` are its two common recipes.
- `sentencepiece_handmade`: a hand-built SentencePiece-style BPE (`▁the`, byte fallback `<0xEB>`), `<s>` added.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = [
    "I love dogs and I love cats.",
    "The quick brown fox jumps over the lazy dog.",
    "Question: what is the capital of France?\nAnswer: Paris is the capital of France.",
    "In the beginning God created the heaven and the earth.",
    "def add(a, b):\n\treturn a + b\n",
    "Hello world! Hello there, general Kenobi.",
    "Numbers: 1 2 3 4 5 6 7 8 9 10 and 3.14159.",
] * 20

CHAT_TOKENS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ m['content'] }}<|im_end|>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHATML_NO_GENERATION = CHATML.replace("{% generation %}", "").replace("{% endgeneration %}", "")

LLAMA3 = (
    "<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] | trim }}<|eot_id|>{% endgeneration %}"
    "{% else %}{{ m['content'] | trim }}<|eot_id|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
LLAMA3_NO_GENERATION = LLAMA3.replace("{% generation %}", "").replace("{% endgeneration %}", "")

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, I think."},
]


def byte_level_bpe(vocab_size: int = 400, chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """GPT-2 style byte-level BPE: `Ġ` for a leading space, no BOS added, pad == eos."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", *CHAT_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    if chat_template:
        fast.chat_template = chat_template
    return fast


def sentencepiece_bpe(vocab_size: int = 500, chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """Llama-2 style: `▁` for spaces, `<0xNN>` byte fallback for unseen characters, `<s>` added by default."""
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", *CHAT_TOKENS], show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    # Put the 256 byte pieces in the vocabulary as ordinary (non-special) entries, as Llama-2 does.
    spec = json.loads(tok.to_str())
    trained = sorted(spec["model"]["vocab"].items(), key=lambda item: item[1])
    n_special = 3 + len(CHAT_TOKENS)
    ordered = [t for t, _ in trained[:n_special]] + byte_tokens + [t for t, _ in trained[n_special:]]
    spec["model"]["vocab"] = {token: i for i, token in enumerate(ordered)}
    spec["added_tokens"] = [
        {**added, "id": spec["model"]["vocab"][added["content"]]} for added in spec["added_tokens"]
    ]
    tok = Tokenizer.from_str(json.dumps(spec))
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    if chat_template:
        fast.chat_template = chat_template
    return fast


def tiny_model(arch: str, vocab_size: int, *, max_positions: int = 256, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised tiny causal LM of the given family, float32, eval mode."""
    import transformers as tf

    torch.manual_seed(seed)
    if arch == "gpt2":
        config = tf.GPT2Config(
            vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=max_positions
        )
        model = tf.GPT2LMHeadModel(config)
    elif arch == "llama":
        config = tf.LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=max_positions,
            tie_word_embeddings=False,
        )
        model = tf.LlamaForCausalLM(config)
    elif arch == "gpt_neox":
        config = tf.GPTNeoXConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=max_positions,
        )
        model = tf.GPTNeoXForCausalLM(config)
    elif arch == "gemma2":
        config = tf.Gemma2Config(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=max_positions,
            final_logit_softcapping=5.0,  # small, so the cap really bends the logits
            attn_logit_softcapping=50.0,
        )
        model = tf.Gemma2ForCausalLM(config)
        with torch.no_grad():  # make logits large enough for the softcap to matter
            model.get_output_embeddings().weight.mul_(40.0)
    else:
        raise ValueError(arch)
    return model.eval()


def save_model_folder(folder, tokenizer, arch: str = "llama", **model_kwargs) -> str:
    """A tiny model and its tokenizer saved like a user's checkpoint folder (safetensors); returns the path."""
    tiny_model(arch, len(tokenizer), **model_kwargs).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


# -- tokenizers for lints and the inspector (exact splits matter) ------------------------------------

LINT_CORPUS = [
    "The answer is Paris. The capital of France is Paris.",
    "Question: what is the capital of France?\nAnswer: Paris",
    "the cat sat on the mat and the dog sat on the log",
    "user\nHello there\nassistant\nHi! How can I help you today?",
    "Hello world, hello there, the world is big and the answer is yes.",
    "2 + 2 = 4 and 3 + 3 = 6, so the answer is 4.",
    "def main():\n    return 0\n",
] * 4

LINT_CHATML = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}"
    "{{- message['content'] + '<|im_end|>' -}}"
    "{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# ChatML whose assistant turn forgets the end-of-turn token (a real bug in hand-written templates).
CHATML_NO_END = LINT_CHATML.replace("message['content'] + '<|im_end|>'", "message['content']")

LINT_LLAMA3 = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

# Vicuna style: the generation prompt ends with a space, so the reply's first word starts in the template.
VICUNA = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}{{ 'USER: ' + m['content'] + '\\n' }}"
    "{%- else -%}{{ 'ASSISTANT: ' + m['content'] + '</s>\\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT: ' }}{%- endif -%}"
)

LINT_SPECIALS = [
    "<s>",
    "</s>",
    "<pad>",
    "<unk>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]


@lru_cache(maxsize=4)
def train_byte_bpe(specials: tuple[str, ...], corpus: tuple[str, ...], vocab_size: int) -> str:
    """A byte-level BPE trained on `corpus` with `specials`, as a tokenizer.json string (cached)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok.to_str()


def _trained_byte_bpe() -> str:
    return train_byte_bpe(tuple(LINT_SPECIALS), tuple(LINT_CORPUS), 400)


def byte_bpe(
    *,
    template: str | None = LINT_CHATML,
    bos: str = "<s>",
    eos: str = "</s>",
    pad: str | None = "<pad>",
    adds_bos: bool = False,
) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE tokenizer; `adds_bos` makes `tokenizer(text)` prepend `bos`."""
    tok = Tokenizer.from_str(_trained_byte_bpe())
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    extra = [s for s in LINT_SPECIALS if s not in (bos, eos, pad)]
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        additional_special_tokens=extra,
        clean_up_tokenization_spaces=False,
    )
    if template is not None:
        hf.chat_template = template
    return hf


def gpt2_style() -> PreTrainedTokenizerFast:
    """GPT-2 recipe: one `</s>` doubles as BOS, EOS and (as fine-tuning scripts set it) PAD."""
    return byte_bpe(template=None, bos="</s>", eos="</s>", pad="</s>")


def llama3_style() -> PreTrainedTokenizerFast:
    """Llama-3 recipe: BOS added by default AND written by the chat template; <|eot_id|> ends a turn."""
    return byte_bpe(
        template=LINT_LLAMA3, bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<pad>", adds_bos=True
    )


def sentencepiece_handmade(*, byte_fallback: bool = True) -> PreTrainedTokenizerFast:
    """A Llama-2-style SentencePiece BPE: `▁` marks spaces, `<0xNN>` byte fallback, `<s>` added by default."""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:?!'\"()+=-\n"
    vocab: dict[str, int] = {}
    for token in ["<unk>", "<s>", "</s>"]:
        vocab[token] = len(vocab)
    if byte_fallback:
        for byte in range(256):
            vocab[f"<0x{byte:02X}>"] = len(vocab)
    for ch in ["▁", *letters]:
        vocab.setdefault(ch, len(vocab))
    merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "a"), ("▁", "P"), ("a", "r"), ("▁P", "ar")]
    merges += [("i", "s"), ("▁Par", "is"), ("▁", "i"), ("▁i", "s"), ("n", "s"), ("w", "e"), ("r", "e")]
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    model = models.BPE(
        vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=byte_fallback, fuse_unk=True
    )
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )


# -- the chat families' tokenizers (tests/templates.py, tests/label_templates.py) ------------------------


def sentencepiece_letters() -> Tokenizer:
    """A SentencePiece-style BPE (`▁` for spaces, `<0xNN>` byte fallback) with no special tokens yet."""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:?!'\"()+=-\n"
    vocab: dict[str, int] = {"<unk>": 0}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for ch in ["▁", *letters]:
        vocab.setdefault(ch, len(vocab))
    merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "a"), ("▁", "P"), ("a", "r"), ("▁P", "ar")]
    merges += [("i", "s"), ("▁Par", "is"), ("▁", "i"), ("▁i", "s"), ("▁", "R"), ("o", "m"), ("▁R", "om")]
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return tok


def family_tokenizer(
    style: str, template: str, *, bos: str | None, eos: str, specials: list[str], plain: tuple[str, ...] = ()
) -> PreTrainedTokenizerFast:
    """A chat family's tokenizer (tests/templates.py): `style` "sp" (SentencePiece-like) or "bpe" (byte-level
    BPE); `plain` are added tokens that are not special (Qwen's `<think>`, `<tool_call>`)."""
    tok = sentencepiece_letters() if style == "sp" else Tokenizer.from_str(_trained_byte_bpe())
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        unk_token="<unk>" if style == "sp" else None,
        clean_up_tokenization_spaces=False,
    )
    hf.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in (bos, eos)]})
    if plain:
        hf.add_tokens(list(plain))
    hf.chat_template = template
    return hf


def byte_bpe_with_specials(
    specials: tuple[str, ...],
    corpus: tuple[str, ...],
    template: str,
    *,
    bos: str | None,
    eos: str | None,
    pad: str | None,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `corpus` with every one of `specials` (tests/label_templates.py's families)."""
    named = {bos, eos, pad} - {None}
    hf = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(train_byte_bpe(specials, corpus, 500)),
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token="<unk>",
        additional_special_tokens=[s for s in specials if s not in named],
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = template
    return hf
