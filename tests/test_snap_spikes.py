"""The face snap's spike guard (engine.geometry.detail._spikes_held): a vertex that moves alone,
far past every neighbour, keeps its place; a patch that moves as one keeps its move, edge included."""

from __future__ import annotations

import numpy as np

from engine.geometry.detail import SNAP_SPIKE_M, _spikes_held


def _grid(n: int = 9, depth: float = 3.0, pitch: float = 0.01):
    """A flat n x n vertex grid facing the camera at `depth` (metres), two triangles a cell."""
    rows, cols = np.mgrid[0:n, 0:n]
    v = np.stack([(cols - n // 2) * pitch, (rows - n // 2) * pitch, np.full((n, n), depth)], -1).reshape(-1, 3)
    i = (rows[:-1, :-1] * n + cols[:-1, :-1]).ravel()
    faces = np.concatenate([np.stack([i, i + 1, i + n], 1), np.stack([i + 1, i + n + 1, i + n], 1)])
    return v, faces


def test_a_vertex_moving_alone_keeps_its_place():
    v, faces = _grid()
    distance = np.linalg.norm(v, axis=1)
    move = np.zeros(len(v))
    move[40] = 2.5 * SNAP_SPIKE_M              # the middle vertex, its neighbours still
    move[10] = 0.5 * SNAP_SPIKE_M              # a small move stays
    move[60] = -2.5 * SNAP_SPIKE_M             # so does a lone pit: held back too
    scale, held = _spikes_held(v, faces, 1.0 + move / distance)
    assert held == 2
    assert scale[40] == 1.0 and scale[60] == 1.0
    assert scale[10] != 1.0


def test_a_patch_moving_as_one_keeps_its_move_edge_included():
    v, faces = _grid()
    distance = np.linalg.norm(v, axis=1)
    rows, cols = np.divmod(np.arange(len(v)), 9)
    patch = (rows >= 2) & (rows <= 6) & (cols >= 2) & (cols <= 6)
    move = np.where(patch, 3.0 * SNAP_SPIKE_M, 0.0)    # a step at the patch's edge, every patch vertex alike
    scale, held = _spikes_held(v, faces, 1.0 + move / distance)
    assert held == 0
    assert np.array_equal(scale != 1.0, patch)
