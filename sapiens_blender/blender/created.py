"""The datablocks one import makes, so a failed import can remove them all again."""

from __future__ import annotations

import bpy


class CreatedData:
    """Datablocks made during one import, removed in dependency order if the import fails."""

    ORDER = ("objects", "meshes", "armatures", "materials", "images", "actions", "collections")

    def __init__(self):
        self.items: list[tuple[str, bpy.types.ID]] = []

    def add(self, kind: str, datablock):
        self.items.append((kind, datablock))
        return datablock

    def remove_all(self) -> None:
        for kind in self.ORDER:
            for k, datablock in reversed(self.items):
                if k != kind:
                    continue
                try:
                    getattr(bpy.data, kind).remove(datablock)
                except ReferenceError:
                    pass  # already gone with its owner
        self.items.clear()
