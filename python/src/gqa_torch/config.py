"""Model and head options, exactly as gqa (SPEC.md section 1) and its safetensors metadata spell them.

A gqa model file carries its options as JSON in the safetensors metadata key ``gqa_config`` (the
TypeScript names: ``embedDim``, ``hiddenSize``, ``numKvHeads`` ...) and, when it has a task head,
the head as JSON in ``gqa_head`` (``{"type": "classification", "numClasses": 9}`` or
``{"type": "regression", "outDim": 1, "loss": "mse", "huberDelta": 1.0}``). :class:`GqaConfig`
and :class:`HeadConfig` read and write exactly those JSON objects, with the same defaults and the
same validation rules as the Rust core (``crates/gqa-core/src/config.rs``, ``train/head.rs``), so
a file written here loads in gqa and vice versa. Invalid values raise :class:`GqaOptionError`
naming the option, the expected and the found value.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Optional

#: Safetensors metadata key holding the model options (JSON, TypeScript names).
CONFIG_METADATA_KEY = "gqa_config"
#: Safetensors metadata key holding the task head's options (JSON).
HEAD_METADATA_KEY = "gqa_head"
#: Output modes (SPEC section 2, step 4).
OUTPUT_MODES = ("last_timestep", "all", "mean_pool")
#: Hugging Face rotary scaling types accepted in ``ropeScaling`` (SPEC section 5).
ROPE_SCALING_TYPES = ("linear", "dynamic", "yarn", "llama3")

#: Deprecated option names still read by :meth:`GqaConfig.from_dict` -> the attribute they set (as
#: the core's serde aliases): ``windowSize`` is ``seqLenHint`` (renamed: it is a sizing hint, not a
#: sliding attention window).
DEPRECATED_OPTION_NAMES = {"windowSize": "seq_len_hint"}

# Fields of each ropeScaling type (camelCase, as gqa's JSON): required, optional.
_ROPE_FIELDS = {
    "linear": (("factor",), ()),
    "dynamic": (("factor", "originalMaxPositionEmbeddings"), ()),
    "yarn": (("factor", "originalMaxPositionEmbeddings"),
             ("betaFast", "betaSlow", "attentionFactor", "mscale", "mscaleAllDim", "truncate")),
    "llama3": (("factor", "lowFreqFactor", "highFreqFactor", "originalMaxPositionEmbeddings"), ()),
}


class GqaOptionError(ValueError):
    """An invalid option: ``option`` (its gqa name, e.g. ``numKvHeads``), what was ``expected``
    and what was ``found``. The message reads like gqa's ``INVALID_OPTION`` errors."""

    def __init__(self, option: str, expected: str, found: Any):
        self.option, self.expected, self.found = option, expected, found
        super().__init__(f"invalid option `{option}`: expected {expected}, found {found!r}")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _int(option: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
        raise GqaOptionError(option, f"an integer >= {minimum}", v)
    v = int(v)
    if v < minimum:
        raise GqaOptionError(option, f"an integer >= {minimum}", v)
    return v


def _pos(option: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
        raise GqaOptionError(option, "a finite number > 0", v)
    return float(v)


@dataclass
class GqaConfig:
    """Every option of the GQA model (SPEC section 1), with Edifice's defaults.

    Attribute names are snake_case; :meth:`to_dict` / :meth:`from_dict` use gqa's camelCase JSON
    names (``embed_dim`` <-> ``embedDim``). Derived sizes: ``head_dim_`` (the ``headDim`` option,
    else ``hidden_size // num_heads``), ``q_dim = num_heads * head_dim_``,
    ``kv_dim = num_kv_heads * head_dim_``, ``group = num_heads // num_kv_heads``.
    """

    #: Input features per timestep ``E`` (``:embed_dim``), required, >= 1.
    embed_dim: int
    #: Model width ``H`` (``:hidden_size``), default 256; divisible by ``num_heads`` unless ``head_dim`` is given.
    hidden_size: int = 256
    #: Per-head width ``D`` (Hugging Face ``head_dim``); ``None`` = ``hidden_size // num_heads``.
    head_dim: Optional[int] = None
    #: Query heads ``NH`` (``:num_heads``), default 8.
    num_heads: int = 8
    #: Key/value heads ``NKV`` (``:num_kv_heads``), default 2; divides ``num_heads`` (1 = MQA, NH = MHA).
    num_kv_heads: int = 2
    #: Pre-norm blocks (``:num_layers``), default 4.
    num_layers: int = 4
    #: Dropout probability in ``[0, 1)``, default 0.1, active only in training (``model.train()``).
    dropout: float = 0.1
    #: Rotary position embedding on Q and K (half rotation, base ``rope_theta``).
    rope: bool = False
    #: Rotary base theta (finite > 0), default 10000.
    rope_theta: float = 10000.0
    #: Hugging Face rotary scaling as gqa's JSON (``{"type": "yarn", "factor": 4, ...}``, SPEC section 5); implies rotary; not with ``yarn``.
    rope_scaling: Optional[dict] = None
    #: Edifice's YaRN-named frequency scaling (SPEC section 5); implies rotary.
    yarn: bool = False
    #: Edifice yarn scale ``s`` (> 0), default 8.
    yarn_scale: float = 8.0
    #: Edifice yarn original context length (>= 1), default 2048.
    yarn_original_max_position: int = 2048
    #: Sliding-window attention ``W`` (>= 1; ``None`` = full causal): query ``p`` reads keys
    #: ``p - W < j <= p`` at every layer (Hugging Face's ``sliding_window``; SPEC section 7).
    sliding_window: Optional[int] = None
    #: Expected sequence length: a sizing hint only (any length works), default 60 (Edifice's
    #: ``:window_size``; JSON ``seqLenHint``, formerly ``windowSize``, which :meth:`from_dict` still reads).
    seq_len_hint: int = 60
    #: ``"last_timestep"`` ([B, H]), ``"all"`` ([B, T, H]) or ``"mean_pool"`` ([B, H]).
    output_mode: str = "last_timestep"
    #: Initialisation seed. gqa's own initialisation from a seed is not reproduced by torch's
    #: generator (same distributions, different numbers); see :func:`gqa_torch.model.init_weights`.
    seed: int = 0

    def __post_init__(self):
        self.validate()

    # -- derived sizes ------------------------------------------------------------------------
    @property
    def head_dim_(self) -> int:
        """``D``: the ``headDim`` option, else ``hiddenSize // numHeads``."""
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    @property
    def q_dim(self) -> int:
        """``numHeads * headDim``: width of ``q_proj``'s output."""
        return self.num_heads * self.head_dim_

    @property
    def kv_dim(self) -> int:
        """``numKvHeads * headDim``: width of ``k_proj``'s and ``v_proj``'s output."""
        return self.num_kv_heads * self.head_dim_

    @property
    def group(self) -> int:
        """Query heads per KV head: query head ``i`` uses KV head ``i // group``."""
        return self.num_heads // self.num_kv_heads

    @property
    def uses_rotary(self) -> bool:
        """Whether rotary embeddings are applied (``rope or yarn or ropeScaling``)."""
        return bool(self.rope or self.yarn or self.rope_scaling is not None)

    # -- validation ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Checks every rule of SPEC section 1 (the Rust core's ``GqaConfig::validate``), normalising
        integer-valued floats to ints. Raises :class:`GqaOptionError` naming the first bad option."""
        self.embed_dim = _int("embedDim", self.embed_dim, 1)
        self.hidden_size = _int("hiddenSize", self.hidden_size, 1)
        self.num_heads = _int("numHeads", self.num_heads, 1)
        self.num_kv_heads = _int("numKvHeads", self.num_kv_heads, 1)
        self.num_layers = _int("numLayers", self.num_layers, 1)
        if self.head_dim is not None:
            self.head_dim = _int("headDim", self.head_dim, 1)
        elif self.hidden_size % self.num_heads:
            raise GqaOptionError("hiddenSize", f"a multiple of numHeads={self.num_heads} (or an explicit headDim)", self.hidden_size)
        if self.num_heads % self.num_kv_heads:
            raise GqaOptionError("numKvHeads", f"a divisor of numHeads={self.num_heads}", self.num_kv_heads)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not (0 <= self.dropout < 1):
            raise GqaOptionError("dropout", "a probability 0 <= p < 1", self.dropout)
        self.dropout = float(self.dropout)
        for name in ("rope", "yarn"):
            if not isinstance(getattr(self, name), bool):
                raise GqaOptionError(name, "true or false", getattr(self, name))
        self.yarn_scale = _pos("yarnScale", self.yarn_scale)
        self.yarn_original_max_position = _int("yarnOriginalMaxPosition", self.yarn_original_max_position, 1)
        self.seq_len_hint = _int("seqLenHint", self.seq_len_hint, 1)
        if self.sliding_window is not None:
            self.sliding_window = _int("slidingWindow", self.sliding_window, 1)
        self.rope_theta = _pos("ropeTheta", self.rope_theta)
        if self.output_mode not in OUTPUT_MODES:
            raise GqaOptionError("outputMode", " or ".join(f'"{m}"' for m in OUTPUT_MODES), self.output_mode)
        self.seed = _int("seed", self.seed, 0)
        if self.rope_scaling is not None:
            if self.yarn:
                raise GqaOptionError("ropeScaling", "either ropeScaling (Hugging Face rotary scaling) or yarn: true (Edifice's scaling), not both",
                                     f"ropeScaling of type {self.rope_scaling.get('type')} with yarn: true")
            self.rope_scaling = validate_rope_scaling(self.rope_scaling)
            if self.rope_scaling["type"] == "dynamic" and self.head_dim_ == 2:
                raise GqaOptionError("headDim", "headDim >= 4 with dynamic ropeScaling (the NTK exponent is d/(d-2))", 2)
        if self.uses_rotary and self.head_dim_ % 2:
            if self.head_dim is not None:
                raise GqaOptionError("headDim", "an even headDim when rope, yarn or ropeScaling is on", self.head_dim_)
            raise GqaOptionError("hiddenSize", f"an even headDim (hiddenSize / numHeads) when rope, yarn or ropeScaling is on (numHeads={self.num_heads})",
                                 f"{self.hidden_size} (headDim={self.head_dim_})")

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The options as gqa's JSON object (camelCase; every option written out, ``headDim`` and
        ``ropeScaling`` and ``slidingWindow`` only when set), as the Rust core writes ``gqa_config``."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("head_dim", "rope_scaling", "sliding_window") and v is None:
                continue
            out[_camel(f.name)] = v
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string (what ``gqa_config`` metadata holds)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "GqaConfig":
        """Options from gqa's JSON object (camelCase names; missing options take their defaults).
        Raises :class:`GqaOptionError` for a missing ``embedDim``, an unknown option or a bad value."""
        if not isinstance(d, dict):
            raise GqaOptionError("options", "a JSON object", d)
        names = {_camel(f.name): f.name for f in dataclasses.fields(cls)}
        names.update(DEPRECATED_OPTION_NAMES)
        if "seqLenHint" in d and "windowSize" in d:
            raise GqaOptionError("windowSize", "only one of seqLenHint and windowSize (its deprecated name)", d["windowSize"])
        unknown = [k for k in d if k not in names]
        if unknown:
            raise GqaOptionError(unknown[0], "a known option (see SPEC section 1)", d[unknown[0]])
        if "embedDim" not in d:
            raise GqaOptionError("embedDim", "an integer >= 1 (required)", None)
        return cls(**{names[k]: v for k, v in d.items()})

    @classmethod
    def from_json(cls, text: str) -> "GqaConfig":
        """:meth:`from_dict` of a JSON string (``gqa_config`` metadata)."""
        return cls.from_dict(json.loads(text))


def validate_rope_scaling(s: Any) -> dict:
    """Checks a ``ropeScaling`` object (gqa's camelCase JSON, SPEC section 5) and returns a copy
    with numbers normalised. Raises :class:`GqaOptionError` naming ``ropeScaling.<field>``."""
    if not isinstance(s, dict):
        raise GqaOptionError("ropeScaling", "an object {type, factor, ...}", s)
    t = s.get("type")
    if t not in _ROPE_FIELDS:
        raise GqaOptionError("ropeScaling.type", " or ".join(f'"{x}"' for x in ROPE_SCALING_TYPES), t)
    required, optional = _ROPE_FIELDS[t]
    for k in s:
        if k != "type" and k not in required and k not in optional:
            raise GqaOptionError(f"ropeScaling.{k}", f"a field of ropeScaling type {t}: {', '.join(required + optional)}", s[k])
    out = {"type": t}
    for k in required:
        if k not in s:
            raise GqaOptionError(f"ropeScaling.{k}", f"a value (required by type {t})", None)
    for k, v in s.items():
        if k == "type":
            continue
        if k == "originalMaxPositionEmbeddings":
            out[k] = _int(f"ropeScaling.{k}", v, 1)
        elif k == "truncate":
            if not isinstance(v, bool):
                raise GqaOptionError(f"ropeScaling.{k}", "true or false", v)
            out[k] = v
        elif k in ("factor", "lowFreqFactor", "attentionFactor"):
            out[k] = _pos(f"ropeScaling.{k}", v)
        else:  # betaFast, betaSlow, mscale, mscaleAllDim, highFreqFactor: finite
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise GqaOptionError(f"ropeScaling.{k}", "a finite number", v)
            out[k] = float(v)
    if t == "llama3" and not out["highFreqFactor"] > out["lowFreqFactor"]:
        raise GqaOptionError("ropeScaling.highFreqFactor", f"a finite number > lowFreqFactor = {out['lowFreqFactor']}", out["highFreqFactor"])
    return out


@dataclass
class HeadConfig:
    """A task head on the model's ``[B, H]`` output (gqa's ``gqa_head`` metadata).

    ``type="classification"``: ``logits = out W^T + b : [B, num_classes]``, softmax cross-entropy
    (``F.cross_entropy(weight=class_weights)``). ``type="regression"``: ``y = out W^T + b : [B,
    out_dim]``, ``F.mse_loss`` or ``F.huber_loss(delta=huber_delta)`` (means over every element).
    Parameters ``head.weight [K, H]`` and ``head.bias [K]``.
    """

    #: ``"classification"`` or ``"regression"``.
    type: str
    #: Classes ``C`` (>= 2), classification only.
    num_classes: Optional[int] = None
    #: Optional per-class loss weights ``[C]`` (finite, >= 0), classification only.
    class_weights: Optional[list] = None
    #: Outputs ``K`` (>= 1), regression only.
    out_dim: Optional[int] = None
    #: ``"mse"`` (default) or ``"huber"``, regression only.
    loss: str = "mse"
    #: Huber threshold (> 0), default 1.0, regression only.
    huber_delta: float = 1.0

    def __post_init__(self):
        self.validate()

    @property
    def size(self) -> int:
        """``K``: the head's outputs (``num_classes`` or ``out_dim``)."""
        return self.num_classes if self.type == "classification" else self.out_dim

    def validate(self) -> None:
        """The rules of the Rust core's ``HeadConfig::validate``; raises :class:`GqaOptionError`
        naming ``head.<field>``."""
        if self.type == "classification":
            self.num_classes = _int("head.numClasses", self.num_classes, 2)
            if self.class_weights is not None:
                w = list(self.class_weights)
                if len(w) != self.num_classes:
                    raise GqaOptionError("head.classWeights", f"{self.num_classes} weights (one per class)", f"{len(w)} weights")
                bad = [v for v in w if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0)]
                if bad:
                    raise GqaOptionError("head.classWeights", "finite weights >= 0", bad[0])
                self.class_weights = [float(v) for v in w]
        elif self.type == "regression":
            self.out_dim = _int("head.outDim", self.out_dim, 1)
            if self.loss not in ("mse", "huber"):
                raise GqaOptionError("head.loss", '"mse" or "huber"', self.loss)
            self.huber_delta = _pos("head.huberDelta", self.huber_delta)
        else:
            raise GqaOptionError("head.type", '"classification" or "regression"', self.type)

    def to_dict(self) -> dict:
        """gqa's ``gqa_head`` JSON object (``{"type": "classification", "numClasses": C, "classWeights"?}``
        or ``{"type": "regression", "outDim": K, "loss", "huberDelta"}``)."""
        if self.type == "classification":
            d = {"type": "classification", "numClasses": self.num_classes}
            if self.class_weights is not None:
                d["classWeights"] = self.class_weights
            return d
        return {"type": "regression", "outDim": self.out_dim, "loss": self.loss, "huberDelta": self.huber_delta}

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "HeadConfig":
        """A head from gqa's JSON object; raises :class:`GqaOptionError` for unknown fields or bad values."""
        if not isinstance(d, dict):
            raise GqaOptionError("head", "an object {type, ...}", d)
        allowed = {"classification": {"type", "numClasses", "classWeights"},
                   "regression": {"type", "outDim", "loss", "huberDelta"}}.get(d.get("type"))
        if allowed is None:
            raise GqaOptionError("head.type", '"classification" or "regression"', d.get("type"))
        extra = [k for k in d if k not in allowed]
        if extra:
            raise GqaOptionError(f"head.{extra[0]}", f"a field of a {d['type']} head: {', '.join(sorted(allowed))}", d[extra[0]])
        return cls(type=d["type"], num_classes=d.get("numClasses"), class_weights=d.get("classWeights"),
                   out_dim=d.get("outDim"), loss=d.get("loss", "mse"), huber_delta=d.get("huberDelta", 1.0))

    @classmethod
    def from_json(cls, text: str) -> "HeadConfig":
        """:meth:`from_dict` of a JSON string (``gqa_head`` metadata)."""
        return cls.from_dict(json.loads(text))
