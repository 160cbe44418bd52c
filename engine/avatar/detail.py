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
    hands: object = None   # engine.geometry.detail_solid.HandSolve, when start_closed_hands started one


def fuse_crop_maps(inputs, *, enabled: bool, resolution: str, on_aligned=None) -> Detail | None:
    """Align the crops and fuse them into inputs.bundle's maps (in place on `inputs`); None when
    the bundle has no crops or the option is off. on_aligned: called with the Detail once the
    crops are aligned, before the maps are fused (the build starts the hands' solve there:
    start_closed_hands needs the aligned crops only, so the geometry worker makes their samples
    while this process fuses the maps)."""
    bundle = inputs.bundle
    crops = getattr(bundle, "crops", None) or []
    if not enabled or not crops or bundle.pointmap is None:
        return None
    from engine.geometry.detail import align_crops, fuse_maps
    from engine.geometry.surface import RESOLUTIONS

    aligned, notes = align_crops(crops, bundle.pointmap, bundle.mask, grid_factor=RESOLUTIONS.get(resolution, 1))
    detail = Detail(aligned, notes)
    if on_aligned is not None:
        on_aligned(detail)
    if aligned:
        inputs.bundle = fuse_maps(bundle, aligned)
    return detail


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
        hands, solved, snap_stats, snapped = None, set(), [], set()
        if watertight and target_faces is None:
            from engine.geometry.detail_solid import HAND_CROPS

            # the other crops (the face) snapped first: this runs while the geometry worker ends
            # the hands' solves, which the join below waits for; and a re-solved hand that
            # reaches into the face's region is not snapped onto the face crop's depth
            others = [a for a in detail.aligned if a.crop.name not in HAND_CROPS]
            if others:
                vertices, snap_stats = snap_to_crops(vertices, faces, others, inputs.K)
                snapped = {a.crop.name for a in others}
            vertices, faces, labels, hands = closed_hands(inputs, replace(built, vertices=vertices), detail)
            solved = {c["name"] for c in (hands or {}).get("crops", []) if "poisson_depth" in c}
        # a hand solved again from its crop is the crop's surface already (snapping it onto the
        # crop's raw depth would bring back the noise its solve smoothed)
        rest = [a for a in detail.aligned if a.crop.name not in solved | snapped]
        if rest:
            vertices, more = snap_to_crops(vertices, faces, rest, inputs.K)
            snap_stats = snap_stats + more
        elif not snapped:
            # nothing snapped at all: the float32 vertices snap_to_crops gives on every other path
            vertices = np.array(vertices, np.float32)   # a copy, as it gives
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


def start_closed_hands(inputs, detail: Detail | None, *, watertight: bool, target_faces, progress=None):
    """The hands' second solve started before the closed surface's own (HandSolve: the crops'
    samples made in the engine's geometry worker process, then, once close_surface has the
    body's samples, both hands solved there beside the body's solve), kept in
    `detail.hands` for closed_hands; None when the build has no closed hands to solve (an open
    or decimated surface, no hand crop). The caller hands its `body_samples` to the surface
    stage (build_surface's on_samples) so that it gets the body's samples."""
    if detail is None or not detail.aligned or not watertight or target_faces is not None:
        return None
    from engine.geometry.detail_solid import HandSolve

    detail.hands = HandSolve.start(detail.aligned, inputs.K, progress=progress)
    return detail.hands


def closed_hands(inputs, built, detail: Detail):
    """The closed surface with each hand re-solved from its crop (engine.geometry.detail_solid):
    (vertices, faces, labels, record for avatar.json); the surface as it was when no hand crop
    can be used, the record saying why. The solve start_closed_hands started is finished here
    (the body cut here while the worker ends the hands' solves); without one it all runs here,
    the hands' context then the surface's vertices (a fused solid has no samples to give)."""
    from engine.geometry.detail_solid import HandSolve

    solve = detail.hands if detail.hands is not None else HandSolve(detail.aligned, inputs.K)
    return solve.apply(built.vertices, built.faces, built.vertex_labels)


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


