"""glTF node animation -> Blender pose-bone channels, in numpy (no bpy).

glTF animates each joint node's local TRS; Blender keys a pose bone's `matrix_basis`, relative to
its rest pose in its own bone frame. With the axis change A (avatar Y-up -> Blender Z-up), a
node's world-space motion `D = A G(t) G(rest)^-1 A^-1` moves the bone's armature-space rest
matrix R to `D R`, so the basis of a bone whose parent moves by D_p is `R^-1 D_p^-1 D R`. Bones
without a node follow their parent (identity basis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .avatar import Animation, NodeRest, quaternion_to_matrix

# avatar (glTF, +Y up) -> Blender (+Z up): (x, y, z) -> (x, -z, y)
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float64)


@dataclass
class BoneTrack:
    bone: str
    location: np.ndarray  # T x 3
    rotation: np.ndarray  # T x 4 quaternion (w, x, y, z)
    scale: np.ndarray  # T x 3


def sample_times(animation: Animation) -> np.ndarray:
    """All key times of the animation, sorted and unique (seconds)."""
    if not animation.channels:
        return np.zeros(0, np.float64)
    return np.unique(np.concatenate([c.times.astype(np.float64) for c in animation.channels]))


def bone_tracks(
    animation: Animation,
    nodes: NodeRest,
    bone_names: list[str],
    bone_parents: list[int],
    bone_rest: np.ndarray,
    times: np.ndarray,
) -> list[BoneTrack]:
    """Pose-bone tracks for the bones `animation` moves (directly or through a parent node).

    bone_parents: index of each bone's parent in bone_names (-1: root), parents before children.
    bone_rest: B x 4 x 4 armature-space rest matrices (Blender's `bone.matrix_local`).
    """
    T = len(times)
    locals_t = np.broadcast_to(nodes.matrices, (T,) + nodes.matrices.shape).copy()  # T x N x 4 x 4
    animated_nodes = _apply_channels(animation, nodes, locals_t, times)
    world_t = _forward_kinematics(locals_t, nodes.parents)
    world_rest = _forward_kinematics(nodes.matrices[None], nodes.parents)[0]
    delta = Y_UP_TO_Z_UP @ world_t @ np.linalg.inv(world_rest) @ np.linalg.inv(Y_UP_TO_Z_UP)  # T x N x 4 x 4

    node_index = {name: i for i, name in enumerate(nodes.names)}
    bone_delta = np.empty((T, len(bone_names), 4, 4))
    tracks = []
    for b, name in enumerate(bone_names):  # one pass over bones (tens), arrays over frames
        n = node_index.get(name)
        parent = bone_parents[b]
        if n is not None:
            bone_delta[:, b] = delta[:, n]
        else:
            bone_delta[:, b] = bone_delta[:, parent] if parent >= 0 else np.eye(4)
        if n is None or not animated_nodes[n]:  # an unkeyed child of a keyed node keeps its rest basis
            continue
        parent_delta = bone_delta[:, parent] if parent >= 0 else np.eye(4)
        rest = bone_rest[b]
        basis = np.linalg.inv(rest) @ np.linalg.inv(parent_delta) @ bone_delta[:, b] @ rest
        location, rotation, scale = decompose(basis)
        tracks.append(BoneTrack(name, location, rotation, scale))
    return tracks


def decompose(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T x 4 x 4 -> location T x 3, continuous quaternions T x 4 (w, x, y, z), scale T x 3."""
    location = matrices[:, :3, 3]
    scale = np.linalg.norm(matrices[:, :3, :3], axis=1)
    rotation = matrix_to_quaternion(matrices[:, :3, :3] / np.maximum(scale[:, None, :], 1e-12))
    # q and -q are the same rotation: flip signs so consecutive keys interpolate the short way
    flips = np.einsum("ij,ij->i", rotation[1:], rotation[:-1]) < 0
    sign = np.concatenate([[1.0], np.where(np.cumsum(flips) % 2, -1.0, 1.0)])
    return location, rotation * sign[:, None], scale


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """N x 3 x 3 rotations -> N x 4 (w, x, y, z), choosing the numerically stable branch per row."""
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    candidates = np.stack(
        [
            np.stack([1 + trace, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            np.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], -1),
            np.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1]], -1),
            np.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
        ],
        axis=1,
    )  # N x 4 candidates x 4
    diag = np.stack([trace, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1)
    best = candidates[np.arange(len(m)), np.argmax(diag, axis=1)]
    q = best / np.linalg.norm(best, axis=1, keepdims=True)
    return q * np.where(q[:, :1] < 0, -1.0, 1.0)


def _apply_channels(animation: Animation, nodes: NodeRest, locals_t: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Overwrite the animated T/R/S parts of the per-frame local matrices; return the animated-node mask."""
    index = {name: i for i, name in enumerate(nodes.names)}
    # rest TRS of every node, so a channel replaces only its own component
    rest = nodes.matrices
    scale = np.linalg.norm(rest[:, :3, :3], axis=1)
    trs = {
        "translation": np.broadcast_to(rest[:, :3, 3], (len(times),) + rest[:, :3, 3].shape).copy(),
        "rotation": np.broadcast_to(rest[:, :3, :3] / np.maximum(scale[:, None, :], 1e-12), (len(times),) + rest[:, :3, :3].shape).copy(),
        "scale": np.broadcast_to(scale, (len(times),) + scale.shape).copy(),
    }
    animated = np.zeros(len(nodes.names), bool)
    for ch in animation.channels:
        n = index.get(ch.node)
        if n is None:
            continue
        animated[n] = True
        values = _sample(ch.times.astype(np.float64), ch.values.astype(np.float64), times, ch.path, ch.interpolation)
        if ch.path == "rotation":
            trs["rotation"][:, n] = quaternion_to_matrix(values[:, [3, 0, 1, 2]])
        else:
            trs[ch.path][:, n] = values
    locals_t[..., :3, :3] = trs["rotation"] * trs["scale"][..., None, :]
    locals_t[..., :3, 3] = trs["translation"]
    return animated


def _sample(key_times: np.ndarray, values: np.ndarray, times: np.ndarray, path: str, interpolation: str) -> np.ndarray:
    """Values at `times`: linear (slerp for rotations) or step, clamped at the ends."""
    if len(key_times) == 1:
        return np.repeat(values[:1], len(times), axis=0)
    right = np.clip(np.searchsorted(key_times, times, side="right"), 1, len(key_times) - 1)
    left = right - 1
    span = key_times[right] - key_times[left]
    t = np.clip((times - key_times[left]) / np.where(span > 0, span, 1.0), 0.0, 1.0)[:, None]
    if interpolation == "STEP":
        t = (t >= 1.0).astype(np.float64)
    a, b = values[left], values[right]
    if path != "rotation":
        return a + (b - a) * t
    dot = np.sum(a * b, axis=1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.abs(dot)
    angle = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(angle)
    near = sin < 1e-6
    wa = np.where(near, 1 - t, np.sin((1 - t) * angle) / np.where(near, 1, sin))
    wb = np.where(near, t, np.sin(t * angle) / np.where(near, 1, sin))
    q = wa * a + wb * b
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _forward_kinematics(locals_t: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """World matrices for T x N local matrices, one vectorised step per hierarchy level."""
    world = np.array(locals_t)
    done = parents < 0
    while not done.all():
        ready = ~done & (parents >= 0) & done[np.maximum(parents, 0)]
        if not ready.any():
            raise ValueError("the node hierarchy has a cycle")
        world[:, ready] = world[:, parents[ready]] @ locals_t[:, ready]
        done |= ready
    return world

