"""What the algorithm dialogs show beyond QGIS's default widgets: models by human names (and whether their
weights are on this computer), and the training layer's class field chosen for the user.

Both are Processing widget wrappers, named by the parameters' ``widget_wrapper`` metadata (a class path,
so ``qgis_process`` and the modeler never meet a Python object in the metadata). The values stay what
scripts and ``qgis_process`` pass: the registry name of the model, the name of the field.
"""
from __future__ import annotations

import re

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingUtils,
    QgsProject,
    QgsVectorLayer,
)

from ..core.models.registry import DEFAULT_MODEL, get_record
from ..core.models.weights import cached_path

#: Field names that identify features rather than classify them.
ID_NAMES = re.compile(r"^(fid|id|gid|oid|ogc_fid|objectid|uuid|guid|pk|rowid|index|.*_id|id_.*)$", re.I)
#: A class field has a handful of values, each shared by several features.
MAX_CLASSES = 50


def sensor_text(record) -> str:
    """'Sentinel-2 L1C, 13 bands', 'Sentinel-1 VV/VH', 'Sentinel-2, 10 bands'."""
    if record.modality == "s1":
        return "Sentinel-1 " + "/".join(record.bands)
    level = " L1C" if len(record.bands) == 13 else ""
    return f"Sentinel-2{level}, {len(record.bands)} bands"


def model_label(name: str) -> str:
    """'SoftCon ViT-S/14 - Sentinel-2 L1C, 13 bands - 90 MB download' or '... - on disk' (from the registry's
    records, without torch: a float32 download holds 4 bytes per parameter)."""
    record = get_record(name)
    title = record.title or name
    if name == DEFAULT_MODEL:
        title += " (default, small)"
    try:
        on_disk = cached_path(record) is not None
    except OSError:  # an unreadable cache folder: the file counts as absent here, and is reported when used
        on_disk = False
    size = f"{record.parameters * 4 / 1e6:,.0f} MB download" if record.parameters else "download"
    where = "on disk" if on_disk else size
    return f"{title} - {sensor_text(record)} - {where}"


def guess_class_field(layer: QgsVectorLayer | None, sample: int = 2000) -> str | None:
    """The first text field whose values look like classes (2..50 distinct values, repeated across
    features, not an id), else the first such integer field; None when nothing looks like classes."""
    if layer is None or not layer.isValid():
        return None
    fields = [f for f in layer.fields() if not ID_NAMES.match(f.name())]
    values: dict[str, list] = {f.name(): [] for f in fields}
    for i, feature in enumerate(layer.getFeatures()):
        if i >= sample:
            break
        for name in values:
            values[name].append(feature[name])

    def looks_like_classes(name: str) -> bool:
        vals = [v for v in values[name] if v is not None and str(v).strip() not in ("", "NULL")]
        distinct = len(set(map(str, vals)))
        return 2 <= distinct <= MAX_CLASSES and distinct < len(vals)

    for kind in ("text", "integer"):
        for f in fields:
            is_text = f.type() == 10  # QVariant.String
            is_int = f.isNumeric() and f.precision() == 0 and f.typeName().lower().startswith("int")
            if ((kind == "text" and is_text) or (kind == "integer" and is_int)) and looks_like_classes(f.name()):
                return f.name()
    return None


def _processing_wrapper_base():
    from processing.gui.wrappers import WidgetWrapper

    return WidgetWrapper


def _layer_from_value(value) -> QgsVectorLayer | None:
    """The vector layer a feature-source widget holds (a layer id, a path, or 'selected features only')."""
    if isinstance(value, QgsProcessingFeatureSourceDefinition):
        value = value.source.staticValue()
    if isinstance(value, QgsVectorLayer):
        return value
    if not value:
        return None
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    layer = QgsProcessingUtils.mapLayerFromString(str(value), context, True, QgsProcessingUtils.LayerHint.Vector)
    if layer is not None and layer.project() is None:
        context.temporaryLayerStore().takeMapLayer(layer)  # keep it alive after the context goes
    return layer if isinstance(layer, QgsVectorLayer) else None


class ModelWrapper(_processing_wrapper_base()):
    """A combo box of models by human name; its value is the registry name."""

    def createWidget(self):
        from qgis.PyQt.QtWidgets import QComboBox

        from .base import model_names

        combo = QComboBox()
        for name in model_names():
            combo.addItem(model_label(name), name)
            combo.setItemData(combo.count() - 1, name, 3)  # Qt.ToolTipRole: the name scripts use
        combo.currentIndexChanged.connect(lambda _: self.widgetValueHasChanged.emit(self))
        return combo

    def setValue(self, value):
        index = self.widget.findData(value)
        if index >= 0:
            self.widget.setCurrentIndex(index)

    def value(self):
        return self.widget.currentData()


class ClassFieldWrapper(_processing_wrapper_base()):
    """The field list of the training layer, with the field that looks like classes already chosen."""

    def createWidget(self):
        from qgis.gui import QgsFieldComboBox

        combo = QgsFieldComboBox()
        combo.fieldChanged.connect(lambda _: self.widgetValueHasChanged.emit(self))
        return combo

    def postInitialize(self, wrappers):
        parent = self.parameterDefinition().parentLayerParameterName()
        for wrapper in wrappers:
            if wrapper.parameterDefinition().name() == parent:
                self.set_layer(wrapper.parameterValue())
                wrapper.widgetValueHasChanged.connect(lambda w: self.set_layer(w.parameterValue()))
                break

    def set_layer(self, value) -> None:
        layer = _layer_from_value(value)
        self.widget.setLayer(layer)
        guess = guess_class_field(layer)
        if guess:
            self.widget.setField(guess)

    def setValue(self, value):
        if value:
            self.widget.setField(str(value))

    def value(self):
        return self.widget.currentField() or None


#: ``widget_wrapper`` metadata for the parameters (class paths, importable wherever the plugin is).
MODEL_WIDGET = {"widget_wrapper": {"class": f"{__name__}.ModelWrapper"}}
CLASS_FIELD_WIDGET = {"widget_wrapper": {"class": f"{__name__}.ClassFieldWrapper"}}
