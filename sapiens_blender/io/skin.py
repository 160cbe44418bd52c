"""Skin weights -> vertex-group batches, in numpy (no bpy).

Blender has no bulk setter for vertex-group weights: `VertexGroup.add(indices, weight, 'REPLACE')`
sets one weight for many vertices per call. Weights are therefore quantized to steps of
1/levels (rounded per row so every row still sums to exactly 1) and grouped by (joint, weight):
one call per distinct pair instead of one per vertex. 1/4096 is far below what a deformation
shows, and keeps the number of calls in the low thousands for a whole body.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

DEFAULT_LEVELS = 4096


def quantize_weights(weights: np.ndarray, levels: int = DEFAULT_LEVELS) -> np.ndarray:
    """V x K float weights -> V x K integer steps (int32) summing to `levels` on rows with any weight."""
    w = np.clip(np.nan_to_num(np.asarray(weights, np.float64)), 0.0, None)
    total = w.sum(axis=1, keepdims=True)
    scaled = np.where(total > 0, w / np.where(total > 0, total, 1.0), 0.0) * levels
    steps = np.floor(scaled).astype(np.int64)
    # largest remainder: hand the missing steps of each row to its largest fractional parts
    missing = np.where(total[:, 0] > 0, levels - steps.sum(axis=1), 0)
    order = np.argsort(-(scaled - steps), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(w.shape[1])[None, :].repeat(len(w), 0), axis=1)
    steps += rank < missing[:, None]
    return steps.astype(np.int32)


def weight_batches(
    joints: np.ndarray, weights: np.ndarray, levels: int = DEFAULT_LEVELS
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (joint index, weight, vertex indices) for every distinct non-zero (joint, weight) pair."""
    steps = quantize_weights(weights, levels)
    joints = np.asarray(joints, np.int64)
    vertex = np.broadcast_to(np.arange(len(joints))[:, None], joints.shape)
    keep = steps > 0
    j, s, v = joints[keep], steps[keep].astype(np.int64), vertex[keep]
    # Two influences of one vertex may name the same joint (glTF allows it): merge them first.
    key_vj = v * (int(j.max(initial=0)) + 1) + j
    order = np.argsort(key_vj, kind="stable")
    key_vj, j, s, v = key_vj[order], j[order], s[order], v[order]
    first = np.concatenate([[True], key_vj[1:] != key_vj[:-1]]) if len(key_vj) else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    s = np.add.reduceat(s, starts) if len(starts) else s
    j, v = j[starts], v[starts]
    key = j * (levels + 1) + s
    order = np.argsort(key, kind="stable")
    key, v = key[order], v[order]
    bounds = np.flatnonzero(np.diff(key)) + 1
    for start, end in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(key)]])):
        if end > start:
            k = int(key[start])
            yield k // (levels + 1), (k % (levels + 1)) / levels, v[start:end]
