"""The lint catalogue: codes, severities, what each means and its fix (`LINTS`), and the `Finding` type."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
WHITESPACE_RUN = 8  # this many whitespace-only tokens in a row is worth a look
MAX_POSITIONS = 50  # positions kept per finding


@dataclass(frozen=True)
class Finding:
    """One problem found in one sample."""

    code: str
    severity: Severity
    positions: tuple[int, ...]  # token indices into the sample's input_ids
    message: str
    convention: str = ""  # the mask convention a label lint compared against (printed once per run, not here)

    @property
    def fix(self) -> str:
        """How to fix it (the lint's documented fix; the README's table shows the same text)."""
        doc = LINTS.get(self.code)
        return doc.fix if doc is not None else ""


@dataclass(frozen=True)
class LintDoc:
    """What a lint means and how to fix it (the README table and `tokstep lint` are built from this)."""

    code: str
    severity: Severity
    meaning: str
    fix: str


LINTS: dict[str, LintDoc] = {
    doc.code: doc
    for doc in [
        LintDoc(
            "double-bos",
            "error",
            "BOS twice at the start: the chat template writes one and the tokenizer adds another.",
            "Tokenize rendered chat text with add_special_tokens=False (or apply_chat_template(tokenize=True)).",
        ),
        LintDoc(
            "missing-bos",
            "warning",
            "No BOS at the start, although the tokenizer adds one by default (pretraining saw it).",
            "Tokenize with add_special_tokens=True, or prepend tokenizer.bos_token_id; info-level for chat "
            "templates that never write BOS.",
        ),
        LintDoc(
            "no-eos",
            "warning",
            "A supervised answer / assistant turn does not end in EOS or the template's end-of-turn token: "
            "the model never learns to stop.",
            "Append tokenizer.eos_token (or the end-of-turn token) to every answer and keep it supervised.",
        ),
        LintDoc(
            "eos-masked",
            "error",
            "The EOS / end-of-turn token right after the answer is masked (-100): a collator that masks "
            "every pad id when pad == eos, or an answer mask that stops before the end-of-turn.",
            "If pad == eos, use a distinct pad token or mask padding by attention_mask; otherwise extend the "
            "answer's mask over its EOS / end-of-turn (the finding says which applies).",
        ),
        LintDoc(
            "truncated?",
            "warning",
            "A supervised answer ends mid-word with no EOS / end-of-turn after it: it was probably cut "
            "(max_length) and the model learns to stop mid-sentence.",
            "Raise max_length or drop/split rows longer than it; never cut inside an answer.",
        ),
        LintDoc(
            "trains-on-user",
            "error",
            "Supervised tokens inside a user turn (recovered from the ids with the chat template): the model "
            "learns to write the user's words, e.g. a pattern that matched the user header, not the assistant's; "
            "also a chat row with nothing masked.",
            "Supervise only the assistant turns: match the assistant header (or use the template's "
            "{% generation %} mask).",
        ),
        LintDoc(
            "trains-on-system",
            "error",
            "Supervised tokens inside the system prompt (recovered from the ids with the chat template).",
            "Mask the system turn; supervise only the assistant turns.",
        ),
        LintDoc(
            "trains-on-tool",
            "error",
            "Supervised tokens inside a tool result (recovered from the ids with the chat template).",
            "Mask tool results; supervise only the assistant turns.",
        ),
        LintDoc(
            "trains-on-markup",
            "error",
            "Supervised role headers or template markup (e.g. `<|im_start|>assistant`); info when only a newline / "
            "EOS right after the end-of-turn or right before the reply is (what TRL trains for Qwen, Gemma-3, "
            "Phi-3: no finding at all on a template TRL recognises).",
            "Start each supervised span after the assistant header and end it at the end-of-turn token.",
        ),
        LintDoc(
            "assistant-not-trained",
            "error",
            "An assistant reply in the ids is masked, wholly or partly (error when no reply is trained; "
            "warning for some; info when only the last reply is trained, a common choice).",
            "Supervise every assistant turn's content and end-of-turn (or mean to train the last one only).",
        ),
        LintDoc(
            "mask-off-by-one",
            "error",
            "The supervised span misses an assistant reply's first or last tokens, or is shifted by one or "
            "two tokens against it (a header length or an index off by one).",
            "Recompute the span boundaries from the tokenizer's offsets; the finding gives the shift.",
        ),
        LintDoc(
            "labels-other-template",
            "error",
            "The labels follow another rendering of the chat than the ids (built with a different template): "
            "the supervised text sits elsewhere in input_ids, or the labels hold another template's markup.",
            "Build input_ids and labels from one rendering, with the model's own chat template.",
        ),
        LintDoc(
            "nothing-trained",
            "error",
            "Every label is -100: the sample trains nothing (a batch of such samples has loss NaN).",
            "Check the masking: the assistant/answer span was not found, or it was truncated away.",
        ),
        LintDoc(
            "labels-pre-shifted",
            "error",
            "labels[i] == input_ids[i+1]: the labels were shifted already and the model shifts them "
            "again, so it learns to predict the token after next.",
            "Pass labels aligned with input_ids (labels = input_ids, masked); the model does the shift.",
        ),
        LintDoc(
            "labels-differ",
            "warning",
            "Supervised labels differ from the input ids at the same position: the model is trained on "
            "other tokens than the text it reads.",
            "Build labels from the same ids as input_ids (copy, then set -100 where not trained).",
        ),
        LintDoc(
            "id-beyond-tokenizer",
            "error",
            "An input id or label is not a token of this tokenizer (or a negative label other than -100).",
            "Re-tokenize with this model's tokenizer; only -100 is ignored by the loss.",
        ),
        LintDoc(
            "unknown-token",
            "warning",
            "The tokenizer produced its unknown token: some characters cannot be represented.",
            "Normalize or drop those characters, or use a tokenizer with byte fallback.",
        ),
        LintDoc(
            "pad-trained",
            "warning",
            "Padding tokens are supervised: the model learns to emit padding.",
            "Set labels to -100 where attention_mask is 0.",
        ),
        LintDoc(
            "token-spans-boundary",
            "warning",
            "Tokenized as one string, a token covers the end of the prompt and the start of the answer: "
            "a split inside a word, so the answer's ids differ from running text.",
            "Split prompt and answer at a word boundary (put the space at the start of the answer).",
        ),
        LintDoc(
            "answer-leading-space",
            "warning",
            "The answer's first word tokenizes differently with and without the space before it: the "
            "space sits at the end of the prompt, or the tokenizer adds one the text does not have.",
            "Move the space from the end of the prompt to the start of the answer; for SentencePiece, "
            "tokenize prompt + answer together and mask by offsets.",
        ),
        LintDoc(
            "template-inserted",
            "info",
            "The chat template writes tokens inside an assistant turn that are not in the message (an empty "
            "<think></think> block, tags around reasoning): trained by default, as {% generation %} templates do.",
            "Decide: --inserted mask masks them; or put the text in the message (reasoning_content) so it is "
            "the model's own.",
        ),
        LintDoc(
            "generation-mask-empty",
            "error",
            "The template has {% generation %} markers but return_assistant_tokens_mask is all zeros: a trainer "
            "using it (TRL assistant_only_loss) trains nothing.",
            "Fix the template's generation block (it must wrap the assistant content), or do not use "
            "assistant_only_loss with it.",
        ),
        LintDoc(
            "tokenizer-differs",
            "warning",
            "transformers' tokenizer class encodes the text into other ids than the folder's tokenizer.json read "
            "by the tokenizers library (transformers 5.x LlamaTokenizer drops <unk> and the `▁` after special "
            "tokens): the two pipelines train on different ids.",
            "Load the tokenizer as PreTrainedTokenizerFast(tokenizer_file=...) or fix tokenizer_config.json's "
            "tokenizer_class, and tokenize the same way in training and inference.",
        ),
        LintDoc(
            "too-long",
            "error",
            "The sample has more tokens than the model has positions: `tokstep report` refuses it and a trainer "
            "cuts it (often silently, losing the answer and its EOS).",
            "Pass --truncate N to look at the start, or split / filter long rows (max_length in the trainer).",
        ),
        LintDoc(
            "double-template",
            "error",
            "A chat message already contains template tokens (e.g. <|im_start|>): the template is applied "
            "twice.",
            "Pass plain message contents, or the already-rendered text as `text` (not as messages).",
        ),
        LintDoc(
            "chat-as-text",
            "warning",
            "Plain text that contains chat-template tokens: every turn is trained, the user's too.",
            "Pass the conversation as messages so only the assistant turns are supervised.",
        ),
        LintDoc(
            "whitespace-run",
            "warning",
            f"{WHITESPACE_RUN} or more whitespace-only tokens in a row: padding written as text or broken "
            "formatting.",
            "Strip or collapse the whitespace when building the data.",
        ),
        LintDoc(
            "no-roundtrip",
            "warning",
            "decode(encode(text)) != text: the tokenizer normalizes or drops something, so the model "
            "trains on other text than what is written.",
            "Inspect the first difference; normalize the data the same way, or pick a lossless tokenizer.",
        ),
        LintDoc(
            "truncated",
            "info",
            "The sample was truncated (--truncate): its end, and the EOS, may be cut off.",
            "Raise the limit or split long samples.",
        ),
        LintDoc(
            "bad-row",
            "error",
            "A row of the data file cannot be read: invalid JSON, not an object, or no usable columns.",
            "Fix the row at the line shown (or point --text-column / --prompt-column... at your columns).",
        ),
        LintDoc(
            "cross-document-attention",
            "error",
            "A packed row's documents attend to each other: traced as the trainer's forward saw it, a document's "
            "log-probs differ from the same document traced alone (tokstep --batches).",
            "Pass position_ids restarting at 0 with no 2D attention_mask and use_cache=False, or a flash-attention "
            "varlen path (cu_seq_lens), or a 4D block-diagonal mask.",
        ),
        LintDoc(
            "duplicate-rows",
            "warning",
            "The row's input_ids and labels are identical to an earlier row's: the model sees the same sample "
            "twice per epoch (a join or a concatenation repeated rows).",
            "Deduplicate the data set (hash input_ids + labels) before training.",
        ),
        LintDoc(
            "foreign-ids",
            "error",
            "The ids were made by another tokenizer: another family's special or marker ids, and decoding then "
            "re-encoding them changes most tokens; the model reads nonsense.",
            "Re-tokenize the text with this model's tokenizer (the finding names the likely family).",
        ),
        LintDoc(
            "unbuildable",
            "error",
            "The row could not be turned into a sample (empty answer, no assistant turn, bad ids...).",
            "Fix the row as the message says.",
        ),
    ]
}


def finding(code: str, positions: Iterator[int] | tuple[int, ...] | list[int], message: str) -> Finding:
    """A finding at its documented severity, with at most MAX_POSITIONS positions."""
    kept = tuple(int(p) for p in positions)[:MAX_POSITIONS]
    return Finding(code, LINTS[code].severity, kept, message)
