"""Every output of a map run, written into a hidden stage folder in ``out_dir`` and moved into place together:
to ``out_dir`` under the standard names, or to the destinations a caller chose (the QGIS plugin)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import rasterio

from ..embed.tags import is_embedding_raster
from ..errors import SoftConError
from ..geo.crs import pixel_size_m
from ..io.atomic import atomic_path, clean_stale, stage_dir, write_text_atomic
from ..io.writer import make_folder
from ..progress import Progress
from .classifiers import save_classifier, SavedClassifier
from .embedding import Embedding
from .cleanup import sieve_class_raster
from .explore import pca_raster
from .pixelmap import FeatureSource, predict_map, quicklook_step
from .quicklook import panel_shape, read_rgb, write_quicklook
from .report import format_html, format_text
from .styles import class_style, class_values, CONFIDENCE, write_qml


#: Output file names inside ``out_dir``.
NAMES = dict(class_raster="classes.tif", style_qml="classes.qml", probability_raster="probabilities.tif",
             confidence_raster="confidence.tif", report_json="report.json", report_txt="report.txt",
             report_html="report.html", quicklook_png="quicklook.png", classifier="classifier.npz",
             confidence_qml="confidence.qml")


@dataclass
class ClassifyResult:
    """Paths of everything a run wrote (all inside ``out_dir``, except a classifier saved elsewhere; None for an
    output not asked for in ``destinations``), the report it computed, and the class names and colours (class
    value ``i + 1`` = ``class_names[i]``)."""

    class_raster: Path
    probability_raster: Path | None
    confidence_raster: Path | None
    report_json: Path | None
    report_txt: Path | None
    report_html: Path | None
    style_qml: Path | None
    quicklook_png: Path | None
    classifier: Path | None
    embedding: Path
    report: dict = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    colors: list[tuple[int, int, int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What a front end needs to load and style the outputs (JSON-ready): every output's path (None when
        not written), the classes with their pixel values and colours, the method and the accuracy."""
        cv = self.report.get("cross_validation") or {}
        val = self.report.get("validation") or {}
        out: dict[str, Any] = {key: str(p) if p is not None else None for key, p in
                               ((k, getattr(self, k)) for k in NAMES if hasattr(self, k))}
        out.update(class_names=list(self.class_names), class_values=class_values(self.class_names),
                   colors=[list(c) for c in self.colors],
                   method=self.report.get("method"), features=self.report.get("features"),
                   overall_accuracy=cv.get("overall_accuracy"), kappa=cv.get("kappa"),
                   validation_accuracy=val.get("overall_accuracy"), n_validated=val.get("n_validated"),
                   warnings=list(self.report.get("warnings", [])))
        return out


class Stage:
    """Outputs are written into a hidden folder inside ``out_dir`` and moved into place together.

    ``destinations`` (output key -> path), when given, are the only outputs kept, each moved to its path;
    the others are discarded with the stage folder.
    """

    def __init__(self, out_dir: Path, destinations: Mapping[str, str | os.PathLike] | None = None):
        self.out_dir = out_dir
        unknown = set(destinations or ()) - set(NAMES)
        if unknown:
            raise SoftConError(f"Unknown output(s) {', '.join(sorted(unknown))}; use: {', '.join(NAMES)}.")
        if destinations is not None and "class_raster" not in destinations:
            raise SoftConError("The outputs to keep must include the class raster (class_raster).")
        self.standard = destinations is None  # the standard names in out_dir: this run owns all of them
        self.dests = ({k: Path(v) for k, v in destinations.items()} if destinations is not None
                      else {k: out_dir / name for k, name in NAMES.items()})
        self.created = not out_dir.exists()
        if out_dir.exists() and not out_dir.is_dir():
            raise SoftConError(f"The output folder {out_dir} is a file; choose a folder.")
        make_folder(out_dir)
        if not os.access(out_dir, os.W_OK):
            raise SoftConError(f"The output folder {out_dir} is not writable; choose another one.")
        clean_stale(out_dir)
        self.dir = make_folder(stage_dir(out_dir))

    def path(self, key: str) -> Path:
        return self.dir / NAMES[key]

    def dest(self, key: str) -> Path | None:
        """Where output ``key`` ends up (None: it is not kept)."""
        return self.dests.get(key)

    def commit(self, keep: Path | None = None) -> tuple[dict[str, Path], list[Path]]:
        """Move the staged outputs into place; in the standard layout, also remove an earlier run's output this
        run did not write (a classifier.npz beside maps it did not make), unless it is ``keep`` (an input).

        Returns:
            (output key -> final path, stale files removed).
        """
        moved, stale = {}, []
        for key, dest in self.dests.items():
            src = self.path(key)
            if src.exists():
                make_folder(dest.parent)
                _move(src, dest)
                aux = Path(f"{src}.aux.xml")
                if aux.exists():
                    _move(aux, Path(f"{dest}.aux.xml"))
                moved[key] = dest
            elif self.standard and dest.is_file() and (keep is None or dest.resolve() != keep.resolve()):
                dest.unlink()
                stale.append(dest)
        shutil.rmtree(self.dir, ignore_errors=True)
        return moved, stale

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.created:
            try:
                self.out_dir.rmdir()  # only if empty
            except OSError:
                pass


