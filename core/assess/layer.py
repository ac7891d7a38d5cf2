"""The validation sample as a GeoPackage point layer that QGIS opens ready for labelling.

QGIS reads a layer's default style from the GeoPackage's ``layer_styles`` table (the table QGIS itself
writes with *Save as default*), so the style travels with the file: a value-map widget of the class names on
``reference`` (labelling is picking from a list), the map's class and the stratum hidden from the form and
the table (labelling blind to the map, as good practice asks), and points drawn hollow until labelled.
``core`` never imports QGIS: the style is QML text, the table plain SQLite.
"""
from __future__ import annotations

import sqlite3
from html import escape
from pathlib import Path

import numpy as np
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from pyogrio.raw import write

from ..errors import SoftConError
from ..io.atomic import atomic_path
from .classmap import ClassMap

LAYER = "validation_sample"
REFERENCE = "reference"
STRATUM = "stratum"
STRATUM_PIXELS = "stratum_pixels"
#: Fields the labeller should not see (blind interpretation); they stay in the file for the estimate.
HIDDEN = ("map_value", "map_class", STRATUM, STRATUM_PIXELS)

#: The table QGIS creates for styles in a GeoPackage (its own DDL), registered as an attribute table.
STYLES_DDL = (
    'CREATE TABLE "layer_styles" ("id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "f_table_catalog" TEXT(256), '
    '"f_table_schema" TEXT(256), "f_table_name" TEXT(256), "f_geometry_column" TEXT(256), "styleName" TEXT(30), '
    '"styleQML" TEXT, "styleSLD" TEXT, "useAsDefault" BOOLEAN, "description" TEXT, "owner" TEXT(30), "ui" TEXT(30), '
    "\"update_time\" DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
)


def _marker(name: str, fill: str, outline: str, size: str) -> str:
    opts = dict(name="circle", color=fill, outline_color=outline, outline_width="0.5", size=size)
    props = "".join(f'<Option type="QString" name="{k}" value="{v}"/>' for k, v in opts.items())
    return (f'<symbol type="marker" name="{name}" alpha="1" clip_to_extent="1" force_rhr="0">'
            f'<layer class="SimpleMarker" enabled="1" locked="0" pass="0"><Option type="Map">{props}</Option>'
            f'</layer></symbol>')


def style_qml(class_names: list[str]) -> str:
    """QML (fields, form and symbology) of the sample layer: ``reference`` picked from ``class_names``."""
    e = lambda s: escape(s, quote=True)  # noqa: E731
    entries = "".join(f'<Option type="Map"><Option type="QString" name="{e(n)}" value="{e(n)}"/></Option>'
                      for n in class_names)
    value_map = (f'<field name="{REFERENCE}" configurationFlags="None"><editWidget type="ValueMap"><config>'
                 f'<Option type="Map"><Option type="List" name="map">{entries}</Option></Option>'
                 f'</config></editWidget></field>')
    hidden = "".join(f'<field name="{f}" configurationFlags="None"><editWidget type="Hidden"><config>'
                     f'<Option/></config></editWidget></field>' for f in ("fid",) + HIDDEN)
    editable = "".join(f'<field name="{f}" editable="0"/>' for f in ("sample_id",) + HIDDEN)
    unlabelled = f'&quot;{REFERENCE}&quot; IS NULL OR trim(&quot;{REFERENCE}&quot;) = \'\''
    renderer = (
        '<renderer-v2 type="RuleRenderer" symbollevels="0" enableorderby="0" forceraster="0">'
        f'<rules key="root"><rule key="unlabelled" label="to label" symbol="0" filter="{unlabelled}"/>'
        '<rule key="labelled" label="labelled" symbol="1" filter="ELSE"/></rules><symbols>'
        + _marker("0", "255,255,255,0", "255,0,255,255", "3.2") + _marker("1", "255,255,0,255", "0,0,0,255", "2.4")
        + "</symbols></renderer-v2>")
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
            '<qgis version="3.22.0" styleCategories="Symbology|Fields|Forms">'
            f"{renderer}<fieldConfiguration>{value_map}{hidden}</fieldConfiguration>"
            '<previewExpression>"sample_id"</previewExpression>'  # not the map class: labelling stays blind
            f"<editable>{editable}</editable></qgis>")


def add_default_style(gpkg: Path, layer: str, qml: str, geometry_column: str = "geom") -> None:
    """Store ``qml`` as the default style of ``layer`` in the GeoPackage (QGIS loads it with the layer)."""
    con = sqlite3.connect(gpkg)
    try:
        with con:
            con.execute(STYLES_DDL)
            con.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, last_change) VALUES "
                        "('layer_styles', 'attributes', 'layer_styles', strftime('%Y-%m-%dT%H:%M:%fZ','now'))")
            con.execute("INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
                        "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui) "
                        "VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', '')",
                        (layer, geometry_column, layer, qml, "SoftCon validation sample: label 'reference'"))
    finally:
        con.close()


def write_sample_layer(out_path: Path, cmap: ClassMap, rows: np.ndarray, cols: np.ndarray,
                       classes: np.ndarray) -> Path:
    """Write the sample points (pixel centres, map CRS) with their class, stratum and an empty ``reference``.

    Fields: ``sample_id`` (1..n, the labelling order), ``map_value`` / ``map_class`` (code and name),
    ``stratum`` (the map class name: the strata of this design), ``stratum_pixels`` (pixels of the stratum,
    so that the sample stays assessable if the map changes) and ``reference`` (empty, to be labelled).
    """
    x, y = cmap.transform @ (cols + 0.5, rows + 0.5)
    names = np.array(cmap.names, object)[classes]
    n = len(rows)
    fields = {
        "sample_id": np.arange(1, n + 1, dtype=np.int32),
        "map_value": np.array(cmap.values, np.int64)[classes],
        "map_class": names,
        STRATUM: names,
        STRATUM_PIXELS: np.array(cmap.counts, np.int64)[classes],
        REFERENCE: np.full(n, None, object),
    }
    geometry = shapely.to_wkb(shapely.points(np.column_stack([x, y]))) if n else np.zeros(0, object)
    with atomic_path(out_path) as tmp:
        try:
            write(tmp, geometry, list(fields.values()), list(fields), layer=LAYER, driver="GPKG",
                  geometry_type="Point", crs=cmap.crs, dataset_options={"VERSION": "1.2"},
                  layer_options={"GEOMETRY_NAME": "geom"})
            add_default_style(tmp, LAYER, style_qml(list(cmap.names)))
        except (DataSourceError, DataLayerError, sqlite3.Error) as exc:  # OSError (disk full...): atomic_path's message
            raise SoftConError(f"Could not write {out_path}: {exc}") from None
    return out_path
