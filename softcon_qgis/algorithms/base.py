"""What every SoftCon algorithm shares: parameter builders, the feedback -> Progress adapter, and the
translation of ``core`` errors into ``QgsProcessingException``.

Nothing here imports torch at module level; ``core`` is imported inside ``processAlgorithm`` (through
:func:`require_core`) so QGIS starts fast and a missing package gives an explanation, not a traceback.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication

from .. import deps

DEFAULT_MODEL_NAME = "galileo_nano_s2"  # used only when core cannot be imported (deps missing)
BAND_CHOICES = ("auto", "s2_l1c", "s2_l2a", "eurosat", "s1")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


#: Embedding modes of core.embed, in the order the MODE enums show them.
MODES = ("pooled", "dense")


def tr(text: str) -> str:
    return QCoreApplication.translate("SoftCon", text)


@functools.lru_cache(maxsize=1)
def model_names() -> tuple[str, ...]:
    """Registry names, default first (just the default when core's dependencies are missing)."""
    try:
        from ..core.models import DEFAULT_MODEL, REGISTRY
    except Exception:  # deps missing: the provider still loads; running explains what to install
        return (DEFAULT_MODEL_NAME,)
    return (DEFAULT_MODEL,) + tuple(n for n in REGISTRY if n != DEFAULT_MODEL)


def require_core() -> None:
    """Raise a QgsProcessingException that explains how to install whatever does not import."""
    missing = deps.check()
    if missing:
        raise QgsProcessingException(deps.explain(missing))


def make_progress(feedback: QgsProcessingFeedback | None):
    """A ``core.progress.Progress`` that drives ``feedback`` (percent, text, log) and reads its cancel flag."""
    from ..core.progress import Progress

    if feedback is None:
        return Progress()
    last = {"msg": None}

    def on_progress(pct: float, msg: str = "") -> None:
        feedback.setProgress(pct)
        if msg and msg != last["msg"]:
            last["msg"] = msg
            feedback.setProgressText(msg)

    return Progress(on_progress=on_progress, is_cancelled=feedback.isCanceled, on_log=feedback.pushInfo)


def run_core(feedback: QgsProcessingFeedback | None, fn, *args, **kwargs):
    """Call ``fn`` and turn ``SoftConError`` (including ``Cancelled``) into ``QgsProcessingException``."""
    from ..core.errors import Cancelled, SoftConError

    try:
        return fn(*args, **kwargs)
    except Cancelled as exc:
        raise QgsProcessingException(str(exc) or tr("Cancelled by the user.")) from None
    except SoftConError as exc:
        raise QgsProcessingException(str(exc)) from None


def raster_source(layer: QgsRasterLayer | None, what: str = "Input raster") -> str:
    """The file behind a raster layer (core reads files with rasterio, so it must be GDAL-readable)."""
    if layer is None or not layer.isValid():
        raise QgsProcessingException(tr(f"{what}: no valid raster layer was given."))
    if layer.providerType() != "gdal":
        raise QgsProcessingException(tr(
            f"{what} '{layer.name()}' comes from the {layer.providerType()} provider; SoftCon reads files. "
            "Save it as a GeoTIFF (Export > Save As...) and use that."))
    return layer.source().split("|")[0]


def embedding_source(layer: QgsRasterLayer | None) -> str:
    """The file of an embedding raster layer (written by 'Compute embeddings'), or a clear error."""
    from ..core.analysis import is_embedding_raster

    path = raster_source(layer, "Embedding raster")
    if not is_embedding_raster(path):
        raise QgsProcessingException(tr(
            f"'{layer.name()}' is not an embedding raster (it has no SoftCon tags). Run 'Compute embeddings' "
            "on the imagery first and use its output here."))
    return path


def extent_bbox(alg: QgsProcessingAlgorithm, parameters, name: str, context, layer: QgsRasterLayer):
    """The optional extent parameter as (minx, miny, maxx, maxy) in the raster layer's CRS, or None."""
    if parameters.get(name) in (None, ""):
        return None
    rect = alg.parameterAsExtent(parameters, name, context, layer.crs())
    if rect.isNull() or rect.isEmpty():
        return None
    if not rect.intersects(layer.extent()):
        raise QgsProcessingException(tr(
            f"The extent does not overlap the raster '{layer.name()}'; choose an extent inside it or leave it empty."))
    return [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()]


def require_tif(path: str, what: str) -> str:
    if not path:
        raise QgsProcessingException(tr(f"{what}: no output file was given."))
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        raise QgsProcessingException(tr(f"{what}: SoftCon writes GeoTIFF; use a .tif file name, not {path}."))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return path


class StagingDir:
    """A temporary folder next to the outputs; results are moved into place only when all succeeded.

    Same folder, same file system: ``os.replace`` is atomic, and a failed or cancelled run leaves
    nothing behind (the folder is removed either way).
    """

    def __init__(self, near: str) -> None:
        parent = Path(near).parent
        parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=".softcon-", dir=parent))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def move_raster(src: str | os.PathLike, dest: str) -> str:
    """Move a finished GeoTIFF (and its .aux.xml if any) over ``dest`` atomically."""
    os.replace(src, dest)
    aux = Path(str(src) + ".aux.xml")
    if aux.exists():
        os.replace(aux, dest + ".aux.xml")
    return dest


