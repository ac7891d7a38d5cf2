"""The models the dialogs offer, without importing core's registry (which imports torch) into QGIS's process:
what the dialogs show of each record, kept in step with ``core.models.registry`` by test_plugin_dialogs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .core.io.sample_data import cache_dir  # stdlib-only

SHIPPED = Path(__file__).resolve().parent / "core" / "weights"


@dataclass(frozen=True)
class Model:
    name: str  # the registry name (what scripts and qgis_process pass)
    title: str  # family and architecture, as the dialog shows it
    sensor: str
    download_mb: int  # float32 weights, from the architecture's parameter count
    filename: str  # the weights file, shipped in core/weights or in the cache's weights folder
    downloadable: bool = True


#: Default first, then the registry's order.
MODELS: tuple[Model, ...] = (
    Model("galileo_nano_s2", "Galileo nano (default, small)", "Sentinel-2, 10 bands", 4, "galileo_nano_s2.safetensors",
          downloadable=False),
    Model("B13_rn50_softcon", "SoftCon ResNet-50", "Sentinel-2 L1C, 13 bands", 94, "B13_rn50_softcon.pth"),
    Model("B13_vits14_softcon", "SoftCon ViT-S/14", "Sentinel-2 L1C, 13 bands", 90, "B13_vits14_softcon.pth"),
    Model("B13_vitb14_softcon", "SoftCon ViT-B/14", "Sentinel-2 L1C, 13 bands", 349, "B13_vitb14_softcon.pth"),
    Model("B2_rn50_softcon", "SoftCon ResNet-50", "Sentinel-1 VV/VH", 94, "B2_rn50_softcon.pth"),
    Model("B2_vits14_softcon", "SoftCon ViT-S/14", "Sentinel-1 VV/VH", 86, "B2_vits14_softcon.pth"),
    Model("B2_vitb14_softcon", "SoftCon ViT-B/14", "Sentinel-1 VV/VH", 342, "B2_vitb14_softcon.pth"),
    Model("softcon_tiny_s2", "SoftCon ViT-Tiny/8", "Sentinel-2 L1C, 13 bands", 11, "softcon_tiny_s2.safetensors",
          downloadable=False),
)


def on_disk(model: Model) -> bool:
    """The weights are shipped with the plugin or in the cache (downloaded or registered)."""
    return (SHIPPED / model.filename).is_file() or (cache_dir() / "weights" / model.filename).is_file()


def offered() -> tuple[Model, ...]:
    """The models a dialog offers: those that can get their weights (softcon_tiny_s2, the pretraining
    pipeline's reference, is not in the plugin zip, so it is offered only where its file is)."""
    return tuple(m for m in MODELS if m.downloadable or on_disk(m))


def label(name: str) -> str:
    """'SoftCon ViT-S/14 - Sentinel-2 L1C, 13 bands - 90 MB download' or '... - on disk'."""
    model = next(m for m in MODELS if m.name == name)
    return f"{model.title} - {model.sensor} - {'on disk' if on_disk(model) else f'{model.download_mb} MB download'}"
