"""Hands and face in detail: the bundle's detail crops aligned to the whole-body pointmap and fused.

A crop (engine.bundle.crops.DetailCrop) holds what the dense models saw when they ran again on a
box around a hand or the face, on a grid `factor` times finer than the photo's pixels. Its
pointmap is the model's own guess of scale and position for a small picture, so:

1. `align_crop`: scale and shift (P_body = s P_crop + t) over the pixels both see, by trimmed
   least squares on the crop's points averaged over each photo pixel; the crop is refused in words
   (a note, not a failure) when too little overlaps or the overlap disagrees after the fit.
2. `fuse_maps`: inside the crop's inner box (the border band, where the model saw the least
   context, only aligns) the photo-resolution maps take the crop's (averaged per photo pixel),
   blended over a few pixels at the box's edge: a closed surface is built from these.
3. `fuse_mesh`: on an open pixel-grid surface, the crop's finer grid replaces the body mesh inside
   the inner box; the two are stitched along the box's four sides by a zipper between the ring of
   body vertices just outside and the ring of fine vertices just inside. The finer mask and depth
   cuts part fingers that touch at the photo's resolution.

Everything is numpy over whole grids (no loops over pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from engine.geometry.cleanup import face_cross, row_dots, row_lengths
from engine.geometry.grid_mesh import RTOL_HARD, block_mean, finite_pixels, grid_mesh

MIN_OVERLAP_PX = 30          # photo pixels seen by both, after the silhouette band is dropped
TRIM_KEEP = 0.8              # trimmed least squares: refit on the best 80 % of the pairs, 4 times
TRIM_ROUNDS = 4
AGREE_M = 0.01               # a pair agrees when within 1 cm + 1 % of its depth after the fit
AGREE_REL = 0.01
MIN_AGREE = 0.6              # of the overlap, else the crop is refused
SCALE_RANGE = (0.2, 5.0)     # a crop whose scale is outside this is not the same surface
INNER_MARGIN = 0.12          # of the box's side on each edge: aligned, not replaced
FEATHER_PX = 3.0             # photo pixels over which the maps blend at the inner box's edge
# a crop's mesh at most this many grid points: a hand's region at 4x is ~25-50k, a face's at 4x
# ~300k (more than the rest of the body at full resolution): the face is meshed at 2x
MAX_FINE_VERTICES = 120_000


@dataclass
class AlignedCrop:
    crop: object                           # engine.bundle.crops.DetailCrop
    scale: float
    shift: np.ndarray                      # (3,) metres
    overlap_px: int
    agree: float                           # fraction of the overlap within the agreement band
    median_residual_m: float
    points: np.ndarray                     # h x w x 3 aligned crop points (camera frame), NaN off the mask
    region: tuple[int, int, int, int]      # x0, y0, x1, y1: the photo pixels the crop replaces

    def summary(self) -> dict:
        return {"name": self.crop.name, "box": list(self.crop.box), "factor": int(self.crop.factor),
                "region": list(self.region), "scale": round(self.scale, 5),
                "shift_m": np.round(self.shift, 5).tolist(), "overlap_px": self.overlap_px,
                "agree": round(self.agree, 4), "median_residual_m": round(self.median_residual_m, 5)}


def _erode(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    return out


def fit_scale_shift(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """target ~ s source + t by trimmed least squares (N x 3 each) -> (s, t, residuals of all)."""
    keep = np.ones(len(source), bool)
    s, t = 1.0, np.zeros(3)
    for _ in range(TRIM_ROUNDS):
        kept_source, kept_target = source[keep], target[keep]
        mc, mt = kept_source.mean(0), kept_target.mean(0)
        dc = kept_source - mc
        s = float((dc * (kept_target - mt)).sum() / max((dc * dc).sum(), 1e-12))
        t = mt - s * mc
        residual = row_lengths(s * source + t - target)
        keep = residual <= np.quantile(residual, TRIM_KEEP)
    return s, t, row_lengths(s * source + t - target)


def inner_region(box, photo_hw, grid_factor: int = 1) -> tuple[int, int, int, int]:
    """The part of the crop's box it replaces: INNER_MARGIN in from each edge, on the build's grid."""
    x0, y0, x1, y1 = box
    mx, my = max(2, round(INNER_MARGIN * (x1 - x0))), max(2, round(INNER_MARGIN * (y1 - y0)))
    g = grid_factor
    rx0, ry0 = -(-(x0 + mx) // g) * g, -(-(y0 + my) // g) * g
    rx1, ry1 = (x1 - mx) // g * g, (y1 - my) // g * g
    return int(rx0), int(ry0), int(min(rx1, photo_hw[1])), int(min(ry1, photo_hw[0]))


def align_crop(crop, body_points: np.ndarray, body_mask: np.ndarray, *, grid_factor: int = 1):
    """(AlignedCrop, None) or (None, a note saying why the crop is not used)."""
    words = f"detail crop {crop.name.replace('_', ' ')}"
    if crop.pointmap is None:
        return None, f"{words}: not used, it has no pointmap"
    x0, y0, x1, y1 = crop.box
    f = int(crop.factor)
    fine_valid = crop.mask & finite_pixels(crop.pointmap)
    coarse, fraction = block_mean(crop.pointmap, fine_valid, f)
    body = body_points[y0:y1, x0:x1]
    with np.errstate(invalid="ignore"):
        seen = _erode(body_mask[y0:y1, x0:x1] & finite_pixels(body) & (body[..., 2] > 0))
    both = seen & (fraction == 1.0)
    count = int(both.sum())
    if count < MIN_OVERLAP_PX:
        return None, f"{words}: not used, only {count} photo pixels overlap the whole-body pointmap (needs {MIN_OVERLAP_PX})"
    s, t, residual = fit_scale_shift(coarse[both].astype(np.float64), body[both].astype(np.float64))
    depth = body[both][:, 2]
    agree = float((residual <= AGREE_M + AGREE_REL * depth).mean())
    median = float(np.median(residual))
    if not SCALE_RANGE[0] <= s <= SCALE_RANGE[1] or agree < MIN_AGREE:
        return None, (f"{words}: refused, its surface disagrees with the whole-body pointmap: after scale {s:.3g} and "
                      f"shift, {100 * agree:.0f}% of {count} overlapping pixels agree within "
                      f"{100 * AGREE_M:.0f} cm + {100 * AGREE_REL:.0f}% of depth (median distance "
                      f"{100 * median:.1f} cm; needs {100 * MIN_AGREE:.0f}%)")
    points = s * crop.pointmap  # + t, NaN off the valid pixels, float32: in place, the same values
    points += t.astype(np.float32)
    np.copyto(points, np.nan, where=~fine_valid[..., None])
    points = points.astype(np.float32, copy=False)
    region = inner_region(crop.box, body_mask.shape, grid_factor)
    if region[2] - region[0] < 2 * grid_factor or region[3] - region[1] < 2 * grid_factor:
        return None, f"{words}: not used, its box is too small to replace anything on this grid"
    return AlignedCrop(crop, s, t, count, agree, median, points, region), None


def align_crops(crops, body_points, body_mask, *, grid_factor: int = 1):
    """Every usable crop aligned (regions that would overlap an earlier one are refused), and the notes."""
    aligned, notes = [], []
    for crop in crops:
        one, note = align_crop(crop, body_points, body_mask, grid_factor=grid_factor)
        if one is not None:
            clash = next((a for a in aligned if _overlaps(a.region, one.region)), None)
            if clash is not None:
                one, note = None, (f"detail crop {crop.name.replace('_', ' ')}: not used, it overlaps the "
                                   f"{clash.crop.name.replace('_', ' ')} crop")
        if one is not None:
            aligned.append(one)
        else:
            notes.append(note)
    return aligned, notes


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --------------------------------------------------------------------------- maps at photo resolution


def _feather(region, rows: int, cols: int) -> np.ndarray:
    """Weight 0..1 rising from the region's edge inward over FEATHER_PX pixels (rows x cols)."""
    y = np.arange(rows) + 0.5
    x = np.arange(cols) + 0.5
    dy = np.minimum(y, rows - y)[:, None]
    dx = np.minimum(x, cols - x)[None, :]
    return np.clip(np.minimum(dx, dy) / FEATHER_PX, 0.0, 1.0).astype(np.float32)


