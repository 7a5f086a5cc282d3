"""Reading and writing gqa's safetensors files (SPEC.md section 3) from PyTorch.

A gqa model file holds the canonical parameter tensors (F32, ``[out, in]``), optionally
``head.weight [K, H]`` and ``head.bias [K]``, and string metadata: ``gqa_config`` (the options as
JSON, TypeScript names), ``gqa_head`` (the head, when there is one) and, for files written by
``gqa train``, ``gqa_cli`` (class labels and input standardisation; kept as is). :func:`save`
writes such a file from a :class:`~gqa_torch.model.TaskModel` / :class:`~gqa_torch.model.GqaModel`;
:func:`load` reads one (or a PyTorch / Edifice export without metadata, given ``config``) the way
gqa's ``GQA.load`` does: the naming scheme (canonical, or Edifice/Axon names whose 2-D kernels are
``[in, out]`` and get transposed) and a common key prefix (``model.``, ``weight.`` ...) are
detected; F32, F16 and BF16 are accepted and converted to float32; every shape is checked and
non-finite weights are refused; extra tensors are ignored unless ``strict``.

Errors are :class:`GqaFileError` with gqa's error ``code`` (``MALFORMED_FILE``,
``MISSING_CONFIG``, ``MISSING_PARAMETER``, ``TENSOR_MISMATCH``, ``NON_FINITE_WEIGHT``,
``UNEXPECTED_PARAMETER``) naming the tensor, the expected and the found value.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Dict, List, Optional, Tuple, Union

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import CONFIG_METADATA_KEY, HEAD_METADATA_KEY, GqaConfig, HeadConfig
from .model import GqaModel, TaskModel

#: Metadata key written by ``gqa train`` (class labels, standardisation); carried through unchanged.
CLI_METADATA_KEY = "gqa_cli"
#: Metadata key of an ensemble file written by ``gqa train --ensemble n`` (the member count).
ENSEMBLE_METADATA_KEY = "gqa_ensemble"
#: Names of a head's tensors.
HEAD_WEIGHT, HEAD_BIAS = "head.weight", "head.bias"

_ACCEPTED = {torch.float32, torch.float16, torch.bfloat16}
Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


class GqaFileError(ValueError):
    """A file gqa would refuse, with gqa's error ``code`` (e.g. ``TENSOR_MISMATCH``)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(f"{code}: {message}")


def read_safetensors(source: Source) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Tensors (as stored) and ``__metadata__`` of a safetensors file (a path or its bytes).
    Raises :class:`GqaFileError` ``MALFORMED_FILE`` for a truncated or malformed file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        with open(source, "rb") as f:
            data = f.read()
    if len(data) < 8:
        raise GqaFileError("MALFORMED_FILE", f"not a safetensors file: {len(data)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise GqaFileError("MALFORMED_FILE", f"not a safetensors file: header length {n} exceeds the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + n])
        tensors = st_load(data)
    except Exception as e:  # safetensors raises its own error types
        raise GqaFileError("MALFORMED_FILE", f"not a safetensors file: {e}") from e
    meta = header.get("__metadata__") or {}
    return tensors, dict(meta)


def axon_name(canonical: str) -> Optional[str]:
    """The Edifice/Axon name of a canonical parameter (SPEC section 3):
    ``blocks.{l}.attn.q_proj.weight`` -> ``gqa_block_{l+1}_attn_q_proj.kernel``,
    ``blocks.{l}.attn_norm.weight`` -> ``gqa_block_{l+1}_attn_norm.gamma``, ``final_norm.bias`` ->
    ``final_norm.beta``; ``None`` for a name without one."""
    layer, rest = None, canonical
    if canonical.startswith("blocks."):
        parts = canonical[len("blocks."):].split(".", 1)
        if len(parts) != 2 or not parts[0].isdigit():
            return None
        layer, rest = int(parts[0]), parts[1]
    if "." not in rest:
        return None
    module, param = rest.rsplit(".", 1)
    norm = module.endswith("_norm")
    mapped = {("weight", True): "gamma", ("bias", True): "beta", ("weight", False): "kernel", ("bias", False): "bias"}.get((param, norm))
    if mapped is None:
        return None
    module = module.replace(".", "_")
    return f"gqa_block_{layer + 1}_{module}.{mapped}" if layer is not None else f"{module}.{mapped}"


