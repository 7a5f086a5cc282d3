"""Peer for the benchmarks: the GQA model as a PyTorch user would write it.

The model is the project's PyTorch twin, package gqa_torch (python/src/gqa_torch: idiomatic
nn.Linear, nn.LayerNorm, exact-erf GELU, F.scaled_dot_product_attention with is_causal=True and
enable_gqa=True, no repeat of K/V; checked against the reference fixtures by
test/torch-twin.test.ts), float32, inference_mode, all CPU threads (or TORCH_THREADS). It loads
the weights from a gqa safetensors file (canonical names, config and head in metadata) with
gqa_torch.load, runs the same input as the Node side, and reports the time and the output, so
the caller can both time it and check that both compute the same numbers. gqa_torch is imported
from the checkout's python/src (or from an installed gqa-torch: setup.sh installs it editable).

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

Training step (the bench's "train" and "train-main" workloads): the file's linear head (gqa_head
metadata, head.weight/head.bias) on the model's [B, H] output, F.cross_entropy, backward,
clip_grad_norm_ (global L2 norm), torch.optim.AdamW; dropout 0.

Padding (optional per-sequence lengths L_b, SPEC section 2): sequences are left-aligned; the
standard PyTorch way, one boolean mask [B, 1, T, T] (True where key j <= query i and j < L_b)
passed to F.scaled_dot_product_attention as attn_mask instead of is_causal, and last_timestep
reads h[b, L_b - 1] (mean_pool averages positions < L_b; all zeroes positions >= L_b).

Device: GQA_TORCH_DEVICE (default cpu; `cuda` on a GPU machine, scripts/gpu-check.mjs). On a GPU
a timed forward is what a caller of gqa's CUDA backend pays too: the host input copied to the
device, the forward, the output copied back (which waits for the GPU); a training step keeps its
batch on the device and ends with loss.item() (which waits).
"""

import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python", "src"))
import gqa_torch  # noqa: E402  (the checkout's twin first, else an installed one)

DEVICE = torch.device(os.environ.get("GQA_TORCH_DEVICE", "cpu"))


def load_model(path):
    """(options dict, gqa_torch.TaskModel) from a gqa safetensors file."""
    m = gqa_torch.load(path)
    return m.cfg.to_dict(), m.to(DEVICE)


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
                       "mkldnn": torch.backends.mkldnn.is_available(),
                       "device": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu"}
            elif cmd == "load":
                cfg, model = load_model(req["model"])
                models[req["key"]] = {"model": model.eval(), "cfg": cfg}
                ans = {"ok": True}
            elif cmd == "forward":
                m = models[req["key"]]["model"]
                x = read_input(req["input"], req["dims"])
                times = []
                with torch.inference_mode():
                    for _ in range(int(req["reps"])):
                        t0 = time.perf_counter()
                        y = m(x.to(DEVICE)).cpu()
                        times.append((time.perf_counter() - t0) * 1e3)
                if req.get("out"):
                    y.contiguous().numpy().astype(np.float32).tofile(req["out"])
                ans = {"times": times}
            elif cmd == "train_setup":
                cfg, net = load_model(req["model"])
                if net.head is None:
                    raise ValueError(f"{req['model']}: no task head (gqa_head metadata with head.weight/head.bias)")
                net.train()
                params = [p for p in net.parameters()]
                opt = torch.optim.AdamW(params, lr=req["lr"], weight_decay=req["weight_decay"])
                x = read_input(req["input"], req["dims"]).to(DEVICE)
                y = torch.tensor(req["labels"], dtype=torch.long, device=DEVICE)
                lengths = req.get("lengths")
                if lengths is not None:
                    lengths = torch.tensor(lengths, dtype=torch.long, device=DEVICE)
                    if lengths.shape != (x.shape[0],) or int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]:
                        raise ValueError(f"lengths must be [B] integers in 1..T, found {req['lengths']}")
                models[req["key"]] = {"net": net, "opt": opt, "x": x, "y": y, "lengths": lengths, "clip": req["clip"], "params": params}
                ans = {"ok": True, "head": net.head_cfg.to_dict()}
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
    cfg, model = load_model(path)
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
