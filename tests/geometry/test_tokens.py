"""Crop geometry, token grid and per-cell aggregation against direct computations."""

import numpy as np
import pytest

from video3d_ros.geometry import (
    Aggregation,
    FrameFit,
    crop_inside_mask,
    discretize_coords,
    patch_coords_m,
    resize_crop_nearest,
    resize_crop_params,
    token_grid,
)


def test_token_grid_paper_shape():
    g = token_grid(384, 14, 2)
    assert (g.patches_per_side, g.used_px, g.pooled_per_side, g.cell_px) == (27, 378, 14, 27)
    g = token_grid(64, 8, 2)
    assert (g.patches_per_side, g.used_px, g.pooled_per_side, g.cell_px) == (8, 64, 4, 16)


def test_token_grid_rejects_inexact_cells():
    with pytest.raises(ValueError, match="not divisible"):
        token_grid(70, 10, 3)  # 7 patches -> 3 pooled, 70 px not divisible by 3
    with pytest.raises(ValueError, match="pool_stride"):
        token_grid(384, 14, 0)


def test_resize_crop_params_landscape_and_portrait():
    s = resize_crop_params(480, 640, 384)
    assert (s.resized_height_px, s.resized_width_px, s.top_px, s.left_px) == (384, 512, 0, 64)
    s = resize_crop_params(640, 480, 384)
    assert (s.resized_height_px, s.resized_width_px, s.top_px, s.left_px) == (512, 384, 64, 0)


def test_pad_fits_the_long_side_and_centres_the_frame():
    s = resize_crop_params(480, 640, 384, FrameFit.PAD)
    assert (s.resized_height_px, s.resized_width_px, s.top_px, s.left_px) == (288, 384, -48, 0)
    s = resize_crop_params(640, 480, 384, FrameFit.PAD)
    assert (s.resized_height_px, s.resized_width_px, s.top_px, s.left_px) == (384, 288, 0, -48)
    inside = crop_inside_mask(s)
    assert inside[:, 48:336].all() and not inside[:, :48].any() and not inside[:, 336:].any()
    # a square frame is the same either way; a centre crop has no padding
    assert resize_crop_params(50, 50, 16, FrameFit.PAD) == resize_crop_params(50, 50, 16)
    assert crop_inside_mask(resize_crop_params(30, 50, 16)).all()
    # a 1-px-high strip still keeps one row
    assert resize_crop_params(1, 500, 16, FrameFit.PAD).resized_height_px == 1
    with pytest.raises(TypeError, match="FrameFit"):
        resize_crop_params(30, 50, 16, "pad")


def test_padded_nearest_resize_is_torch_nearest_on_the_inside_and_edge_outside():
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(0).normal(size=(30, 50, 3)).astype(np.float32)
    spec = resize_crop_params(30, 50, 16, FrameFit.PAD)
    ours = resize_crop_nearest(img, spec)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    resized = torch.nn.functional.interpolate(
        t, size=(spec.resized_height_px, spec.resized_width_px), mode="nearest"
    )[0].permute(1, 2, 0).numpy()  # (9, 16, 3)
    top = -spec.top_px
    np.testing.assert_array_equal(ours[top:top + 9], resized)
    # padding repeats the nearest edge row
    np.testing.assert_array_equal(ours[:top], np.broadcast_to(resized[0], (top, 16, 3)))
    np.testing.assert_array_equal(ours[top + 9:], np.broadcast_to(resized[-1], (16 - top - 9, 16, 3)))
    assert crop_inside_mask(spec).sum() == 9 * 16
    # or holds a fill value there, the inside unchanged
    filled = resize_crop_nearest(img, spec, fill=-7.0)
    np.testing.assert_array_equal(filled[top:top + 9], resized)
    assert (filled[:top] == -7).all() and (filled[top + 9:] == -7).all()
    # a centre crop has no padding: a fill changes nothing
    crop = resize_crop_params(30, 50, 16)
    np.testing.assert_array_equal(resize_crop_nearest(img, crop, fill=-7.0),
                                  resize_crop_nearest(img, crop))


