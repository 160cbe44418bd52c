"""Keys for rigs whose controls hang under constraint-driven bones (a generated Rigify rig).

The engine's curves are rest-relative rotations on the armature's plain hierarchy: a bone it does
not key stays at rest relative to its parent. In a generated Rigify rig some FK controls hang
under MCH bones that constraints move (the spine's MCH bones copy the hips and chest controls by
half, the neck's copies the root's rotation), so keyed as they come those controls land
elsewhere. Those controls are held where the engine means them (its `pose` curves, armature
space) by temporary Copy Transforms constraints, Blender evaluates the rig once per frame, and
the basis each needs without the constraint is what gets keyed ("visual keying").
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from ..io import retarget as retarget_io
from ..io.animation import BoneTrack

HOLD = "sapiens hold"          # name of the temporary constraints and empties


def constrained_controls(obj, bones: list[str]) -> list[str]:
    """The bones of `bones` that a constraint between them and the keyed bone above them (or their
    own parenting without inherited rotation) moves off the plain hierarchy's pose."""
    keyed = set(bones)
    out = []
    for name in bones:
        pose_bone = obj.pose.bones[name]
        moved = not pose_bone.bone.use_inherit_rotation
        parent = pose_bone.parent
        while not moved and parent is not None and parent.name not in keyed:
            moved = len(parent.constraints) > 0
            parent = parent.parent
        if moved:
            out.append(name)
    return out


def bake_through_constraints(context, obj, tracks: list[BoneTrack], poses: dict[str, np.ndarray]) -> list[BoneTrack]:
    """`tracks` with the constrained controls' keys replaced by the ones that put them where the
    engine means once Blender has evaluated the rig. Nothing is left behind: the temporary empties
    and constraints are removed and the armature's action put back."""
    held = [n for n in constrained_controls(obj, [t.bone for t in tracks]) if n in poses]
    if not held:
        return tracks
    frames = len(tracks[0].rotation)
    pose_bones = {t.bone: obj.pose.bones[t.bone] for t in tracks}
    for pose_bone in pose_bones.values():
        pose_bone.rotation_mode = "QUATERNION"
    rotation = {n: np.zeros((frames, 4)) for n in held}
    location = {n: np.zeros((frames, 3)) for n in held}
    world = np.array(obj.matrix_world)
    animation = obj.animation_data
    action = animation.action if animation is not None else None
    empties, constraints = {}, []
    try:
        if action is not None:
            animation.action = None
        for name in held:
            empty = bpy.data.objects.new(f"{HOLD} {name}", None)
            context.scene.collection.objects.link(empty)
            empties[name] = empty
            constraint = pose_bones[name].constraints.new("COPY_TRANSFORMS")
            constraint.name, constraint.target = HOLD, empty
            constraints.append((pose_bones[name], constraint))
        for t in range(frames):
            for track in tracks:
                pose_bone = pose_bones[track.bone]
                pose_bone.rotation_quaternion = track.rotation[t]
                pose_bone.location = track.location[t]
                pose_bone.scale = (1.0, 1.0, 1.0)
            for name, empty in empties.items():
                empty.matrix_world = Matrix((world @ poses[name][t]).tolist())
            context.view_layer.update()
            for name in held:
                pose_bone = pose_bones[name]
                basis = obj.convert_space(pose_bone=pose_bone, matrix=pose_bone.matrix, from_space="POSE",
                                          to_space="LOCAL")
                rotation[name][t] = basis.to_quaternion()
                location[name][t] = basis.to_translation()
    finally:
        for pose_bone, constraint in constraints:
            pose_bone.constraints.remove(constraint)
        for empty in empties.values():
            bpy.data.objects.remove(empty)
        if action is not None:
            animation.action = action
    baked = {n: BoneTrack(n, location[n], retarget_io.continuous_wxyz(rotation[n]), np.ones((frames, 3))) for n in held}
    return [baked.get(t.bone, t) for t in tracks]
