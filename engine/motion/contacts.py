"""Foot contacts and the ground: which foot stands on the ground in which frame, and where the
ground is. Joint tracks are T x J x 3 in the avatar frame (+Y up, metres); numpy over frames.

A foot's sole is its lowest joint (heel, toes, ankle less its height at rest). The ground plane
is fitted (least squares with the tilt held back along directions the feet do not span, then
again without the worst quarter) to the soles of the frames where a foot is slowest and lowest; a foot is in contact when its sole is within CONTACT_HEIGHT_M of
that plane and its ankle moves less than CONTACT_SPEED_M_S along it. Runs of contact shorter
than MIN_CONTACT_FRAMES are dropped (a foot passing low through one frame does not stand).
"""

from __future__ import annotations

import numpy as np

CONTACT_HEIGHT_M = 0.05
CONTACT_SPEED_M_S = 1.0
MIN_CONTACT_FRAMES = 3
GROUND_SPAN_M = 0.15                 # feet spread less than this along a direction fix no tilt along it
MAX_GROUND_TILT_DEG = 30.0
STANCE_DRIFT_M = 0.06               # a standing foot's ankle stays this near its spot (jitter included)
MAX_MERGE_S = 0.5                    # longest loss of a foot on its spot still taken as one stance
MAX_GAP_FRAMES = 2                   # a break in a stance this short is closed (jitter, not a step)
SMOOTH_FRAMES = 1.5                  # sigma of the centred smoothing contacts are read through
SIDES = ("L", "R")
SOLE_JOINTS = ("heel", "big_toe", "small_toe")


def foot_indices(names: list[str], side: str) -> list[int]:
    """The joints that move with the foot (ankle first)."""
    return [names.index(f"{j}_{side}") for j in ("ankle",) + SOLE_JOINTS if f"{j}_{side}" in names]


def soles(tracks: np.ndarray, names: list[str]) -> np.ndarray:
    """T x 2 x 3: each foot's lowest joint per frame (left, right)."""
    out = []
    for side in SIDES:
        foot = tracks[:, foot_indices(names, side)]                 # T x F x 3
        low = np.argmin(foot[..., 1], axis=1)
        out.append(foot[np.arange(len(tracks)), low])
    return np.stack(out, 1)


def fit_ground(tracks: np.ndarray, names: list[str], fps: float) -> tuple[np.ndarray, float]:
    """(unit up normal, offset d) of the ground plane n . x = d from the feet's slow, low frames."""
    sole = soles(tracks, names)                                     # T x 2 x 3
    ankles = tracks[:, [names.index("ankle_L"), names.index("ankle_R")]]
    speed = _speed(ankles, fps)
    points = sole.reshape(-1, 3)
    slow = speed.reshape(-1) <= np.quantile(speed, 0.5)
    low = sole[..., 1].reshape(-1) <= np.quantile(sole[..., 1], 0.5)
    candidates = points[slow & low] if (slow & low).sum() >= 3 else points
    normal = np.array([0.0, 1.0, 0.0])
    d = float(np.median(candidates @ normal))
    if len(candidates) >= 6:
        chosen = candidates
        for _ in range(2):   # least squares, then without the worst quarter
            centre = chosen.mean(0)
            X, y = chosen[:, [0, 2]] - centre[[0, 2]], chosen[:, 1] - centre[1]
            # ridge on the slopes: a tilt is believed only along directions the feet span (two
            # standing feet, or a walk along a line, leave a direction with no spread at all)
            slope = np.linalg.solve(X.T @ X + GROUND_SPAN_M ** 2 * len(X) * np.eye(2), X.T @ y)
            n = np.array([-slope[0], 1.0, -slope[1]]) / np.sqrt(1.0 + slope @ slope)
            if n[1] < np.cos(np.radians(MAX_GROUND_TILT_DEG)):
                break            # a "ground" this steep is not one: keep the level one
            normal, d = n, float(centre @ n)
            residual = np.abs(candidates @ normal - d)
            chosen = candidates[residual <= np.quantile(residual, 0.75)]
    return normal, d


