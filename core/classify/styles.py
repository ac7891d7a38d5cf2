"""The one style authority: how every output looks, as plain data, and its QGIS style (``.qml``) as XML.

Each output's style is data (:class:`ClassStyle`: values, names, colours; :class:`RampStyle`: a colour ramp
over a value range; :class:`RgbStyle`: three bands as RGB). Core writes the ``.qml`` beside each raster from it
(QGIS applies a ``.qml`` of the same base name when the raster is opened), and the QGIS plugin builds its
renderers from the very same data (``softcon_qgis/styles.py``), so a map looks the same from the command line
and in QGIS. Standard library only (``core`` never imports qgis; the plugin reads this without numpy). Also:
class colours, chosen from the class names where they name a familiar cover type (water blue, forest
green...), from a qualitative palette otherwise.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

from ..io.atomic import write_text_atomic

RGB = tuple[int, int, int]

#: Colours for familiar land-cover words (first match in the class name wins).
NAMED_COLORS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    (r"sea|ocean|open water", (8, 48, 140)),
    (r"inland water|lake|river|lagoon|pond|reservoir|bay", (65, 150, 225)),
    (r"water", (30, 100, 200)),
    (r"marsh|wetland|swamp|bog|mangrove", (95, 160, 140)),
    (r"forest|wood|tree", (20, 100, 30)),
    (r"shrub|scrub|heath", (140, 150, 60)),
    (r"grass|pasture|meadow", (150, 210, 90)),
    (r"crop|agri|field|farm|arable", (235, 200, 90)),
    (r"built|urban|city|town|settle|industr|road|artificial", (215, 40, 40)),
    (r"beach|sand|dune|bare|soil|rock", (245, 230, 170)),
    (r"snow|ice|glacier", (240, 250, 255)),
    (r"cloud", (200, 200, 200)),
)

#: Qualitative palette (ColorBrewer Set1 + Dark2) for other class names.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0), (255, 255, 51),
    (166, 86, 40), (247, 129, 191), (153, 153, 153), (27, 158, 119), (217, 95, 2), (117, 112, 179),
    (231, 41, 138), (102, 166, 30), (230, 171, 2), (166, 118, 29),
)


def class_colors(names: Sequence[str]) -> list[tuple[int, int, int]]:
    """One RGB colour per class: by name where it names a familiar cover, else from ``PALETTE``."""
    out: list[tuple[int, int, int]] = []
    for name in names:
        key = name.lower()
        color = next((c for p, c in NAMED_COLORS if re.search(p, key) and c not in out), None)
        if color is None:
            color = next((c for c in PALETTE if c not in out), PALETTE[len(out) % len(PALETTE)])
        out.append(color)
    return out


def _hex(c: Sequence[int]) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in c[:3])


def _raster_qml(kind: str, bands: str, body: str, attrs: str = "", trailer: str = "") -> str:
    """A raster style document with one renderer of type ``kind`` reading ``bands`` (``band="1"``, or the
    red/green/blue bands); ``body`` is the renderer's content."""
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="{kind}" {bands} opacity="1" alphaBand="-1"{attrs} nodataColor="">
      <rasterTransparency/>
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
{body}
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0" colorizeStrength="100" colorizeRed="255" colorizeGreen="128" colorizeBlue="128"/>
    <rasterresampler maxOversampling="2"/>
{trailer}  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def paletted_qml(entries: Sequence[tuple[int, str, Sequence[int]]], band: int = 1) -> str:
    """QML text of a paletted renderer: ``entries`` are (pixel value, label, (r, g, b))."""
    palette = "\n".join(
        f"        <paletteEntry value=\"{int(v)}\" color=\"{_hex(c)}\" alpha=\"255\" label=\"{html.escape(str(label), quote=True)}\"/>"
        for v, label, c in entries
    )
    body = f"""      <colorPalette>
{palette}
      </colorPalette>
      <colorramp type="randomcolors" name="[source]"/>"""
    return _raster_qml("paletted", f'band="{band}"', body,
                       trailer="    <resamplingStage>resamplingFilter</resamplingStage>\n")


