"""Pre- and post-processing in torch, so photos and model outputs can stay on the GPU.

Each function computes what its numpy counterpart in engine/recipe.py (or
engine/codecs/udp_heatmap.py) computes, on whatever device its tensors live; tests on the CPU
compare them within the tolerances stated in docs/performance.md:

- resizes are the same separable weight matrices as engine.resample (cv2-equivalent area,
  cubic and linear kernels), applied as two dense matrix products (fast on a GPU);
- the pose crop is F.affine_grid + F.grid_sample with the UDP matrix, align_corners=True,
  the sampling grid built in float64 as the recipe builds it;
- heatmap decoding is argmax + DARK-UDP in torch: blur with zeros outside, rescale to the
  peak, log, one batched 2 x 2 Newton step.

Images are B x C x H x W float tensors holding 0..255 values unless said otherwise.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engine import recipe, resample
from engine.codecs.udp_heatmap import dark_newton_step, gaussian_kernel

SEG_ROWS_PER_STRIP = 1024


# --------------------------------------------------------------------------- basics


def images_to_tensor(images_hwc: list[np.ndarray] | np.ndarray, device, *, pin: bool = False) -> Tensor:
    """uint8 H x W x 3 photos (same size) -> B x 3 x H x W uint8 on `device` (copied pinned)."""
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(list(images_hwc)) if isinstance(images_hwc, list)
                                                  else images_hwc))
    batch = batch.permute(0, 3, 1, 2)
    if pin and torch.device(device).type == "cuda":
        return batch.contiguous().pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def normalize(images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """B x 3 x H x W 0..255 RGB -> (x - mean) / std, as recipe.normalize."""
    mean = torch.as_tensor(recipe.MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.as_tensor(recipe.STD, device=images.device).view(1, 3, 1, 1)
    return ((images.float() - mean) / std).to(dtype)


def to_uint8(images: Tensor) -> Tensor:
    """Round half to even and saturate (np.rint + clip, as resample.to_uint8)."""
    return torch.round(images).clamp_(0, 255).to(torch.uint8)


@lru_cache(maxsize=32)
def _axis_matrix_cpu(n_in: int, n_out: int, kind: str) -> Tensor:
    return torch.from_numpy(resample.axis_weights(n_in, n_out, kind).toarray())


def axis_matrix(n_in: int, n_out: int, kind: str, device) -> Tensor:
    """n_out x n_in dense resampling weights (engine.resample's) on `device`."""
    return _axis_matrix_cpu(n_in, n_out, kind).to(device)


def resize(images: Tensor, size_hw: tuple[int, int], kind_y: str, kind_x: str | None = None) -> Tensor:
    """B x C x H x W -> B x C x h x w float32 with resample.axis_weights' kernels (two matmuls)."""
    kind_x = kind_x or kind_y
    h, w = images.shape[-2:]
    wy = axis_matrix(h, size_hw[0], kind_y, images.device)
    wx = axis_matrix(w, size_hw[1], kind_x, images.device)
    return wy @ images.float() @ wx.T


# --------------------------------------------------------------------------- model inputs


def seg_input(images: Tensor) -> Tensor:
    """Stretch to the model input (area when the width shrinks, else cubic), rounded to uint8."""
    kind = "area" if recipe.INPUT_HW[1] < images.shape[-1] else "cubic"
    return to_uint8(resize(images, recipe.INPUT_HW, kind))


def dense_input(images: Tensor) -> tuple[Tensor, recipe.Letterbox]:
    """Keep-aspect bilinear resize + centred black padding (recipe.dense_input)."""
    box = recipe.Letterbox.fit(tuple(images.shape[-2:]))
    resized = to_uint8(resize(images, box.resized_hw, "linear"))
    padded = F.pad(resized, (box.pad_left, box.pad_right, box.pad_top, box.pad_bottom), value=0)
    return padded, box


def affine_theta(matrix: np.ndarray, src_hw: tuple[int, int], output_wh: tuple[int, int]) -> np.ndarray:
    """The affine_grid theta (align_corners=True) of the cv2 warp dst(x) = src(M^-1 x)."""
    h, w = src_hw
    out_w, out_h = output_wh
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    # normalized output -> output pixels, and input pixels -> normalized input
    from_norm = np.array([[(out_w - 1) / 2, 0, (out_w - 1) / 2], [0, (out_h - 1) / 2, (out_h - 1) / 2], [0, 0, 1]])
    to_norm = np.array([[2 / max(w - 1, 1), 0, -1], [0, 2 / max(h - 1, 1), -1], [0, 0, 1]])
    return (to_norm @ inverse @ from_norm)[:2]


def warp_affine(images: Tensor, matrices, output_wh=recipe.INPUT_WH, interpolation: str = "linear") -> Tensor:
    """Pose crops: B x C x H x W and B (2 x 3) UDP matrices -> B x C x out_h x out_w uint8."""
    matrices = np.asarray(matrices, dtype=np.float64).reshape(-1, 2, 3)
    h, w = images.shape[-2:]
    theta = np.stack([affine_theta(m, (h, w), output_wh) for m in matrices])
    out_w, out_h = output_wh
    grid = F.affine_grid(torch.from_numpy(theta).to(images.device), [len(theta), 1, out_h, out_w],
                         align_corners=True).float()
    mode = "bicubic" if interpolation == "cubic" else "bilinear"
    out = F.grid_sample(images.float(), grid, mode=mode, padding_mode="zeros", align_corners=True)
    return to_uint8(out)


def pose_inputs(images: Tensor, crops: list[recipe.PoseCrop]) -> Tensor:
    """One warped crop per (image, crop) pair; crops of one photo may share its image tensor."""
    out = []
    for image, crop in zip(images, crops):
        out.append(warp_affine(image[None], crop.matrix, recipe.INPUT_WH, crop.interpolation))
    return torch.cat(out)


# --------------------------------------------------------------------------- model outputs


def crop_resize(maps: Tensor, box: recipe.Letterbox, *, smooth_when_upsampling: bool = False) -> Tensor:
    """C x H x W model-input map -> C x h x w photo map: crop the padding, (smooth), bilinear."""
    cropped = box.crop(maps).float()
    ch, cw = cropped.shape[-2:]
    h, w = box.photo_hw
    if smooth_when_upsampling and (h > ch or w > cw):
        cropped = recipe.gaussian_smooth(cropped[None], **recipe.POINTMAP_BLUR)[0]
    return resize(cropped, (h, w), "linear")


def unit_vectors(v: Tensor, dim: int = 0, eps: float = recipe.NORMAL_EPS) -> Tensor:
    return v / torch.linalg.vector_norm(v, dim=dim, keepdim=True).clamp_min(eps)


def normal_output(raw_chw: Tensor, box: recipe.Letterbox) -> Tensor:
    """3 x H x W raw normals -> 3 x h x w unit normals on the photo (recipe.normal_output)."""
    return unit_vectors(crop_resize(unit_vectors(raw_chw.float()), box))


def albedo_output(raw_chw: Tensor, box: recipe.Letterbox) -> Tensor:
    return crop_resize(raw_chw.float().clamp(0, 1), box).clamp_(0, 1)


def pointmap_output(points_chw: Tensor, scale: Tensor, box: recipe.Letterbox) -> Tensor:
    """Points / scale -> metres, cropped, smoothed when upsampling, resized (recipe.pointmap_output)."""
    metric = points_chw.float() / scale.float().reshape(1, 1, 1)
    return crop_resize(metric, box, smooth_when_upsampling=True)


def seg_labels(logits_chw: Tensor, size_hw: tuple[int, int], *, with_probs: bool = False,
               rows_per_strip: int = SEG_ROWS_PER_STRIP) -> tuple[Tensor, Tensor | None]:
    """C x 1024 x 768 logits -> h x w uint8 class ids (and h x w x C float16 softmax), in row strips."""
    c, lh, lw = logits_chw.shape
    h, w = size_hw
    wy = axis_matrix(lh, h, "linear", logits_chw.device)
    wx = axis_matrix(lw, w, "linear", logits_chw.device)
    logits = logits_chw.float()
    labels = torch.empty((h, w), dtype=torch.uint8, device=logits.device)
    probs = torch.empty((h, w, c), dtype=torch.float16, device=logits.device) if with_probs else None
    for start in range(0, h, rows_per_strip):
        stop = min(h, start + rows_per_strip)
        strip = wy[start:stop] @ logits @ wx.T            # C x rows x W
        labels[start:stop] = strip.argmax(dim=0).to(torch.uint8)
        if probs is not None:
            probs[start:stop] = strip.softmax(dim=0).permute(1, 2, 0).to(torch.float16)
    return labels, probs


# --------------------------------------------------------------------------- heatmap decoding


def _blur_keep_peak(heatmaps: Tensor, kernel_size: int) -> Tensor:
    n, k, h, w = heatmaps.shape
    kernel = torch.from_numpy(gaussian_kernel(kernel_size)).to(heatmaps.device)
    flat = heatmaps.reshape(n * k, 1, h, w)
    r = kernel_size // 2
    blurred = F.conv2d(flat, kernel.view(1, 1, 1, -1), padding=(0, r))      # zeros outside
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1), padding=(r, 0)).reshape(n, k, h, w)
    peak = heatmaps.amax(dim=(-2, -1), keepdim=True)
    blurred_peak = blurred.amax(dim=(-2, -1), keepdim=True)
    ratio = torch.where(blurred_peak != 0, peak / blurred_peak, torch.ones_like(peak))
    return blurred * ratio