def fuse_crop_texture(appearance, detail: Detail | None, mask: np.ndarray, *, framed=None, K=None):
    """The base colour texture at the crops' resolution inside their regions: each front texel
    there takes the crop's albedo at its photo position (bilinear on the crop's finer grid, where
    the crop sees the person), blended over the region's edge band. The texture is only as fine
    as its texels: at 2048 over a 1000-pixel person that is about two texels per photo pixel.
    Given the framed mesh (engine.avatar.stages.Framed) and the photo's K, the normal map too
    (fuse_crop_normals). A build does the same work inside make_appearance (CropTexture: beside
    the normal bake, and the colour before its one sRGB encoding)."""
    crops = crop_texture(detail, mask, framed=framed, K=K)
    if crops is None:
        return appearance
    if framed is not None and K is not None:
        appearance = fuse_crop_normals(appearance, detail, framed, K, mask)
    if appearance.albedo_source != "albedo":
        return appearance
    from engine.avatar.textures import linear_to_srgb8

    changed = crops.fuse_colour(appearance.albedo_linear, appearance.layout)
    if changed:
        appearance.albedo_srgb8 = linear_to_srgb8(appearance.albedo_linear)
        appearance.stats["detail_crop_texels"] = changed
    return appearance


def crop_texture(detail: Detail | None, mask: np.ndarray, *, framed=None, K=None):
    """The crops' texture and normal fusion (fuse_crop_texture) for make_appearance, or None
    when there is no aligned crop."""
    if detail is None or not detail.aligned:
        return None
    return CropTexture(detail, mask, framed, K)


@dataclass
class CropTexture:
    """fuse_crop_texture's work in the pieces make_appearance runs: the crops' normals in the
    texels' tangent frames (normal_targets: they need the UVs and tangents, not the baked map)
    while the normal map bakes, blended into the baked map once it is encoded (fuse_normals);
    the crops' albedo blended into the padded base colour (fuse_colour) before its sRGB
    encoding. The same texels and values as fuse_crop_texture."""

    detail: Detail
    mask: np.ndarray
    framed: object = None
    K: np.ndarray | None = None

    @property
    def has_normals(self) -> bool:
        return self.framed is not None and self.K is not None

    def normal_targets(self, layout, uv: np.ndarray, tangents: np.ndarray) -> list:
        return _crop_normal_targets(layout, uv, tangents, self.detail, self.framed, self.K, self.mask)

    @staticmethod
    def fuse_normals(normal_rgb8: np.ndarray, targets: list) -> int:
        return _blend_crop_normals(normal_rgb8, targets)

    def fuse_colour(self, albedo_linear: np.ndarray, layout) -> int:
        """The crops' albedo blended into the front island of `albedo_linear` (in place);
        returns the number of texels changed."""
        from engine.avatar.textures import FRONT
        from engine.geometry.detail import FEATHER_PX

        mask, albedo = self.mask, albedo_linear
        changed = 0
        for a in self.detail.aligned:
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
        return changed


# the crop's normals fade out where the whole-body map's do on a closed mesh (its front island
# meets the flat hidden one at the outline): over the last NORMAL_FADE_PX photo pixels before the
# crop's own outline, and where the surface turns edge-on to the camera (these cosines of the
# normal against the pixel's ray), where one crop pixel's normal spans millimetres of surface
NORMAL_FADE_PX = 4.0
NORMAL_SQUARE_COS = (0.15, 0.35)


def _bilinear(grid: np.ndarray, valid: np.ndarray, u: np.ndarray, v: np.ndarray):
    """grid (h x w x C) at continuous pixel-centre coordinates (u along columns, v along rows):
    (values, where all four taps are valid). The reference _Taps is held to (the build reads the
    taps through _Taps; tests/test_detail_crop_taps.py)."""
    h, w = valid.shape
    i0, j0 = np.clip(np.floor(v).astype(int), 0, h - 2), np.clip(np.floor(u).astype(int), 0, w - 2)
    dv, du = np.clip(v - i0, 0, 1)[..., None], np.clip(u - j0, 0, 1)[..., None]
    values = ((1 - dv) * ((1 - du) * grid[i0, j0] + du * grid[i0, j0 + 1])
              + dv * ((1 - du) * grid[i0 + 1, j0] + du * grid[i0 + 1, j0 + 1]))
    return values, valid[i0, j0] & valid[i0, j0 + 1] & valid[i0 + 1, j0] & valid[i0 + 1, j0 + 1]


