"""Armatures from the engine's skeleton (skeleton.json bones) and the mesh's skin binding."""

from __future__ import annotations

import bpy
import numpy as np

from ..io.skin import weight_batches
from .axes import to_blender_axes
from .created import CreatedData


def build_armature(
    bones: list[dict], name: str, collection, created: CreatedData, *, rigify_collections: list[dict] = ()
) -> bpy.types.Object:
    """A new armature object in `collection` with skeleton.json's bones (heads, tails, roll or
    local Z, parents, connect and deform flags), bone collections and Rigify data
    (`rigify_collections`: skeleton.json's top-level list)."""
    armature = created.add("armatures", bpy.data.armatures.new(name))
    obj = created.add("objects", bpy.data.objects.new(name, armature))
    collection.objects.link(obj)
    heads = to_blender_axes(np.array([b["head"] for b in bones], np.float64))
    tails = to_blender_axes(np.array([b["tail"] for b in bones], np.float64))
    z_axes = [b.get("z_axis") for b in bones]
    view_layer = bpy.context.view_layer
    previous_active = view_layer.objects.active
    view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        edit_bones = armature.edit_bones
        made = {}
        for bone, head, tail, z_axis in zip(bones, heads, tails, z_axes):
            eb = edit_bones.new(bone["name"])
            eb.head, eb.tail = head.tolist(), tail.tolist()
            if z_axis is not None:  # an explicit local Z beats a roll angle: no convention to agree on
                eb.align_roll(to_blender_axes(np.array([z_axis], np.float64))[0].tolist())
            else:
                eb.roll = float(bone.get("roll", 0.0))
            eb.use_deform = bool(bone.get("deform", True))
            made[bone["name"]] = eb
        for bone in bones:
            if bone.get("parent"):
                made[bone["name"]].parent = made[bone["parent"]]
                # heads of connected bones were snapped to their parent's tail by the engine
                made[bone["name"]].use_connect = bool(bone.get("connect", False))
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous_active
    add_bone_metadata(obj, bones, rigify_collections)
    return obj


def add_bone_metadata(obj, bones: list[dict], rigify_collections: list[dict] = ()) -> None:
    """Bone collections and Rigify's data from skeleton.json, so Rigify can Generate the rig:
    each collection's UI row and colour set, each bone's `rigify_type` and `rigify_parameters`.

    Rigify's properties exist only while Rigify is enabled, so a skeleton with Rigify data enables
    it (it ships with Blender). Where it cannot be enabled the values are kept as custom
    properties under Rigify's names, for reference only (Blender 5 keeps add-on properties apart
    from custom ones: Rigify enabled later does not read them)."""
    armature = obj.data
    if not hasattr(armature, "collections"):  # Blender < 4.0: no bone collections
        return
    if rigify_collections or any("rigify_type" in bone for bone in bones):
        ensure_rigify()
    for spec in rigify_collections:
        collection = armature.collections.get(spec["name"]) or armature.collections.new(spec["name"])
        _set_property(collection, "rigify_ui_row", int(spec.get("ui_row", 0)))
        _set_property(collection, "rigify_color_set_id", int(spec.get("color_set_id", 0)))
    for bone in bones:
        name = bone.get("collection")
        if name:
            collection = armature.collections.get(name) or armature.collections.new(name)
            collection.assign(armature.bones[bone["name"]])
        if "rigify_type" in bone:
            pose_bone = obj.pose.bones[bone["name"]]
            _set_property(pose_bone, "rigify_type", bone["rigify_type"])
            _set_rigify_parameters(pose_bone, bone.get("rigify_parameters") or {})
    if rigify_collections and rigify_enabled() and not len(armature.rigify_colors):
        try:
            with bpy.context.temp_override(object=obj, active_object=obj):
                bpy.ops.armature.rigify_add_color_sets()  # Root, IK, Special, Tweak, FK, Extra: the ids the table uses
        except (AttributeError, RuntimeError):  # a Rigify without it: Generate works, bones uncoloured
            pass


def ensure_rigify() -> bool:
    """Rigify enabled (True), or it cannot be (not installed: False)."""
    if not rigify_enabled():
        import addon_utils

        addon_utils.enable("rigify", default_set=True, handle_error=lambda exc: None)
    return rigify_enabled()


def rigify_enabled() -> bool:
    """Rigify's properties are registered (the add-on is enabled)."""
    return hasattr(bpy.types.PoseBone, "bl_rna") and "rigify_type" in bpy.types.PoseBone.bl_rna.properties


def _set_property(owner, name: str, value) -> None:
    if hasattr(owner, name):
        setattr(owner, name, value)
    else:  # Rigify could not be enabled: kept for reference under its name
        owner[name] = value


def _set_rigify_parameters(pose_bone, parameters: dict) -> None:
    if not parameters:
        return
    if hasattr(pose_bone, "rigify_parameters"):
        for key, value in parameters.items():
            setattr(pose_bone.rigify_parameters, key, value)
    else:
        plain = {k: v for k, v in parameters.items() if isinstance(v, (bool, int, float))}
        if plain:
            pose_bone["rigify_parameters"] = plain


def bind_skin(obj: bpy.types.Object, armature_obj: bpy.types.Object, mesh) -> None:
    """Parent `obj` to the armature with an Armature modifier; `mesh` (io.avatar's MeshData)
    gives the skin weights, one vertex group per joint."""
    obj.parent = armature_obj
    modifier = obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature_obj
    if mesh.joints is None or mesh.weights is None:
        return
    groups = [obj.vertex_groups.get(n) or obj.vertex_groups.new(name=n) for n in mesh.joint_names]
    for joint, weight, vertices in weight_batches(mesh.joints, mesh.weights):
        groups[joint].add(vertices.tolist(), weight, "REPLACE")
