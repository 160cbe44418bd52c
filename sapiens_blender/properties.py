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
# what the engine's video decoder reads (engine/motion/video.py VIDEO_SUFFIXES)
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


class SapiensSceneSettings(bpy.types.PropertyGroup):
    input_kind: EnumProperty(name="Input", items=INPUT_KINDS, default="PHOTO")
    photo: StringProperty(name="Photo", subtype="FILE_PATH", description="Photo of a person")
    frames_dir: StringProperty(
        name="Frames", subtype="DIR_PATH",
        description="Folder of frames: images, or predictions bundles from an earlier predict",
    )
    video: StringProperty(name="Video", subtype="FILE_PATH", description="Video file (" + " ".join(VIDEO_SUFFIXES) + ")")
    animation_fps: IntProperty(
        name="Frame Rate", default=0, min=0, max=240,
        description="Frames per second of the sequence (0: the video's own, else 30)",
    )
    smooth_motion: BoolProperty(name="Smooth", default=True, description="Remove jitter (One Euro filter)")
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


    def animate_options(self) -> dict:
        """Keywords of the engine's `animate` method (docs/protocol.md), without the frames."""
        options = {"convention": self.rig_convention, "smooth": self.smooth_motion}
        if self.animation_fps:
            options["fps"] = self.animation_fps
        return options

    def sequence_path(self) -> str:
        """The chosen frames folder or video file (absolute), for the Image Sequence / Video inputs."""
        return bpy.path.abspath(self.frames_dir if self.input_kind == "SEQUENCE" else self.video)


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
