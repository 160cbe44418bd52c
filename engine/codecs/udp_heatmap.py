"""Decode keypoint heatmaps the way the Sapiens2 pose models were trained to be read.

UDP ("unbiased data processing") measures heatmap positions in units of (heatmap - 1) intervals.
The reference decoder then multiplies by the input size (not input - 1): heatmap pixel i maps to
input pixel i * input / (heatmap - 1). inference_recipe.md words it as (input - 1) / (heatmap - 1),
but the parity fixture (parity/pose_decode), produced by running the reference, agrees only with
input / (heatmap - 1) (0.0006 px against 1 px), so that is what we do. DARK refines the integer argmax to sub-pixel precision with one Newton step on the
log of the blurred heatmap (gradient and Hessian from central differences).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

HESSIAN_EPS = np.finfo(np.float32).eps


def gaussian_kernel(size: int) -> np.ndarray:
    """1-D Gaussian with OpenCV's automatic sigma for this size (sigma <= 0 in cv2.GaussianBlur)."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).astype(np.float32)


def blur_keep_peak(heatmaps: np.ndarray, kernel_size: int) -> np.ndarray:
    """Blur each map with zeros beyond its border, then rescale it to its original maximum."""
    k = gaussian_kernel(kernel_size)
    blurred = correlate1d(heatmaps, k, axis=-1, mode="constant", cval=0.0)
    blurred = correlate1d(blurred, k, axis=-2, mode="constant", cval=0.0)
    peak = heatmaps.max(axis=(-2, -1), keepdims=True)
    blurred_peak = blurred.max(axis=(-2, -1), keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        blurred *= np.where(blurred_peak != 0, peak / blurred_peak, 1.0)
    return blurred


def heatmap_argmax(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 2) integer (x, y) of each map's maximum, -1 where the maximum is not positive; (N, K) maxima."""
    N, K, H, W = heatmaps.shape
    flat = heatmaps.reshape(N, K, H * W)
    idx = flat.argmax(axis=-1)
    scores = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    locs = np.stack([idx % W, idx // W], axis=-1).astype(np.float32)
    locs[scores <= 0] = -1
    return locs, scores


def dark_newton_step(at, xp, eye):
    """The Newton step -H^-1 g at each peak, from central differences of the log heatmap.

    at(dx, dy) returns the log heatmap at every peak shifted by (dx, dy); xp is numpy or torch
    (the GPU path shares this arithmetic), eye a 2 x 2 identity of the right dtype and device.
    """
    c = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = at(1, 0) - 2 * c + at(-1, 0)
    hyy = at(0, 1) - 2 * c + at(0, -1)
    hxy = 0.5 * (at(1, 1) - at(1, 0) - at(0, 1) + 2 * c - at(-1, 0) - at(0, -1) + at(-1, -1))
    hessian = xp.stack([xp.stack([hxx, hxy], -1), xp.stack([hxy, hyy], -1)], -2) + HESSIAN_EPS * eye
    return xp.linalg.solve(hessian, xp.stack([gx, gy], -1)[..., None])[..., 0]


def dark_udp_refine(locs: np.ndarray, heatmaps: np.ndarray, kernel_size: int = 11) -> np.ndarray:
    """One Newton step of each argmax on the log of the blurred heatmap (vectorised over N x K)."""
    N, K, H, W = heatmaps.shape
    logs = np.log(np.clip(blur_keep_peak(heatmaps, kernel_size), 1e-3, 50.0))
    padded = np.pad(logs, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    # a -1 location (no positive peak) reads the pad corner, as the reference does
    x = locs[..., 0].astype(np.int64) + 1
    y = locs[..., 1].astype(np.int64) + 1
    n, k = np.meshgrid(np.arange(N), np.arange(K), indexing="ij")

    def at(dx: int, dy: int) -> np.ndarray:
        return padded[n, k, np.clip(y + dy, 0, H + 1), np.clip(x + dx, 0, W + 1)]

    step = dark_newton_step(at, np, np.eye(2, dtype=padded.dtype))
    return locs - step


def decode_heatmaps(heatmaps, input_size, blur_kernel_size: int = 11):
    """UDP decoding with DARK-UDP refinement.

    heatmaps: N x K x h x w (numpy or torch); input_size: (width, height) of the model input the
    heatmaps belong to. Returns (keypoints N x K x 2 float32 (x, y) in input-image pixels with
    pixel centres at integers, scores N x K float32 = each heatmap's maximum).
    """
    if hasattr(heatmaps, "detach"):
        heatmaps = heatmaps.detach().float().cpu().numpy()
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim == 3:
        keypoints, scores = decode_heatmaps(heatmaps[None], input_size, blur_kernel_size)
        return keypoints[0], scores[0]
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be N x K x h x w, got shape {heatmaps.shape}")
    N, K, h, w = heatmaps.shape
    locs, scores = heatmap_argmax(heatmaps)
    refined = dark_udp_refine(locs, heatmaps, blur_kernel_size)
    scale = np.array([input_size[0] / (w - 1), input_size[1] / (h - 1)], dtype=np.float32)
    return (refined * scale).astype(np.float32), scores.astype(np.float32)