def load_weights(model: torch.nn.Module, tensors: Dict[str, torch.Tensor], strict: bool = False,
                 prefix: Optional[str] = None, allow_extra: Tuple[str, ...] = ()) -> List[str]:
    """Loads ``tensors`` into ``model``'s parameters (all of them; nothing changes on error),
    detecting the naming scheme and the common prefix unless ``prefix`` is given. Returns the file
    keys used. Raises :class:`GqaFileError` (``MISSING_PARAMETER``, ``TENSOR_MISMATCH``,
    ``NON_FINITE_WEIGHT``, ``UNEXPECTED_PARAMETER`` under ``strict``)."""
    params = dict(model.named_parameters())
    names = list(params)
    keys = set(tensors)
    best = None  # (count, scheme, prefix)
    for scheme in ("canonical", "axon"):
        mapped = {n: (n if scheme == "canonical" else axon_name(n)) for n in names}
        if prefix is not None:
            candidates = [prefix]
        else:
            candidates = sorted({k[: len(k) - len(m)] for n, m in mapped.items() if m for k in keys if k.endswith(m)}, key=len)
        for p in candidates:
            c = sum(1 for m in mapped.values() if m and f"{p}{m}" in keys)
            if best is None or c > best[0]:
                best = (c, scheme, p)
    if best is None or best[0] == 0:
        first = names[0] if names else ""
        raise GqaFileError("MISSING_PARAMETER", f"`{first}`: looked for `{prefix or ''}{first}` or `{prefix or ''}{axon_name(first)}` "
                           f"(no model parameter found under canonical or Axon names{' with the given prefix' if prefix is not None else ' with any prefix'})")
    _, scheme, pre = best
    loaded, used = {}, []
    for n, p in params.items():
        key = pre + (n if scheme == "canonical" else axon_name(n))
        if key not in tensors:
            raise GqaFileError("MISSING_PARAMETER", f"`{n}`: looked for `{key}`")
        t = tensors[key]
        transposed = scheme == "axon" and p.dim() == 2
        want = tuple(p.shape[::-1]) if transposed else tuple(p.shape)
        if tuple(t.shape) != want:
            raise GqaFileError("TENSOR_MISMATCH", f"`{key}` shape: expected {list(want)}, found {list(t.shape)}")
        if t.dtype not in _ACCEPTED:
            raise GqaFileError("TENSOR_MISMATCH", f"`{key}` dtype: expected F32, F16 or BF16, found {t.dtype}")
        t = t.to(torch.float32)
        bad = (~torch.isfinite(t)).flatten().nonzero()
        if len(bad):
            i = int(bad[0])
            raise GqaFileError("NON_FINITE_WEIGHT", f"`{key}` holds {t.flatten()[i].item()} at flat index {i}")
        loaded[n] = t.t().contiguous() if transposed else t
        used.append(key)
    if strict:
        extra = sorted(k for k in keys if k not in set(used) and k not in allow_extra)
        if extra:
            raise GqaFileError("UNEXPECTED_PARAMETER", f"`{extra[0]}` is not a model parameter (strict loading)")
    with torch.no_grad():
        for n, t in loaded.items():
            params[n].copy_(t.to(params[n].device))
    return used


