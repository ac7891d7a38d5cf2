"""Settings as one declaration: EmbedSpec / FitSpec fields carry their flags, defaults and checks; the command line,
argv and the plugin derive from them; the classifier registry is complete (a toy method shows up everywhere)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

import toy_classifier
from core.classify import cli as classify_cli
from core.classify.classifiers import load_classifier, make_classifier, save_classifier, SavedClassifier
from core.classify.methods import auto_methods, METHODS
from core.classify.selection import candidates
from core.classify.spec import FitSpec
from core.embed import cli as embed_cli
from core.embed.spec import DEFAULT_MODE, EmbedSpec
from core.errors import SoftConError
from core.settings import add_arguments, from_args, to_argv

STDLIB_ONLY = """
import sys
for name in ("torch", "numpy", "sklearn", "rasterio", "scipy", "timm", "shapely"):
    sys.modules[name] = None  # any import of them now fails
from core.settings import add_arguments, from_args, to_argv
from core.embed.spec import EmbedSpec, MODES, DEFAULT_MODE
from core.classify.spec import FitSpec, FEATURE_SETS, GRIDS
from core.classify.methods import METHODS, auto_methods, method_choices, parameters
from core.classify.styles import CONFIDENCE, class_style, cluster_style
from core.models.registry import DEFAULT_MODEL, REGISTRY, get_record
from core.models.weights import cached_path
import argparse, json
p = argparse.ArgumentParser()
add_arguments(p, EmbedSpec)
add_arguments(p, FitSpec)
spec, fit = EmbedSpec(bands="s2_l2a", stride=32), FitSpec(method="knn", params={"k": 5})
a = p.parse_args(to_argv(spec) + to_argv(fit))
assert (from_args(EmbedSpec, a), from_args(FitSpec, a)) == (spec, fit)
models = {n: [r.title, r.parameters, cached_path(r) is not None] for n, r in REGISTRY.items()}
print(json.dumps({"models": models, "default": DEFAULT_MODEL, "mode": DEFAULT_MODE, "methods": list(method_choices()),
                  "auto": list(auto_methods()), "params": sorted(parameters()), "ramp": len(CONFIDENCE.stops)}))
"""


def test_specs_registries_and_styles_import_without_torch_numpy_or_sklearn(repo_root):
    """The QGIS process reads defaults, choices, models and styles from these modules without the heavy packages."""
    out = subprocess.run([sys.executable, "-c", STDLIB_ONLY], capture_output=True, text=True, cwd=repo_root)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["default"] == "galileo_nano_s2" and got["models"]["galileo_nano_s2"] == ["Galileo nano", 876128, True]
    assert got["models"]["B13_vits14_softcon"][:2] == ["SoftCon ViT-S/14", 22381440]
    assert got["mode"] == "dense" and got["methods"][0] == "auto" and "knn" in got["auto"]
    assert got["params"] == ["k", "pixel_weight", "temperature"] and got["ramp"] >= 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_arguments(p, EmbedSpec)
    add_arguments(p, FitSpec)
    return p


@pytest.mark.parametrize("spec, fit", [
    (EmbedSpec(), FitSpec()),
    (EmbedSpec(model="softcon_tiny_s2", pretrained=False, bands=("B2", "B3", "B4"), mode="pooled", stride=16,
               precision="fp32", device="cuda:1", batch_size=7),
     FitSpec(method="knn", params={"k": 7, "temperature": 0.1})),
    (EmbedSpec(bbox=(-75.5, 37.1, -75.2, 37.4), bbox_crs="EPSG:4326", polygon="POLYGON ((0 0, 1 0, 1 1, 0 0))",
               nodata=-9999, offset=-1000.0, min_valid=0.25, resample=True, dtype="float32", cog=True, bands="eurosat"),
     FitSpec(features="pixel,emb", grid="embedding", cv_folds=0, block_size_m=333.5, max_pixels_per_polygon=3,
             seed=7, compare_methods=False, method="rf")),
])
def test_a_spec_round_trips_through_its_argv(spec, fit):
    """A dialog's spec becomes argv for a child ``python -m core...`` and comes back equal."""
    args = _parser().parse_args(to_argv(spec) + to_argv(fit))
    assert from_args(EmbedSpec, args) == spec and from_args(FitSpec, args) == fit


def test_defaults_are_declared_once_in_the_spec():
    args = _parser().parse_args([])
    assert all(v is None or isinstance(v, bool) for v in vars(args).values())  # argparse holds no default of its own
    assert from_args(EmbedSpec, args) == EmbedSpec() and from_args(FitSpec, args) == FitSpec()
    assert EmbedSpec().mode == DEFAULT_MODE == "dense"  # also what `python -m core.embed` writes (was pooled)
    spec = from_args(EmbedSpec, embed_cli.get_args_parser().parse_args(["x.tif", "--out", "y.tif"]))
    assert spec == EmbedSpec() and to_argv(spec) == []
    assert FitSpec(params={"k": 20}) == FitSpec() and FitSpec(features="pixel+emb").features == "emb+pixel"


