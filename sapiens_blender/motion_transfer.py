"""Apply Motion to Armature: an animation (an `animate` output folder) onto the selected armature
(the avatar's own rig, a Rigify metarig or generated rig, a Mixamo or any character).

The engine does the retargeting (its `retarget` job, docs/retarget.md): the add-on sends the
armature's rest bones as a skeleton JSON and, when the user edited it, the bone map; it gets back
per-bone curves relative to each bone's rest (a pose bone's basis) and keys them as an action.
The bone map the engine used is shown in a list on the armature, editable, and can be saved as a
preset (JSON in the add-on's user folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix
from bpy.props import CollectionProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from . import option_table, user_data
from .blender.action import armature_rest, key_tracks
from .blender.constrained_keys import bake_through_constraints
from .io import retarget as retarget_io

RETARGET_TIMEOUT_S = 300.0


class SapiensBoneMapItem(bpy.types.PropertyGroup):
    bone: StringProperty(name="Bone", description="Bone of this armature")
    part: StringProperty(name="Part", description="Humanoid part it plays (leftUpperArm, hips, ...) or a bone "
                                                  "of the motion; empty: the bone keeps its rest pose")


class SapiensMotionTransfer(bpy.types.PropertyGroup):
    motion_dir: StringProperty(name="Motion", subtype="DIR_PATH",
                               description="An animation folder written by Animate (skeleton.json, frames/)")
    preset_name: StringProperty(name="Preset", default="my character", description="Name to save the bone map under")
    animate_onto: PointerProperty(
        name="Animate Onto", type=bpy.types.Object, poll=lambda self, obj: obj.type == "ARMATURE",
        description="An Image Sequence / Video run puts its motion straight onto this armature "
                    "(instead of importing a new skeleton)")


def _preset_items(self, context):
    items = [(str(p), p.stem, f"bone map preset {p.name}") for p in retarget_io.list_presets(presets_dir())]
    return items or [("", "(no presets)", "save a bone map first")]


def presets_dir() -> Path:
    return user_data.user_dir("bone_maps")


def armature_skeleton(obj) -> dict:
    """The armature's rest bones in armature space, as the engine's skeleton JSON."""
    names, parents, rest = armature_rest(obj)
    bones = obj.data.bones
    tails = np.zeros(len(bones) * 3)
    bones.foreach_get("tail_local", tails)
    return retarget_io.skeleton_document(names, parents, rest[:, :3, 3], tails.reshape(-1, 3), rest[:, :3, 2])


def run_retarget(context, obj, motion_dir: str) -> dict:
    """The engine's `retarget` job for this armature; its result (with curves). Raises
    RuntimeError with the engine's words when it fails."""
    from .engine_client import EngineClientError
    from .engine_session import SESSION
    from .preferences import get_preferences

    prefs = get_preferences(context)
    if prefs is None:
        raise RuntimeError("the Sapiens add-on is not enabled in the preferences")
    work = user_data.user_dir("retarget", bpy.path.clean_name(obj.name))
    target = work / "armature.json"
    target.write_text(json.dumps(armature_skeleton(obj)))
    # the curves are what the add-on keys; the GLB beside them is for the user to take elsewhere
    params = {"motion": motion_dir, "target": str(target), "out_dir": str(work / "out"), "curves": True,
              "formats": ["glb"]}
    animate_options = getattr(context.scene.sapiens, "animate", None)
    if animate_options is not None and hasattr(animate_options, "feet"):
        params["feet"] = animate_options.feet      # the one Feet option: animate's and the retarget's
    rows = [(item.bone, item.part) for item in obj.sapiens_bone_map if item.part]
    if rows:
        (work / "bone_map.json").write_text(json.dumps(retarget_io.bone_map_document(rows)))
        params["bone_map"] = str(work / "bone_map.json")
    try:
        return SESSION.client(prefs.engine_settings()).call("retarget", params, timeout=RETARGET_TIMEOUT_S)
    except EngineClientError as exc:
        raise RuntimeError(str(exc)) from None


def fill_bone_map(obj, rows: list[tuple[str, str]]) -> None:
    """Show `rows` in the armature's list: every bone of the armature, its part (or empty)."""
    parts = dict(rows)
    obj.sapiens_bone_map.clear()
    for bone in obj.data.bones:
        item = obj.sapiens_bone_map.add()
        item.name = bone.name                 # the list's own name filter searches this
        item.bone, item.part = bone.name, parts.get(bone.name, "")


def use_fk_limbs(obj) -> int:
    """A generated Rigify rig takes the motion on its FK controls: every limb's IK/FK switch to FK
    (Rigify's IK_FK property, 1.0 = FK). The number of limbs switched."""
    switched = 0
    for pose_bone in obj.pose.bones:
        if "IK_FK" in pose_bone.keys() and pose_bone["IK_FK"] != 1.0:
            pose_bone["IK_FK"] = 1.0
            switched += 1
    return switched


