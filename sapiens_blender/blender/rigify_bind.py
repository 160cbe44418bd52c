"""After Rigify's Generate: bind the avatar's mesh to the generated rig's deform bones.

Rigify turns each metarig bone NAME into a deform bone DEF-NAME (limbs split into segments
DEF-NAME, DEF-NAME.001, ...; the first segment takes the bone's weights, the segments follow one
another along the limb). Binding renames the mesh's weight groups to those deform bones and
points its Armature modifier and parent at the generated rig, keeping the mesh where it is.
"""

from __future__ import annotations

import bpy


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
    deform = {bone.name for bone in rig.data.bones if bone.use_deform}
    for obj in meshes:
        for group in obj.vertex_groups:
            target = f"DEF-{group.name}"
            if target in deform and target not in obj.vertex_groups:
                group.name = target
        for modifier in obj.modifiers:
            if modifier.type == "ARMATURE" and modifier.object == metarig:
                modifier.object = rig
        world = obj.matrix_world.copy()
        obj.parent = rig
        obj.matrix_world = world  # parented without moving
    return rig, meshes
