"""The sidebar panel (3D Viewport > Sidebar > Sapiens)."""

from __future__ import annotations

import bpy

from . import operators, option_props, option_table
from .engine_session import SESSION
from .motion_transfer import draw_motion_transfer
from .preferences import PACKAGE, get_preferences
from .views import draw_views


class SAPIENS_PT_main(bpy.types.Panel):
    bl_label = "Sapiens Avatar"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Sapiens"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.sapiens
        status = context.window_manager.sapiens_status
        prefs = get_preferences(context)

        if prefs is None or not prefs.engine_python:
            box = layout.box()
            box.alert = True
            box.label(text="No engine environment set", icon="ERROR")
            box.operator("preferences.addon_show", text="Open Preferences", icon="PREFERENCES").module = PACKAGE

        col = layout.column()
        col.prop(settings, "input_kind", text="")
        if settings.input_kind == "PHOTO":
            col.prop(settings, "photo", text="")
            draw_views(col, settings)
            option_props.draw_options(layout, settings.avatar, option_table.job_options("avatar"))
            layout.prop(settings, "import_textures")
        else:
            col.prop(settings, "frames_dir" if settings.input_kind == "SEQUENCE" else "video", text="")
            option_props.draw_options(layout, settings.animate, option_table.job_options("animate"))

        running = operators.ACTIVE is not None and not operators.ACTIVE.finished
        if running:
            label = f"{status.stage}: {status.message}" if status.message else status.stage
            if hasattr(layout, "progress"):
                layout.progress(factor=status.fraction, type="BAR", text=label[:60])
            else:
                layout.label(text=f"{label[:50]} ({status.fraction:.0%})")
            layout.operator("sapiens.cancel", icon="CANCEL")
        else:
            row = layout.row(align=True)
            row.scale_y = 1.4
            if settings.input_kind == "PHOTO":
                row.operator("sapiens.run", icon="PLAY")
                row.operator("sapiens.run", text="Rebuild", icon="FILE_REFRESH").rebuild_only = True
            else:
                row.operator("sapiens.run", text="Animate", icon="PLAY")
            if status.message:
                layout.label(text=status.message[:80], icon="INFO")
        if status.error:
            box = layout.box()
            box.alert = True
            for line in _wrap(status.error, 48)[:6]:
                box.label(text=line)

        _draw_rigify(layout, context)
        draw_motion_transfer(layout, context)

        layout.separator()
        row = layout.row(align=True)
        row.operator("sapiens.import_avatar", icon="IMPORT")
        row.operator("sapiens.export_avatar", text="Export", icon="EXPORT")
        row.operator("sapiens.batch", text="Batch", icon="FILE_TEXT")
        if operators.batch_running():
            row.operator("sapiens.batch_cancel", text="", icon="CANCEL")
        client = SESSION.current
        row = layout.row(align=True)
        row.label(text=f"Engine: pid {client.pid}" if client and client.alive else "Engine: not running")
        row.operator("sapiens.stop_engine", text="", icon="X")


def draw_status_bar(self, context) -> None:
    """Appended to the status bar (STATUSBAR_HT_header) while the add-on is enabled: the running
    job's stage and progress, with a cancel button; nothing when no job runs."""
    pipeline = operators.ACTIVE
    if pipeline is None or pipeline.finished:
        return
    status = context.window_manager.sapiens_status
    row = self.layout.row(align=True)
    text = f"Sapiens {status.stage}: {status.fraction:.0%}"
    if hasattr(row, "progress"):  # Blender 4.0+
        row.progress(factor=status.fraction, type="RING", text=text)
    else:
        row.label(text=text)
    row.operator("sapiens.cancel", text="", icon="CANCEL", emboss=False)


def _draw_rigify(layout, context) -> None:
    """Rigify: after Generate, one click binds the avatar's mesh to the generated rig."""
    from .blender.rigify_bind import metarig_of

    if metarig_of(context.active_object) is not None:
        layout.operator("sapiens.bind_generated_rig", icon="ARMATURE_DATA")


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


CLASSES = (SAPIENS_PT_main,)