def apply_curves(context, obj, curves: dict):
    """Key the curves as a new action on the armature, from the scene's start frame."""
    scene = context.scene
    tracks = [t for t in retarget_io.tracks_from_curves(curves) if t.bone in obj.pose.bones]
    # the engine poses every bone it does not key at rest relative to its parent: a pose left on
    # them (Rigify's Generate copies the metarig's current pose onto the new rig) would carry
    # the keyed bones elsewhere
    keyed = {t.bone for t in tracks}
    for pose_bone in obj.pose.bones:
        if pose_bone.name not in keyed:
            pose_bone.matrix_basis = Matrix.Identity(4)
    if tracks:
        # controls under constraint-driven bones (a generated Rigify rig) keyed where the engine means them
        tracks = bake_through_constraints(context, obj, tracks, retarget_io.poses_from_curves(curves))
    scene_fps = scene.render.fps / scene.render.fps_base
    frames = scene.frame_start + np.arange(int(curves["frames"])) * scene_fps / float(curves["fps"])
    action = bpy.data.actions.new(f"{obj.name}_retargeted")
    key_tracks(action, obj, tracks, frames)
    scene.frame_end = max(scene.frame_end, int(np.ceil(frames[-1])))
    return action


def animate_target(context):
    """The armature an Animate run should move, or None (import a new skeleton)."""
    target = context.scene.sapiens_motion_transfer.animate_onto
    return target if target is not None and target.type == "ARMATURE" and target.name in context.scene.objects else None


def finish_animate_onto(context, motion_dir, report) -> set[str]:
    """An Animate run's output onto the chosen armature (called when the run ends)."""
    obj = animate_target(context)
    status = context.window_manager.sapiens_status
    context.scene.sapiens_motion_transfer.motion_dir = str(motion_dir)
    try:
        result = run_retarget(context, obj, str(motion_dir))
    except RuntimeError as exc:
        status.error = f"Retargeting onto {obj.name} failed: {exc}"
        report({"ERROR"}, status.error)
        return {"CANCELLED"}
    fill_bone_map(obj, retarget_io.rows_from_result(result))
    if result["convention"] == "rigify_fk":
        use_fk_limbs(obj)
    action = apply_curves(context, obj, result["curves"])
    status.message = f"{action.name} on {obj.name}"
    report({"INFO"}, f"Sapiens: motion applied to {obj.name} ({action.name})")
    return {"FINISHED"}


def _motion_dir(context) -> str:
    return bpy.path.abspath(context.scene.sapiens_motion_transfer.motion_dir).rstrip("/\\")


def _motion_problem(path: str) -> str | None:
    if not path:
        return "Choose the animation folder (the output of Animate) to apply"
    p = Path(path)
    if not (p / "skeleton.json").is_file() or not (p / "frames").is_dir():
        return f"{path}: not an animation folder (it needs skeleton.json and frames/ from Animate)"
    return None


class _ArmatureOperator:
    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "ARMATURE"


class SAPIENS_OT_apply_motion(_ArmatureOperator, bpy.types.Operator):
    """Retarget the chosen animation onto the selected armature as a new action (its mesh follows)"""

    bl_idname = "sapiens.apply_motion"
    bl_label = "Apply Motion to Armature"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = context.active_object
        motion = _motion_dir(context)
        problem = _motion_problem(motion)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        try:
            result = run_retarget(context, obj, motion)
        except RuntimeError as exc:
            self.report({"ERROR"}, f"Retargeting failed: {exc}")
            return {"CANCELLED"}
        fill_bone_map(obj, retarget_io.rows_from_result(result))
        if result["convention"] == "rigify_fk" and use_fk_limbs(obj):
            self.report({"INFO"}, "Rigify limbs switched to FK (the motion is keyed on the FK controls)")
        action = apply_curves(context, obj, result["curves"])
        for note in result.get("notes", []):
            self.report({"WARNING"}, note)
        feet = result.get("feet") or {}
        if feet.get("locked"):
            skate = feet["skate_mm_per_frame"]
            self.report({"INFO"}, f"Feet held where the motion's stand: foot skate {skate['before']} -> {skate['after']} "
                                  f"mm per frame")
        self.report({"INFO"}, f"{action.name}: {result['frames']} frames on {len(result['bone_map'])} bones "
                              f"({result['convention']} names)")
        return {"FINISHED"}


