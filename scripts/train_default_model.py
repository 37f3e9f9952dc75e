#!/usr/bin/env python3
"""Train tokstep's bundled default model, "tokstep-mini", on the CPU.

Reproducible end to end (fixed seeds, fixed step count, 2 torch threads):

    python scripts/get_corpus.py /tmp/kjv.jsonl
    python scripts/train_default_model.py --corpus /tmp/kjv.jsonl \\
        --out engine/assets/tokstep-mini --demo-out engine/assets/demo

What it does:
  1. splits the King James Bible (see scripts/get_corpus.py) by chapter:
     every 25th chapter by global chapter index (0, 25, 50, ...) is held out
     and never trained on (not even by the tokenizer);
  2. trains a GPT-2 style byte-level BPE tokenizer (vocab 4096, specials
     <s> </s> <pad> <|im_start|> <|im_end|>) that adds <s> by default and
     carries a ChatML chat template with {% generation %} markers;
  3. trains a small LlamaForCausalLM (tied embeddings, float32 <= 14 MB) on
     packed plain-text chapters + ChatML chats + "Question:/Answer:" pairs,
     loss on every token;
  4. measures the held-out loss exactly like tests/test_default_model.py and
     writes the model folder, the model card (README.md), heldout.txt and the
     demo samples.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# On a shared 2-core machine, OpenMP threads that spin-wait are 3-4x slower when
# another process holds a core; passive waiting keeps 2 threads useful. Must be
# set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

SEED = 1234
VOCAB_SIZE = 4096
BOS, EOS, PAD, IM_START, IM_END = "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"
SPECIALS = [BOS, EOS, PAD, IM_START, IM_END]  # ids 0..4
HELDOUT_EVERY = 25
HELDOUT_TXT_MAX_BYTES = 30_000

# ChatML. The template never emits <s>; assistant content and its closing
# <|im_end|> are wrapped in generation markers so that
# apply_chat_template(..., return_assistant_tokens_mask=True) works.
CHAT_TEMPLATE = (
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
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

SYSTEM_PROMPT = "You are a helpful assistant who knows the King James Bible."

# Model shape: 4 x 256, MHA 4 heads of 64, SwiGLU 448, tied embeddings.
MODEL_KW = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=256,
    intermediate_size=448,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=512,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    initializer_range=0.02,
    hidden_act="silu",
)


# --------------------------------------------------------------------------- data
def load_corpus(path: Path) -> list[dict]:
    """Group verse records into chapters, in canonical order."""
    chapters: list[dict] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if not chapters or (chapters[-1]["book"], chapters[-1]["chapter"]) != (r["book"], r["chapter"]):
                chapters.append({"book": r["book"], "chapter": r["chapter"], "verses": []})
            chapters[-1]["verses"].append(r["text"])
    for i, ch in enumerate(chapters):
        ch["index"] = i
        ch["heldout"] = i % HELDOUT_EVERY == 0
    return chapters


def chapter_text(ch: dict) -> str:
    """Plain-text document format (special tokens are added by the tokenizer / packer)."""
    return f"{ch['book']} {ch['chapter']}\n" + "\n".join(ch["verses"])


def ref(ch: dict, v: int) -> str:
    return f"{ch['book']} {ch['chapter']}:{v + 1}"


def make_qa(ch: dict, rng: random.Random) -> tuple[str, str]:
    """A (prompt, answer) pair; the answer starts with a space."""
    v = rng.randrange(len(ch["verses"]))
    if v + 1 < len(ch["verses"]) and rng.random() < 0.5:
        return (f'Question: What comes after "{ch["verses"][v]}"?\nAnswer:', " " + ch["verses"][v + 1])
    return (f"Question: Recite {ref(ch, v)}.\nAnswer:", " " + ch["verses"][v])


def make_chat(ch: dict, rng: random.Random) -> list[dict]:
    msgs: list[dict] = []
    if rng.random() < 0.3:
        msgs.append({"role": "system", "content": SYSTEM_PROMPT})
    v = rng.randrange(len(ch["verses"]))
    if v + 1 < len(ch["verses"]) and rng.random() < 0.5:
        msgs += [
            {"role": "user", "content": f"Continue: {ch['verses'][v]}"},
            {"role": "assistant", "content": ch["verses"][v + 1]},
        ]
        v += 1
    else:
        msgs += [
            {"role": "user", "content": f"Recite {ref(ch, v)}."},
            {"role": "assistant", "content": ch["verses"][v]},
        ]
    if v + 1 < len(ch["verses"]) and rng.random() < 0.3:
        msgs += [
            {"role": "user", "content": "And the next verse?"},
            {"role": "assistant", "content": ch["verses"][v + 1]},
        ]
    return msgs


def render_chat(msgs: list[dict]) -> str:
    """Pure-python rendering identical to CHAT_TEMPLATE (checked against it below)."""
    return "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in msgs)


# --------------------------------------------------------------------------- tokenizer
def train_tokenizer(train_chapters: list[dict], rng: random.Random) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def texts():
        for ch in train_chapters:
            yield chapter_text(ch)
        for _ in range(2000):  # a little of the prompt formats (their words, not special tokens)
            ch = rng.choice(train_chapters)
            p, a = make_qa(ch, rng)
            yield p + a
            yield "\n".join(f"{m['role']}\n{m['content']}" for m in make_chat(ch, rng))

    tok.train_from_iterator(texts(), trainer=trainer)
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    assert [ids[s] for s in SPECIALS] == list(range(len(SPECIALS))), ids
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS}:1 $B:1",
        special_tokens=[(BOS, ids[BOS])],
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=MODEL_KW["max_position_embeddings"],
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def check_tokenizer(tk) -> dict:
    """Sanity checks shared by training and the card; returns facts for the card."""
    enc = tk("In the beginning")["input_ids"]
    assert enc[0] == tk.bos_token_id and enc[-1] != tk.eos_token_id, enc
    assert tk.pad_token_id != tk.eos_token_id
    chat = [
        {"role": "user", "content": "Recite Genesis 1:3."},
        {"role": "assistant", "content": "And God said, Let there be light: and there was light."},
    ]
    text = tk.apply_chat_template(chat, tokenize=False)
    assert text == render_chat(chat), repr(text)
    assert "<s>" not in text
    gen = tk.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    assert gen == render_chat(chat[:1]) + f"{IM_START}assistant\n", repr(gen)
    out = tk.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert sum(mask) > 0
    masked = tk.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert masked == chat[1]["content"] + IM_END, repr(masked)
    return {
        "chat_adds_bos": ids[0] == tk.bos_token_id,
        "mask_tokens": sum(mask),
        "chat_len": len(ids),
    }


# --------------------------------------------------------------------------- packing
class Packer:
    """Endless stream of shuffled documents -> fixed-length windows (loss on every token)."""

    def __init__(self, tk, train_chapters, rng: random.Random, n_chat: int, n_qa: int):
        self.tk, self.chapters, self.rng = tk, train_chapters, rng
        self.n_chat, self.n_qa = n_chat, n_qa
        self.bos, self.eos = tk.bos_token_id, tk.eos_token_id
        # plain-text chapters are fixed: tokenize once
        self.text_docs = [self._ids(chapter_text(ch), bos=True) + [self.eos] for ch in train_chapters]
        self.buf: list[int] = []
        self.epoch = 0
        self.epoch_tokens: list[int] = []

    def _ids(self, text: str, bos: bool) -> list[int]:
        ids = self.tk(text, add_special_tokens=False)["input_ids"]
        return ([self.bos] if bos else []) + ids

    def _new_epoch(self) -> list[int]:
        rng = self.rng
        docs = list(self.text_docs)
        for _ in range(self.n_qa):
            p, a = make_qa(rng.choice(self.chapters), rng)
            docs.append(self._ids(p + a, bos=True) + [self.eos])
        for _ in range(self.n_chat):
            # half with <s> (what tokenizer(text) would give), half without
            # (what apply_chat_template(tokenize=True) gives)
            docs.append(
                self._ids(render_chat(make_chat(rng.choice(self.chapters), rng)), bos=rng.random() < 0.5)
                + [self.eos]
            )
        rng.shuffle(docs)
        self.epoch += 1
        stream = [t for d in docs for t in d]
        self.epoch_tokens.append(len(stream))
        return stream

    def batch(self, bsz: int, seqlen: int) -> torch.Tensor:
        need = bsz * seqlen
        while len(self.buf) < need:
            self.buf.extend(self._new_epoch())
        x = torch.tensor(self.buf[:need], dtype=torch.long).view(bsz, seqlen)
        del self.buf[:need]
        return x


# --------------------------------------------------------------------------- eval
@torch.no_grad()
def heldout_loss(model, tk, docs: list[str], window: int) -> tuple[float, int]:
    """Token-weighted mean of HF's own loss over each document (with <s>), in windows."""
    model.eval()
    total, count = 0.0, 0
    for doc in docs:
        ids = tk(doc)["input_ids"]
        for s in range(0, len(ids), window):
            chunk = ids[s : s + window]
            if len(chunk) < 2:
                continue
            x = torch.tensor([chunk])
            loss = model(input_ids=x, labels=x).loss.item()
            total += loss * (len(chunk) - 1)
            count += len(chunk) - 1
    model.train()
    return total / count, count