def test_resize_crop_nearest_matches_torch_nearest():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    img = rng.normal(size=(30, 50, 3)).astype(np.float32)
    spec = resize_crop_params(30, 50, 16)
    ours = resize_crop_nearest(img, spec)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    resized = torch.nn.functional.interpolate(
        t, size=(spec.resized_height_px, spec.resized_width_px), mode="nearest"
    )[0].permute(1, 2, 0).numpy()
    ref = resized[spec.top_px : spec.top_px + 16, spec.left_px : spec.left_px + 16]
    np.testing.assert_array_equal(ours, ref)
    with pytest.raises(ValueError, match="array"):
        resize_crop_nearest(img[:10], spec)


def _loop_reference(xyz, valid, g, agg, ignore):
    """Independent per-cell loop."""
    G, c = g.pooled_per_side, g.cell_px
    out = np.full((G, G, 6 if agg is Aggregation.MIN_MAX else 3), np.nan)
    for i in range(G):
        for j in range(G):
            cell = xyz[i * c : (i + 1) * c, j * c : (j + 1) * c].reshape(-1, 3)
            m = valid[i * c : (i + 1) * c, j * c : (j + 1) * c].reshape(-1)
            if agg is Aggregation.CENTER:
                p = xyz[i * c + c // 2, j * c + c // 2]
                ok = valid[i * c + c // 2, j * c + c // 2] or not ignore
                out[i, j] = p if ok else np.nan
                continue
            pts = cell[m] if ignore else cell
            if len(pts) == 0:
                continue
            if agg is Aggregation.MEAN:
                out[i, j] = pts.mean(0)
            else:
                out[i, j] = np.r_[pts.min(0), pts.max(0)]
    return out


@pytest.mark.parametrize("agg", list(Aggregation))
@pytest.mark.parametrize("ignore", [False, True])
def test_patch_coords_against_loop(agg, ignore):
    g = token_grid(30, 5, 2)  # 6 patches, 30 px used, 3 pooled, 10 px cells
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(30, 30, 3)).astype(np.float32)
    valid = rng.random((30, 30)) > 0.3
    valid[:10, :10] = False  # one cell with no valid pixel at all
    ours = patch_coords_m(xyz, valid, g, agg, ignore)
    ref = _loop_reference(xyz.astype(np.float64), valid, g, agg, ignore)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    if ignore and agg is not Aggregation.CENTER:
        assert np.isnan(ours[0, 0]).all()


def test_patch_coords_drops_unused_border():
    g = token_grid(32, 5, 2)  # 6 patches -> 30 px used, last 2 px dropped
    xyz = np.zeros((32, 32, 3), np.float32)
    xyz[30:, :] = 1000.0
    xyz[:, 30:] = 1000.0
    out = patch_coords_m(xyz, np.ones((32, 32), bool), g, Aggregation.MEAN, False)
    np.testing.assert_array_equal(out, 0.0)


def test_patch_coords_bad_input():
    g = token_grid(30, 5, 2)
    with pytest.raises(ValueError, match="xyz_m"):
        patch_coords_m(np.zeros((29, 30, 3), np.float32), np.ones((29, 30), bool), g)
    with pytest.raises(TypeError, match="valid"):
        patch_coords_m(np.zeros((30, 30, 3), np.float32), np.ones((30, 30), np.uint8), g)
    with pytest.raises(TypeError, match="aggregation"):
        patch_coords_m(np.zeros((30, 30, 3), np.float32), np.ones((30, 30), bool), g, "mean")


def test_discretize_coords():
    pts = np.array([[0.0, 0.0, 0.0], [-20.0, 20.0, 1.04], [1.26, -0.04, -5.0]])
    out = discretize_coords(pts)
    np.testing.assert_array_equal(out, [[150, 150, 50], [0, 300, 60], [163, 150, 0]])
    assert out.dtype == np.int64
    with pytest.raises(ValueError, match="finite"):
        discretize_coords(np.array([[np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="voxel_size_m"):
        discretize_coords(pts, voxel_size_m=0.0)
