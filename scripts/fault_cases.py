"""The cases of the fault matrix (``scripts/fault_matrix.py``): argv, what should happen, and how to check it.

``expect``: ``ok`` (must work, and pass ``check``), ``error`` (must be refused with one clear line), ``any``
(either, but never a traceback or a wrong result) or ``interrupt`` (exit 130, nothing left behind).
Placeholders in argv and env: ``{F}`` fixtures, ``{REF}`` reference outputs, ``{OUT}`` this case's folder.
The checks and preparations are in ``scripts/fault_checks.py``.
"""
from __future__ import annotations

import json
import signal

import numpy as np

from fault_checks import (accuracy, agrees, all_of, cache_entry, Case, copy_ref, Ctx, earlier_kept, edited,
                          either, embedding_tiles, flip, half_done_in_inputs, labelled, mount, no_stale_classifier,
                          no_temp_left, nothing_left, outputs_ok, pixel_used, protocol_result, sample_of,
                          sigint_after, tiles_complete, tiles_whole, truncated_classifier, umount, rename_classes,
                          reverse_bands, reverse_feature_bands)


PTS = ["--label-field", "class"]
#: Options of the cases whose subject is not the method or the cross-validation: a map in seconds, not minutes.
FAST = ["--method", "linear", "--cv-folds", "0"]


def classify(raster: str, samples: str = "pts.geojson", *extra: str) -> list[str]:
    """``classify`` with :data:`FAST` options (agreement is then checked against the ``fast`` reference)."""
    return full(raster, samples, *FAST, *extra)


def full(raster: str, samples: str = "pts.geojson", *extra: str) -> list[str]:
    """``classify`` with the default options (every method on every feature set, blocked CV)."""
    r = raster if raster.startswith("{") else "{F}/" + raster
    return ["core.classify", r, "--samples", "{F}/" + samples, *PTS, "--out-dir", "{OUT}/o", *extra]


def apply(raster: str, clf: str = "{REF}/main/classifier.npz", *extra: str) -> list[str]:
    r = raster if raster.startswith("{") else "{F}/" + raster
    return ["core.classify", "apply", r, "--classifier", clf, "--out-dir", "{OUT}/o", *extra]


def reference_runs(ctx: Ctx) -> dict[str, list[str]]:
    """The outputs the checks compare with (name under ``{REF}`` -> argv), made in this order by the code under test."""
    ref = str(ctx.ref)
    return {
        "main": ["core.classify", f"{ctx.fix}/crop.tif", "--samples", f"{ctx.fix}/pts.geojson", *PTS, "--out-dir",
                 f"{ref}/main", "--save-classifier"],
        "fast": ["core.classify", f"{ctx.fix}/crop.tif", "--samples", f"{ctx.fix}/pts.geojson", *PTS, "--out-dir",
                 f"{ref}/fast", *FAST],
        "emb": ["core.embed", f"{ctx.fix}/crop.tif", "--mode", "dense", "--out", f"{ref}/emb.tif"],
        "tiny": ["core.classify", f"{ctx.fix}/crop.tif", "--samples", f"{ctx.fix}/pts.geojson", *PTS, "--out-dir",
                 f"{ref}/tiny", "--model", "softcon_tiny_s2", "--method", "linear", "--features", "emb",
                 "--save-classifier"],
        "sample": ["core.assess", "sample", f"{ref}/main/classes.tif", "--size", "120", "--out", f"{ref}/sample.gpkg"],
        "tiles": ["core.classify", "apply", f"{ctx.fix}/tiles_good", "--classifier", f"{ref}/main/classifier.npz",
                  "--out-dir", f"{ref}/tiles"],
    }


def other_features(ctx: Ctx) -> str:
    """A ``--features`` value the reference classifier (``auto``'s choice on the crop) was not trained on."""
    with np.load(ctx.ref / "main" / "classifier.npz", allow_pickle=False) as z:
        groups = json.loads(str(z["meta_json"]))["features"]["groups"]
    return "pixel" if "emb" in groups else "emb"


def sample(class_map: str, *extra: str) -> list[str]:
    return ["core.assess", "sample", class_map, "--out-dir", "{OUT}/o", *extra]


