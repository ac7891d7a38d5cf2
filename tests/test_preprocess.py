"""SoftCon preprocessing on real patches against values computed by hand.

clip((x - (mean - 2 std)) / (4 std), 0, 1) with SSL4EO-S12 statistics, after the EuroSAT band
reorder; the zero B10 of Sentinel-2 L2A on a real BigEarthNet patch; the per-image 1-99 %
quantile clamp of Sentinel-1 with nodata left out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from core.geo.bands import S1_GRD, S2_L1C, resolve_bands, select_bands
from core.models.registry import get_record
from core.geo.normalize import masked_quantiles, preprocess, reflectance_offset
from core.geo.stats import BOA_ADD_OFFSET, S1_MEAN, S1_STD, S2C_MEAN, S2C_STD, STATS

EUROSAT_TO_SOFTCON = [0, 1, 2, 3, 4, 5, 6, 7, 12, 8, 9, 10, 11]


def _by_hand(raw: float, mean: float, std: float) -> float:
    """SoftCon README normalize, in float64, without the uint8 cast."""
    lo, hi = mean - 2 * std, mean + 2 * std
    return min(max((raw - lo) / (hi - lo), 0.0), 1.0)


def _eurosat(eurosat_dir: Path, name: str) -> np.ndarray:
    with rasterio.open(eurosat_dir / name.split("_")[0] / f"{name}.tif") as ds:
        return ds.read()  # (13, 64, 64) uint16, EuroSAT order (B8A last)


def test_stats_are_the_ssl4eo_s12_numbers():
    bands, mean, std = STATS["ssl4eo_s12_l1c"]
    assert bands == S2_L1C and len(mean) == len(std) == 13
    assert mean[S2_L1C.index("B10")] == pytest.approx(22.10351321)  # cirrus: tiny
    assert mean[S2_L1C.index("B8A")] == pytest.approx(2560.29504086)
    assert STATS["ssl4eo_s12_s1"] == (S1_GRD, S1_MEAN, S1_STD)
    for name in ("B13_vits14_softcon", "B13_rn50_softcon"):
        r = get_record(name)
        assert (r.bands, list(r.mean), list(r.std)) == STATS[r.stats]


def test_scaling_endpoints():
    m, s = torch.tensor(S2C_MEAN), torch.tensor(S2C_STD)
    x = torch.stack([m - 2 * s, m, m + 2 * s, m + 3 * s, m - 3 * s]).view(5, 13, 1, 1)
    out = preprocess(x, S2C_MEAN, S2C_STD)[:, :, 0, 0]
    for row, want in enumerate([0.0, 0.5, 1.0, 1.0, 0.0]):
        assert torch.allclose(out[row], torch.full((13,), want), atol=1e-6)


@pytest.mark.parametrize("patch", ["Forest_11", "SeaLake_10", "Industrial_1"])
def test_eurosat_reorder_and_normalisation_by_hand(eurosat_dir, patch):
    raw = _eurosat(eurosat_dir, patch)
    index = resolve_bands([None] * 13, S2_L1C, "eurosat")
    assert index == EUROSAT_TO_SOFTCON
    # without the preset the descriptions say nothing and the file order would be taken as is:
    assert resolve_bands([None] * 13, S2_L1C) != index
    x = select_bands(torch.from_numpy(raw.astype(np.int32)).unsqueeze(0), index)
    out = preprocess(x, S2C_MEAN, S2C_STD)
    assert out.shape == (1, 13, 64, 64) and out.dtype == torch.float32
    rng = np.random.default_rng(0)
    for _ in range(40):
        c, r, k = int(rng.integers(13)), int(rng.integers(64)), int(rng.integers(64))
        file_band = EUROSAT_TO_SOFTCON[c]
        want = _by_hand(float(raw[file_band, r, k]), S2C_MEAN[c], S2C_STD[c])
        assert out[0, c, r, k].item() == pytest.approx(want, abs=1e-6), (patch, S2_L1C[c], r, k)
    # B8A (SoftCon channel 8) is EuroSAT's last band, B9 (channel 9) its ninth
    b8a = (float(raw[12, 5, 7]) - (2560.29504086 - 2 * 1345.52684884)) / (4 * 1345.52684884)
    assert out[0, 8, 5, 7].item() == pytest.approx(min(max(b8a, 0), 1), abs=1e-6)
    b9 = (float(raw[8, 5, 7]) - (830.06605044 - 2 * 577.31607053)) / (4 * 577.31607053)
    assert out[0, 9, 5, 7].item() == pytest.approx(min(max(b9, 0), 1), abs=1e-6)


def test_quantize_reproduces_readme_uint8(eurosat_dir):
    raw = _eurosat(eurosat_dir, "Forest_11")
    x = raw[EUROSAT_TO_SOFTCON].astype(np.float64)
    m, s = np.array(S2C_MEAN)[:, None, None], np.array(S2C_STD)[:, None, None]
    readme = np.clip((x - (m - 2 * s)) / (4 * s) * 255.0, 0, 255).astype(np.uint8) / 255.0
    got = preprocess(torch.from_numpy(x).unsqueeze(0), S2C_MEAN, S2C_STD, quantize=True)[0].numpy()
    diff = np.abs(got - readme)
    assert diff.max() <= 1 / 255 + 1e-6 and (diff < 1e-6).mean() > 0.999


def _bigearthnet_s2(folder: Path) -> tuple[list[str], np.ndarray]:
    """The 12 band files of a real BigEarthNet L2A patch on the 120 x 120 grid (nearest)."""
    files = sorted(folder.glob("*_B*.tif"))
    names, arrays = [], []
    for f in files:
        with rasterio.open(f) as ds:
            a = ds.read(1)
        k = 120 // a.shape[0]
        arrays.append(np.kron(a, np.ones((k, k), dtype=a.dtype)))
        names.append(f.name)
    return names, np.stack(arrays)


def test_l2a_patch_gets_zero_b10(tmp_path):
    from core.io.sample_data import bigearthnet_dir

    root = bigearthnet_dir("S2")
    patch = sorted(p for p in root.iterdir() if p.is_dir())[0]
    names, raw = _bigearthnet_s2(patch)
    assert len(names) == 12 and not any(n.endswith("_B10.tif") for n in names)
    index = resolve_bands(names, S2_L1C)  # from the file names: B01 ... B12, B8A
    assert index[S2_L1C.index("B10")] is None and len([i for i in index if i is not None]) == 12
    assert index[S2_L1C.index("B8A")] == names.index(next(n for n in names if n.endswith("_B8A.tif")))
    x = select_bands(torch.from_numpy(raw.astype(np.int32)).unsqueeze(0), index)
    assert torch.all(x[0, 10] == 0)
    out = preprocess(x, S2C_MEAN, S2C_STD)
    # raw 0 for B10 -> (0 - (22.10351321 - 2 * 51.15431158)) / (4 * 51.15431158)
    b10 = (0 - (22.10351321 - 2 * 51.15431158)) / (4 * 51.15431158)
    assert b10 == pytest.approx(0.391976, abs=1e-6)
    assert torch.allclose(out[0, 10], torch.full((120, 120), b10), atol=1e-6)
    for c in (1, 3, 7, 8, 12):  # B2, B4, B8, B8A, B12 by hand at a few pixels
        for r, k in ((0, 0), (60, 33), (119, 119)):
            file_band = index[c]
            want = _by_hand(float(raw[file_band, r, k]), S2C_MEAN[c], S2C_STD[c])
            assert out[0, c, r, k].item() == pytest.approx(want, abs=1e-6)


def test_reflectance_offset_for_new_baselines():
    assert reflectance_offset("04.00") == BOA_ADD_OFFSET == 1000.0
    assert reflectance_offset("N0509") == 1000.0 and reflectance_offset(5.09) == 1000.0
    assert reflectance_offset("02.09") == 0.0 and reflectance_offset("N0208") == 0.0
    assert reflectance_offset(None) == 0.0
    x = torch.randint(0, 5000, (1, 13, 8, 8)).float()
    assert torch.equal(preprocess(x + 1000, S2C_MEAN, S2C_STD, offset=1000.0), preprocess(x, S2C_MEAN, S2C_STD))


def test_nodata_is_zero_after_scaling():
    x = torch.full((1, 13, 4, 4), 3000.0)
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 1, 2] = False
    out = preprocess(x, S2C_MEAN, S2C_STD, valid=valid)
    assert torch.all(out[0, :, 1, 2] == 0) and torch.all(out[0, 0, 0, 0] > 0)


def test_s1_quantile_clamp_by_hand_with_nodata():
    from core.io.sample_data import bigearthnet_dir

    root = bigearthnet_dir("S1")
    patch = sorted(p for p in root.iterdir() if p.is_dir())[0]
    files = sorted(patch.glob("*.tif"))
    index = resolve_bands([f.name for f in files], S1_GRD)
    assert [files[i].name[-6:-4] for i in index] == ["VV", "VH"]
    raw = np.stack([rasterio.open(f).read(1) for f in files])  # (2, 120, 120) dB, file order VH, VV
    x = select_bands(torch.from_numpy(raw).unsqueeze(0), index)
    # nodata: a block of -9999 and a NaN, flagged invalid; they must not move the quantiles
    x[0, :, :10, :10] = -9999.0
    x[0, 0, 50, 50] = float("nan")
    valid = torch.ones(1, 120, 120, dtype=torch.bool)
    valid[0, :10, :10] = False
    out = preprocess(x, S1_MEAN, S1_STD, valid=valid, sar_quantiles=(0.01, 0.99))
    keep = np.ones((120, 120), dtype=bool)
    keep[:10, :10] = False
    keep[50, 50] = False
    for c in range(2):
        band = raw[index[c]]
        lo, hi = np.quantile(band[keep], [0.01, 0.99])  # numpy 'linear' by hand
        for r, k in ((10, 10), (60, 61), (119, 0)):
            v = min(max(float(band[r, k]), lo), hi)
            want = _by_hand(v, S1_MEAN[c], S1_STD[c])
            assert out[0, c, r, k].item() == pytest.approx(want, abs=1e-5)
        assert torch.all(out[0, c, :10, :10] == 0)
    assert torch.all(out[0, :, 50, 50] == 0) and torch.isfinite(out).all()


def test_masked_quantiles_match_numpy():
    x = torch.randn(2, 3, 9, 11, generator=torch.Generator().manual_seed(3))
    valid = torch.rand(2, 9, 11, generator=torch.Generator().manual_seed(4)) > 0.4
    valid[1] = False  # an image without any data gets 0
    q = masked_quantiles(x, (0.01, 0.5, 0.99), valid)
    for c in range(3):
        sel = x[0, c][valid[0]].numpy()
        assert np.allclose(q[:, 0, c].numpy(), np.quantile(sel, [0.01, 0.5, 0.99]), atol=1e-6)
    assert torch.all(q[:, 1] == 0)
