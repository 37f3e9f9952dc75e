"""Tiny real tokenizers for tests, built with the `tokenizers` library in milliseconds (no downloads).

- `byte_bpe`: GPT-2-style byte-level BPE (`Ġthe`), optionally adding a BOS by default, with a ChatML or
  Llama-3-style chat template and a configurable pad token (pad == eos, as GPT-2 recipes often set it).
- `sentencepiece_bpe`: SentencePiece-style BPE (`▁the`, byte fallback `<0xEB>`), `<s>` added by default.
"""

from __future__ import annotations

from functools import lru_cache

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

CORPUS = [
    "The answer is Paris. The capital of France is Paris.",
    "Question: what is the capital of France?\nAnswer: Paris",
    "the cat sat on the mat and the dog sat on the log",
    "user\nHello there\nassistant\nHi! How can I help you today?",
    "Hello world, hello there, the world is big and the answer is yes.",
    "2 + 2 = 4 and 3 + 3 = 6, so the answer is 4.",
    "def main():\n    return 0\n",
] * 4

CHATML = (
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
CHATML_NO_END = CHATML.replace("message['content'] + '<|im_end|>'", "message['content']")

LLAMA3 = (
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

SPECIALS = [
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


@lru_cache(maxsize=1)
def _trained_byte_bpe() -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok.to_str()


def byte_bpe(
    *,
    template: str | None = CHATML,
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
    extra = [s for s in SPECIALS if s not in (bos, eos, pad)]
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
    return byte_bpe(template=LLAMA3, bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<pad>", adds_bos=True)


def sentencepiece_bpe(*, byte_fallback: bool = True) -> PreTrainedTokenizerFast:
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
