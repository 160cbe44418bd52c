"""Reference bilateral normal integration with a depth prior (BiNI, Cao et al. 2022).

A plain reimplementation of the published algorithm, kept only to measure the fast solver in
engine/geometry/normal_integration.py against it (bench/bench_surface.py): same energy, solved
the published way on the full grid:

- one row per pixel and one-sided difference (forward/backward along x and y; a pixel without
  that neighbour has an empty row), assembled once as a 4N x N sparse matrix A;
- up to `max_iter` reweighting iterations: form A^T W A + prior_weight * I, shift the depth by
  the mean prior offset, solve with Jacobi-preconditioned CG (relative tolerance 1e-3, at most
  5000 iterations) from the previous depth, update the bilateral weights, stop when the energy
  changes by less than `tol` relative.

The rows are the published ones divided by the focal length (see normal_integration.py), which
rescales the energy but not its minimiser, the CG tolerance test or the stopping rule;
`prior_weight` is the published lambda and is divided by fx * fy accordingly.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import cg

from engine.geometry.grid_mesh import valid_pixels
from engine.geometry.normal_integration import pixel_rays


def _difference_rows(index, valid, coefficient, di, dj, forward):
    """Rows coefficient_i * (t_next - t_i) (forward) or coefficient_i * (t_i - t_prev)."""
    H, W = valid.shape
    n = int(valid.sum())
    if forward:
        has = np.zeros_like(valid)
        has[: H - di, : W - dj] = valid[: H - di, : W - dj] & valid[di:, dj:]
        here = index[has]
        other = np.full((H, W), -1, np.int64)
        other[: H - di, : W - dj] = index[di:, dj:]
        other = other[has]
        columns = np.stack([here, other], -1)
        signs = np.array([-1.0, 1.0])
    else:
        has = np.zeros_like(valid)
        has[di:, dj:] = valid[di:, dj:] & valid[: H - di, : W - dj]
        here = index[has]
        other = np.full((H, W), -1, np.int64)
        other[di:, dj:] = index[: H - di, : W - dj]
        other = other[has]
        columns = np.stack([other, here], -1)
        signs = np.array([-1.0, 1.0])
    data = (coefficient[here][:, None] * signs[None, :]).ravel()
    rows = np.repeat(here, 2)
    return sp.csr_matrix((data, (rows, columns.ravel())), shape=(n, n))


def _sigmoid(x, k):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-k * x))


def bini_reference(
    pointmap: np.ndarray,
    normal: np.ndarray,
    mask: np.ndarray,
    K: np.ndarray,
    *,
    prior_weight: float,
    sharpness: float = 2.0,
    max_iter: int = 150,
    tol: float = 1e-4,
    cg_rtol: float = 1e-3,
    cg_maxiter: int = 5000,
) -> tuple[np.ndarray, dict]:
    """Refined pointmap (H x W x 3, NaN off the valid pixels) and {'seconds', 'iterations'}."""
    start = time.perf_counter()
    K = np.asarray(K, np.float64)
    valid = valid_pixels(pointmap, mask, normal)
    n = int(valid.sum())
    index = np.full(valid.shape, -1, np.int64)
    index[valid] = np.arange(n)
    rays = pixel_rays(K, valid.shape)
    normal_map = np.where(valid[..., None], normal, 0.0).astype(np.float64)
    a = (normal_map * rays).sum(-1)[valid]
    # BiNI's rows in f-scaled units drive the weights; the solve uses the same rows / f.
    fx, fy = K[0, 0], K[1, 1]
    x_pos = _difference_rows(index, valid, a, 0, 1, True)
    x_neg = _difference_rows(index, valid, a, 0, 1, False)
    y_pos = _difference_rows(index, valid, a, 1, 0, True)
    y_neg = _difference_rows(index, valid, a, 1, 0, False)
    A = sp.vstack([x_pos, x_neg, y_pos, y_neg]).tocsr()
    nx, ny = normal_map[..., 0][valid] / fx, normal_map[..., 1][valid] / fy
    b = -np.concatenate([nx, nx, ny, ny])

    prior = np.log(pointmap[..., 2][valid].astype(np.float64))
    prior_weight = prior_weight / (fx * fy)
    t = np.zeros(n)
    weights = np.full(4 * n, 0.5)
    residual = A @ t - b
    energy = float(residual @ (weights * residual))
    iterations = 0
    for iterations in range(1, max_iter + 1):
        W = sp.diags(weights)
        system = (A.T @ W @ A).tocsr() + prior_weight * sp.identity(n, format="csr")
        rhs = A.T @ (weights * b) + prior_weight * prior
        t = t + np.mean(prior - t)
        jacobi = sp.diags(1.0 / np.clip(system.diagonal(), 1e-12, None))
        t, _ = cg(system, rhs, x0=t, rtol=cg_rtol, maxiter=cg_maxiter, M=jacobi)

        wx = _sigmoid((fx * (x_neg @ t)) ** 2 - (fx * (x_pos @ t)) ** 2, sharpness)
        wy = _sigmoid((fy * (y_neg @ t)) ** 2 - (fy * (y_pos @ t)) ** 2, sharpness)
        weights = np.concatenate([wx, 1.0 - wx, wy, 1.0 - wy])
        previous = energy
        residual = A @ t - b
        energy = float(residual @ (weights * residual))
        if abs(energy - previous) / max(previous, 1e-30) < tol:
            break

    refined = np.full(pointmap.shape, np.nan, np.float32)
    refined[valid] = (rays[valid] * np.exp(t)[:, None]).astype(np.float32)
    return refined, {"seconds": time.perf_counter() - start, "iterations": iterations}
