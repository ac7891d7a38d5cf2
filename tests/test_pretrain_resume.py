"""train.pretrain resume and numerics on the real scene crop: corrupt files, world-size changes, collective
resume under torchrun, GradScaler for fp16, persistent workers, --help."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from test_pretrain import ROOT, _args, _env, _losses, _records, crop, one_thread, reference  # noqa: F401 - fixtures

from core.errors import SoftConError
from train.config import Config, get_args_parser
from train.distributed import Context
from train.model import build_model, make_teacher
from core.loss import SoftContrastiveLoss
from train.pretrain import main, parse_args, softcon_step


@pytest.fixture(scope="module")
def one_step(crop, tmp_path_factory) -> Path:  # noqa: F811
    """A finished 1-step run (checkpoint at step 1) to resume from."""
    out = tmp_path_factory.mktemp("one_step")
    main(parse_args(_args(crop, out, max_steps=1)))
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name,damage", [
    ("last.json", lambda p: p.write_text('{"step": 1, "checkp')),
    ("last.json", lambda p: p.write_text('{"step": 1}')),
    ("ckpt-00000001.safetensors", _truncate),
    ("ckpt-00000001.optim.pt", _truncate),
    ("ckpt-00000001.optim.pt", lambda p: p.write_bytes(b"not a checkpoint")),
    ("ckpt-00000001.rng0.pt", _truncate),
])
def test_corrupt_resume_file_names_the_file_and_the_way_out(one_step, crop, tmp_path, name, damage):  # noqa: F811
    out = _copy(one_step, tmp_path / "run")
    damage(out / name)
    with pytest.raises(SoftConError) as err:
        main(parse_args(_args(crop, out, max_steps=2)))
    msg = str(err.value)
    assert name in msg and "--resume none" in msg, msg
    assert "\n" not in msg


def test_half_written_metrics_line_is_dropped_on_resume(one_step, crop, tmp_path):  # noqa: F811
    out = _copy(one_step, tmp_path / "run")
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 2, "epoch": 0, "lo')                       # killed mid-write
    main(parse_args(_args(crop, out, max_steps=2)))
    assert [r["step"] for r in _records(out)] == [1, 2]


def test_missing_checkpoint_file_and_resume_none(one_step, crop, tmp_path):  # noqa: F811
    out = _copy(one_step, tmp_path / "run")
    (out / "ckpt-00000001.safetensors").unlink()
    with pytest.raises(SoftConError, match="ckpt-00000001.safetensors is missing"):
        main(parse_args(_args(crop, out, max_steps=2)))
    main(parse_args(_args(crop, out, max_steps=2, resume="none")))       # starts afresh in the same folder
    assert [r["step"] for r in _records(out)] == [1, 2]


def test_cli_prints_one_line_for_a_corrupt_resume_file(one_step, crop, tmp_path):  # noqa: F811
    out = _copy(one_step, tmp_path / "run")
    _truncate(out / "ckpt-00000001.safetensors")
    proc = subprocess.run([sys.executable, "-m", "train.pretrain", *_args(crop, out, max_steps=2)], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Cannot resume from") and "Traceback" not in proc.stderr


def test_changed_world_size_is_refused_unless_allowed_then_rescaled(one_step, crop, tmp_path):  # noqa: F811
    out = _copy(one_step, tmp_path / "run")
    last = json.loads((out / "last.json").read_text())
    assert (last["world"], last["global_batch"]) == (1, 8)
    with pytest.raises(SoftConError, match="global batch of 8.*allow_world_change"):
        main(parse_args(_args(crop, out, max_steps=4, batch_size=4)))
    # allowed: 1 step of 8 images = 2 steps of 4, so the run continues at step 2
    main(parse_args(_args(crop, out, max_steps=4, batch_size=4, allow_world_change="true")))
    assert [r["step"] for r in _records(out)] == [1, 3, 4]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["global_batch"] == 4


def test_torchrun_resume_is_collective(reference, crop, tmp_path):  # noqa: F811
    """Two ranks resume a two-rank run exactly; a rank that cannot read its file stops both, naming it."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29619",
           "-m", "train.pretrain"]
    run = lambda **kw: subprocess.run(cmd + _args(crop, out, batch_size=4, **kw), cwd=ROOT, env=_env(),  # noqa: E731
                                      capture_output=True, text=True, timeout=300)
    proc = run(max_steps=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run(max_steps=4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout
    # 1e-4: the split sum drifts by ~1e-5 in 4 steps; a wrong batch, mask or RNG state moves the loss by ~0.1
    np.testing.assert_allclose(_losses(out), _losses(reference), atol=1e-4, rtol=0)
    (out / "ckpt-00000004.rng1.pt").unlink()                  # as if rank 1's node did not share output_dir
    proc = run(max_steps=5)
    assert proc.returncode != 0
    assert "rank 1: Cannot resume: " in proc.stderr and "ckpt-00000004.rng1.pt is missing" in proc.stderr


def test_fp16_uses_a_grad_scaler(crop, tmp_path):  # noqa: F811
    """CPU emulation of the fp16 GPU path: autocast fp16 with a GradScaler; overflowing steps are skipped."""
    out = tmp_path / "fp16"
    main(parse_args(_args(crop, out, max_steps=3, precision="fp16", save_every=0)))
    assert json.loads((out / "config.json").read_text())["grad_scaler"] is True
    rec = _records(out)
    assert all(np.isfinite(r["loss"]) and "loss_scale" in r for r in rec)

    cfg = Config(img_size=32, proj_hidden=32, pred_hidden=32, proj_dim=16, layer_scale_init=0.1)
    model = build_model(cfg)
    teacher = make_teacher(model)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for g in optim.param_groups:
        g["lr_scale"] = 1.0
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 60)             # overflows fp16 gradients
    ctx = Context(0, 1, torch.device("cpu"), torch.float16, tmp_path, 1, 1, 1e-3)
    batch = {"views": torch.rand(4, 2, 13, 32, 32), "labels": torch.eye(4, 9), "index": torch.arange(4)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    _, norm, ok = softcon_step(model, teacher, SoftContrastiveLoss(), optim, scaler, batch,
                               list(model.parameters()), 0, 0.9, cfg, ctx)
    assert not ok and scaler.get_scale() == 2.0 ** 59                       # skipped, scale halved
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if v.is_floating_point()
               and "running" not in k)
    assert all(torch.equal(t_before[k], v) for k, v in teacher.state_dict().items() if "running" not in k
               and v.is_floating_point())
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    _, norm, ok = softcon_step(model, teacher, SoftContrastiveLoss(), optim, scaler, batch,
                               list(model.parameters()), 0, 0.9, cfg, ctx)
    assert ok and not torch.equal(before["projector.0.weight"], model.state_dict()["projector.0.weight"])


def test_persistent_workers_see_each_epoch(crop, tmp_path):  # noqa: F811
    """One loader for the whole run: a worker process must still draw epoch 1's augmentations in epoch 1."""
    a, b = tmp_path / "w0", tmp_path / "w1"
    kw = dict(max_steps=0, epochs=2, patch_size=96, save_every=0, log_every=1)
    main(parse_args(_args(crop, a, num_workers=0, **kw)))
    main(parse_args(_args(crop, b, num_workers=1, **kw)))
    np.testing.assert_allclose(_losses(a), _losses(b), atol=1e-6, rtol=0)
    assert len(_losses(a)) == 2


def test_help_explains_every_option():
    text = get_args_parser().format_help()
    for f in fields(Config):
        assert f"--{f.name} " in text, f.name
        assert len(f.metadata["help"]) > 10, f.name
    assert text.count("(default:") >= len(fields(Config))
    proc = subprocess.run([sys.executable, "-m", "train.pretrain", "--help"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--soft_weight" in proc.stdout and "lambda" in proc.stdout
