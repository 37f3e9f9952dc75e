"""The logit lens at one position: every layer's hidden state read through the final norm and output head.

For position t only: the model runs on tokens 0..t (position t sees nothing later), hooks keep row t of the
embeddings and of each decoder layer's output, and the L+1 rows go through the model's final norm and head:
an [L+1, vocab] block for one position, never a per-layer [T, vocab].
"""

from __future__ import annotations

from typing import Any

import torch

from tokstep.engine.compare.results import LensResult
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.sample import Sample
from tokstep.engine.model.loading import LoadedModel
from tokstep.engine.model.reduce import reduce_logits
from tokstep.engine.model.trace import _head_logits, _head_matches_model, check_sample_fits, shifted_targets

# Where the families keep the norm applied after the last layer (Llama, Gemma: norm; GPT-2: ln_f;
# GPT-NeoX: final_layer_norm; others seen in the wild: final_layernorm, norm_f).
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f", "final_norm")
SUPPORTED = "Llama, GPT-2, GPT-NeoX and Gemma families"


def _not_understood(model: Any, why: str) -> TokstepError:
    return TokstepError(
        f"logit lens: the structure of {type(model).__name__} is not understood ({why}); it knows the {SUPPORTED}"
    )


def lens_modules(model: Any) -> tuple[torch.nn.ModuleList, torch.nn.Module, str]:
    """(decoder layers, final norm, "path (class)") found generically on the base model."""
    base = getattr(model, "base_model", None)
    if base is None or base is model or model.get_output_embeddings() is None:
        raise _not_understood(model, "no base model with a separate output head")
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    lists = [
        (name, module)
        for name, module in base.named_children()
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0
    ]
    layers = [(name, m) for name, m in lists if n_layers is None or len(m) == n_layers]
    if len(layers) != 1:
        raise _not_understood(model, "no single list of decoder layers")
    for name in FINAL_NORM_NAMES:
        norm = getattr(base, name, None)
        if isinstance(norm, torch.nn.Module):
            prefix = getattr(model, "base_model_prefix", "model")
            return layers[0][1], norm, f"{prefix}.{name} ({type(norm).__name__})"
    raise _not_understood(model, "no final norm among " + ", ".join(FINAL_NORM_NAMES))


def _hidden(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@torch.inference_mode()
def logit_lens(loaded: LoadedModel, sample: Sample, t: int, *, top_k: int = 5) -> LensResult:
    """Each layer's next-token prediction at position t: target log-prob and rank, top-k, per layer."""
    check_sample_fits(loaded, sample)
    if not 0 <= t < len(sample) - 1:
        raise TokstepError(f"logit lens: position {t} is outside 0..{len(sample) - 2}")
    model = loaded.model
    layers, norm, norm_name = lens_modules(model)
    rows: list[torch.Tensor] = []  # each (d,): embeddings, then the output of every layer, at position t

    def keep_input(_module: Any, args: Any, kwargs: Any) -> None:
        hidden = args[0] if args else kwargs.get("hidden_states")
        rows.append(hidden[0, t])

    def keep_output(_module: Any, _args: Any, output: Any) -> None:
        rows.append(_hidden(output)[0, t])

    device = model.get_input_embeddings().weight.device
    inputs = {"input_ids": torch.tensor(sample.input_ids[: t + 1], device=device)[None]}  # (1, t+1)
    if sample.attention_mask is not None:
        inputs["attention_mask"] = torch.tensor(sample.attention_mask[: t + 1], device=device)[None]
    handles = [layers[0].register_forward_pre_hook(keep_input, with_kwargs=True)]
    handles += [layer.register_forward_hook(keep_output) for layer in layers]
    try:
        own = model(**inputs, use_cache=False, logits_to_keep=1).logits[0, -1]  # (V,) the model's own at t
    finally:
        for handle in handles:
            handle.remove()
    if len(rows) != len(layers) + 1:
        raise _not_understood(model, f"{len(rows)} hidden states captured for {len(layers)} layers")
    head_device = model.get_output_embeddings().weight.device
    hidden = torch.stack([row.to(head_device) for row in rows])  # (L+1, d)
    logits = _head_logits(model, norm(hidden.to(next(norm.parameters(), hidden).device)))  # (L+1, V)
    if not _head_matches_model(logits[-1], own):
        raise _not_understood(
            model, "the last layer through the final norm and head does not give its logits"
        )
    targets_np, _ = shifted_targets(sample)
    targets = torch.full((len(rows),), int(targets_np[t]), dtype=torch.long, device=logits.device)
    stats = reduce_logits(logits, targets, min(top_k, loaded.info.vocab_size))
    names = ("embeddings", *(f"layer {i}" for i in range(1, len(layers) + 1)))
    return LensResult(
        position=t,
        target_id=int(targets_np[t]),
        layers=names,
        target_logprob=stats.logprob,
        target_rank=stats.rank,
        topk_ids=stats.topk_ids,
        topk_logprobs=stats.topk_logprobs,
        finite=stats.finite,
        final_norm=norm_name,
    )
