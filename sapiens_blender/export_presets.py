"""Export presets for game engines and DCCs, as options of Blender's own FBX and USD exporters (no bpy).

What each target expects, set once here (the operator, the panel and the batch pick a preset by
name):

- Unreal: FBX in Blender's metres with the unit scale written (the importer turns it into
  centimetres), -Z forward / Y up (the importer converts the axes), no leaf bones, only deform
  bones, face smoothing; USD Z-up in centimetres, as Unreal's stage.
- Unity: FBX with the unit scale applied to the objects and the axis change baked into the data
  (objects arrive unrotated at scale 1), no leaf bones, only deform bones; USD Y-up in metres.
- Maya: FBX in metres with the unit scale written (Maya's importer converts to centimetres),
  Y up, every bone kept; USD Y-up in centimetres, as a default Maya scene.
"""

from __future__ import annotations

from pathlib import Path

# suffix -> format; `.usd`/`.usda`/`.usdz` go through the same USD exporter as `.usdc`
FORMATS = {".fbx": "fbx", ".usdc": "usd", ".usd": "usd", ".usda": "usd", ".usdz": "usd", ".glb": "glb",
           ".blend": "blend"}

_FBX_COMMON = {
    "axis_forward": "-Z", "axis_up": "Y", "add_leaf_bones": False, "primary_bone_axis": "Y",
    "secondary_bone_axis": "X", "armature_nodetype": "NULL", "bake_anim": True, "bake_anim_use_all_bones": True,
    "bake_anim_use_nla_strips": False, "bake_anim_use_all_actions": False, "bake_anim_force_startend_keying": True,
    "object_types": {"ARMATURE", "MESH"}, "path_mode": "COPY", "embed_textures": True,
}
_USD_COMMON = {
    "export_animation": True, "export_armatures": True, "export_materials": True, "export_uvmaps": True,
    "export_normals": True, "generate_preview_surface": True, "export_textures_mode": "NEW",
    "overwrite_textures": True, "relative_paths": True,
}

PRESETS: dict[str, dict] = {
    "unreal": {
        "label": "Unreal Engine",
        "fbx": {**_FBX_COMMON, "global_scale": 1.0, "apply_unit_scale": True, "apply_scale_options": "FBX_SCALE_NONE",
                "use_armature_deform_only": True, "mesh_smooth_type": "FACE"},
        "usd": {**_USD_COMMON, "convert_orientation": False, "convert_scene_units": "CENTIMETERS",
                "only_deform_bones": True},
    },
    "unity": {
        "label": "Unity",
        "fbx": {**_FBX_COMMON, "global_scale": 1.0, "apply_unit_scale": True, "apply_scale_options": "FBX_SCALE_UNITS",
                "bake_space_transform": True, "use_armature_deform_only": True, "mesh_smooth_type": "OFF"},
        "usd": {**_USD_COMMON, "convert_orientation": True, "export_global_forward_selection": "NEGATIVE_Z",
                "export_global_up_selection": "Y", "convert_scene_units": "METERS", "only_deform_bones": True},
    },
    "maya": {
        "label": "Maya",
        "fbx": {**_FBX_COMMON, "global_scale": 1.0, "apply_unit_scale": True, "apply_scale_options": "FBX_SCALE_NONE",
                "use_armature_deform_only": False, "mesh_smooth_type": "OFF"},
        "usd": {**_USD_COMMON, "convert_orientation": True, "export_global_forward_selection": "NEGATIVE_Z",
                "export_global_up_selection": "Y", "convert_scene_units": "CENTIMETERS", "only_deform_bones": False},
    },
}
DEFAULT_PRESET = "unreal"


class ExportRequestError(ValueError):
    """An export the add-on cannot make: the message names the file or preset."""


def export_format(path: str | Path) -> str:
    """fbx, usd, glb or blend from the file's suffix; ExportRequestError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ExportRequestError(f"{Path(path).name}: export to {', '.join(FORMATS)} (not {suffix or 'no suffix'})")
    return FORMATS[suffix]


def exporter_options(preset: str, fmt: str) -> dict:
    """Keyword arguments of Blender's exporter for `fmt` under `preset` ({} where none apply)."""
    if preset not in PRESETS:
        raise ExportRequestError(f"unknown export preset {preset!r} (presets: {', '.join(PRESETS)})")
    return dict(PRESETS[preset].get(fmt, {}))
