"""train.linear_probe on real data: EuroSAT-MS class folders (5-fold) and BigEarthNet v1 patch folders (mAP)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import pytest
import torch

from core.geo.bands import S2_L1C
from core.errors import SoftConError
from train import linear_probe as lp
from train.bigearthnet import BEN_19
from train.bigearthnet import read_bigearthnet
from train.features import read_class_folders

FIELDS = {"model", "features", "dim", "protocol", "n_train", "classes", "precision", "knn", "linear", "seconds"}


def test_knn_votes_follow_the_nearest_neighbours():
    # Two tight clusters around orthogonal directions: every test point votes its cluster's class.
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4)[:2] * 5
    train = torch.cat([c + 0.1 * torch.randn(10, 4, generator=g) for c in centres])
    y = torch.nn.functional.one_hot(torch.tensor([0] * 10 + [1] * 10), 2).float()
    test = torch.stack([centres[1], centres[0]]) + 0.05
    for center in (True, False):
        s = lp.knn_scores(train, y, test, k=5, center=center)
        assert s.shape == (2, 2)
        torch.testing.assert_close(s.sum(1), torch.ones(2))
        assert s.argmax(1).tolist() == [1, 0]


def test_eurosat_reader_reorders_bands(eurosat_dir):
    data = read_class_folders(eurosat_dir, S2_L1C, "eurosat")
    assert data.x.shape == (158, 13, 64, 64) and len(data.classes) == 10
    assert data.y.bincount().tolist() == [16, 14, 17, 17, 17, 16, 14, 13, 17, 17]
    # EuroSAT stores B8A last; the model order puts it 9th. The file's band 13 must land at index 8.
    import rasterio

    with rasterio.open(data.paths[0]) as ds:
        raw = ds.read()
    assert torch.equal(data.x[0, 8], torch.from_numpy(raw[12].astype("float32")))
    assert torch.equal(data.x[0, 9], torch.from_numpy(raw[8].astype("float32")))


def test_spectral_baseline_5fold(eurosat_dir, tmp_path, capsys):
    out = tmp_path / "res" / "spectral.json"
    r = lp.main(["--spectral", "--train", str(eurosat_dir), "--out", str(out), "--threads", "1"])
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed == json.loads(json.dumps(r))
    assert FIELDS <= set(r)
    assert r["features"] == "spectral" and r["dim"] == 20 and r["protocol"] == "5-fold" and r["n_train"] == 158
    assert len(r["linear"]["fold_accuracy"]) == 5 and len(r["knn"]["fold_accuracy"]) == 5
    # Per-band mean/std (of the default model's 10 bands) is a strong baseline on EuroSAT: clearly above chance (10 %).
    assert r["linear"]["accuracy"] > 0.5, r["linear"]
    assert r["knn"]["accuracy"] > 0.3, r["knn"]
    assert not [p for p in out.parent.iterdir() if p.suffix == ".tmp"]


def test_random_init_tiny_model_5fold(eurosat_dir):
    r = lp.main(["--model", "softcon_tiny_s2", "--random-init", "--train", str(eurosat_dir), "--threads", "1",
                 "--precision", "fp32"])
    assert r["pretrained"] is False and r["arch"] == "vit_tiny_patch8_64" and r["dim"] == 192
    assert r["input_size"] == 64 and r["precision"] == "fp32"
    for m in ("knn", "linear"):
        assert 0.15 < r[m]["accuracy"] <= 1.0, r[m]  # above chance even untrained (random features + spectra)
    assert r["knn"]["center"] is True and r["knn"]["k"] == 20


def test_train_test_split_with_linear_probe_features(eurosat_dir, tmp_path):
    # Train on the first 10 patches of each class, test on the rest (symlinks to the real files).
    for split in ("train", "test"):
        for cls in sorted(p for p in eurosat_dir.iterdir() if p.is_dir()):
            (tmp_path / split / cls.name).mkdir(parents=True)
            files = sorted(cls.glob("*.tif"))
            for f in (files[:10] if split == "train" else files[10:]):
                os.symlink(f, tmp_path / split / cls.name / f.name)
    r = lp.main(["--model", "softcon_tiny_s2", "--random-init", "--feature", "linear_probe", "--method", "knn",
                 "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--threads", "1"])
    assert r["protocol"] == "train/test" and r["n_train"] == 100 and r["n_test"] == 58
    assert r["dim"] == 5 * 192 and r["features"] == "linear_probe" and "linear" not in r
    assert r["knn"]["fold_accuracy"] == [round(r["knn"]["accuracy"], 4)]


def test_bigearthnet_reader_maps_19_classes():
    from core.io.sample_data import bigearthnet_dir

    data = read_bigearthnet(bigearthnet_dir("S2"), S2_L1C)
    assert data.x.shape == (6, 13, 120, 120) and data.multilabel and data.y.shape == (6, 19)
    assert data.x[:, S2_L1C.index("B10")].abs().max() == 0  # L2A has no B10: zero-filled
    assert data.x[:, S2_L1C.index("B1")].std() > 0  # 60 m band resampled, not empty
    folder = next(i for i, p in enumerate(data.paths) if p.endswith("S2A_MSIL2A_20170613T101031_87_48"))
    meta = json.loads(next(Path(data.paths[folder]).glob("*_labels_metadata.json")).read_text())
    assert meta["labels"] == ["Non-irrigated arable land",
                              "Land principally occupied by agriculture, with significant areas of natural vegetation"]
    hot = [BEN_19[i] for i in data.y[folder].nonzero().flatten().tolist()]
    assert hot == ["Arable land",
                   "Land principally occupied by agriculture, with significant areas of natural vegetation"]


def test_bigearthnet_map_streams_features_and_reports_micro_and_macro(tmp_path):
    from core.io.sample_data import bigearthnet_dir
    from train.features import encoder_features

    root = bigearthnet_dir("S2")
    for args in (["--model", "softcon_tiny_s2", "--spectral"],
                 ["--model", "softcon_tiny_s2", "--random-init", "--feature", "linear_probe"]):
        feat = tmp_path / args[-1]
        r = lp.main(args + ["--train", str(root), "--folds", "3", "--threads", "1", "--batch-size", "4",
                            "--features-dir", str(feat)])
        assert r["task"] == "multilabel" and r["classes"] == list(BEN_19) and r["n_train"] == 6
        assert r["protocol"] == "3-fold" and r["statistics"] == "ssl4eo_s12_l2a"     # L2A data, L2A statistics
        for m in ("knn", "linear"):
            assert 0.0 < r[m]["map_micro"] <= 1.0 and 0.0 < r[m]["map_macro"] <= 1.0
            assert r[m]["map_micro"] != r[m]["map_macro"]
            assert r[m]["pooled"]["classes_scored"] >= 5
        on_disk = np.load(feat / "train_features.npy")
        assert on_disk.shape == (6, r["dim"]) and np.isfinite(on_disk).all()
    # streaming in batches of 4 (64 here: one batch) gives what embedding all patches at once gives
    from core.models.encoders import create_encoder
    from train.bigearthnet import BigEarthNet, statistics_for

    torch.manual_seed(0)
    enc, rec = create_encoder("softcon_tiny_s2")
    rec = statistics_for(rec)
    data = BigEarthNet(root, rec.bands)
    from train.features import stream_features

    streamed = stream_features(data.read, len(data), lambda x: encoder_features(enc, rec, x)[0], tmp_path / "f.npy",
                               batch_size=4)
    whole = encoder_features(enc, rec, data.read(0, len(data)))[0]
    np.testing.assert_allclose(np.asarray(streamed), whole.numpy(), atol=1e-5)


def test_l2a_statistics_for_an_l1c_model():
    from core.models.registry import get_record
    from core.geo.stats import S2A_MEAN, S2C_MEAN
    from train.bigearthnet import statistics_for

    rec = statistics_for(get_record("softcon_tiny_s2"))
    b10 = S2_L1C.index("B10")
    assert rec.mean[1] == S2A_MEAN[1] and rec.mean[b10] == S2C_MEAN[b10] and rec.mean[-1] == S2A_MEAN[-1]
    assert statistics_for(get_record("softcon_tiny_s2"), "model").mean[1] == S2C_MEAN[1]
    assert statistics_for(get_record("B2_vits14_softcon")).stats == "ssl4eo_s12_s1"    # S1 models untouched


def test_ten_percent_split_rule():
    from train.bigearthnet import fraction_split

    names = [f"S2A_MSIL2A_{i:06d}" for i in range(1000)]
    ten = fraction_split(names, 0.1, seed=42)
    assert len(ten) == 100 and ten == sorted(ten) and set(ten) <= set(names)
    assert fraction_split(names[::-1], 0.1, seed=42) == ten                  # independent of listing order
    assert fraction_split(names, 0.1, seed=43) != ten


def test_multilabel_linear_probe_searches_c():
    """C is chosen on a held-out fifth. Each class is the difference of two features that share a large noise:
    a strong regulariser (C = 0.01) keeps the weights near the class-mean direction, which sees the noise."""
    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < 0.4).astype(np.float64)
    noise = 3 * rng.normal(size=(200, 3))
    f = np.concatenate([y + noise, noise], axis=1)
    scores, cs = lp.linear_scores(f[:150], y[:150], f[150:], 3, multilabel=True)
    assert cs[0] in lp.C_GRID and cs[0] >= 1.0
    assert lp.mean_average_precision(scores, y[150:])["map_micro"] > 0.9
    _, cs = lp.linear_scores(f[:150], y[:150], f[150:], 3, multilabel=True, c_grid=(0.01,))
    assert cs == [0.01]


def test_bad_inputs_raise_clear_errors(tmp_path, eurosat_dir):
    with pytest.raises(SoftConError, match="class sub-folders"):
        lp.main(["--spectral", "--train", str(tmp_path)])
    with pytest.raises(SoftConError, match="does not exist"):
        lp.main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--train", str(eurosat_dir)])
    with pytest.raises(SoftConError, match="band list names 2 bands"):
        lp.main(["--spectral", "--bands", "B2,B3", "--train", str(eurosat_dir)])


def test_checkpoint_is_evaluated_through_core(eurosat_dir, tmp_path):
    # A weights file in the project's format (timm keys, metadata naming the model) is found by name.
    from core.models.checkpoint import save_safetensors
    from core.models.encoders import create_encoder

    torch.manual_seed(1)
    enc, _ = create_encoder("softcon_tiny_s2", pretrained=False)
    path = save_safetensors(enc, tmp_path / "enc.safetensors", {"model": "softcon_tiny_s2"})
    r = lp.main(["--checkpoint", str(path), "--train", str(eurosat_dir), "--method", "knn", "--threads", "1",
                 "--precision", "fp32"])
    assert r["pretrained"] is True and r["model"] == "softcon_tiny_s2" and r["checkpoint"] == str(path)
    # Same weights in memory give the same result: the file was loaded, not a fresh random init.
    data = read_class_folders(eurosat_dir, S2_L1C, "eurosat")
    args = lp.get_args_parser().parse_args(["--train", str(eurosat_dir), "--precision", "fp32"])
    feats = lp.features_for(args, enc, lp.get_record("softcon_tiny_s2"), data, torch.device("cpu"), None)[0]
    acc = lp.evaluate(feats, data, methods=("knn",))["knn"]["accuracy"]
    assert acc == pytest.approx(r["knn"]["accuracy"])


def test_shipped_default_model(eurosat_dir):
    # The embedded default model: <= 10 MB safetensors (float32: float16 would move Galileo's outputs past the
    # reference tolerance), sha256 as recorded, loads strictly through core, bf16 embeddings match float32.
    from safetensors import safe_open

    from core.device import autocast
    from core.models.registry import DEFAULT_MODEL, get_record
    from core.models.encoders import create_encoder
    from core.models.weights import sha256sum
    from train.features import model_input

    record = get_record(DEFAULT_MODEL)
    path = Path(record.local_path)
    assert path.is_file() and path.stat().st_size <= 10 * 2**20
    assert sha256sum(path) == record.sha256
    with safe_open(str(path), framework="pt") as f:
        assert "blocks.0.attn.q.weight" in f.keys() and "space_time_embed.S2_RGB.proj.weight" in f.keys()
        assert f.get_tensor("blocks.0.attn.q.weight").dtype == torch.float32
    enc, rec = create_encoder()
    x = model_input(read_class_folders(eurosat_dir, rec.bands, "eurosat").x[::16], rec, torch.device("cpu"))
    with torch.no_grad():
        ref = enc(x)
        with autocast(torch.device("cpu"), torch.bfloat16):
            low = enc(x).float()
    assert ref.shape == (10, 128) and torch.isfinite(ref).all()
    mu = ref.mean(0)
    assert torch.nn.functional.cosine_similarity(low - mu, ref - mu).min() > 0.99


def test_texture_and_token_stats_features(eurosat_dir):
    """The feature variants of the default-model study: hand-made texture, dense-feature statistics."""
    import torch.nn.functional as F

    from core.models.encoders import create_encoder
    from train.features import model_input, read_class_folders, spectral_features, token_stats

    enc, rec = create_encoder("softcon_tiny_s2", pretrained=False)
    data = read_class_folders(eurosat_dir, rec.bands, "eurosat")
    x = data.x[::16]
    tex = spectral_features(x, rec, texture=True)
    assert tex.shape == (10, 52) and torch.equal(tex[:, :26], spectral_features(x, rec))
    z = (x[0, 3] - rec.mean[3] + 2 * rec.std[3]) / (4 * rec.std[3])  # B4 scaled as SoftCon does
    assert tex[0, 26 + 3] == pytest.approx(float(z.clamp(0, 1).diff(dim=1).abs().mean()), rel=1e-4)
    with torch.no_grad():
        inp = model_input(x, rec, torch.device("cpu"))
        f = token_stats(enc, inp)
        assert f.shape == (10, 3 * 192)
        assert torch.allclose(f[:, :192], F.normalize(enc(inp), dim=1), atol=1e-6)
        assert torch.allclose(f[:, 192:384], F.normalize(enc.forward_dense(inp).mean(dim=(2, 3)), dim=1), atol=1e-6)
    r = lp.main(["--spectral", "--texture", "--model", "softcon_tiny_s2", "--train", str(eurosat_dir), "--threads", "1",
                 "--method", "linear"])
    assert r["features"] == "spectral+texture" and r["dim"] == 52
    assert r["linear"]["accuracy"] > 0.76  # texture is what lifts the no-network baseline (71.6 -> 79.8 %)
