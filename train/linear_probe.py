"""Frozen-feature evaluation: kNN and linear probe (DINOv2 ``eval/knn.py`` and ``eval/linear.py``).

Features are extracted once through ``core`` (``train.features``), then classified:

- kNN as in DINOv2 (Wu et al. 2018): cosine similarity of L2-normalised features, the ``k`` nearest
  training patches vote with weight ``exp(sim / T)`` (k = 20, T = 0.07), batched top-k in torch. One
  change, on by default (``--no-center`` turns it off): the training mean is subtracted first
  (SimpleShot's CL2N), without which near-constant features (random init) score below chance.
- Linear: scikit-learn logistic regression on standardised features, C chosen by an inner
  stratified 3-fold search over a small grid (one-vs-rest per class for multi-label sets).

Protocols: ``--train DIR --test DIR``, or stratified k-fold cross-validation when only ``--train``
is given. EuroSAT-style class folders give accuracy; BigEarthNet v1 patch folders give mean
average precision over the 19-class nomenclature. ``--spectral`` replaces the encoder by per-band
mean and std of each patch (the no-network baseline); ``--with-spectral`` joins both.

    python -m train.linear_probe --model softcon_tiny_s2 --train ../shared/data/eurosat_ms --folds 5
    python -m train.linear_probe --model B13_vits14_softcon --random-init --train DIR --feature linear_probe
    python -m train.linear_probe --spectral --train DIR --out outputs/spectral.json

Results go to stdout as JSON (and to ``--out``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from threadpoolctl import threadpool_limits
from sklearn.metrics import average_precision_score
from safetensors import safe_open

from core.classify.classifiers import knn_index, knn_vote
from core.device import pick_device, resolve_precision
from core.models.encoders import build_encoder
from core.errors import SoftConError
from core.models.registry import DEFAULT_MODEL, get_record
from core.models.encoders import create_encoder
from core.io.atomic import write_text_atomic
from core.models.checkpoint import load_weights
from core.models.record import ModelRecord

from .bigearthnet import bigearthnet_splits, is_bigearthnet, statistics_for, streamed_features
from .features import PatchSet, encoder_features, read_class_folders, spectral_features

C_GRID = (0.01, 0.1, 1.0, 10.0)


# ----------------------------------------------------------------------------------------- classifiers
@torch.no_grad()
def knn_scores(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    center: bool = True,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Weighted kNN class scores (DINOv2): (N_test, K), rows sum to 1; the map's kNN
    (:func:`core.classify.classifiers.knn_vote`), here centred by default (``knn_index``).

    Args:
        train_f: (N, D) features; test_f: (M, D).
        train_y: (N, K) one-hot or multi-hot float targets.
    """
    index, mean = knn_index(train_f, center)
    test_f = test_f.float() if mean is None else test_f.float() - mean
    return torch.cat([knn_vote(index, train_y.float(), test_f[i:i + batch_size], k, temperature)
                      for i in range(0, test_f.shape[0], batch_size)])


def _logreg(C: float, seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))


def linear_scores(
    train_f: np.ndarray,
    train_y: np.ndarray,
    test_f: np.ndarray,
    num_classes: int,
    multilabel: bool = False,
    c_grid: tuple[float, ...] = C_GRID,
    seed: int = 0,
) -> tuple[np.ndarray, list[float]]:
    """Logistic-regression class scores (M, K) and the C values chosen.

    Single label: one multinomial model, C picked by stratified inner 3-fold CV (where every
    class has 3 training examples; else C = 1). Multi-label: one binary model per class, C (one for all
    classes) picked by micro mAP on a held-out fifth of the training set, then refitted on all of it.
    """
    scores = np.zeros((test_f.shape[0], num_classes), dtype=np.float64)
    # One BLAS thread: these problems are tiny (~100 x 1000), and multi-threaded BLAS next to
    # torch's OpenMP pool on a busy CPU is 5x slower than one thread.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # convergence chatter on tiny folds
        if multilabel:
            return _multilabel_scores(train_f, train_y, test_f, c_grid, seed)
        present, counts = np.unique(train_y, return_counts=True)
        if len(c_grid) > 1 and counts.min() >= 3:
            search = GridSearchCV(_logreg(1.0, seed), {"logisticregression__C": list(c_grid)},
                                  cv=StratifiedKFold(3, shuffle=True, random_state=seed))
            model = search.fit(train_f, train_y).best_estimator_
        else:
            model = _logreg(1.0 if len(c_grid) > 1 else c_grid[0], seed).fit(train_f, train_y)
        proba = model.predict_proba(test_f)
        scores[:, present] = proba
        return scores, [float(model[-1].C)]


