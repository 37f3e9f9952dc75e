"""The logit lens against a hand-computed one: HF's own `output_hidden_states`, the final norm and head
applied by hand, a full float64 log_softmax per layer; on the four families tokstep knows."""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch

from tokstep.engine.compare.lens import lens_modules, logit_lens
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.model.loading import wrap_model

TEXT = SampleSpec(text="A lazy cat loves brown dogs and quick foxes in France.")
NORMS = {"gpt2": "ln_f", "llama": "norm", "gpt_neox": "final_layer_norm", "gemma2": "norm"}


def hand_lens(model, sample, t: int) -> torch.Tensor:
    """(L+1, V) float64 log-probs: hidden_states[i] at t through the final norm and the head; the last
    layer is the model's own logits (HF's last hidden state is already normed)."""
    with torch.no_grad():
        out = model(torch.tensor(sample.input_ids)[None], output_hidden_states=True, use_cache=False)
        norm = getattr(model.base_model, NORMS[model.config.model_type])
        rows = [model.get_output_embeddings()(norm(h[0, t])) for h in out.hidden_states[:-1]]
        cap = getattr(model.config, "final_logit_softcapping", None)
        if cap:
            rows = [torch.tanh(r / cap) * cap for r in rows]
        rows.append(out.logits[0, t])
    return torch.stack(rows).double().log_softmax(-1)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox", "gemma2"])
def test_lens_matches_hand_computed_lens(arch, sp_tokenizer):
    model = tiny.tiny_model(arch, len(sp_tokenizer), seed=2)
    loaded = wrap_model(model, sp_tokenizer, arch)
    sample = build_sample(TEXT, sp_tokenizer)
    t = 9
    lens = logit_lens(loaded, sample, t, top_k=5)
    reference = hand_lens(model, sample, t)  # (L+1, V)
    layers = model.config.num_hidden_layers
    assert lens.layers == ("embeddings", *(f"layer {i}" for i in range(1, layers + 1)))
    assert lens.target_id == int(sample.input_ids[t + 1])
    target = reference[:, lens.target_id]
    np.testing.assert_allclose(lens.target_logprob, target.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(lens.target_rank, 1 + (reference > target[:, None]).sum(-1).numpy())
    np.testing.assert_array_equal(lens.topk_ids, reference.topk(5, dim=-1).indices.numpy())
    np.testing.assert_allclose(lens.target_prob, target.exp().numpy(), rtol=1e-4, atol=1e-6)
    assert NORMS[arch] in lens.final_norm
    assert lens.finite.all()


def test_lens_rejects_a_position_outside_the_sample(sp_tokenizer):
    loaded = wrap_model(tiny.tiny_model("llama", len(sp_tokenizer)), sp_tokenizer, "llama")
    sample = build_sample(TEXT, sp_tokenizer)
    with pytest.raises(TokstepError, match="outside"):
        logit_lens(loaded, sample, len(sample) - 1)


def test_unknown_structure_is_said_plainly(sp_tokenizer):
    model = tiny.tiny_model("llama", len(sp_tokenizer))
    model.model.norm_renamed = model.model.norm
    del model.model.norm
    with pytest.raises(TokstepError, match="structure of LlamaForCausalLM is not understood"):
        lens_modules(model)
