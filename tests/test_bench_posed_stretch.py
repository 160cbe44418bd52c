"""bench/bench_posed_stretch.py's figures on meshes whose answer is known: a rigid turn stretches
nothing, a strip pulled to three times its length is all sheet."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import bench_posed_stretch as B  # noqa: E402


def strip(n: int = 10):
    """An n x 2 vertex strip along x, 1 cm cells, two triangles per cell."""
    x = np.arange(n, dtype=np.float64) * 0.01
    v = np.concatenate([np.stack([x, np.zeros(n), np.zeros(n)], 1), np.stack([x, np.full(n, 0.01), np.zeros(n)], 1)])
    i = np.arange(n - 1)
    f = np.concatenate([np.stack([i, i + 1, i + n], 1), np.stack([i + 1, i + n + 1, i + n], 1)])
    return v, f


def test_a_rigid_turn_stretches_nothing():
    v, f = strip()
    posed = v @ B.turn(np.array([0.0, 0.0, 1.0]), 60.0).T
    figures = B.stretch_figures(v, posed, f)
    assert figures["sheet_pct"] == 0 and figures["edges_pct"] == 0 and figures["squashed_pct"] == 0
    assert abs(figures["grown_cm2"]) < 1e-9 and abs(figures["max_edge"] - 1) < 1e-9


def test_a_strip_pulled_to_three_times_its_length_is_all_sheet():
    v, f = strip()
    posed = v * [3.0, 1.0, 1.0]
    figures = B.stretch_figures(v, posed, f)
    assert abs(figures["sheet_pct"] - 100) < 1e-9
    assert abs(figures["grown_cm2"] - 2 * 1e4 * B.face_areas(v, f).sum()) < 1e-6
    assert abs(figures["max_edge"] - 3) < 1e-9


def test_the_raised_arms_lift_both_upper_arms_and_their_children():
    heads = np.array([[0.0, 1.0, 0.0], [0.2, 1.4, 0.0], [0.3, 1.1, 0.0], [-0.2, 1.4, 0.0]])
    tails = np.array([[0.0, 1.4, 0.0], [0.3, 1.1, 0.0], [0.4, 0.9, 0.0], [-0.3, 1.1, 0.0]])
    names = ["spine", "upper_arm.L", "forearm.L", "upper_arm.R"]
    parents = np.array([-1, 0, 1, 0])
    R, new_heads = B.raised_arms(heads, tails, parents, names, 60.0)
    for b in (1, 3):
        assert (R[b] @ (tails[b] - heads[b]))[1] > tails[b, 1] - heads[b, 1] + 0.1
    assert new_heads[2, 1] > heads[2, 1] + 0.1          # the forearm goes up with its parent
    assert np.allclose(R[0], np.eye(3))
