"""Rigging: 3-D joints from keypoints, a skeleton in a named convention, skin weights.
docs/rig.md describes skeleton.json and the conventions; sequences of frames become animations
in engine.motion, which builds on this package.

The avatar builder calls `rig_avatar` (this module) and describes the result with
`engine.rig.describe` (scene.Skeleton, scene.Skin) for the writers in engine.formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.errors import BundleError

__all__ = ["Rig", "rig_avatar", "deform_bones"]

Progress = Callable[[str, float, str], None] | None


@dataclass
class Rig:
    skeleton: dict               # skeleton.json content (docs/rig.md)
    joint_names: list[str]       # deforming bones, in skin joint order
    weights_joints: np.ndarray   # V x 4 uint16 indices into joint_names
    weights: np.ndarray          # V x 4 float32, rows sum to 1
    rest_vertices: np.ndarray | None  # V x 3 when the mesh was re-posed (A/T-pose), else None


def deform_bones(skeleton: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(deforming bone names, their indices among all bones, parent as a deform index or -1).

    A deform bone whose parent does not deform hangs from the nearest deforming ancestor."""
    bones = skeleton["bones"]
    idx = {b["name"]: i for i, b in enumerate(bones)}
    deform = [i for i, b in enumerate(bones) if b.get("deform", True)]
    dpos = {i: k for k, i in enumerate(deform)}
    parents = []
    for i in deform:
        p = bones[i]["parent"]
        while p is not None and idx[p] not in dpos:
            p = bones[idx[p]]["parent"]
        parents.append(dpos[idx[p]] if p is not None else -1)
    return [bones[i]["name"] for i in deform], np.array(deform), np.array(parents)


def _transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def rig_from_joints(joints, vertices: np.ndarray, faces: np.ndarray, vertex_labels: np.ndarray | None,
                    camera_to_avatar: np.ndarray, *, convention: str = "rigify", rest_pose: str = "photo",
                    parted=None, progress: Progress = None) -> Rig:
    """The rig for a mesh (avatar frame) from lifted joints (engine.rig.lift.Joints3D, camera frame);
    parted: engine.rig.weights.PartedArms of the mesh's vertices (its arms cut from the trunk)."""
    from engine.rig.lift import STATUS_NAMES
    from engine.rig.pose import REST_POSES, repose
    from engine.rig.skeleton import build_skeleton
    from engine.rig.weights import compute_weights

    if rest_pose not in REST_POSES:
        raise BundleError(f"unknown rest pose '{rest_pose}' (choose from {', '.join(REST_POSES)})")
    M = np.asarray(camera_to_avatar, np.float64)
    pos_avatar = _transform(M, joints.positions)
    joints_avatar = {n: pos_avatar[i] for i, n in enumerate(joints.names)}
    skeleton = build_skeleton(
        joints_avatar, convention=convention, height=joints.height,
        confidence={n: float(c) for n, c in zip(joints.names, joints.confidence)},
        status={n: STATUS_NAMES[int(s)] for n, s in zip(joints.names, joints.status)})
    skeleton["rest_pose"] = "photo"
    if progress:
        progress("rig", 0.3, "skeleton built")
    names, index, parents = deform_bones(skeleton)
    bones = skeleton["bones"]
    heads = np.array([bones[i]["head"] for i in index], np.float64)
    tails = np.array([bones[i]["tail"] for i in index], np.float64)
    wj, w = compute_weights(vertices, faces, vertex_labels, heads, tails, parents,
                            [bones[i]["part"] for i in index], [bones[i]["side"] for i in index],
                            height=joints.height, parted=parted, progress=progress)
    rest_vertices = None
    if rest_pose != "photo":
        skeleton, rest_vertices = repose(skeleton, vertices, index, wj, w, rest_pose)
        rest_vertices = rest_vertices.astype(np.float32)
    if progress:
        progress("rig", 1.0, "rig done")
    return Rig(skeleton, names, wj, w, rest_vertices)


def rig_avatar(bundle, vertices: np.ndarray, faces: np.ndarray, vertex_labels: np.ndarray | None,
               camera_to_avatar: np.ndarray, *, convention: str = "rigify", rest_pose: str = "photo",
               progress: Progress = None) -> Rig:
    """Rig a mesh (vertices in the avatar frame) from its predictions bundle."""
    from engine.rig.lift import lift_joints

    for field in ("keypoints", "pointmap", "K"):
        if getattr(bundle, field, None) is None:
            raise BundleError(f"rigging needs the bundle's {field}; this bundle has none "
                              f"(run predict with the pose and pointmap tasks)")
    if progress:
        progress("rig", 0.0, "lifting joints")
    joints = lift_joints(bundle.keypoints, bundle.pointmap, getattr(bundle, "seg", None), bundle.K,
                         mask=getattr(bundle, "mask", None))
    return rig_from_joints(joints, vertices, faces, vertex_labels, camera_to_avatar,
                           convention=convention, rest_pose=rest_pose, progress=progress)