def fuse_maps(bundle, aligned: list[AlignedCrop]):
    """A copy of `bundle` (engine.bundle.Bundle) whose pointmap, normal, albedo, seg and mask take
    each aligned crop's inside its region, averaged per photo pixel and feathered at the edge."""
    pointmap = bundle.pointmap.copy()
    normal = None if bundle.normal is None else bundle.normal.copy()
    albedo = None if bundle.albedo is None else bundle.albedo.copy()
    seg = None if bundle.seg is None else bundle.seg.copy()
    mask = bundle.mask.copy()
    for a in aligned:
        c, f = a.crop, int(a.crop.factor)
        bx0, by0 = c.box[:2]
        rx0, ry0, rx1, ry1 = a.region
        fine = (slice((ry0 - by0) * f, (ry1 - by0) * f), slice((rx0 - bx0) * f, (rx1 - bx0) * f))
        area = (slice(ry0, ry1), slice(rx0, rx1))
        valid = finite_pixels(a.points[fine])
        points, fraction = block_mean(a.points[fine], valid, f)
        weight = _feather(a.region, ry1 - ry0, rx1 - rx0)
        crop_here = fraction >= 0.5
        body_here = mask[area] & finite_pixels(pointmap[area])
        both = crop_here & body_here
        w = np.where(both, weight, np.where(crop_here, 1.0, 0.0))[..., None]
        # inside the feather band the body's pixels stay (the crop only blends in); past it the
        # crop alone says where the person is (the gaps between fingers)
        keep = crop_here | (body_here & (weight < 1.0))
        blended = np.where(crop_here[..., None], w * points + (1 - w) * np.nan_to_num(pointmap[area]), pointmap[area])
        pointmap[area] = np.where(keep[..., None], blended, np.nan)
        if normal is not None and c.normal is not None:
            n, _ = block_mean(c.normal[fine], valid & finite_pixels(c.normal[fine]), f)
            mixed = w * np.nan_to_num(n) + (1 - w) * np.nan_to_num(normal[area])
            mixed /= np.maximum(np.linalg.norm(mixed, axis=-1, keepdims=True), 1e-8)
            use = crop_here & finite_pixels(n)
            normal[area] = np.where(keep[..., None], np.where(use[..., None], mixed, normal[area]), np.nan)
        if albedo is not None and c.albedo is not None:
            alb, _ = block_mean(c.albedo[fine], np.ones(valid.shape, bool), f)
            albedo[area] = np.where(crop_here[..., None], w * alb + (1 - w) * albedo[area], albedo[area])
        if seg is not None and c.seg is not None:
            centre = c.seg[fine][f // 2::f, f // 2::f]
            seg[area] = np.where(crop_here & (centre > 0), centre, seg[area])
        mask[area] = keep
    if seg is not None:
        mask &= seg > 0
    # NaN off the mask, float32 (the copies made above, changed in place)
    off = ~mask[..., None]
    if normal is not None:
        np.copyto(normal, np.nan, where=off)
        normal = normal.astype(np.float32, copy=False)
    np.copyto(pointmap, np.nan, where=off)
    return replace(bundle, pointmap=pointmap.astype(np.float32, copy=False), normal=normal, albedo=albedo, seg=seg, mask=mask)


# --------------------------------------------------------------------------- the finer mesh, stitched


def _zipper(coarse_ids, coarse_pos, fine_ids, fine_pos) -> np.ndarray:
    """Triangles between two chains of vertices along one line (positions increasing): each step
    advances the chain whose next vertex comes first, fanning from the other chain's current one."""
    pos = np.concatenate([coarse_pos[1:], fine_pos[1:]])
    is_coarse = np.concatenate([np.ones(len(coarse_pos) - 1, bool), np.zeros(len(fine_pos) - 1, bool)])
    order = np.argsort(pos, kind="stable")
    is_coarse = is_coarse[order]
    coarse_before = np.cumsum(is_coarse) - is_coarse       # coarse steps taken before this event
    fine_before = np.cumsum(~is_coarse) - ~is_coarse
    tris = np.where(
        is_coarse[:, None],
        np.stack([coarse_ids[coarse_before], coarse_ids[coarse_before + 1], fine_ids[fine_before]], 1),
        np.stack([coarse_ids[coarse_before], fine_ids[fine_before], fine_ids[np.minimum(fine_before + 1, len(fine_ids) - 1)]], 1),
    )
    return tris


def mesh_density(factor: int, grid_factor: int, region_px: int) -> int:
    """Fine vertices per photo pixel along each axis for a crop's mesh: the largest divisor of the
    crop's factor that keeps the crop at most `factor` times finer than the build's grid (a half
    or quarter resolution build stays lighter) and its region under MAX_FINE_VERTICES."""
    for q in range(factor, 0, -1):
        if factor % q == 0 and q * grid_factor <= factor and region_px * q * q <= MAX_FINE_VERTICES:
            return q
    return 1


def _mesh_grid(points, normal, seg, step: int):
    """The crop's window averaged over step x step blocks (step 1: as it is)."""
    valid = np.isfinite(points).all(-1) & (points[..., 2] > 0)
    if step == 1:
        return points, valid, normal, seg
    mean, fraction = block_mean(points, valid, step)
    keep = fraction >= 0.5
    points = np.where(keep[..., None], mean, np.nan).astype(np.float32)
    if normal is not None:
        n, _ = block_mean(normal, valid & np.isfinite(normal).all(-1), step)
        n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-8)
        normal = np.where(keep[..., None], n, np.nan).astype(np.float32)
    if seg is not None:
        seg = np.ascontiguousarray(seg[step // 2::step, step // 2::step])
    return points, keep & np.isfinite(points).all(-1), normal, seg


def fine_K(K: np.ndarray, origin_xy, factor: int) -> np.ndarray:
    """The photo's camera matrix for a grid `factor` times finer whose first pixel starts at photo
    point origin_xy (pixel centres at +0.5 on both grids)."""
    Kf = np.asarray(K, np.float64).copy()
    Kf[:2] *= factor
    Kf[0, 2] -= origin_xy[0] * factor
    Kf[1, 2] -= origin_xy[1] * factor
    return Kf


def fuse_mesh(vertices, faces, labels, vertex_pixel, grid_hw, grid_factor: int, aligned: list[AlignedCrop], *,
              K: np.ndarray | None = None, refine: bool = False):
    """Replace the open grid surface inside each aligned crop's region by the crop's finer grid.

    vertices V x 3, faces F x 3, labels V (or None), vertex_pixel V x 2 (row, col) on the build's
    grid (grid_hw, grid_factor photo pixels per grid pixel). Returns (vertices, faces, labels,
    vertex_pixel (-1 for the crops' vertices), fine: V bool marking the crops' vertices, stats per crop).
    refine (with K): the crop's depth refined with its normals on its own grid, as the body's is
    (engine.geometry.normal_integration).
    """
    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces, np.int64)
    labels = None if labels is None else np.asarray(labels, np.uint8)
    pixel = np.asarray(vertex_pixel, np.int64)
    g = int(grid_factor)
    index = np.full(grid_hw, -1, np.int64)
    on_grid = (pixel >= 0).all(1) & (pixel[:, 0] < grid_hw[0]) & (pixel[:, 1] < grid_hw[1])
    index[pixel[on_grid, 0], pixel[on_grid, 1]] = np.nonzero(on_grid)[0]
    # the body's own winding, in (col, row) positions: the zipper triangles follow it
    p2 = pixel[:, ::-1].astype(np.float64)
    body_sign = np.sign(np.median(_area2(p2, faces))) if len(faces) else 1.0
    keep_face = np.ones(len(faces), bool)
    add_v, add_f, add_l, stats = [], [], [], []
    positions, depths = [p2 + 0.5], [vertices[:, 2]]
    count = len(vertices)
    for a in aligned:
        c, f = a.crop, int(a.crop.factor)
        q = mesh_density(f, g, (a.region[2] - a.region[0]) * (a.region[3] - a.region[1]))
        F = q * g                                           # fine vertices per grid pixel
        rx0, ry0, rx1, ry1 = a.region
        gr0, gc0, gr1, gc1 = ry0 // g, rx0 // g, ry1 // g, rx1 // g
        bx0, by0 = c.box[:2]
        fine = (slice((ry0 - by0) * f, (ry1 - by0) * f), slice((rx0 - bx0) * f, (rx1 - bx0) * f))
        inside = (pixel[:, 0] >= gr0) & (pixel[:, 0] < gr1) & (pixel[:, 1] >= gc0) & (pixel[:, 1] < gc1) & on_grid
        keep_face &= ~inside[faces].any(1)
        points, valid, normal, seg = _mesh_grid(a.points[fine], None if c.normal is None else c.normal[fine],
                                                None if c.seg is None else c.seg[fine], f // q)
        if refine and K is not None and normal is not None:
            from engine.geometry.normal_integration import refine_depth

            refined, _ = refine_depth(np.where(valid[..., None], points, np.nan), normal, valid, fine_K(K, (rx0, ry0), q))
            points = np.where(np.isfinite(refined), refined, points)
            valid = np.isfinite(points).all(-1) & (points[..., 2] > 0)
        mesh = grid_mesh(np.where(valid[..., None], points, np.nan), valid, normal=normal, seg=seg)
        local = np.full(valid.shape, -1, np.int64)
        local[mesh.pixel[:, 0], mesh.pixel[:, 1]] = np.arange(len(mesh.vertices)) + count
        fine_faces = mesh.faces.astype(np.int64) + count
        # positions in grid units (col, row): grid pixel centres at +0.5, fine ones at +(k + 0.5) / F
        fine_rc = mesh.pixel.astype(np.float64)
        positions.append(np.stack([gc0 + (fine_rc[:, 1] + 0.5) / F, gr0 + (fine_rc[:, 0] + 0.5) / F], 1))
        depths.append(mesh.vertices[:, 2])
        all_pos, all_depth = np.concatenate(positions), np.concatenate(depths)
        if len(fine_faces) and np.sign(np.median(_area2(all_pos, fine_faces))) != body_sign:
            fine_faces = fine_faces[:, ::-1]
        rows, cols = local.shape
        ring = []
        for side in ("top", "bottom", "left", "right"):
            if side in ("top", "bottom"):
                r = gr0 - 1 if side == "top" else gr1
                cc = np.arange(gc0 - 1, gc1 + 1)
                c_ids = _lookup(index, np.full_like(cc, r), cc)
                c_pos = cc + 0.5
                f_ids = local[0 if side == "top" else rows - 1]
                f_pos = gc0 + (np.arange(cols) + 0.5) / F
            else:
                col = gc0 - 1 if side == "left" else gc1
                rr = np.arange(gr0 - 1, gr1 + 1)
                c_ids = _lookup(index, rr, np.full_like(rr, col))
                c_pos = rr + 0.5
                f_ids = local[:, 0 if side == "left" else cols - 1]
                f_pos = gr0 + (np.arange(rows) + 0.5) / F
            ring.append(_zipper(c_ids, c_pos, f_ids, f_pos))
        zip_faces = np.concatenate(ring)
        zip_faces = zip_faces[(zip_faces >= 0).all(1)]
        stitched = 0
        if len(zip_faces):
            area = _area2(all_pos, zip_faces)
            zip_faces = np.where((np.sign(area) != body_sign)[:, None], zip_faces[:, ::-1], zip_faces)
            z = all_depth[zip_faces]
            smooth = (z.max(1) - z.min(1)) / np.maximum(z.min(1), 1e-6) <= RTOL_HARD
            zip_faces = zip_faces[(np.abs(area) > 1e-12) & smooth]
            stitched = len(zip_faces)
        add_v.append(mesh.vertices.astype(np.float32))
        add_f.extend([fine_faces, zip_faces])
        fine_labels = mesh.labels if mesh.labels is not None else np.zeros(len(mesh.vertices), np.uint8)
        add_l.append(np.asarray(fine_labels, np.uint8))
        stats.append({**a.summary(), "mesh_factor": int(q), "fine_vertices": int(len(mesh.vertices)), "fine_faces": int(len(fine_faces)),
                      "stitch_faces": int(stitched), "body_vertices_replaced": int(inside.sum())})
        count += len(mesh.vertices)
    all_v = np.concatenate([vertices, *add_v]) if add_v else vertices
    all_f = np.concatenate([faces[keep_face], *add_f]) if add_f else faces[keep_face]
    all_l = None if labels is None else np.concatenate([labels, *add_l])
    fine_flag = np.zeros(len(all_v), bool)
    fine_flag[len(vertices):] = True
    # drop the body vertices no face uses any more (those the crops replaced)
    used = np.zeros(len(all_v), bool)
    used[all_f.ravel()] = True
    remap = np.cumsum(used) - 1
    all_pixel = np.concatenate([pixel, np.full((len(all_v) - len(vertices), 2), -1, np.int64)]).astype(np.int32)
    return (all_v[used], remap[all_f].astype(np.int32), None if all_l is None else all_l[used], all_pixel[used],
            fine_flag[used], stats)


def _face_normals(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return face_cross(v, faces)


def _lookup(index: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    ok = (rows >= 0) & (rows < index.shape[0]) & (cols >= 0) & (cols < index.shape[1])
    out = np.full(rows.shape, -1, np.int64)
    out[ok] = index[rows[ok], cols[ok]]
    return out


def _area2(pos: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Twice the signed 2-D area of each face from vertex positions (N x 2)."""
    a, b, c = pos[faces[:, 0]], pos[faces[:, 1]], pos[faces[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


SNAP_M = 0.015               # a closed surface's front vertex moves onto the crop's depth when this close
# a vertex's snap fades in over |n . view| in this range: one seen edge-on (the cheek at the
# outline, under the chin) reads a crop pixel across the silhouette, where a network's depth is
# blurred between the near and the far surface
SNAP_FACING_COS = (0.2, 0.5)
# a triangle the snap would turn by more than 60 deg from its own normal before the snap keeps its
# corners where they were (then those corners' other triangles are checked again): the snap never
# flips or folds a triangle; on bench_closed's degraded crops, 350-500 faces per person were
# flipped and the face took 0.2-0.4 % of the body's area facing inward
SNAP_MAX_TURN_COS = 0.5
# a vertex whose move along its ray passes every neighbour's move (or falls short of every one)
# by more than this keeps its place too (then the turn guard runs again): with most of a noisy
# crop's vertices held back by that guard, one that moved alone stood 6.8 mm out of the face
# beside degraded-102's eye (a spike no triangle turned 60 deg for). Captured faces of bench_closed's
# four people, snapped without / with it: exact face 0.892 / 0.892 mm off the truth, degraded
# 1.897 / 1.891 mm (the maps' own solid: 1.77 / 1.81 mm), vertices standing over 3 mm out of their
# neighbourhood that the snap made, per degraded person 12.2 / 9.2, that spike gone
SNAP_SPIKE_M = 0.003
# the crop's classes the snap leaves where the closed solid has them, the snap fading in over
# FEATHER_PX photo pixels from them (_kept_fade): the hair. The solid smooths a hair cap's
# overhang away (the head keeps the fixed 2 % cut: crops-102's cap lies 7-10 mm behind the truth,
# flush with the forehead); the face crop has it. Snapped, the hair inside the face's region moved
# 8-10 mm toward the camera only where the guards let it (a triangle across the hairline would
# turn past 60 deg, and holding its corners back spread over the cap): a raised, ragged patch
# above the hairline whose edge rendered as a slot across the forehead. bench_detail's faces,
# closed with crops, exact: the forehead error's jump between photo rows max 3.28 -> 1.56 mm
# (without crops 1.07), forehead skin 0.40 -> 0.38 mm, the hair band 8.91 -> 9.10 mm (as outside
# the region)
SNAP_KEEP_CLASSES = ("Hair",)


def snap_to_crops(vertices, faces, aligned: list[AlignedCrop], K: np.ndarray):
    """A closed surface's front inside each crop's region moved along the camera rays onto the
    crop's finer depth (bilinear on its grid, where all four taps see the person), blended over
    the region's edge band and faded out where the surface is seen edge-on (SNAP_FACING_COS), and
    held back on any triangle it would turn by more than SNAP_MAX_TURN_COS and where it would stand
    out of its neighbours' moves by SNAP_SPIKE_M, and kept off the crop's hair (SNAP_KEEP_CLASSES,
    faded in from it): the solid stays closed
    (no triangle is added or removed), no triangle flips, and its front takes the crop's shape
    where it lies within SNAP_M of it. Returns (vertices, stats).

    The displacement is not smoothed over the mesh: two rounds of neighbour averaging left the
    degraded crops' snapped faces where they were (the guard holds back the noisy ones) and moved
    the exact crops' face from 0.24 to 0.40 mm off the truth (bench_closed's people)."""
    from engine.geometry.surface import vertex_normals

    v = np.asarray(vertices, np.float64).copy()
    f = np.asarray(faces, np.int64)
    stats = []
    for a in aligned:
        normals = vertex_normals(v, f)
        before = _unit_face_normals(v, f)
        scale, ok = _snap_scale(v, normals, a, K)
        scale, held = _unfolded_scale(v, f, scale, before)
        while True:
            scale, spikes = _spikes_held(v, f, scale)
            if not spikes:
                break
            scale, again = _unfolded_scale(v, f, scale, before)
            held += spikes + again
        v *= scale[:, None]
        stats.append({**a.summary(), "snapped_vertices": int((ok & (scale != 1.0)).sum()), "held_back_vertices": held})
    before = np.asarray(vertices, np.float64)
    flipped = int((row_dots(_face_normals(v, f), _face_normals(before, f)) < 0).sum())
    for s_ in stats:
        s_["faces_flipped"] = flipped   # over the whole mesh: 0 unless a crop undid another's guard
    return v.astype(np.float32), stats


def _snap_scale(v: np.ndarray, normals: np.ndarray, a: AlignedCrop, K: np.ndarray):
    """Per vertex: the factor along its ray that takes it onto crop `a`'s depth, weighted by the
    region's edge band and by how squarely the camera sees it (1 where it does not move), and
    which vertices read the crop (ok)."""
    c, f = a.crop, int(a.crop.factor)
    rx0, ry0, rx1, ry1 = a.region
    scale, ok = np.ones(len(v)), np.zeros(len(v), bool)
    uvw = v @ np.asarray(K, np.float64).T
    with np.errstate(invalid="ignore", divide="ignore"):
        x, y = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    edge = np.minimum.reduce([x - rx0, rx1 - x, y - ry0, ry1 - y])
    near = np.nonzero((edge > 0) & (v[:, 2] > 0))[0]
    h, w = c.mask.shape
    u, t = (x[near] - c.box[0]) * f - 0.5, (y[near] - c.box[1]) * f - 0.5
    i0, j0 = np.clip(np.floor(t).astype(int), 0, h - 2), np.clip(np.floor(u).astype(int), 0, w - 2)
    depth = a.points[..., 2]
    taps = np.stack([depth[i0, j0], depth[i0, j0 + 1], depth[i0 + 1, j0], depth[i0 + 1, j0 + 1]], 1)
    dt, du = np.clip(t - i0, 0, 1), np.clip(u - j0, 0, 1)
    target = (1 - dt) * ((1 - du) * taps[:, 0] + du * taps[:, 1]) + dt * ((1 - du) * taps[:, 2] + du * taps[:, 3])
    facing = -row_dots(normals[near], v[near]) / np.maximum(row_lengths(v[near]), 1e-20)
    with np.errstate(invalid="ignore"):
        hit = np.isfinite(taps).all(1) & (facing > SNAP_FACING_COS[0]) & (np.abs(v[near, 2] - target) < SNAP_M)
    weight = (np.clip(edge[near] / FEATHER_PX, 0.0, 1.0)
              * np.clip((facing - SNAP_FACING_COS[0]) / (SNAP_FACING_COS[1] - SNAP_FACING_COS[0]), 0.0, 1.0))
    kept = _kept_fade(c, x[near], y[near], (i0, j0))
    if kept is not None:
        hit &= kept > 0.0
        weight = weight * kept
    scale[near] = np.where(hit, 1.0 + weight * (np.where(hit, target, 1.0) / v[near, 2] - 1.0), 1.0)
    ok[near] = hit
    return scale, ok


def _kept_fade(c, x: np.ndarray, y: np.ndarray, taps) -> np.ndarray | None:
    """Per vertex at photo point (x, y) with its bilinear taps (i0, j0) on crop c's grid: 0 where a
    tap lies on a SNAP_KEEP_CLASSES pixel, else rising to 1 over FEATHER_PX photo pixels from the
    nearest photo pixel of the box with one; None when the crop has no such pixel (or no seg)."""
    if c.seg is None:
        return None
    from engine.geometry.labels import class_ids

    kept = np.isin(c.seg, class_ids(SNAP_KEEP_CLASSES))
    if not kept.any():
        return None
    from scipy import ndimage

    f = int(c.factor)
    h, w = kept.shape
    coarse = kept[:h // f * f, :w // f * f].reshape(h // f, f, w // f, f).any(axis=(1, 3))
    distance = ndimage.distance_transform_edt(~coarse)      # photo pixels to the nearest such pixel
    rows = np.clip(np.floor(y - c.box[1]).astype(int), 0, coarse.shape[0] - 1)
    cols = np.clip(np.floor(x - c.box[0]).astype(int), 0, coarse.shape[1] - 1)
    i0, j0 = taps
    on = kept[i0, j0] | kept[i0, j0 + 1] | kept[i0 + 1, j0] | kept[i0 + 1, j0 + 1]
    return np.where(on, 0.0, np.clip(distance[rows, cols] / FEATHER_PX, 0.0, 1.0))


def _spikes_held(v: np.ndarray, faces: np.ndarray, scale: np.ndarray):
    """scale with every moving vertex put back to 1 whose move along its ray (the distance) passes
    all its neighbours' moves, or falls short of all of them, by more than SNAP_SPIKE_M; and how
    many. A vertex at the edge of a patch that moves as one has neighbours that move as much: it
    stays."""
    move = (scale - 1.0) * row_lengths(v)
    moved = scale != 1.0
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = edges[moved[edges].any(1)]
    at, other = np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]])
    most, least = np.full(len(v), -np.inf), np.full(len(v), np.inf)
    np.maximum.at(most, at, move[other])
    np.minimum.at(least, at, move[other])
    spike = moved & ((move - most > SNAP_SPIKE_M) | (least - move > SNAP_SPIKE_M))
    scale = scale.copy()
    scale[spike] = 1.0
    return scale, int(spike.sum())


def _unfolded_scale(v: np.ndarray, faces: np.ndarray, scale: np.ndarray, before: np.ndarray):
    """scale with the corners of every triangle it would turn by more than SNAP_MAX_TURN_COS from
    `before` (its unit normals) put back to 1, until none does (a corner put back can turn its
    other triangles; each round puts back at least one moving corner, and a triangle with no corner
    moved keeps its normal); and how many corners were put back. (Halving a corner's move three
    times before putting it back gave the same inward area and no closer face on bench_closed.)"""
    scale = scale.copy()
    moved_faces = np.nonzero((scale[faces] != 1.0).any(1))[0]
    held = 0
    while len(moved_faces):
        sub = faces[moved_faces]
        turned = row_dots(before[moved_faces], _unit_face_normals(v * scale[:, None], sub)) < SNAP_MAX_TURN_COS
        if not turned.any():
            break
        corners = np.unique(sub[turned].ravel())
        corners = corners[scale[corners] != 1.0]
        held += len(corners)
        scale[corners] = 1.0
        moved_faces = moved_faces[(scale[sub] != 1.0).any(1)]
    return scale, held


def _unit_face_normals(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    n = _face_normals(v, faces)
    return n / np.maximum(row_lengths(n), 1e-30)[:, None]
