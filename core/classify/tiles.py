"""Many tiles, one classifier: ``python -m core.classify apply FOLDER_OR_RASTERS... --classifier C --out-dir D``.

A region is many Sentinel-2 tiles. Each tile (a GeoTIFF or VRT, or a Sentinel-2 product folder: ``*.SAFE`` or
an unzipped product with its per-band ``.jp2`` files) is mapped by :func:`core.classify.apply.apply_classifier`
into a hidden folder inside ``D/tiles/``, its rasters turned into Cloud Optimized GeoTIFFs, and the folder is
renamed to ``D/tiles/<tile>/`` only when complete: a tile is all there or not at all, so a run killed at any
point (kill -9 included) is resumed by running the same command again, which skips the tiles already there
and says so. ``D/classes.vrt``, ``probabilities.vrt`` and ``confidence.vrt`` stitch the tiles together (one
VRT per CRS when tiles lie in several UTM zones: ``classes_EPSG32632.vrt``, ...).

Under ``torchrun`` rank r of WORLD_SIZE maps tiles ``r::WORLD_SIZE`` (as ``core.embed`` shares files) on GPU
LOCAL_RANK; no rank waits for another, and each rewrites the VRTs from the tiles present when it finishes,
so the last one to finish writes the complete mosaic (a rerun, which skips every tile, rewrites it too). A
cancelled or interrupted run stitches the tiles it finished before it stops.
"""
from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import rasterio

from ..embed.engine import rank_info
from ..embed.spec import EmbedSpec
from ..errors import Cancelled, SoftConError
from ..geo.bands import canonical, S2_L1C
from ..io.atomic import clean_stale, stage_dir, write_text_atomic
from ..io.raster import escape
from ..io.writer import make_cog, make_folder
from ..progress import Progress
from .apply import apply_classifier
from .classifiers import load_classifier
from .compat import check_expected
from .outputs import NAMES

#: Raster files taken as tiles when a folder is given.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img")
#: Band-file suffixes inside a Sentinel-2 product.
BAND_SUFFIXES = (".jp2", ".tif", ".tiff")
#: The rasters of a tile that are stitched into mosaics, with the overview resampling of their COG.
MOSAIC_RASTERS = {"class_raster": "mode", "probability_raster": "average", "confidence_raster": "average"}
#: The QGIS style that goes beside each mosaic (QGIS loads ``name.qml`` with ``name.vrt``).
MOSAIC_STYLES = {"class_raster": "style_qml", "confidence_raster": "confidence_qml"}


@dataclass(frozen=True)
class Tile:
    """One tile: a name (its output folder) and its raster, or a product's band files."""

    name: str
    sources: tuple[str, ...]

    @property
    def raster(self) -> str | list[str]:
        return self.sources[0] if len(self.sources) == 1 else list(self.sources)


