"""Rotary position embeddings (SPEC.md section 5), numerically as gqa computes them.

Convention: half rotation ("rotate_half", GPT-NeoX / Hugging Face): with ``x1 = x[..., :D/2]``,
``x2 = x[..., D/2:]``, ``out = concat(x1*cos - x2*sin, x1*sin + x2*cos)``, angle
``pos * inv_freq[i]`` (RoFormer, Su et al. 2021).

Frequencies ``inv_freq [D/2]`` (float32), by the same recipe as the Rust core
(``crates/gqa-core/src/rope.rs``), so that both engines use bitwise the same tables:

* plain rotary: ``theta^(-2i/D)`` in float64, rounded to float32;
* Edifice's ``yarn: true`` (not the YaRN paper's formula): ``wavelen = 2*pi/inv``,
  ``ramp = clip((wavelen - orig/4) / (orig - orig/4), 0, 1)``, ``inv' = inv * (ramp/s + 1 - ramp)``
  in float64, rounded to float32; no attention factor;
* ``ropeScaling`` (Hugging Face ``rope_type`` linear / dynamic / yarn / llama3): transformers'
  ``modeling_rope_utils`` operation by operation in float32, and yarn's attention factor
  (see :func:`hf_inv_freq`).

Tables: the angle ``pos * inv_freq`` is a float64 product of the exact position and the float32
frequency (exact at large positions; transformers forms it in float32); cos and sin of it are
evaluated in float64 and rounded to float32, then multiplied (float32) by the attention factor.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch


def rope_inv_freq(head_dim: int, theta: float = 10000.0) -> np.ndarray:
    """Plain rotary frequencies ``theta^(-2i/head_dim)``, ``i < head_dim/2``: float64 ``[D/2]``."""
    i = np.arange(head_dim // 2, dtype=np.float64)
    return np.power(float(theta), -(2.0 * i) / head_dim)


def edifice_yarn_inv_freq(head_dim: int, scale: float, orig: int, theta: float = 10000.0) -> np.ndarray:
    """Edifice's ``yarn: true`` frequencies (SPEC section 5), float64 ``[D/2]``:
    ``ramp = clip((2pi/inv - orig/4) / (orig - orig/4), 0, 1)``, ``inv * (ramp/scale + 1 - ramp)``."""
    inv = rope_inv_freq(head_dim, theta)
    wavelen = 2.0 * math.pi / inv
    low_wav, high_wav = orig / 1.0, orig / 4.0
    ramp = np.clip((wavelen - high_wav) / (low_wav - high_wav), 0.0, 1.0)
    return inv * (ramp / scale + (1.0 - ramp))


def _hf_default_f32(head_dim: int, base: float) -> np.ndarray:
    """transformers' default frequencies in float32: ``1 / f32(base)^(f32(2i)/f32(d))``."""
    b = float(np.float32(base))
    e = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)  # float32 exponent
    return (np.float32(1.0) / np.power(b, e.astype(np.float64)).astype(np.float32)).astype(np.float32)


def _m(s: float, k: float) -> float:
    return 1.0 if s <= 1 else 0.1 * k * math.log(s) + 1.0


def hf_attention_factor(scaling: Optional[dict]) -> float:
    """The factor on cos and sin: yarn's ``attentionFactor``, else ``m(factor, mscale) /
    m(factor, mscaleAllDim)`` when both are non-zero, else ``m(factor, 1)`` with
    ``m(s, k) = 1 if s <= 1 else 0.1*k*ln(s) + 1``; 1 for every other type (float64)."""
    if not scaling or scaling["type"] != "yarn":
        return 1.0
    f = scaling["factor"]
    if scaling.get("attentionFactor") is not None:
        return float(scaling["attentionFactor"])
    ms, ma = scaling.get("mscale"), scaling.get("mscaleAllDim")
    if ms and ma:
        return _m(f, ms) / _m(f, ma)
    return _m(f, 1.0)


