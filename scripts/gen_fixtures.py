#!/usr/bin/env python3
"""Generate the reference fixtures in ``fixtures/*.safetensors`` for the gqa library.

This is an independent PyTorch reference of the model in ``SPEC.md`` (sections 2, 3 and 5),
written from the specification alone with plain torch modules (``nn.Linear`` / ``nn.LayerNorm``
under the canonical parameter names of SPEC section 3):

* optional ``input_projection`` (only when embedDim != hiddenSize);
* pre-norm blocks: LayerNorm (eps 1e-5) -> q/k/v projections -> rotary (half-rotation,
  base 10000; Edifice's "yarn" frequency scaling of SPEC section 5) -> causal grouped-query
  attention where query head ``i`` uses KV head ``i // group`` (K and V are
  ``repeat_interleave``-d over the group) with scores ``q k^T / sqrt(headDim)`` -> out_proj ->
  residual; LayerNorm -> ffn_up (4*H) -> exact erf GELU -> ffn_down -> residual;
* ``final_norm`` and the output mode (``last_timestep`` / ``all`` / ``mean_pool``);
* padded batches (SPEC section 2): a sequence of length L_b gives exactly the result of running it
  alone with its first L_b positions (keys j >= L_b never attended, ``last_timestep`` at L_b-1,
  ``mean_pool`` over 0..L_b-1, ``all`` zero at padded positions). Padded input positions hold NaN
  in the files to prove they do not matter.

Precision: every parameter and input is drawn in float64, rounded to float32 (the values stored in
the file), and the reference is then computed in float64 from those float32-exact values; the
results (outputs, losses, gradients, AdamW-updated parameters) are stored as float32. Consumers
computing in float32 should therefore agree to float32 round-off (about 1e-5 relative).

Weights are random (NOT Axon's Glorot/zero init): weights ~ N(0,1)/sqrt(fan_in), biases
~ 0.1*N(0,1), LayerNorm gamma ~ 1 + 0.1*N(0,1) and beta ~ 0.1*N(0,1), from a fixed torch seed per
fixture (the ``seed`` written in the config is that torch seed; it does not reproduce the
library's own initialisation, which no fixture checks).

Training fixtures (kind "train"): a head ``logits = out @ head.weight.T + head.bias`` on the
``last_timestep`` output; loss = torch's ``F.cross_entropy(weight=w)`` / ``F.mse_loss`` /
``F.huber_loss(delta)``; ``grad.<name>`` = d loss / d param (float64 autograd), ``adamw.<name>`` =
the parameter after one ``torch.optim.AdamW`` step (lr 1e-2, betas (0.9, 0.999), eps 1e-8,
weight_decay 0.01, a single parameter group, so biases and norms are decayed too). Dropout is 0.
The long fixture ``train_cls_long`` (T=130, hidden 256) is kept small: its parameters are rounded
to float16-representable values before the float64 computation and stored as F16 (exact), and it
has no ``adamw.*`` tensors and no ``grad.*`` of the FFN weights (see ``build_train_fixture``'s
``opts``). The forward fixture ``long_rope_8_2`` (T=130, hidden 256, GQA 8/2, rope) stores F16
parameters the same way.

Self-checks run before anything is written (the script exits non-zero if one fails):
1. GQA via repeat_interleave == an explicit per-head loop (kv head i // group, no
   repeat_interleave) to 1e-10 in float64, for every model fixture and the attention fixture;
2. MHA / MQA / unpadded fixtures == ``F.scaled_dot_product_attention(is_causal=True)`` with the
   KV heads expanded, to 1e-10;
3. rotary half-rotation == complex multiplication on the (x[j], x[j + D/2]) pairs;
4. padded batches: the per-sequence reference == a batched, masked implementation, and NaN in the
   padded inputs changes nothing;
5. discrimination: the fixtures tell apart the wrong KV mapping (i % numKvHeads), the interleaved
   rotary convention, tanh-GELU, and yarn scaling on/off (each differs by > 1e-4).

Run: ``python3 scripts/gen_fixtures.py`` (from anywhere; writes ``<repo>/fixtures``).
"""

import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import load_file
from safetensors.torch import save_file

torch.set_default_dtype(torch.float64)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "fixtures")

# Variant switches used only by the self-checks; fixtures use the defaults.
ATTN_IMPL = "repeat"  # "repeat" (repeat_interleave), "loop" (per-head loop), "sdpa"
KV_MAP = "div"  # "div": i // group (SPEC); "mod": i % numKvHeads (wrong, for discrimination)
ROPE_STYLE = "half"  # "half" (SPEC); "complex" (equivalent); "interleaved" (wrong)
GELU = "erf"  # "erf" (SPEC); "tanh" (wrong)
YARN_OFF = False  # True: ignore yarn scaling (wrong)


# ----------------------------------------------------------------------------------------------
# Reference model (SPEC sections 2, 3, 5)
# ----------------------------------------------------------------------------------------------

