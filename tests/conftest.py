"""Shared fixtures: tiny tokenizers (session-scoped: training one takes a second) and tiny models."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tiny  # noqa: E402


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """GPT-2 style byte-level BPE with a ChatML template ({% generation %} markers)."""
    return tiny.byte_level_bpe(chat_template=tiny.CHATML)


@pytest.fixture(scope="session")
def sp_tokenizer():
    """SentencePiece style (▁, byte fallback, BOS added) with a Llama-3 style template (generation markers)."""
    return tiny.sentencepiece_bpe(chat_template=tiny.LLAMA3)
