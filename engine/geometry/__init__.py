"""Surface geometry: pointmap + normals + mask -> metric meshes (numpy-first, no per-pixel loops).

Entry point: build_surface (engine/geometry/surface.py).
"""

from engine.geometry.surface import Surface, build_surface

__all__ = ["Surface", "build_surface"]
