"""The torch pre/post-processing (engine.runtime.gpu_ops) against the numpy recipe, on the CPU and,
where torch sees one, on a CUDA GPU (the same bounds).

The recipe resizes and warps with OpenCV itself; gpu_ops rebuilds those kernels in float on the
device. Tolerances (docs/performance.md), on noise photos, the hardest case: resized uint8 inputs
within 1 grey level (cv2 rounds its linear weights to 11 bits: under 15 % of pixels of noise); the
pose warp within 8 grey levels, under 1 on average (cv2 samples at 1/32-pixel positions);
dense outputs within 1e-4 (relative for pointmaps); seg labels equal except at near-ties;
decoded keypoints within 2e-3 px of the numpy decoder, scores equal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine import recipe
from engine.codecs.udp_heatmap import decode_heatmaps
from engine.runtime import gpu_ops

PHOTO_SIZES = [(600, 450), (300, 500), (1500, 1000)]   # shrink + grow, wide, tall and large
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def _photo(hw, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


def _as_tensor(photo, device="cpu"):
    return gpu_ops.images_to_tensor([photo], device).float()


def _grey_level_diff(a: np.ndarray, b: torch.Tensor):
    d = np.abs(a.astype(np.int16) - b[0].permute(1, 2, 0).cpu().numpy().astype(np.int16))
    return d.max(), (d > 0).mean()


@pytest.mark.parametrize("hw", PHOTO_SIZES)
def test_seg_and_dense_inputs_match_the_recipe(hw, device):
    photo = _photo(hw)
    worst, share = _grey_level_diff(recipe.seg_input(photo), gpu_ops.seg_input(_as_tensor(photo, device)))
    assert worst <= 1 and share < 1e-4
    want, box = recipe.dense_input(photo)
    got, got_box = gpu_ops.dense_input(_as_tensor(photo, device))
    assert got_box == box and got.dtype == torch.uint8
    worst, share = _grey_level_diff(want, got)
    assert worst <= 1 and share < 0.15


@pytest.mark.parametrize("hw, bbox", [((600, 450), (50, 40, 420, 580)), ((2000, 1500), (300, 200, 1100, 1900)),
                                      ((400, 300), (-50, -20, 350, 420))])
def test_pose_warp_matches_the_recipe(hw, bbox, device):
    photo = _photo(hw, seed=1)
    crop = recipe.pose_crop(bbox)
    want = recipe.warp_affine(photo, crop.matrix, recipe.INPUT_WH, crop.interpolation)
    got = gpu_ops.pose_inputs(_as_tensor(photo, device), [crop]).cpu()
    assert got.shape == (1, 3, 1024, 768)
    worst, share = _grey_level_diff(want, got)
    mean = np.abs(want.astype(np.int16) - got[0].permute(1, 2, 0).numpy().astype(np.int16)).mean()
    assert worst <= 8 and mean < 1.0


def test_normalize_matches_the_recipe(device):
    photos = np.stack([_photo((64, 48), s) for s in range(2)])
    want = recipe.normalize(photos)
    got = gpu_ops.normalize(gpu_ops.images_to_tensor(photos, device)).cpu()
    assert torch.allclose(got, want, atol=1e-6)


def _smooth_field(g):
    coarse = torch.randn(1, 3, 32, 24, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(1024, 768), mode="bicubic", align_corners=False)[0]


@pytest.mark.parametrize("photo_hw", [(600, 450), (1500, 1000)])   # downsampled and upsampled outputs
def test_dense_outputs_match_the_recipe(photo_hw, device):
    g = torch.Generator().manual_seed(0)
    box = recipe.Letterbox.fit(photo_hw)
    # smooth fields, as model outputs are (white noise has near-zero normals that renormalizing
    # turns into arbitrary directions)
    raw = _smooth_field(g) + torch.tensor([0.0, 0.0, -1.5]).view(3, 1, 1)
    want = recipe.normal_output(raw, box)
    got = gpu_ops.normal_output(raw.to(device), box).permute(1, 2, 0).cpu().numpy()
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4
    albedo = _smooth_field(g) * 0.5 + 0.5
    want = recipe.albedo_output(albedo, box)
    got = gpu_ops.albedo_output(albedo.to(device), box).permute(1, 2, 0).cpu().numpy()
    assert np.abs(got - want).max() < 1e-4
    points = _smooth_field(g) + torch.tensor([0.0, 0.0, 5.0]).view(3, 1, 1)
    scale = torch.tensor([[0.8]])
    want = recipe.pointmap_output(points, scale, box)
    got = gpu_ops.pointmap_output(points.to(device), scale.to(device), box).permute(1, 2, 0).cpu().numpy()
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()


def test_seg_labels_match_the_recipe(device):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(29, 1024, 768, generator=g) * 3
    size = (700, 520)
    want_labels, want_probs = recipe.seg_labels(logits.numpy(), size, with_probs=True)
    labels, probs = gpu_ops.seg_labels(logits.to(device), size, with_probs=True, rows_per_strip=300)
    agree = (labels.cpu().numpy() == want_labels).mean()
    assert agree > 0.9999
    assert np.abs(probs.float().cpu().numpy() - want_probs.astype(np.float32)).max() < 2e-3


def test_heatmap_decoding_matches_the_numpy_decoder(shared_reference, device):
    fixture = load_file(shared_reference / "parity" / "pose_decode" / "decode.safetensors")
    heatmaps = fixture["heatmaps"]
    input_wh = (heatmaps.shape[-1] * 4, heatmaps.shape[-2] * 4)
    want_kp, want_scores = decode_heatmaps(heatmaps, input_wh)
    kp, scores = (t.cpu() for t in gpu_ops.decode_heatmaps(heatmaps.to(device), input_wh))
    assert np.abs(kp.numpy() - want_kp).max() < 2e-3
    assert np.array_equal(scores.numpy(), want_scores)
    # and against what the reference decoder produced
    assert np.abs(kp.numpy() - fixture["keypoints"].numpy()).max() < 1e-3


def test_heatmap_decoding_marks_maps_without_a_positive_peak(device):
    # seeded: a lone spike among negative values makes DARK's Hessian nearly singular, where
    # float32 numpy and torch solves can differ by a few thousandths of a pixel
    heatmaps = -torch.rand(1, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    heatmaps[0, 1, 5, 7] = 1.0
    kp, scores = (t.cpu() for t in gpu_ops.decode_heatmaps(heatmaps.to(device), (48, 64)))
    want_kp, want_scores = decode_heatmaps(heatmaps, (48, 64))
    assert np.abs(kp.numpy() - want_kp).max() < 1e-3 and np.allclose(scores.numpy(), want_scores)
