"""After Rigify's Generate: bind the avatar's mesh to the generated rig's deform bones.

Rigify turns each metarig bone NAME into a deform bone DEF-NAME, limbs into segments DEF-NAME,
DEF-NAME.001, ... along the bone (twist spreads over them). Binding moves each engine weight onto
those deform bones, splitting a limb's weight between its two nearest segments by where the
vertex lies along the bone (numpy over all vertices, from the engine's skin read again from the
avatar folder the mesh came from); when that folder is gone or the mesh was edited, each group is
renamed to the first segment instead. The Armature modifier and the parent then point at the
generated rig, and the mesh stays where it is.
"""

from __future__ import annotations

import re
from pathlib import Path

import bpy
import numpy as np

from ..io.skin import weight_batches

SOURCE_PROPERTY = "sapiens_avatar"  # on an imported mesh: the avatar folder it came from


class RigifyBindError(ValueError):
    """The metarig cannot be bound: no generated rig, or no mesh skinned to the metarig."""


def generated_rig(metarig: bpy.types.Object) -> bpy.types.Object | None:
    """The rig Rigify generated from `metarig` (its `rigify_target_rig`), if any."""
    target = getattr(metarig.data, "rigify_target_rig", None)
    return target if target is not None and target.type == "ARMATURE" else None


def skinned_meshes(armature: bpy.types.Object) -> list[bpy.types.Object]:
    """Mesh objects whose Armature modifier uses `armature`."""
    return [
        obj for obj in bpy.data.objects
        if obj.type == "MESH" and any(m.type == "ARMATURE" and m.object == armature for m in obj.modifiers)
    ]


def metarig_of(obj: bpy.types.Object | None) -> bpy.types.Object | None:
    """The metarig for `obj`: itself when it is an armature Rigify generated a rig from, or the
    armature its mesh is skinned to."""
    if obj is None:
        return None
    if obj.type == "ARMATURE":
        return obj if generated_rig(obj) is not None else None
    if obj.type == "MESH":
        for modifier in obj.modifiers:
            if modifier.type == "ARMATURE" and modifier.object is not None and generated_rig(modifier.object):
                return modifier.object
    return None


def bind_to_generated_rig(metarig: bpy.types.Object) -> tuple[bpy.types.Object, list[bpy.types.Object]]:
    """Rebind every mesh skinned to `metarig` to the rig generated from it; returns (rig, meshes)."""
    rig = generated_rig(metarig)
    if rig is None:
        raise RigifyBindError(f"{metarig.name} has no generated rig: press Generate Rig (Rigify) first")
    meshes = skinned_meshes(metarig)
    if not meshes:
        raise RigifyBindError(f"no mesh is skinned to {metarig.name}")
    segments = deform_segments(metarig, rig)
    for obj in meshes:
        skin = _engine_skin(obj)
        if skin is not None:
            _split_weights(obj, metarig, segments, *skin)
        else:
            for group in obj.vertex_groups:
                targets = segments.get(group.name)
                if targets and targets[0] not in obj.vertex_groups:
                    group.name = targets[0]
        for modifier in obj.modifiers:
            if modifier.type == "ARMATURE" and modifier.object == metarig:
                modifier.object = rig
        world = obj.matrix_world.copy()
        obj.parent = rig
        obj.matrix_world = world  # parented without moving
    return rig, meshes


def deform_segments(metarig: bpy.types.Object, rig: bpy.types.Object) -> dict[str, list[str]]:
    """Metarig bone name -> the generated rig's deform bones made from it, from head to tail."""
    deform = [bone for bone in rig.data.bones if bone.use_deform]
    own = {f"DEF-{bone.name}" for bone in metarig.data.bones}  # spine.001 is a bone, not a segment of spine
    world = np.array(rig.matrix_world)
    out = {}
    for bone in metarig.data.bones:
        pattern = re.compile(rf"^DEF-{re.escape(bone.name)}(\.\d{{3}})?$")
        found = [b for b in deform if pattern.match(b.name) and (b.name == f"DEF-{bone.name}" or b.name not in own)]
        if not found:
            continue
        head = np.array(metarig.matrix_world) @ np.append(np.array(bone.head_local), 1.0)
        axis = np.array(metarig.matrix_world)[:3, :3] @ (np.array(bone.tail_local) - np.array(bone.head_local))
        along = [float(((world @ np.append(np.array(b.head_local), 1.0))[:3] - head[:3]) @ axis) for b in found]
        out[bone.name] = [b.name for _, b in sorted(zip(along, found), key=lambda pair: pair[0])]
    return out


def _engine_skin(obj):
    """(joint names, V x 4 joints, V x 4 weights) of the engine's skin for `obj`, read from the
    avatar folder it was imported from; None when that is gone or no longer matches the mesh."""
    from ..io.avatar import AvatarError, read_avatar

    source = obj.get(SOURCE_PROPERTY)
    if not source or not Path(source).is_dir():
        return None
    try:
        mesh = read_avatar(source).mesh
    except AvatarError:
        return None
    if mesh.joints is None or mesh.weights is None or len(mesh.joints) != len(obj.data.vertices):
        return None
    return list(mesh.joint_names), np.asarray(mesh.joints, np.int64), np.asarray(mesh.weights, np.float64)


def _split_weights(obj, metarig, segments: dict[str, list[str]], names, joints, weights) -> None:
    """Replace the engine's bone groups of `obj` by groups of the deform segments (see the module)."""
    targets = [t for name in names for t in segments.get(name, [])]
    start = np.zeros(len(names), np.int64)
    count = np.array([len(segments.get(name, [])) for name in names], np.int64)
    start[1:] = np.cumsum(count)[:-1]
    bones = [metarig.data.bones.get(name) for name in names]
    head = np.array([b.head_local if b else (0, 0, 0) for b in bones], np.float64)
    tail = np.array([b.tail_local if b else (0, 1, 0) for b in bones], np.float64)

    co = np.empty(3 * len(obj.data.vertices), np.float32)
    obj.data.vertices.foreach_get("co", co)
    to_armature = np.linalg.inv(np.array(metarig.matrix_world)) @ np.array(obj.matrix_world)
    points = co.reshape(-1, 3).astype(np.float64) @ to_armature[:3, :3].T + to_armature[:3, 3]

    n = count[joints]  # V x 4 segments of each influence's bone
    d = tail[joints] - head[joints]
    t = np.einsum("vkc,vkc->vk", points[:, None, :] - head[joints], d) / np.maximum(np.einsum("vkc,vkc->vk", d, d), 1e-12)
    s = np.clip(t, 0.0, 1.0) * n - 0.5  # position in segment units, 0 at the first segment's middle
    k0 = np.clip(np.floor(s), 0, np.maximum(n - 1, 0)).astype(np.int64)
    k1 = np.minimum(k0 + 1, np.maximum(n - 1, 0))
    f = np.where(s > 0, np.clip(s - k0, 0.0, 1.0), 0.0)
    w = np.where(n > 0, weights, 0.0)  # a bone without deform segments passes nothing on
    new_joints = np.concatenate([start[joints] + k0, start[joints] + k1], axis=1)
    new_weights = np.concatenate([w * (1.0 - f), w * f], axis=1)

    for name in {*names, *targets}:
        group = obj.vertex_groups.get(name)
        if group is not None:
            obj.vertex_groups.remove(group)
    groups = [obj.vertex_groups.new(name=name) for name in targets]
    for joint, weight, vertices in weight_batches(new_joints, new_weights):
        groups[joint].add(vertices.tolist(), weight, "REPLACE")