class _Taps:
    """_bilinear's four taps and weights for continuous pixel-centre positions (u along columns,
    v along rows) on an h x w grid: `corners` reads a grid (h x w or h x w x C) at them through
    the flattened grid (one index per tap, not a row and a column), `blend` weighs four such
    reads as _bilinear does (the same products and sums: its values)."""

    def __init__(self, shape, u: np.ndarray, v: np.ndarray):
        h, w = shape
        self.shape = (h, w)
        self.i0, self.j0 = np.clip(np.floor(v).astype(int), 0, h - 2), np.clip(np.floor(u).astype(int), 0, w - 2)
        self.dv, self.du = np.clip(v - self.i0, 0, 1)[..., None], np.clip(u - self.j0, 0, 1)[..., None]

    def subset(self, which: np.ndarray) -> "_Taps":
        out = object.__new__(_Taps)
        out.shape = self.shape
        out.i0, out.j0, out.dv, out.du = self.i0[which], self.j0[which], self.dv[which], self.du[which]
        return out

    def corners(self, grid: np.ndarray) -> tuple:
        """grid at (i0, j0), (i0, j0 + 1), (i0 + 1, j0), (i0 + 1, j0 + 1)."""
        h, w = self.shape
        flat = grid.reshape(h * w, *grid.shape[2:])
        k = self.i0 * w + self.j0
        return flat[k], flat[k + 1], flat[k + w], flat[k + w + 1]

    def blend(self, g00, g01, g10, g11):
        dv, du = self.dv, self.du
        return (1 - dv) * ((1 - du) * g00 + du * g01) + dv * ((1 - du) * g10 + du * g11)


def _outline_distance(seen: np.ndarray, taps: _Taps, factor: int) -> np.ndarray:
    """ndimage.distance_transform_edt(np.pad(seen, 1))[1:-1, 1:-1] (each pixel's distance to the
    nearest pixel not `seen`, or past the grid's edge) where the fade reads it: the transform of
    the window of the grid around `taps` grown by the distance past which the fade is 1
    (NORMAL_FADE_PX + 0.5 photo pixels: `factor` grid pixels each) and one pixel more. Within
    the window a distance up to that reach is the whole grid's (its nearest unseen pixel lies in
    the window); a farther one is over the reach in both, where the fade is 1 either way.
    Returned as an h x w map, filled on the window only."""
    from scipy import ndimage

    h, w = seen.shape
    padded = np.pad(seen, 1)
    out = np.zeros((h, w))
    if not len(taps.i0):
        return out
    reach = int(np.ceil((NORMAL_FADE_PX + 0.5) * factor)) + 1
    r0, r1 = max(int(taps.i0.min()) + 1 - reach, 0), min(int(taps.i0.max()) + 3 + reach, h + 2)
    c0, c1 = max(int(taps.j0.min()) + 1 - reach, 0), min(int(taps.j0.max()) + 3 + reach, w + 2)
    window = padded[r0:r1, c0:c1]
    if window.all():  # no unseen pixel near: the whole grid's transform
        out[:] = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
        return out
    distance = ndimage.distance_transform_edt(window)
    # padded row r is the grid's row r - 1
    rows, cols = slice(max(r0, 1), min(r1, h + 1)), slice(max(c0, 1), min(c1, w + 1))
    out[rows.start - 1:rows.stop - 1, cols.start - 1:cols.stop - 1] = distance[rows.start - r0:rows.stop - r0,
                                                                               cols.start - c0:cols.stop - c0]
    return out


