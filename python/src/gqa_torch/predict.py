"""Class probabilities of a gqa model file on a ``gqa export-data`` split, computed by the twin.

Usage::

    python -m gqa_torch.predict --model runs/jv/model.safetensors --data runs/jv-data \\
        [--split test] [--out probs.npy] [--json]

Loads the file (written by gqa or by :mod:`gqa_torch.train`; an ensemble file from
``gqa train --ensemble n`` averages its members' probabilities, as gqa does), runs it in eval mode
on the split's padded arrays with their lengths, prints the accuracy, and writes the
probabilities ``[N, K]`` float32 to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from .data import load_split, read_meta
from .io import load_ensemble
from .train import probabilities


def main(argv=None) -> int:
    """Runs the prediction; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m gqa_torch.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="gqa safetensors model file (with a classification head)")
    p.add_argument("--data", required=True, help="directory written by `gqa export-data`")
    p.add_argument("--split", choices=["train", "test"], default="test")
    p.add_argument("--out", help="write the probabilities here (.npy float32 [N, K])")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    args = p.parse_args(argv)
    meta = read_meta(args.data)
    split = load_split(args.data, args.split)
    members = load_ensemble(args.model)
    k = len(meta["classLabels"])
    for m in members:
        if m.head_cfg is None or m.head_cfg.type != "classification" or m.head_cfg.num_classes != k:
            raise SystemExit(f"{args.model}: expected a classification head with {k} classes (the export's classLabels), found {m.head_cfg}")
    probs = sum(probabilities(m, split, torch.device("cpu")) for m in members) / len(members)
    acc = float((probs.argmax(-1) == split.labels).double().mean()) if len(split) else float("nan")
    if args.out:
        np.save(args.out, probs.numpy().astype(np.float32))
    summary = {"model": args.model, "members": len(members), "split": args.split, "count": len(split), "accuracy": acc}
    print(json.dumps(summary) if args.json else f"{meta['dataset']} ({args.split} split, {len(split)} cases): accuracy {100 * acc:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
