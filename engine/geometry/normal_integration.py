"""Refine a pointmap's depth with the predicted normals (bilateral normal integration + prior).

The pointmap is metric but smooth and noisy at fine scales; the normal map carries the folds,
fingers and face detail. We solve for log-depth `t = log z` per valid pixel under a perspective
camera, minimising the bilateral normal-integration energy of Cao et al. 2022 (BiNI) plus a
depth prior that keeps the result on the pointmap:

    E(t) = sum over pixels i and axes x, y of
               w_i+ (a_i (t_{i+} - t_i) + b_i)^2 + (1 - w_i+) (a_i (t_i - t_{i-}) + b_i)^2
         + prior_weight * sum_i (t_i - t_prior_i)^2

with, for a unit normal n_i and the viewing ray r_i = ((u - cx)/fx, (v - cy)/fy, 1) through the
pixel centre, a_i = n_i . r_i and b_i = n_x / fx (n_y / fy along y). These rows say that the
step to the next pixel lies in the tangent plane of n_i; the weights w (a sigmoid of the
difference of the two one-sided steps, BiNI's bilateral weights) let the surface break at depth
discontinuities: the side with the smaller step keeps the weight. The rows are BiNI's divided by
the focal length; `prior_weight` is BiNI's lambda (for its focal-scaled rows), which makes it
independent of the grid's resolution: internally the prior term per pixel is
prior_weight / (fx * fy) of that grid.

Speed (why this is not the reference algorithm): the reference (engine/geometry/bini_reference.py)
runs up to 150 reweighting iterations, each a Jacobi-preconditioned CG solve from the previous
depth, on the full grid: about 100 s at 1024 x 768. Here the same energy is solved coarse to
fine: the pyramid's coarsest level (mask-aware averaged maps, <= ~20k pixels) runs the full
reweighting to convergence for little cost, and each finer level starts from the upsampled
coarse depth, so only high-frequency error is left, which a few Jacobi-CG iterations remove; two
or three reweighting steps per fine level then suffice because the discontinuities were already
found on the coarse grid. The Hessian is assembled into a fixed CSR pattern (no sparse
matrix products per iteration).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from engine.geometry.grid_mesh import RTOL_HARD, downsample_maps, valid_pixels

try:  # scipy's CSR matrix-vector product, what `matrix @ x` runs (_jacobi_cg); checked once on a 2 x 2
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec

    _check = np.zeros(2)
    _csr_matvec(2, 2, np.array([0, 1, 2], np.int32), np.array([1, 0], np.int32), np.array([2.0, 3.0]),
                np.array([5.0, 7.0]), _check)
    if _check.tolist() != [14.0, 15.0]:
        _csr_matvec = None
except Exception:  # pragma: no cover - another scipy layout or signature: `@` instead
    _csr_matvec = None

# Measured on the shared synthetic people with degraded pointmaps (smooth error + 1 cm noise +
# blur): the depth error is flat within 3 % between 2e-5 and 1e-4 and rises outside.
PRIOR_WEIGHT = 10.0
SHARPNESS = 2.0  # BiNI's k
COARSEST_PIXELS = 4_000
# Normal trust (see trust_weights): |n . ray| below GRAZING[0] (~81 deg from the view ray) is
# not integrated, full trust above GRAZING[1] (~66 deg); the silhouette / cut ring of EDGE_RING
# pixels ramps in. Untrusted pixels may get an extra prior weight (PIN_WEIGHT for grazing
# normals, EDGE_PIN_WEIGHT for the ring), in the units of one normal row facing the camera
# (a = 1), ~1e5 x BiNI's lambda per pixel at 1152 px focal for 1.0. Measured on 5
# engine.synthetic people and the 3 shared ones (exact and degraded maps): pinning (1.0 down to
# 0.001) removes more of the fins on exact maps but loses the gain on degraded maps, where the
# silhouette's prior is itself blurred centimetres off and the normals must move whole limbs off
# the smooth prior error (shared person_103: 28.6 -> 33.2 mm with 0.001, -> 26.4 without). So
# the untrusted rows are only switched off: the trusted interior's rows carry those pixels.
GRAZING = (0.15, 0.4)
EDGE_RING = 2.0
PIN_WEIGHT = 0.0
EDGE_PIN_WEIGHT = 0.0
# jump_rtol="auto" (the open relief's refinement, engine.geometry.surface): the prior's own jumps
# are not integrated across (_prior_jumps) where a relative step between neighbours is over
# JUMP_NOISE_FACTOR standard deviations of a noise-made step (prior_noise), never under
# JUMP_RTOL_FLOOR nor over RTOL_HARD (jump_rtol_for). A clean prior (exact maps: 1e-7 in log
# depth) is cut at 0.3 %, 1 cm at 3.3 m: a fringe's or a collar's lip over the skin, which the
# coarse levels smoothed over and the fine ones could not undo (the hair band moved 1 cm back over
# 2-4 cm); a noisy one (1 cm noise blurred over 2 px: 1.5e-3) at RTOL_HARD as before. The closed
# solid's refinement (watertight.solid_front, on its own coarser grid of trusted pixels) uses it
# too since the twelfth session, with its back recalibrated (watertight.PREDICTION_SCALE's
# comment): "auto" alone had made the solid larger (exact volume 1.03-1.06 -> 1.07-1.11 of the
# truth, Chamfer 0.411 -> 0.436 cm: the sharp outline lies deeper, and the mirrored bulge with it).
JUMP_RTOL_FLOOR = 0.003
JUMP_NOISE_FACTOR = 10.0
# Departure limit (see limit_departure): floor and multiple of the local typical departure.
DEPARTURE_FLOOR_M = 0.003
DEPARTURE_FACTOR = 3.0
DEPARTURE_SPREAD_PX = 3.0

Progress = Callable[[str, float, str], None] | None


@dataclass
class IntegrationInfo:
    seconds: float = 0.0
    levels: list[dict] = field(default_factory=list)


def ray_axes(K: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """pixel_rays' x/z per column (W) and y/z per row (H)."""
    H, W = shape
    K = np.asarray(K, np.float64)
    return (np.arange(W) + 0.5 - K[0, 2]) / K[0, 0], (np.arange(H) + 0.5 - K[1, 2]) / K[1, 1]


