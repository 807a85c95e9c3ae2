"""Sensor noise has the specified size: depth σ(z) = 1.2 mm + 1.9 mm·(z − 0.4 m)², colour σ = rgb_noise_std."""

from __future__ import annotations

import dataclasses

import numpy as np

from video3d_ros.scenes import RenderConfig, TrajectoryConfig
from video3d_ros.scenes.render import SceneRenderer
from video3d_ros.scenes.trajectory import scan_trajectory

CLEAN = RenderConfig(width=160, height=120, depth_noise=False, rgb_noise_std=0.0, nthreads=1)


def _pairs(scene, noisy: RenderConfig, frames=(0, 8, 16, 24)):
    """(clean, noisy) frames of the same poses; noise seeds differ per frame."""
    clean_r, noisy_r = SceneRenderer(scene, CLEAN), SceneRenderer(scene, noisy)
    poses = scan_trajectory(scene, TrajectoryConfig(n_frames=30))
    return [(clean_r.render(poses[i], noise_seed=(1, i)), noisy_r.render(poses[i], noise_seed=(1, i)))
            for i in frames]


def test_depth_noise_std_grows_with_distance_as_specified(scene):
    pairs = _pairs(scene, dataclasses.replace(CLEAN, depth_noise=True))
    z_m, err_mm = [], []
    for clean, noisy in pairs:
        ok = (clean.depth_mm > 0) & (noisy.depth_mm > 0)
        z_m.append(clean.depth_mm[ok] / 1000.0)
        err_mm.append(noisy.depth_mm[ok].astype(np.float64) - clean.depth_mm[ok])
    z_m, err_mm = np.concatenate(z_m), np.concatenate(err_mm)
    checked = 0
    for lo, hi in ((0.8, 1.6), (2.0, 3.0), (3.0, 4.5)):
        sel = (z_m >= lo) & (z_m < hi)
        if sel.sum() < 2000:
            continue
        sigma_mm = 1.2 + 1.9 * (z_m[sel] - 0.4) ** 2
        # both depths are rounded to whole mm: each adds variance 1/12 mm²
        expected = np.sqrt(np.mean(sigma_mm ** 2) + 2 / 12)
        measured = err_mm[sel].std()
        assert abs(measured / expected - 1) < 0.08, f"z in [{lo}, {hi}) m: std {measured:.3f} mm vs {expected:.3f}"
        assert abs(err_mm[sel].mean()) < 0.1 * expected, "depth noise is biased"
        checked += 1
    assert checked >= 2, "too few depth ranges populated to check the noise model"


def test_colour_noise_has_configured_std(scene):
    std = 0.01
    pairs = _pairs(scene, dataclasses.replace(CLEAN, rgb_noise_std=std))
    diffs = []
    for clean, noisy in pairs:
        inside = (clean.rgb > 8) & (clean.rgb < 247)          # away from clipping at 0 and 255
        diffs.append(noisy.rgb[inside].astype(np.float64) - clean.rgb[inside])
    d = np.concatenate(diffs)
    assert d.size > 100_000
    expected = np.sqrt((255 * std) ** 2 + 2 / 12)               # + rounding of both to uint8
    assert abs(d.std() / expected - 1) < 0.05, f"colour noise std {d.std():.3f} levels vs {expected:.3f}"
    assert abs(d.mean()) < 0.05


def test_noise_differs_between_seeds_and_is_uncorrelated(scene):
    r = SceneRenderer(scene, dataclasses.replace(CLEAN, depth_noise=True, rgb_noise_std=0.01))
    clean = SceneRenderer(scene, CLEAN).render(scan_trajectory(scene, TrajectoryConfig(n_frames=30))[5])
    T = clean.T_world_cam
    a, b, a2 = r.render(T, noise_seed=(1, 5)), r.render(T, noise_seed=(1, 6)), r.render(T, noise_seed=(1, 5))
    np.testing.assert_array_equal(a.rgb, a2.rgb)
    np.testing.assert_array_equal(a.depth_mm, a2.depth_mm)
    np.testing.assert_array_equal(a.instance_ids, clean.instance_ids)
    na = (a.rgb.astype(np.float64) - clean.rgb).ravel()
    nb = (b.rgb.astype(np.float64) - clean.rgb).ravel()
    assert abs(np.corrcoef(na, nb)[0, 1]) < 0.05
    ok = (clean.depth_mm > 0) & (a.depth_mm > 0) & (b.depth_mm > 0)
    da = a.depth_mm[ok].astype(np.float64) - clean.depth_mm[ok]
    db = b.depth_mm[ok].astype(np.float64) - clean.depth_mm[ok]
    assert abs(np.corrcoef(da, db)[0, 1]) < 0.1
    # the colour and depth noise of one frame are not the same draws either
    assert abs(np.corrcoef(na.reshape(-1, 3)[:, 0][ok.ravel()], da)[0, 1]) < 0.1
