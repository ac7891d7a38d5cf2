"""Band names, presets and mapping a raster's bands onto a model's bands."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from core.geo.bands import (PRESETS, S1_GRD, S2_L1C, S2_L2A, canonical, map_bands, parse_band_list, resolve_bands,
                            select_bands)
from core.errors import SoftConError
from core.embed.engine import embed_raster
from core.embed.spec import EmbedSpec
from core.models.registry import models_for


@pytest.mark.parametrize("text, want", [
    ("B04", "B4"), ("b8a", "B8A"), ("B8A", "B8A"), ("s2_B12.jp2", "B12"), ("B10", "B10"),
    ("S2A_MSIL2A_20170613T101031_87_48_B01.tif", "B1"), ("S2B_MSIL2A_20170924T93020_69_24_B8A.tif", "B8A"),
    ("S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48_VH.tif", "VH"), ("VV", "VV"),
    ("B13", None), ("red", None), ("", None),
])
def test_canonical(text, want):
    assert canonical(text) == want


def test_specs_and_presets():
    assert len(S2_L1C) == 13 and len(S2_L2A) == 12 and "B10" not in S2_L2A and S1_GRD == ("VV", "VH")
    assert S2_L1C.index("B8A") == 8  # SoftCon / SSL4EO-S12 order
    assert PRESETS["eurosat"][-1] == "B8A"
    assert parse_band_list("eurosat") == PRESETS["eurosat"]
    assert parse_band_list("B02, B3,b04") == ("B2", "B3", "B4")
    with pytest.raises(SoftConError, match="Unknown band name 'NIR'"):
        parse_band_list("B2,NIR")


def test_eurosat_preset_reorder():
    assert resolve_bands([None] * 13, S2_L1C, "eurosat") == [0, 1, 2, 3, 4, 5, 6, 7, 12, 8, 9, 10, 11]


def test_l2a_by_description_and_by_count():
    descriptions = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A"]
    idx = resolve_bands(descriptions, S2_L1C)
    assert idx == [0, 1, 2, 3, 4, 5, 6, 7, 11, 8, None, 9, 10]
    # no descriptions but 12 bands: not guessed (L2A products differ in where B8A is), the fix is named
    with pytest.raises(SoftConError, match="--bands s2_l2a"):
        resolve_bands([""] * 12, S2_L1C)
    assert resolve_bands([""] * 12, S2_L1C, "s2_l2a") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, None, 10, 11]


def test_partly_named_bands_resolve_by_elimination_or_stop():
    named = [f"B{b[1:]:0>2}" if b != "B8A" else "B8A" for b in S2_L1C]
    shuffled = [named[i] for i in (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 8)]  # EuroSAT order: B8A last
    shuffled[9] = "cirrus"  # B10 described by a word the names do not know
    notes = []
    assert resolve_bands(shuffled, S2_L1C, notes=notes) == [0, 1, 2, 3, 4, 5, 6, 7, 12, 8, 9, 10, 11]
    assert "band 10 ('cirrus') taken as B10" in notes[0]
    # two unknown names among 13: ambiguous, so stop and name the bands and the fix
    shuffled[3] = "red"
    with pytest.raises(SoftConError, match="Cannot tell which raster band") as e:
        resolve_bands(shuffled, S2_L1C)
    assert "4: 'red'" in str(e.value) and "10: 'cirrus'" in str(e.value) and "--bands" in str(e.value)
    notes = []
    assert resolve_bands([None] * 13, S2_L1C, notes=notes) == list(range(13))
    assert "no names" in notes[0]


def test_missing_bands_are_named():
    """Bands that are named need no band-order advice (it cannot help): the message says what is missing."""
    with pytest.raises(SoftConError) as err:
        resolve_bands(["B02", "B03", "B04", "B08"], S2_L1C)
    msg = str(err.value)
    assert "bands are B2, B3, B4, B8, but the model needs B1, B5, B6, B7, B8A, B9, B11, B12 too" in msg
    assert "--bands" not in msg
    with pytest.raises(SoftConError, match="--bands eurosat"):  # an unnamed band: the order may be the fix
        map_bands(["B2", None, "B4", "B8"], S2_L1C)
    with pytest.raises(SoftConError, match="names 13 bands but the raster has 12"):
        resolve_bands([None] * 12, S2_L1C, "eurosat")
    with pytest.raises(SoftConError, match="Cannot tell which"):
        resolve_bands([None] * 5, S2_L1C)
    with pytest.raises(SoftConError, match="needs VH too"):
        resolve_bands(["VV"], S1_GRD)


def test_a_raster_the_model_cannot_use_names_the_models_that_can(tmp_path):
    """A 10-band stack (no B1, B9) with a 13-band L1C model: the message names the model that fits."""

    ten = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    assert models_for(ten) == ["galileo_nano_s2"] and set(models_for(S2_L2A)) == set(models_for(S2_L1C))  # B10: 0
    assert models_for(("B2", "B3", "B4", "B8")) == [] and models_for(S1_GRD)[0].startswith("B2_")
    path = tmp_path / "ten.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=10, dtype="uint16", crs="EPSG:32618",
                       transform=rasterio.Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(np.full((10, 8, 8), 1000, np.uint16))
        dst.descriptions = ten
    with pytest.raises(SoftConError) as err:
        embed_raster(path, tmp_path / "e.tif", EmbedSpec(model="softcon_tiny_s2", pretrained=False))
    assert "Models that can use this raster: galileo_nano_s2" in str(err.value), str(err.value)


def test_s1_from_file_names_and_explicit_list():
    assert resolve_bands(["x_VH.tif", "x_VV.tif"], S1_GRD) == [1, 0]
    assert resolve_bands([None, None], S1_GRD, ["VH", "VV"]) == [1, 0]


def test_select_bands_numpy_and_torch(eurosat_dir):
    path = sorted((eurosat_dir / "Pasture").glob("*.tif"))[0]
    with rasterio.open(path) as ds:
        raw = ds.read()
    idx = resolve_bands([None] * 13, S2_L1C, "eurosat")
    out = select_bands(raw, idx, axis=0)
    assert out.dtype == np.uint16 and np.array_equal(out[8], raw[12]) and np.array_equal(out[9], raw[8])
    t = select_bands(torch.from_numpy(raw.astype(np.int32))[None], idx)
    assert torch.equal(t[0, 12], torch.from_numpy(raw[11].astype(np.int32)))
    l2a = select_bands(torch.ones(2, 12, 3, 3), resolve_bands([None] * 12, S2_L1C, "s2_l2a"))
    assert l2a.shape == (2, 13, 3, 3) and torch.all(l2a[:, 10] == 0) and torch.all(l2a[:, 11] == 1)