def _binary_scores(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, C: float, seed: int) -> np.ndarray:
    """One logistic regression per class; a constant score where the training set has one value only."""
    scores = np.zeros((test_f.shape[0], train_y.shape[1]))
    for c in range(train_y.shape[1]):
        yc = train_y[:, c]
        if yc.min() == yc.max():
            scores[:, c] = yc[0]
            continue
        scores[:, c] = _logreg(C, seed).fit(train_f, yc).predict_proba(test_f)[:, 1]
    return scores


def _multilabel_scores(train_f, train_y, test_f, c_grid, seed) -> tuple[np.ndarray, list[float]]:
    """Multi-label logistic regression with C chosen by micro mAP on a held-out fifth (C = 1 below 20 patches)."""
    best = 1.0
    if len(c_grid) > 1 and len(train_y) >= 20:
        order = np.random.default_rng(seed).permutation(len(train_y))
        val, fit = order[: len(order) // 5], order[len(order) // 5:]
        score = {C: mean_average_precision(_binary_scores(train_f[fit], train_y[fit], train_f[val], C, seed),
                                           train_y[val])["map_micro"] for C in c_grid}
        best = max(score, key=score.get)
    elif len(c_grid) == 1:
        best = c_grid[0]
    return _binary_scores(train_f, train_y, test_f, best, seed), [float(best)]


# ------------------------------------------------------------------------------------------- metrics
def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float((scores.argmax(axis=1) == y).mean())


def mean_average_precision(scores: np.ndarray, y: np.ndarray) -> dict:
    """Micro AP (all labels pooled: the SoftCon / SSL4EO-S12 BigEarthNet figure) and macro mAP over the
    classes with at least one positive."""
    has = y.sum(axis=0) > 0
    macro = float(average_precision_score(y[:, has], scores[:, has], average="macro"))
    micro = float(average_precision_score(y[:, has], scores[:, has], average="micro"))
    return {"map_macro": macro, "map_micro": micro, "classes_scored": int(has.sum())}


# -------------------------------------------------------------------------------------------- protocol
def splits(y: np.ndarray, folds: int, seed: int, multilabel: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold indices (plain k-fold for multi-label sets); k capped by the data."""
    n = len(y)
    if multilabel:
        k = min(folds, n)
        return list(KFold(k, shuffle=True, random_state=seed).split(np.zeros(n)))
    k = min(folds, int(np.bincount(y).min()))
    if k < 2:
        raise SoftConError("Every class needs at least 2 patches for cross-validation; give --test DIR instead.")
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(n), y))


def evaluate(
    train_f: torch.Tensor,
    train: PatchSet,
    test_f: torch.Tensor | None = None,
    test: PatchSet | None = None,
    methods: tuple[str, ...] = ("knn", "linear"),
    folds: int = 5,
    k: int = 20,
    temperature: float = 0.07,
    seed: int = 0,
    center: bool = True,
) -> dict:
    """Run kNN and/or linear probe on features; a train/test split if ``test`` is given, else k-fold.

    Returns per method: the metric (accuracy or mAP) as mean over folds with its std and the
    per-fold values, plus the same metric on the pooled out-of-fold predictions.
    """
    multilabel = train.multilabel
    num_classes = len(train.classes)
    if test is not None:
        feats = torch.cat([train_f, test_f])
        y = torch.cat([train.y, test.y]).numpy()
        n = len(train.y)
        folds_idx = [(np.arange(n), np.arange(n, len(y)))]
    else:
        feats, y = train_f, train.y.numpy()
        folds_idx = splits(y, folds, seed, multilabel)
    targets = torch.from_numpy(y).float() if multilabel else F.one_hot(torch.from_numpy(y), num_classes).float()
    feats_np = feats.numpy().astype(np.float64)
    results: dict = {}
    for method in methods:
        pooled = np.zeros((len(y), num_classes))
        tested = np.zeros(len(y), dtype=bool)
        per_fold, macro, chosen = [], [], []
        for tr, te in folds_idx:
            if method == "knn":
                s = knn_scores(feats[tr], targets[tr], feats[te], k=k, temperature=temperature, center=center).numpy()
            else:
                s, cs = linear_scores(feats_np[tr], y[tr], feats_np[te], num_classes, multilabel, seed=seed)
                chosen += cs
            pooled[te], tested[te] = s, True
            if multilabel:
                m = mean_average_precision(s, y[te])
                per_fold.append(m["map_micro"])
                macro.append(m["map_macro"])
            else:
                per_fold.append(accuracy(s, y[te]))
        name = "map_micro" if multilabel else "accuracy"
        r = {name: float(np.mean(per_fold)), f"{name}_std": float(np.std(per_fold)),
             f"fold_{name}": [round(v, 4) for v in per_fold]}
        if multilabel:
            r["map_macro"] = float(np.mean(macro))
            r["pooled"] = mean_average_precision(pooled[tested], y[tested])
        else:
            r["pooled_accuracy"] = accuracy(pooled[tested], y[tested])
        if method == "knn":
            r.update(k=k, temperature=temperature, center=center)
        else:
            r["C"] = chosen
        results[method] = r
    return results


# ------------------------------------------------------------------------------------------------- CLI
def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.linear_probe", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help=f"registry name (default {DEFAULT_MODEL}, or the checkpoint's own)")
    p.add_argument("--checkpoint", default=None, help="weights file to evaluate (safetensors / .pth)")
    p.add_argument("--arch", default=None, help="override the record's architecture (core.models.encoders.ARCHS)")
    p.add_argument("--input-size", type=int, default=None, help="override the record's input size (px)")
    p.add_argument("--random-init", action="store_true", help="randomly initialised encoder (baseline)")
    p.add_argument("--spectral", action="store_true", help="per-band mean and std instead of an encoder")
    p.add_argument("--with-spectral", action="store_true", help="join the encoder features with the spectral ones")
    p.add_argument("--texture", action="store_true",
                   help="with --spectral / --with-spectral: add each band's mean absolute neighbour difference")
    p.add_argument("--train", required=True, help="class folders (EuroSAT layout) or BigEarthNet patch folders")
    p.add_argument("--test", default=None, help="test folder; without it, k-fold cross-validation on --train")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--bands", default="eurosat",
                   help="file band order of class-folder patches: preset or list; 'auto' = band descriptions")
    p.add_argument("--method", choices=("knn", "linear", "both"), default="both")
    p.add_argument("--feature", choices=("pooled", "linear_probe", "token_stats"), default="pooled",
                   help="pooled embedding, DINOv2 4-layer features (CLS of last 4 blocks + mean patch), or "
                        "token_stats (pooled + mean + std of the dense features)")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--no-center", dest="center", action="store_false",
                   help="kNN on raw L2-normalised features (DINOv2 exactly) instead of train-mean-centred ones")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--check-precision", action="store_true",
                   help="compare bf16/fp16 features with float32 on every patch (cosine min/mean in the JSON)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = torch's default); 1 is much faster on a shared, busy CPU")
    p.add_argument("--out", default=None, help="also write the JSON results here")
    ben = p.add_argument_group("BigEarthNet (patch folders; features are streamed to disk in batches)")
    ben.add_argument("--train-list", default=None,
                     help="patch names of the training split (e.g. the official train.csv); default: every patch")
    ben.add_argument("--test-list", default=None, help="patch names of the test split; default: every patch")
    ben.add_argument("--train-fraction", type=float, default=1.0,
                     help="keep a uniform random share of the training split (0.1 = the paper's BigEarthNet-10%%)")
    ben.add_argument("--split-seed", type=int, default=42, help="seed of the --train-fraction draw")
    ben.add_argument("--stats", choices=("auto", "model", "l2a"), default="auto",
                     help="band statistics: auto = SSL4EO-S12 L2A statistics for BigEarthNet-S2 (L2A) with a 13-band "
                          "L1C model; model = the record's own")
    ben.add_argument("--features-dir", default=None,
                     help="where the streamed features (.npy) and the training patch list go; default: a temporary "
                          "folder")
    return p


def _checkpoint_model_name(path: Path) -> str | None:
    if path.suffix != ".safetensors":
        return None

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get("model")


def build(args: argparse.Namespace) -> tuple[torch.nn.Module | None, ModelRecord]:
    """The encoder (None for ``--spectral``) and the record that says how to feed it."""
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    if ckpt is not None and not ckpt.is_file():
        raise SoftConError(f"Checkpoint {ckpt} does not exist.")
    name = args.model or (ckpt and _checkpoint_model_name(ckpt)) or DEFAULT_MODEL
    record = get_record(name)
    if args.spectral:
        return None, record
    if args.arch is None and args.input_size is None:
        encoder, record = create_encoder(name, pretrained=not args.random_init, checkpoint=ckpt)
        return encoder, record
    record = replace(record, arch=args.arch or record.arch, input_size=args.input_size or record.input_size)
    try:
        encoder = build_encoder(record.arch, record.in_chans, record.input_size)
    except KeyError as e:
        raise SoftConError(str(e.args[0])) from None
    record = replace(record, embed_dim=encoder.embed_dim)
    if not args.random_init:
        if ckpt is None:
            raise SoftConError("--arch needs --checkpoint (or --random-init): the record's own weights "
                               "belong to its own architecture.")
        load_weights(encoder, ckpt, record)
    return encoder.eval(), record


def features_for(args, encoder, record, data: PatchSet, device, dtype) -> tuple[torch.Tensor, dict]:
    if encoder is None:
        return spectral_features(data.x, record, args.texture), {}
    f, info = encoder_features(encoder, record, data.x, feature=args.feature, batch_size=args.batch_size,
                               device=device, dtype=dtype, check_all=args.check_precision)
    if args.with_spectral:
        # Each block L2-normalised so neither dominates the kNN cosine; the linear probe standardises anyway.
        f = torch.cat([F.normalize(f, dim=1), F.normalize(spectral_features(data.x, record, args.texture), dim=1)], dim=1)
    return f, info


def _write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    encoder, record = build(args)
    device = pick_device(args.device)
    dtype = resolve_precision(device, args.precision)
    bands = None if args.bands == "auto" else args.bands
    with tempfile.TemporaryDirectory() as tmp:
        if is_bigearthnet(args.train):
            record = statistics_for(record, args.stats)
            feat_dir = Path(args.features_dir or tmp)
            train, test = bigearthnet_splits(args, record, feat_dir)
            t1 = time.perf_counter()
            train_f = streamed_features(args, encoder, record, train, device, dtype, feat_dir / "train_features.npy")
            test_f = streamed_features(args, encoder, record, test, device, dtype, feat_dir / "test_features.npy") \
                if test is not None else None
            info = {}
        else:
            train = read_class_folders(args.train, record.bands, bands)
            test = read_class_folders(args.test, record.bands, bands, train.classes) if args.test else None
            t1 = time.perf_counter()
            train_f, info = features_for(args, encoder, record, train, device, dtype)
            test_f = features_for(args, encoder, record, test, device, dtype)[0] if test is not None else None
    t2 = time.perf_counter()
    methods = ("knn", "linear") if args.method == "both" else (args.method,)
    results = evaluate(train_f, train, test_f, test, methods, args.folds, args.k, args.temperature, args.seed,
                       args.center)
    n_folds = 1 if test is not None else len(splits(train.y.numpy(), args.folds, args.seed, train.multilabel))
    spectral = "spectral" + ("+texture" if args.texture else "")
    kind = spectral if encoder is None else args.feature + ("+" + spectral if args.with_spectral else "")
    result = {
        "model": record.name,
        "arch": None if encoder is None else record.arch,
        "checkpoint": args.checkpoint,
        "pretrained": encoder is not None and not args.random_init,
        "features": kind,
        "dim": int(train_f.shape[1]),
        "input_size": record.input_size,
        "dataset": str(args.train),
        "test": args.test,
        "task": "multilabel" if train.multilabel else "multiclass",
        "protocol": "train/test" if test is not None else f"{n_folds}-fold",
        "n_train": len(train.paths),
        "n_test": len(test.paths) if test is not None else None,
        "classes": train.classes,
        "device": str(device),
        "precision": "fp32" if dtype is None or encoder is None else str(dtype).replace("torch.", ""),
        "statistics": record.stats,
        **info,
        **results,
        "seconds": {"read": round(t1 - t0, 2), "features": round(t2 - t1, 2),
                    "classify": round(time.perf_counter() - t2, 2)},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        _write_json(result, Path(args.out))
    return result


if __name__ == "__main__":
    try:
        main()
    except SoftConError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