def rotary_inv_freq(head_dim, yarn, yarn_scale, orig):
    """inv_freq[i] = 10000^(-2i/D), with Edifice's yarn scaling (SPEC section 5) if asked."""
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    inv_freq = 10000.0 ** (-2.0 * i / head_dim)
    if yarn and not YARN_OFF:
        wavelen = 2.0 * math.pi / inv_freq
        low_wav = orig / 1.0
        high_wav = orig / 4.0
        ramp = ((wavelen - high_wav) / (low_wav - high_wav)).clamp(0.0, 1.0)
        inv_freq = inv_freq * (ramp / yarn_scale + (1.0 - ramp))
    return inv_freq


def yarn_ramp(head_dim, orig):
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    wavelen = 2.0 * math.pi / (10000.0 ** (-2.0 * i / head_dim))
    return ((wavelen - orig / 4.0) / (orig - orig / 4.0)).clamp(0.0, 1.0)


def apply_rotary(x, inv_freq):
    """x: [B, NH, T, D], positions 0..T-1."""
    T, D = x.shape[2], x.shape[3]
    pos = torch.arange(T, dtype=torch.float64)
    ang = pos[:, None] * inv_freq[None, :]  # [T, D/2]
    cos, sin = torch.cos(ang), torch.sin(ang)
    if ROPE_STYLE == "half":
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    if ROPE_STYLE == "complex":
        z = torch.complex(x[..., : D // 2], x[..., D // 2:]) * torch.polar(torch.ones_like(ang), ang)
        return torch.cat([z.real, z.imag], dim=-1)
    if ROPE_STYLE == "interleaved":
        x1, x2 = x[..., 0::2], x[..., 1::2]
        o1, o2 = x1 * cos - x2 * sin, x1 * sin + x2 * cos
        return torch.stack([o1, o2], dim=-1).flatten(-2)
    raise ValueError(ROPE_STYLE)


def attention_core(q, k, v, key_valid=None):
    """q: [B,NH,T,D], k/v: [B,NKV,T,D]; key_valid: optional bool [B,T]. Returns [B,NH,T,D]."""
    B, NH, T, D = q.shape
    NKV = k.shape[1]
    group = NH // NKV
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)  # True where key j > query i
    mask = causal[None, None]
    if key_valid is not None:
        mask = mask | ~key_valid[:, None, None, :]
    if KV_MAP == "mod":
        idx = torch.arange(NH) % NKV
        return attention_core_explicit(q, k[:, idx], v[:, idx], mask)
    if ATTN_IMPL == "repeat":
        kk = k.repeat_interleave(group, dim=1)
        vv = v.repeat_interleave(group, dim=1)
        s = q @ kk.transpose(-1, -2) / math.sqrt(D)
        s = s.masked_fill(mask, float("-inf"))
        return torch.softmax(s, dim=-1) @ vv
    if ATTN_IMPL == "loop":
        out = torch.empty_like(q)
        for b in range(B):
            mb = mask[b if mask.shape[0] > 1 else 0, 0]
            for i in range(NH):
                kv = i // group
                qi, ki, vi = q[b, i], k[b, kv], v[b, kv]
                for t in range(T):
                    scores = [None] * T
                    for j in range(T):
                        scores[j] = float("-inf") if mb[t, j] else float(qi[t] @ ki[j]) / math.sqrt(D)
                    m = max(scores)
                    w = [math.exp(sc - m) if sc != float("-inf") else 0.0 for sc in scores]
                    z = sum(w)
                    acc = torch.zeros(D)
                    for j in range(T):
                        if w[j] != 0.0:
                            acc = acc + (w[j] / z) * vi[j]
                    out[b, i, t] = acc
        return out
    if ATTN_IMPL == "sdpa":
        assert key_valid is None
        kk = k.repeat_interleave(group, dim=1)
        vv = v.repeat_interleave(group, dim=1)
        return F.scaled_dot_product_attention(q, kk, vv, is_causal=True)
    raise ValueError(ATTN_IMPL)


def attention_core_explicit(q, k, v, mask):
    D = q.shape[-1]
    s = (q @ k.transpose(-1, -2) / math.sqrt(D)).masked_fill(mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


class GqaAttention(nn.Module):
    """q_proj / k_proj / v_proj / out_proj; [B,T,H] -> [B,T,H]."""

    def __init__(self, hidden, num_heads, num_kv_heads, rotary, yarn, yarn_scale, orig):
        super().__init__()
        self.nh, self.nkv, self.d = num_heads, num_kv_heads, hidden // num_heads
        self.q_proj = nn.Linear(hidden, num_heads * self.d)
        self.k_proj = nn.Linear(hidden, num_kv_heads * self.d)
        self.v_proj = nn.Linear(hidden, num_kv_heads * self.d)
        self.out_proj = nn.Linear(num_heads * self.d, hidden)
        self.rotary = rotary or yarn  # yarn implies rotary (SPEC section 1)
        self.rope_args = (self.d, yarn, yarn_scale, orig)

    def forward(self, a, key_valid=None):
        B, T, _ = a.shape
        q = self.q_proj(a).view(B, T, self.nh, self.d).transpose(1, 2)
        k = self.k_proj(a).view(B, T, self.nkv, self.d).transpose(1, 2)
        v = self.v_proj(a).view(B, T, self.nkv, self.d).transpose(1, 2)
        if self.rotary:
            inv_freq = rotary_inv_freq(*self.rope_args)
            q, k = apply_rotary(q, inv_freq), apply_rotary(k, inv_freq)
        o = attention_core(q, k, v, key_valid)
        return self.out_proj(o.transpose(1, 2).reshape(B, T, self.nh * self.d))


def gelu(x):
    if GELU == "erf":
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return F.gelu(x, approximate="tanh")


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        H = cfg["hiddenSize"]
        self.attn_norm = nn.LayerNorm(H, eps=1e-5)
        self.attn = GqaAttention(H, cfg["numHeads"], cfg["numKvHeads"], cfg["rope"], cfg["yarn"],
                                 cfg["yarnScale"], cfg["yarnOriginalMaxPosition"])
        self.ffn_norm = nn.LayerNorm(H, eps=1e-5)
        self.ffn_up = nn.Linear(H, 4 * H)
        self.ffn_down = nn.Linear(4 * H, H)

    def forward(self, h, key_valid=None):
        h = h + self.attn(self.attn_norm(h), key_valid)  # dropout is 0 / inactive
        return h + self.ffn_down(gelu(self.ffn_up(self.ffn_norm(h))))


class GqaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        if cfg["embedDim"] != cfg["hiddenSize"]:
            self.input_projection = nn.Linear(cfg["embedDim"], cfg["hiddenSize"])
        else:
            self.input_projection = None
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg["numLayers"])])
        self.final_norm = nn.LayerNorm(cfg["hiddenSize"], eps=1e-5)

    def hidden(self, x, key_valid=None):
        """[B,T,E] -> final-normed [B,T,H]."""
        h = self.input_projection(x) if self.input_projection is not None else x
        for blk in self.blocks:
            h = blk(h, key_valid)
        return self.final_norm(h)

    def forward(self, x, lengths=None):
        """Reference semantics: each padded sequence is run alone on its first L_b positions."""
        mode = self.cfg["outputMode"]
        B, T, _ = x.shape
        if lengths is None:
            lengths = [T] * B
        outs = []
        for b in range(B):
            L = int(lengths[b])
            h = self.hidden(x[b: b + 1, :L])[0]  # [L, H]
            if mode == "last_timestep":
                outs.append(h[L - 1])
            elif mode == "mean_pool":
                outs.append(h.mean(dim=0))
            elif mode == "all":
                outs.append(torch.cat([h, torch.zeros(T - L, h.shape[1])], dim=0))
            else:
                raise ValueError(mode)
        return torch.stack(outs)

    def forward_masked(self, x, lengths):
        """Second formulation for padded batches: one batched pass with key masking."""
        mode = self.cfg["outputMode"]
        B, T, _ = x.shape
        lengths = torch.as_tensor(lengths)
        valid = torch.arange(T)[None, :] < lengths[:, None]  # [B,T]
        x = torch.where(valid[..., None], x, torch.zeros_like(x))
        h = self.hidden(x, valid)
        if mode == "last_timestep":
            return h[torch.arange(B), lengths - 1]
        vm = valid[..., None].to(h.dtype)
        if mode == "mean_pool":
            return (h * vm).sum(1) / lengths[:, None].to(h.dtype)
        return h * vm


