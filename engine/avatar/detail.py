"""The detail stage of an avatar build: the bundle's hand and face crops (docs/bundle.md, "Detail
crops") aligned to its pointmap and fused (engine.geometry.detail).

Two hooks around the surface stage: `fuse_crop_maps` before it (the maps the surface, the UVs,
the textures and the rig read take each usable crop's, per photo pixel: a closed surface gets
these), and `fuse_crop_surface` after it (an open pixel-grid surface has the crop's finer grid
stitched in where the crop replaces it). A crop that cannot be used is said in a note in the
surface's statistics (avatar.json mesh.surface.detail_crops), never a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class Detail:
    aligned: list = field(default_factory=list)   # engine.geometry.detail.AlignedCrop
    notes: list[str] = field(default_factory=list)


def fuse_crop_maps(inputs, *, enabled: bool, resolution: str) -> Detail | None:
    """Align the crops and fuse them into inputs.bundle's maps (in place on `inputs`); None when
    the bundle has no crops or the option is off."""
    bundle = inputs.bundle
    crops = getattr(bundle, "crops", None) or []
    if not enabled or not crops or bundle.pointmap is None:
        return None
    from engine.geometry.detail import align_crops, fuse_maps
    from engine.geometry.surface import RESOLUTIONS

    aligned, notes = align_crops(crops, bundle.pointmap, bundle.mask, grid_factor=RESOLUTIONS.get(resolution, 1))
    if aligned:
        inputs.bundle = fuse_maps(bundle, aligned)
    return Detail(aligned, notes)


def fuse_crop_surface(inputs, built, detail: Detail | None, *, watertight: bool, target_faces, refine: bool = False):
    """The surface with each aligned crop's finer grid stitched in (open surfaces), its statistics
    saying what became of every crop. refine: the crops' depth refined with their normals on their
    finer grid (off in the build: on a 4x grid it triples an open build's time, bench/bench_detail.py)."""
    if detail is None:
        return built
    record = {"used": [a.summary() for a in detail.aligned], "notes": list(detail.notes)}
    built.stats["detail_crops"] = record
    if not detail.aligned:
        return built
    if watertight or target_faces is not None or (built.vertex_pixel < 0).all():
        why = "the closed surface" if watertight else "a decimated surface"
        record["mesh"] = f"maps: {why} is built from the fused maps at the photo's resolution"
        return built
    from engine.geometry.detail import fuse_mesh
    from engine.geometry.surface import project_uv, vertex_normals

    grid_hw = tuple(built.stats.get("grid") or inputs.bundle.mask.shape)
    vertices, faces, labels, pixel, fine, stats = fuse_mesh(
        built.vertices, built.faces, built.vertex_labels, built.vertex_pixel, grid_hw, built.grid_factor, detail.aligned,
        K=inputs.K, refine=refine)
    record["mesh"] = "finer grid stitched in"
    record["used"] = stats
    return replace(
        built, vertices=vertices, faces=faces, vertex_normals=vertex_normals(vertices, faces),
        uv=project_uv(vertices, inputs.K, inputs.bundle.mask.shape), vertex_labels=labels,
        vertex_pixel=pixel, front=np.ones(len(vertices), bool),
        stats={**built.stats, "vertices": int(len(vertices)), "faces": int(len(faces))})