def pixel_rays(K: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """H x W x 3 rays (x/z, y/z, 1) through the pixel centres (col + 0.5, row + 0.5)."""
    H, W = shape
    x, y = ray_axes(K, shape)
    rays = np.empty((H, W, 3), np.float64)
    rays[..., 0] = x[None, :]
    rays[..., 1] = y[:, None]
    rays[..., 2] = 1.0
    return rays


class GridEnergy:
    """The energy above on one pixel grid, with its Hessian in a fixed CSR pattern.

    `confidence` (per valid pixel, 0..1, default 1) scales the normal rows built from that
    pixel's normal, and the prior weight grows to `prior_weight + pin_weight * (1 - confidence)`
    (pin_weight in the rows' own units, see `trust_weights`): a pixel whose normal cannot be
    integrated reliably keeps its prior depth instead of being dragged along a grazing tangent.
    """

    def __init__(self, normal, valid, K, prior_log_depth, prior_weight, sharpness, cut=None,
                 confidence=None, pin=0.0):
        H, W = valid.shape
        self.valid = valid
        self.sharpness = sharpness
        self.n = int(valid.sum())
        index = np.full((H, W), -1, np.int64)
        index[valid] = np.arange(self.n)
        self.index = index
        K = np.asarray(K, np.float64)
        rays = pixel_rays(K, (H, W))[valid]
        normals = normal[valid].astype(np.float64)
        a = (normals * rays).sum(-1)
        self.focal = (K[0, 0], K[1, 1])

        # Edges between valid right / down neighbours: (i, j) with j the next pixel.
        edges = []
        for axis, (di, dj) in enumerate(((0, 1), (1, 0))):
            both = valid[: H - di, : W - dj] & valid[di:, dj:]
            if cut is not None:
                both &= ~cut[axis]
            i = index[: H - di, : W - dj][both]
            j = index[di:, dj:][both]
            edges.append((i, j))
        self.edges = edges
        self.a = a
        self.b = (normals[:, 0] / K[0, 0], normals[:, 1] / K[1, 1])
        self.prior = prior_log_depth
        self.confidence = np.ones(self.n) if confidence is None else np.asarray(confidence, np.float64)
        # Per-pixel prior weight: BiNI's lambda everywhere, plus the pin where confidence is low.
        self.prior_weight = prior_weight / (K[0, 0] * K[1, 1]) + pin

        # CSR pattern: diagonal, then (i, j) and (j, i) for every edge of both axes.
        ei = np.concatenate([edges[0][0], edges[1][0]])
        ej = np.concatenate([edges[0][1], edges[1][1]])
        self.n_edges = ei.size
        rows = np.concatenate([np.arange(self.n), ei, ej])
        cols = np.concatenate([np.arange(self.n), ej, ei])
        order = sp.coo_matrix(
            (np.arange(rows.size, dtype=np.float64) + 1.0, (rows, cols)), shape=(self.n, self.n)
        ).tocsr()
        self.pattern = order
        self.slot = order.data.astype(np.int64) - 1
        # Forward weights start at 1/2 (no preference), as in BiNI.
        self.w_forward = [np.full(self.n, 0.5), np.full(self.n, 0.5)]

    def _terms(self):
        """Per edge, the two rows that use it: (coefficient, rhs, weight) for i's forward row
        and j's backward row, per axis."""
        for axis in (0, 1):
            i, j = self.edges[axis]
            wf = self.w_forward[axis]
            c = self.confidence
            yield i, j, self.a[i], self.b[axis][i], wf[i] * c[i]
            yield i, j, self.a[j], self.b[axis][j], (1.0 - wf[j]) * c[j]

    def system(self):
        n = self.n
        diag = np.broadcast_to(self.prior_weight, (n,)).copy()
        rhs = self.prior_weight * self.prior
        off = np.zeros(self.n_edges)
        offset = 0
        for axis in (0, 1):
            i, j = self.edges[axis]
            wf = self.w_forward[axis]
            # Row of pixel i toward j (forward) and row of pixel j toward i (backward).
            c_f, r_f, w_f = self.a[i], self.b[axis][i], wf[i] * self.confidence[i]
            c_b, r_b, w_b = self.a[j], self.b[axis][j], (1.0 - wf[j]) * self.confidence[j]
            h = w_f * c_f * c_f + w_b * c_b * c_b
            g = w_f * c_f * r_f + w_b * c_b * r_b
            diag += np.bincount(i, h, n) + np.bincount(j, h, n)
            rhs = rhs + np.bincount(i, g, n) - np.bincount(j, g, n)
            off[offset : offset + i.size] = -h
            offset += i.size
        values = np.concatenate([diag, off, off])
        matrix = self.pattern.copy()
        matrix.data = values[self.slot]
        return matrix, rhs, diag

    def reweight(self, t):
        """BiNI's bilateral weights from the current log-depth (steps scaled as BiNI's rows)."""
        for axis in (0, 1):
            i, j = self.edges[axis]
            scale = self.a * self.focal[axis]
            forward = np.zeros(self.n)
            backward = np.zeros(self.n)
            step = t[j] - t[i]
            forward[i] = (scale[i] * step) ** 2
            backward[j] = (scale[j] * step) ** 2
            with np.errstate(over="ignore"):
                self.w_forward[axis] = 1.0 / (1.0 + np.exp(-self.sharpness * (backward - forward)))

    def energy(self, t):
        total = float(np.sum(self.prior_weight * (t - self.prior) ** 2))
        for i, j, c, r, w in self._terms():
            total += np.sum(w * (c * (t[j] - t[i]) + r) ** 2)
        return float(total)


def _jacobi_cg(matrix, rhs, inverse_diag, x0, *, rtol, maxiter):
    """(x, iterations): scipy.sparse.linalg.cg(matrix, rhs, x0=x0, rtol=rtol, maxiter=maxiter,
    M=the operator x -> inverse_diag * x) with its iteration count, the same arithmetic in the
    same order (scipy 1.17's loop: the same x to the last bit), without the LinearOperator
    wrappers and shape checks that cost more than the matrix product on the coarse levels'
    few thousand pixels (several thousand iterations per closed build).

    The arrays are float64 (GridEnergy.system's); x0 is copied, not changed."""
    b = np.asarray(rhs, np.float64)
    bnrm2 = np.linalg.norm(b)
    atol = max(0.0, float(rtol) * float(bnrm2))
    if bnrm2 == 0:
        return b, 0
    if maxiter is None:
        maxiter = len(b) * 10
    x = np.array(x0, np.float64).ravel()
    r = b - matrix @ x if x.any() else b.copy()
    rho_prev, p = None, None
    product = _csr_product(matrix)
    z, step = np.empty_like(b), np.empty_like(b)  # reused: z, then alpha * p and alpha * q
    for iteration in range(maxiter):
        if np.sqrt(r.dot(r)) < atol:  # np.linalg.norm(r)
            return x, iteration
        np.multiply(inverse_diag, r, out=z)
        rho_cur = np.dot(r, z)
        if iteration > 0:
            beta = rho_cur / rho_prev
            p *= beta
            p += z
        else:
            p = z.copy()
        q = product(p)
        alpha = rho_cur / np.dot(p, q)
        x += np.multiply(alpha, p, out=step)
        r -= np.multiply(alpha, q, out=step)
        rho_prev = rho_cur
    return x, maxiter


def _csr_product(matrix):
    """x -> matrix @ x (float64): scipy's own CSR product (csr_matvec into a zeroed vector, what
    `@` runs) called directly into one reused vector, without `@`'s dispatch and checks, which
    cost half as much again as the product on the coarse levels' few thousand pixels."""
    n_rows, n_cols = matrix.shape
    if _csr_matvec is None or matrix.format != "csr" or matrix.dtype != np.float64:
        return lambda x: matrix @ x
    out = np.empty(n_rows)
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data

    def product(x):
        out.fill(0.0)
        _csr_matvec(n_rows, n_cols, indptr, indices, data, x, out)
        return out

    return product


def _solve(energy: GridEnergy, t, *, irls, cg_rtol, cg_maxiter, energy_tol=1e-4):
    cg_iterations = 0
    previous = energy.energy(t)
    steps = 0
    for steps in range(1, irls + 1):
        matrix, rhs, diag = energy.system()
        t, iterations = _jacobi_cg(matrix, rhs, 1.0 / diag, t, rtol=cg_rtol, maxiter=cg_maxiter)
        cg_iterations += iterations
        energy.reweight(t)
        current = energy.energy(t)
        if abs(previous - current) <= energy_tol * max(previous, 1e-30):
            break
        previous = current
    return t, steps, cg_iterations


def prior_noise(points: np.ndarray, valid: np.ndarray) -> float:
    """The prior's pixel noise in log depth: a robust standard deviation from its second
    differences along rows and columns (for independent noise of deviation s, t[i-1] - 2 t[i] +
    t[i+1] has deviation s * sqrt(6); the median ignores the few true steps and creases)."""
    t = np.full(valid.shape, np.nan)
    t[valid] = np.log(points[..., 2][valid].astype(np.float64))
    second = [t[:, :-2] - 2.0 * t[:, 1:-1] + t[:, 2:], t[:-2] - 2.0 * t[1:-1] + t[2:]]
    second = np.concatenate([np.abs(d[np.isfinite(d)]) for d in second])
    if not len(second):
        return 0.0
    return float(1.4826 * np.median(second) / np.sqrt(6.0))


def jump_rtol_for(points: np.ndarray, valid: np.ndarray, *, floor: float = JUMP_RTOL_FLOOR,
                  factor: float = JUMP_NOISE_FACTOR, ceiling: float = RTOL_HARD) -> float:
    """The relative step between neighbours that the prior's noise does not explain (a step
    between two neighbours has sqrt(2) times the pixel noise), within [floor, ceiling]."""
    return jump_rtol_of_noise(prior_noise(points, valid), floor=floor, factor=factor, ceiling=ceiling)


def jump_rtol_of_noise(noise: float, *, floor: float = JUMP_RTOL_FLOOR, factor: float = JUMP_NOISE_FACTOR,
                       ceiling: float = RTOL_HARD) -> float:
    """jump_rtol_for of a prior whose prior_noise is `noise` (for a caller that needs the noise too)."""
    return float(np.clip(factor * np.sqrt(2.0) * noise, floor, ceiling))


def _prior_jumps(points: np.ndarray, rtol):
    """Edges (right, down) across which the prior itself jumps by more than rtol relative (a
    number, or H x W per pixel: an edge takes the larger of its two pixels').

    Integration must not connect them: the bilateral weights would find most such jumps, but
    only after many reweighting steps, and a jump smoothed over drags both sides.
    """
    if rtol is None:
        return None
    z = points[..., 2]
    if np.ndim(rtol):
        rtol_right, rtol_down = np.maximum(rtol[:, 1:], rtol[:, :-1]), np.maximum(rtol[1:], rtol[:-1])
    else:
        rtol_right = rtol_down = rtol
    with np.errstate(invalid="ignore"):
        right = np.abs(z[:, 1:] - z[:, :-1]) > rtol_right * np.minimum(z[:, 1:], z[:, :-1])
        down = np.abs(z[1:] - z[:-1]) > rtol_down * np.minimum(z[1:], z[:-1])
    return right, down


def _block_max(values: np.ndarray, factor: int) -> np.ndarray:
    """The largest value of each factor x factor block (downsample_maps' blocks, padded at the
    far edges)."""
    if factor == 1:
        return values
    H, W = values.shape
    h, w = -(-H // factor), -(-W // factor)
    padded = np.pad(values, ((0, h * factor - H), (0, w * factor - W)), constant_values=-np.inf)
    return padded.reshape(h, factor, w, factor).max(axis=(1, 3))


def trust_weights(normal, valid, K, cut=None, *, grazing=GRAZING, ring=EDGE_RING):
    """Per valid pixel, how far its normal can be trusted for integration: (facing, edge), each
    0..1 in flat valid order; the rows use their product.

    Two things make a normal row ill-conditioned: a grazing normal (the row's coefficient
    a = n . ray is small, so the step it implies, -b / a, blows up: one degree of error moves the
    neighbour centimetres), and the last pixels at the silhouette or along a cut edge, whose
    normals face sideways and whose finite steps are far from the tangent-plane linearisation.
    Trust ramps from 0 to 1 as |n . ray| / |ray| goes from grazing[0] to grazing[1], and as the
    distance to the nearest invalid pixel or cut edge goes from 1 to 1 + ring pixels.
    """
    H, W = valid.shape
    rays = pixel_rays(K, (H, W))[valid]
    normals = normal[valid].astype(np.float64)
    facing = np.abs((normals * rays).sum(-1)) / np.linalg.norm(rays, axis=-1)
    low, high = grazing
    trust = np.clip((facing - low) / (high - low), 0.0, 1.0)
    # Distance (pixels) to the boundary: invalid pixels and both ends of every cut edge are seeds.
    seeds = ~valid
    if cut is not None:
        right, down = cut
        seeds = seeds.copy()
        seeds[:, :-1] |= right
        seeds[:, 1:] |= right
        seeds[:-1] |= down
        seeds[1:] |= down
        # A cut pixel is as untrusted as a silhouette pixel: distance 1, like a pixel next to the mask edge.
        distance = ndimage.distance_transform_edt(~seeds) + seeds
    else:
        distance = ndimage.distance_transform_edt(~seeds)
    if ring <= 0:
        return trust, np.ones_like(trust)
    edge = np.clip((distance[valid] - 1.0) / ring, 0.0, 1.0)
    return trust, edge


def limit_departure(depth, prior_depth, valid, trust, *, floor_m, factor, spread_px):
    """Depth clipped to within `floor_m + factor * local typical departure` of the prior.

    The refinement's honest departures from the prior (noise removed, folds added) are similar
    over a neighbourhood; a fin, where a ring of badly conditioned pixels ran away along grazing
    normals, departs far more than the trusted pixels around it. The local typical departure is
    a Gaussian-weighted mean (spread_px) of |depth - prior| over trusted pixels, so a clean
    prior (nothing to fix) allows only about floor_m, a noisy one proportionally more.
    """
    H, W = valid.shape
    departure = depth - prior_depth
    weight = np.zeros((H, W))
    weight[valid] = trust
    amount = np.zeros((H, W))
    amount[valid] = trust * np.abs(departure)
    with np.errstate(invalid="ignore", divide="ignore"):
        typical = ndimage.gaussian_filter(amount, spread_px) / ndimage.gaussian_filter(weight, spread_px)
    typical = np.nan_to_num(typical[valid], nan=0.0, posinf=0.0)
    limit = floor_m + factor * typical
    return prior_depth + np.clip(departure, -limit, limit)


def _upsample_log_depth(coarse_t, coarse_valid, fine_valid, factor, fallback):
    """Nearest-parent upsampling of a coarse log-depth onto the fine grid's valid pixels."""
    H, W = fine_valid.shape
    coarse_map = np.full(coarse_valid.shape, np.nan)
    coarse_map[coarse_valid] = coarse_t
    rows, cols = np.nonzero(fine_valid)
    t = coarse_map[rows // factor, cols // factor]
    missing = ~np.isfinite(t)
    t[missing] = fallback[missing]
    return t


def refine_depth(
    pointmap: np.ndarray,
    normal: np.ndarray,
    mask: np.ndarray,
    K: np.ndarray,
    *,
    prior_weight: float = PRIOR_WEIGHT,
    sharpness: float = SHARPNESS,
    coarse_irls: int = 30,
    fine_irls: int = 3,
    cg_rtol: float = 1e-3,
    fine_cg_maxiter: int = 150,
    coarsest_pixels: int = COARSEST_PIXELS,
    jump_rtol: float | str | None = RTOL_HARD,
    grazing: tuple[float, float] = GRAZING,
    edge_ring: float = EDGE_RING,
    pin_weight: float = PIN_WEIGHT,
    edge_pin_weight: float = EDGE_PIN_WEIGHT,
    departure_floor_m: float | None = DEPARTURE_FLOOR_M,
    departure_factor: float = DEPARTURE_FACTOR,
    departure_spread_px: float = DEPARTURE_SPREAD_PX,
    progress: Progress = None,
) -> tuple[np.ndarray, IntegrationInfo]:
    """Refined pointmap (H x W x 3 float32, NaN off the valid pixels) and timing info.

    Valid pixels: mask with a finite point of positive depth and a finite normal; neighbours
    whose prior depths differ by more than `jump_rtol` (relative; H x W: per pixel, an edge the
    larger of its pixels', a coarser level's pixel its block's largest; "auto": jump_rtol_for
    the prior's noise; None: never) are not linked. The refined
    points lie on the same pixel rays as the input (through the pixel centres), at the depth that
    minimises the energy in the module doc.
    """
    start = time.perf_counter()
    info = IntegrationInfo()
    valid = valid_pixels(pointmap, mask, normal)
    if isinstance(jump_rtol, str):
        jump_rtol = jump_rtol_for(pointmap, valid)
    # Pyramid factors 1, 2, 4, ... until the coarsest level is small enough.
    factors = [1]
    while valid.sum() / factors[-1] ** 2 > coarsest_pixels * 1.5 and factors[-1] < 64:
        factors.append(factors[-1] * 2)

    t = None
    previous = None
    for level, factor in enumerate(reversed(factors)):
        points_l, mask_l, normal_l, _, K_l = downsample_maps(factor, pointmap, mask, normal, None, K)
        valid_l = valid_pixels(points_l, mask_l, normal_l)
        if not valid_l.any():
            continue
        prior = np.log(points_l[..., 2][valid_l].astype(np.float64))
        cut = _prior_jumps(points_l, _block_max(jump_rtol, factor) if np.ndim(jump_rtol) else jump_rtol)
        # The ring is in pixels of this level, so on coarse levels it is wider in the photo.
        facing, edge = trust_weights(normal_l, valid_l, K_l, cut, grazing=grazing, ring=edge_ring)
        trust = facing * edge
        energy = GridEnergy(normal_l, valid_l, K_l, prior, prior_weight, sharpness, cut=cut,
                            confidence=trust, pin=pin_weight * (1.0 - facing) + edge_pin_weight * (1.0 - edge))
        coarsest = t is None
        if coarsest:
            t = prior.copy()
        else:
            prev_t, prev_valid, prev_factor = previous
            t = _upsample_log_depth(prev_t, prev_valid, valid_l, prev_factor // factor, prior)
            energy.reweight(t)
        t, steps, cg_iterations = _solve(
            energy,
            t,
            irls=coarse_irls if coarsest else fine_irls,
            cg_rtol=cg_rtol if not coarsest else cg_rtol * 0.1,
            cg_maxiter=None if coarsest else fine_cg_maxiter,
        )
        previous = (t, valid_l, factor)
        trust_fine = trust
        info.levels.append(
            {"factor": factor, "pixels": int(valid_l.sum()), "irls": steps, "cg": cg_iterations}
        )
        if progress is not None:
            progress("refine", (level + 1) / len(factors), f"normal integration at 1/{factor}")

    refined = np.full(pointmap.shape, np.nan, np.float32)
    if t is not None:
        depth = np.exp(t)
        if departure_floor_m is not None:
            depth = limit_departure(depth, pointmap[..., 2][valid].astype(np.float64), valid, trust_fine,
                                    floor_m=departure_floor_m, factor=departure_factor,
                                    spread_px=departure_spread_px)
        refined[valid] = (pixel_rays(K, mask.shape)[valid] * depth[:, None]).astype(np.float32)
    info.seconds = time.perf_counter() - start
    return refined, info