def load(source: Source, config: Optional[Union[GqaConfig, dict]] = None, strict: bool = False,
         prefix: Optional[str] = None) -> TaskModel:
    """A :class:`TaskModel` from a gqa safetensors file (a path or its bytes): options from
    ``config`` (gqa's camelCase dict or a :class:`GqaConfig`; overrides the file), else from the
    ``gqa_config`` metadata; the head from ``gqa_head`` when present (``model.head`` is ``None``
    otherwise). The model is returned in eval mode; ``model.metadata`` holds the file's metadata.

    Raises :class:`GqaFileError` ``MISSING_CONFIG`` for a file without ``gqa_config`` and no
    ``config`` (a PyTorch or Edifice export: its head count cannot be read from shapes), and the
    errors of :func:`load_weights`; ``GqaOptionError`` for invalid options."""
    tensors, meta = read_safetensors(source)
    if ENSEMBLE_METADATA_KEY in meta:
        raise GqaFileError("UNEXPECTED_PARAMETER", f"an ensemble of {meta[ENSEMBLE_METADATA_KEY]} models (metadata `gqa_ensemble`): use load_ensemble")
    if config is None:
        if CONFIG_METADATA_KEY not in meta:
            raise GqaFileError("MISSING_CONFIG", "the file has no `gqa_config` metadata (a PyTorch or Edifice export?): pass config={...} "
                               "with at least embedDim, hiddenSize, numHeads, numKvHeads, numLayers")
        config = GqaConfig.from_json(meta[CONFIG_METADATA_KEY])
    elif isinstance(config, dict):
        config = GqaConfig.from_dict(config)
    head = HeadConfig.from_json(meta[HEAD_METADATA_KEY]) if HEAD_METADATA_KEY in meta else None
    m = TaskModel(config, head)
    allow = ()
    if head is not None:
        allow = (HEAD_WEIGHT, HEAD_BIAS) + ((prefix + HEAD_WEIGHT, prefix + HEAD_BIAS) if prefix else ())
    load_weights(m.model, tensors, strict=strict, prefix=prefix, allow_extra=allow)
    if head is not None:
        hp = {}
        for name in (HEAD_WEIGHT, HEAD_BIAS):
            t = tensors.get(name)
            if t is None and prefix:
                t = tensors.get(prefix + name)
            if t is None:
                raise GqaFileError("MISSING_PARAMETER", f"`{name}` (the file's gqa_head metadata names a head)")
            hp[name.split(".")[1]] = t
        load_weights(m.head, hp, strict=True, prefix="")
    m.metadata = meta
    return m.eval()


def load_ensemble(source: Source) -> List[TaskModel]:
    """The members of a ``gqa train --ensemble n`` file (member ``j``'s tensors are named
    ``ensemble.{j}.<name>``, metadata ``gqa_ensemble = n``), each a :class:`TaskModel` in eval
    mode; a file without ``gqa_ensemble`` gives its one model. gqa averages the members'
    probabilities."""
    tensors, meta = read_safetensors(source)
    if ENSEMBLE_METADATA_KEY not in meta:
        return [load(source)]
    n = int(meta[ENSEMBLE_METADATA_KEY])
    member_meta = {k: v for k, v in meta.items() if k != ENSEMBLE_METADATA_KEY}
    out = []
    for j in range(n):
        pre = f"ensemble.{j}."
        part = {k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)}
        if not part:
            raise GqaFileError("MALFORMED_FILE", f"ensemble member {j} of {n} has no tensors (expected names '{pre}*')")
        out.append(load(st_save(part, metadata=member_meta)))
    return out


def state_tensors(model: Union[TaskModel, GqaModel]) -> Dict[str, torch.Tensor]:
    """The tensors gqa saves: canonical parameter names (plus ``head.*``), float32, contiguous, on the CPU."""
    if isinstance(getattr(model, "module", None), torch.nn.Module):  # DistributedDataParallel
        model = model.module
    if isinstance(model, TaskModel):
        out = {n: p for n, p in model.model.named_parameters()}
        if model.head is not None:
            out[HEAD_WEIGHT], out[HEAD_BIAS] = model.head.weight, model.head.bias
    else:
        out = dict(model.named_parameters())
    return {n: p.detach().to("cpu", torch.float32).contiguous() for n, p in out.items()}


def save(model: Union[TaskModel, GqaModel], path: Optional[Union[str, os.PathLike]] = None,
         metadata: Optional[Dict[str, str]] = None) -> bytes:
    """The model as gqa safetensors bytes (canonical names, F32, ``gqa_config`` and, with a head,
    ``gqa_head`` metadata, plus any ``metadata`` given, e.g. ``gqa_cli``); written to ``path``
    when given. ``GQA.load`` (TypeScript) and ``gqa eval`` read the result."""
    if isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module
    cfg = model.cfg
    meta = {CONFIG_METADATA_KEY: cfg.to_json()}
    if isinstance(model, TaskModel) and model.head_cfg is not None:
        meta[HEAD_METADATA_KEY] = model.head_cfg.to_json()
    for k, v in (metadata or {}).items():
        if not isinstance(v, str):
            raise TypeError(f"metadata[{k!r}]: expected a string, found {type(v).__name__}")
        meta[k] = v
    data = st_save(state_tensors(model), metadata=meta)
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data
