"""Reading, filtering, strictly loading and writing encoder weights.

Modelled on timm's ``checkpoint_filter_fn`` / ``adapt_input_conv`` / ``resample_abs_pos_embed``:
every published file format has one explicit key filter (``FILTERS``), each rename or drop is
named, and loading is strict: a missing or unexpected key or a shape mismatch is a
:class:`~core.errors.SoftConError` that names the keys and says what the file looks like.

Formats (``ModelRecord.checkpoint_format``):

- ``dinov2``: the published SoftCon ViT files (``B13_vits14_softcon.pth`` ...), saved from the
  DINOv2 ``DinoVisionTransformer`` with ``block_chunks=0``: ``cls_token (1,1,D)``,
  ``pos_embed (1,257,D)``, ``mask_token (1,D)``, ``patch_embed.proj.weight (D,C,14,14)``,
  ``blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}``, ``norm``.
  These are timm's own names, except ``mask_token`` (DINOv2's iBOT mask token, unused at
  inference: dropped) and chunked blocks ``blocks.{chunk}.{i}`` (FSDP training layout: renamed).
- ``torchvision``: the published ResNet-50 files (torchvision ``resnet50`` keys with
  ``conv1.weight (64,C,7,7)``, no ``fc``); timm's ``resnet50`` uses the same names.
- ``galileo``: Galileo's ``encoder.pt`` (nasaharvest/galileo, ``data/models/nano``) or this project's
  conversion of it: the Sentinel-2 keys are kept under their upstream names; the embeddings of other
  modalities are dropped by name, and the fixed sin-cos tables (``pos_embed``, ``month_embed``), which
  :mod:`core.models.galileo` recomputes, are checked against the recomputation and dropped.
- ``timm``: timm model keys as they are.
- ``safetensors``: this project's own files (timm model keys, string metadata).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import SoftConError
from ..io.atomic import atomic_path
from .galileo import fixed_time_month

StateDict = dict[str, torch.Tensor]

#: Containers that training scripts wrap a state dict in, unwrapped in this order.
#: ``teacher`` comes before ``student``-only files: DINO/DINOv2 release the teacher.
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model", "teacher", "model_ema")
#: Key prefixes stripped from every key (keys without the prefix are dropped, by name):
#: ``module.`` (DataParallel/DDP), ``_orig_mod.`` (torch.compile), ``backbone.`` (DINO heads),
#: ``encoder.`` (MoCo-style wrappers), ``model.`` (this project's ``Encoder.state_dict()``).
STRIP_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.", "backbone.", "encoder.", "model.")

_CHUNKED_BLOCK = re.compile(r"^blocks\.\d+\.(\d+)\.")
_MODALITY_BY_CHANNELS = {
    2: "Sentinel-1 (VV, VH)",
    3: "RGB",
    12: "Sentinel-2 L2A",
    13: "Sentinel-2 L1C",
}


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"


def _load_raw(path: Path) -> object:
    if not path.is_file():
        raise SoftConError(f"Checkpoint file not found: {path}. Check the path, or download the weights again.")
    if path.stat().st_size == 0:
        raise SoftConError(f"Checkpoint file {path} is empty (an interrupted download?). Delete it and download it again.")
    if _is_safetensors(path):
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise SoftConError(
                f"Cannot read {path} as safetensors ({exc}); the file is truncated or corrupt. "
                f"Delete it and download or convert it again."
            ) from None
    try:
        # argparse.Namespace is what DINO/MoCo training checkpoints keep their args in.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except torch.serialization.pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():  # torch 2.13: "unsupported GLOBAL"
            raise SoftConError(
                f"{path} holds Python objects other than tensors, so it is not loaded (weights_only=True "
                f"protects against code in pickles). Save only the state dict "
                f"(torch.save(model.state_dict(), ...)) and try again."
            ) from None
        raise SoftConError(f"{path} is truncated or not a PyTorch checkpoint (it does not unpickle). "
                           f"Delete it and download it again.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise SoftConError(
            f"{path} is truncated or not a PyTorch checkpoint ({str(exc).splitlines()[0][:200]}). "
            f"Delete it and download it again."
        ) from None


def unwrap_state_dict(obj: object, notes: list[str] | None = None) -> StateDict:
    """The flat ``{name: tensor}`` inside a loaded checkpoint object.

    Unwraps, each step noted in ``notes``: the containers in ``WRAPPER_KEYS``, then the key
    prefixes in ``STRIP_PREFIXES`` (keys without the prefix, e.g. a DINO ``head.*``, are dropped
    and named), then drops non-tensor entries (``epoch``, ``args``).
    """
    notes = notes if notes is not None else []
    while isinstance(obj, Mapping):
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                notes.append(f"unwrapped {{'{key}': ...}}")
                obj = obj[key]
                break
        else:
            raise SoftConError(
                f"The checkpoint holds no tensors at its top level nor under any of {', '.join(WRAPPER_KEYS)} "
                f"(top-level keys: {', '.join(map(str, list(obj)[:10]))}). It is not an encoder state dict."
            )
    if not isinstance(obj, Mapping):
        raise SoftConError(f"The checkpoint is a {type(obj).__name__}, not a state dict.")
    state: StateDict = {}
    skipped = []
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            state[str(k)] = v
        else:
            skipped.append(str(k))
    if skipped:
        notes.append(f"dropped non-tensor entries: {', '.join(skipped)}")
    for prefix in STRIP_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            dropped = [k for k in state if not k.startswith(prefix)]
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            notes.append(f"stripped prefix '{prefix}'" + (f", dropped {key_names(dropped)}" if dropped else ""))
    return state


def read_state_dict(path: str | Path, notes: list[str] | None = None) -> StateDict:
    """Tensors of a ``.pth``/``.pt`` (``torch.load(weights_only=True)``) or ``.safetensors`` file.

    Common wrappers and prefixes are unwrapped (see :func:`unwrap_state_dict`); what was done is
    appended to ``notes``.

    Raises:
        SoftConError: file missing, empty, truncated/corrupt, or not a state dict.
    """
    return unwrap_state_dict(_load_raw(Path(path)), notes)


# --------------------------------------------------------------------------------------------
# Filters per published format
# --------------------------------------------------------------------------------------------
def key_names(keys: Sequence[str], limit: int = 8) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def filter_dinov2(state: StateDict, notes: list[str]) -> StateDict:
    out: StateDict = {}
    renamed = 0
    for k, v in state.items():
        if k == "mask_token":
            notes.append("dropped mask_token (DINOv2/iBOT masking token, unused at inference)")
            continue
        m = _CHUNKED_BLOCK.match(k)
        if m:  # blocks.{chunk}.{i}.* -> blocks.{i}.*  (DINOv2 block_chunks > 0)
            k = f"blocks.{m.group(1)}." + k[m.end():]
            renamed += 1
        out[k] = v
    if renamed:
        notes.append(f"renamed {renamed} chunked keys blocks.{{chunk}}.{{i}}.* -> blocks.{{i}}.*")
    return out


def _filter_torchvision(state: StateDict, notes: list[str]) -> StateDict:
    fc = [k for k in state if k.startswith("fc.")]
    if fc:
        notes.append(f"dropped classifier {', '.join(fc)} (the encoder has no fc)")
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


_GALILEO_OTHER = ("space_time_embed.S1.", "space_time_embed.NDVI.", "space_embed.", "time_embed.", "static_embed.",
                  "sp_channel_embed", "t_channel_embed", "st_channel_embed")


def _filter_galileo(state: StateDict, notes: list[str]) -> StateDict:
    fixed = fixed_time_month()
    tables = {"pos_embed": (0, fixed[:32]), "month_embed.weight": (6, fixed[32:])}
    for key, (row, want) in tables.items():
        if key in state:
            got = state[key][row].float()
            if got.shape != want.shape or not torch.allclose(got, want, atol=1e-6):
                raise SoftConError(f"{key} row {row} of the Galileo checkpoint is not the fixed sin-cos table "
                                   f"this encoder recomputes; the file is not a Galileo encoder it can run.")
            notes.append(f"checked and dropped the fixed table {key} (recomputed by core.models.galileo)")
    dropped = [k for k in state if k.startswith(_GALILEO_OTHER)]
    if dropped:
        notes.append(f"dropped embeddings of modalities other than Sentinel-2: {key_names(dropped)}")
    return {k: v for k, v in state.items() if k not in tables and k not in dropped}


def _filter_identity(state: StateDict, notes: list[str]) -> StateDict:
    return dict(state)


#: checkpoint_format -> filter(state, notes) mapping file keys onto timm model keys.
FILTERS: dict[str, Callable[[StateDict, list[str]], StateDict]] = {
    "dinov2": filter_dinov2,
    "torchvision": _filter_torchvision,
    "timm": _filter_identity,
    "safetensors": _filter_identity,
    "galileo": _filter_galileo,
}


# --------------------------------------------------------------------------------------------
# Strict loading with a diagnosis
# --------------------------------------------------------------------------------------------
def describe_state_dict(state: Mapping[str, torch.Tensor], what: str = "checkpoint") -> str:
    """A short human description of what a state dict looks like (arch, width, bands)."""
    if "space_time_embed.S2_RGB.proj.weight" in state:
        w = state["space_time_embed.S2_RGB.proj.weight"]
        depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        groups = [k.split(".")[1] for k in state if k.startswith("space_time_embed.") and k.endswith(".proj.weight")]
        return (f"a Galileo encoder {what} ({w.shape[0]}-d, {depth} blocks, {w.shape[-1]} px patches, "
                f"channel groups {', '.join(groups)})")
    if "patch_embed.proj.weight" in state:
        w = state["patch_embed.proj.weight"]
        depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        grid = ""
        if "pos_embed" in state:
            n = state["pos_embed"].shape[1] - 1
            side = int(math.isqrt(max(n, 0)))
            grid = f", {side}x{side} patch grid" if side * side == n else f", {n} position tokens"
        arch = f"ViT ({w.shape[0]}-d, {depth} blocks, {w.shape[-1]} px patches{grid})"
        chans = w.shape[1]
    elif "conv1.weight" in state:
        w = state["conv1.weight"]
        blocks = [len({k.split('.')[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
        arch = f"ResNet ({'-'.join(map(str, blocks))} blocks per stage)"
        chans = w.shape[1]
    else:
        return f"an unrecognised state dict ({len(state)} tensors, first keys: {key_names(list(state), 4)})"
    modality = _MODALITY_BY_CHANNELS.get(chans, "")
    return f"a {chans}-band {modality + ' ' if modality else ''}{arch} {what}"


def _model_label(model_state: Mapping[str, torch.Tensor], record: object | None) -> str:
    if record is not None:
        name, arch = getattr(record, "name", "?"), getattr(record, "arch", "?")
        return f"model {name} ({arch}) expects {len(getattr(record, 'bands', ()))} bands"
    return f"the encoder is {describe_state_dict(model_state, 'model')}"


def check_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module, record: object | None = None,
                     source: str = "the checkpoint") -> None:
    """Raise a SoftConError naming every missing/unexpected key and shape mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append(f"shape mismatch (file vs model): {key_names(shapes, 4)}")
    if missing:
        parts.append(f"missing keys: {key_names(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {key_names(unexpected)}")
    raise SoftConError(
        f"Cannot load {source}: {'; '.join(parts)}. This looks like {describe_state_dict(state)}, "
        f"but {_model_label(expected, record)} ({describe_state_dict(expected, 'model')}). "
        f"Pick the model that matches the file (python -m core.models list), or the file that matches the model."
    )


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], record: object | None = None,
                           source: str = "the checkpoint") -> None:
    """``model.load_state_dict(state, strict=True)`` after a check with a readable error.

    A model built empty (on the ``meta`` device) takes the tensors themselves (``assign=True``),
    cast to the model's dtypes, so no memory or time goes into a random init first.
    """
    check_state_dict(state, model, record, source)
    current = model.state_dict()
    if any(t.is_meta for t in current.values()):
        state = {k: v.to(current[k].dtype) if v.dtype != current[k].dtype else v for k, v in state.items()}
        model.load_state_dict(state, strict=True, assign=True)
    else:
        model.load_state_dict(state, strict=True)


