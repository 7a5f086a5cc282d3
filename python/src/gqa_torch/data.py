"""Reading the arrays that ``gqa export-data`` writes (the CLI's own UEA loaders and per-channel
standardisation, so that the twin trains on exactly what ``gqa train`` trains on).

Directory layout (``gqa export-data --data japanese-vowels --out DIR``)::

    DIR/train_x.npy        float32 [N, T, C]  standardised, left-aligned, zero after each case's end
    DIR/train_lengths.npy  int64   [N]        valid steps per case, 1..T
    DIR/train_labels.npy   int64   [N]        class index per case (into classLabels)
    DIR/test_x.npy, DIR/test_lengths.npy, DIR/test_labels.npy    the same for the test split
    DIR/meta.json          {"format": "gqa-export-data", "version": 1, "dataset", "files",
                            "channels": C, "classLabels": [...], "standardize": {"mean", "std"},
                            "train": {"cases", "maxLength"}, "test": {...}}

``standardize`` holds the training split's per-channel mean and population std (``(x - mean) /
std`` was applied to both splits); :func:`cli_metadata` turns ``meta.json`` into the ``gqa_cli``
record that ``gqa eval`` / ``gqa predict`` read from a model file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch

#: ``meta.json``'s ``format`` value.
EXPORT_FORMAT = "gqa-export-data"


@dataclass
class Split:
    """One split: ``x [N, T, C]`` float32, ``lengths [N]`` int64, ``labels [N]`` int64."""

    x: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batch(self, idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows ``idx`` as ``(x [b, Tb, C], lengths [b], labels [b])``, trimmed to the longest
        case among them (``Tb = max lengths``), as gqa's trainer batches."""
        lengths = self.lengths[idx]
        tb = int(lengths.max()) if len(idx) else 1
        return self.x[idx, :tb], lengths, self.labels[idx]


def read_meta(directory: str) -> dict:
    """``DIR/meta.json``; raises ``ValueError`` when it is not a ``gqa export-data`` directory."""
    path = os.path.join(directory, "meta.json")
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != EXPORT_FORMAT or meta.get("version") != 1:
        raise ValueError(f"{path}: expected format {EXPORT_FORMAT!r} version 1 (written by `gqa export-data`), found "
                         f"{meta.get('format')!r} version {meta.get('version')!r}")
    return meta


def load_split(directory: str, split: str) -> Split:
    """Reads ``{split}_x.npy``, ``{split}_lengths.npy`` and ``{split}_labels.npy`` and checks their
    shapes and dtypes agree (``ValueError`` naming the file otherwise)."""
    def arr(name, dtype, ndim):
        path = os.path.join(directory, f"{split}_{name}.npy")
        a = np.load(path, allow_pickle=False)
        if a.dtype != dtype or a.ndim != ndim:
            raise ValueError(f"{path}: expected {np.dtype(dtype).name} with {ndim} dims, found {a.dtype} {a.shape}")
        return a

    x = arr("x", np.float32, 3)
    lengths = arr("lengths", np.int64, 1)
    labels = arr("labels", np.int64, 1)
    n, t = x.shape[:2]
    if lengths.shape[0] != n or labels.shape[0] != n:
        raise ValueError(f"{directory}: {split} split has {n} cases in x but {lengths.shape[0]} lengths and {labels.shape[0]} labels")
    if n and (lengths.min() < 1 or lengths.max() > t):
        raise ValueError(f"{directory}: {split}_lengths.npy: expected lengths in 1..{t}, found {lengths.min()}..{lengths.max()}")
    return Split(torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(labels))


def cli_metadata(meta: dict) -> str:
    """The ``gqa_cli`` metadata record (JSON) for a classifier trained on this export: version 1,
    task, dataset, class labels, channels and the standardisation statistics, so that ``gqa eval
    --model FILE --data <dataset>`` scores a model trained here on raw UEA files."""
    return json.dumps({
        "version": 1,
        "task": "classification",
        "dataset": meta["dataset"],
        "classLabels": meta["classLabels"],
        "channels": meta["channels"],
        "standardize": meta["standardize"],
    })
