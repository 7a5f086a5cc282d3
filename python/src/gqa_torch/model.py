"""The GQA model (SPEC.md sections 2, 3, 5) as idiomatic PyTorch modules.

Module tree and parameter names are the canonical names of SPEC section 3 (``nn.Linear`` /
``nn.LayerNorm`` layout, weight ``[out, in]``), so ``state_dict()`` keys are exactly the tensor
names of a gqa safetensors file::

    input_projection.{weight,bias}          (only when embedDim != hiddenSize)
    blocks.{l}.attn_norm.{weight,bias}
    blocks.{l}.attn.{q,k,v,out}_proj.{weight,bias}
    blocks.{l}.ffn_norm.{weight,bias}
    blocks.{l}.ffn_up.{weight,bias}   blocks.{l}.ffn_down.{weight,bias}
    final_norm.{weight,bias}
    head.{weight,bias}                      (TaskModel only)

Forward (inference, SPEC section 2), ``x: [B, T, E]`` float32:

1. ``h = input_projection(x)`` when ``E != H``, else ``h = x``;
2. per block (pre-norm): ``a = LayerNorm(h)`` (eps 1e-5); ``q, k, v`` projections, split into
   heads ``q [B, NH, T, D]``, ``k, v [B, NKV, T, D]``; rotary on q and k (:mod:`gqa_torch.rope`);
   causal grouped-query attention, query head ``i`` using KV head ``i // group``
   (``F.scaled_dot_product_attention(..., enable_gqa=True)``, scale ``1/sqrt(D)``); ``out_proj``;
   ``h = h + dropout(attn)``; ``f = ffn_down(GELU(ffn_up(LayerNorm(h))))`` with exact erf GELU
   ``x * 0.5 * (1 + erf(x / sqrt(2)))``; ``h = h + dropout(f)``;
3. ``h = final_norm(h)``;
4. output mode: ``last_timestep`` -> ``h[:, T-1]`` ``[B, H]``; ``all`` -> ``h`` ``[B, T, H]``;
   ``mean_pool`` -> mean over T ``[B, H]``.

Padding (``lengths: [B]`` int64, ``1 <= L_b <= T``, sequences left-aligned): keys ``j >= L_b`` are
masked, ``last_timestep`` reads ``h[b, L_b - 1]``, ``mean_pool`` averages ``t < L_b``, ``all`` is
zero at ``t >= L_b``; padded inputs are replaced by 0 before the model, so their values (NaN
included) never matter, and sequence ``b`` gives what it gives alone with length ``L_b``.

Dropout (training only): after attention and after the FFN, inside each residual, at rate
``dropout``. Edifice's extra between-block dropout is applied at the rate the caller passes
explicitly, 0 by default; gqa (and this twin) leave it out.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import GqaConfig, GqaOptionError, HeadConfig
from .rope import RopePlan, apply_rotary

#: LayerNorm epsilon (Edifice / Axon's default).
LN_EPS = 1e-5


def _rope_plan(cfg) -> Optional[RopePlan]:
    if not (cfg.get("rope") or cfg.get("yarn") or cfg.get("ropeScaling") is not None):
        return None
    yarn = (cfg.get("yarnScale", 8.0), cfg.get("yarnOriginalMaxPosition", 2048)) if cfg.get("yarn") else None
    return RopePlan(cfg["headDim"], cfg.get("ropeTheta", 10000.0), yarn, cfg.get("ropeScaling"))


def check_lengths(lengths: Optional[torch.Tensor], batch: int, seq: int) -> Optional[torch.Tensor]:
    """Validates per-sequence lengths: ``None``, or ``[B]`` integers in ``1..T``. Returns them as
    an int64 tensor; raises ``ValueError`` naming ``lengths`` with the expected and found value."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths: expected integers, found dtype {lengths.dtype}")
    lengths = lengths.to(torch.int64)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths: expected shape [{batch}] (one per sequence), found {list(lengths.shape)}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > seq):
        bad = next(int(v) for v in lengths.tolist() if v < 1 or v > seq)
        raise ValueError(f"lengths: expected every length in 1..{seq} (T), found {bad}")
    return lengths