def estimate(class_map: str, sample_file: str = "{OUT}/l.gpkg", *extra: str) -> list[str]:
    return ["core.assess", "estimate", class_map, sample_file, "--out-dir", "{OUT}/o", *extra]


PRETRAIN = ["train.pretrain", "--img_size", "32", "--batch_size", "3", "--epochs", "1", "--proj_hidden", "32",
            "--pred_hidden", "32", "--proj_dim", "16", "--precision", "fp32", "--log_every", "1", "--progress",
            "false", "--output_dir", "{OUT}/run"]
PROBE = ["train.linear_probe", "--folds", "2", "--threads", "1"]
RO_HOME = {"HOME": "{OUT}/mnt", "SOFTCON_CACHE": "<unset>", "XDG_CACHE_HOME": "<unset>"}


def cases(ctx: Ctx) -> list[Case]:
    """Every case, grouped: raster, samples, apply, tiles, assess, protocol, flags, env, training."""
    C, A, D = classify, apply, full
    R, S, P, FL, E, T = "raster", "samples", "apply", "flags", "env", "training"
    TL, AS, PR = "tiles", "assess", "protocol"
    M = "{REF}/main/classes.tif"  # the class map that core.assess samples and assesses
    JSONL = {"SOFTCON_PROGRESS": "jsonl"}  # the QGIS plugin's worker protocol
    ok_map = all_of(outputs_ok, agrees())
    ok_apply = all_of(outputs_ok, agrees(ref="main"))
    out: list[Case] = [
        # ---------------------------------------------------------------- rasters
        Case("clean crop", R, D("crop.tif"), "ok", all_of(outputs_ok, agrees(0.98, "main"))),
        Case("clean crop, fast", R, C("crop.tif"), "ok", all_of(outputs_ok, agrees(0.98))),
        Case("truncated GeoTIFF", R, C("truncated.tif"), "error", nothing_left),
        Case("text file as raster", R, C("text.tif"), "error", nothing_left),
        Case("missing raster", R, C("nope.tif"), "error", nothing_left),
        Case("no CRS", R, C("nocrs.tif"), "error", nothing_left),
        Case("raster in degrees", R, C("deg.tif"), "any", outputs_ok),
        Case("raster in EPSG:3857", R, C("m3857.tif"), "any", outputs_ok),
        Case("one band", R, C("oneband.tif"), "error", nothing_left),
        Case("RGB 8-bit", R, C("rgb8.tif"), "error", nothing_left),
        Case("13 bands 8-bit", R, C("u8_13.tif"), "error", nothing_left),
        Case("int16 with negatives", R, C("int16neg.tif"), "error", nothing_left),
        Case("int16 with -9999 nodata", R, C("int16.tif"), "ok", ok_map),
        Case("float64", R, C("f64.tif"), "ok", ok_map),
        Case("NaN only", R, C("nan.tif"), "error", nothing_left),
        Case("all nodata", R, C("zeros.tif"), "error", nothing_left),
        Case("0-1 float reflectance", R, C("refl01.tif"), "any", ok_map),
        Case("+1000 offset, no metadata", R, C("offset.tif"), "any", ok_map),
        Case("+1000 offset, band metadata", R, C("offset_meta.tif"), "ok", ok_map),
        Case("+1000 offset, baseline tag", R, C("offset_baseline.tif"), "ok", ok_map),
        Case("+1000 offset, --offset 1000", R, C("offset.tif", "pts.geojson", "--offset", "1000"), "ok", ok_map),
        Case("+1000 offset, SAFE product", R, ["core.classify", *[str(p) for p in sorted(
            (ctx.fix).glob("*.SAFE/GRANULE/*/IMG_DATA/*.jp2"))], "--samples", "{F}/pts.geojson", *PTS,
            "--out-dir", "{OUT}/o"], "ok", ok_apply, timeout=900),  # default options: the main reference
        Case("offset 1000 on data without", R, C("crop.tif", "pts.geojson", "--offset", "1000"), "any", ok_map),
        Case("12 unnamed bands", R, C("unnamed12.tif"), "error", nothing_left),
        Case("12 unnamed bands, s2_l2a", R, C("unnamed12.tif", "pts.geojson", "--bands", "s2_l2a"), "ok",
             all_of(ok_map, pixel_used)),
        Case("13 unnamed bands", R, D("unnamed13.tif"), "ok", all_of(ok_apply, pixel_used), timeout=900),
        Case("13 unnamed, emb+pixel", R, C("unnamed13.tif", "pts.geojson", "--features", "emb+pixel"), "ok",
             all_of(ok_map, pixel_used), timeout=200),
        Case("13 single-band files", R, ["core.classify", *[str(p) for p in sorted((ctx.fix / "bands").glob(
            "*.tif"))], "--samples", "{F}/pts.geojson", *PTS, "--out-dir", "{OUT}/o"], "ok", ok_apply, timeout=900),
        Case("tiny 10 px", R, C("tiny.tif"), "error", nothing_left),
        Case("small 40 px", R, C("small40.tif"), "any", outputs_ok),
        Case("huge dimensions", R, C("huge.vrt"), "any", outputs_ok, timeout=240),
        Case("20 m pixels", R, C("px20.tif"), "any", outputs_ok),
        Case("60 m pixels", R, C("px60.tif"), "error", nothing_left),
        Case("embedding raster", R, C("{REF}/emb.tif"), "ok", outputs_ok),
        Case("embedding raster, other model", R, C("{REF}/emb.tif", "pts.geojson", "--model", "softcon_tiny_s2"),
             "error", nothing_left),
        # ---------------------------------------------------------------- samples
        Case("empty layer", S, C("crop.tif", "empty.geojson"), "error", nothing_left),
        Case("missing label field", S, C("crop.tif", "nofield.geojson"), "error", nothing_left),
        Case("all labels null", S, C("crop.tif", "nulls_all.geojson"), "error", nothing_left),
        Case("some labels null", S, C("crop.tif", "nulls_some.geojson"), "ok", outputs_ok),
        Case("lines", S, C("crop.tif", "lines.geojson"), "error", nothing_left),
        Case("multipoints", S, C("crop.tif", "multipoints.geojson"), "ok", outputs_ok),
        Case("invalid polygons (bow-ties)", S, C("crop.tif", "bowtie.geojson"), "any", outputs_ok),
        Case("polygons", S, C("crop.tif", "polygons.geojson"), "ok", outputs_ok),
        Case("polygon larger than raster", S, C("crop.tif", "bigpoly.geojson"), "any", outputs_ok),
        Case("no CRS, raster's coordinates", S, C("crop.tif", "nocrs_utm.shp"), "any", outputs_ok),
        Case("no CRS, degrees", S, C("crop.tif", "nocrs_deg.shp"), "error", nothing_left),
        Case("outside the raster", S, C("crop.tif", "outside.geojson"), "error", nothing_left),
        Case("one class", S, C("crop.tif", "oneclass.geojson"), "error", nothing_left),
        Case("2 points per class", S, D("crop.tif", "per_class_2.geojson"), "any", outputs_ok, timeout=900),
        Case("3 points per class", S, D("crop.tif", "per_class_3.geojson"), "any", outputs_ok, timeout=900),
        Case("4 points per class", S, D("crop.tif", "per_class_4.geojson"), "any", outputs_ok, timeout=900),
        Case("2 per class, linear", S, D("crop.tif", "per_class_2.geojson", "--method", "linear"), "any",
             outputs_ok, timeout=900),
        Case("300 classes", S, D("crop.tif", "classes_300.geojson"), "any", outputs_ok, timeout=900),
        Case("200 classes", S, D("crop.tif", "classes_200.geojson"), "any", outputs_ok, timeout=900),
        Case("300 classes, no CV", S, D("crop.tif", "classes_300.geojson", "--cv-folds", "0"), "any", outputs_ok),
        Case("256 classes, no CV", S, D("crop.tif", "classes_256.geojson", "--cv-folds", "0"), "any", outputs_ok),
        Case("unicode class names", S, C("crop.tif", "unicode.geojson"), "ok", outputs_ok),
        Case("integer labels", S, C("crop.tif", "intcodes.geojson"), "ok", outputs_ok),
        Case("float labels", S, C("crop.tif", "floatcodes.geojson"), "ok", outputs_ok),
        Case("points with Z", S, C("crop.tif", "zcoords.geojson"), "ok", outputs_ok),
        Case("geometry collections", S, C("crop.tif", "collection.geojson"), "any", outputs_ok),
        Case("duplicate points", S, C("crop.tif", "duplicates.geojson"), "ok", outputs_ok),
        Case("samples in UTM", S, C("crop.tif", "utm.geojson"), "ok", ok_map),
        Case("samples in EPSG:3857", S, C("crop.tif", "p3857.geojson"), "ok", ok_map),
        Case("CSV samples", S, C("crop.tif", "points.csv"), "error", nothing_left),
        Case("missing samples file", S, C("crop.tif", "nope.gpkg"), "error", nothing_left),
        Case("corrupt GeoPackage", S, C("crop.tif", "corrupt.gpkg"), "error", nothing_left),
        Case("unknown layer", S, C("crop.tif", "pts.geojson", "--layer", "nope"), "error", nothing_left),
        # ---------------------------------------------------------------- apply
        Case("apply to the crop", P, A("crop.tif"), "ok", all_of(outputs_ok, agrees(0.99, "main"))),
        # a flip in a zip header field that nothing reads is harmless: then the map must be the reference's
        *[Case(f"byte flip at {int(100 * f)} %", P, A("crop.tif", "{OUT}/c.npz"), "any",
               either(nothing_left, agrees(0.99, "main")), before=flip(f)) for f in (0.02, 0.25, 0.5, 0.75, 0.98)],
        *[Case(f"byte flip in {m}", P, A("crop.tif", "{OUT}/c.npz"), "error", nothing_left, before=flip(m))
          for m in ("meta_json.npy", "sha256.npy")],
        Case("truncated classifier", P, A("crop.tif", "{OUT}/c.npz"), "error", nothing_left,
             before=truncated_classifier),
        Case("edited band list", P, A("crop.tif", "{OUT}/c.npz"), "error", nothing_left,
             before=edited(reverse_bands)),
        Case("edited feature bands", P, A("crop.tif", "{OUT}/c.npz"), "error", nothing_left,
             before=edited(reverse_feature_bands)),
        Case("edited class names", P, A("crop.tif", "{OUT}/c.npz"), "error", nothing_left,
             before=edited(rename_classes)),
        Case("other model's classifier on embeddings", P, A("{REF}/emb.tif", "{REF}/tiny/classifier.npz"), "error",
             nothing_left),
        Case("other model's classifier, --model", P, A("crop.tif", "{REF}/tiny/classifier.npz", "--model",
                                                       "galileo_nano_s2"), "error", nothing_left),
        Case("missing classifier", P, A("crop.tif", "{OUT}/none.npz"), "error", nothing_left),
        Case("text as classifier", P, A("crop.tif", "{F}/points.csv"), "error", nothing_left),
        Case("pickled classifier", P, A("crop.tif", "{OUT}/c.npz"), "error", nothing_left,
             before=lambda c, o: np.savez(o / "c.npz", meta_json=np.array([{"a": 1}], dtype=object))),
        Case("empty npz", P, A("crop.tif", "{OUT}/c.npz"), "error", nothing_left,
             before=lambda c, o: np.savez(o / "c.npz")),
        Case("apply to missing raster", P, A("nope.tif"), "error", nothing_left),
        Case("apply to RGB 8-bit", P, A("rgb8.tif"), "error", nothing_left),
        Case("apply to 0-1 reflectance", P, A("refl01.tif"), "any", ok_apply),
        Case("apply to 13 unnamed bands", P, A("unnamed13.tif"), "ok", ok_apply),
        Case("apply to offset, metadata", P, A("offset_meta.tif"), "ok", ok_apply),
        Case("apply to offset, no metadata", P, A("offset.tif"), "any", ok_apply),
        Case("apply to offset, --offset", P, A("offset.tif", "{REF}/main/classifier.npz", "--offset", "1000"),
             "ok", ok_apply),
        Case("apply --features other than trained", P,
             A("crop.tif", "{REF}/main/classifier.npz", "--features", other_features(ctx)), "error", nothing_left),
        Case("apply --grid embedding", P, A("crop.tif", "{REF}/main/classifier.npz", "--grid", "embedding"),
             "error", nothing_left),
        Case("apply to its embedding raster", P, A("{REF}/emb.tif"), "ok", ok_apply),
        Case("apply into the classifier's folder", P, A("crop.tif", "{OUT}/o/classifier.npz"), "ok",
             all_of(outputs_ok, lambda c, o, rc, e: None if (o / "o" / "classifier.npz").read_bytes() ==
                    (c.ref / "main" / "classifier.npz").read_bytes() else "data loss: the classifier changed"),
             before=copy_ref),
    ]
    out += [
        # ---------------------------------------------------------------- many tiles (apply on a folder)
        Case("two tiles", TL, A("tiles_good"), "ok",
             all_of(tiles_whole(["east", "west"]), agrees(0.95, "main", "classes.vrt"))),
        Case("one truncated tile of two", TL, A("tiles_onebad"), "error", tiles_whole(["west"])),
        Case("empty folder of tiles", TL, A("tiles_empty"), "error", nothing_left),
        Case("tiles, other model's classifier, --model", TL, A("tiles_good", "{REF}/tiny/classifier.npz", "--model",
                                                               "galileo_nano_s2"), "error", nothing_left),
        Case("tiles of another model's embeddings", TL, A("{OUT}/embs", "{REF}/tiny/classifier.npz"), "error",
             nothing_left, before=embedding_tiles),
        Case("tiles, damaged classifier", TL, A("tiles_good", "{OUT}/c.npz"), "error", nothing_left,
             before=flip("meta_json.npy")),
        Case("tiles --output", TL, A("tiles_good", "{REF}/main/classifier.npz", "--output",
                                     "class_raster={OUT}/o/x.tif"), "error", nothing_left),
        Case("resume, out-dir = the tiles' folder", TL, A("{OUT}/o"), "ok",
             all_of(tiles_whole(["east", "west"]), agrees(0.95, "main", "classes.vrt")), before=half_done_in_inputs),
        Case("tiles, SIGINT mid-run", TL, A("tiles_good", "{REF}/main/classifier.npz", "--no-cache"), "interrupt",
             tiles_complete, kill=sigint_after(1)),
        # ---------------------------------------------------------------- accuracy assessment
        Case("sample the class map", AS, sample(M, "--size", "120"), "ok", sample_of(120)),
        Case("sample, size from eq. 13", AS, sample(M), "ok", sample_of(None)),
        Case("sample the mosaic of tiles", AS, sample("{REF}/tiles/classes.vrt", "--size", "120"), "ok",
             sample_of(120, "tiles/classes.vrt")),
        *[Case(f"sample {what}", AS, sample(path), "error", nothing_left)
          for what, path in (("a reflectance raster", "{F}/crop.tif"), ("one reflectance band", "{F}/bands/s2_B02.tif"),
                             ("the probabilities", "{REF}/main/probabilities.tif"),
                             ("the confidence", "{REF}/main/confidence.tif"), ("a missing map", "{F}/nope.tif"),
                             ("a text file", "{F}/text.tif"))],
        *[Case(f"sample {' '.join(x)}", AS, sample(M, *x), "error", nothing_left)
          for x in (("--size", "0"), ("--size", "-5"), ("--size", "10"), ("--seed", "-1"), ("--min-per-class", "1"),
                    ("--target-se", "0"), ("--target-se", "nan"), ("--expected-ua", "1.5"), ("--expected-ua", "nan"),
                    ("--expected-ua", "nope=0.9"), ("--expected-ua", "abc"))],
        Case("sample --out not .gpkg", AS, ["core.assess", "sample", M, "--out", "{OUT}/o/s.shp"], "error",
             nothing_left),
        Case("estimate, unlabelled sample", AS, estimate(M, "{REF}/sample.gpkg"), "error", nothing_left),
        Case("estimate, labelled as mapped", AS, estimate(M), "ok", accuracy("olofsson2014", 1.0),
             before=labelled(str)),
        Case("estimate, sample of another map", AS, estimate("{REF}/fast/classes.tif"), "ok", accuracy("stehman2014"),
             before=labelled(str)),
        Case("estimate, labels not map classes", AS, estimate(M), "error", nothing_left,
             before=labelled(lambda m: m + "?")),
        Case("estimate, misspelled stratum field", AS, estimate(M, "{OUT}/l.gpkg", "--stratum-field", "strata"),
             "error", nothing_left, before=labelled(str)),
        Case("estimate, no stratum field", AS, estimate(M, "{OUT}/l.gpkg", "--stratum-field", ""), "ok",
             accuracy("stehman2014", 1.0), before=labelled(str)),
        Case("estimate, reflectance as map", AS, estimate("{F}/crop.tif"), "error", nothing_left,
             before=labelled(str)),
        Case("estimate, text as sample", AS, estimate(M, "{F}/text.tif"), "error", nothing_left),
        Case("estimate, missing reference field", AS, estimate(M, "{F}/pts.geojson"), "error", nothing_left),
        Case("estimate, training points", AS, estimate(M, "{F}/pts.geojson", "--reference-field", "class"), "any",
             accuracy("stehman2014")),
        # ---------------------------------------------------------------- the plugin's worker protocol (JSON lines)
        Case("protocol: clean crop", PR, C("crop.tif"), "ok", all_of(outputs_ok, protocol_result), env=JSONL),
        Case("protocol: two tiles", PR, A("tiles_good"), "ok", all_of(tiles_whole(["east", "west"]), protocol_result),
             env=JSONL),
        Case("protocol: text as raster", PR, C("text.tif"), "error", nothing_left, env=JSONL),
        Case("protocol: unlabelled sample", PR, estimate(M, "{REF}/sample.gpkg"), "error", nothing_left, env=JSONL),
        Case("protocol: Cancel (SIGTERM) mid-run", PR, C("crop.tif", "pts.geojson", "--no-cache"), "interrupt",
             earlier_kept, before=copy_ref, kill=(1, signal.SIGTERM), env=JSONL),
    ]
    cv_flags = ("--block-size", "--cv-folds")  # these need the cross-validation; the others run FAST
    out += [Case(f"classify {' '.join(x)}", FL, (D("crop.tif", "pts.geojson", *FAST[:2], *x) if x[0] in cv_flags else
                                                 C("crop.tif", "pts.geojson", *x)), exp, nothing_left)
            for exp, *x in (("error", "--block-size", "-100"), ("error", "--block-size", "0"),
                            ("error", "--block-size", "nan"), ("any", "--cv-folds", "1000"),
                            ("error", "--cv-folds", "-1"), ("error", "--cv-folds", "1"),
                            ("error", "--device", "tpu"), ("error", "--device", "cuda"),
                            ("error", "--max-pixels-per-polygon", "0"), ("error", "--max-pixels-per-polygon", "-5"),
                            ("error", "--k", "0"), ("any", "--k", "100000"), ("error", "--temperature", "0"),
                            ("error", "--temperature", "nan"), ("error", "--temperature", "inf"),
                            ("error", "--stride", "0"), ("error", "--stride", "-32"), ("any", "--stride", "7"),
                            ("error", "--stride", "100000"), ("error", "--bbox", "1,2"),
                            ("error", "--bbox", "0,0,10,10"), ("error", "--bbox", "455000,4150000,450000,4145000"),
                            ("error", "--bbox-crs", "EPSG:99999", "--bbox", "0,0,1,1"),
                            ("error", "--bands", "foo"), ("error", "--bands", "B2,B3"),
                            ("error", "--features", "foo"), ("error", "--features", "pixel", "--grid", "embedding"),
                            ("error", "--method", "foo"), ("error", "--grid", "foo"), ("error", "--model", "nope"),
                            ("error", "--checkpoint", "/nonexistent.safetensors"),
                            ("error", "--checkpoint", "{F}/points.csv"), ("any", "--precision", "fp16"),
                            ("any", "--method", "knn", "--features", "pixel"),
                            ("error", "--save-classifier", "{F}"))]
    emb = ["core.embed", "{F}/crop.tif", "--out", "{OUT}/o/e.tif"]
    out += [Case(f"embed {' '.join(x)}", FL, emb + list(x), exp, nothing_left)
            for exp, *x in (("error", "--batch-size", "-1"), ("error", "--batch-size", "0"),
                            ("error", "--min-valid", "0"), ("error", "--min-valid", "2"),
                            ("error", "--offset", "nan"), ("error", "--offset", "-5000"), ("error", "--stride", "-1"),
                            ("error", "--dtype", "int8"), ("error", "--mode", "foo"),
                            ("error", "--polygon", "POLYGON((0 0, 1"), ("error", "--device", "tpu"))]
    out += [
        Case("embed --out is a folder", FL, ["core.embed", "{F}/crop.tif", "--out", "{F}"], "error"),
        Case("kmeans --clusters 0", FL, ["core.classify", "kmeans", "{REF}/emb.tif", "--clusters", "0", "--out",
                                         "{OUT}/o/k.tif"], "error", nothing_left),
        Case("kmeans --clusters 100000", FL, ["core.classify", "kmeans", "{REF}/emb.tif", "--clusters", "100000",
                                              "--out", "{OUT}/o/k.tif"], "error", nothing_left),
        Case("pca of a plain raster", FL, ["core.classify", "pca", "{F}/crop.tif", "--out", "{OUT}/o/p.tif"],
             "error", nothing_left),
        Case("similarity --fids 99999", FL, ["core.classify", "similarity", "{REF}/emb.tif", "--reference",
                                             "{F}/pts.geojson", "--fids", "99999", "--out", "{OUT}/o/s.tif"],
             "error", nothing_left),
        Case("models info nope", FL, ["core.models", "info", "nope"], "error"),
        Case("models convert bad file", FL, ["core.models", "convert", "B13_vits14_softcon", "{F}/points.csv",
                                             "{OUT}/x.safetensors"], "error"),
        Case("cache bad command", FL, ["core.cache", "purge"], "error"),
        Case("probe --folds 1", FL, [*PROBE[:2], "1", "--train", "{F}/eurosat_good"], "error"),
        Case("probe --k 0", FL, [*PROBE, "--k", "0", "--train", "{F}/eurosat_good"], "error"),
        Case("published model offline", FL, C("crop.tif", "pts.geojson", "--model", "B13_vits14_softcon"), "error",
             nothing_left),
        # ---------------------------------------------------------------- environment
        Case("read-only out-dir", E, C("crop.tif", "pts.geojson", "--out-dir", "{OUT}/mnt/o"), "error",
             before=mount(ro=True), after=umount),
        Case("read-only HOME, no cache env", E, C("crop.tif"), "ok", outputs_ok, env=RO_HOME,
             before=mount(ro=True), after=umount),
        Case("cache on a read-only disk", E, C("crop.tif"), "ok", outputs_ok, env={"SOFTCON_CACHE": "{OUT}/mnt"},
             before=mount(ro=True), after=umount),
        Case("cache path is a file", E, C("crop.tif"), "ok", outputs_ok, env={"SOFTCON_CACHE": "{F}/points.csv"}),
        Case("cache on a full disk", E, C("crop.tif"), "any", outputs_ok, env={"SOFTCON_CACHE": "{OUT}/mnt"},
             before=mount(size="1m"), after=umount),
        Case("full disk, new out-dir", E, C("crop.tif", "pts.geojson", "--out-dir", "{OUT}/mnt/o"), "error",
             lambda c, o, rc, e: nothing_left(c, o / "mnt", rc, e), before=mount(size="4m", fill=True),
             after=umount),
        Case("full disk, earlier outputs", E, C("crop.tif", "pts.geojson", "--out-dir", "{OUT}/mnt/o"), "error",
             lambda c, o, rc, e: earlier_kept(c, o / "mnt", rc, e), before=mount(size="24m", copy=True, fill=True),
             after=umount),
        Case("bad SOFTCON_EMBED_CACHE_GB", E, C("crop.tif"), "ok", outputs_ok, env={"SOFTCON_EMBED_CACHE_GB": "abc"}),
        Case("cache entry zeroed in place", E, C("crop.tif"), "ok", ok_map, env={"SOFTCON_CACHE": "{OUT}/cache"},
             before=cache_entry("zeros")),
        Case("cache entry overwritten", E, C("crop.tif"), "ok", ok_map, env={"SOFTCON_CACHE": "{OUT}/cache"},
             before=cache_entry("garbage")),
        Case("cache side-car garbage", E, C("crop.tif"), "ok", ok_map, env={"SOFTCON_CACHE": "{OUT}/cache"},
             before=cache_entry("sidecar")),
        Case("stale classifier", E, C("crop.tif"), "ok", all_of(outputs_ok, no_stale_classifier), before=copy_ref),
        Case("out-dir is a file", E, C("crop.tif", "pts.geojson", "--out-dir", "{F}/points.csv"), "error"),
        Case("out-dir with spaces, ünïcödé", E, C("crop.tif", "pts.geojson", "--out-dir", "{OUT}/o"), "ok", outputs_ok),
        Case("no TMPDIR, --no-cache", E, C("crop.tif", "pts.geojson", "--no-cache"), "any", outputs_ok,
             env={"TMPDIR": "{OUT}/missing"}),
        Case("ulimit -v 2 GB, crop", E, C("crop.tif"), "any", outputs_ok, shell_prefix="ulimit -v 2000000"),
        Case("ulimit -v 2 GB, demo scene", E, ["core.classify", "demo", "--out-dir", "{OUT}/o"], "any", outputs_ok,
             shell_prefix="ulimit -v 2000000", timeout=600),
        Case("SIGINT mid-run", E, C("crop.tif", "pts.geojson", "--no-cache"), "interrupt", earlier_kept,
             before=copy_ref, kill=sigint_after(1)),
        Case("SIGKILL then rerun", E, C("crop.tif", "pts.geojson", "--no-cache"), "ok", no_temp_left,
             kill=(5, signal.SIGKILL)),
        Case("two runs into one folder", E, C("crop.tif"), "any", outputs_ok, concurrent=True),
        # ---------------------------------------------------------------- training
        Case("pretrain, good SSL4EO folder", T, [*PRETRAIN, "--data", "{F}/ssl4eo_good", "--labels", "none"], "ok"),
        Case("pretrain, truncated band", T, [*PRETRAIN, "--data", "{F}/ssl4eo_truncband", "--labels", "none"],
             "any"),
        Case("pretrain, text file as band", T, [*PRETRAIN, "--data", "{F}/ssl4eo_textband", "--labels", "none"],
             "any"),
        Case("pretrain, missing band", T, [*PRETRAIN, "--data", "{F}/ssl4eo_missingband", "--labels", "none"],
             "any"),
        Case("pretrain, truncated raster", T, [*PRETRAIN, "--data", "{F}/truncated.tif"], "error"),
        Case("pretrain, text as raster", T, [*PRETRAIN, "--data", "{F}/text.tif"], "error"),
        Case("pretrain, missing data", T, [*PRETRAIN, "--data", "{F}/nope"], "error"),
        Case("pretrain --batch_size 0", T, [*PRETRAIN, "--data", "{F}/crop.tif", "--batch_size", "0"], "error"),
        Case("pretrain, missing config", T, [*PRETRAIN, "--config", "{F}/nope.toml"], "error"),
        Case("pretrain, bad config", T, [*PRETRAIN, "--config", "{F}/points.csv"], "error"),
        Case("probe, good", T, [*PROBE, "--train", "{F}/eurosat_good"], "ok"),
        Case("probe, one class", T, [*PROBE, "--train", "{F}/eurosat_oneclass"], "error"),
        Case("probe, corrupt patch", T, [*PROBE, "--train", "{F}/eurosat_corrupt"], "any"),
        Case("probe, mixed band counts", T, [*PROBE, "--train", "{F}/eurosat_mixedbands"], "any"),
        Case("probe, missing folder", T, [*PROBE, "--train", "{F}/nope"], "error"),
        Case("probe, unknown model", T, [*PROBE, "--train", "{F}/eurosat_good", "--model", "nope"], "error"),
    ]
    return out