class SAPIENS_OT_detect_bone_map(_ArmatureOperator, bpy.types.Operator):
    """Fill the bone map from the armature's bone names (the engine's detection), without keying"""

    bl_idname = "sapiens.detect_bone_map"
    bl_label = "Detect Bone Map"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = context.active_object
        motion = _motion_dir(context)
        problem = _motion_problem(motion)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        obj.sapiens_bone_map.clear()          # detection, not the edited map
        try:
            result = run_retarget(context, obj, motion)
        except RuntimeError as exc:
            self.report({"ERROR"}, f"Bone map detection failed: {exc}")
            return {"CANCELLED"}
        fill_bone_map(obj, retarget_io.rows_from_result(result))
        self.report({"INFO"}, f"{len(result['bone_map'])} bones mapped ({result['convention']} names)")
        return {"FINISHED"}


class SAPIENS_OT_save_bone_map(_ArmatureOperator, bpy.types.Operator):
    """Save the armature's bone map as a preset"""

    bl_idname = "sapiens.save_bone_map"
    bl_label = "Save Bone Map Preset"

    def execute(self, context):
        rows = [(i.bone, i.part) for i in context.active_object.sapiens_bone_map if i.part]
        if not rows:
            self.report({"ERROR"}, "The bone map is empty: detect it or apply a motion first")
            return {"CANCELLED"}
        path = retarget_io.save_preset(presets_dir(), context.scene.sapiens_motion_transfer.preset_name, rows)
        self.report({"INFO"}, f"Bone map saved: {path}")
        return {"FINISHED"}


class SAPIENS_OT_load_bone_map(_ArmatureOperator, bpy.types.Operator):
    """Load a saved bone map preset onto the armature's list"""

    bl_idname = "sapiens.load_bone_map"
    bl_label = "Load Bone Map Preset"
    bl_options = {"REGISTER", "UNDO"}

    preset: EnumProperty(name="Preset", items=_preset_items)

    def execute(self, context):
        if not self.preset:
            self.report({"ERROR"}, "No bone map presets saved yet")
            return {"CANCELLED"}
        try:
            rows = retarget_io.read_preset(Path(self.preset))
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        obj = context.active_object
        missing = [b for b, _ in rows if b not in obj.data.bones]
        fill_bone_map(obj, rows)
        if missing:
            self.report({"WARNING"}, f"{len(missing)} bones of the preset are not in this armature: {', '.join(missing[:5])}")
        return {"FINISHED"}

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)


def rig_of(obj):
    """The armature that moves `obj`: itself, or its Armature modifier's object."""
    if obj is None:
        return None
    if obj.type == "ARMATURE":
        return obj
    for modifier in getattr(obj, "modifiers", ()):
        if modifier.type == "ARMATURE" and modifier.object is not None:
            return modifier.object
    return obj.parent if obj.parent is not None and obj.parent.type == "ARMATURE" else None


class SAPIENS_OT_animate_avatar(bpy.types.Operator):
    """Animate the selected avatar (its mesh or rig) from the panel's image sequence or video in one
    step: the engine animates the frames and the motion lands on the avatar's rig"""

    bl_idname = "sapiens.animate_avatar"
    bl_label = "Animate This Avatar"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return rig_of(context.active_object) is not None

    def _prepare(self, context) -> bool:
        settings = context.scene.sapiens
        if settings.input_kind == "PHOTO":
            self.report({"ERROR"}, "Choose an Image Sequence or a Video as the input to animate the avatar with")
            return False
        context.scene.sapiens_motion_transfer.animate_onto = rig_of(context.active_object)
        return True

    def execute(self, context):     # scripts and tests: the run waits here
        return bpy.ops.sapiens.run() if self._prepare(context) else {"CANCELLED"}

    def invoke(self, context, event):
        return bpy.ops.sapiens.run("INVOKE_DEFAULT") if self._prepare(context) else {"CANCELLED"}


def _photo_is_cached(context) -> bool:
    from .pipeline import cached_bundle, photo_cache_dir

    photo = bpy.path.abspath(context.scene.sapiens.photo)
    return bool(photo) and cached_bundle(photo_cache_dir(user_data.cache_root(), photo)) is not None