class GqaAttention(nn.Module):
    """Causal grouped-query attention: ``[B, T, H] -> [B, T, H]`` (SPEC section 2, the attention
    step; on its own it is gqa's ``buildGqaAttention``, parameters ``q_proj``, ``k_proj``,
    ``v_proj``, ``out_proj``).

    ``q = a Wq^T + bq : [B, T, NH*D]``, ``k, v : [B, T, NKV*D]``; heads; rotary; scores
    ``q k^T / sqrt(D)`` with key ``j > i`` masked (and keys ``j >= L_b`` when padded), softmax,
    ``o = softmax(s) v`` where query head ``i`` reads KV head ``i // (NH/NKV)``; ``out_proj(o)``.
    Source of the grouping: Ainslie et al. 2023 (GQA), Edifice ``Edifice.Attention.GQA``.
    """

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: Optional[int] = None,
                 rope: Optional[RopePlan] = None):
        super().__init__()
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = head_dim if head_dim is not None else hidden_size // num_heads
        d = self.head_dim
        self.q_proj = nn.Linear(hidden_size, num_heads * d)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * d)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * d)
        self.out_proj = nn.Linear(num_heads * d, hidden_size)
        self.rope = rope

    @classmethod
    def from_options(cls, opts: dict) -> "GqaAttention":
        """The standalone layer from gqa's attention options (``hiddenSize``, ``numHeads``,
        ``numKvHeads``, ``headDim?``, ``rope``, ``ropeTheta?``, ``ropeScaling?``, ``yarn``,
        ``yarnScale``, ``yarnOriginalMaxPosition``; the ``gqa_attention_config`` metadata)."""
        o = dict(opts)
        hd = o.get("headDim") or o["hiddenSize"] // o["numHeads"]
        plan = _rope_plan({**o, "headDim": hd})
        return cls(o["hiddenSize"], o["numHeads"], o["numKvHeads"], hd, plan)

    def forward(self, a: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``a: [B, T, H]``; ``key_mask``: optional bool ``[B, 1, T, T]``, True where query ``i``
        may attend key ``j`` (causal and valid); ``None`` = plain causal. Returns ``[B, T, H]``."""
        B, T, _ = a.shape
        d = self.head_dim
        q = self.q_proj(a).view(B, T, self.num_heads, d).transpose(1, 2)
        k = self.k_proj(a).view(B, T, self.num_kv_heads, d).transpose(1, 2)
        v = self.v_proj(a).view(B, T, self.num_kv_heads, d).transpose(1, 2)
        if self.rope is not None:
            cos, sin = self.rope.tables(T, a.device)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if key_mask is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, enable_gqa=True)
        return self.out_proj(o.transpose(1, 2).reshape(B, T, self.num_heads * d))


class Block(nn.Module):
    """One pre-norm transformer block: ``h + drop(attn(LN(h)))``, then
    ``h + drop(ffn_down(GELU(ffn_up(LN(h)))))`` (inner width ``4 * H``, exact erf GELU)."""

    def __init__(self, cfg: GqaConfig, rope: Optional[RopePlan]):
        super().__init__()
        H = cfg.hidden_size
        self.attn_norm = nn.LayerNorm(H, eps=LN_EPS)
        self.attn = GqaAttention(H, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim_, rope)
        self.ffn_norm = nn.LayerNorm(H, eps=LN_EPS)
        self.ffn_up = nn.Linear(H, 4 * H)
        self.ffn_down = nn.Linear(4 * H, H)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``h: [B, T, H]`` -> ``[B, T, H]``; ``key_mask`` as :meth:`GqaAttention.forward`."""
        h = h + self.drop(self.attn(self.attn_norm(h), key_mask))
        return h + self.drop(self.ffn_down(F.gelu(self.ffn_up(self.ffn_norm(h)), approximate="none")))


class GqaModel(nn.Module):
    """The GQA encoder (Edifice ``Edifice.Attention.GQA.build/1``): ``[B, T, E]`` float32 ->
    ``[B, H]`` (``last_timestep``, ``mean_pool``) or ``[B, T, H]`` (``all``). See the module doc
    for the exact forward pass, padding and parameter names.

    Built from a :class:`GqaConfig` (or gqa's camelCase options dict). Weights are initialised as
    Axon does (Glorot-uniform kernels, zero biases, LayerNorm 1/0) from ``torch.Generator``
    seeded with ``cfg.seed`` (same distributions as gqa, not the same numbers).
    """

    def __init__(self, cfg):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = GqaConfig.from_dict(cfg)
        self.cfg = cfg
        H = cfg.hidden_size
        rope = _rope_plan({**cfg.to_dict(), "headDim": cfg.head_dim_})
        self.input_projection = nn.Linear(cfg.embed_dim, H) if cfg.embed_dim != H else None
        self.blocks = nn.ModuleList([Block(cfg, rope) for _ in range(cfg.num_layers)])
        self.final_norm = nn.LayerNorm(H, eps=LN_EPS)
        init_weights(self, cfg.seed)

    def hidden(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The final-normed hidden states ``[B, T, H]`` for ``x: [B, T, E]`` (padded positions
        hold values computed from zeroed inputs; use :meth:`forward` for the masked outputs)."""
        B, T, E = x.shape
        if E != self.cfg.embed_dim:
            raise ValueError(f"x: expected [B, T, {self.cfg.embed_dim}] (embedDim), found {list(x.shape)}")
        lengths = check_lengths(lengths, B, T)
        key_mask = None
        W = self.cfg.sliding_window
        pos = torch.arange(T, device=x.device)
        causal = pos[None, :] <= pos[:, None]  # [T(query), T(key)]
        if W is not None:
            causal = causal & (pos[:, None] - pos[None, :] < W)  # SPEC section 7: p - W < j <= p
        if lengths is not None:
            valid = pos[None, :] < lengths.to(x.device)[:, None]  # [B, T]
            x = torch.where(valid[:, :, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
            key_mask = (causal[None] & valid[:, None, :])[:, None]  # [B, 1, T, T]
            # A padded query row past the window of every valid key reads nothing: let it read
            # key 0 (its output is never used; this keeps softmax finite).
            key_mask = key_mask | (~key_mask.any(-1, keepdim=True) & (pos == 0))
        elif W is not None:
            key_mask = causal[None, None]  # [1, 1, T, T]
        h = self.input_projection(x) if self.input_projection is not None else x
        for block in self.blocks:
            h = block(h, key_mask)
        return self.final_norm(h)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x: [B, T, E]`` float32, ``lengths``: optional ``[B]`` int64 in ``1..T``. Returns
        ``[B, H]`` (``last_timestep``: position ``L_b - 1``; ``mean_pool``: mean over ``t < L_b``)
        or ``[B, T, H]`` (``all``, zeros at ``t >= L_b``)."""
        h = self.hidden(x, lengths)
        B, T, _ = h.shape
        mode = self.cfg.output_mode
        if lengths is None:
            if mode == "last_timestep":
                return h[:, -1]
            return h.mean(1) if mode == "mean_pool" else h
        lengths = torch.as_tensor(lengths, dtype=torch.int64, device=h.device)
        if mode == "last_timestep":
            return h[torch.arange(B, device=h.device), lengths - 1]
        valid = (torch.arange(T, device=h.device)[None, :] < lengths[:, None]).to(h.dtype)[:, :, None]
        if mode == "mean_pool":
            return (h * valid).sum(1) / lengths[:, None].to(h.dtype)
        return h * valid


def glorot_uniform_(w: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Axon's default dense init (Glorot & Bengio 2010): ``U(-a, a)``, ``a = sqrt(6 / (in + out))``
    for a weight ``[out, in]``, in place."""
    fan_out, fan_in = w.shape
    a = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return w.uniform_(-a, a, generator=generator)


def init_weights(module: nn.Module, seed: int) -> None:
    """Initialises every ``nn.Linear`` (Glorot-uniform weight, zero bias) and ``nn.LayerNorm``
    (weight 1, bias 0) of ``module`` in registration order from ``torch.Generator().manual_seed(seed)``
    (SPEC section 3's initialisation; gqa draws different numbers from the same distributions)."""
    g = torch.Generator().manual_seed(int(seed))
    for m in module.modules():
        if isinstance(m, nn.Linear):
            glorot_uniform_(m.weight, g)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class TaskModel(nn.Module):
    """A :class:`GqaModel` with an optional linear task head (gqa's ``GQA.build({..., head})``):
    ``head(model(x, lengths))``, ``head.weight [K, H]``, ``head.bias [K]``.

    :meth:`forward` returns the head's raw outputs ``[B, K]`` (logits or regression values), or the
    model's output when there is no head; :meth:`predict` returns class probabilities
    (``softmax(logits)``, rows sum to 1) or regression values; :meth:`loss` is the head's loss.
    """

    def __init__(self, cfg, head: Optional[HeadConfig] = None):
        super().__init__()
        self.model = cfg if isinstance(cfg, GqaModel) else GqaModel(cfg)
        if isinstance(head, dict):
            head = HeadConfig.from_dict(head)
        self.head_cfg = head
        self.head = None
        if head is not None:
            if self.model.cfg.output_mode == "all":
                raise GqaOptionError("outputMode", '"last_timestep" or "mean_pool" when a head is attached', "all")
            self.head = nn.Linear(self.model.cfg.hidden_size, head.size)
            g = torch.Generator().manual_seed(int(self.model.cfg.seed) + 1)
            glorot_uniform_(self.head.weight, g)
            nn.init.zeros_(self.head.bias)

    @property
    def cfg(self) -> GqaConfig:
        """The backbone's options."""
        return self.model.cfg

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x: [B, T, E]``, ``lengths: [B]`` -> head outputs ``[B, K]`` (or the model's output
        without a head)."""
        out = self.model(x, lengths)
        return out if self.head is None else self.head(out)

    def loss(self, out: torch.Tensor, labels: torch.Tensor, reduction: str = "mean", label_smoothing: float = 0.0) -> torch.Tensor:
        """The head's loss (a scalar): classification ``F.cross_entropy(out, labels,
        weight=classWeights, label_smoothing=label_smoothing)`` (``labels [B]`` int64; ``"mean"`` is
        the weighted mean ``sum w_y nll / sum w_y``; gqa's ``FitOptions.labelSmoothing``); regression ``F.mse_loss`` or ``F.huber_loss(delta)``
        (``labels [B, K]`` float32; ``"mean"`` over every element). ``reduction="sum"`` gives the
        numerator only (see :meth:`loss_denominator`), for splitting a batch across processes."""
        h = self.head_cfg
        if h is None:
            raise ValueError("loss: this model has no head (build it with a HeadConfig)")
        if h.type == "classification":
            w = None if h.class_weights is None else torch.tensor(h.class_weights, dtype=out.dtype, device=out.device)
            return F.cross_entropy(out, labels, weight=w, reduction=reduction, label_smoothing=label_smoothing)
        labels = labels.to(out.dtype).reshape(out.shape)
        if h.loss == "huber":
            return F.huber_loss(out, labels, delta=h.huber_delta, reduction=reduction)
        return F.mse_loss(out, labels, reduction=reduction)

    def loss_denominator(self, labels: torch.Tensor) -> float:
        """What ``loss(..., "mean")`` divides ``loss(..., "sum")`` by for these labels: the summed
        class weights of the labels (their count without weights), or the number of regression
        values."""
        h = self.head_cfg
        if h is not None and h.type == "classification":
            if h.class_weights is None:
                return float(labels.shape[0])
            return float(torch.tensor(h.class_weights, dtype=torch.float64)[labels.cpu()].sum())
        return float(labels.numel())

    @torch.no_grad()
    def predict(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Eval-mode predictions ``[B, K]``: class probabilities (softmax over the logits) or
        regression values, as gqa's ``model.predict``. Restores the previous train/eval mode."""
        if self.head is None:
            raise ValueError("predict: this model has no head (build it with a HeadConfig)")
        was = self.training
        self.eval()
        try:
            out = self(x, lengths)
        finally:
            self.train(was)
        return torch.softmax(out, dim=-1) if self.head_cfg.type == "classification" else out
