"""Peer for the forward-pass benchmark: the GQA model as a PyTorch user would write it.

Idiomatic PyTorch (nn.Linear, nn.LayerNorm, exact-erf GELU, F.scaled_dot_product_attention with
is_causal=True and enable_gqa=True, no repeat of K/V), float32, inference_mode, all CPU threads.
It loads the weights from a gqa safetensors file (canonical names, config in metadata), runs the
same input as the Node side, and prints one JSON line: the median time and the output, so the
caller can both time it and check that both compute the same numbers.

Usage: python3 bench/torch_gqa.py MODEL.safetensors INPUT.f32 B T REPS
"""

import json
import os
import math
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        H, nh, nkv = cfg["hiddenSize"], cfg["numHeads"], cfg["numKvHeads"]
        self.nh, self.nkv, self.d = nh, nkv, H // nh
        self.q_proj = nn.Linear(H, nh * self.d)
        self.k_proj = nn.Linear(H, nkv * self.d)
        self.v_proj = nn.Linear(H, nkv * self.d)
        self.out_proj = nn.Linear(nh * self.d, H)
        self.rotary = cfg["rope"] or cfg["yarn"]
        if self.rotary:
            d = self.d
            inv = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            if cfg["yarn"]:
                orig, s = cfg["yarnOriginalMaxPosition"], cfg["yarnScale"]
                wav = 2 * math.pi / inv
                low, high = orig / 1, orig / 4
                ramp = ((wav - high) / (low - high)).clamp(0, 1)
                inv = inv * (ramp / s + (1 - ramp))
            self.register_buffer("inv_freq", inv.float())

    def rope(self, x):
        T = x.shape[-2]
        ang = torch.arange(T, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        cos, sin = ang.cos(), ang.sin()
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    def forward(self, a):
        B, T, _ = a.shape
        q = self.q_proj(a).view(B, T, self.nh, self.d).transpose(1, 2)
        k = self.k_proj(a).view(B, T, self.nkv, self.d).transpose(1, 2)
        v = self.v_proj(a).view(B, T, self.nkv, self.d).transpose(1, 2)
        if self.rotary:
            q, k = self.rope(q), self.rope(k)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.out_proj(o.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        H = cfg["hiddenSize"]
        self.attn_norm = nn.LayerNorm(H, eps=1e-5)
        self.attn = Attention(cfg)
        self.ffn_norm = nn.LayerNorm(H, eps=1e-5)
        self.ffn_up = nn.Linear(H, 4 * H)
        self.ffn_down = nn.Linear(4 * H, H)

    def forward(self, h):
        h = h + self.attn(self.attn_norm(h))
        return h + self.ffn_down(F.gelu(self.ffn_up(self.ffn_norm(h))))


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        H = cfg["hiddenSize"]
        self.input_projection = nn.Linear(cfg["embedDim"], H) if cfg["embedDim"] != H else None
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg["numLayers"])])
        self.final_norm = nn.LayerNorm(H, eps=1e-5)

    def forward(self, x):
        h = self.input_projection(x) if self.input_projection is not None else x
        for b in self.blocks:
            h = b(h)
        h = self.final_norm(h)
        mode = self.cfg["outputMode"]
        return h[:, -1] if mode == "last_timestep" else h.mean(1) if mode == "mean_pool" else h


def main():
    path, inp, B, T, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", torch.get_num_threads())))
    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["gqa_config"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    model = Model(cfg).eval()
    model.load_state_dict(state, strict=False)
    x = torch.from_numpy(np.fromfile(inp, dtype=np.float32).reshape(B, T, cfg["embedDim"]))
    times = []
    with torch.inference_mode():
        y = model(x)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            y = model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"peer": f"pytorch {torch.__version__} ({torch.get_num_threads()} threads)",
                      "median_ms": statistics.median(times), "min_ms": min(times),
                      "out": y.flatten().tolist()}))


if __name__ == "__main__":
    main()
