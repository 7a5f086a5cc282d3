"""gqa_torch: the PyTorch twin of gqa's grouped-query-attention model (Edifice.Attention.GQA).

The same options (:class:`GqaConfig`, SPEC.md section 1), the same forward pass (SPEC section 2:
output modes, padding by lengths, rotary, Edifice yarn and Hugging Face rotary scaling), the same
parameter names and safetensors files (:func:`load`, :func:`save`: ``gqa_config`` / ``gqa_head``
metadata), and task heads (:class:`HeadConfig`, :class:`TaskModel`). ``python -m gqa_torch.train``
trains it under ``torchrun`` with DistributedDataParallel on ``gqa export-data`` arrays;
``python -m gqa_torch.predict`` scores a model file.

Example::

    import torch, gqa_torch
    m = gqa_torch.load("model.safetensors")          # a file written by gqa or by this package
    probs = m.predict(x, lengths)                    # x [B, T, E] float32, lengths [B] int64
    gqa_torch.save(m, "copy.safetensors")            # loads in gqa: GQA.load(bytes)
"""

from .config import GqaConfig, GqaOptionError, HeadConfig
from .io import GqaFileError, load, load_ensemble, load_weights, read_safetensors, save
from .model import Block, GqaAttention, GqaModel, TaskModel, init_weights
from .rope import RopePlan, apply_rotary, edifice_yarn_inv_freq, hf_inv_freq, rope_inv_freq

__version__ = "0.1.0"

__all__ = [
    "GqaConfig", "HeadConfig", "GqaOptionError", "GqaFileError",
    "GqaModel", "GqaAttention", "Block", "TaskModel", "init_weights",
    "load", "load_ensemble", "load_weights", "read_safetensors", "save",
    "RopePlan", "apply_rotary", "rope_inv_freq", "edifice_yarn_inv_freq", "hf_inv_freq",
]
