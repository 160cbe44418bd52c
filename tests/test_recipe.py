"""Recipe units: resampling kernels, resize-pad/crop inverses, UDP warp, flip test, intrinsics, boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import recipe, resample
from engine.intrinsics import intrinsics_from_pointmap
from engine.paths import asset
from engine.person import manual, people_from_foreground, whole_image


def _resize(image: np.ndarray, size_hw, kind: str) -> np.ndarray:
    """H x W x C through resample.axis_weights (the GPU path's kernels), rows then columns."""
    wy = resample.axis_weights(image.shape[0], size_hw[0], kind).toarray()
    wx = resample.axis_weights(image.shape[1], size_hw[1], kind).toarray()
    rows = np.tensordot(wy, np.asarray(image, dtype=np.float32), axes=(1, 0))      # out_h x W x C
    return np.ascontiguousarray(np.tensordot(wx, rows, axes=(1, 1)).transpose(1, 0, 2), dtype=np.float32)


@pytest.fixture(autouse=True)
def _seeded():
    """Random test data is the same on every run."""
    torch.manual_seed(0)


@pytest.mark.parametrize("src, dst", [((37, 53), (100, 80)), ((1024, 768), (333, 1201)), ((64, 48), (64, 48))])
def test_linear_matches_torch_bilinear(src, dst):
    x = torch.randn(1, 5, *src)
    want = F.interpolate(x, size=dst, mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    got = _resize(x[0].permute(1, 2, 0).numpy(), dst, "linear")
    # torch computes source coordinates in float32 (1e-4 px at 1024), we in float64
    assert np.abs(got - want).max() < 2e-3
    lerped = resample.linear_rows(x[0], dst).permute(1, 2, 0).numpy()
    assert np.abs(lerped - want).max() < 2e-3 and np.abs(lerped - got).max() < 2e-3
    assert torch.equal(resample.linear_rows(x[0], dst, 5, 9), torch.from_numpy(lerped[5:9]).permute(2, 0, 1))


def test_cubic_matches_torch_bicubic_when_enlarging():
    x = torch.rand(1, 3, 40, 30) * 255
    want = F.interpolate(x, size=(100, 77), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    got = _resize(x[0].permute(1, 2, 0).numpy(), (100, 77), "cubic")
    assert np.abs(got - want).max() < 1e-3


def test_area_is_block_mean_for_integer_ratios_and_preserves_mean():
    rng = np.random.default_rng(0)
    img = rng.random((60, 90, 3)).astype(np.float32)
    got = _resize(img, (20, 30), "area")
    want = img.reshape(20, 3, 30, 3, 3).mean(axis=(1, 3))
    assert np.allclose(got, want, atol=1e-6)
    frac = _resize(img, (17, 41), "area")   # fractional ratio: every input pixel counted once
    assert frac.mean() == pytest.approx(img.mean(), abs=1e-5)
    assert frac.min() >= img.min() - 1e-6 and frac.max() <= img.max() + 1e-6


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth shading plus noise: every kernel tap and rounding decision matters."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) % 256], axis=-1)
    return np.clip(smooth + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _reference_inputs(photo: np.ndarray, bbox) -> dict:
    """The model inputs as the reference builds them, written from inference_recipe.md with cv2."""
    import cv2

    h, w = photo.shape[:2]
    seg = cv2.resize(photo, (768, 1024), interpolation=cv2.INTER_AREA if w > 768 else cv2.INTER_CUBIC)
    scale = min(1024 / h, 768 / w)
    new_w, new_h = int(w * scale), int(h * scale)
    top, left = (1024 - new_h) // 2, (768 - new_w) // 2
    dense = cv2.copyMakeBorder(cv2.resize(photo, (new_w, new_h), interpolation=cv2.INTER_LINEAR),
                               top, 1024 - new_h - top, left, 768 - new_w - left, cv2.BORDER_CONSTANT, value=0)
    x1, y1, x2, y2 = bbox
    bw, bh = (x2 - x1) * 1.25, (y2 - y1) * 1.25
    bw, bh = (bw, bw * 4 / 3) if bw > bh * 0.75 else (bh * 0.75, bh)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    sx, sy = 767 / bw, 1023 / bh
    m = np.array([[sx, 0, sx * (bw / 2 - cx)], [0, sy, sy * (bh / 2 - cy)]])
    flag = cv2.INTER_AREA if min(sx, sy) < 1 else cv2.INTER_CUBIC
    pose = cv2.warpAffine(photo, m, (768, 1024), flags=flag, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return {"seg": seg, "dense": dense, "pose": pose}


@pytest.mark.parametrize("hw, bbox", [
    ((600, 900), (300, 50, 520, 580)),      # wider than 3:4: padded top and bottom, seg by area, pose shrinks
    ((1536, 1152), (100, 0, 1100, 1500)),   # the model's aspect, larger: no padding
    ((517, 301), (40, 20, 260, 500)),        # smaller and narrow: enlarged (cubic), padded left and right
    ((1024, 768), (0, 0, 767, 1023)),        # the model's size
])
def test_model_inputs_are_bit_identical_to_opencv(hw, bbox):
    """The inputs predict hands the models (CpuOps, then the normalized batch) equal the reference's."""
    from types import SimpleNamespace

    from engine.predict.ops import CpuOps

    photo = _photo(*hw)
    want = _reference_inputs(photo, bbox)
    ops = CpuOps()
    works = [SimpleNamespace(photo=SimpleNamespace(rgb=photo))]
    crop = recipe.pose_crop(bbox)
    got = {"seg": ops.seg_inputs(works)[0], "dense": ops.dense_inputs(works)[0][0],
           "pose": ops.pose_inputs([(works[0], crop)])[0]}
    for name in want:
        assert got[name].dtype == np.uint8 and got[name].shape == (1024, 768, 3), name
        assert np.array_equal(got[name], want[name]), f"{name}: {np.count_nonzero(got[name] != want[name])} values differ"
        assert torch.equal(ops.batch([got[name]]), recipe.normalize(want[name][None])), name
    # an upright view of a rotated photo (EXIF) is not contiguous in memory: same result
    turned = np.ascontiguousarray(photo.transpose(1, 0, 2))
    assert np.array_equal(recipe.seg_input(turned.transpose(1, 0, 2)), want["seg"])


def test_seg_input_is_a_stretch_to_model_size():
    img = np.zeros((500, 1000, 3), np.uint8)
    img[:, 500:] = 200
    x = recipe.seg_input(img)
    assert x.shape == (1024, 768, 3) and x.dtype == np.uint8
    assert (x[:, :380] == 0).all() and (x[:, 388:] == 200).all()  # halves stay halves


@pytest.mark.parametrize("hw", [(1000, 1000), (333, 777), (4000, 3000), (1024, 768), (101, 2000)])
def test_letterbox_pad_and_crop_are_exact_inverses(hw):
    box = recipe.Letterbox.fit(hw)
    assert box.input_hw == recipe.INPUT_HW
    rh, rw = box.resized_hw
    assert (rh, rw) == (int(hw[0] * box.scale), int(hw[1] * box.scale))
    assert box.pad_bottom - box.pad_top in (0, 1) and box.pad_right - box.pad_left in (0, 1)
    resized = np.random.default_rng(1).integers(1, 255, (rh, rw, 3), dtype=np.uint8)
    padded = box.pad(resized)
    assert np.array_equal(box.crop(padded.transpose(2, 0, 1)).transpose(1, 2, 0), resized)
    border = np.ones(recipe.INPUT_HW, bool)
    border[box.pad_top:box.pad_top + rh, box.pad_left:box.pad_left + rw] = False
    assert (padded[border] == 0).all()
    # model-input maps back to the photo: a constant map stays constant, the size is the photo's
    out = recipe.to_photo(torch.full((3, *recipe.INPUT_HW), 0.25), box)
    assert out.shape == (*hw, 3) and np.allclose(out, 0.25)


def test_dense_outputs_back_on_the_photo():
    hw = (300, 500)
    _, box = recipe.dense_input(np.zeros((*hw, 3), np.uint8))
    raw = torch.randn(3, *recipe.INPUT_HW)
    n = recipe.normal_output(raw, box)
    assert n.shape == (*hw, 3)
    assert np.allclose(np.linalg.norm(n, axis=-1), 1, atol=1e-5)
    a = recipe.albedo_output(raw * 2, box)
    assert a.min() >= 0 and a.max() <= 1
    points = torch.ones(3, *recipe.INPUT_HW) * torch.tensor([1.0, 2.0, 4.0])[:, None, None]
    p = recipe.pointmap_output(points, torch.tensor([[2.0]]), box)
    assert np.allclose(p, [0.5, 1.0, 2.0])


def test_pointmap_is_smoothed_only_when_upsampling():
    rng = torch.Generator().manual_seed(0)
    noisy = torch.randn(3, *recipe.INPUT_HW, generator=rng)
    big = recipe.Letterbox.fit((2048, 1536))
    small = recipe.Letterbox.fit((512, 384))
    up = recipe.pointmap_output(noisy, torch.ones(1, 1), big)
    down = recipe.pointmap_output(noisy, torch.ones(1, 1), small)
    plain_up = recipe.to_photo(noisy, big)
    assert up.std() < 0.5 * plain_up.std()     # the Gaussian passes removed most noise
    assert np.allclose(down, recipe.to_photo(noisy, small), atol=1e-6)


def test_gaussian_smooth_matches_its_definition():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1
    y = recipe.gaussian_smooth(x, passes=1)
    k = np.exp(-0.5 * (np.arange(-1, 2) / 0.8) ** 2)
    k /= k.sum()
    assert np.allclose(y[0, 0, 3:6, 3:6].numpy(), np.outer(k, k), atol=1e-6)
    assert y.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_pose_box_padding_and_aspect():
    center, scale = recipe.box_center_scale([100, 50, 200, 450])   # tall: width grows to 3:4
    assert np.allclose(center, [150, 250])
    assert np.allclose(scale, [500 * 0.75, 500])
    center, scale = recipe.box_center_scale([0, 0, 400, 100])      # wide: height grows
    assert np.allclose(scale, [500, 500 / 0.75])


def test_udp_warp_maps_box_corners_where_the_reference_does():
    crop = recipe.pose_crop([100, 50, 200, 450])
    c, s = crop.center, crop.scale
    m = crop.matrix
    corners = np.array([[c[0] - s[0] / 2, c[1] - s[1] / 2, 1], [c[0] + s[0] / 2, c[1] + s[1] / 2, 1]])
    mapped = corners @ m.T
    assert np.allclose(mapped[0], [0, 0]) and np.allclose(mapped[1], [767, 1023])
    assert np.allclose(np.array([*c, 1]) @ m.T, [383.5, 511.5])
    assert crop.interpolation == "cubic"  # a 375 px wide box grows to 768


def test_warp_affine_samples_the_photo_through_the_matrix():
    h, w = 300, 200
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx % 256, yy % 256, np.full_like(xx, 77)], axis=-1).astype(np.uint8)
    m = np.array([[2.0, 0, -20.0], [0, 2.0, -40.0]])           # dst = 2 * src - offset
    out = recipe.warp_affine(img, m, (100, 120), "linear")
    ys, xs = np.mgrid[0:120, 0:100]
    src_x, src_y = (xs + 20) / 2, (ys + 40) / 2
    assert np.abs(out[..., 0].astype(float) - src_x).max() <= 0.5 + 1e-6
    assert np.abs(out[..., 1].astype(float) - src_y).max() <= 0.5 + 1e-6
    # outside the photo is black, as cv2's constant border
    far = recipe.warp_affine(img, np.array([[1.0, 0, 500], [0, 1, 0]]), (50, 50))
    assert (far == 0).all()


def test_keypoints_back_to_photo_pixels():
    crop = recipe.pose_crop([100, 50, 200, 450])
    # the input's centre maps to the box centre (+0.5 for pixel centres)
    kp = recipe.keypoints_to_photo(np.array([[384.0, 512.0]]), crop)
    assert np.allclose(kp, crop.center + 0.5)
    left_top = recipe.keypoints_to_photo(np.array([[0.0, 0.0]]), crop)
    assert np.allclose(left_top, crop.center - crop.scale / 2 + 0.5)


def test_flip_test_reorders_channels_by_flip_indices():
    flip = json.loads(asset("keypoints308.json").read_text())["flip_indices"]
    assert sorted(flip) == list(range(308))
    rng = torch.Generator().manual_seed(0)
    heat = torch.rand(2, 308, 8, 6, generator=rng)
    # a model that is exactly mirror-symmetric: its output on the flipped crop is the mirror of
    # `heat` with left/right channels swapped; the flip test must then give `heat` back
    flipped = heat[:, flip].flip(-1)
    assert torch.allclose(recipe.flip_test_average(heat, flipped, flip), heat)
    # left_eye (1) <-> right_eye (2): channel 1 of the result averages in channel 2 of the flip
    other = torch.rand(2, 308, 8, 6, generator=rng)
    avg = recipe.flip_test_average(heat, other, flip)
    assert torch.allclose(avg[:, 1], (heat[:, 1] + other[:, 2].flip(-1)) / 2)


def test_focal_recovery_on_a_synthetic_pointmap():
    h, w, f, cx, cy = 240, 180, 310.0, 95.0, 118.0
    rng = np.random.default_rng(3)
    z = 2.0 + rng.random((h, w))
    v, u = np.mgrid[0:h, 0:w] + 0.5
    pm = np.stack([(u - cx) * z / f, (v - cy) * z / f, z], axis=-1).astype(np.float32)
    mask = np.zeros((h, w), bool)
    mask[30:200, 40:150] = True
    pm[~mask] = np.nan
    pm[35, 45] = [5, 5, 1]   # an outlier the refit drops
    got = intrinsics_from_pointmap(pm, mask)
    assert got.K[0, 0] == pytest.approx(f, rel=1e-4) and got.K[1, 1] == got.K[0, 0]
    assert got.K[0, 2] == pytest.approx(cx, abs=1e-2) and got.K[1, 2] == pytest.approx(cy, abs=1e-2)
    assert got.rms_px < 1e-2
    assert intrinsics_from_pointmap(np.full((10, 10, 3), np.nan, np.float32)) is None


def test_people_from_foreground_largest_first_and_specks_dropped():
    fg = np.zeros((100, 120), bool)
    fg[10:90, 10:40] = True       # big
    fg[20:60, 70:100] = True      # smaller
    fg[95, 115] = True            # speck
    people = people_from_foreground(fg)
    assert [p.area for p in people] == [80 * 30, 40 * 30]
    assert np.allclose(people[0].bbox, [10, 10, 39, 89])
    assert not (people[0].mask & people[1].mask).any()
    assert people_from_foreground(np.zeros((5, 5), bool)) == []
    assert np.allclose(whole_image((100, 120)).bbox, [0, 0, 119, 99])
    m = manual([60, 10, 110, 70], (100, 120), fg)
    assert m.area == 40 * 30 and m.source == "manual"
