"""Import timm through here, never directly.

On machines where the only torchvision wheel is a CUDA build next to a CPU torch,
``import torchvision`` fails with ``operator torchvision::nms does not exist``: the
compiled ops library does not load, so the Python-side ``register_fake`` for
``torchvision::nms`` finds no schema. timm imports torchvision, so timm fails too.

The fix, in one place: try the real import; if the ops did not load, declare the
``torchvision::nms`` / ``torchvision::qnms`` schemas ourselves with
``torch.library.Library("torchvision", "DEF")`` and import again. The encoders never
call these detection ops, so declaring the schemas without kernels is harmless; if
real ops load, they are used untouched.
"""
from __future__ import annotations

import sys

import importlib
import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIB: "torch.library.Library | None" = None  # kept alive: dropping it unregisters the schemas
TORCHVISION_OPS_REAL: bool = True


def _ensure_torchvision() -> None:
    global _LIB, TORCHVISION_OPS_REAL
    try:
        importlib.import_module("torchvision")
        return
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _LIB = torch.library.Library("torchvision", "DEF")
    for name, schema in _SCHEMAS.items():
        try:
            _LIB.define(schema)
        except RuntimeError:  # already defined by a partially loaded library
            pass
    TORCHVISION_OPS_REAL = False
    importlib.import_module("torchvision")


_ensure_torchvision()

import timm  # noqa: E402  (must come after the torchvision fix)

__all__ = ["timm", "TORCHVISION_OPS_REAL"]