def load_weights(encoder: nn.Module, path: str | Path, record: object) -> list[str]:
    """Load a weights file into ``encoder`` (a :class:`core.models.encoders.Encoder`) strictly.

    Args:
        encoder: built for ``record`` (its timm model is ``encoder.model``).
        path: ``.pth`` or ``.safetensors`` file.
        record: the :class:`core.models.record.ModelRecord`; ``record.checkpoint_format`` picks the filter.

    Returns:
        What was unwrapped, renamed and dropped, one line each.

    Raises:
        SoftConError: unreadable file, or any missing/unexpected key or shape mismatch.
    """
    fmt = getattr(record, "checkpoint_format", "timm")
    if fmt not in FILTERS:
        raise SoftConError(f"Unknown checkpoint_format {fmt!r} in record {getattr(record, 'name', '?')}; "
                           f"known: {', '.join(FILTERS)}.")
    notes: list[str] = []
    state = read_state_dict(path, notes)
    state = FILTERS[fmt](state, notes)
    model = getattr(encoder, "model", encoder)
    load_state_dict_strict(model, state, record, source=str(path))
    return notes


# --------------------------------------------------------------------------------------------
# First-layer adaptation and position-embedding resampling
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Writing this project's format
# --------------------------------------------------------------------------------------------
def save_safetensors(encoder: nn.Module, path: str | Path, metadata: Mapping[str, object] | None = None,
                     dtype: torch.dtype | None = None) -> Path:
    """Write ``encoder.model.state_dict()`` (timm keys) as safetensors, atomically.

    Args:
        metadata: string metadata (``model``, ``arch``, ``bands``, ...); non-strings are stored
            as JSON text.
        dtype: cast floating tensors (e.g. ``torch.float16`` halves the file); None keeps them.

    Returns:
        The written path.
    """
    model = getattr(encoder, "model", encoder)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous().clone()
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path
