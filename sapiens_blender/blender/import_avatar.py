"""Import an avatar or an `animate` output folder: one new collection, all or nothing.

The pieces live one job per module, as in Blender's glTF importer: `mesh` (vertices, faces, UVs,
normals, labels), `material`, `armature` (bones and skin binding), `action` (keyed tracks). If
anything fails, every datablock created so far is removed again, so the scene is as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy

from ..io.avatar import Avatar, read_avatar
from ..io.motion import MotionFolder, read_motion
from . import action as action_build
from . import armature as armature_build
from . import mesh as mesh_build
from .created import CreatedData
from .rigify_bind import SOURCE_PROPERTY


@dataclass
class ImportResult:
    collection: bpy.types.Collection
    mesh_object: bpy.types.Object | None  # None for an animation (skeleton only)
    armature_object: bpy.types.Object | None
    action: bpy.types.Action | None


def import_avatar(
    source: Avatar | str | Path,
    *,
    name: str | None = None,
    scene: bpy.types.Scene | None = None,
    with_rig: bool = True,
    with_animation: bool = True,
) -> ImportResult:
    """Import an avatar (directory or already read) into a new collection of `scene`."""
    avatar = source if isinstance(source, Avatar) else read_avatar(Path(source))
    scene = scene or bpy.context.scene
    name = name or avatar.name
    created = CreatedData()
    try:
        collection = created.add("collections", bpy.data.collections.new(name))
        scene.collection.children.link(collection)
        mesh_data = mesh_build.build_mesh(avatar, name, created)
        obj = created.add("objects", bpy.data.objects.new(name, mesh_data))
        collection.objects.link(obj)
        mesh_build.add_label_groups(obj, avatar)
        armature_obj = action = None
        if with_rig and avatar.skeleton is not None:
            armature_obj = armature_build.build_armature(
                avatar.skeleton["bones"], f"{name}_rig", collection, created,
                rigify_collections=avatar.skeleton.get("rigify_collections") or [],
            )
            armature_build.bind_skin(obj, armature_obj, avatar.mesh)
            obj[SOURCE_PROPERTY] = str(avatar.directory)  # where a Rigify bind finds the engine's skin
            if with_animation and avatar.animations and avatar.nodes is not None:
                action = action_build.build_action(avatar, armature_obj, scene, created)
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
    motion = source if isinstance(source, MotionFolder) else read_motion(Path(source))
    scene = scene or bpy.context.scene
    name = name or motion.name
    created = CreatedData()
    fps_before = (scene.render.fps, scene.render.fps_base, scene.frame_end)
    try:
        collection = created.add("collections", bpy.data.collections.new(name))
        scene.collection.children.link(collection)
        if motion.fps and abs(motion.fps - round(motion.fps)) < 1e-6:
            scene.render.fps, scene.render.fps_base = int(round(motion.fps)), 1.0
        armature_obj = armature_build.build_armature(
            motion.skeleton["bones"], f"{name}_rig", collection, created,
            rigify_collections=motion.skeleton.get("rigify_collections") or [],
        )
        action = action_build.build_action(motion, armature_obj, scene, created)
        return ImportResult(collection, None, armature_obj, action)
    except BaseException:
        created.remove_all()
        scene.render.fps, scene.render.fps_base, scene.frame_end = fps_before
        raise
