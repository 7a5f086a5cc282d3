"""Train the GQA twin on ``gqa export-data`` arrays, on one process or many (torchrun + DDP).

Usage::

    gqa export-data --data japanese-vowels --out runs/jv-data
    torchrun --standalone --nproc_per_node 2 -m gqa_torch.train \\
        --data runs/jv-data --epochs 30 --out runs/jv-torch/model.safetensors
    gqa eval --model runs/jv-torch/model.safetensors --data japanese-vowels

(``python -m gqa_torch.train ...`` runs the same on one process.) Under ``torchrun`` every process
joins the process group (``gloo`` on CPUs, ``nccl`` when CUDA is there, or ``--dist-backend``),
wraps the model in ``DistributedDataParallel`` and takes its share of every batch; the written
model is a gqa safetensors file (canonical names, ``gqa_config``, ``gqa_head`` and the export's
``gqa_cli`` record), so gqa (``GQA.load``, ``gqa eval``, ``gqa predict``) reads it directly.

The recipe is ``gqa train``'s (``ts/cli/train.ts``, ``crates/gqa-core/src/train``): the same model
defaults (hidden 64, 4 heads, 2 KV heads, 2 layers, rotary, dropout 0.1, last_timestep), a linear
classification head and softmax cross-entropy, AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0.01
on every parameter, one group), learning rate with 10% linear warmup then cosine decay to 0 per
step (``peak * (s+1)/warmup``, then ``0.5 * peak * (1 + cos(pi * progress))``), gradients clipped
to global L2 norm 1, global batch 32, a seeded shuffle every epoch, batches trimmed to their
longest case.

Data parallelism: every process draws the same permutation (seeded), each global batch of
``--batch-size`` cases is dealt out round-robin (process ``r`` takes positions ``r, r+W, ...``);
each process computes the *sum* of its losses divided by the global batch's denominator (count, or
summed class weights) times ``W``, and DDP's gradient average then equals the gradient of the
global batch's mean loss, so W processes take the same steps as one (up to float summation
order and dropout masks, which are drawn per process).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from .config import GqaConfig, HeadConfig
from .data import cli_metadata, load_split, read_meta
from .io import load, save
from .model import TaskModel


def warmup_cosine(step: int, total: int, warmup: int, peak: float, floor: float = 0.0) -> float:
    """gqa's schedule (``crates/gqa-core/src/train/schedule.rs``; Loshchilov & Hutter 2017):
    ``peak * (step+1) / warmup`` for ``step < warmup``, then
    ``floor + (peak - floor) * 0.5 * (1 + cos(pi * progress))``, progress in ``[0, 1]``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (``--help`` lists them)."""
    p = argparse.ArgumentParser(prog="python -m gqa_torch.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="directory written by `gqa export-data`")
    p.add_argument("--out", required=True, help="model file to write (gqa safetensors)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32, help="global batch (split across processes); default 32")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate; default 3e-3")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--clip-norm", type=float, default=1.0, help="global L2 norm clip; 0 disables")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="classification label smoothing in [0, 1) (gqa's labelSmoothing); default 0")
    p.add_argument("--seed", type=int, default=0, help="weight init, shuffling and dropout")
    p.add_argument("--init", help="start from this gqa model file (options, weights, head) instead of a fresh model")
    g = p.add_argument_group("model (gqa train's defaults)")
    g.add_argument("--hidden-size", type=int, default=64)
    g.add_argument("--num-heads", type=int, default=4)
    g.add_argument("--num-kv-heads", type=int, default=2)
    g.add_argument("--head-dim", type=int)
    g.add_argument("--num-layers", type=int, default=2)
    g.add_argument("--dropout", type=float, default=0.1)
    g.add_argument("--rope", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--rope-theta", type=float, default=10000.0)
    g.add_argument("--yarn", action="store_true")
    g.add_argument("--yarn-scale", type=float, default=8.0)
    g.add_argument("--output-mode", choices=["last_timestep", "mean_pool"], default="last_timestep")
    o = p.add_argument_group("outputs and devices")
    o.add_argument("--predictions", help="write the test split's class probabilities here (.npy float32 [N, K])")
    o.add_argument("--metrics", help="write a JSON summary here")
    o.add_argument("--dist-backend", choices=["gloo", "nccl"], help="default: nccl with CUDA, else gloo")
    o.add_argument("--device", help="default: cuda:<LOCAL_RANK> with CUDA, else cpu")
    o.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def build_model(args, meta) -> TaskModel:
    """A fresh model (options from the flags, ``embedDim`` = the export's channels) with a
    classification head over the export's classes, or the ``--init`` file's model."""
    if args.init:
        m = load(args.init)
        if m.head_cfg is None or m.head_cfg.type != "classification" or m.head_cfg.num_classes != len(meta["classLabels"]):
            raise SystemExit(f"--init {args.init}: expected a classification head with {len(meta['classLabels'])} classes, found {m.head_cfg}")
        return m.train()
    cfg = GqaConfig(embed_dim=meta["channels"], hidden_size=args.hidden_size, head_dim=args.head_dim, num_heads=args.num_heads,
                    num_kv_heads=args.num_kv_heads, num_layers=args.num_layers, dropout=args.dropout, rope=args.rope,
                    rope_theta=args.rope_theta, yarn=args.yarn, yarn_scale=args.yarn_scale, output_mode=args.output_mode, seed=args.seed)
    return TaskModel(cfg, HeadConfig(type="classification", num_classes=len(meta["classLabels"])))


@torch.no_grad()
def probabilities(model: TaskModel, split, device, chunk: int = 256) -> torch.Tensor:
    """Eval-mode class probabilities ``[N, K]`` (float32, CPU) of a split, in chunks."""
    out = []
    for i in range(0, len(split), chunk):
        x, lengths, _ = split.batch(torch.arange(i, min(i + chunk, len(split))))
        out.append(model.predict(x.to(device), lengths.to(device)).cpu())
    return torch.cat(out) if out else torch.zeros(0, model.head_cfg.size)


def main(argv=None) -> int:
    """Runs training; returns the exit code. Rank 0 prints progress and writes the outputs."""
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    distributed = world > 1
    cuda = torch.cuda.is_available()
    device = torch.device(args.device or (f"cuda:{local_rank}" if cuda else "cpu"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group(backend=args.dist_backend or ("nccl" if device.type == "cuda" else "gloo"))
    say = (lambda *a: print(*a, flush=True)) if rank == 0 and not args.quiet else (lambda *a: None)
    try:
        meta = read_meta(args.data)
        train, test = load_split(args.data, "train"), load_split(args.data, "test")
        model = build_model(args, meta).to(device)
        net = DDP(model) if distributed else model  # DDP broadcasts rank 0's weights
        torch.manual_seed(args.seed * 1000 + rank)  # dropout masks: different per process
        opt = torch.optim.AdamW(net.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay)
        n, bs = len(train), args.batch_size
        steps_per_epoch = math.ceil(n / bs)
        total = steps_per_epoch * args.epochs
        warmup = int(args.warmup_ratio * total)
        say(f"data: {meta['dataset']}: {n} train / {len(test)} test cases, {meta['channels']} channels, {len(meta['classLabels'])} classes")
        say(f"model: {sum(p.numel() for p in model.parameters()):,} parameters; {world} process(es), "
            f"{dist.get_backend() if distributed else 'no process group'}, device {device}; {args.epochs} epochs x {steps_per_epoch} steps")
        history, step, t0 = [], 0, time.perf_counter()
        for epoch in range(args.epochs):
            model.train()
            g = torch.Generator().manual_seed(args.seed * 100003 + epoch)
            order = torch.randperm(n, generator=g)
            sums = torch.zeros(4, dtype=torch.float64)  # loss numerator, its denominator, correct, cases
            for s in range(steps_per_epoch):
                batch = order[s * bs:(s + 1) * bs]
                if len(batch) < world:  # every process needs at least one case
                    batch = torch.cat([batch, order[: world - len(batch)]])
                mine = batch[rank::world]
                x, lengths, labels = train.batch(mine)
                x, lengths, labels = x.to(device), lengths.to(device), labels.to(device)
                denom = model.loss_denominator(train.labels[batch])
                for group in opt.param_groups:
                    group["lr"] = warmup_cosine(step, total, warmup, args.lr)
                opt.zero_grad(set_to_none=True)
                logits = net(x, lengths)
                loss_sum = model.loss(logits, labels, reduction="sum", label_smoothing=args.label_smoothing)
                (loss_sum * (world / denom)).backward()
                if args.clip_norm > 0:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip_norm)
                opt.step()
                step += 1
                sums += torch.tensor([loss_sum.item(), model.loss_denominator(labels), (logits.argmax(-1) == labels).sum().item(), len(mine)],
                                     dtype=torch.float64)
            if distributed:
                dist.all_reduce(sums)
            # Training-mode figures of the epoch (dropout on, weights moving), as gqa train prints.
            point = {"epoch": epoch + 1, "trainLoss": float(sums[0] / sums[1]), "trainAccuracy": float(sums[2] / sums[3])}
            history.append(point)
            say(f"epoch {epoch + 1}/{args.epochs}: loss {point['trainLoss']:.4f}, acc {point['trainAccuracy']:.3f}")
        seconds = time.perf_counter() - t0
        if rank == 0:
            probs = probabilities(model, test, device)
            acc = float((probs.argmax(-1) == test.labels).double().mean()) if len(test) else float("nan")
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            save(model, args.out, metadata={"gqa_cli": cli_metadata(meta)})
            if args.predictions:
                np.save(args.predictions, probs.numpy().astype(np.float32))
            summary = {"dataset": meta["dataset"], "worldSize": world, "backend": dist.get_backend() if distributed else None,
                       "device": str(device), "torch": torch.__version__, "config": model.cfg.to_dict(), "head": model.head_cfg.to_dict(),
                       "epochs": args.epochs, "batchSize": bs, "lr": args.lr, "seconds": seconds, "history": history,
                       "test": {"accuracy": acc, "count": len(test)}}
            if args.metrics:
                with open(args.metrics, "w", encoding="utf-8") as f:
                    json.dump(summary, f, indent=2)
            say(f"trained {args.epochs} epochs in {seconds:.1f} s on {world} process(es); test accuracy {100 * acc:.2f}% "
                f"({int(round(acc * len(test)))}/{len(test)}); wrote {args.out}")
        if distributed:
            dist.barrier()
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