# ----------------------------------------------------------------------------------------------
# Parameter / input generation
# ----------------------------------------------------------------------------------------------

def f32(t):
    """Round a float64 tensor to float32-representable values, keep float64 dtype."""
    return t.to(torch.float32).to(torch.float64)


def randomize(module, gen):
    with torch.no_grad():
        for name, p in module.named_parameters():
            mod_name, _, kind = name.rpartition(".")
            sub = module.get_submodule(mod_name)
            if isinstance(sub, nn.LayerNorm):
                val = (1.0 + 0.1 * torch.randn(p.shape, generator=gen)) if kind == "weight" \
                    else 0.1 * torch.randn(p.shape, generator=gen)
            elif kind == "weight":
                val = torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1])
            else:
                val = 0.1 * torch.randn(p.shape, generator=gen)
            p.copy_(f32(val))


def make_input(gen, B, T, E, lengths):
    x = f32(torch.randn(B, T, E, generator=gen))
    if lengths is not None:
        for b, L in enumerate(lengths):
            x[b, L:] = float("nan")
    return x


def full_config(**kw):
    cfg = dict(embedDim=None, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=2, dropout=0.0,
               rope=False, yarn=False, yarnScale=8.0, yarnOriginalMaxPosition=2048, seqLenHint=60,
               outputMode="last_timestep", seed=0)
    cfg.update(kw)
    assert cfg["embedDim"] is not None
    assert cfg["hiddenSize"] % cfg["numHeads"] == 0 and cfg["numHeads"] % cfg["numKvHeads"] == 0
    return cfg


