"""Export an imported avatar (its mesh, armature and action) with Blender's own exporters.

FBX (`export_scene.fbx`), USD (`wm.usd_export`: .usdc/.usd/.usda/.usdz) and glTF binary
(`export_scene.gltf`) get just the avatar's objects, selected for the call, with the options of
an export preset (export_presets: Unreal, Unity, Maya); `.blend` saves a copy of the open file.
Each file is written beside the target under a temporary name, then renamed over it, so a
failed export leaves no half-written file. The selection and active object are restored.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy

from ..export_presets import DEFAULT_PRESET, ExportRequestError, export_format, exporter_options


def avatar_objects(obj: bpy.types.Object | None) -> list[bpy.types.Object]:
    """The avatar `obj` belongs to: an armature and the meshes its Armature modifiers drive, or a
    mesh alone. Empty when `obj` is neither."""
    if obj is None:
        return []
    armature = obj if obj.type == "ARMATURE" else None
    if obj.type == "MESH":
        armature = next((m.object for m in obj.modifiers if m.type == "ARMATURE" and m.object is not None), None)
        if armature is None:
            return [obj]
    if armature is None:
        return []
    meshes = [
        o for o in bpy.data.objects
        if o.type == "MESH" and any(m.type == "ARMATURE" and m.object == armature for m in o.modifiers)
    ]
    return [armature, *meshes]


def export_avatar(objects: list[bpy.types.Object], path: str | os.PathLike, preset: str = DEFAULT_PRESET) -> Path:
    """Write `objects` (an avatar: armature and meshes) to `path`; the format follows the suffix."""
    path = Path(path)
    fmt = export_format(path)
    options = exporter_options(preset, fmt)  # checks the preset before anything is written
    if not objects:
        raise ExportRequestError("nothing to export: select the avatar's mesh or armature")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        if fmt == "blend":
            bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, compress=True)
        else:
            with _selected(objects):
                _EXPORTERS[fmt](str(tmp), options)
        if not tmp.is_file():
            raise ExportRequestError(f"{path.name}: Blender's {fmt} exporter wrote nothing")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _supported(operator, options: dict) -> dict:
    """The options this Blender's exporter has (older versions lack some USD ones, e.g. units)."""
    known = operator.get_rna_type().properties.keys()
    return {k: v for k, v in options.items() if k in known}


def _fbx(filepath: str, options: dict) -> None:
    op = bpy.ops.export_scene.fbx
    op(filepath=filepath, **_supported(op, {"use_selection": True, **options}))


def _usd(filepath: str, options: dict) -> None:
    op = bpy.ops.wm.usd_export
    op(filepath=filepath, **_supported(op, {"selected_objects_only": True, **options}))


def _glb(filepath: str, options: dict) -> None:
    op = bpy.ops.export_scene.gltf
    op(filepath=filepath, **_supported(op, {"export_format": "GLB", "use_selection": True,
                                            "export_animations": True, **options}))


_EXPORTERS = {"fbx": _fbx, "usd": _usd, "glb": _glb}


class _selected:
    """Select exactly `objects` (the first one active) for an exporter call; restore afterwards."""

    def __init__(self, objects):
        self.objects = objects

    def __enter__(self):
        view_layer = bpy.context.view_layer
        self.before = [o for o in view_layer.objects if o.select_get()]
        self.active = view_layer.objects.active
        if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        for o in self.before:
            o.select_set(False)
        for o in self.objects:
            o.select_set(True)
        view_layer.objects.active = self.objects[0]
        return self

    def __exit__(self, *exc):
        view_layer = bpy.context.view_layer
        for o in self.objects:
            o.select_set(False)
        for o in self.before:
            try:
                o.select_set(True)
            except ReferenceError:
                pass
        view_layer.objects.active = self.active
        return False
