"""Frames -> animation on generated sequences with known motion (engine.synthetic.make_sequence):
per-frame bundles, the animate pipeline end to end, recovered joints against the truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.bundle import write_bundle
from engine.motion.animate import animate_frames
from engine.synthetic import degrade, make_sequence, to_bundle

FPS = 30.0
METRIC = [f"{j}_{s}" for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle") for s in "LR"] + ["neck"]
# joints that hardly move in the wave: their error is jitter, not motion
STILL = [f"{j}_{s}" for j in ("hip", "knee", "ankle") for s in "LR"] + ["shoulder_L", "elbow_L", "wrist_L"]
FAST_FROM = 30     # the wave runs at 2.5 Hz from 1 s on
# bounds from measurement (256 x 384, 45 frames; docs/rig.md): wave exact 1.0 cm, wave degraded
# 2.9 cm (4.1 unsmoothed), walk degraded 3.8 cm with the hip-width fix tried in lift.py; without it
# (hips ~10 cm deep, docs/rig.md) wave exact 2.4 cm; lag of the fast wrist 1 frame at most.
# The bone-length depth check in lift.py costs the degraded runs a little (wave 3.08 -> 3.42 cm
# smoothed, 4.18 -> 4.86 raw; walk 3.61 -> 3.97): noisy keypoints trip it on some frames
WAVE_EXACT_BOUND_CM = 2.0
DEGRADED_BOUND_CM = 4.5      # goal 5 cm


def animate(frames, dir_, *, degraded: bool, smooth_settings=(True,)):
    for i, frame in enumerate(frames):
        write_bundle(to_bundle(degrade(frame, seed=i) if degraded else frame), dir_ / "bundles" / f"{i:04d}")
    out = []
    for smooth in smooth_settings:
        anim = animate_frames(dir_ / "bundles", dir_ / f"anim_{smooth}", fps=FPS, smooth=smooth)
        out.append(np.stack([[json.loads((anim / "frames" / f"{i:06d}.json").read_text())["joints"][n]
                              for n in METRIC] for i in range(len(frames))]))
    return out


def truth_avatar_axes(frames) -> np.ndarray:
    """T x J x 3 true joints in the avatar axes (x, -y, -z of the camera), before the translation."""
    return np.stack([[f.joints3d_camera[n] for n in METRIC] for f in frames]) * np.array([1.0, -1.0, -1.0])


def errors_cm(recovered, truth) -> tuple[np.ndarray, np.ndarray]:
    """T x J errors after the avatar frame's one constant translation, and that translation."""
    offset = np.median((truth - recovered).reshape(-1, 3), axis=0)
    return np.linalg.norm(recovered + offset - truth, axis=2) * 100, offset


def lag_frames(truth, estimate, max_lag=4) -> int:
    a, b = truth - truth.mean(), estimate - estimate.mean()
    return int(np.argmax([np.dot(a[: len(a) - lag], b[lag:]) for lag in range(max_lag + 1)]))


@pytest.fixture(scope="module")
def wave(tmp_path_factory):
    frames = make_sequence(40, "wave", fps=FPS, width=256, height=384)
    root = tmp_path_factory.mktemp("wave")
    (exact,) = animate(frames, root / "exact", degraded=False)
    smoothed, raw = animate(frames, root / "degraded", degraded=True, smooth_settings=(True, False))
    return frames, exact, smoothed, raw


def test_wave_recovered_within_goal(wave):
    frames, exact, smoothed, _ = wave
    truth = truth_avatar_axes(frames)
    err_exact, offset = errors_cm(exact, truth)
    err_degraded, _ = errors_cm(smoothed, truth)
    assert err_exact.mean() < WAVE_EXACT_BOUND_CM, err_exact.mean(0)
    assert err_degraded.mean() < DEGRADED_BOUND_CM, err_degraded.mean(0)
    # the avatar frame (docs/rig.md): origin under the first frame's pelvis, on the ground
    pelvis0 = 0.5 * (truth[0, METRIC.index("hip_L")] + truth[0, METRIC.index("hip_R")])
    assert np.abs(offset[[0, 2]] - pelvis0[[0, 2]]).max() < 0.03, (offset, pelvis0)
    ankles = truth[:, [METRIC.index("ankle_L"), METRIC.index("ankle_R")], 1]
    assert 0.0 < ankles.min() - offset[1] < 0.15     # ankle centres a few cm above the ground


def test_smoothing_removes_jitter_without_lagging_the_fast_wave(wave):
    frames, exact, smoothed, raw = wave
    truth = truth_avatar_axes(frames)
    still = [METRIC.index(n) for n in STILL]
    err_smooth, _ = errors_cm(smoothed, truth)
    err_raw, _ = errors_cm(raw, truth)
    assert err_smooth[:, still].mean() < 0.8 * err_raw[:, still].mean(), (err_smooth[:, still].mean(),
                                                                         err_raw[:, still].mean())
    w = METRIC.index("wrist_R")
    for recovered in (exact, smoothed):
        for axis in (0, 1):
            assert lag_frames(truth[FAST_FROM:, w, axis], recovered[FAST_FROM:, w, axis]) <= 1


def test_walk_recovered_within_goal(tmp_path):
    frames = make_sequence(30, "walk", fps=FPS, width=256, height=384)
    (smoothed,) = animate(frames, tmp_path, degraded=True)
    truth = truth_avatar_axes(frames)
    err, _ = errors_cm(smoothed, truth)
    assert err.mean() < DEGRADED_BOUND_CM, err.mean(0)
    # the sideways travel is followed (0.4 m/s): the pelvis moves as far as the truth does
    hips = [METRIC.index("hip_L"), METRIC.index("hip_R")]
    travel = lambda x: x[-1, hips, 0].mean() - x[0, hips, 0].mean()  # noqa: E731
    assert abs(travel(smoothed) - travel(truth)) < 0.05