def to_f32_np(t):
    return t.detach().to(torch.float32).contiguous()


# ----------------------------------------------------------------------------------------------
# Fixture definitions
# ----------------------------------------------------------------------------------------------

MODEL_FIXTURES = [
    # name, description, config overrides, B, T, lengths
    ("mha", "MHA: numKvHeads == numHeads == 4 (group 1); dropout 0.1 in the config must be inactive at inference",
     dict(embedDim=8, hiddenSize=16, numHeads=4, numKvHeads=4, numLayers=2, dropout=0.1, outputMode="all"), 2, 7, None),
    ("gqa_8_2", "GQA 8 query heads / 2 KV heads (group 4, headDim 4): query heads 0-3 use KV head 0, 4-7 use KV head 1",
     dict(embedDim=12, hiddenSize=32, numHeads=8, numKvHeads=2, numLayers=1, outputMode="all"), 2, 8, None),
    ("gqa_4_2", "GQA 4 query heads / 2 KV heads (group 2, headDim 4)",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=2, outputMode="all"), 2, 6, None),
    ("mqa", "MQA: 1 KV head shared by 4 query heads (headDim 6)",
     dict(embedDim=10, hiddenSize=24, numHeads=4, numKvHeads=1, numLayers=1, outputMode="all"), 2, 9, None),
    ("embed_eq_hidden", "embedDim == hiddenSize == 16: no input_projection parameters",
     dict(embedDim=16, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=1, outputMode="all"), 2, 5, None),
    ("embed_ne_hidden", "embedDim 7 != hiddenSize 16: input_projection present; 2 heads / 1 KV head, last_timestep",
     dict(embedDim=7, hiddenSize=16, numHeads=2, numKvHeads=1, numLayers=1, outputMode="last_timestep"), 2, 6, None),
    ("rope", "rotary (half-rotation, base 10000), headDim 8, GQA 2/1",
     dict(embedDim=6, hiddenSize=16, numHeads=2, numKvHeads=1, numLayers=2, rope=True, outputMode="all"), 2, 10, None),
    ("yarn", "Edifice yarn with rope=false (yarn implies rotary), yarnOriginalMaxPosition 4, yarnScale 8, T=12 > 4, headDim 8. "
             "Note: min wavelength is 2*pi > orig=4, so every ramp clips to 1 (all inv_freq divided by 8); see yarn_ramp for fractional ramps",
     dict(embedDim=6, hiddenSize=16, numHeads=2, numKvHeads=2, numLayers=1, rope=False, yarn=True, yarnScale=8.0,
          yarnOriginalMaxPosition=4, outputMode="all"), 2, 12, None),
    ("yarn_ramp", "Edifice yarn (rope=true, yarn=true), 1 head / 1 KV head, headDim 16, yarnOriginalMaxPosition 64, yarnScale 8: ramp per frequency = RAMPS "
                  "(0 = unscaled, 1 = divided by 8, in between = partial)",
     dict(embedDim=6, hiddenSize=16, numHeads=1, numKvHeads=1, numLayers=1, rope=True, yarn=True, yarnScale=8.0,
          yarnOriginalMaxPosition=64, outputMode="all"), 2, 12, None),
    ("out_last_timestep", "outputMode last_timestep (same weights/input as out_all and out_mean_pool)",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=2, outputMode="last_timestep", seed=1000), 2, 6, None),
    ("out_all", "outputMode all (same weights/input as out_last_timestep and out_mean_pool)",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=2, outputMode="all", seed=1000), 2, 6, None),
    ("out_mean_pool", "outputMode mean_pool (same weights/input as out_last_timestep and out_all)",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=2, outputMode="mean_pool", seed=1000), 2, 6, None),
    ("batch1", "batch size 1",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=1, rope=True, outputMode="all"), 1, 7, None),
    ("batch3", "batch size 3",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=1, rope=True, outputMode="last_timestep"), 3, 5, None),
    ("seq1", "sequence length T=1 (rotary at position 0 is the identity), outputMode all",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=1, rope=True, outputMode="all"), 2, 1, None),
    ("padded_last_timestep", "padded batch, lengths [4,7,1], NaN at padded inputs; last_timestep at L_b-1 (same weights/input as padded_all/padded_mean_pool)",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=2, outputMode="last_timestep", seed=2000), 3, 7, [4, 7, 1]),
    ("padded_all", "padded batch, lengths [4,7,1], NaN at padded inputs; all: zeros at t >= L_b",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=2, outputMode="all", seed=2000), 3, 7, [4, 7, 1]),
    ("padded_mean_pool", "padded batch, lengths [4,7,1], NaN at padded inputs; mean over t < L_b",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=2, outputMode="mean_pool", seed=2000), 3, 7, [4, 7, 1]),
    ("rope_padded", "rotary + padded batch, lengths [5,8,2], NaN at padded inputs, GQA 4/2, outputMode all",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=2, rope=True, outputMode="all"), 3, 8, [5, 8, 2]),
]

