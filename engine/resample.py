"""Separable resampling kernels as matrices: OpenCV's resize rules for the GPU path, torch's bilinear.

The CPU recipe resizes and warps photos with OpenCV itself (bit-identical model inputs). The GPU
path (engine.runtime.gpu_ops) cannot call OpenCV on device tensors, so it resizes with these
weights as two matrix products per image: rows = Wy @ image, then columns with Wx. The weights
follow the same source-coordinate rules as those libraries (pixel centres at +0.5, borders
clamped), so:

- `linear` equals torch `F.interpolate(mode="bilinear", align_corners=False, antialias=False)`
  to float rounding (tests check this), and cv2 INTER_LINEAR up to cv2's 11-bit fixed-point
  weights on uint8 images (at most 1 grey level after rounding).
- `cubic` is Keys' cubic with a = -0.75 and replicated borders, as cv2 INTER_CUBIC and torch
  bicubic; cv2 again rounds its weights to fixed point on uint8 input (about 1 grey level).
- `area` is exact pixel-area averaging, which is what cv2 INTER_AREA computes when shrinking
  (integer and fractional ratios alike). When cv2 is asked for INTER_AREA on an axis that grows,
  it uses a sharpened bilinear; `linear` is used for such an axis here (the reference only asks
  for INTER_AREA when shrinking the width, so only a photo much wider than 3:4 that is also short
  meets this case, and then only along y).

`linear_rows` resizes model outputs (torch tensors) in row strips, so a 29-channel 12-megapixel
logit map never exists at once.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

CUBIC_A = -0.75


def _source_coords(n_in: int, n_out: int) -> np.ndarray:
    """Centre of each output pixel in input pixel units (integer-centred), as cv2 and torch do."""
    return (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5


def _cubic_kernel(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    a = CUBIC_A
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


@lru_cache(maxsize=64)
def axis_weights(n_in: int, n_out: int, kind: str) -> sp.csr_matrix:
    """n_out x n_in sparse matrix mapping one image axis to its resized version."""
    rows: np.ndarray
    if kind == "area" and n_out < n_in:
        scale = n_in / n_out
        lo = np.arange(n_out) * scale          # output pixel i covers [lo, hi) of the input
        hi = lo + scale
        first = np.floor(lo).astype(np.int64)
        taps = int(np.ceil(scale)) + 1
        cols = first[:, None] + np.arange(taps)[None, :]
        overlap = np.minimum(hi[:, None], cols + 1) - np.maximum(lo[:, None], cols)
        weights = np.clip(overlap, 0, None) / scale
    elif kind in ("linear", "area"):
        src = np.maximum(_source_coords(n_in, n_out), 0.0)  # torch clamps negative sources to 0
        first = np.floor(src).astype(np.int64)
        frac = src - first
        cols = np.stack([first, first + 1], axis=1)
        weights = np.stack([1 - frac, frac], axis=1)
    elif kind == "cubic":
        src = _source_coords(n_in, n_out)
        first = np.floor(src).astype(np.int64)
        frac = src - first
        cols = first[:, None] + np.arange(-1, 3)[None, :]
        weights = _cubic_kernel(frac[:, None] - np.arange(-1, 3)[None, :])
    else:
        raise ValueError(f"unknown resampling kind {kind!r}")
    cols = np.clip(cols, 0, n_in - 1)             # replicate the border pixels
    rows = np.repeat(np.arange(n_out), cols.shape[1])
    matrix = sp.csr_matrix((weights.ravel(), (rows, cols.ravel())), shape=(n_out, n_in))
    matrix.sum_duplicates()
    return matrix.astype(np.float32)


def linear_rows(chw, size_hw: tuple[int, int], row_start: int = 0, row_stop: int | None = None):
    """Bilinear resize of a C x H x W torch tensor (rows [start, stop) of the result only).

    grid_sample with clamped borders samples exactly where F.interpolate(mode="bilinear",
    align_corners=False) does (output pixel i reads input (i + 0.5) * in / out - 0.5, clamped),
    torch-threaded, and a strip of rows never needs the full-size result in memory.
    """
    import torch
    import torch.nn.functional as F

    out_h, out_w = size_hw
    row_stop = out_h if row_stop is None else row_stop
    gy = (2 * (torch.arange(row_start, row_stop, dtype=torch.float64) + 0.5) / out_h - 1).float()
    gx = (2 * (torch.arange(out_w, dtype=torch.float64) + 0.5) / out_w - 1).float()
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].to(chw.dtype)
    return F.grid_sample(chw[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
