"""Cost of a SoftCon training step relative to a plain encoder step, and the saving from token masking.

    python benchmarks/train.py [--archs vit_small_patch14_dinov2,resnet50] [--batch 2] [--img-size 224]
    python benchmarks/train.py --smoke    # the tiny ViT at 64 px, one repeat (tests run this)

For each architecture, on the same batch of B scenes x 2 views (2B images):

- ``plain``: forward + backward of the encoder alone on the 2B images (mean of the pooled features as a
  stand-in loss) + an AdamW step: the least any two-view method has to do;
- ``softcon``: ``train.pretrain.softcon_step`` without masking: student (encoder + projector + predictor)
  forward/backward, EMA teacher forward on both views, SoftCon loss with labels, AdamW, EMA update;
- ``softcon_masked``: the same with 50 % masking (ViT: tokens dropped; ResNet: pixels zeroed, no saving).

Prints one JSON object: seconds per step (median of ``--repeats`` after one warm-up) and the ratios
``softcon / plain`` (the issue's target: <= 1.3) and ``softcon_masked / softcon``. A teacher forward costs
about a third of a forward + backward, so ~1.33 is the floor of any EMA-teacher method without masking.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.device import autocast, resolve_precision  # noqa: E402
from core.models.encoders import build_encoder  # noqa: E402
from core.loss import SoftContrastiveLoss  # noqa: E402
from train.config import Config  # noqa: E402
from train.distributed import Context  # noqa: E402
from train.model import build_model, make_teacher, zero_invariant_grads  # noqa: E402
from train.optim import param_groups  # noqa: E402
from train.pretrain import softcon_step  # noqa: E402

HEADS = {"resnet50": dict(proj_layers=2), "vit_small_patch14_dinov2": dict(proj_layers=3)}


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (allocator, oneDNN kernels)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(arch: str, batch: int, img: int, repeats: int, precision: str, proj_hidden: int) -> dict:
    device = torch.device("cpu")
    dtype = resolve_precision(device, precision)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    views = torch.rand(batch, 2, 13, img, img, generator=g)
    labels = (torch.rand(batch, 9, generator=g) < 0.3).float()
    data = {"views": views, "labels": labels, "index": torch.arange(batch)}

    # plain encoder step on the same 2B images
    enc = build_encoder(arch, 13, img).train()
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-6)
    x = views.flatten(0, 1)

    def plain():
        with autocast(device, dtype):
            loss = enc(x).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    out = {"arch": arch, "images_per_step": 2 * batch, "img_size": img, "autocast": str(dtype)}
    out["plain_s"] = _time(plain, repeats)

    for name, ratio in (("softcon_s", 0.0), ("softcon_masked_s", 0.5)):
        cfg = Config(arch=arch, img_size=img, mask_ratio=ratio, proj_hidden=proj_hidden, pred_hidden=proj_hidden,
                     **HEADS.get(arch, {}))
        model = build_model(cfg).train()
        teacher = make_teacher(model).train()
        zero_invariant_grads(model)
        optim = torch.optim.AdamW(param_groups(model, 0.05, 1.0), lr=1e-6)
        for grp in optim.param_groups:
            grp["lr"] = 1e-6 * grp["lr_scale"]
        loss_fn = SoftContrastiveLoss(cfg.temperature, cfg.soft_weight, cfg.soft_form, cfg.soft_temperature)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        params = [p for p in model.parameters() if p.requires_grad]
        ctx = Context(0, 1, device, dtype, Path("."), 1, 1, 1e-6)
        out[name] = _time(lambda: softcon_step(model, teacher, loss_fn, optim, scaler, data, params, 0, 0.99,
                                               cfg, ctx),
                          repeats)
    out["softcon_over_plain"] = out["softcon_s"] / out["plain_s"]
    out["masked_over_unmasked"] = out["softcon_masked_s"] / out["softcon_s"]
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="vit_small_patch14_dinov2,resnet50")
    p.add_argument("--batch", type=int, default=2, help="scenes per step (x 2 views)")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="fp32", choices=["auto", "bf16", "fp16", "fp32"])
    p.add_argument("--proj-hidden", type=int, default=4096, help="MoCo v3 projector/predictor width")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    p.add_argument("--smoke", action="store_true", help="the tiny ViT at 64 px, small heads, one repeat")
    args = p.parse_args(argv)
    if args.smoke:
        args.archs, args.batch, args.img_size, args.repeats, args.proj_hidden = "vit_tiny_patch8_64", 2, 64, 1, 64
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "load_avg_1min": os.getloadavg()[0], "results": []}
    for arch in args.archs.split(","):
        result["results"].append(bench(arch, args.batch, args.img_size, args.repeats, args.precision,
                                       args.proj_hidden))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