# Fixtures at realistic size. Their seeds are explicit and they are not in ``seed_for``'s name list,
# so adding one leaves every other fixture's seed (and bytes) unchanged. The optional 7th element
# holds ``build_model_fixture``'s ``opts``.
LONG_MODEL_FIXTURES = [
    ("long_rope_8_2", "forward at length: GQA 8 query heads / 2 KV heads (group 4, headDim 32), rope, hidden 256, embedDim 12, "
                      "1 layer, B=2, T=130 (three 64-key blocks of the online softmax, the last holding 2 keys), lengths [130, 77] "
                      "(NaN at padded inputs), outputMode all; parameters float16-exact and stored as F16",
     dict(embedDim=12, hiddenSize=256, numHeads=8, numKvHeads=2, numLayers=1, rope=True, outputMode="all", seed=3000),
     2, 130, [130, 77], dict(f16_params=True)),
]

ATTENTION_FIXTURES = [
    ("attention_gqa", "standalone GQA attention layer (q_proj/k_proj/v_proj/out_proj, no block prefix), "
                      "4 heads / 2 KV heads, headDim 4, rotary on, causal; [B,T,H] -> [B,T,H]",
     dict(hiddenSize=16, numHeads=4, numKvHeads=2, rope=True, yarn=False, yarnScale=8.0,
          yarnOriginalMaxPosition=2048), 2, 7),
]

TRAIN_FIXTURES = [
    ("train_cls", "training step: classification (3 classes, class weights), 2 layers, GQA 4/2, rope, hidden 16, embedDim 5, "
                  "B=4, T=6, lengths [6,3,5,1], head on last_timestep output",
     dict(embedDim=5, hiddenSize=16, numHeads=4, numKvHeads=2, numLayers=2, rope=True, dropout=0.0,
          outputMode="last_timestep"), 4, 6, [6, 3, 5, 1],
     {"type": "classification", "numClasses": 3}),
    ("train_reg_huber", "training step: regression outDim 2, huber loss delta 1.0 (residuals chosen on both sides of delta), "
                        "2 layers, GQA 4/1, hidden 16, embedDim 6, B=3, T=5, no lengths, head on last_timestep output",
     dict(embedDim=6, hiddenSize=16, numHeads=4, numKvHeads=1, numLayers=2, rope=False, dropout=0.0,
          outputMode="last_timestep"), 3, 5, None,
     {"type": "regression", "outDim": 2, "loss": "huber", "huberDelta": 1.0}),
    ("train_cls_long", "training step at length: classification (9 classes, class weights), 1 layer, GQA 8/2 (headDim 32), "
                       "rope, hidden 256, embedDim 12, B=3, T=130, lengths [130,77,101], head on last_timestep output; "
                       "parameters float16-exact and stored as F16; no adamw.* tensors and no FFN weight gradients",
     dict(embedDim=12, hiddenSize=256, numHeads=8, numKvHeads=2, numLayers=1, rope=True, dropout=0.0,
          outputMode="last_timestep"), 3, 130, [130, 77, 101],
     {"type": "classification", "numClasses": 9},
     dict(labels=[4, 8, 1], class_weights=[0.5, 2.0, 1.25, 0.75, 1.5, 1.0, 0.6, 1.8, 0.9],
          f16_params=True, store_adamw=False,
          skip_grads=["blocks.0.ffn_up.weight", "blocks.0.ffn_down.weight"])),
]


def seed_for(name, cfg_seed):
    if cfg_seed:
        return cfg_seed
    all_names = [f[0] for f in MODEL_FIXTURES + ATTENTION_FIXTURES + TRAIN_FIXTURES]
    return 1 + all_names.index(name)


# ----------------------------------------------------------------------------------------------
# Self-checks
# ----------------------------------------------------------------------------------------------

FAILURES = []


def check(label, ok, detail):
    print(f"  [{'ok' if ok else 'FAIL'}] {label}: {detail}")
    if not ok:
        FAILURES.append(label)


def with_variant(fn, **variant):
    g = globals()
    old = {k: g[k] for k in variant}
    g.update(variant)
    try:
        with torch.no_grad():
            return fn()
    finally:
        g.update(old)


def maxdiff(a, b):
    return float((a - b).abs().max())


