"""Sapiens Avatars: photos of people -> textured, rigged avatars in Blender, via the Sapiens engine.

The engine runs as a separate process in its own Python environment (see the add-on
preferences); this package only talks to it over stdio (engine_client) and imports what it
writes (io/ reads the files, blender/ builds Blender data). The bpy-free modules (engine_client,
pipeline, io/) import without Blender, so this file imports bpy only inside register().
"""

from __future__ import annotations


def _modules():
    from . import motion_transfer, operators, panel, preferences, properties, views

    return (preferences, views, properties, motion_transfer, operators, panel)


def _menu_hooks():
    """(menu or header type, draw function) pairs the add-on appends to Blender's own UI."""
    import bpy

    from .panel import draw_status_bar

    return (
        (bpy.types.TOPBAR_MT_file_import, _menu_import),
        (bpy.types.TOPBAR_MT_file_export, _menu_export),
        (bpy.types.STATUSBAR_HT_header, draw_status_bar),
    )


def register():
    import bpy

    from . import motion_transfer, properties

    for module in _modules():
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
    properties.register_properties()
    motion_transfer.register_properties()
    for owner, draw in _menu_hooks():
        owner.append(draw)


def unregister():
    import bpy

    from . import motion_transfer, operators, preferences, properties
    from .engine_session import SESSION

    operators.cancel_active()
    preferences.stop_background_work()
    SESSION.stop()
    for owner, draw in _menu_hooks():
        owner.remove(draw)
    motion_transfer.unregister_properties()
    properties.unregister_properties()
    for module in reversed(_modules()):
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)


def _menu_import(self, context):
    self.layout.operator("sapiens.import_avatar", text="Sapiens Avatar (folder)")


def _menu_export(self, context):
    self.layout.operator("sapiens.export_avatar", text="Sapiens Avatar (FBX, USD, glb)")
