"""The rig as engine.formats.scene descriptions: a skeleton.json -> scene.Skeleton, a Rig's
weights -> scene.Skin. The file formats write these; the rig never touches a file writer."""

from __future__ import annotations

import numpy as np

from engine.formats.scene import Skeleton, Skin
from engine.rig.skeleton import bone_matrices, skeleton_arrays


def skeleton_description(skeleton: dict) -> Skeleton:
    """Every bone a joint whose frame is the bone's (x, y = head->tail, z = skeleton.json's
    z_axis, origin at the head), in skeleton.json's order (parents first)."""
    names, parents, heads, tails, zs = skeleton_arrays(skeleton)
    world = bone_matrices(heads, tails, zs)
    local = world.copy()
    has = parents >= 0
    local[has] = np.linalg.inv(world[parents[has]]) @ world[has]
    return Skeleton(names, parents, local, world, tails=tails, name=skeleton.get("convention", "rig"))


def skin_description(rig) -> Skin:
    """The Rig's weights with joint indices into the whole skeleton (not only its deform bones)."""
    names = [b["name"] for b in rig.skeleton["bones"]]
    index = {n: i for i, n in enumerate(names)}
    deform = np.array([index[n] for n in rig.joint_names])
    joints = deform[np.asarray(rig.weights_joints, np.int64)].astype(np.uint16)
    return Skin(joints, np.asarray(rig.weights, np.float32))
