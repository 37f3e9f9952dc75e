"""Tiny tokenizers and models that behave like the families users bring, built in seconds for tests.

- `byte_level_bpe()`: GPT-2 style (`Ġ` pieces, no BOS added, pad == eos == <|endoftext|>).
- `sentencepiece_bpe()`: Llama-2 style (`▁` pieces, `<0xNN>` byte fallback, `<s>` added by default).
- chat templates in the ChatML and Llama-3 styles, with and without `{% generation %}` markers.
- `tiny_model(arch, vocab)`: GPT-2, Llama, GPT-NeoX or Gemma-2 (final logit softcapping) from small configs.
"""

from __future__ import annotations

import json
import os

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
