"""Per-scene settings (saved with the .blend) and the per-session run status (not saved)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

INPUT_KINDS = [
    ("PHOTO", "Photo", "One photo of a person"),
    ("SEQUENCE", "Image Sequence", "A folder of frames (animation)"),
    ("VIDEO", "Video", "A video file (animation)"),
]
DETAIL = [
    ("normals", "Normals", "Refine the surface with the predicted normals (folds, fingers, face)"),
    ("none", "None", "The smooth surface from the pointmap only"),
]
RESOLUTION = [("full", "Full", ""), ("half", "Half", ""), ("quarter", "Quarter", "")]
TEXTURE_SIZES = [(str(s), str(s), f"{s} x {s} pixels") for s in (512, 1024, 2048, 4096)]
RIGS = [("rigify", "Rigify", "Blender's Rigify human metarig names and hierarchy")]


class SapiensSceneSettings(bpy.types.PropertyGroup):
    input_kind: EnumProperty(name="Input", items=INPUT_KINDS, default="PHOTO")
    photo: StringProperty(name="Photo", subtype="FILE_PATH", description="Photo, first frame, folder or video")
    build_texture: BoolProperty(name="Texture", default=True, description="Albedo and normal map textures")
    build_rig: BoolProperty(name="Rig", default=True, description="Armature and skin weights")
    rig_convention: EnumProperty(name="Convention", items=RIGS, default="rigify")
    watertight: BoolProperty(name="Watertight", default=False, description="Close the surface into a solid")
    detail: EnumProperty(name="Detail", items=DETAIL, default="normals")
    resolution: EnumProperty(name="Resolution", items=RESOLUTION, default="full")
    target_faces: IntProperty(name="Max Faces", default=0, min=0, description="Decimate to this many faces (0: keep all)")
    texture_size: EnumProperty(name="Texture Size", items=TEXTURE_SIZES, default="2048")
    reuse_predictions: BoolProperty(
        name="Reuse Predictions", default=True,
        description="Use the cached predictions of this photo when they exist (only rebuild the mesh)",
    )

    def build_options(self) -> dict:
        """Keywords of the engine's `build` method (docs/protocol.md)."""
        options = {
            "detail": self.detail,
            "resolution": self.resolution,
            "watertight": self.watertight,
            "texture_size": int(self.texture_size),
        }
        if self.target_faces:
            options["target_faces"] = self.target_faces
        if self.build_rig:
            options["rig"] = self.rig_convention
        return options


class SapiensRunStatus(bpy.types.PropertyGroup):
    running: BoolProperty(default=False)
    stage: StringProperty(default="")
    fraction: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty(default="")
    error: StringProperty(default="")
    last_collection: StringProperty(default="")


CLASSES = (SapiensSceneSettings, SapiensRunStatus)


def register_properties():
    bpy.types.Scene.sapiens = PointerProperty(type=SapiensSceneSettings)
    bpy.types.WindowManager.sapiens_status = PointerProperty(type=SapiensRunStatus)


def unregister_properties():
    del bpy.types.WindowManager.sapiens_status
    del bpy.types.Scene.sapiens