class SAPIENS_OT_build_and_animate(bpy.types.Operator):
    """A photo's avatar plus a video in one step: build the avatar from the panel's photo (reusing its
    cached predictions when there are some), then animate it from the chosen image sequence or video:
    a moving, skinned, textured person"""

    bl_idname = "sapiens.build_and_animate"
    bl_label = "Avatar + Motion"
    bl_options = {"REGISTER"}

    _timer = None

    def _check(self, context) -> str | None:
        settings = context.scene.sapiens
        if settings.input_kind == "PHOTO":
            return "Choose the Image Sequence or Video to animate with (the photo stays chosen)"
        photo = bpy.path.abspath(settings.photo)
        if not photo or not Path(photo).is_file():
            return f"Choose the photo of the person too (not found: {photo or 'nothing chosen'})"
        if settings.avatar_params().get("rig") in (None, option_table.OFF):  # "none": turned off
            return "The avatar needs a rig to move: choose a Rig in the photo's options"
        return None

    def _start(self, context, phase: str) -> bool:
        from . import operators

        settings = context.scene.sapiens
        self.phase = phase
        if phase == "avatar":
            settings.input_kind = "PHOTO"
            started = operators.start_run(context, self.report, rebuild_only=_photo_is_cached(context))
            settings.input_kind = self.sequence_kind       # the panel shows what the user chose
            return started
        return operators.start_run(context, self.report)

    def _onto_new_avatar(self, context) -> bool:
        """After the avatar's run: its rig becomes the animation's target."""
        collection = bpy.data.collections.get(context.window_manager.sapiens_status.last_collection)
        rig = next((o for o in (collection.all_objects if collection else ()) if o.type == "ARMATURE"), None)
        if rig is None:
            self.report({"ERROR"}, "The avatar came without a rig: nothing to animate")
            return False
        context.scene.sapiens_motion_transfer.animate_onto = rig
        context.scene.sapiens.input_kind = self.sequence_kind
        return True

    def execute(self, context):     # scripts and tests: both runs wait here
        from . import operators

        problem = self._check(context)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        self.sequence_kind = context.scene.sapiens.input_kind
        settings = context.scene.sapiens
        settings.input_kind = "PHOTO"
        outcome = operators.run_blocking(context, self.report, rebuild_only=_photo_is_cached(context))
        settings.input_kind = self.sequence_kind
        if outcome != {"FINISHED"} or not self._onto_new_avatar(context):
            return {"CANCELLED"}
        return operators.run_blocking(context, self.report)

    def invoke(self, context, event):
        problem = self._check(context)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        self.sequence_kind = context.scene.sapiens.input_kind
        if not self._start(context, "avatar"):
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(0.1, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        from . import operators

        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        outcome = operators.poll_run(context, self.report)
        if outcome is None:
            return {"RUNNING_MODAL"}
        if outcome == {"FINISHED"} and self.phase == "avatar":
            if self._onto_new_avatar(context) and self._start(context, "animate"):
                return {"RUNNING_MODAL"}
            outcome = {"CANCELLED"}
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
        return outcome


class SAPIENS_UL_bone_map(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.label(text=item.bone, icon="BONE_DATA")
        row.prop(item, "part", text="", emboss=True)


def draw_motion_transfer(layout, context) -> None:
    """The panel's Apply Motion box (for the selected armature)."""
    obj = context.active_object
    box = layout.box()
    box.label(text="Motion onto Armature", icon="ARMATURE_DATA")
    box.prop(context.scene.sapiens_motion_transfer, "motion_dir", text="")
    box.prop(context.scene.sapiens_motion_transfer, "animate_onto")
    if context.scene.sapiens.input_kind != "PHOTO":
        row = box.row(align=True)
        row.operator("sapiens.build_and_animate", icon="OUTLINER_OB_ARMATURE")
        if rig_of(obj) is not None:
            row.operator("sapiens.animate_avatar", icon="ARMATURE_DATA")
    if obj is None or obj.type != "ARMATURE":
        box.label(text="Select an armature", icon="INFO")
        return
    if hasattr(context.scene.sapiens.animate, "feet"):
        box.prop(context.scene.sapiens.animate, "feet")
    row = box.row(align=True)
    row.operator("sapiens.apply_motion", icon="PLAY")
    row.operator("sapiens.detect_bone_map", text="", icon="VIEWZOOM")
    if len(obj.sapiens_bone_map):
        box.template_list("SAPIENS_UL_bone_map", "", obj, "sapiens_bone_map", obj, "sapiens_bone_map_index", rows=6)
    row = box.row(align=True)
    row.prop(context.scene.sapiens_motion_transfer, "preset_name", text="")
    row.operator("sapiens.save_bone_map", text="", icon="FILE_TICK")
    row.operator("sapiens.load_bone_map", text="", icon="FILE_FOLDER")


CLASSES = (SapiensBoneMapItem, SapiensMotionTransfer, SAPIENS_OT_apply_motion,
           SAPIENS_OT_detect_bone_map, SAPIENS_OT_save_bone_map, SAPIENS_OT_load_bone_map, SAPIENS_OT_animate_avatar,
           SAPIENS_OT_build_and_animate,
           SAPIENS_UL_bone_map)


def register_properties():
    bpy.types.Object.sapiens_bone_map = CollectionProperty(type=SapiensBoneMapItem)
    bpy.types.Object.sapiens_bone_map_index = IntProperty(default=0)
    bpy.types.Scene.sapiens_motion_transfer = PointerProperty(type=SapiensMotionTransfer)


def unregister_properties():
    del bpy.types.Scene.sapiens_motion_transfer
    del bpy.types.Object.sapiens_bone_map_index
    del bpy.types.Object.sapiens_bone_map