def fuse_crop_normals(appearance, detail: Detail, framed, K: np.ndarray, mask: np.ndarray, *, island: int | None = None,
                      to_avatar: np.ndarray | None = None):
    """The normal map at the crops' resolution inside their regions.

    The whole-body map is baked from the predicted normals per photo pixel (the fused maps hold
    the crops' normals averaged per photo pixel there). Here each front texel inside a region
    takes the crop's own normal at its photo position instead (bilinear on the crop's grid, where
    all four taps see the person), expressed in the texel's tangent frame as the baker does
    (engine.avatar.textures.interpolated_tbn over the faces seen there, rasterised again), blended
    with the baked map over the region's edge band and faded where the whole-body map fades.

    A fused avatar (engine.avatar.fused) calls it per view: `island` that view's UV island (the
    front by default), `framed` its vertices in that view's camera frame, K and mask its own,
    and `to_avatar` the 3 x 3 rotation from its camera frame to the avatar frame (by default the
    photo's own camera axes turned, (x, -y, -z))."""
    if appearance.normal_rgb8 is None:
        return appearance
    targets = _crop_normal_targets(appearance.layout, appearance.uv, appearance.tangents, detail, framed, K, mask,
                                   island=island, to_avatar=to_avatar)
    changed = _blend_crop_normals(appearance.normal_rgb8, targets)
    if changed:
        appearance.stats["detail_crop_normal_texels"] = changed
    return appearance


