"""Blending of overlapping dense windows (core.embed.blend) and the encoder's position bias (core.embed.position_bias)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import blended_tokens

from core.embed import position_bias
from core.embed.blend import halo_windows, taper, TokenBlender
from core.models.registry import get_record
from core.models.weights import weights_id


@pytest.mark.parametrize("tokens, cells", [(8, 4), (8, 6), (8, 8), (4, 2)])
def test_tapers_sum_to_one_wherever_windows_overlap(tokens, cells):
    w = taper(tokens, tokens - cells)
    total = np.zeros(tokens * 4)
    for start in range(0, len(total) - tokens + 1, cells):
        total[start:start + tokens] += w
    inside = total[tokens:-tokens]  # away from the ends, every token is covered by the same number of windows
    np.testing.assert_allclose(inside, 1.0, atol=1e-6)
    # symmetric, highest in the middle, edge tokens (least context) weigh least
    assert np.allclose(w, w[::-1]) and np.all(np.diff(w[:tokens // 2]) >= 0) and (w[0] < 0.2 if cells < tokens else w[0] == 1)


@pytest.mark.parametrize("cells, margin", [(4, 2), (6, 1)])
def test_blender_gives_the_taper_weighted_mean_of_the_windows_over_each_token(cells, margin):
    rng = np.random.default_rng(0)
    t, height, width, dim = cells + 2 * margin, 3 * cells - 1, 4 * cells, 5
    halo = halo_windows(margin, cells)
    windows = {(i, j): rng.normal(size=(dim, t, t)).astype(np.float32)
               for i in range(-halo, 3 + halo) for j in range(-halo, 4 + halo)}
    blender = TokenBlender(dim, cells, t, margin, height, width)
    for (i, j), tok in windows.items():
        blender.add(i, j, tok)
    out = np.concatenate([blender.pop(b) for b in range(3)], axis=1)[:, :height]
    want, _ = blended_tokens(windows, range(height), range(width), cells, margin)
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_blender_leaves_tokens_no_window_reached_as_nodata_and_forgets_finished_rows():
    blender = TokenBlender(2, 4, 8, 2, 8, 8)
    blender.add(0, 0, np.ones((2, 8, 8), np.float32))
    first = blender.pop(0)
    assert np.isfinite(first[:, :, :6]).all() and np.isnan(first[:, :, 6:]).all()  # window (0, 0) reaches columns 0-5
    second = blender.pop(1)  # the window reaches output rows 0-5: block 1 holds its rows 4 and 5
    assert np.isfinite(second[:, :2, :6]).all() and np.isnan(second[:, 2:]).all()
    assert np.isnan(blender.pop(5)).all() and not blender._sum


def test_position_bias_is_used_only_with_the_weights_it_was_measured_on():
    record = get_record("galileo_nano_s2")
    bias, source = position_bias.load(record, weights_id(record, True))
    assert bias.shape == (128, 8, 8) and "EuroSAT" in source
    # a bias: its mean over positions is zero, and it is largest at the window's edge (one-sided context)
    np.testing.assert_allclose(bias.mean(axis=(1, 2)), 0, atol=1e-5)
    norm = np.linalg.norm(bias, axis=0)
    assert norm[[0, -1]].mean() > norm[2:6, 2:6].mean()
    assert position_bias.load(record, "sha256:0000000000000000") == (None, "none")
    assert position_bias.load(get_record("softcon_tiny_s2"), "anything") == (None, "none")
