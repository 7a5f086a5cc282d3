#!/usr/bin/env python3
"""Hugging Face rotary-scaling fixtures, from transformers + torch (PyPI).

Writes into fixtures/hf_rope/:

* ``inv_freq.json``: for each case, transformers' own rope init function
  (``transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS[rope_type]``, or
  ``LlamaRotaryEmbedding.compute_default_rope_parameters`` for "default") run on a LlamaConfig:
  the f32 inverse frequencies and the attention factor, plus our option shapes (``ropeTheta``,
  ``ropeScaling`` in camelCase, ``headDim``, and the sequence length for ``dynamic``). Cases cover
  linear, dynamic below/at/above its threshold, yarn with every frequency band (extrapolated,
  ramp, interpolated), truncate on/off, betaFast/betaSlow, attentionFactor / mscale /
  mscaleAllDim precedence, and llama3 with all three wavelength bands.
* ``<case>.safetensors`` + ``<case>.json``: a tiny randomly initialised transformers attention
  module (LlamaAttention or Qwen2Attention, eager, float32) of decoder layer 1 saved under the
  checkpoint names ``model.layers.1.self_attn.{q,k,v,o}_proj.{weight,bias}`` (plus a decoy
  ``model.layers.0.self_attn.q_proj.weight``), with ``test.input`` ``[B,T,H]`` and
  ``test.output`` = the module's output for positions 0..T-1 with a causal mask, rotary from the
  model's own rotary-embedding class (``LlamaRotaryEmbedding`` / ``Qwen2RotaryEmbedding``, which
  applies dynamic updates and the attention factor). ``<case>.json`` is ``{"hfConfig": ...,
  "layer": 1, "description": ...}``; ``hfConfig`` is the config.json dict as given to the config
  class (some in the transformers 4 ``rope_theta`` + ``rope_scaling`` form, one with the old
  ``type`` key, some in the transformers 5 ``rope_parameters`` form).

Run: /path/to/python scripts/gen_rope_fixtures.py   (versions: scripts/requirements-fixtures.txt)
"""

import json
import math
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig, Qwen2Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding
from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, Qwen2RotaryEmbedding

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "hf_rope")


def camel(k):
    head, *rest = k.split("_")
    return head + "".join(w.capitalize() for w in rest)


def our_scaling(rp, max_pos):
    """Our `ropeScaling` option for a transformers rope dict (None for default)."""
    t = rp.get("rope_type", rp.get("type", "default"))
    if t == "default":
        return None
    out = {"type": t}
    for k, v in rp.items():
        if k in ("rope_type", "type", "rope_theta"):
            continue
        out[camel(k)] = v
    if t == "dynamic":
        out["originalMaxPositionEmbeddings"] = max_pos
    return out


