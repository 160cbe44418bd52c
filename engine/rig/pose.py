"""Forward kinematics and linear blend skinning over skeleton.json bones, and the canonical
rest poses (A-pose, T-pose) the photo's pose can be straightened to."""

from __future__ import annotations

import numpy as np

from engine.errors import EngineError
from engine.rig.skeleton import _unit, skeleton_arrays

REST_POSES = ("photo", "apose", "tpose")
STRAIGHT_BEND_DEG = 3.0   # straightened elbows/knees keep this much bend (Rigify needs a pole)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shortest rotation (3 x 3) taking unit vector a to unit vector b."""
    a, b = _unit(a), _unit(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -1 + 1e-9:   # opposite: half turn about any axis perpendicular to a
        axis = _unit(np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0]))
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def forward_kinematics(heads: np.ndarray, tails: np.ndarray, parents: np.ndarray,
                       local_rot: np.ndarray, root_offset: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Global rotation (B x 3 x 3) and new head (B x 3) of every bone.

    local_rot[b] rotates bone b about its head, in the avatar frame, after its parent moved it
    (so a child follows its parent rigidly unless it has its own rotation)."""
    B = len(heads)
    R = np.zeros((B, 3, 3))
    new_heads = np.zeros((B, 3))
    for b in range(B):   # bones are ordered parents first; B is ~60
        p = parents[b]
        if p < 0:
            R[b] = local_rot[b]
            new_heads[b] = heads[b] + (0 if root_offset is None else root_offset)
        else:
            new_heads[b] = R[p] @ (heads[b] - heads[p]) + new_heads[p]
            R[b] = local_rot[b] @ R[p]
    return R, new_heads


def skin_vertices(vertices: np.ndarray, weights_joints: np.ndarray, weights: np.ndarray,
                  rest_heads: np.ndarray, R: np.ndarray, new_heads: np.ndarray) -> np.ndarray:
    """Linear blend skinning: sum_k w_k (R_k (v - head_k) + new_head_k) over the deform bones."""
    out = np.zeros_like(vertices, dtype=np.float64)
    for k in range(weights_joints.shape[1]):
        j = weights_joints[:, k].astype(np.int64)
        local = vertices - rest_heads[j]
        moved = np.einsum("vij,vj->vi", R[j], local) + new_heads[j]
        out += weights[:, k:k + 1] * moved
    return out


def _targets(skeleton: dict, rest_pose: str) -> dict[str, np.ndarray]:
    joints = {k: np.asarray(v) for k, v in skeleton["joints3d"]["positions"].items()}
    from engine.rig.skeleton import body_frame
    left, up, _ = body_frame(joints)
    out = {}
    for b in skeleton["bones"]:
        side = 1.0 if b["side"] == "L" else -1.0
        if b["part"] in ("upper_arm", "forearm", "hand"):
            lateral = side * left
            out[b["name"]] = lateral if rest_pose == "tpose" else _unit(lateral - up)
        elif b["part"] in ("thigh", "shin"):
            out[b["name"]] = -up
    return out


def repose(skeleton: dict, vertices: np.ndarray | None, deform_index: np.ndarray,
           weights_joints: np.ndarray | None, weights: np.ndarray | None, rest_pose: str
           ) -> tuple[dict, np.ndarray | None]:
    """Straighten the skeleton to an A- or T-pose and deform the mesh to match (LBS)."""
    if rest_pose not in REST_POSES:
        raise EngineError(f"unknown rest pose '{rest_pose}' (choose from {', '.join(REST_POSES)})")
    if rest_pose == "photo":
        return skeleton, None
    names, parents, heads, tails, zs = skeleton_arrays(skeleton)
    targets = _targets(skeleton, rest_pose)
    B = len(names)
    R = np.zeros((B, 3, 3))
    new_heads = np.zeros((B, 3))
    local = np.tile(np.eye(3), (B, 1, 1))
    for b in range(B):
        p = parents[b]
        Rp = R[p] if p >= 0 else np.eye(3)
        new_heads[b] = Rp @ (heads[b] - heads[p]) + new_heads[p] if p >= 0 else heads[b]
        if names[b] in targets:
            d = Rp @ _unit(tails[b] - heads[b])
            target = targets[names[b]]
            part = skeleton["bones"][b]["part"]
            if part in ("forearm", "shin") and p >= 0:   # keep a slight bend toward the flex side
                flex = R[p] @ zs[p]
                target = _unit(target + np.tan(np.radians(STRAIGHT_BEND_DEG)) * flex)
            local[b] = rotation_between(d, target)
        R[b] = local[b] @ Rp
    new_tails = np.einsum("bij,bj->bi", R, tails - heads) + new_heads
    new_z = np.einsum("bij,bj->bi", R, zs)
    out = _with_bones(skeleton, new_heads, new_tails, new_z)
    out["rest_pose"] = rest_pose
    new_vertices = None
    if vertices is not None and weights is not None:
        new_vertices = skin_vertices(np.asarray(vertices, np.float64), weights_joints, weights,
                                     heads[deform_index], R[deform_index], new_heads[deform_index])
    return out, new_vertices


def _with_bones(skeleton: dict, heads: np.ndarray, tails: np.ndarray, zs: np.ndarray) -> dict:
    from engine.rig.skeleton import blender_roll
    out = dict(skeleton)
    bones = []
    for b, h, t, z in zip(skeleton["bones"], heads, tails, zs):
        nb = dict(b)
        z = _unit(z - _unit(t - h) * (z @ _unit(t - h)))
        nb["head"] = [round(float(x), 6) for x in h]
        nb["tail"] = [round(float(x), 6) for x in t]
        nb["z_axis"] = [round(float(x), 6) for x in z]
        nb["roll"] = round(blender_roll(h, t, z), 6)
        bones.append(nb)
    out["bones"] = bones
    return out
