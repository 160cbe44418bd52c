"""Actions: pose-bone tracks (location, quaternion, scale per bone) keyed onto an armature."""

from __future__ import annotations

import bpy
import numpy as np

from ..io import animation as anim_io
from .created import CreatedData

# Keyframe.interpolation enum value of 'LINEAR' (CONSTANT=0, LINEAR=1, BEZIER=2)
_LINEAR_INTERPOLATION = 1


def armature_rest(armature_obj) -> tuple[list[str], list[int], np.ndarray]:
    """Bone names, parent indices (-1 for roots) and B x 4 x 4 rest matrices (armature space)."""
    bones = armature_obj.data.bones
    names = [b.name for b in bones]
    index = {n: i for i, n in enumerate(names)}
    parents = [index[b.parent.name] if b.parent else -1 for b in bones]
    rest = np.array([np.array(b.matrix_local) for b in bones], np.float64).reshape(-1, 4, 4)
    return names, parents, rest


def build_action(source, armature_obj, scene, created: CreatedData):
    """The first glTF animation of `source` (io.avatar's Avatar or io.motion's MotionFolder:
    `animations`, `nodes`) as an action on `armature_obj`, from the scene's start frame."""
    animation = source.animations[0]
    names, parents, rest = armature_rest(armature_obj)
    times = anim_io.sample_times(animation)
    if not len(times):
        return None
    tracks = anim_io.bone_tracks(animation, source.nodes, names, parents, rest, times)
    fps = scene.render.fps / scene.render.fps_base
    frames = (times * fps + scene.frame_start).astype(np.float32)
    action = created.add("actions", bpy.data.actions.new(f"{armature_obj.name}_{animation.name}"))
    key_tracks(action, armature_obj, tracks, frames)
    scene.frame_end = max(scene.frame_end, int(np.ceil(frames[-1])))
    return action


def key_tracks(action, armature_obj, tracks, frames: np.ndarray) -> None:
    """Assign `action` to `armature_obj` and key each track (io.animation.BoneTrack: bone,
    location F x 3, rotation F x 4 wxyz, scale F x 3) on `frames`, linear interpolation."""
    frames = np.asarray(frames, np.float32)
    fcurves = action_fcurves(action, armature_obj)
    interpolation = np.full(len(frames), _LINEAR_INTERPOLATION, np.int32)
    for track in tracks:
        pose_bone = armature_obj.pose.bones[track.bone]
        pose_bone.rotation_mode = "QUATERNION"
        base = f'pose.bones["{bpy.utils.escape_identifier(track.bone)}"]'
        for prop, values in (("location", track.location), ("rotation_quaternion", track.rotation), ("scale", track.scale)):
            for axis in range(values.shape[1]):
                fcurve = fcurves.new(f"{base}.{prop}", index=axis, action_group=track.bone)
                fcurve.keyframe_points.add(len(frames))
                co = np.stack([frames, values[:, axis].astype(np.float32)], axis=1)
                fcurve.keyframe_points.foreach_set("co", co.ravel())
                fcurve.keyframe_points.foreach_set("interpolation", interpolation)
                fcurve.update()


class _FCurveAdder:
    """`new(data_path, index, action_group)` on either API: layered actions (4.4+) or legacy."""

    def __init__(self, collection, layered: bool):
        self.collection, self.layered = collection, layered

    def new(self, data_path: str, index: int, action_group: str):
        if self.layered:
            return self.collection.new(data_path, index=index, group_name=action_group)
        return self.collection.new(data_path, index=index, action_group=action_group)


def action_fcurves(action, armature_obj) -> _FCurveAdder:
    """Assign `action` to `armature_obj` (a slot for it on 4.4+) and return its fcurve adder."""
    armature_obj.animation_data_create()
    armature_obj.animation_data.action = action
    if hasattr(action, "fcurves") and not hasattr(action, "slots"):  # Blender 4.2 / 4.3
        return _FCurveAdder(action.fcurves, layered=False)
    from bpy_extras import anim_utils

    slot = armature_obj.animation_data.action_slot
    if slot is None:
        slot = action.slots.new(id_type="OBJECT", name=armature_obj.name)
        armature_obj.animation_data.action_slot = slot
    channelbag = anim_utils.action_ensure_channelbag_for_slot(action, slot)
    return _FCurveAdder(channelbag.fcurves, layered=True)
