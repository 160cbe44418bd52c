"""Several photos of one person as one avatar: the panel's "Other Views" list.

With the engine's `fuse` option on ("Fuse as One Person", drawn from engine_options.json like
every option), Build Avatar sends the panel's photo and the photos listed here to the engine's
`avatar` job as views of one person (docs/avatar.md, "Several views"); the panel's photo is the
reference (its camera and its keypoints place the rig). Off, the list is kept but unused.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import CollectionProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

# what the engine's photo reader takes (engine/images.py)
PHOTO_GLOB = "*.jpg;*.jpeg;*.png;*.webp;*.tif;*.tiff;*.exr"


class SapiensViewPhoto(bpy.types.PropertyGroup):
    path: StringProperty(name="Photo", subtype="FILE_PATH", description="Another photo of the same person, same pose")


def fusing(settings) -> bool:
    return bool(getattr(settings.avatar, "fuse", False))


def view_photos(settings) -> list[str]:
    """The listed photos, absolute, in list order (empty entries skipped)."""
    return [bpy.path.abspath(item.path) for item in settings.views if item.path]


def views_problem(settings, photo: str) -> str | None:
    """Why the views cannot be sent (in words), or None."""
    others = view_photos(settings)
    if not others:
        return "Fuse as One Person needs the other photos of the person: add them under Other Views"
    for path in others:
        if not Path(path).is_file():
            return f"A view photo was not found: {path}"
    if any(Path(path).resolve() == Path(photo).resolve() for path in others):
        return "The photo is also listed under Other Views: each view once"
    return None


class SAPIENS_OT_add_views(bpy.types.Operator, ImportHelper):
    """Add photos of the same person (back, sides; same pose) as other views"""

    bl_idname = "sapiens.add_views"
    bl_label = "Add Views"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ""
    filter_glob: StringProperty(default=PHOTO_GLOB, options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})

    def execute(self, context):
        settings = context.scene.sapiens
        chosen = [str(Path(self.directory) / f.name) for f in self.files if f.name] or ([self.filepath] if self.filepath else [])
        listed = {bpy.path.abspath(item.path) for item in settings.views}
        added = 0
        for path in chosen:
            if path in listed:
                continue
            settings.views.add().path = path
            listed.add(path)
            added += 1
        self.report({"INFO"}, f"{added} view(s) added, {len(settings.views)} in the list")
        return {"FINISHED"}


class SAPIENS_OT_remove_view(bpy.types.Operator):
    """Remove this photo from the other views"""

    bl_idname = "sapiens.remove_view"
    bl_label = "Remove View"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(default=-1, options={"HIDDEN"})

    def execute(self, context):
        views = context.scene.sapiens.views
        if not 0 <= self.index < len(views):
            self.report({"ERROR"}, f"No view number {self.index + 1} in the list of {len(views)}")
            return {"CANCELLED"}
        views.remove(self.index)
        return {"FINISHED"}


def draw_views(layout, settings) -> None:
    """Under the photo, while Fuse as One Person is on: the other views and the buttons."""
    if not fusing(settings):
        return
    box = layout.box()
    box.label(text=f"Other Views ({len(settings.views)}): same person, same pose", icon="IMAGE_DATA")
    for index, item in enumerate(settings.views):
        row = box.row(align=True)
        row.prop(item, "path", text="")
        row.operator("sapiens.remove_view", text="", icon="X").index = index
    box.operator("sapiens.add_views", icon="ADD")


CLASSES = (SapiensViewPhoto, SAPIENS_OT_add_views, SAPIENS_OT_remove_view)
