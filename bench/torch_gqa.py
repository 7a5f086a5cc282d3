"""Peer for the benchmarks: the GQA model as a PyTorch user would write it.

Idiomatic PyTorch (nn.Linear, nn.LayerNorm, exact-erf GELU, F.scaled_dot_product_attention with
is_causal=True and enable_gqa=True, no repeat of K/V), float32, inference_mode, all CPU threads
(or TORCH_THREADS). It loads the weights from a gqa safetensors file (canonical names, config in
metadata), runs the same input as the Node side, and reports the time and the output, so the
caller can both time it and check that both compute the same numbers.

Usage:
  python3 bench/torch_gqa.py MODEL.safetensors INPUT.f32 B T REPS
      one forward benchmark (bench/forward-peers.mjs): prints one JSON line with the median time
      and the output
  python3 bench/torch_gqa.py --serve
      a worker for bench/run.mjs (`npm run bench`): reads one JSON request per line on stdin and
      answers one JSON line on stdout, so that rounds can alternate between implementations
      without paying for `import torch` each time. Requests:
        {"cmd": "info"}
        {"cmd": "load", "key": K, "model": PATH}                      forward model
        {"cmd": "forward", "key": K, "input": PATH, "dims": [B,T,E], "reps": N, "out": PATH|null}
        {"cmd": "train_setup", "key": K, "model": PATH, "input": PATH, "dims": [B,T,E],
         "labels": [...], "lengths": [...]|null, "lr": 1e-3, "weight_decay": 0.01, "clip": 1.0}
        {"cmd": "train", "key": K, "reps": N}                          N optimisation steps
        {"cmd": "free", "key": K}
      Answers carry "times" (ms per run/step) and, for train, "losses" (loss before each update);
      errors come back as {"error": "..."} and the worker keeps serving.

Training step (the bench's "train" and "train-main" workloads): a linear head on the model's
[B, H] output, F.cross_entropy, backward, clip_grad_norm_ (global L2 norm), torch.optim.AdamW;
dropout 0.

Padding (optional per-sequence lengths L_b, SPEC section 2): sequences are left-aligned; the
standard PyTorch way, one additive mask [B, 1, T, T] (0 where key j <= query i and j < L_b, -inf
elsewhere) passed to F.scaled_dot_product_attention as attn_mask instead of is_causal, and
last_timestep reads h[b, L_b - 1] (mean_pool averages positions < L_b; all zeroes positions >= L_b).
Padded input values must be finite here (NaN x 0 weight is NaN), which the bench inputs are.
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
            self.register_buffer("inv_freq", inv.float(), persistent=False)  # derived, not in the file

    def rope(self, x):
        T = x.shape[-2]
        ang = torch.arange(T, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        cos, sin = ang.cos(), ang.sin()
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    def forward(self, a, mask=None):
        B, T, _ = a.shape
        q = self.q_proj(a).view(B, T, self.nh, self.d).transpose(1, 2)
        k = self.k_proj(a).view(B, T, self.nkv, self.d).transpose(1, 2)
        v = self.v_proj(a).view(B, T, self.nkv, self.d).transpose(1, 2)
        if self.rotary:
            q, k = self.rope(q), self.rope(k)
        if mask is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
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

    def forward(self, h, mask=None):
        h = h + self.attn(self.attn_norm(h), mask)
        return h + self.ffn_down(F.gelu(self.ffn_up(self.ffn_norm(h))))


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        H = cfg["hiddenSize"]
        self.input_projection = nn.Linear(cfg["embedDim"], H) if cfg["embedDim"] != H else None
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg["numLayers"])])
        self.final_norm = nn.LayerNorm(H, eps=1e-5)

    def forward(self, x, lengths=None):
        """x: [B, T, E]; lengths: None or a LongTensor [B] of valid steps (1 <= L_b <= T)."""
        B, T, _ = x.shape
        mask = None
        if lengths is not None:
            pos = torch.arange(T)
            keep = (pos[None, :] <= pos[:, None])[None] & (pos[None, None, :] < lengths[:, None, None])  # [B, T, T]
            mask = torch.zeros(B, 1, T, T, dtype=x.dtype).masked_fill_(~keep[:, None], float("-inf"))
        h = self.input_projection(x) if self.input_projection is not None else x
        for b in self.blocks:
            h = b(h, mask)
        h = self.final_norm(h)
        mode = self.cfg["outputMode"]
        if lengths is None:
            return h[:, -1] if mode == "last_timestep" else h.mean(1) if mode == "mean_pool" else h
        valid = (torch.arange(T)[None, :] < lengths[:, None]).to(h.dtype)  # [B, T]
        if mode == "last_timestep":
            return h[torch.arange(B), lengths - 1]
        if mode == "mean_pool":
            return (h * valid[:, :, None]).sum(1) / lengths[:, None].to(h.dtype)
        return h * valid[:, :, None]


class Classifier(nn.Module):
    """The model and a linear head on its [B, H] output (parameters: model's, then head's)."""

    def __init__(self, model, head):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x, lengths=None):
        return self.head(self.model(x, lengths))


def load_model(path):
    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["gqa_config"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    model = Model(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"missing parameters in {path}: {missing}")
    # the task head, if the file has one: the tensors that are not model parameters
    head = {k: v for k, v in state.items() if k in unexpected}
    return cfg, model, head


def read_input(path, dims):
    return torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(*dims))


def serve():
    models = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req["cmd"]
            if cmd == "info":
                cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "unknown"
                ans = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_capability": cap,
                       "mkldnn": torch.backends.mkldnn.is_available()}
            elif cmd == "load":
                cfg, model, _ = load_model(req["model"])
                models[req["key"]] = {"model": model.eval(), "cfg": cfg}
                ans = {"ok": True}
            elif cmd == "forward":
                m = models[req["key"]]["model"]
                x = read_input(req["input"], req["dims"])
                times = []
                with torch.inference_mode():
                    for _ in range(int(req["reps"])):
                        t0 = time.perf_counter()
                        y = m(x)
                        times.append((time.perf_counter() - t0) * 1e3)
                if req.get("out"):
                    y.contiguous().numpy().astype(np.float32).tofile(req["out"])
                ans = {"times": times}
            elif cmd == "train_setup":
                cfg, model, head_state = load_model(req["model"])
                H = cfg["hiddenSize"]
                w = next((v for k, v in head_state.items() if v.dim() == 2 and v.shape[1] == H), None)
                b = next((v for k, v in head_state.items() if v.dim() == 1 and w is not None and v.shape[0] == w.shape[0]), None)
                if w is None or b is None:
                    raise ValueError(f"no head weight [C, {H}] and bias [C] in the file (found {list(head_state)})")
                head = nn.Linear(H, w.shape[0])
                with torch.no_grad():
                    head.weight.copy_(w)
                    head.bias.copy_(b)
                net = Classifier(model, head).train()
                params = [p for p in net.parameters()]
                opt = torch.optim.AdamW(params, lr=req["lr"], weight_decay=req["weight_decay"])
                x = read_input(req["input"], req["dims"])
                y = torch.tensor(req["labels"], dtype=torch.long)
                lengths = req.get("lengths")
                if lengths is not None:
                    lengths = torch.tensor(lengths, dtype=torch.long)
                    if lengths.shape != (x.shape[0],) or int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]:
                        raise ValueError(f"lengths must be [B] integers in 1..T, found {req['lengths']}")
                models[req["key"]] = {"net": net, "opt": opt, "x": x, "y": y, "lengths": lengths, "clip": req["clip"], "params": params}
                ans = {"ok": True, "head": list(head_state)}
            elif cmd == "train":
                m = models[req["key"]]
                times, losses = [], []
                for _ in range(int(req["reps"])):
                    t0 = time.perf_counter()
                    m["opt"].zero_grad(set_to_none=True)
                    loss = F.cross_entropy(m["net"](m["x"], m["lengths"]), m["y"])
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(m["params"], m["clip"])
                    m["opt"].step()
                    times.append((time.perf_counter() - t0) * 1e3)
                    losses.append(loss.item())
                ans = {"times": times, "losses": losses}
            elif cmd == "free":
                models.pop(req["key"], None)
                ans = {"ok": True}
            else:
                ans = {"error": f"unknown cmd {cmd}"}
        except Exception as e:  # report and keep serving
            ans = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(ans) + "\n")
        sys.stdout.flush()


def main():
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", torch.get_num_threads())))
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    path, inp, B, T, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    cfg, model, _ = load_model(path)
    model = model.eval()
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