def test_cache_key_of_the_defaults_is_the_one_written_before_the_spec_grew():
    """Settings added to the spec enter the key only when set, so existing cached embeddings stay valid."""
    key = EmbedSpec().cache_key("sha256:abc", "cpu", "None")
    assert key == dict(model="galileo_nano_s2", pretrained=True, weights="sha256:abc", mode="dense", stride=None,
                       bands=None, bbox=None, bbox_crs=None, precision="None", device="cpu")
    assert EmbedSpec(offset=1000).cache_key("w", "cpu", "None")["offset"] == 1000.0
    assert EmbedSpec(batch_size=3, cog=True).cache_key("w", "cpu", "None") == EmbedSpec().cache_key("w", "cpu", "None")


@pytest.mark.parametrize("argv, words", [
    (["--batch-size", "-1"], "--batch-size must be at least 1, not -1"),
    (["--batch-size", "two"], "--batch-size takes a whole number, not 'two'"),
    (["--device", "tpu"], "--device must be one of auto, cpu, cuda, mps or cuda:N, not 'tpu'"),
    (["--mode", "sparse"], "Unknown --mode 'sparse'; use one of: pooled, dense"),
    (["--min-valid", "1.5"], "--min-valid must be in (0, 1], not 1.5"),
    (["--stride", "0"], "--stride must be at least 1 px, not 0"),
    (["--bbox", "1,2,3"], "--bbox takes minx,miny,maxx,maxy with min < max"),
    (["--precision", "fp8"], "Unknown --precision 'fp8'; use one of: auto, bf16, fp16, fp32"),
    (["--model", "vit_huge"], "--model must be a registered model"),
    (["--block-size", "-100"], "--block-size must be a positive length in metres, not -100.0"),
    (["--cv-folds", "1"], "--cv-folds 1 cannot validate anything"),
    (["--max-pixels-per-polygon", "0"], "--max-pixels-per-polygon must be at least 1, not 0"),
    (["--method", "svm"], "Unknown --method 'svm'; use one of: auto, linear"),
    (["--k", "0"], "--k must be at least 1, not 0"),
    (["--temperature", "0"], "--temperature must be greater than 0"),
    (["--temperature", "nan"], "--temperature takes a finite number, not nan"),  # NaN passed the "> 0" check
    (["--features", "texture"], "Unknown feature group(s) ['texture'] in --features"),
])
def test_a_bad_flag_is_one_clear_error_before_any_work(argv, words, tmp_path, capsys):
    """The specs are the one check of every flag: the message names the flag and what it takes."""
    common = ["missing.tif", "--samples", "missing.gpkg", "--label-field", "class", "--out-dir", str(tmp_path / "o")]
    assert classify_cli.main(common + argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()
    if argv[0] in ("--batch-size", "--device", "--mode", "--stride", "--precision"):  # core.embed: the same words
        assert embed_cli.main(["missing.tif", "--out", str(tmp_path / "e.tif")] + argv) == 2
        assert words in capsys.readouterr().err


def test_output_destinations_travel_as_argv(tmp_path):
    assert classify_cli.destinations(["class_raster=a.tif", "report_html=r/x.html"]) == {
        "class_raster": "a.tif", "report_html": "r/x.html"}
    with pytest.raises(SoftConError, match="--output takes KEY=PATH with KEY one of class_raster"):
        classify_cli.destinations(["classes=a.tif"])


def test_a_toy_classifier_registered_in_one_call_is_everywhere_in_core(tmp_path):
    """Auto candidates, --method choices, its parameter's flag, the spec, fitting, saving and loading."""
    assert "centroid" not in METHODS
    with toy_classifier.registered():
        assert "centroid" in auto_methods() and ("pixel", "centroid") in candidates("auto", ["emb", "pixel"])
        assert ("pixel", "knn") not in candidates("auto", ["emb", "pixel"])  # cosine methods: embeddings alone
        parser = classify_cli.get_args_parser()
        help_text = " ".join(parser.format_help().split())
        assert "one of: auto, linear, hgb, rf, knn, prototype, fusion, centroid" in help_text
        assert "--spread" in help_text
        args = parser.parse_args(["r.tif", "--samples", "s.gpkg", "--label-field", "c", "--out-dir", "o",
                                  "--method", "centroid", "--spread", "2.5"])
        fit = from_args(FitSpec, args)
        assert fit.method == "centroid" and fit.method_params("centroid") == {"spread": 2.5}
        assert to_argv(fit) == ["--method=centroid", "--spread=2.5"]
        rng = np.random.default_rng(0)
        x = np.concatenate([rng.normal(0, 1, (20, 4)), rng.normal(4, 1, (20, 4))]).astype(np.float32)
        y = np.repeat([0, 1], 20)
        clf = make_classifier("centroid", 2, **fit.method_params("centroid")).fit(x, y)
        assert (clf.predict(x) == y).mean() > 0.95
        path = save_classifier(SavedClassifier(clf, ["a", "b"], [(0, 0, 0), (1, 1, 1)]), tmp_path / "c.npz")
        again = load_classifier(path).classifier
        assert again.method == "centroid" and again.params == {"spread": 2.5}
        assert np.array_equal(again.predict_proba(x), clf.predict_proba(x))
    assert "centroid" not in METHODS
    with pytest.raises(SoftConError, match="Unknown --method 'centroid'"):
        FitSpec(method="centroid")
