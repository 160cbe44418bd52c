"""Build Blender data from an avatar read by io.avatar: mesh, material, labels, armature, skin, action.

All bulk data goes through numpy and `foreach_set`; the only Python loops are over materials,
labels, bones and (joint, weight) batches. Everything lands in one new collection; if anything
fails, every datablock created so far is removed again, so the scene is as it was.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ..io import animation as anim_io
from ..io.avatar import Avatar, read_avatar
from ..io.motion import MotionFolder, read_motion
from ..io.skin import weight_batches

LABEL_ATTRIBUTE = "sapiens_label"


@dataclass
class ImportResult:
    collection: bpy.types.Collection
    mesh_object: bpy.types.Object | None  # None for an animation (skeleton only)
    armature_object: bpy.types.Object | None
    action: bpy.types.Action | None


class _Created:
    """Datablocks made during one import, removed in dependency order if the import fails."""

    ORDER = ("objects", "meshes", "armatures", "materials", "images", "actions", "collections")

    def __init__(self):
        self.items: list[tuple[str, bpy.types.ID]] = []

    def add(self, kind: str, datablock):
        self.items.append((kind, datablock))
        return datablock

    def remove_all(self) -> None:
        for kind in self.ORDER:
            for k, datablock in reversed(self.items):
                if k != kind:
                    continue
                try:
                    getattr(bpy.data, kind).remove(datablock)
                except ReferenceError:
                    pass  # already gone with its owner
        self.items.clear()


def import_avatar(
    source: Avatar | str | Path,
    *,
    name: str | None = None,
    scene: bpy.types.Scene | None = None,
    with_rig: bool = True,
    with_animation: bool = True,
) -> ImportResult:
    """Import an avatar (directory or already read) into a new collection of `scene`."""
    avatar = source if isinstance(source, Avatar) else read_avatar(source)
    scene = scene or bpy.context.scene
    name = name or avatar.name
    created = _Created()
    try:
        collection = created.add("collections", bpy.data.collections.new(name))
        scene.collection.children.link(collection)
        mesh = _build_mesh(avatar, name, created)
        obj = created.add("objects", bpy.data.objects.new(name, mesh))
        collection.objects.link(obj)
        _add_label_groups(obj, avatar)
        armature_obj = action = None
        if with_rig and avatar.skeleton is not None:
            armature_obj = _build_armature(avatar, f"{name}_rig", collection, scene, created)
            _bind_skin(obj, armature_obj, avatar)
            if with_animation and avatar.animations and avatar.nodes is not None:
                action = _build_action(avatar, armature_obj, scene, created)
        return ImportResult(collection, obj, armature_obj, action)
    except BaseException:
        created.remove_all()
        raise


def import_motion(
    source: MotionFolder | str | Path, *, name: str | None = None, scene: bpy.types.Scene | None = None
) -> ImportResult:
    """Import an `animate` output folder: an armature with its action, in a new collection.

    The scene takes the sequence's frame rate (a whole number of frames per second) so every
    frame of the sequence lands on a whole scene frame; on failure the scene keeps its own.
    """
    motion = source if isinstance(source, MotionFolder) else read_motion(source)
    scene = scene or bpy.context.scene
    name = name or motion.name
    created = _Created()
    fps_before = (scene.render.fps, scene.render.fps_base, scene.frame_end)
    try:
        collection = created.add("collections", bpy.data.collections.new(name))
        scene.collection.children.link(collection)
        if motion.fps and abs(motion.fps - round(motion.fps)) < 1e-6:
            scene.render.fps, scene.render.fps_base = int(round(motion.fps)), 1.0
        armature_obj = _build_armature(motion, f"{name}_rig", collection, scene, created)
        action = _build_action(motion, armature_obj, scene, created)
        return ImportResult(collection, None, armature_obj, action)
    except BaseException:
        created.remove_all()
        scene.render.fps, scene.render.fps_base, scene.frame_end = fps_before
        raise


# --- mesh ----------------------------------------------------------------------------------


def to_blender_axes(vectors: np.ndarray) -> np.ndarray:
    """Avatar frame (glTF, +Y up) -> Blender (+Z up): (x, y, z) -> (x, -z, y)."""
    v = np.asarray(vectors, np.float32)
    return np.ascontiguousarray(np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1))


def _build_mesh(avatar: Avatar, name: str, created: _Created) -> bpy.types.Mesh:
    """Mesh data through the generic attribute arrays (position, .corner_vert, UVMap, ...):
    their foreach_set copies straight into Blender's arrays, several times faster than the
    MeshVertex / MeshLoop wrappers on large meshes."""
    data = avatar.mesh
    mesh = created.add("meshes", bpy.data.meshes.new(name))
    n_verts, n_faces = len(data.positions), len(data.faces)
    corners = np.ascontiguousarray(data.faces, dtype=np.int32).ravel()
    mesh.vertices.add(n_verts)
    mesh.loops.add(len(corners))
    mesh.polygons.add(n_faces)
    attributes = mesh.attributes
    attributes["position"].data.foreach_set("vector", to_blender_axes(data.positions).ravel())
    attributes[".corner_vert"].data.foreach_set("value", corners)
    mesh.polygons.foreach_set("loop_start", np.arange(0, len(corners), 3, dtype=np.int32))
    mesh.update(calc_edges=True)

    if data.uvs is not None:
        uv = np.empty((len(corners), 2), np.float32)
        uv[:, 0] = data.uvs[corners, 0]
        uv[:, 1] = 1.0 - data.uvs[corners, 1]  # glTF v runs down, Blender's up
        layer = mesh.uv_layers.new(name="UVMap")
        attributes[layer.name].data.foreach_set("vector", uv.ravel())

    _add_materials(mesh, avatar, created)

    if hasattr(mesh, "shade_smooth"):
        mesh.shade_smooth()
    else:  # Blender < 4.1
        mesh.polygons.foreach_set("use_smooth", np.ones(n_faces, bool))
    if data.normals is not None:
        _set_custom_normals(mesh, to_blender_axes(data.normals))

    if data.labels is not None:
        attr = attributes.new(LABEL_ATTRIBUTE, "INT", "POINT")
        attr.data.foreach_set("value", np.ascontiguousarray(data.labels, np.int32))
    # No mesh.validate(): the reader has checked every index (it would cost a second per 300k verts).
    return mesh


def _set_custom_normals(mesh: bpy.types.Mesh, normals: np.ndarray) -> None:
    if bpy.app.version >= (4, 5, 0):  # custom normals are a plain "custom_normal" attribute
        attr = mesh.attributes.new("custom_normal", "FLOAT_VECTOR", "POINT")
        attr.data.foreach_set("vector", np.ascontiguousarray(normals, np.float32).ravel())
        return
    if hasattr(mesh, "use_auto_smooth"):  # Blender < 4.1 needs it for custom normals
        mesh.use_auto_smooth = True
    mesh.normals_split_custom_set_from_vertices(normals)


# --- material ------------------------------------------------------------------------------


def _add_materials(mesh: bpy.types.Mesh, avatar: Avatar, created: _Created) -> None:
    images: dict[int, bpy.types.Image] = {}

    def image(index: int | None, non_color: bool) -> bpy.types.Image | None:
        if index is None:
            return None
        if index not in images:
            images[index] = _load_image(avatar.images[index], f"{mesh.name}_{avatar.images[index].name}", created)
            if non_color:
                images[index].colorspace_settings.name = "Non-Color"
        return images[index]

    for spec in avatar.materials:
        mat = created.add("materials", bpy.data.materials.new(f"{mesh.name}_{spec.name}"))
        _build_material(mat, spec, image(spec.albedo_image, False), image(spec.normal_image, True))
        mesh.materials.append(mat)
    if avatar.materials:
        index = np.clip(avatar.mesh.face_materials, 0, len(avatar.materials) - 1).astype(np.int32)
        attr = mesh.attributes.get("material_index") or mesh.attributes.new("material_index", "INT", "FACE")
        attr.data.foreach_set("value", index)


def _load_image(spec, name: str, created: _Created) -> bpy.types.Image:
    """Load encoded image bytes through a temporary file, then pack them into the .blend."""
    suffix = ".jpg" if "jpeg" in spec.mime_type else ".png"
    fd, path = tempfile.mkstemp(prefix="sapiens_", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(spec.data)
        img = created.add("images", bpy.data.images.load(path, check_existing=False))
        img.name = name
        img.pack()
        img.filepath_raw = f"//{name}{suffix}"  # a stable name if the user unpacks
    finally:
        os.unlink(path)
    return img


def _build_material(mat, spec, albedo, normal) -> None:
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    tree = mat.node_tree
    nodes, links = tree.nodes, tree.links
    nodes.clear()
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (400, 0)
    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    bsdf.inputs["Base Color"].default_value = spec.base_color
    bsdf.inputs["Metallic"].default_value = spec.metallic
    bsdf.inputs["Roughness"].default_value = spec.roughness
    mat.use_backface_culling = not spec.double_sided
    if albedo is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.name = tex.label = "Albedo"
        tex.image = albedo
        tex.location = (-400, 200)
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    if normal is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.name = tex.label = "Normal"
        tex.image = normal
        tex.location = (-600, -250)
        normal_map = nodes.new("ShaderNodeNormalMap")
        normal_map.location = (-250, -250)
        normal_map.inputs["Strength"].default_value = spec.normal_scale
        links.new(tex.outputs["Color"], normal_map.inputs["Color"])
        links.new(normal_map.outputs["Normal"], bsdf.inputs["Normal"])


# --- labels --------------------------------------------------------------------------------


def _add_label_groups(obj: bpy.types.Object, avatar: Avatar) -> None:
    labels = avatar.mesh.labels
    if labels is None or not len(labels):
        return
    order = np.argsort(labels, kind="stable")
    values, starts = np.unique(labels[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    for value, start, end in zip(values.tolist(), starts.tolist(), ends.tolist()):
        if value == 0:  # background never becomes a part
            continue
        group = obj.vertex_groups.new(name=avatar.label_names.get(value, f"label_{value}"))
        group.add(order[start:end].tolist(), 1.0, "REPLACE")


# --- armature ------------------------------------------------------------------------------


def _build_armature(avatar: Avatar | MotionFolder, name: str, collection, scene, created: _Created) -> bpy.types.Object:
    bones = avatar.skeleton["bones"]
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
    _add_bone_metadata(obj, bones)
    return obj


def _add_bone_metadata(obj, bones: list[dict]) -> None:
    """Bone collections, and Rigify's per-bone types when Rigify is enabled (else kept as custom props)."""
    armature = obj.data
    for bone in bones:
        name = bone.get("collection")
        if name and hasattr(armature, "collections"):
            collection = armature.collections.get(name) or armature.collections.new(name)
            collection.assign(armature.bones[bone["name"]])
        if "rigify_type" in bone:
            pose_bone = obj.pose.bones[bone["name"]]
            if hasattr(pose_bone, "rigify_type"):
                pose_bone.rigify_type = bone["rigify_type"]
            else:
                pose_bone["rigify_type"] = bone["rigify_type"]


