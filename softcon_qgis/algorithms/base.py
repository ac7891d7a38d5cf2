"""What every SoftCon algorithm shares: parameter builders, the settings as specs (``EmbedSpec``, ``FitSpec``),
running the work in the worker process (:func:`run_worker`: the command line the specs give, with its progress
in the dialog) and the translation of its errors into ``QgsProcessingException``.

QGIS's own process imports only the plugin and core's standard-library modules (the specs, the model and method
registries, errors, progress): never torch, numpy or the installed packages, so QGIS starts fast and needs no
restart after Install….
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from .. import deps, install, worker
from ..core.embed.spec import DEFAULT_MODE, DEVICES, EmbedSpec, MODES
from ..core.errors import Cancelled, SoftConError
from ..core.geo.bands import PRESETS
from ..core.models.registry import DEFAULT_MODEL, REGISTRY
from ..core.models.weights import cached_path, download_url
from ..core.progress import Progress
from ..core.settings import default

ICON = Path(__file__).resolve().parents[1] / "icon.svg"  # every algorithm shows the plugin's icon
BAND_CHOICES = ("auto",) + tuple(PRESETS)

#: Appended to the help of every algorithm with an embedding mode, so all explain it the same way.
MODE_HELP = (
    "\n\nEmbedding mode: 'dense' (the default) keeps the encoder's patch features, one embedding per patch "
    "(80 m with the default model), fine enough for fields, beaches and channels. 'pooled' averages each "
    "window into one embedding (320 m with the default model): 16 times fewer values, for quick overviews "
    "of large areas."
)

#: Widget wrappers of the dialogs (class paths: imported only when a dialog opens, see widgets.py).
MODEL_WIDGET = {"widget_wrapper": {"class": f"{__package__}.widgets.ModelWrapper"}}
CLASS_FIELD_WIDGET = {"widget_wrapper": {"class": f"{__package__}.widgets.ClassFieldWrapper"}}

#: core's messages name command-line options; the dialogs show these words instead.
GUI_WORDS: tuple[tuple[str, str], ...] = (
    (r"\(e\.g\. --bands eurosat or --bands B1,B2,\.\.\.\)",
     "(choose a band order in Advanced, or type the band names in 'Explicit band list')"),
    (r"\bGive the band order\b", "Choose the band order in Advanced"),
    (r"--bands with a preset", "a band order in Advanced (a preset"),
    (r"use --bands (\S+?)\.", r"choose the band order '\1' in Advanced."),
    (r"--bands\b", "the band order in Advanced"),
    (r"--bbox-crs\b", "the extent's CRS"),
    (r"--bbox\b", "the Extent"),
    (r"--checkpoint\b", "the checkpoint file in Advanced"),
    (r"--device\b", "the Device in Advanced"),
    (r"--model\b", "the Model"),
    (r"--method\b", "the Method"),
    (r"--features\b", "Features"),
    (r"--mode\b", "the Embedding mode"),
    (r"--stride\b", "the Stride in Advanced"),
    (r"--save-classifier\b", "the Trained classifier output"),
    (r"--layer\b", "the training layer"),
    (r"\(--size\)", "(the Sample size)"),
    (r"--min-per-class\b", "the Fewest points per class"),
    (r"compute one first with `python -m core\.embed RASTER --out EMB\.tif`\.",
     "run 'Compute embeddings' on it first."),
    (r"run python -m core\.embed first", "run 'Compute embeddings' on it first"),
)

#: core's hidden stage folder in a path: its files are moved away before the user reads the log.
_STAGING = re.compile(r"\S*[/\\]\.softcon-[^/\\\s]+[/\\]")
#: core's embedding progress ("64 windows") and its plan ("169 windows of 64 px").
_WINDOWS_DONE = re.compile(r"^(\d+) windows$")
_WINDOWS_TOTAL = re.compile(r"\b(\d+) windows of \d+ px")


def tr(text: str) -> str:
    return QCoreApplication.translate("SoftCon", text)


def model_names() -> tuple[str, ...]:
    """Registry names, default first (the registry is standard library: no torch needed to list it). A model
    without a download (softcon_tiny_s2, the pretraining reference, left out of the plugin zip) is offered only
    where its weights are on disk."""
    names = (DEFAULT_MODEL,) + tuple(n for n in REGISTRY if n != DEFAULT_MODEL)
    return tuple(n for n in names if download_url(REGISTRY[n]) or cached_path(REGISTRY[n]) is not None)


def gui_words(message: str) -> str:
    """``message`` with command-line options replaced by the dialog's words (see :data:`GUI_WORDS`)."""
    for pattern, words in GUI_WORDS:
        message = re.sub(pattern, words, message)
    return message