def _speed(points: np.ndarray, fps: float, normal=np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """T x ... speed along the ground plane, m/s (central differences)."""
    if len(points) < 2:
        return np.zeros(points.shape[:-1])
    v = np.gradient(points, axis=0) * fps
    v = v - (v @ normal)[..., None] * normal
    return np.linalg.norm(v, axis=-1)


def smooth_centred(x: np.ndarray, sigma_frames: float = SMOOTH_FRAMES) -> np.ndarray:
    """Gaussian smoothing over time (axis 0) without lag (the whole sequence is known); edges
    reflect."""
    if len(x) < 3 or sigma_frames <= 0:
        return x
    r = int(np.ceil(3 * sigma_frames))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_frames) ** 2)
    k /= k.sum()
    padded = np.concatenate([x[r:0:-1], x, x[-2:-r - 2:-1]]) if len(x) > r + 1 else np.pad(
        x, [(r, r)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    return np.tensordot(np.lib.stride_tricks.sliding_window_view(padded, 2 * r + 1, axis=0), k, axes=([-1], [0]))


def detect_contacts(tracks: np.ndarray, names: list[str], fps: float, normal: np.ndarray, d: float,
                    *, height_m: float = CONTACT_HEIGHT_M, speed_m_s: float = CONTACT_SPEED_M_S) -> np.ndarray:
    """T x 2 bool [left, right]: the foot stands on the ground. Heights and speeds are read
    through a centred smoothing: per-frame jitter of lifted joints is as fast as a slow step."""
    tracks = smooth_centred(tracks)
    heights = soles(tracks, names) @ normal - d                     # T x 2
    ankles = tracks[:, [names.index("ankle_L"), names.index("ankle_R")]]
    contact = (heights < height_m) & (_speed(ankles, fps, normal) < speed_m_s)
    low = heights < height_m
    flat = ankles - (ankles @ normal)[..., None] * normal
    # a stance lasts while the foot stays low and near where it stood: a jittery frame (a foot
    # hidden behind the knees in a squat) moves the ankle's speed, not where it stands
    contact = np.stack([_merge_runs(_extend_runs(contact[:, k], low[:, k], flat[:, k]), heights[:, k], flat[:, k],
                                    height_m, int(round(MAX_MERGE_S * fps))) for k in range(2)], 1)
    # a stance broken for a frame or two by a jittery frame is one stance
    contact = np.stack([~_drop_short_runs(~contact[:, k], MAX_GAP_FRAMES + 1, inner_only=True) & (heights[:, k] < height_m)
                        for k in range(2)], 1)
    return np.stack([_drop_short_runs(contact[:, k], MIN_CONTACT_FRAMES) for k in range(2)], 1)


def contact_runs(contact: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame ranges where a T bool array is True."""
    edges = np.diff(np.r_[0, contact.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _extend_runs(contact: np.ndarray, low: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """contact with each run grown both ways over frames where the foot is low and within
    STANCE_DRIFT_M of the run's median spot (flat: T x 3 ankle positions along the ground)."""
    out = contact.copy()
    T = len(contact)
    for a, b in contact_runs(contact):
        spot = np.median(flat[a:b], axis=0)
        near = low & (np.linalg.norm(flat - spot, axis=1) < STANCE_DRIFT_M)
        while b < T and near[b]:
            b += 1
        while a > 0 and near[a - 1]:
            a -= 1
        out[a:b] = True
    return out


def _merge_runs(contact: np.ndarray, heights: np.ndarray, flat: np.ndarray, height_m: float,
                max_gap: int) -> np.ndarray:
    """Two runs of one foot on the same spot (within STANCE_DRIFT_M) with a short gap between them
    whose frames mostly stay low are one stance (the foot was never lifted, only lost)."""
    out = contact.copy()
    runs = contact_runs(contact)
    for (a0, b0), (a1, b1) in zip(runs[:-1], runs[1:]):
        same_spot = np.linalg.norm(np.median(flat[a0:b0], axis=0) - np.median(flat[a1:b1], axis=0)) < STANCE_DRIFT_M
        if same_spot and a1 - b0 <= max_gap and np.median(heights[b0:a1]) < height_m:
            out[b0:a1] = True
    return out


def _drop_short_runs(contact: np.ndarray, min_len: int, inner_only: bool = False) -> np.ndarray:
    """contact without its runs shorter than min_len (inner_only: only runs not touching an end)."""
    out = contact.copy()
    for a, b in contact_runs(contact):
        if b - a < min_len and not (inner_only and (a == 0 or b == len(contact))):
            out[a:b] = False
    return out


def foot_skate_mm(tracks: np.ndarray, names: list[str], contact: np.ndarray,
                  normal: np.ndarray = np.array([0.0, 1.0, 0.0])) -> float:
    """Mean horizontal slide of a foot in contact (both this frame and the last), mm per frame,
    measured at the foot's joints (ankle, heel, toes). NaN when no foot stands two frames running."""
    return skate_mm([tracks[:, foot_indices(names, side)] for side in SIDES], contact, normal)


def skate_mm(feet: list[np.ndarray], contact: np.ndarray, normal: np.ndarray = np.array([0.0, 1.0, 0.0])) -> float:
    """skate of points that move with each foot: feet[k] is T x F x 3 for contact[:, k]."""
    slides = []
    for k, foot in enumerate(feet):
        step = np.diff(foot, axis=0)
        step = step - (step @ normal)[..., None] * normal
        both = contact[1:, k] & contact[:-1, k]
        slides.append(np.linalg.norm(step[both], axis=-1).ravel())
    slides = np.concatenate(slides)
    return float(slides.mean() * 1000) if len(slides) else float("nan")