def self_checks(name, model, x, lengths, ref):
    run = lambda: model(x, lengths)  # noqa: E731
    d = maxdiff(with_variant(run, ATTN_IMPL="loop"), ref)
    check(f"{name}: repeat_interleave GQA == per-head loop", d <= 1e-10, f"max|diff| = {d:.2e}")
    if lengths is None:
        d = maxdiff(with_variant(run, ATTN_IMPL="sdpa"), ref)
        check(f"{name}: == F.scaled_dot_product_attention(is_causal=True)", d <= 1e-10, f"max|diff| = {d:.2e}")
    else:
        with torch.no_grad():
            d = maxdiff(model.forward_masked(x, lengths), ref)
            check(f"{name}: per-sequence reference == batched masked pass", d <= 1e-10, f"max|diff| = {d:.2e}")
            x2 = x.clone()
            x2[torch.isnan(x2)] = 1e3
            d = maxdiff(model(x2, lengths), ref)
            check(f"{name}: NaN vs 1e3 in padded inputs", d == 0.0, f"max|diff| = {d:.2e}")
            assert torch.isfinite(ref).all()
    cfg = model.cfg
    if cfg["rope"] or cfg["yarn"]:
        d = maxdiff(with_variant(run, ROPE_STYLE="complex"), ref)
        check(f"{name}: half-rotation == complex-pair rotation", d <= 1e-10, f"max|diff| = {d:.2e}")
        if x.shape[1] > 1:
            d = maxdiff(with_variant(run, ROPE_STYLE="interleaved"), ref)
            check(f"{name}: discriminates interleaved rotary", d > 1e-4, f"max|diff| = {d:.2e}")
    if cfg["yarn"]:
        d = maxdiff(with_variant(run, YARN_OFF=True), ref)
        check(f"{name}: discriminates yarn off", d > 1e-4, f"max|diff| = {d:.2e}")
    if 1 < cfg["numKvHeads"] < cfg["numHeads"]:
        d = maxdiff(with_variant(run, KV_MAP="mod"), ref)
        check(f"{name}: discriminates KV head i % numKvHeads", d > 1e-4, f"max|diff| = {d:.2e}")
    if name in ("gqa_4_2", "mha"):
        d = maxdiff(with_variant(run, GELU="tanh"), ref)
        check(f"{name}: discriminates tanh GELU", d > 1e-6, f"max|diff| = {d:.2e}")


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------

def fixture_meta(name, desc, kind):
    return json.dumps({"name": name, "description": desc, "kind": kind})