def _crop_normal_targets(layout, uv: np.ndarray, tangents: np.ndarray, detail: Detail, framed, K: np.ndarray,
                         mask: np.ndarray, *, island: int | None = None, to_avatar: np.ndarray | None = None) -> list:
    """fuse_crop_normals' targets, crop by crop: (texels of the flattened texture, the crop's
    unit normals in those texels' tangent frames, their blend weights). They need the UVs and
    tangents, not the baked map."""
    from scipy import ndimage

    from engine.avatar import textures as tx
    from engine.geometry.detail import FEATHER_PX

    used = [a for a in detail.aligned if a.crop.normal is not None]
    if not used:
        return []
    # the front faces with a corner in some region: those are the texels that can change
    faces = np.asarray(framed.faces, np.int64)
    uvw = np.asarray(framed.vertices_camera, np.float64) @ np.asarray(K, np.float64).T
    with np.errstate(invalid="ignore", divide="ignore"):
        vx, vy = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    near = np.zeros(len(uvw), bool)
    for a in used:
        rx0, ry0, rx1, ry1 = a.region
        near |= (vx >= rx0 - 1) & (vx < rx1 + 1) & (vy >= ry0 - 1) & (vy < ry1 + 1)
    island = tx.FRONT if island is None else int(island)
    pick = np.nonzero((np.asarray(framed.face_island) == island) & near[faces].any(1))[0]
    if not len(pick):
        return []
    texel_xy = np.asarray(uv, np.float64) * [layout.width, layout.height]
    raster = tx.rasterize(texel_xy, faces[pick], np.asarray(framed.vertices_camera)[:, 2].astype(np.float64),
                          layout.width, layout.height)
    targets = []
    closed = layout.n_islands > 1
    for a in used:
        c = a.crop
        f = int(c.factor)
        rx0, ry0, rx1, ry1 = a.region
        (tx0, ty0), (tx1, ty1) = layout.photo_to_texel(np.array([[rx0, ry0], [rx1, ry1]], np.float64), island)
        island0 = int(layout.island_x0(island))
        cols = np.arange(max(int(np.floor(tx0)), island0), min(int(np.ceil(tx1)), island0 + layout.island_width))
        rows = np.arange(max(int(np.floor(ty0)), 0), min(int(np.ceil(ty1)), layout.height))
        if not len(cols) or not len(rows):
            continue
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        covered = raster.face[rr, cc] >= 0
        rr, cc = rr[covered], cc[covered]
        photo = layout.texel_to_photo(np.stack([cc + 0.5, rr + 0.5], -1).astype(np.float64), island)
        px, py = photo[:, 0], photo[:, 1]
        edge = np.minimum.reduce([px - rx0, rx1 - px, py - ry0, ry1 - py])
        u, v = (px - c.box[0]) * f - 0.5, (py - c.box[1]) * f - 0.5
        finite = np.isfinite(c.normal)
        seen = c.mask & finite[..., 0] & finite[..., 1] & finite[..., 2]  # .all(-1): a reduction over 3 is slow
        # the crop's grid read at its four taps per texel only (_Taps: _bilinear's values)
        taps = _Taps(seen.shape, u, v)
        normal = taps.blend(*(np.nan_to_num(g) for g in taps.corners(c.normal)))
        ok = np.logical_and.reduce(taps.corners(seen))
        on_person = mask[np.clip(py.astype(int), 0, mask.shape[0] - 1), np.clip(px.astype(int), 0, mask.shape[1] - 1)]
        weight = np.clip(edge / FEATHER_PX, 0.0, 1.0) * (ok & on_person & (edge > 0))
        if closed:
            # the whole-body map's own fade (engine.avatar.appearance): toward the outline and
            # where the surface turns edge-on, here on the crop's finer grid; found for the
            # texels weighted so far only (the others keep their weight 0)
            weighted = np.nonzero(weight > 0)[0]
            near = taps.subset(weighted)
            distance = _outline_distance(seen, near, f)
            fade = near.blend(*(np.clip((x / f - 0.5) / NORMAL_FADE_PX, 0.0, 1.0)[:, None] for x in near.corners(distance)))
            # -(normal * ray).sum(-1) / np.linalg.norm(ray, axis=-1) written out channel by channel
            # (numpy sums a 3-long last axis as (x0 + x1) + x2), at the taps
            squares = []
            for n, ray in zip(near.corners(c.normal), near.corners(a.points)):
                n, ray = np.nan_to_num(n), np.nan_to_num(ray)
                n0, n1, n2 = n[:, 0], n[:, 1], n[:, 2]
                r0, r1, r2 = ray[:, 0], ray[:, 1], ray[:, 2]
                with np.errstate(invalid="ignore", divide="ignore"):
                    cos = -(n0 * r0 + n1 * r1 + n2 * r2) / np.sqrt(r0 * r0 + r1 * r1 + r2 * r2)
                squares.append(np.nan_to_num(np.clip((cos - NORMAL_SQUARE_COS[0]) / (NORMAL_SQUARE_COS[1] - NORMAL_SQUARE_COS[0]),
                                                     0, 1))[:, None])
            squared = near.blend(*squares)
            weight[weighted] = weight[weighted] * fade[:, 0] * squared[:, 0]
        keep = weight > 0
        if not keep.any():
            continue
        texels = (rr * layout.width + cc)[keep]
        target = normal[keep].astype(np.float32)
        if to_avatar is None:
            target[:, 1:] *= -1.0   # camera -> avatar axes: (x, -y, -z), as the whole-body bake
        else:
            target = (target @ np.asarray(to_avatar, np.float64).T).astype(np.float32)
        texels, tan, bit, nrm = tx.interpolated_tbn(raster, faces[pick], framed.normals_avatar, tangents, texels)
        target /= np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-12)
        local = np.stack([(tan * target).sum(1), (bit * target).sum(1), (nrm * target).sum(1)], 1)
        local[:, 2] = np.maximum(local[:, 2], 0.02)   # the baker's horizon clamp
        local /= np.linalg.norm(local, axis=1, keepdims=True)
        targets.append((texels, local, weight[keep][:, None]))
    return targets


def _blend_crop_normals(normal_rgb8: np.ndarray, targets: list) -> int:
    """The targets (_crop_normal_targets) blended into the 8-bit normal map in place, crop by
    crop (a later crop's blend starts from an earlier one's where their regions overlap);
    returns the number of texels changed."""
    from engine.avatar import textures as tx

    flat_rgb = normal_rgb8.reshape(-1, 3)
    changed = 0
    for texels, local, w in targets:
        baked = tx.decode_normal_map(flat_rgb[texels])
        mixed = w * local + (1 - w) * baked
        mixed /= np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
        flat_rgb[texels] = tx.encode_normal_map(mixed.astype(np.float32))
        changed += int(len(texels))
    return changed
