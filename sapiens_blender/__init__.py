"""Sapiens Avatars: photos of people -> textured, rigged avatars in Blender, via the Sapiens engine.

The engine runs as a separate process in its own Python environment (see the add-on
preferences); this package only talks to it over stdio (engine_client) and imports what it
writes (io/ reads the files, blender/ builds Blender data). The bpy-free modules (engine_client,
pipeline, io/) import without Blender, so this file imports bpy only inside register().
"""

from __future__ import annotations


def _modules():
    from . import operators, panel, preferences, properties

    return (preferences, properties, operators, panel)


def register():
    import bpy

    from . import properties

    for module in _modules():
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
    properties.register_properties()
    bpy.types.TOPBAR_MT_file_import.append(_menu_import)


def unregister():
    import bpy

    from . import operators, properties
    from .engine_session import SESSION

    operators.cancel_active()
    SESSION.stop()
    bpy.types.TOPBAR_MT_file_import.remove(_menu_import)
    properties.unregister_properties()
    for module in reversed(_modules()):
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)


def _menu_import(self, context):
    self.layout.operator("sapiens.import_avatar", text="Sapiens Avatar (folder)")
