#!/usr/bin/env python3
"""Sliding-window attention fixtures, from transformers + torch (PyPI).

Writes into fixtures/hf_window/, for each case, ``<case>.safetensors`` + ``<case>.json``: a tiny
randomly initialised transformers attention module (MistralAttention or Qwen2Attention, eager)
of decoder layer 1, saved under the checkpoint names ``model.layers.1.self_attn.{q,k,v,o}_proj.
{weight,bias}``, with ``test.input`` ``[B,T,H]`` (f32) and ``test.output``: the module's output
for positions 0..T-1, computed in float64 (weights and inputs are f32 values, widened exactly)
and rounded to f32. The mask is the one transformers' decoder model builds for that layer: when the layer slides
(Qwen2Attention decides per layer from ``layer_types`` / ``use_sliding_window`` +
``max_window_layers``; MistralModel slides every layer when ``sliding_window`` is set),
``masking_utils.create_sliding_window_causal_mask``, else ``create_causal_mask``. ``<case>.json`` is
``{"hfConfig": ..., "layer": 1, "window": W or null, "description": ...}`` where ``window`` is the
window transformers applied to the layer (the Rust and TypeScript tests check that
``loadGqaAttention`` reads the same from ``hfConfig``). T spans several windows; W = 1 included.

Run: /path/to/python scripts/gen_window_fixtures.py   (versions: scripts/requirements-fixtures.txt)
"""
import json
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import MistralConfig, Qwen2Config
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.models.mistral.modeling_mistral import MistralAttention, MistralRotaryEmbedding
from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, Qwen2RotaryEmbedding

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "hf_window")


def cases():
    base = {"hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
            "intermediate_size": 64, "vocab_size": 16, "max_position_embeddings": 256, "rope_theta": 10000.0}
    return [
        ("mistral_w4", "Mistral, sliding_window 4, T=21 (five windows), GQA 4/2", "mistral",
         {**base, "sliding_window": 4}, 21),
        ("mistral_w1", "Mistral, sliding_window 1 (each position reads itself), T=9", "mistral",
         {**base, "sliding_window": 1}, 9),
        ("mistral_w64_t40", "Mistral, sliding_window 64 >= T=40 (the causal mask)", "mistral",
         {**base, "sliding_window": 64}, 40),
        ("qwen2_layer_types", "Qwen2 with bias, layer_types [full, sliding], sliding_window 5, T=17", "qwen2",
         {**base, "use_sliding_window": True, "sliding_window": 5, "layer_types": ["full_attention", "sliding_attention"]}, 17),
        ("qwen2_window_layers", "Qwen2 with bias, use_sliding_window, max_window_layers 1 (layer 1 slides), sliding_window 6, T=30",
         "qwen2", {**base, "use_sliding_window": True, "sliding_window": 6, "max_window_layers": 1, "rope_theta": 1000000.0}, 30),
        ("qwen2_no_window", "Qwen2 with bias, use_sliding_window false (sliding_window 6 ignored), T=16", "qwen2",
         {**base, "use_sliding_window": False, "sliding_window": 6, "max_window_layers": 1}, 16),
    ]


def build(kind, hf):
    conf_cls, attn_cls, rope_cls = (MistralConfig, MistralAttention, MistralRotaryEmbedding) if kind == "mistral" else \
        (Qwen2Config, Qwen2Attention, Qwen2RotaryEmbedding)
    cfg = conf_cls(**json.loads(json.dumps(hf)))
    cfg._attn_implementation = "eager"
    return cfg, attn_cls(cfg, layer_idx=1).eval(), rope_cls(cfg)


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(4321)
    for name, desc, kind, hf, T in cases():
        cfg, attn, rope = build(kind, hf)
        # What transformers applies to this layer: Qwen2Attention decides per layer (layer_types),
        # MistralModel slides every layer when config.sliding_window is set.
        window = attn.sliding_window if hasattr(attn, "sliding_window") else cfg.sliding_window
        tensors = {}
        with torch.no_grad():
            for mod in ("q_proj", "k_proj", "v_proj", "o_proj"):
                lin = getattr(attn, mod)
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * 0.3)
                tensors[f"model.layers.1.self_attn.{mod}.weight"] = lin.weight.detach().clone().contiguous()
                if lin.bias is not None:
                    lin.bias.copy_(torch.randn(lin.bias.shape, generator=gen) * 0.2)
                    tensors[f"model.layers.1.self_attn.{mod}.bias"] = lin.bias.detach().clone().contiguous()
            B, H = 2, cfg.hidden_size
            x = torch.randn((B, T, H), generator=gen) * 3.0
            pos = torch.arange(T)[None, :].expand(B, T)
            attn64 = attn.double()
            x64 = x.double()
            cos, sin = rope(x64, pos)
            make = create_sliding_window_causal_mask if window is not None else create_causal_mask
            mask = make(config=cfg, inputs_embeds=x64, attention_mask=None, cache=None, position_ids=pos,
                        allow_is_causal_skip=False)
            y, _ = attn64(x64, position_embeddings=(cos, sin), attention_mask=mask)
        assert torch.isfinite(y).all()
        if window is not None and window < T:
            # The window is real: key 0 is masked for the last query.
            masked = mask[0, 0, T - 1, 0]
            assert (not bool(masked)) if mask.dtype == torch.bool else bool(masked < -1e30), mask[0, 0, T - 1]
        tensors["test.input"] = x.contiguous()
        tensors["test.output"] = y.float().contiguous()
        save_file(tensors, os.path.join(OUT, f"{name}.safetensors"))
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump({"description": desc, "model": kind, "layer": 1, "window": window, "hfConfig": hf}, f, indent=1)
        print(f"{name}: window {window}, y {tuple(y.shape)} |y|max {y.abs().max():.3f}")
    meta = {"transformers": transformers.__version__, "torch": torch.__version__, "modules": [c[0] for c in cases()]}
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"wrote {len(cases())} modules to {os.path.normpath(OUT)} (transformers {transformers.__version__}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