def hf_inv_freq(head_dim: int, theta: float, scaling: Optional[dict], seq_len: int = 0) -> Tuple[np.ndarray, float]:
    """Hugging Face rotary frequencies (float32 ``[D/2]``) and attention factor (float64) for
    ``scaling`` (gqa's camelCase ``ropeScaling``; ``None`` = transformers' default type), base
    ``theta``, at sequence length ``seq_len`` (``dynamic`` only). Source: transformers
    ``modeling_rope_utils._compute_{default,linear_scaling,dynamic_ntk,yarn,llama3}_parameters``,
    in its float32 operation order (as ``gqa_core::rope::hf_inv_freq``)."""
    d = head_dim
    if scaling is None:
        return _hf_default_f32(d, theta), 1.0
    t = scaling["type"]
    f32 = np.float32
    if t == "linear":
        return (_hf_default_f32(d, theta) / f32(scaling["factor"])).astype(np.float32), 1.0
    if t == "dynamic":
        factor, orig = scaling["factor"], float(scaling["originalMaxPositionEmbeddings"])
        length = max(float(seq_len), orig)
        base = theta * ((factor * length / orig) - (factor - 1.0)) ** (d / (d - 2.0))
        return _hf_default_f32(d, base), 1.0
    if t == "yarn":
        factor, orig = scaling["factor"], float(scaling["originalMaxPositionEmbeddings"])
        beta_fast = scaling.get("betaFast") or 32.0
        beta_slow = scaling.get("betaSlow") or 1.0

        def corr(rot):
            return d * math.log(orig / (rot * 2.0 * math.pi)) / (2.0 * math.log(theta))

        low, high = corr(beta_fast), corr(beta_slow)
        if scaling.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0.0), min(high, d - 1.0)
        if low == high:
            high += 0.001
        low32, span32 = f32(low), f32(high - low)
        b = float(f32(theta))
        e = np.arange(0, d, 2, dtype=np.float32) / f32(d)
        pos_freq = np.power(b, e.astype(np.float64)).astype(np.float32)
        extra = f32(1.0) / pos_freq
        inter = f32(1.0) / (f32(factor) * pos_freq)
        ramp = np.clip((np.arange(d // 2, dtype=np.float32) - low32) / span32, f32(0), f32(1)).astype(np.float32)
        ext = f32(1.0) - ramp
        inv = (inter * (f32(1.0) - ext) + extra * ext).astype(np.float32)
        return inv, hf_attention_factor(scaling)
    if t == "llama3":
        orig = float(scaling["originalMaxPositionEmbeddings"])
        lo_f, hi_f = scaling["lowFreqFactor"], scaling["highFreqFactor"]
        low_wav, high_wav = f32(orig / lo_f), f32(orig / hi_f)
        factor, lo, span, o = f32(scaling["factor"]), f32(lo_f), f32(hi_f - lo_f), f32(orig)
        two_pi = f32(2.0 * math.pi)
        inv = _hf_default_f32(d, theta)
        wavelen = (f32(1.0) / inv) * two_pi
        scaled = np.where(wavelen > low_wav, inv / factor, inv).astype(np.float32)
        s = ((f32(1.0) / wavelen) * o - lo) / span
        smooth = ((f32(1.0) - s) * scaled / factor + s * scaled).astype(np.float32)
        out = np.where((wavelen < high_wav) | (wavelen > low_wav), scaled, smooth)
        return out.astype(np.float32), 1.0
    raise ValueError(f"unknown ropeScaling type {t!r}")


class RopePlan:
    """How a model's rotary tables are made from its options: fixed float32 frequencies (plain,
    Edifice yarn and every Hugging Face type but ``dynamic``), or for ``dynamic`` frequencies
    recomputed when the sequence is longer than ``originalMaxPositionEmbeddings``.

    ``tables(seq_len, device)`` returns ``cos, sin: [seq_len, D/2]`` float32 for positions
    ``0..seq_len-1`` (already multiplied by the attention factor)."""

    def __init__(self, head_dim: int, theta: float, yarn: Optional[Tuple[float, int]], scaling: Optional[dict]):
        self.head_dim, self.theta, self.scaling = head_dim, theta, scaling
        if scaling is not None:
            inv, af = hf_inv_freq(head_dim, theta, scaling, 0)
        elif yarn is not None:
            inv, af = edifice_yarn_inv_freq(head_dim, yarn[0], yarn[1], theta).astype(np.float32), 1.0
        else:
            inv, af = rope_inv_freq(head_dim, theta).astype(np.float32), 1.0
        self.inv_freq, self.attention_factor = inv, np.float32(af)
        self._cache = {}

    def inv_freq_for(self, seq_len: int) -> Tuple[np.ndarray, np.float32]:
        """Frequencies ``[D/2]`` (float32) and attention factor for a sequence of ``seq_len`` positions."""
        if self.scaling is not None and self.scaling["type"] == "dynamic" and seq_len > self.scaling["originalMaxPositionEmbeddings"]:
            inv, af = hf_inv_freq(self.head_dim, self.theta, self.scaling, seq_len)
            return inv, np.float32(af)
        return self.inv_freq, self.attention_factor

    def tables(self, seq_len: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin : [seq_len, D/2]`` float32 on ``device`` (cached per length and device)."""
        key = (seq_len, str(device))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        inv, af = self.inv_freq_for(seq_len)
        ang = np.arange(seq_len, dtype=np.float64)[:, None] * inv[None, :].astype(np.float64)
        cos = (np.cos(ang).astype(np.float32) * af).astype(np.float32)
        sin = (np.sin(ang).astype(np.float32) * af).astype(np.float32)
        out = (torch.from_numpy(cos).to(device), torch.from_numpy(sin).to(device))
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = out
        return out


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates ``x: [B, N, T, D]`` (query or KV heads) with ``cos, sin: [T, D/2]`` (positions
    ``0..T-1``): ``concat(x1*cos - x2*sin, x1*sin + x2*cos)``, ``x1, x2`` the two halves of the
    last axis. Returns ``[B, N, T, D]``, the dtype of ``x``."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