# --------------------------------------------------------------------------- main
def git_rev() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except Exception:
        return ""


def make_config_portable(path: Path) -> None:
    """Name the tokenizer class and extra specials so transformers 4.x loads the folder too (5.x writes
    `TokenizersBackend` and `extra_special_tokens`, which 4.x does not know)."""
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    if isinstance(config.get("extra_special_tokens"), list):
        config["additional_special_tokens"] = config.pop("extra_special_tokens")
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/kjv.jsonl"))
    ap.add_argument("--out", type=Path, default=Path("engine/assets/tokstep-mini"))
    ap.add_argument("--demo-out", type=Path, default=Path("engine/assets/demo"))
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--long-frac", type=float, default=0.25, help="last fraction of steps at seq 512")
    ap.add_argument("--batch", type=int, default=8, help="sequences of 256 per step (half as many of 512)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--chat-per-epoch", type=int, default=2500)
    ap.add_argument("--qa-per-epoch", type=int, default=2500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=150)
    args = ap.parse_args()

    t0 = time.time()
    torch.set_num_threads(args.threads)
    random.seed(SEED)
    torch.manual_seed(SEED)

    chapters = load_corpus(args.corpus)
    train_ch = [c for c in chapters if not c["heldout"]]
    held_ch = [c for c in chapters if c["heldout"]]
    print(f"corpus: {len(chapters)} chapters, {len(train_ch)} train / {len(held_ch)} held out", flush=True)

    # ---- tokenizer
    tk = train_tokenizer(train_ch, random.Random(SEED + 1))
    args.out.mkdir(parents=True, exist_ok=True)
    tk.save_pretrained(args.out, save_jinja_files=False)  # chat_template inside tokenizer_config.json
    make_config_portable(args.out / "tokenizer_config.json")
    tk = AutoTokenizer.from_pretrained(args.out)  # from here on, exactly what users load
    tok_facts = check_tokenizer(tk)
    special_ids = {s: tk.convert_tokens_to_ids(s) for s in SPECIALS}
    print(f"tokenizer: {len(tk)} tokens, specials {special_ids}, {time.time() - t0:.1f}s", flush=True)

    # ---- model
    cfg = LlamaConfig(
        **MODEL_KW,
        bos_token_id=tk.bos_token_id,
        eos_token_id=tk.eos_token_id,
        pad_token_id=tk.pad_token_id,
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} params ({n_params * 4 / 1e6:.2f} MB fp32)", flush=True)

    packer = Packer(tk, train_ch, random.Random(SEED + 2), args.chat_per_epoch, args.qa_per_epoch)
    held_docs = [chapter_text(c) for c in held_ch]

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    min_lr = args.lr * 0.1

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return min_lr + 0.5 * (args.lr - min_lr) * (1 + math.cos(math.pi * p))

    long_from = int(args.steps * (1 - args.long_frac))
    t_train = time.time()
    ema = None
    history = []
    tokens_seen = 0
    for step in range(args.steps):
        x = packer.batch(args.batch, 256) if step < long_from else packer.batch(max(1, args.batch // 2), 512)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens_seen += x.numel()
        lv = loss.item()
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        if step % 25 == 0 or step == args.steps - 1:
            el = time.time() - t_train
            print(
                f"step {step:5d}/{args.steps} loss {lv:.3f} (ema {ema:.3f}) lr {lr_at(step):.2e} "
                f"seq {x.shape[1]} epoch {packer.epoch} {tokens_seen / el:.0f} tok/s {el / 60:.1f} min",
                flush=True,
            )
        if (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
            hl, _ = heldout_loss(model, tk, held_docs[:4], 512)
            history.append((step + 1, round(ema, 4), round(hl, 4)))
            print(f"  eval @ {step + 1}: held-out (4 chapters) {hl:.3f}", flush=True)
    train_secs = time.time() - t_train
    final_train = ema

    # ---- final evaluation (full held-out split) + save
    t_eval = time.time()
    held_loss, held_tokens = heldout_loss(model, tk, held_docs, 512)
    # train loss measured the same way on 16 training chapters spread over the Bible, for comparison
    train_eval, _ = heldout_loss(
        model, tk, [chapter_text(c) for c in train_ch[:: len(train_ch) // 16]][:16], 512
    )
    print(
        f"held-out loss {held_loss:.4f} over {held_tokens} tokens ({time.time() - t_eval:.1f}s)", flush=True
    )

    model.generation_config = GenerationConfig(
        bos_token_id=tk.bos_token_id,
        eos_token_id=tk.eos_token_id,
        pad_token_id=tk.pad_token_id,
    )
    model.save_pretrained(args.out, safe_serialization=True)  # tokenizer files were saved above

    # heldout.txt: first held-out chapters that fit in the byte budget
    parts, size = [], 0
    for c in held_ch:
        t = chapter_text(c)
        if size + len(t.encode()) + 2 > HELDOUT_TXT_MAX_BYTES:
            continue
        parts.append(t)
        size += len(t.encode()) + 2
    heldout_txt = "\n\n".join(parts) + "\n"
    (args.out / "heldout.txt").write_text(heldout_txt, encoding="utf-8")

    # reload from disk, exactly as tests do
    m2 = AutoModelForCausalLM.from_pretrained(args.out)
    tk2 = AutoTokenizer.from_pretrained(args.out)
    torch.manual_seed(0)
    file_loss, file_tokens = heldout_loss(m2, tk2, [d for d in heldout_txt.split("\n\n") if d.strip()], 512)
    print(
        f"heldout.txt ({len(parts)} chapters, {len(heldout_txt.encode())} bytes): loss {file_loss:.4f}",
        flush=True,
    )

    # ---- demo samples
    demo = write_demos(args.demo_out, chapters, m2, tk2)

    total_secs = time.time() - t0
    stats = dict(
        n_params=n_params,
        file_bytes=(args.out / "model.safetensors").stat().st_size,
        train_secs=train_secs,
        total_secs=total_secs,
        steps=args.steps,
        tokens_seen=tokens_seen,
        epochs=packer.epoch,
        epoch_tokens=packer.epoch_tokens[0],
        final_train_ema=final_train,
        train_eval=train_eval,
        held_loss=held_loss,
        held_tokens=held_tokens,
        held_chapters=len(held_ch),
        file_loss=file_loss,
        file_tokens=file_tokens,
        file_chapters=[p.split("\n", 1)[0] for p in parts],
        file_bytes_txt=len(heldout_txt.encode()),
        history=history,
        special_ids=special_ids,
        tok=tok_facts,
        demo=demo,
        args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    )
    write_card(args.out / "README.md", stats)
    print(json.dumps({k: v for k, v in stats.items() if k not in ("history",)}, indent=1, default=str))
    print(f"done in {total_secs / 60:.1f} min", flush=True)
    return 0


@torch.no_grad()
def write_demos(out: Path, chapters: list[dict], model, tk) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    gen1 = chapters[0]
    assert gen1["heldout"] and gen1["book"] == "Genesis" and gen1["chapter"] == 1
    v = gen1["verses"]
    qa = {"prompt": "Question: Recite Genesis 1:3.\nAnswer:", "answer": " " + v[2]}
    text = "\n".join(v[:3]) + "\n"
    chat = [
        {"role": "user", "content": f"Continue: {v[0]}"},
        {"role": "assistant", "content": v[1]},
    ]
    (out / "qa.json").write_text(json.dumps(qa, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "text.txt").write_text(text, encoding="utf-8")
    (out / "chat.json").write_text(json.dumps(chat, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    model.eval()
    # answer-only loss of the QA demo
    p_ids = tk(qa["prompt"])["input_ids"]
    full = tk(qa["prompt"] + qa["answer"])["input_ids"]
    assert full[: len(p_ids)] == p_ids
    x = torch.tensor([full])
    labels = x.clone()
    labels[0, : len(p_ids)] = -100
    qa_loss = model(input_ids=x, labels=labels).loss.item()
    # assistant-only loss of the chat demo
    enc = tk.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    x = torch.tensor([enc["input_ids"]])
    labels = x.clone()
    labels[0, torch.tensor(enc["assistant_masks"]) == 0] = -100
    chat_loss = model(input_ids=x, labels=labels).loss.item()
    x = torch.tensor([tk(text)["input_ids"]])
    text_loss = model(input_ids=x, labels=x).loss.item()
    # a greedy continuation, for the card
    ids = tk(qa["prompt"], return_tensors="pt")["input_ids"]
    g = model.generate(ids, max_new_tokens=24, do_sample=False)
    sample = tk.decode(g[0, ids.shape[1] :], skip_special_tokens=False)
    return dict(qa_loss=qa_loss, chat_loss=chat_loss, text_loss=text_loss, greedy=sample)


def write_card(path: Path, s: dict) -> None:
    lnv = math.log(VOCAB_SIZE)
    sid = s["special_ids"]
    a = s["args"]
    hist = "\n".join(f"| {st} | {tr:.3f} | {hl:.3f} |" for st, tr, hl in s["history"])
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    card = f"""---
license: cc0-1.0
language: en
library_name: transformers
pipeline_tag: text-generation
tags: [tokstep, llama, tiny, kjv]
---

# tokstep-mini

The default model bundled with **tokstep** (a terminal step-through debugger for
the training loss of causal LMs), so that tokstep works with no network and no
model download. It is a deliberately tiny Llama trained from scratch on the
King James Bible. **Intended use: tokstep's demo and tests only.** It is not a
useful language model for anything else and must not be used as a source of
scripture, advice or facts.

## Architecture

| | |
|---|---|
| class | `LlamaForCausalLM` (standard Hugging Face format, `config.json` + `model.safetensors`) |
| layers / hidden / heads | {MODEL_KW["num_hidden_layers"]} / {MODEL_KW["hidden_size"]} / {MODEL_KW["num_attention_heads"]} (head dim {MODEL_KW["hidden_size"] // MODEL_KW["num_attention_heads"]}, no GQA) |
| MLP | SwiGLU, intermediate {MODEL_KW["intermediate_size"]} |
| vocab | {VOCAB_SIZE} (byte-level BPE) |
| max positions | {MODEL_KW["max_position_embeddings"]} (RoPE, theta {MODEL_KW["rope_theta"]:g}) |
| embeddings | tied input/output |
| parameters | **{s["n_params"]:,}** |
| `model.safetensors` | **{s["file_bytes"]:,} bytes** ({s["file_bytes"] / 2**20:.2f} MiB), float32 |

## Tokenizer

GPT-2 style byte-level BPE (`tokenizers` ByteLevel pre-tokenizer and decoder, `Ġ`
pieces, no prefix space, no unknown token), vocab {VOCAB_SIZE} including the
special tokens, trained on the training split only.

| token | id | role |
|---|---|---|
| `<s>` | {sid["<s>"]} | BOS |
| `</s>` | {sid["</s>"]} | EOS (end of every training document) |
| `<pad>` | {sid["<pad>"]} | PAD (distinct from EOS; never trained on) |
| `<\\|im_start\\|>` | {sid["<|im_start|>"]} | ChatML |
| `<\\|im_end\\|>` | {sid["<|im_end|>"]} | ChatML |

* **BOS is added by default**, like Llama tokenizers: `tokenizer("text")` gives
  `[<s>, ...]` (post-processor `TemplateProcessing("<s> $A")`). EOS is not added.
* **Chat template**: ChatML, `<|im_start|>{{role}}\\n{{content}}<|im_end|>\\n` per
  message, with `add_generation_prompt` support (`<|im_start|>assistant\\n`). The
  assistant content *and its closing `<|im_end|>`* are wrapped in
  `{{% generation %}}...{{% endgeneration %}}`, so
  `apply_chat_template(..., return_dict=True, return_assistant_tokens_mask=True)`
  returns a non-empty `assistant_masks` (on a one-turn chat: {s["tok"]["mask_tokens"]} of {s["tok"]["chat_len"]} tokens).
* The template itself never emits `<s>`, and `apply_chat_template(tokenize=True)`
  tokenizes with `add_special_tokens=False`, so **its ids do
  {"" if s["tok"]["chat_adds_bos"] else "not "}start with `<s>`**.
  `tokenizer(apply_chat_template(..., tokenize=False))` does add `<s>`. The model
  saw chats both ways in training.
* `generation_config.json`: bos {sid["<s>"]}, eos {sid["</s>"]}, pad {sid["<pad>"]}
  (chat generation should also stop on `<|im_end|>` = {sid["<|im_end|>"]}).

## Training data

The King James Version of the Bible (public domain), from Debian's
`bible-kjv-text` package (read through the `bible` program of package
`bible-kjv`), parsed by `scripts/get_corpus.py` into 31,102 verses in 1,189
chapters. Every {HELDOUT_EVERY}th chapter by global chapter index (0, {HELDOUT_EVERY}, {2 * HELDOUT_EVERY}, ...: Genesis 1,
Genesis 26, ...) is **held out** ({s["held_chapters"]} chapters) and was never trained on, not even
by the tokenizer. Documents, shuffled and packed into windows (no padding, loss
on **every** token, including prompts and template tokens):

1. each training chapter as `<s>` + `"Genesis 2\\n"` + verses joined by `"\\n"` + `</s>`;
2. {a["chat_per_epoch"]} ChatML chats per epoch, fresh each epoch, from training
   verses: user `Recite Genesis 2:3.` -> assistant verse text, or user
   `Continue: <verse>` -> assistant next verse; sometimes a system message
   (`{SYSTEM_PROMPT}`) and a second turn (`And the next verse?`); half with a
   leading `<s>`, each ending with `</s>`;
3. {a["qa_per_epoch"]} prompt/answer pairs per epoch: `Question: Recite Genesis 2:3.\\nAnswer: <verse>`
   or `Question: What comes after "<verse>"?\\nAnswer: <next verse>`
   (the answer starts with a space), `<s>` ... `</s>`.

One epoch is {s["epoch_tokens"]:,} tokens.

## Training

```
python scripts/get_corpus.py /tmp/kjv.jsonl
python scripts/train_default_model.py --corpus /tmp/kjv.jsonl \\
    --out engine/assets/tokstep-mini --demo-out engine/assets/demo
```

Seed {SEED}, `torch.set_num_threads({a["threads"]})`, float32, AdamW (betas 0.9/0.95,
weight decay {a["weight_decay"]} on matrices), peak lr {a["lr"]:g}, {a["warmup"]} warmup steps,
cosine to 10%, grad clip 1.0, {s["steps"]} steps: batch {a["batch"]} x 256 tokens for the first
{1 - a["long_frac"]:.0%} of steps, then {a["batch"] // 2} x 512 (so all {MODEL_KW["max_position_embeddings"]} positions are trained);
{s["tokens_seen"]:,} tokens in all (~{s["tokens_seen"] / s["epoch_tokens"]:.1f} epochs).

Machine: {cpu or platform.processor()}, 2 cores shared with other work, no GPU;
torch {torch.__version__}, transformers {__import__("transformers").__version__}, tokenizers {__import__("tokenizers").__version__}.
Training loop **{s["train_secs"] / 60:.1f} min**; whole script (tokenizer, training, evaluation, saving)
{s["total_secs"] / 60:.1f} min. (On an idle 2-core machine the loop runs at about 5,000 tokens/s;
on this shared one it averaged {s["tokens_seen"] / s["train_secs"]:,.0f} tokens/s.) The run is deterministic for a
given CPU, torch version and thread count; the script sets `OMP_WAIT_POLICY=PASSIVE`
because spinning OpenMP threads are several times slower on a loaded machine.

## Results

Losses are mean cross-entropy per token in nats, computed with the model's own
`model(input_ids, labels=input_ids).loss`, each chapter tokenized with `<s>` and
split into windows of 512 tokens, token-weighted.

| | loss | / ln {VOCAB_SIZE} ({lnv:.3f}) |
|---|---|---|
| final train loss (EMA of batch losses) | {s["final_train_ema"]:.3f} | {s["final_train_ema"] / lnv:.1%} |
| 16 training chapters, measured like held-out | {s["train_eval"]:.3f} | {s["train_eval"] / lnv:.1%} |
| **held-out, all {s["held_chapters"]} chapters** ({s["held_tokens"]:,} predicted tokens) | **{s["held_loss"]:.3f}** | **{s["held_loss"] / lnv:.1%}** |
| `heldout.txt` ({len(s["file_chapters"])} chapters, {s["file_bytes_txt"]:,} bytes; what the tests measure) | {s["file_loss"]:.3f} | {s["file_loss"] / lnv:.1%} |

During training (held-out = first 4 held-out chapters):

| step | train loss (EMA) | held-out |
|---|---|---|
{hist}

Demo samples (`engine/assets/demo/`, all from the held-out chapter Genesis 1):
`qa.json` answer-only loss {s["demo"]["qa_loss"]:.3f}, `chat.json` assistant-only loss
{s["demo"]["chat_loss"]:.3f}, `text.txt` loss {s["demo"]["text_loss"]:.3f}. Greedy continuation of the
`qa.json` prompt: `{s["demo"]["greedy"]!r}`.

Limitations: the model is under-trained because of the CPU budget (about {s["tokens_seen"] / s["epoch_tokens"]:.1f}
epochs; held-out loss was still falling at the end), so its greedy generations
loop and invent text. It is good enough for tokstep's purpose, which is showing
per-token losses that are clearly better than uniform (ln 4096) and lower on
predictable tokens than on surprising ones.

## Files

`config.json`, `generation_config.json`, `model.safetensors`, `tokenizer.json`,
`tokenizer_config.json` (with `chat_template`), whatever else
`save_pretrained` writes (transformers 5 writes no `special_tokens_map.json`;
the special tokens are in `tokenizer_config.json`), and `heldout.txt`: held-out chapters
({", ".join(s["file_chapters"])}) in the plain-text training format without special tokens,
separated by blank lines, so tests can recompute the held-out loss
(`tests/test_default_model.py`).

## License

Weights, tokenizer and this card: **CC0 1.0** (public domain dedication), matching
the public-domain corpus.
"""
    path.write_text(card, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