def pseudocolor_qml(vmin: float, vmax: float, stops: Sequence[tuple[float, Sequence[int]]], band: int = 1) -> str:
    """QML text of a single-band pseudocolour ramp; ``stops`` are (fraction 0..1, (r, g, b))."""
    items = "\n".join(
        f"            <item value=\"{vmin + f * (vmax - vmin):.6g}\" color=\"{_hex(c)}\" alpha=\"255\" "
        f"label=\"{vmin + f * (vmax - vmin):.3g}\"/>"
        for f, c in stops
    )
    body = f"""      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" minimumValue="{vmin}" maximumValue="{vmax}">
{items}
        </colorrampshader>
      </rastershader>"""
    return _raster_qml("singlebandpseudocolor", f'band="{band}"', body,
                       attrs=f' classificationMin="{vmin}" classificationMax="{vmax}"')


#: Viridis (perceptually uniform, readable with colour-blindness): (fraction 0..1, colour) stops.
VIRIDIS = ((0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)), (1.0, (253, 231, 37)))


@dataclass(frozen=True)
class ClassStyle:
    """A class raster: pixel value -> (label, colour); values not listed are not drawn."""

    kind: ClassVar[str] = "paletted"
    entries: tuple[tuple[int, str, RGB], ...]


@dataclass(frozen=True)
class RampStyle:
    """A continuous band (``band``, 1-based) coloured along ``stops`` (fraction 0..1, colour) from vmin to vmax,
    interpolated; values outside take the end colours."""

    kind: ClassVar[str] = "ramp"
    vmin: float
    vmax: float
    stops: tuple[tuple[float, RGB], ...] = VIRIDIS
    band: int = 1

    def items(self) -> list[tuple[float, RGB]]:
        """(value, colour) at each stop."""
        return [(self.vmin + f * (self.vmax - self.vmin), c) for f, c in self.stops]


@dataclass(frozen=True)
class RgbStyle:
    """Three bands as red, green and blue, each stretched linearly from vmin to vmax."""

    kind: ClassVar[str] = "rgb"
    bands: tuple[int, int, int] = (1, 2, 3)
    vmin: float = 0.0
    vmax: float = 255.0


Style = ClassStyle | RampStyle | RgbStyle

#: The confidence raster (highest class probability, 0..1).
CONFIDENCE = RampStyle(0.0, 1.0)
#: The probability raster (one band per class, 0..1): the first class's band.
PROBABILITY = RampStyle(0.0, 1.0)
#: The similarity map (cosine similarity; below 0 is drawn as 0).
SIMILARITY = RampStyle(0.0, 1.0)
#: The PCA preview: uint8 components already stretched to 1..255 (0 = nodata).
PCA_RGB = RgbStyle((1, 2, 3), 1.0, 255.0)


def class_style(names: Sequence[str], colors: Sequence[Sequence[int]]) -> ClassStyle:
    """The style of a class raster whose value ``i + 1`` is class ``names[i]``."""
    return ClassStyle(tuple((i + 1, str(n), tuple(int(v) for v in c[:3])) for i, (n, c) in enumerate(zip(names,
                      colors))))


def cluster_style(n_clusters: int) -> ClassStyle:
    """The style of a k-means raster (values 1..k): ``cluster i`` in the palette's colours."""
    return class_style([f"cluster {i + 1}" for i in range(n_clusters)],
                       [PALETTE[i % len(PALETTE)] for i in range(n_clusters)])


def _multiband_qml(style: RgbStyle) -> str:
    parts = []
    for band, colour in zip(style.bands, ("red", "green", "blue")):
        parts.append(f"""      <{colour}ContrastEnhancement>
        <minValue>{style.vmin:g}</minValue>
        <maxValue>{style.vmax:g}</maxValue>
        <algorithm>StretchToMinimumMaximum</algorithm>
      </{colour}ContrastEnhancement>""")
    bands = " ".join(f'{c}Band="{b}"' for c, b in zip(("red", "green", "blue"), style.bands))
    return _raster_qml("multibandcolor", bands, "\n".join(parts))


def qml(style: Style) -> str:
    """The QGIS style document of ``style``."""
    if style.kind == "paletted":
        return paletted_qml(style.entries)
    if style.kind == "ramp":
        return pseudocolor_qml(style.vmin, style.vmax, style.stops, style.band)
    return _multiband_qml(style)


def write_qml(path: str | Path, style: Style) -> Path:
    """Write ``style`` as a ``.qml`` to ``path`` (atomically)."""
    return write_text_atomic(Path(path), qml(style))
