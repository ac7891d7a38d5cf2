"""Edge-aware upsampling of token features (core.classify.upsample) and the neighbourhood features
(core.classify.context), on a crop of the real scene where it matters: marsh channels, beach, surf."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from core.classify.context import pooled_grid, smooth
from core.classify.features import upsample_rows
from core.classify.upsample import JBU, token_guide, upsample
from core.io.raster import open_raster

CELL = 8


@pytest.fixture(scope="module")
def coast(s2_scene_files):
    """240 x 240 px of the real scene across marsh, channels, the barrier beach and the sea: reflectance of
    B2, B3, B4, B8, B11, B12 (bands, rows, cols) and its standardised guide (rows, cols, 6)."""
    with open_raster(s2_scene_files) as ds:
        names = [d for d in ds.descriptions]
        idx = [names.index(b) + 1 for b in ("B2", "B3", "B4", "B8", "B11", "B12")]
        refl = ds.read(idx, window=Window(1150, 760, 240, 240), out_dtype="float32") / 10000
    g = np.moveaxis(refl, 0, -1)
    return refl, ((g - g.mean((0, 1))) / g.std((0, 1))).astype(np.float32)


def _full(tokens, tok_guide, guide, jbu=JBU()):
    return upsample(tokens, tok_guide, 0, guide, 0, CELL, tokens.shape[0], jbu)


def test_jbu_puts_the_edges_where_the_pixels_have_them(coast):
    """Token means of NIR reflectance, upsampled again: guided by the bands, the 10 m edges of channels and beach
    come back; bilinear interpolation blurs them over a token."""
    refl, guide = coast
    nir = refl[3][..., None]
    tokens = nir.reshape(30, CELL, 30, CELL, 1).mean((1, 3))
    tg = token_guide(guide, CELL)
    jbu = _full(tokens, tg, guide)[..., 0]
    bil = upsample_rows(tokens, 0, np.arange(240), np.arange(240), CELL, 30, 30)[..., 0]
    err_jbu, err_bil = np.sqrt(np.mean((jbu - nir[..., 0]) ** 2)), np.sqrt(np.mean((bil - nir[..., 0]) ** 2))
    assert err_jbu < 0.7 * err_bil, (err_jbu, err_bil)  # measured: 0.0119 vs 0.0195 reflectance RMSE


def test_upsampling_commutes_with_linear_maps(coast):
    """Weights depend only on the guide: a linear classifier may project tokens to class scores first."""
    _, guide = coast
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(30, 30, 12)).astype(np.float32)
    w = rng.normal(size=(12, 3)).astype(np.float32)
    tg = token_guide(guide, CELL)
    np.testing.assert_allclose(_full(tokens @ w, tg, guide), _full(tokens, tg, guide) @ w, atol=1e-4)


def test_strips_and_column_windows_give_the_rows_of_the_whole(coast):
    _, guide = coast
    tokens = np.random.default_rng(1).normal(size=(30, 30, 4)).astype(np.float32)
    tg = token_guide(guide, CELL)
    jbu = JBU()
    whole = _full(tokens, tg, guide, jbu)
    for r0, r1, c0, c1 in ((0, 13, 0, 240), (101, 150, 37, 90), (239, 240, 200, 240), (57, 58, 5, 6)):
        t0, t1 = jbu.token_rows(r0, r1, CELL, 30)
        part = upsample(tokens[t0:t1], tg[t0:t1], t0, guide[r0:r1, c0:c1], r0, CELL, 30, jbu, col0=c0)
        np.testing.assert_allclose(part, whole[r0:r1, c0:c1], atol=1e-5)


def test_constant_tokens_stay_constant_and_nodata_is_skipped(coast):
    _, guide = coast
    tg = token_guide(guide, CELL)
    tokens = np.full((30, 30, 2), 3.0, np.float32)
    tokens[:, :15] = np.nan  # the left half holds no data
    out = _full(tokens, tg, guide)
    np.testing.assert_allclose(out[:, 15 * CELL:], 3.0, atol=1e-5)  # only tokens with data vote
    assert np.isnan(out[:, :11 * CELL]).all()  # farther than the radius from any token with data
    holes = guide.copy()
    holes[5, 7] = np.nan
    assert np.isnan(_full(np.ones((30, 30, 1), np.float32), tg, holes)[5, 7]).all()


def test_weights_do_not_underflow_on_extreme_guides(coast):
    """A guide far from every token (a cloud, a glint) gets the nearest tokens, not NaN."""
    _, guide = coast
    tg = token_guide(guide, CELL)
    far = guide.copy()
    far[100:110, 100:110] = 80.0
    out = _full(np.ones((30, 30, 1), np.float32), tg, far)
    assert np.isfinite(out).all() and np.allclose(out, 1.0, atol=1e-5)


def test_context_cells_are_block_means_smoothed_over_data_only(tmp_path):
    """The neighbourhood features pool 4 x 4 tokens (nodata left out) and smooth over cells with data."""
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, 10, 13)).astype(np.float32)
    emb[:, :4, :4] = np.nan
    path = tmp_path / "emb.tif"
    with rasterio.open(path, "w", driver="GTiff", width=13, height=10, count=3, dtype="float32", nodata=np.nan,
                       crs="EPSG:32618", transform=rasterio.Affine(80, 0, 0, 0, -80, 0)) as ds:
        ds.write(emb)
    with rasterio.open(path) as ds:
        cells = pooled_grid(ds)
    assert cells.shape == (3, 4, 3) and np.isnan(cells[0, 0]).all()
    np.testing.assert_allclose(cells[1, 2], np.nanmean(emb[:, 4:8, 8:12], axis=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(cells[2, 3], np.nanmean(emb[:, 8:10, 12:13], axis=(1, 2)), atol=1e-5)
    smoothed = smooth(cells)
    assert np.isfinite(smoothed).all()  # the empty cell is filled from its neighbours
    far = np.full((9, 9, 1), np.nan, np.float32)
    far[0, 0] = 1.0
    assert np.isnan(smooth(far)[8, 8]).all() and smooth(far)[1, 1] == pytest.approx(1.0)