def _move(src: Path, dest: Path) -> None:
    """``os.replace``, or, to another file system, a copy beside ``dest`` renamed over it (still atomic)."""
    try:
        os.replace(src, dest)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)


@dataclass(frozen=True)
class OutputOptions:
    """Which outputs a run keeps and how, beyond the maps themselves; chosen by the caller, read only when the
    outputs are written.

    Attributes:
        destinations: output key (see :data:`NAMES`) -> path: keep only these outputs, each at its path (see
            :class:`Stage`); None: every output under its standard name in ``out_dir``.
        save_to: where the classifier is saved: True: into ``out_dir`` with the other outputs (output
            ``classifier``); a path: there, after the maps; None: not saved.
        min_mapping_unit: > 1 sieves the class raster to patches of at least this many pixels (:mod:`.cleanup`).
        keep: an input file in ``out_dir`` under an output's name (the classifier ``apply`` reads) that must not
            be removed as stale.
    """

    destinations: Mapping[str, str | os.PathLike] | None = None
    save_to: Path | bool | None = None
    min_mapping_unit: int = 0
    keep: Path | None = None


def finish(
    source: FeatureSource, emb: Embedding, saved: SavedClassifier, out_dir: str | os.PathLike, report: dict[str, Any],
    raster: Any, bands: Any, progress: Progress, options: OutputOptions = OutputOptions(),
) -> ClassifyResult:
    """Write every output into a stage folder in ``out_dir`` and move them in together (to
    ``options.destinations`` when given, see :class:`Stage`); on error, nothing stays."""
    stage = Stage(Path(out_dir), options.destinations)
    try:
        return _write_outputs(source, emb, saved, stage, report, raster, bands, progress, options)
    except BaseException:
        stage.abort()
        raise