def build_model_fixture(name, desc, over, B, T, lengths, opts=None):
    """``opts``: ``f16_params`` (round every parameter to a float16-representable value before the
    float64 computation and store the parameters as F16, exact; for fixtures that must stay small)."""
    opts = opts or {}
    seed = seed_for(name, over.get("seed", 0))
    cfg = full_config(**{**over, "seed": seed})
    gen = torch.Generator().manual_seed(seed)
    model = GqaModel(cfg)
    randomize(model, gen)
    if opts.get("f16_params"):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(f16(p))
    x = make_input(gen, B, T, cfg["embedDim"], lengths)
    with torch.no_grad():
        ref = model(x, lengths)
    assert torch.isfinite(ref).all()
    if name == "yarn_ramp":
        ramps = yarn_ramp(cfg["hiddenSize"] // cfg["numHeads"], cfg["yarnOriginalMaxPosition"])
        desc = desc.replace("RAMPS", "[" + ", ".join(f"{r:.4f}" for r in ramps.tolist()) + "]")
        assert ((ramps > 0) & (ramps < 1)).sum() >= 1
    self_checks(name, model, x, lengths, ref)
    if opts.get("f16_params"):
        tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
        assert all(torch.equal(v.to(torch.float64), model.state_dict()[k]) for k, v in tensors.items())  # exact
    else:
        tensors = {k: to_f32_np(v) for k, v in model.state_dict().items()}
    tensors["input.x"] = to_f32_np(x)
    if lengths is not None:
        tensors["input.lengths"] = torch.tensor(lengths, dtype=torch.int64)
    tensors["expected.out"] = to_f32_np(ref)
    meta = {"gqa_config": json.dumps(cfg), "gqa_fixture": fixture_meta(name, desc, "model")}
    return tensors, meta, cfg, f"B={B} T={T} lengths={lengths} out={list(ref.shape)}"


def build_attention_fixture(name, desc, over, B, T):
    seed = seed_for(name, 0)
    cfg = {**over, "seed": seed}
    gen = torch.Generator().manual_seed(seed)
    layer = GqaAttention(cfg["hiddenSize"], cfg["numHeads"], cfg["numKvHeads"], cfg["rope"], cfg["yarn"],
                         cfg["yarnScale"], cfg["yarnOriginalMaxPosition"])
    randomize(layer, gen)
    x = f32(torch.randn(B, T, cfg["hiddenSize"], generator=gen))
    run = lambda: layer(x)  # noqa: E731
    ref = with_variant(run)
    d = maxdiff(with_variant(run, ATTN_IMPL="loop"), ref)
    check(f"{name}: repeat_interleave GQA == per-head loop", d <= 1e-10, f"max|diff| = {d:.2e}")
    d = maxdiff(with_variant(run, ATTN_IMPL="sdpa"), ref)
    check(f"{name}: == F.scaled_dot_product_attention(is_causal=True)", d <= 1e-10, f"max|diff| = {d:.2e}")
    d = maxdiff(with_variant(run, KV_MAP="mod"), ref)
    check(f"{name}: discriminates KV head i % numKvHeads", d > 1e-4, f"max|diff| = {d:.2e}")
    d = maxdiff(with_variant(run, ROPE_STYLE="interleaved"), ref)
    check(f"{name}: discriminates interleaved rotary", d > 1e-4, f"max|diff| = {d:.2e}")
    tensors = {k: to_f32_np(v) for k, v in layer.state_dict().items()}
    tensors["input.x"] = to_f32_np(x)
    tensors["expected.out"] = to_f32_np(ref)
    meta = {"gqa_attention_config": json.dumps(cfg), "gqa_fixture": fixture_meta(name, desc, "attention")}
    return tensors, meta, cfg, f"B={B} T={T} out={list(ref.shape)}"


def f16(t):
    """Round a float64 tensor to float16-representable values, keep float64 dtype."""
    return t.to(torch.float16).to(torch.float64)


def build_train_fixture(name, desc, over, B, T, lengths, head_cfg, opts=None):
    """``opts`` (only for fixtures that must stay small; the defaults reproduce the others):
    ``labels`` / ``class_weights`` (classification; default ``[0,2,1,2][:B]`` and
    ``[0.5, 2.0, 1.25]``), ``f16_params`` (round every parameter to a float16-representable value
    before the float64 computation and store the parameters as F16: the maths stays exact),
    ``store_adamw`` (default True), ``skip_grads`` (parameter names whose ``grad.*`` is not stored).
    """
    opts = opts or {}
    seed = seed_for(name, 0)
    cfg = full_config(**{**over, "seed": seed})
    gen = torch.Generator().manual_seed(seed)
    model = GqaModel(cfg)
    randomize(model, gen)
    H = cfg["hiddenSize"]
    C = head_cfg["numClasses"] if head_cfg["type"] == "classification" else head_cfg["outDim"]
    head = nn.Linear(H, C)
    randomize(head, gen)
    x = make_input(gen, B, T, cfg["embedDim"], lengths)

    params = dict(model.named_parameters())
    params.update({f"head.{k}": v for k, v in head.named_parameters()})
    if opts.get("f16_params"):
        with torch.no_grad():
            for p in params.values():
                p.copy_(f16(p))
    init = {k: v.detach().clone() for k, v in params.items()}

    out = model(x, lengths)  # [B,H] (last_timestep)
    logits = out @ head.weight.T + head.bias
    extra = {}
    if head_cfg["type"] == "classification":
        labels = torch.tensor(opts.get("labels", [0, 2, 1, 2][:B]), dtype=torch.int64)
        w = f32(torch.tensor(opts.get("class_weights", [0.5, 2.0, 1.25])))
        assert labels.shape == (B,) and w.shape == (C,) and int(labels.max()) < C
        loss = F.cross_entropy(logits, labels, weight=w)
        # independent formulation of the weighted mean
        nll = -torch.log_softmax(logits, -1)[torch.arange(B), labels]
        alt = (w[labels] * nll).sum() / w[labels].sum()
        d = abs(float((loss - alt).detach()))
        check(f"{name}: F.cross_entropy(weight) == sum w_y*nll / sum w_y", d <= 1e-12, f"|diff| = {d:.2e}")
        extra["input.labels"] = labels
        extra["input.class_weights"] = to_f32_np(w)
    else:
        offsets = torch.tensor([[0.5, -2.0], [-0.3, 1.7], [2.5, 0.2]])[:B, :C]
        labels = f32(logits.detach() + offsets)
        loss = F.huber_loss(logits, labels, delta=head_cfg["huberDelta"])
        r = (logits - labels).abs()
        dl = head_cfg["huberDelta"]
        alt = torch.where(r < dl, 0.5 * r ** 2, dl * (r - 0.5 * dl)).mean()
        d = abs(float((loss - alt).detach()))
        check(f"{name}: F.huber_loss == piecewise formula", d <= 1e-12, f"|diff| = {d:.2e}")
        small = int((r < dl).sum())
        check(f"{name}: residuals on both sides of delta", 0 < small < r.numel(),
              f"{small} of {r.numel()} below delta")
        extra["input.labels"] = to_f32_np(labels)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in params.items()}

    # gradient spot check by central finite differences (float64)
    def loss_at():
        with torch.no_grad():
            o = model(x, lengths)
            lg = o @ head.weight.T + head.bias
            if head_cfg["type"] == "classification":
                return float(F.cross_entropy(lg, extra["input.labels"], weight=w))
            return float(F.huber_loss(lg, labels, delta=head_cfg["huberDelta"]))
    worst = 0.0
    picks = [n for n in ["blocks.0.attn.q_proj.weight", "blocks.0.attn.k_proj.bias", "blocks.1.attn_norm.weight",
                         "blocks.0.attn_norm.weight", "input_projection.weight", "head.weight"] if n in params]
    if "blocks.1.attn_norm.weight" in picks:  # the historical pick list of the 2-layer fixtures
        picks.remove("blocks.0.attn_norm.weight")
    for pname in picks:
        p = params[pname]
        flat_idx = [0, p.numel() // 2, p.numel() - 1]
        for fi in flat_idx:
            idx = np.unravel_index(fi, tuple(p.shape))
            eps = 1e-6
            with torch.no_grad():
                orig = p[idx].item()
                p[idx] = orig + eps
                lp = loss_at()
                p[idx] = orig - eps
                lm = loss_at()
                p[idx] = orig
            fd = (lp - lm) / (2 * eps)
            worst = max(worst, abs(fd - grads[pname][idx].item()))
    check(f"{name}: autograd == central finite differences ({3 * len(picks)} entries)", worst < 1e-7, f"max|diff| = {worst:.2e}")

    opt = torch.optim.AdamW(list(params.values()), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    opt.step()
    # closed form of the first AdamW step: p*(1 - lr*wd) - lr * g / (|g| + eps)
    worst = 0.0
    for k, p in params.items():
        g = grads[k]
        exp = init[k] * (1 - 1e-2 * 0.01) - 1e-2 * g / (g.abs() + 1e-8)
        worst = max(worst, maxdiff(exp, p.detach()))
    check(f"{name}: AdamW step == closed-form first step", worst <= 1e-12, f"max|diff| = {worst:.2e}")

    if opts.get("f16_params"):
        tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in init.items()}
        assert all(torch.equal(v.to(torch.float64), init[k]) for k, v in tensors.items())  # exact
    else:
        tensors = {k: to_f32_np(v) for k, v in init.items()}
    skip = set(opts.get("skip_grads", []))
    assert skip <= set(grads), skip - set(grads)
    tensors.update({f"grad.{k}": to_f32_np(v) for k, v in grads.items() if k not in skip})
    if opts.get("store_adamw", True):
        tensors.update({f"adamw.{k}": to_f32_np(v) for k, v in params.items()})
    tensors["input.x"] = to_f32_np(x)
    if lengths is not None:
        tensors["input.lengths"] = torch.tensor(lengths, dtype=torch.int64)
    with torch.no_grad():
        tensors["expected.out"] = to_f32_np(out)
    tensors["expected.loss"] = to_f32_np(loss.detach().reshape(1))
    tensors.update(extra)
    meta = {"gqa_config": json.dumps(cfg), "gqa_head": json.dumps(head_cfg),
            "gqa_fixture": fixture_meta(name, desc, "train")}
    return tensors, meta, cfg, f"B={B} T={T} lengths={lengths} loss={float(loss.detach()):.6f}"


def canonicalize_header(path):
    """Rewrite the header JSON with sorted keys so that regenerated files are byte-identical.

    safetensors writes ``__metadata__`` in hash-map order, which varies between runs; the tensor
    data offsets are relative to the end of the header, so re-serialising the header (padded with
    spaces to a multiple of 8 bytes, as the format requires) leaves the data untouched.
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8: 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def main():
    built = []
    print("building fixtures + self-checks (float64)")
    for f in MODEL_FIXTURES + LONG_MODEL_FIXTURES:
        built.append((f[0],) + build_model_fixture(*f))
    for f in ATTENTION_FIXTURES:
        built.append((f[0],) + build_attention_fixture(*f))
    for f in TRAIN_FIXTURES:
        built.append((f[0],) + build_train_fixture(*f))
    if FAILURES:
        print(f"SELF-CHECK FAILED ({len(FAILURES)}): {FAILURES}; nothing written")
        sys.exit(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, tensors, meta, cfg, info in built:
        path = os.path.join(OUT_DIR, f"{name}.safetensors")
        save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
        canonicalize_header(path)

    # read back with the numpy reader
    print("\nverifying with safetensors.numpy.load_file")
    total = 0
    for name, tensors, meta, cfg, info in built:
        path = os.path.join(OUT_DIR, f"{name}.safetensors")
        arrs = load_file(path)
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        md = {k: json.loads(v) for k, v in header["__metadata__"].items()}
        assert md["gqa_fixture"]["name"] == name
        assert set(arrs) == set(tensors)
        for k, v in arrs.items():
            want = {torch.int64: np.int64, torch.float16: np.float16}.get(tensors[k].dtype, np.float32)
            assert v.dtype == want and list(v.shape) == list(tensors[k].shape), (name, k, v.dtype, v.shape)
            if k != "input.x":
                assert np.isfinite(v).all(), (name, k)
        size = os.path.getsize(path)
        total += size
        print(f"  {name:22s} {size:7d} B  {len(arrs):3d} tensors  {info}")
    print(f"total size: {total} bytes ({total / 1024:.1f} KiB) in {len(built)} files")


if __name__ == "__main__":
    main()