@dataclass
class TilesResult:
    """What a multi-tile run did: tile name -> output folder, the tiles skipped as already mapped, the mosaics."""

    tiles: dict[str, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    mosaics: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    colors: list[tuple[int, int, int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the tiles mapped (folder and seconds), those skipped, the mosaics, the classes and colours."""
        return {"tiles": {k: str(v) for k, v in self.tiles.items()}, "seconds": dict(self.seconds),
                "skipped": list(self.skipped), "mosaics": {k: str(v) for k, v in self.mosaics.items()},
                "class_names": list(self.class_names), "colors": [list(c) for c in self.colors]}


def _resolution_m(path: Path, band: str) -> int:
    """A band file's resolution from an L2A name (``..._B02_20m.jp2``), else the band's native one."""
    stem = path.stem.lower()
    for res in (10, 20, 60):
        if stem.endswith(f"_{res}m"):
            return res
    return {"B2": 10, "B3": 10, "B4": 10, "B8": 10, "B5": 20, "B6": 20, "B7": 20, "B8A": 20, "B11": 20,
            "B12": 20}.get(band, 60)


def product_band_files(folder: Path) -> list[list[Path]]:
    """The band files of a Sentinel-2 product folder, one list per granule (tile); [] when it is not one.

    A SAFE product's bands are under ``GRANULE/<granule>/IMG_DATA`` (Level-2A: in ``R10m``/``R20m``/``R60m``,
    of which the finest copy of each band is taken); anything else there (``QI_DATA`` masks, ``TCI``, ``SCL``)
    is ignored. A plain folder of band files (``*_B02.jp2``, ...) counts as one product when it holds at least
    the four 10 m bands.
    """
    granules = sorted(p for p in (folder / "GRANULE").glob("*") if p.is_dir()) if (folder / "GRANULE").is_dir() else []
    places = [(g / "IMG_DATA", True) for g in granules] or [(folder, False)]
    out = []
    for place, recursive in places:
        best: dict[str, tuple[int, Path]] = {}
        for p in sorted(place.rglob("*") if recursive else place.iterdir()):
            band = canonical(p.stem) if p.suffix.lower() in BAND_SUFFIXES and p.is_file() else None
            if band in S2_L1C:
                res = _resolution_m(p, band)
                if band not in best or res < best[band][0]:
                    best[band] = (res, p)
        if {"B2", "B3", "B4", "B8"} <= set(best):
            out.append([best[b][1] for b in S2_L1C if b in best])
    return out


def _is_single_band(path: Path) -> bool:
    try:
        with rasterio.open(path) as ds:
            return ds.count == 1
    except rasterio.errors.RasterioIOError as e:
        raise SoftConError(f"Cannot open raster {path}: {str(e).splitlines()[0]}.") from None


def is_many_tiles(inputs: Sequence[str | os.PathLike]) -> bool:
    """Whether ``inputs`` are tiles to map one by one (a folder, or several rasters that are not all single-band
    files of one scene, which are stacked instead)."""
    paths = [Path(p) for p in inputs]
    if any(p.is_dir() for p in paths):
        return True
    return len(paths) > 1 and all(p.is_file() for p in paths) and not all(_is_single_band(p) for p in paths)


def find_tiles(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None) -> list[Tile]:
    """The tiles among ``inputs``: rasters, Sentinel-2 product folders, and folders holding either.

    ``out_dir``: the run's output folder, whose mosaics and ``tiles/`` are outputs, not tiles, when a folder of
    inputs is also the output folder (its second run, which resumes the first, would take them for tiles).

    Raises:
        SoftConError: an input that does not exist, or a folder with no raster or product in it.
    """
    tiles: list[Tile] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise SoftConError(f"{item} not found.")
        if item.is_file():
            tiles.append(Tile(item.stem, (str(item),)))
            continue
        found = _folder_tiles(item, Path(out_dir).resolve() if out_dir is not None else None)
        if not found:
            raise SoftConError(f"{item} holds no raster (.tif, .vrt) and no Sentinel-2 product folder; "
                               f"give rasters, product folders, or a folder of them.")
        tiles += found
    return _unique(tiles)


def _is_output(path: Path, out_dir: Path | None) -> bool:
    """Whether ``path`` is an output of a multi-tile run into ``out_dir``: its ``tiles/`` or a mosaic."""
    if out_dir is None or path.parent.resolve() != out_dir:
        return False
    stems = [Path(NAMES[key]).stem for key in MOSAIC_RASTERS]
    return path.name == "tiles" or (path.suffix == ".vrt" and path.stem.split("_EPSG")[0] in stems)


def _folder_tiles(folder: Path, out_dir: Path | None = None) -> list[Tile]:
    """The tiles of one folder: itself when it is a product, else the products and rasters inside it (not the
    outputs of a run into ``out_dir``)."""
    found = []
    children = [] if product_band_files(folder) else [c for c in sorted(folder.iterdir()) if not _is_output(c, out_dir)]
    for child in [folder] if not children else children:
        if child.is_dir():
            granules = product_band_files(child)
            base = child.name.removesuffix(".SAFE")
            found += [Tile(base if len(granules) == 1 else f"{base}_{k + 1}", tuple(map(str, files)))
                      for k, files in enumerate(granules)]
        elif child.suffix.lower() in RASTER_SUFFIXES and not child.name.startswith("."):
            if _is_single_band(child):
                raise SoftConError(
                    f"{child} has one band: a folder of tiles holds multi-band rasters or Sentinel-2 product "
                    f"folders. Put the band files of one scene in a folder of their own.")
            found.append(Tile(child.stem, (str(child),)))
    return found


def _unique(tiles: list[Tile]) -> list[Tile]:
    """Tile names made unique (``name``, ``name_2``, ...), sources kept once."""
    seen: dict[str, int] = {}
    out, sources = [], set()
    for t in tiles:
        if t.sources in sources:
            continue
        sources.add(t.sources)
        n = seen[t.name] = seen.get(t.name, 0) + 1
        out.append(t if n == 1 else Tile(f"{t.name}_{n}", t.sources))
    return out


def apply_tiles(
    inputs: Sequence[str | os.PathLike],
    classifier_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    spec: EmbedSpec,
    *,
    expect: Mapping[str, str | None] | None = None,
    cache: bool = True,
    progress: Progress | None = None,
    progress_for: Callable[[str], Progress] | None = None,
) -> TilesResult:
    """Map every tile of ``inputs`` with one classifier into ``out_dir/tiles/<tile>/`` and stitch the mosaics.

    Args:
        inputs: rasters, Sentinel-2 product folders, or folders holding them (see :func:`find_tiles`).
        classifier_path, spec, expect, cache: as :func:`core.classify.apply.apply_classifier`.
        progress: logs and cancel; ``progress_for(tile)`` gives each tile its own bar (default: ``progress``).

    Returns:
        The tiles mapped by this process, those skipped as done, and the mosaic VRTs.

    Raises:
        SoftConError: bad inputs, or tiles that failed (named, with why; the tiles mapped are kept, and
            rerunning the command maps only the rest).
    """
    progress = progress or Progress()
    saved = load_classifier(classifier_path)  # a damaged file, or flags it does not fit: stop before any tile
    check_expected(saved, expect)
    tiles = find_tiles(inputs, out_dir)
    rank, world, _ = rank_info()
    out_dir = make_folder(out_dir)
    root = make_folder(out_dir / "tiles")
    clean_stale(root)  # the hidden folders of tiles a killed run left unfinished
    mine = tiles[rank::world]
    progress.log(f"{len(tiles)} tile(s)" + (f", {len(mine)} for rank {rank} of {world}" if world > 1 else "")
                 + f" -> {root}")
    result, failed = TilesResult(class_names=list(saved.class_names), colors=list(saved.colors)), []
    try:
        for k, tile in enumerate(mine):
            progress.check()
            progress.update(k, len(mine), tile.name)
            final = root / tile.name
            if final.is_dir():
                progress.log(f"[{k + 1}/{len(mine)}] {tile.name}: already mapped ({final}), skipped")
                result.skipped.append(tile.name)
                continue
            progress.log(f"[{k + 1}/{len(mine)}] {tile.name}: mapping")
            t = time.perf_counter()
            try:
                _map_tile(tile, classifier_path, root, final, spec, expect, cache,
                          progress_for(tile.name) if progress_for else progress)
            except Cancelled:
                raise  # not a failed tile: the user stopped the run
            except SoftConError as e:
                failed.append(f"{tile.name}: {e}")
                progress.log(f"[{k + 1}/{len(mine)}] {tile.name} failed: {e}")
                continue
            result.tiles[tile.name] = final
            result.seconds[tile.name] = round(time.perf_counter() - t, 1)
    except BaseException:  # Cancel, Ctrl-C: the tiles finished so far still open as one mosaic
        if result.tiles:
            try:
                write_mosaics(out_dir)
                progress.log(f"{len(result.tiles)} finished tile(s) kept in {root} with their mosaic; the tile "
                             "being mapped was discarded: run the same command again to map the rest.")
            except Exception as e:  # the interruption is what the user must hear about
                progress.log(f"Mosaic of the finished tiles not written: {e}")
        raise
    progress.update(len(mine), len(mine), "mosaics")
    if world == 1 and not any(root.iterdir()):  # every tile failed: no empty folder left behind
        root.rmdir()
    result.mosaics = write_mosaics(out_dir)
    for path in result.mosaics.values():
        progress.log(f"Mosaic: {path}")
    if failed:
        kept = ("the others are mapped; fix these and run the same command again to map only them"
                if len(failed) < len(mine) else "nothing was mapped")
        raise SoftConError(f"{len(failed)} of {len(mine)} tile(s) failed ({kept}):\n  " + "\n  ".join(failed))
    return result


def _map_tile(tile: Tile, classifier_path: Any, root: Path, final: Path, spec: EmbedSpec,
              expect: Mapping[str, str | None] | None, cache: bool, progress: Progress) -> None:
    """One tile into a hidden folder in ``root`` (removed on any error), its rasters as COGs, renamed to ``final``."""
    stage = stage_dir(root)
    try:
        apply_classifier(tile.raster, classifier_path, stage, spec, expect=expect, cache=cache, progress=progress)
        for key, resampling in MOSAIC_RASTERS.items():
            make_cog(stage / NAMES[key], overview_resampling=resampling)
        os.replace(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def write_mosaics(out_dir: str | os.PathLike) -> dict[str, Path]:
    """VRTs over the mapped tiles in ``out_dir/tiles/*/`` (``classes.vrt``, ...; one per CRS, named
    ``classes_EPSG32632.vrt`` when there are several), paths relative to the VRT. Tiles overlap in Sentinel-2's
    grid; where they do, the tile listed later wins, except where it holds no data."""
    out_dir = Path(out_dir)
    folders = sorted(p for p in (out_dir / "tiles").glob("*") if p.is_dir() and not p.name.startswith("."))
    written: dict[str, Path] = {}
    for key in MOSAIC_RASTERS:
        groups: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
        for f in folders:
            path = f / NAMES[key]
            if path.is_file():
                with rasterio.open(path) as ds:
                    groups[ds.crs.to_string() if ds.crs else ""].append((path, _meta(ds)))
        stem = Path(NAMES[key]).stem
        for crs, members in groups.items():
            name = stem if len(groups) == 1 else f"{stem}_{crs.replace(':', '')}"
            out = out_dir / f"{name}.vrt"
            write_text_atomic(out, _mosaic_vrt(members, out_dir))
            written[name] = out
            style = members[0][0].parent / NAMES.get(MOSAIC_STYLES.get(key, ""), "-")
            if style.is_file():
                write_text_atomic(out.with_suffix(".qml"), style.read_text(encoding="utf-8"))
    return written


def _meta(ds: Any) -> dict[str, Any]:
    return dict(crs=ds.crs, transform=ds.transform, width=ds.width, height=ds.height, count=ds.count,
                dtype=ds.dtypes[0], nodata=ds.nodata, descriptions=ds.descriptions, tags=ds.tags(),
                colormap=ds.colormap(1) if ds.count == 1 and ds.dtypes[0] == "uint8" else None)


_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "float32": "Float32", "int16": "Int16"}


def _mosaic_vrt(members: list[tuple[Path, dict[str, Any]]], out_dir: Path) -> str:
    """VRT XML placing each tile through its geotransform on the union of their extents (first tile's pixel size)."""
    m0 = members[0][1]
    t0 = m0["transform"]
    rx, ry = t0.a, -t0.e
    lefts = [m["transform"].c for _, m in members]
    tops = [m["transform"].f for _, m in members]
    rights = [m["transform"].c + m["width"] * m["transform"].a for _, m in members]
    bottoms = [m["transform"].f + m["height"] * m["transform"].e for _, m in members]
    x0, y0 = min(lefts), max(tops)
    width, height = round((max(rights) - x0) / rx), round((y0 - min(bottoms)) / ry)
    nd = m0["nodata"]
    nd_text = "nan" if nd is not None and nd != nd else (repr(nd) if nd is not None else None)
    meta = "".join(f'<MDI key="{escape(k)}">{escape(v)}</MDI>' for k, v in m0["tags"].items()
                   if k in ("CLASS_NAMES", "CLASS_VALUES", "METHOD", "MODEL", "FEATURES"))
    bands = []
    for b in range(1, m0["count"] + 1):
        sources = []
        for path, m in members:
            t = m["transform"]
            dx, dy = (t.c - x0) / rx, (y0 - t.f) / ry
            rel = os.path.relpath(path, out_dir)
            sources.append(
                f'<ComplexSource><SourceFilename relativeToVRT="1">{escape(rel)}</SourceFilename>'
                f'<SourceBand>{b}</SourceBand><SrcRect xOff="0" yOff="0" xSize="{m["width"]}" ySize="{m["height"]}"/>'
                f'<DstRect xOff="{dx!r}" yOff="{dy!r}" xSize="{m["width"] * t.a / rx!r}" '
                f'ySize="{m["height"] * -t.e / ry!r}"/>' + (f"<NODATA>{nd_text}</NODATA>" if nd_text else "")
                + "</ComplexSource>")
        color = ""
        if b == 1 and m0["colormap"]:
            entries = "".join('<Entry c1="{}" c2="{}" c3="{}" c4="{}"/>'.format(*m0["colormap"].get(i, (0, 0, 0, 0)))
                              for i in range(max(m0["colormap"]) + 1))
            color = f"<ColorInterp>Palette</ColorInterp><ColorTable>{entries}</ColorTable>"
        desc = m0["descriptions"][b - 1] or ""
        bands.append(f'<VRTRasterBand dataType="{_GDAL_TYPES.get(m0["dtype"], "Float32")}" band="{b}">'
                     f"<Description>{escape(desc)}</Description>"
                     + (f"<NoDataValue>{nd_text}</NoDataValue>" if nd_text else "") + color
                     + "".join(sources) + "</VRTRasterBand>")
    srs = f"<SRS>{escape(m0['crs'].to_wkt())}</SRS>" if m0["crs"] else ""
    return (f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{srs}'
            f"<GeoTransform>{x0!r}, {rx!r}, 0, {y0!r}, 0, {-ry!r}</GeoTransform>"
            + (f"<Metadata>{meta}</Metadata>" if meta else "") + "".join(bands) + "</VRTDataset>\n")


def summary_text(result: TilesResult) -> str:
    """What the command line prints after a multi-tile run."""
    lines = [f"{len(result.tiles)} tile(s) mapped, {len(result.skipped)} already mapped and skipped"]
    lines += [f"  {name:30s} {path}  ({result.seconds[name]:.0f} s)" for name, path in result.tiles.items()]
    lines += [f"{name:19s} {path}" for name, path in result.mosaics.items()]
    return "\n".join(lines)
