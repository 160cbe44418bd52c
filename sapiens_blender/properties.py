"""Per-scene settings (saved with the .blend) and the per-session run status (not saved)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, FloatProperty, PointerProperty, StringProperty

from . import option_props, option_table
from .views import SapiensViewPhoto

INPUT_KINDS = [
    ("PHOTO", "Photo", "One photo of a person"),
    ("SEQUENCE", "Image Sequence", "A folder of frames (animation)"),
    ("VIDEO", "Video", "A video file (animation)"),
]
# what the engine's video decoder reads (engine/motion/video.py VIDEO_SUFFIXES)
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


def _job_groups():
    """One PropertyGroup per job the panel runs, from the engine's option table: the photo's
    `avatar` options and the sequence's `animate` options, model options left to the preferences."""
    avatar = option_table.job_options("avatar", exclude_groups=(option_table.MODEL_GROUP,))
    animate = option_table.job_options("animate", exclude_groups=(option_table.MODEL_GROUP,))
    return (
        option_props.make_group("SapiensAvatarOptions", avatar, "avatar"),
        option_props.make_group("SapiensAnimateOptions", animate, "animate"),
    )


AvatarOptions, AnimateOptions = _job_groups()


class SapiensSceneSettings(bpy.types.PropertyGroup):
    input_kind: EnumProperty(name="Input", items=INPUT_KINDS, default="PHOTO")
    photo: StringProperty(name="Photo", subtype="FILE_PATH", description="Photo of a person")
    frames_dir: StringProperty(
        name="Frames", subtype="DIR_PATH",
        description="Folder of frames: images, or predictions bundles from an earlier predict",
    )
    video: StringProperty(name="Video", subtype="FILE_PATH", description="Video file (" + " ".join(VIDEO_SUFFIXES) + ")")
    import_textures: BoolProperty(
        name="Import Textures", default=True,
        description="Put the albedo and normal map textures into the materials (off: plain colours)",
    )
    avatar: PointerProperty(type=AvatarOptions)
    # the other photos of the person when the avatar option "fuse" is on (views.py)
    views: CollectionProperty(type=SapiensViewPhoto)
    animate: PointerProperty(type=AnimateOptions)

    def avatar_params(self) -> dict:
        """Parameters of the engine's `avatar` job from the panel (docs/protocol.md)."""
        return option_props.params_of(self.avatar, option_table.job_options("avatar"), "avatar")

    def animate_params(self) -> dict:
        """Parameters of the engine's `animate` job from the panel, without the frames."""
        return option_props.params_of(self.animate, option_table.job_options("animate"), "animate")

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


CLASSES = (AvatarOptions, AnimateOptions, SapiensSceneSettings, SapiensRunStatus)


def register_properties():
    bpy.types.Scene.sapiens = PointerProperty(type=SapiensSceneSettings)
    bpy.types.WindowManager.sapiens_status = PointerProperty(type=SapiensRunStatus)


def unregister_properties():
    del bpy.types.WindowManager.sapiens_status
    del bpy.types.Scene.sapiens