def make_progress(feedback: QgsProcessingFeedback | None):
    """A ``core.progress.Progress`` that drives ``feedback`` (percent, text, log) and reads its cancel flag.

    The dialog logs every progress text, so the text changes at most every 10 %, reads "n of N windows",
    and log lines name no file inside a staging folder (it is gone when the user reads them). A table
    goes out as command info: the dialog shows that in a fixed-width font.
    """
    if feedback is None:
        return Progress()
    state = {"msg": None, "step": -1, "total": None}

    def on_log(msg: str) -> None:
        total = _WINDOWS_TOTAL.search(msg)
        if total:
            state["total"] = int(total.group(1))
        text = gui_words(_STAGING.sub("", msg))
        if "\n" in text and "  " in text:  # a table (the method comparison): monospace, columns kept
            feedback.pushCommandInfo(text.replace(" ", "\u00a0"))  # the log is HTML: plain spaces collapse
        else:
            feedback.pushInfo(text)

    def on_progress(pct: float, msg: str = "") -> None:
        feedback.setProgress(pct)
        done = _WINDOWS_DONE.match(msg or "")
        if done and state["total"]:
            msg = f"{done.group(1)} of {state['total']} windows"
        phase = re.sub(r"\d+", "#", msg or "")
        step = int(pct // 10)
        if msg and msg != state["msg"] and (phase != re.sub(r"\d+", "#", state["msg"] or "") or step > state["step"]):
            state.update(msg=msg, step=step)
            feedback.setProgressText(msg)

    return Progress(on_progress=on_progress, is_cancelled=feedback.isCanceled, on_log=on_log)


def run_core(feedback: QgsProcessingFeedback | None, fn, *args, **kwargs):
    """Call ``fn`` (a spec's check) and turn ``SoftConError`` into ``QgsProcessingException``."""
    try:
        return fn(*args, **kwargs)
    except SoftConError as exc:
        raise QgsProcessingException(gui_words(_STAGING.sub("", str(exc)))) from None


def run_worker(feedback: QgsProcessingFeedback | None, module: str, args: list[str]) -> dict:
    """Run ``python -m softcon_qgis.core.<module> ARGS`` in the worker process (:mod:`..worker`) and return
    its result; its progress and log go to ``feedback``. Errors, a crash or Cancel become a
    ``QgsProcessingException`` in the dialog's words; the command is logged so a user can run it again."""
    env = worker.environment()
    if feedback is not None:
        feedback.pushCommandInfo(tr("The same on the command line:"))
        feedback.pushCommandInfo(worker.shell_line(worker.command(module, args), env))
    console = feedback.pushConsoleInfo if feedback is not None else None
    try:
        return worker.run(module, args, make_progress(feedback), on_stderr=console, env=env)
    except Cancelled as exc:
        raise QgsProcessingException(str(exc)) from None
    except worker.MissingPackages as exc:
        name = re.search(r"No module named '([^'.]+)", str(exc))
        module_name = name.group(1) if name else str(exc)
        requirement = dict(deps.REQUIREMENTS).get(module_name, module_name)
        raise QgsProcessingException(install.explain([deps.Missing(module_name, requirement, str(exc))],
                                                     python=deps.python_executable())) from None
    except worker.WorkerError as exc:
        raise QgsProcessingException(gui_words(_STAGING.sub("", str(exc)))) from None


def raster_source(layer: QgsRasterLayer | None, what: str = "Input raster") -> str:
    """The file behind a raster layer (core reads files with rasterio, so it must be GDAL-readable)."""
    if layer is None or not layer.isValid():
        raise QgsProcessingException(tr(f"{what}: no valid raster layer was given."))
    if layer.providerType() != "gdal":
        raise QgsProcessingException(tr(
            f"{what} '{layer.name()}' comes from the {layer.providerType()} provider; SoftCon reads files. "
            "Save it as a GeoTIFF (Export > Save As...) and use that."))
    return layer.source().split("|")[0]


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


def output_name(layer, what: str) -> str:
    """The name of an output layer in the Layers panel: the input's name first ("T32UNE - classes")."""
    name = layer.name() if layer is not None else ""
    return f"{name} - {what}" if name else what


def name_output(context, path: str, name: str) -> None:
    """Name an output that Processing loads on completion (outputs without a style of their own)."""
    if context.willLoadLayerOnCompletion(path):
        context.layerToLoadOnCompletionDetails(path).name = name


def require_tif(path: str, what: str) -> str:
    if not path:
        raise QgsProcessingException(tr(f"{what}: no output file was given."))
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        raise QgsProcessingException(tr(f"{what}: SoftCon writes GeoTIFF; use a .tif file name, not {path}."))
    make_parent(path)
    return path


def make_parent(path: str | os.PathLike) -> Path:
    """Create the folder of an output file; a read-only parent is one clear message, not a traceback."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QgsProcessingException(tr(f"Cannot create the output folder {parent} ({exc.strerror or exc}); "
                                        "choose another output location.")) from None
    return parent


class SoftConAlgorithm(QgsProcessingAlgorithm):
    """Base class: provider group, help text, instance creation and the shared parameters."""

    MODEL = "MODEL"
    CHECKPOINT = "CHECKPOINT"
    CLASSIFIER = "CLASSIFIER"
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
        mode = self.parameterDefinition("MODE") is not None
        return tr(self._help) + (tr(MODE_HELP) if mode else "")

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def svgIconPath(self) -> str:
        return str(ICON)

    def helpUrl(self) -> str:
        return "https://github.com/softcon-qgis/softcon-qgis#readme"

    def createInstance(self):
        return type(self)()

    # --- parameters -------------------------------------------------------------------------
    def param(self, definition, advanced: bool = False) -> None:
        """``addParameter`` with its success flag checked (a clash of names is a programming error)."""
        if advanced:
            definition.setFlags(definition.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        if isinstance(definition, QgsProcessingParameterField) and definition.name() == "CLASS_FIELD":
            definition.setMetadata(CLASS_FIELD_WIDGET)  # the field that looks like classes, pre-selected
        if not self.addParameter(definition):
            raise QgsProcessingException(f"{self.name()}: could not add parameter {definition.name()}")

    def output(self, definition) -> None:
        if not self.addOutput(definition):
            raise QgsProcessingException(f"{self.name()}: could not add output {definition.name()}")

    def add_model_parameters(self) -> None:
        names = model_names()
        model = QgsProcessingParameterEnum(
            self.MODEL, tr("Model"), options=list(names), defaultValue=default(EmbedSpec, "model"),
            usesStaticStrings=True)
        model.setMetadata(MODEL_WIDGET)  # human names, and whether the weights are on disk
        self.param(model)
        self.param(QgsProcessingParameterFile(
            self.CHECKPOINT, tr("Checkpoint file (weights for the chosen model instead of its own)"),
            behavior=QgsProcessingParameterFile.File, fileFilter="Weights (*.safetensors *.pth *.pt)",
            optional=True), advanced=True)

    def add_band_parameters(self) -> None:
        self.param(QgsProcessingParameterEnum(
            self.BANDS, tr("Band order of the raster (auto: from the band descriptions)"),
            options=list(BAND_CHOICES), defaultValue="auto", usesStaticStrings=True), advanced=True)
        self.param(QgsProcessingParameterString(
            self.BAND_LIST, tr("Explicit band list, one name per raster band (overrides the band order)"),
            optional=True), advanced=True)

    def add_classifier_parameters(self) -> None:
        """A classifier saved by 'Classify land cover', the band order and the checkpoint it was trained with."""
        self.param(QgsProcessingParameterFile(
            self.CLASSIFIER, tr("Saved classifier"), behavior=QgsProcessingParameterFile.File,
            fileFilter="SoftCon classifier (*.npz)"))
        self.add_band_parameters()
        self.param(QgsProcessingParameterFile(
            self.CHECKPOINT, tr("Checkpoint file (only if the classifier was trained with one)"),
            behavior=QgsProcessingParameterFile.File, fileFilter="Weights (*.safetensors *.pth *.pt)",
            optional=True))

    def add_device_parameter(self) -> None:
        param = QgsProcessingParameterEnum(
            self.DEVICE, tr("Device"), options=list(DEVICES), defaultValue=default(EmbedSpec, "device"),
            usesStaticStrings=True)
        self.param(param, advanced=True)

    def add_mode_parameter(self, name: str = "MODE") -> None:
        """The embedding mode, with the same default in every algorithm (explained by :data:`MODE_HELP`)."""
        self.param(QgsProcessingParameterEnum(
            name, tr("Embedding mode"), options=list(MODES), defaultValue=DEFAULT_MODE, usesStaticStrings=True))

    def model_choice(self, parameters, context) -> tuple[str, str | None]:
        name = self.parameterAsEnumString(parameters, self.MODEL, context) or model_names()[0]
        return name, self.checkpoint_choice(parameters, context)

    def checkpoint_choice(self, parameters, context) -> str | None:
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context) or None
        if checkpoint and not Path(checkpoint).is_file():
            raise QgsProcessingException(tr(f"Checkpoint file not found: {checkpoint}"))
        return checkpoint

    def bands_choice(self, parameters, context):
        """None (auto from descriptions), a preset name, or a list of band names."""
        explicit = (self.parameterAsString(parameters, self.BAND_LIST, context) or "").strip()
        if explicit:
            return [b.strip() for b in explicit.replace(";", ",").split(",") if b.strip()]
        preset = self.parameterAsEnumString(parameters, self.BANDS, context) or "auto"
        return None if preset == "auto" else preset

    def embed_spec(self, parameters, context, layer: QgsRasterLayer, **settings) -> EmbedSpec:
        """The embedding settings of this run as one ``EmbedSpec``, the only place the plugin reads them: model
        and checkpoint, bands, device; mode, stride and extent where the algorithm has them; ``settings`` add
        the algorithm's own (``cog``). A value the spec refuses is one message in the dialog's words."""
        kw = dict(settings, bands=self.bands_choice(parameters, context),
                  device=self.device_choice(parameters, context))
        if self.parameterDefinition(self.MODEL) is not None:
            kw["model"] = self.parameterAsEnumString(parameters, self.MODEL, context) or model_names()[0]
        if self.parameterDefinition(self.CHECKPOINT) is not None:
            kw["checkpoint"] = self.checkpoint_choice(parameters, context)
        if self.parameterDefinition("MODE") is not None:
            kw["mode"] = self.parameterAsEnumString(parameters, "MODE", context) or DEFAULT_MODE
        if self.parameterDefinition("STRIDE") is not None:
            kw["stride"] = self.parameterAsInt(parameters, "STRIDE", context) or None
        if self.parameterDefinition("EXTENT") is not None:
            kw["bbox"] = extent_bbox(self, parameters, "EXTENT", context, layer)
        return run_core(None, EmbedSpec, **kw)

    def device_choice(self, parameters, context) -> str:
        return self.parameterAsEnumString(parameters, self.DEVICE, context) or default(EmbedSpec, "device")

    def log_setup(self, feedback, spec: EmbedSpec, model: str | None = None) -> None:
        """Log model, weights, bands and device as asked (the worker logs the device that actually runs)."""
        model = model or spec.model
        feedback.pushInfo(tr(f"Model: {model}" + (f" (weights: {spec.checkpoint})" if spec.checkpoint else "")))
        bands = spec.bands if not isinstance(spec.bands, tuple) else ",".join(spec.bands)
        feedback.pushInfo(tr(f"Bands: {bands if bands is not None else 'auto (from band descriptions)'}"))
        feedback.pushInfo(tr(f"Device: {spec.device}"))