def _write_outputs(
    source: FeatureSource, emb: Embedding, saved: SavedClassifier, stage: Stage, report: dict[str, Any], raster: Any,
    bands: Any, progress: Progress, options: OutputOptions,
) -> ClassifyResult:
    """Predict, write styles, quicklook and reports into the stage, commit it, and describe the result."""
    t = time.perf_counter()
    save_to, min_mapping_unit = options.save_to, options.min_mapping_unit
    g = source.grid
    tags = {"METHOD": saved.classifier.method, "MODEL": str(saved.model),
            "FEATURES": saved.features.name if saved.features is not None else "emb"}
    area, small = predict_map(source, saved.classifier, saved.class_names, saved.colors, tags,
                              {k: stage.path(k) for k in ("class_raster", "probability_raster", "confidence_raster")},
                              progress)
    if min_mapping_unit > 1:
        counts, small, changed = sieve_class_raster(stage.path("class_raster"), min_mapping_unit,
                                                    len(saved.class_names), quicklook_step(g.height, g.width))
        area = {n: float(counts[i + 1] / max(counts[1:].sum(), 1)) for i, n in enumerate(saved.class_names)}
        px_m = report.get("grid_pixel_size_m") or 0
        report["min_mapping_unit"] = {"pixels": int(min_mapping_unit), "area_m2": round(min_mapping_unit * px_m ** 2, 1),
                                      "pixels_changed": changed, "share_changed": changed / max(int(counts[1:].sum()), 1)}
    report["area_fraction"] = area
    report["timings_s"]["predict"] = round(time.perf_counter() - t, 3)
    write_qml(stage.path("style_qml"), class_style(saved.class_names, saved.colors))
    write_qml(stage.path("confidence_qml"), CONFIDENCE)
    rgb = None
    left = "RGB (B4, B3, B2)"
    if not is_embedding_raster(raster):
        try:
            rgb = read_rgb(raster, g.bounds, panel_shape(g.height, g.width), bands)
        except SoftConError:
            rgb = None
    if rgb is None:  # an embedding raster (or no RGB bands): show the embeddings' PCA instead
        left = "embeddings, PCA false colour"
        pca = pca_raster(emb.path, stage.dir / "pca.tif")
        with rasterio.open(pca) as p:
            rgb = np.moveaxis(p.read(out_shape=(3, *panel_shape(g.height, g.width))), 0, -1)
        pca.unlink()
    title = (f"{report['method']} on {report.get('features', 'emb')} ({report['embedding']['model']}, "
             f"{report['weights']}), {report['grid_pixel_size_m']:g} m" + accuracy_title(report))
    write_quicklook(stage.path("quicklook_png"), small, saved.class_names, saved.colors, rgb, title, area, left)
    if save_to is True:  # into out_dir, with the other outputs
        report["classifier"] = str(stage.dest("classifier") or stage.out_dir / NAMES["classifier"])
        save_classifier(saved, stage.path("classifier"))
    elif save_to:
        report["classifier"] = str(save_to)
    write_text_atomic(stage.path("report_json"), json.dumps(report, indent=1))
    write_text_atomic(stage.path("report_txt"), format_text(report))
    quicklook = stage.dest("quicklook_png") or Path(NAMES["quicklook_png"])  # the report names it
    write_text_atomic(stage.path("report_html"), format_html(report, quicklook.name))
    moved, stale = stage.commit(options.keep)
    for f in stale:
        progress.log(f"Removed {f.name} of an earlier run from {f.parent}: it does not belong to these maps.")
    classifier_path = moved.get("classifier")
    if save_to and save_to is not True:
        classifier_path = save_classifier(saved, save_to)
    return ClassifyResult(
        class_raster=moved["class_raster"], probability_raster=moved.get("probability_raster"),
        confidence_raster=moved.get("confidence_raster"), report_json=moved.get("report_json"),
        report_txt=moved.get("report_txt"), report_html=moved.get("report_html"), style_qml=moved.get("style_qml"),
        quicklook_png=moved.get("quicklook_png"), classifier=classifier_path, embedding=emb.path, report=report,
        class_names=list(saved.class_names), colors=[tuple(c) for c in saved.colors],
    )


def accuracy_title(report: dict[str, Any]) -> str:
    """The accuracy the quicklook's title shows: on the validation samples when there are some, else blocked CV."""
    v = report.get("validation")
    if v:
        return f" - validation accuracy {100 * v['overall_accuracy']:.1f}% ({v['n_validated']} samples)"
    acc = (report.get("cross_validation") or {}).get("overall_accuracy")
    return f" - blocked CV accuracy {100 * acc:.1f}% (training points)" if acc is not None else ""


def describe_features(report: dict[str, Any], spec: Any, source: FeatureSource) -> None:
    """What the map was computed from and on which grid, for the report and the quicklook."""
    g = source.grid
    px = pixel_size_m(g)
    report["features"] = spec.name
    report["feature_spec"] = spec.meta()
    report["grid"] = {"kind": spec.grid, "width": g.width, "height": g.height, "pixel_size_m": round(px, 3)}
    report["grid_pixel_size_m"] = round(px, 3)


def closing(obj: Any) -> Any:
    """``obj`` as a context manager that closes it (a dataset), or a no-op for None."""
    return contextlib.nullcontext() if obj is None else obj