def _bind_skin(obj: bpy.types.Object, armature_obj: bpy.types.Object, avatar: Avatar) -> None:
    mesh = avatar.mesh
    obj.parent = armature_obj
    modifier = obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature_obj
    if mesh.joints is None or mesh.weights is None:
        return
    groups = [obj.vertex_groups.get(n) or obj.vertex_groups.new(name=n) for n in mesh.joint_names]
    for joint, weight, vertices in weight_batches(mesh.joints, mesh.weights):
        groups[joint].add(vertices.tolist(), weight, "REPLACE")


# --- animation -----------------------------------------------------------------------------


def _build_action(avatar: Avatar | MotionFolder, armature_obj, scene, created: _Created):
    animation = avatar.animations[0]
    bones = armature_obj.data.bones
    names = [b.name for b in bones]
    index = {n: i for i, n in enumerate(names)}
    parents = [index[b.parent.name] if b.parent else -1 for b in bones]
    rest = np.array([np.array(b.matrix_local) for b in bones], np.float64).reshape(-1, 4, 4)
    times = anim_io.sample_times(animation)
    if not len(times):
        return None
    tracks = anim_io.bone_tracks(animation, avatar.nodes, names, parents, rest, times)
    fps = scene.render.fps / scene.render.fps_base
    frames = (times * fps + scene.frame_start).astype(np.float32)
    action = created.add("actions", bpy.data.actions.new(f"{armature_obj.name}_{animation.name}"))
    fcurves = _action_fcurves(action, armature_obj)
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
                fcurve.keyframe_points.foreach_set(
                    "interpolation", np.full(len(frames), _LINEAR_INTERPOLATION, np.int32)
                )
                fcurve.update()
    scene.frame_end = max(scene.frame_end, int(np.ceil(frames[-1])))
    return action


# Keyframe.interpolation enum value of 'LINEAR' (CONSTANT=0, LINEAR=1, BEZIER=2)
_LINEAR_INTERPOLATION = 1


class _FCurveAdder:
    """`new(data_path, index, action_group)` on either API: layered actions (4.4+) or legacy."""

    def __init__(self, collection, layered: bool):
        self.collection, self.layered = collection, layered

    def new(self, data_path: str, index: int, action_group: str):
        if self.layered:
            return self.collection.new(data_path, index=index, group_name=action_group)
        return self.collection.new(data_path, index=index, action_group=action_group)


def _action_fcurves(action, armature_obj) -> _FCurveAdder:
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
