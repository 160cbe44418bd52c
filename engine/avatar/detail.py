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
        from engine.geometry.detail import snap_to_crops
        from engine.geometry.surface import project_uv, vertex_normals

        why = "the closed surface" if watertight else "a decimated surface"
        faces, labels, vertices = built.faces, built.vertex_labels, built.vertices
        hands, solved = None, set()
        if watertight and target_faces is None:
            vertices, faces, labels, hands = closed_hands(inputs, built, detail)
            solved = {c["name"] for c in (hands or {}).get("crops", []) if "poisson_depth" in c}
        # a hand solved again from its crop is the crop's surface already (snapping it onto the
        # crop's raw depth would bring back the noise its solve smoothed)
        vertices, snap_stats = snap_to_crops(vertices, faces, [a for a in detail.aligned if a.crop.name not in solved], inputs.K)
        by_name = {st["name"]: st for st in snap_stats}
        stats = [by_name.get(a.crop.name) or {**a.summary(), "snapped_vertices": 0, "solved_again": True}
                 for a in detail.aligned]
        record["mesh"] = (f"snapped: {why}, built from the fused maps, has its front moved onto the crops' "
                          "finer depth")
        record["used"] = stats
        if hands:
            record["closed_hands"] = hands
            if solved:
                record["mesh"] += "; its hands solved again from the hand crops, finer, and put in place"
        if faces is built.faces:
            return replace(built, vertices=vertices, vertex_normals=vertex_normals(vertices, built.faces),
                           uv=project_uv(vertices, inputs.K, inputs.bundle.mask.shape))
        return replace(built, vertices=vertices, faces=faces, vertex_normals=vertex_normals(vertices, faces),
                       uv=project_uv(vertices, inputs.K, inputs.bundle.mask.shape), vertex_labels=labels,
                       vertex_pixel=np.full((len(vertices), 2), -1, np.int32), front=front_vertices(vertices, inputs),
                       stats={**built.stats, "vertices": int(len(vertices)), "faces": int(len(faces))})
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


def closed_hands(inputs, built, detail: Detail):
    """The closed surface with each hand re-solved from its crop (engine.geometry.detail_solid):
    (vertices, faces, labels, record for avatar.json); the surface as it was when no hand crop
    can be used, the record saying why."""
    from engine.geometry.detail_solid import hand_solid_samples

    fine, notes = hand_solid_samples(detail.aligned, inputs.K)
    if fine is None:
        return built.vertices, built.faces, built.vertex_labels, {"notes": notes}
    vertices, faces, labels, stats = fine.apply(built.vertices, built.faces, built.vertex_labels)
    if notes:
        stats["notes"] = notes
    return vertices, faces, labels, stats


def front_vertices(vertices: np.ndarray, inputs) -> np.ndarray:
    """Vertices at the seen front's depth of their photo pixel (the closed surface's own rule,
    engine.geometry.surface.build_surface)."""
    pointmap = inputs.bundle.pointmap
    H, W = pointmap.shape[:2]
    uvw = np.asarray(vertices, np.float64) @ np.asarray(inputs.K, np.float64).T
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = np.clip(np.nan_to_num(uvw[:, 0] / uvw[:, 2]).astype(np.int64), 0, W - 1)
        rows = np.clip(np.nan_to_num(uvw[:, 1] / uvw[:, 2]).astype(np.int64), 0, H - 1)
        z = np.asarray(vertices, np.float64)[:, 2]
        return np.abs(z - pointmap[rows, cols, 2]) < 0.01 + 0.01 * z


def fuse_crop_texture(appearance, detail: Detail | None, mask: np.ndarray):
    """The base colour texture at the crops' resolution inside their regions: each front texel
    there takes the crop's albedo at its photo position (bilinear on the crop's finer grid, where
    the crop sees the person), blended over the region's edge band. The texture is only as fine
    as its texels: at 2048 over a 1000-pixel person that is about two texels per photo pixel."""
    if detail is None or not detail.aligned or appearance.albedo_source != "albedo":
        return appearance
    from engine.avatar.textures import FRONT, linear_to_srgb8
    from engine.geometry.detail import FEATHER_PX

    layout = appearance.layout
    albedo = appearance.albedo_linear
    changed = 0
    for a in detail.aligned:
        c = a.crop
        if c.albedo is None:
            continue
        rx0, ry0, rx1, ry1 = a.region
        (tx0, ty0), (tx1, ty1) = layout.photo_to_texel(np.array([[rx0, ry0], [rx1, ry1]], np.float64), FRONT)
        island0 = int(layout.island_x0(FRONT))
        cols = np.arange(max(int(np.floor(tx0)), island0), min(int(np.ceil(tx1)), island0 + layout.island_width))
        rows = np.arange(max(int(np.floor(ty0)), 0), min(int(np.ceil(ty1)), layout.height))
        if not len(cols) or not len(rows):
            continue
        txy = np.stack(np.meshgrid(cols + 0.5, rows + 0.5), -1)
        photo = layout.texel_to_photo(txy, FRONT)
        px, py = photo[..., 0], photo[..., 1]
        edge = np.minimum.reduce([px - rx0, rx1 - px, py - ry0, ry1 - py])
        f = int(c.factor)
        u, v = (px - c.box[0]) * f - 0.5, (py - c.box[1]) * f - 0.5
        h, w = c.mask.shape
        i0, j0 = np.clip(np.floor(v).astype(int), 0, h - 2), np.clip(np.floor(u).astype(int), 0, w - 2)
        dv, du = np.clip(v - i0, 0, 1)[..., None], np.clip(u - j0, 0, 1)[..., None]
        sample = ((1 - dv) * ((1 - du) * c.albedo[i0, j0] + du * c.albedo[i0, j0 + 1])
                  + dv * ((1 - du) * c.albedo[i0 + 1, j0] + du * c.albedo[i0 + 1, j0 + 1]))
        # only where all four taps see the person (no background mixed in at the outline) and
        # the photo-resolution mask says the texel shows the person
        seen = c.mask[i0, j0] & c.mask[i0, j0 + 1] & c.mask[i0 + 1, j0] & c.mask[i0 + 1, j0 + 1]
        on_person = mask[np.clip(py.astype(int), 0, mask.shape[0] - 1), np.clip(px.astype(int), 0, mask.shape[1] - 1)]
        weight = (np.clip(edge / FEATHER_PX, 0.0, 1.0) * (seen & on_person & (edge > 0)))[..., None]
        window = albedo[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        window[:] = weight * sample + (1 - weight) * window
        changed += int((weight[..., 0] > 0).sum())
    if changed:
        appearance.albedo_srgb8 = linear_to_srgb8(albedo)
        appearance.stats["detail_crop_texels"] = changed
    return appearance
