"""timm must import through core.models.timm_compat even with a CUDA torchvision next to CPU torch."""
import subprocess
import sys

import torch

from core.models.timm_compat import timm

from core.models import timm_compat


def test_timm_creates_13_band_dinov2_vit():
    model = timm.create_model("vit_small_patch14_dinov2", img_size=224, in_chans=13, pretrained=False)
    assert model.pos_embed.shape == (1, 257, 384)
    assert model.patch_embed.proj.weight.shape == (384, 13, 14, 14)
    with torch.no_grad():
        assert model.forward_features(torch.zeros(1, 13, 224, 224)).shape == (1, 257, 384)


def test_real_torchvision_ops_are_used_when_they_load():
    """If torchvision's compiled ops load, the shim must not declare its own schemas."""
    code = (
        "import torch, importlib\n"
        "try:\n"
        "    import torchvision; real = True\n"
        "except RuntimeError:\n"
        "    real = False\n"
        "import sys\n"
        "for m in [m for m in sys.modules if m.startswith('torchvision')]: del sys.modules[m]\n"
        "from core.models import timm_compat\n"
        "assert timm_compat.TORCHVISION_OPS_REAL == real, (timm_compat.TORCHVISION_OPS_REAL, real)\n"
        "print(real)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # an independent probe, without the shim: does torchvision's compiled library load here?
    probe = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True)
    assert out.stdout.strip() == str(probe.returncode == 0), (out.stdout, probe.stderr[-500:])


def test_declared_schemas_only_when_ops_missing():
    ops = torch.ops.torchvision
    assert hasattr(ops, "nms")
    if not timm_compat.TORCHVISION_OPS_REAL:
        assert timm_compat._LIB is not None