def decode_heatmaps(heatmaps: Tensor, input_size: tuple[int, int], blur_kernel_size: int = 11
                    ) -> tuple[Tensor, Tensor]:
    """N x K x h x w heatmaps -> (N x K x 2 keypoints in input pixels, N x K scores), on their device.

    Same results as engine.codecs.udp_heatmap.decode_heatmaps (argmax, DARK-UDP Newton step,
    input / (heatmap - 1) scaling).
    """
    hm = heatmaps.float()
    n, k, h, w = hm.shape
    scores, idx = hm.reshape(n, k, h * w).max(dim=-1)
    locs = torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], dim=-1).float()
    locs[scores <= 0] = -1
    logs = torch.log(_blur_keep_peak(hm, blur_kernel_size).clamp(1e-3, 50.0))
    padded = F.pad(logs.reshape(n * k, 1, h, w), (1, 1, 1, 1), mode="replicate").reshape(n, k, h + 2, w + 2)
    x = locs[..., 0].long() + 1
    y = locs[..., 1].long() + 1
    flat = padded.reshape(n, k, -1)

    def at(dx: int, dy: int) -> Tensor:
        yy = (y + dy).clamp(0, h + 1)
        xx = (x + dx).clamp(0, w + 1)
        return flat.gather(-1, (yy * (w + 2) + xx)[..., None])[..., 0]

    step = dark_newton_step(at, torch, torch.eye(2, device=hm.device))
    refined = locs - step
    scale = torch.tensor([input_size[0] / (w - 1), input_size[1] / (h - 1)], device=hm.device)
    return refined * scale, scores