class SoftConAlgorithm(QgsProcessingAlgorithm):
    """Base class: provider group, help text, instance creation and the shared parameters."""

    MODEL = "MODEL"
    CHECKPOINT = "CHECKPOINT"
    BANDS = "BANDS"
    BAND_LIST = "BAND_LIST"
    DEVICE = "DEVICE"

    _group = "Embeddings"
    _help = ""

    def group(self) -> str:
        return tr(self._group)

    def groupId(self) -> str:
        return self._group.lower().replace(" ", "_")

    def shortHelpString(self) -> str:
        return tr(self._help)

    def helpUrl(self) -> str:
        return "https://github.com/softcon-qgis/softcon-qgis#readme"

    def createInstance(self):
        return type(self)()

    # --- parameters -------------------------------------------------------------------------
    def param(self, definition, advanced: bool = False) -> None:
        """``addParameter`` with its success flag checked (a clash of names is a programming error)."""
        if advanced:
            definition.setFlags(definition.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        if not self.addParameter(definition):
            raise QgsProcessingException(f"{self.name()}: could not add parameter {definition.name()}")

    def output(self, definition) -> None:
        if not self.addOutput(definition):
            raise QgsProcessingException(f"{self.name()}: could not add output {definition.name()}")

    def add_model_parameters(self) -> None:
        names = model_names()
        self.param(QgsProcessingParameterEnum(
            self.MODEL, tr("Model"), options=list(names), defaultValue=names[0], usesStaticStrings=True))
        self.param(QgsProcessingParameterFile(
            self.CHECKPOINT, tr("Checkpoint file (optional; weights for the chosen model instead of its own)"),
            behavior=QgsProcessingParameterFile.File, fileFilter="Weights (*.safetensors *.pth *.pt)",
            optional=True))

    def add_band_parameters(self) -> None:
        self.param(QgsProcessingParameterEnum(
            self.BANDS, tr("Band order of the raster"), options=list(BAND_CHOICES), defaultValue="auto",
            usesStaticStrings=True))
        self.param(QgsProcessingParameterString(
            self.BAND_LIST, tr("Explicit band list, one name per raster band (overrides the band order)"),
            optional=True))

    def add_device_parameter(self) -> None:
        param = QgsProcessingParameterEnum(
            self.DEVICE, tr("Device"), options=list(DEVICE_CHOICES), defaultValue="auto", usesStaticStrings=True)
        self.param(param)

    def model_choice(self, parameters, context) -> tuple[str, str | None]:
        name = self.parameterAsEnumString(parameters, self.MODEL, context) or model_names()[0]
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context) or None
        if checkpoint and not Path(checkpoint).is_file():
            raise QgsProcessingException(tr(f"Checkpoint file not found: {checkpoint}"))
        return name, checkpoint

    def bands_choice(self, parameters, context):
        """None (auto from descriptions), a preset name, or a list of band names."""
        explicit = (self.parameterAsString(parameters, self.BAND_LIST, context) or "").strip()
        if explicit:
            return [b.strip() for b in explicit.replace(";", ",").split(",") if b.strip()]
        preset = self.parameterAsEnumString(parameters, self.BANDS, context) or "auto"
        return None if preset == "auto" else preset

    def device_choice(self, parameters, context) -> str:
        return self.parameterAsEnumString(parameters, self.DEVICE, context) or "auto"

    def log_setup(self, feedback, model: str, checkpoint, bands, device: str) -> None:
        """Log model, weights, bands and the device that will actually run."""
        from ..core.device import pick_device

        dev = run_core(feedback, pick_device, device)
        feedback.pushInfo(tr(f"Model: {model}" + (f" (weights: {checkpoint})" if checkpoint else "")))
        feedback.pushInfo(tr(f"Bands: {bands if bands is not None else 'auto (from band descriptions)'}"))
        feedback.pushInfo(tr(f"Device: {device} -> {dev}"))
