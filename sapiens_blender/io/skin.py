"""Skin weights -> vertex-group batches, in numpy (no bpy).

Blender has no bulk setter for vertex-group weights: `VertexGroup.add(indices, weight, 'REPLACE')`
sets one weight for many vertices per call. Weights are therefore quantized to steps of
1/levels (rounded per row so every row still sums to exactly 1) and grouped by (joint, weight):
one call per distinct pair instead of one per vertex. Steps of 1/1024 are finer than the 8-bit
weights many glTF exporters write, and keep the calls to a few thousand for a whole body.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

DEFAULT_LEVELS = 1024


def quantize_weights(weights: np.ndarray, levels: int = DEFAULT_LEVELS) -> np.ndarray:
    """V x K float weights -> V x K integer steps (int32) summing to `levels` on rows with any weight.

    Each weight is rounded to the nearest step; what the row is then short of (or over) goes to
    its largest weight, so every entry is within K/2 steps of exact and most within half a step.
    """
    w = np.clip(np.nan_to_num(np.asarray(weights, np.float32)), 0.0, None)
    total = w.sum(axis=1, keepdims=True)
    scaled = w * (levels / np.where(total > 0, total, 1.0))
    steps = np.rint(scaled).astype(np.int32)
    missing = np.where(total[:, 0] > 0, levels - steps.sum(axis=1), 0).astype(np.int32)
    steps[np.arange(len(w)), np.argmax(scaled, axis=1)] += missing
    return steps


def weight_batches(
    joints: np.ndarray, weights: np.ndarray, levels: int = DEFAULT_LEVELS
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (joint index, weight, vertex indices) for every distinct non-zero (joint, weight) pair."""
    steps = quantize_weights(weights, levels)
    joints = np.asarray(joints, np.int64)
    # Two influences of one vertex may name the same joint (glTF allows it): fold them together.
    for a in range(joints.shape[1]):
        for b in range(a + 1, joints.shape[1]):
            same = (joints[:, a] == joints[:, b]) & (steps[:, b] > 0)
            if same.any():
                steps[same, a] += steps[same, b]
                steps[same, b] = 0
    keep = steps > 0
    vertex = np.broadcast_to(np.arange(len(joints), dtype=np.int32)[:, None], joints.shape)[keep]
    key = joints[keep] * (levels + 1) + steps[keep]
    order = np.argsort(key)  # the order of vertices inside one batch does not matter
    key, vertex = key[order], vertex[order]
    bounds = np.flatnonzero(key[1:] != key[:-1]) + 1
    starts = np.concatenate([[0], bounds]).tolist()
    ends = np.concatenate([bounds, [len(key)]]).tolist()
    for start, end in zip(starts, ends):
        if end > start:
            k = int(key[start])
            yield k // (levels + 1), (k % (levels + 1)) / levels, vertex[start:end]