def inv_freq_cases():
    cases = []

    def add(name, desc, head_dim, theta, rp, max_pos=2048, seq_len=None):
        rp = dict(rp)
        cfg = LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, num_key_value_heads=1, head_dim=head_dim,
                          max_position_embeddings=max_pos, rope_parameters={"rope_theta": theta, **rp})
        t = rp.get("rope_type", "default")
        if t == "default":
            inv, af = LlamaRotaryEmbedding.compute_default_rope_parameters(cfg)
        else:
            inv, af = ROPE_INIT_FUNCTIONS[t](cfg, "cpu", seq_len=seq_len)
        assert inv.dtype == torch.float32
        cases.append({
            "name": name, "description": desc, "headDim": head_dim, "ropeTheta": theta,
            "ropeScaling": our_scaling(rp, max_pos), "seqLen": seq_len if seq_len is not None else 0,
            "invFreq": [float(x) for x in inv.tolist()], "attentionFactor": float(af),
        })

    add("default_64", "default rope, theta 10000, headDim 64", 64, 10000.0, {})
    add("default_48_theta5e5", "default rope, theta 500000, headDim 48 (exponent 2i/48 not exact in f32)", 48, 500000.0, {})
    add("linear_4", "linear factor 4, headDim 32", 32, 10000.0, {"rope_type": "linear", "factor": 4.0})
    add("linear_2_5_theta1e6", "linear factor 2.5, theta 1e6, headDim 40", 40, 1e6, {"rope_type": "linear", "factor": 2.5})
    for L in (64, 100, 1000):
        add(f"dynamic_2_len{L}", f"dynamic factor 2 at sequence length {L} (threshold max_position_embeddings 64)", 32, 10000.0,
            {"rope_type": "dynamic", "factor": 2.0}, max_pos=64, seq_len=L)
    add("dynamic_4_len5000_theta5e5", "dynamic factor 4, theta 500000, headDim 48, max_position_embeddings 1024, length 5000", 48, 500000.0,
        {"rope_type": "dynamic", "factor": 4.0}, max_pos=1024, seq_len=5000)
    # orig 4096, d 64, base 1e4: low = 10.47 -> 10, high = 22.5 -> 23: extrapolated i < 10, ramp 10..23, interpolated > 23.
    add("yarn_bands", "yarn factor 8, orig 4096, headDim 64: extrapolated, ramp and interpolated bands (truncate default)", 64, 10000.0,
        {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096}, max_pos=32768)
    add("yarn_no_truncate", "as yarn_bands with truncate false (fractional ramp ends 10.47 / 22.5)", 64, 10000.0,
        {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096, "truncate": False}, max_pos=32768)
    add("yarn_betas", "yarn factor 4, betaFast 16, betaSlow 2, orig 2048, theta 500000, headDim 48", 48, 500000.0,
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048, "beta_fast": 16.0, "beta_slow": 2.0}, max_pos=8192)
    add("yarn_attention_factor", "yarn with attentionFactor 1.3 (wins over mscale 2 / mscaleAllDim 1)", 64, 10000.0,
        {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096, "attention_factor": 1.3, "mscale": 2.0, "mscale_all_dim": 1.0},
        max_pos=32768)
    add("yarn_mscale", "yarn factor 40 with mscale 1.0 and mscaleAllDim 0.707 (DeepSeek style: m(40,1)/m(40,0.707))", 64, 10000.0,
        {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096, "mscale": 1.0, "mscale_all_dim": 0.707},
        max_pos=163840)
    add("yarn_mscale_only", "yarn factor 16 with mscale 1.5 but no mscaleAllDim: falls back to m(16, 1)", 32, 10000.0,
        {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 512, "mscale": 1.5}, max_pos=8192)
    add("llama3_8b", "llama3 (Llama 3.1 settings) factor 8, low 1, high 4, orig 8192, theta 500000, headDim 128", 128, 500000.0,
        {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        max_pos=131072)
    add("llama3_small", "llama3 factor 4, low 1, high 4, orig 64, headDim 16: low band, smoothed band and high band", 16, 10000.0,
        {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        max_pos=256)
    return cases


def module_cases():
    # (name, description, class, hf config dict, T)
    base = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, intermediate_size=64,
                vocab_size=16, max_position_embeddings=64)
    return [
        ("llama_default", "Llama, no bias, default rope theta 10000 (transformers 4 form)", "llama",
         {**base, "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False}, 12),
        ("llama_bias_linear", "Llama with attention_bias, linear factor 2 (v4 rope_scaling form)", "llama",
         {**base, "rope_theta": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 2.0}, "attention_bias": True}, 12),
        ("llama_dynamic_long", "Llama, dynamic factor 2, max_position_embeddings 16, T=40 (> threshold: recomputed), old `type` key", "llama",
         {**base, "max_position_embeddings": 16, "rope_theta": 10000.0, "rope_scaling": {"type": "dynamic", "factor": 2.0},
          "attention_bias": False}, 40),
        ("llama_dynamic_short", "Llama, dynamic factor 2, max_position_embeddings 64, T=12 (below threshold: base frequencies)", "llama",
         {**base, "rope_theta": 10000.0, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}, "attention_bias": False}, 12),
        ("llama_yarn_v5", "Llama, yarn factor 4, orig 16 (transformers 5 rope_parameters form), theta 10000", "llama",
         {**base, "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 16},
          "attention_bias": False}, 20),
        ("llama_llama3_headdim", "Llama, explicit head_dim 16 != 32/4, 4 heads / 1 KV head, llama3 factor 4 low 1 high 4 orig 32, theta 500000",
         "llama",
         {**base, "head_dim": 16, "num_key_value_heads": 1, "rope_theta": 500000.0,
          "rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 32}, "attention_bias": False}, 16),
        ("qwen2_bias_yarn", "Qwen2 (q/k/v bias, no o_proj bias), yarn factor 4 orig 16 with mscale 1 / mscale_all_dim 0.5, theta 1e6", "qwen2",
         {**base, "rope_theta": 1000000.0, "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                                                            "mscale": 1.0, "mscale_all_dim": 0.5}}, 20),
        ("qwen2_bias_default", "Qwen2 with bias, default rope theta 1e6, GQA 4/2", "qwen2",
         {**base, "rope_theta": 1000000.0}, 10),
    ]


def build_module(kind, hf):
    conf_cls, attn_cls, rope_cls = (LlamaConfig, LlamaAttention, LlamaRotaryEmbedding) if kind == "llama" else \
        (Qwen2Config, Qwen2Attention, Qwen2RotaryEmbedding)
    cfg = conf_cls(**json.loads(json.dumps(hf)))
    cfg._attn_implementation = "eager"
    attn = attn_cls(cfg, layer_idx=1).eval()
    rope = rope_cls(cfg)
    return cfg, attn, rope


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    cases = inv_freq_cases()
    # Self-checks that make the cases mean what they say.
    by = {c["name"]: c for c in cases}
    assert by["dynamic_2_len100"]["invFreq"][1] < by["dynamic_2_len64"]["invFreq"][1]
    assert by["dynamic_2_len1000"]["invFreq"][1] < by["dynamic_2_len100"]["invFreq"][1]
    assert abs(by["yarn_mscale"]["attentionFactor"] - (0.1 * math.log(40) + 1) / (0.1 * 0.707 * math.log(40) + 1)) < 1e-12
    assert by["yarn_attention_factor"]["attentionFactor"] == 1.3
    assert abs(by["yarn_mscale_only"]["attentionFactor"] - (0.1 * math.log(16) + 1)) < 1e-12
    # "modules": the module fixtures below, by name (the Rust and TypeScript tests read this list).
    meta = {"transformers": transformers.__version__, "torch": torch.__version__, "modules": [c[0] for c in module_cases()], "cases": cases}
    with open(os.path.join(OUT, "inv_freq.json"), "w") as f:
        json.dump(meta, f, indent=1)

    gen = torch.Generator().manual_seed(1234)
    for name, desc, kind, hf, T in module_cases():
        cfg, attn, rope = build_module(kind, hf)
        tensors = {}
        with torch.no_grad():
            for mod in ("q_proj", "k_proj", "v_proj", "o_proj"):
                lin = getattr(attn, mod)
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * 0.3)
                tensors[f"model.layers.1.self_attn.{mod}.weight"] = lin.weight.detach().clone().contiguous()
                if lin.bias is not None:
                    lin.bias.copy_(torch.randn(lin.bias.shape, generator=gen) * 0.2)
                    tensors[f"model.layers.1.self_attn.{mod}.bias"] = lin.bias.detach().clone().contiguous()
            tensors["model.layers.0.self_attn.q_proj.weight"] = torch.randn(attn.q_proj.weight.shape, generator=gen)
            B, H = 2, cfg.hidden_size
            x = torch.randn((B, T, H), generator=gen)
            pos = torch.arange(T)[None, :].expand(B, T)
            cos, sin = rope(x, pos)
            mask = torch.full((T, T), float("-inf")).triu(1)[None, None]
            y, _ = attn(x, position_embeddings=(cos, sin), attention_mask=mask)
        assert torch.isfinite(y).all()
        tensors["test.input"] = x.contiguous()
        tensors["test.output"] = y.contiguous()
        tensors["test.inv_freq"] = rope.inv_freq.detach().clone().float().contiguous()
        tensors["test.attention_scaling"] = torch.tensor([float(rope.attention_scaling)], dtype=torch.float32)
        save_file(tensors, os.path.join(OUT, f"{name}.safetensors"))
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump({"description": desc, "model": kind, "layer": 1, "hfConfig": hf}, f, indent=1)
        print(f"{name}: y {tuple(y.shape)} |y|max {y.abs().max():.3f} inv_freq[0:3] {rope.inv_freq[:3].tolist()} af {rope.attention_scaling}")
    print(f"wrote {len(cases)} inv_freq cases and {len(module_cases())} modules to {os.path.normpath(OUT)} "
          f"(transformers {transformers.__version__}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
