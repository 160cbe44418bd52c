"""Thin walls that part an arm from the trunk where the two only touch in the photo: the
geometry of a cut that the one-photo solid does not make yet (not called; docs/rig.md,
"Fifteenth session, arm-trunk walls").

The one-photo solid (watertight.close_surface: Poisson at depth 7, cells about 1.4 cm) closes
any gap narrower than a cell, so an arm hanging against the trunk comes out one surface with it,
and the rig's raised arm stretches the faces between them into sheets (docs/rig.md, "posed
stretch measured"). Here:

- the contact line (`contact_segments`): each arm pixel and the trunk pixel it faces along a
  row or a column, neighbours or across a gap under GAP_M, the step crossing the arm (not a
  sleeve's hem), the arm at most SAME_DEPTH_M in front of the trunk (further, the ray along the
  border runs into the trunk) and at most ARM_BEHIND_M behind it, past the upper arm's first
  ROOT_SHARE from the shoulder (keypoints, else the ends of its pixels), where arm and trunk
  truly join; the pieces on the arm pixel's border merged into runs, and joined across the
  line's staircase steps and the rows the tests miss (`_steps`: without them the wall has a
  hole at each step and the solid stays one there);
- the walls (`wall_solids`): each run widened by WALL_M, swept along the camera rays from
  FRONT_MARGIN_M in front of the contact to BACK_WIDTHS arm widths behind it: a box in
  (x/z, y/z, z), a convex solid in the camera frame once mapped to (u z, v z, z);
- the cut (`part_arms`): the closed solid less the walls (manifold3d, the whole body: 0.36 s on
  shared person_102) and the walls' sides, which come out as long slivers, split to MAX_EDGE_M;
- the labels (`labels_beside_walls`): by the nearest Poisson sample a wall's two sides take one
  class; those beside it take the class of the pixel they project into.

Measured on the shared people (bench/bench_posed_stretch.py) it makes the sheets larger, not
smaller: the walls end where the image contact ends, but the solid goes on joining the forearm
to the trunk in depth below it, and the arm's whole depth stays joined there, at the arm's far
end, instead of the fan the uncut surface spans from the shoulder.
"""

from __future__ import annotations

import numpy as np

from engine.geometry.labels import class_ids

WALL_M = 0.0025  # the wall's thickness
SAME_DEPTH_M = 0.03  # an arm pixel of a contact at most this far in front of its trunk pixel
# and at most this far behind it (10 / 30 cm, the forearm beside the trunk's far half walled too:
# larger sheets, docs/rig.md)
ARM_BEHIND_M = 0.03
ROOT_SHARE = 0.35  # the upper arm's share from the shoulder left joined
FRONT_MARGIN_M = 0.02  # the wall starts this far in front of the nearer pixel of the pair
# the wall reaches behind the contact's front by this many times the arm's width there (the arm
# is about as deep as it is wide; the web the Poisson solid spans behind it lies within that)
BACK_WIDTHS = 1.0
BACK_MARGIN_M = 0.02
ARM_REACH_M = 0.08  # an arm's width is read within this of its border pixel
MAX_STEP_PX = 3  # a contact line's sideways step from one row to the next joined by the wall
MAX_HOLE_PX = 4  # and the rows it may miss
MAX_EDGE_M = 0.01  # the cut's faces split until no edge is longer (the solid's are about 0.7 cm)
SPLIT_PASSES = 40
# an arm and the trunk facing each other across at most this much background (the Poisson solid's
# cells are about 1.4 cm: it closes such a gap) are walled off as well
GAP_M = 0.015


def contact_segments(points: np.ndarray, valid: np.ndarray, seg: np.ndarray, K: np.ndarray,
                     upper_arms: dict | None) -> np.ndarray:
    """The image segments of the arm-trunk contacts to wall off, on the grid of `points`
    (h x w x 3 camera points, `valid`, `seg` class ids, its camera matrix K): S x 6 rows (x0,
    y0, x1, y1 in pixels, the wall's near and far depth in metres), one per run of contact pixel
    borders along a row or a column (and those joining them: _steps). upper_arms: {upper arm
    class id: its shoulder and elbow keypoints, 2 x 2 pixels (x, y) on this grid}; an upper arm
    missing there has its ends taken from its pixels (_ends_from_pixels)."""
    upper_arms = dict(upper_arms or {})
    labels = np.asarray(seg, np.int64)
    depth = np.where(valid, points[..., 2], np.nan)
    width_m = _arm_width_m(labels, valid, depth, K)
    footprint = float(np.nanmedian(depth)) / np.sqrt(K[0, 0] * K[1, 1])
    longest_gap = int(np.ceil(GAP_M / footprint)) if np.isfinite(footprint) else 0
    out = []
    for di, dj in ((0, 1), (1, 0)):
        arm_r, arm_c, body_r, body_c = _facing_pairs(labels, valid, di, dj, longest_gap)
        with np.errstate(invalid="ignore"):
            behind = depth[arm_r, arm_c] - depth[body_r, body_c]
            keep = (behind > -SAME_DEPTH_M) & (behind < ARM_BEHIND_M)
        keep &= ~_at_shoulder(labels, valid, arm_r, arm_c, upper_arms)
        if not keep.any():
            continue
        arm_r, arm_c, body_r, body_c = arm_r[keep], arm_c[keep], body_r[keep], body_c[keep]
        z_arm, z_body = depth[arm_r, arm_c], depth[body_r, body_c]
        near = np.fmin(z_arm, z_body) - FRONT_MARGIN_M
        far = np.fmax(z_arm, z_body) + BACK_WIDTHS * width_m[arm_r, arm_c] + BACK_MARGIN_M
        # the wall on the border of the arm's pixel facing the trunk
        if dj:
            toward = body_c > arm_c
            border, along = np.where(toward, arm_c + 1, arm_c), arm_r
        else:
            toward = body_r > arm_r
            border, along = np.where(toward, arm_r + 1, arm_r), arm_c
        out.append(_runs(border, along, dj, near, far))
        out.append(_steps(border, along, labels[arm_r, arm_c] * 2 + toward, dj, near, far))
    return np.concatenate(out) if out else np.zeros((0, 6))


def _facing_pairs(labels: np.ndarray, valid: np.ndarray, di: int, dj: int, longest_gap: int):
    """Along one image axis (di, dj): each arm pixel and the trunk pixel it faces, neighbours or
    across at most `longest_gap` pixels off the person (a gap the solid closes), the step
    crossing the arm (|cos| with the arm's principal axis below limb_contacts.ALONG_COS: a
    sleeve's hem runs across the arm). Returns (arm rows, arm cols, trunk rows, trunk cols)."""
    from engine.geometry.labels import ARM_CLASSES, TRUNK_CLASSES
    from engine.geometry.limb_contacts import ALONG_COS, arm_axes

    arm = valid & np.isin(labels, class_ids(ARM_CLASSES))
    body = valid & np.isin(labels, class_ids(TRUNK_CLASSES))
    axes = arm_axes(labels, valid)
    with np.errstate(invalid="ignore"):
        across = arm & (np.abs(axes[..., 0] * dj + axes[..., 1] * di) < ALONG_COS)
    H, W = labels.shape
    r0, c0 = np.nonzero(across)
    found = [[], [], [], []]
    for sign in (1, -1):
        between = np.ones(len(r0), bool)  # every pixel passed so far off the person
        for k in range(1, longest_gap + 2):
            tr, tc = r0 + sign * k * di, c0 + sign * k * dj
            inside = (tr >= 0) & (tr < H) & (tc >= 0) & (tc < W)
            tr, tc = np.clip(tr, 0, H - 1), np.clip(tc, 0, W - 1)
            hit = between & inside & body[tr, tc]
            for store, values in zip(found, (r0, c0, tr, tc)):
                store.append(values[hit])
            between &= inside & ~valid[tr, tc]
    return tuple(np.concatenate(values) for values in found)


def _at_shoulder(labels, valid, rows, cols, upper_arms: dict) -> np.ndarray:
    """Whether each arm pixel (rows, cols) lies on its upper arm's first ROOT_SHARE from the
    shoulder: its position along that arm's shoulder -> elbow (in the image) below ROOT_SHARE."""
    root = np.zeros(rows.shape, bool)
    own = labels[rows, cols]
    for part in class_ids(tuple(f"{side}_Upper_Arm" for side in ("Left", "Right"))):
        on = own == part
        if not on.any():
            continue
        ends = upper_arms.get(int(part))
        if ends is None:
            ends = _ends_from_pixels(valid & (labels == part))
        shoulder, elbow = np.asarray(ends, np.float64)
        axis = elbow - shoulder
        offset_x, offset_y = cols[on] + 0.5 - shoulder[0], rows[on] + 0.5 - shoulder[1]
        share = (offset_x * axis[0] + offset_y * axis[1]) / max(axis @ axis, 1e-9)
        root[on] = share < ROOT_SHARE
    return root


def _ends_from_pixels(inside: np.ndarray) -> np.ndarray:
    """An upper arm's shoulder and elbow (2 x 2, x y) where the keypoints do not tell: the ends of
    its pixels' extent along their principal axis, the shoulder the upper one (an arm hanging
    against the trunk, which is where the contacts are)."""
    rows, cols = np.nonzero(inside)
    xy = np.stack([cols + 0.5, rows + 0.5], 1)
    centre = xy.mean(0)
    _, _, vt = np.linalg.svd(xy - centre, full_matrices=False)
    along = (xy - centre) @ vt[0]
    ends = centre + np.outer([along.min(), along.max()], vt[0])
    return ends[np.argsort(ends[:, 1])]


def _arm_width_m(labels: np.ndarray, valid: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Per pixel, twice its distance to the edge of its own arm part (pixels) times the pixel's
    footprint at its depth: the arm's width about there, in metres (0 off the arms)."""
    from scipy import ndimage

    from engine.geometry.labels import ARM_CLASSES

    width = np.zeros(labels.shape)
    for part in class_ids(ARM_CLASSES):
        inside = valid & (labels == part)
        if inside.any():
            width = np.where(inside, 2.0 * ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1], width)
    footprint = np.nan_to_num(depth) / np.sqrt(K[0, 0] * K[1, 1])
    # the widest within an arm's reach across: a border pixel's own distance is one
    seen = footprint > 0
    reach = int(np.ceil(ARM_REACH_M / max(float(np.median(footprint[seen])), 1e-6))) if seen.any() else 1
    width = ndimage.maximum_filter(width, size=2 * reach + 1) * (width > 0)
    return width * footprint


def _runs(border: np.ndarray, along: np.ndarray, dj: int, near: np.ndarray, far: np.ndarray) -> np.ndarray:
    """Wall pieces on pixel borders merged into runs of adjacent ones: for a step along x (dj) the
    border x = `border` from y = `along` to `along` + 1, else y = `border`, x from `along`; rows
    (x0, y0, x1, y1, near, far), a run's nearest near and farthest far."""
    order = np.lexsort((along, border))
    border, along, near, far = border[order], along[order], near[order], far[order]
    # the same border piece found twice (from both sides, across two gap widths) counts once
    fresh = np.r_[True, (border[1:] != border[:-1]) | (along[1:] != along[:-1])]
    starts = fresh & np.r_[True, (border[1:] != border[:-1]) | (along[1:] > along[:-1] + 1)]
    run = np.cumsum(starts) - 1
    n = int(run[-1]) + 1
    lo = along[starts].astype(np.float64)
    hi = np.bincount(run, weights=fresh, minlength=n) + lo
    at = border[starts].astype(np.float64)
    run_near = np.full(n, np.inf)
    np.minimum.at(run_near, run, near)
    run_far = np.full(n, -np.inf)
    np.maximum.at(run_far, run, far)
    if dj:
        return np.stack([at, lo, at, hi, run_near, run_far], 1)
    return np.stack([lo, at, hi, at, run_near, run_far], 1)


def _steps(border: np.ndarray, along: np.ndarray, line: np.ndarray, dj: int, near: np.ndarray,
           far: np.ndarray) -> np.ndarray:
    """The pieces that join a contact line's border pieces (`_runs`' arguments; `line`: which
    line each is on, its arm part and the side its trunk is on) from one row (column) to the
    next found at most MAX_HOLE_PX on, stepping sideways by at most MAX_STEP_PX: the line carried
    on at its border over the rows missing, then across to the next one's border. Without them
    the wall has a hole at every step of the line's staircase and every row the contact tests
    missed, and the solid stays one there. Rows as _runs gives."""
    order = np.lexsort((border, along, line))
    border, along, line, near, far = border[order], along[order], line[order], near[order], far[order]
    gap = along[1:] - along[:-1]
    joined = ((line[1:] == line[:-1]) & (gap >= 1) & (gap <= MAX_HOLE_PX)
              & (np.abs(border[1:] - border[:-1]) <= MAX_STEP_PX))
    i = np.nonzero(joined)[0]
    z_near, z_far = np.minimum(near[i], near[i + 1]), np.maximum(far[i], far[i + 1])
    start, end = (along[i] + 1).astype(np.float64), along[i + 1].astype(np.float64)
    at = border[i].astype(np.float64)
    lo = np.minimum(border[i], border[i + 1]).astype(np.float64)
    hi = np.maximum(border[i], border[i + 1]).astype(np.float64)
    carried = end > start  # rows missing: the line carried on along its border
    sideways = lo < hi
    if dj:  # a line of vertical borders: carried along y at x = border, across along x at y = the next row's top
        pieces = [np.stack([at, start, at, end, z_near, z_far], 1)[carried],
                  np.stack([lo, end, hi, end, z_near, z_far], 1)[sideways]]
    else:
        pieces = [np.stack([start, at, end, at, z_near, z_far], 1)[carried],
                  np.stack([end, lo, end, hi, z_near, z_far], 1)[sideways]]
    return np.concatenate(pieces)


def wall_solids(segments: np.ndarray, K: np.ndarray, thickness: float = WALL_M) -> list:
    """Each segment (contact_segments' rows) as a convex manifold3d solid in the camera frame:
    the image segment widened by half `thickness` each side (and lengthened by as much, so a
    stair of runs joins at its corners) at the segment's nearer depth, swept along the rays from
    its near to its far depth."""
    import manifold3d

    solids = []
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    for x0, y0, x1, y1, near, far in segments:
        half_x, half_y = 0.5 * thickness * fx / near, 0.5 * thickness * fy / near
        xs = np.array([min(x0, x1) - half_x, max(x0, x1) + half_x])
        ys = np.array([min(y0, y1) - half_y, max(y0, y1) + half_y])
        u, v, z = np.meshgrid((xs - cx) / fx, (ys - cy) / fy, np.array([near, far]), indexing="ij")
        corners = np.stack([u * z, v * z, z], -1).reshape(-1, 3)
        solids.append(manifold3d.Manifold.hull_points(corners.astype(np.float64)))
    return solids


def cut_walls(vertices: np.ndarray, faces: np.ndarray, walls: list):
    """The closed mesh less the walls: (vertices float32, faces int64), or None when manifold3d
    cannot take the mesh or the cut leaves it empty."""
    import manifold3d

    from engine.geometry.near_boolean import mesh_solid

    body = mesh_solid(vertices, faces)
    if body.status().name != "NoError" or not walls:
        return None
    less = manifold3d.Manifold.batch_boolean([body, *walls], manifold3d.OpType.Subtract)
    mesh = less.to_mesh()
    tris = np.asarray(mesh.tri_verts, np.int64).reshape(-1, 3)
    if not len(tris):
        return None
    return np.asarray(mesh.vert_properties, np.float32)[:, :3], tris



def part_arms(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, valid: np.ndarray, seg: np.ndarray,
              K: np.ndarray, upper_arms: dict | None):
    """The closed solid (vertices, faces) parted from the arms where they only touch the trunk in
    the photo (module docstring; the maps are the solid's front grid, upper_arms as
    contact_segments takes them): (vertices float32, faces int64, the walls' segments, stats);
    the solid unchanged (and no segments) when there is no contact or the cut fails."""
    segments = contact_segments(points, valid, seg, K, upper_arms)
    stats = {"contact_walls": int(len(segments))}
    if not len(segments):
        return vertices, faces, segments, stats
    cut = cut_walls(vertices, faces, wall_solids(segments, K))
    if cut is None:
        stats["contact_walls_failed"] = True
        return vertices, faces, segments[:0], stats
    # the walls' sides come out of the boolean as long slivers (a side's corners only): split
    # to the solid's own edge length, so that the skin's weights vary over them as over the rest
    from engine.geometry.detail_solid import _split_long_edges

    def long_faces(v, f):
        corners = v[f]
        return (np.linalg.norm(corners - corners[:, [1, 2, 0]], axis=2) > MAX_EDGE_M).any(1)

    split_v, split_f = _split_long_edges(cut[0], cut[1], long_faces, MAX_EDGE_M, passes=SPLIT_PASSES)
    return split_v.astype(np.float32), split_f, segments, stats


def labels_beside_walls(vertices: np.ndarray, labels: np.ndarray, segments: np.ndarray, valid: np.ndarray,
                        seg: np.ndarray, K: np.ndarray, reach_px: int = 1) -> np.ndarray:
    """`labels` with the vertices beside a wall given the class of the pixel they project into
    (the nearest person pixel's): those projecting within `reach_px` pixels of its image segment,
    between its near and far depth (the wall lies on the arm's border: its trunk side takes the
    trunk's class, its arm side the arm's; by the nearest Poisson sample, transfer_labels, a thin
    wall's two sides take one class), and those projecting into an arm's pixel within
    ARM_REACH_M of it behind its near depth (the solid's back behind the arm, which
    watertight._behind_the_limbs gives the trunk's class, is the arm's once the wall parts them).
    The rig's weights follow the class."""
    from scipy import ndimage

    from engine.geometry.labels import ARM_CLASSES

    H, W = valid.shape
    z = vertices[:, 2].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        col = np.floor(K[0, 0] * vertices[:, 0] / z + K[0, 2])
        row = np.floor(K[1, 1] * vertices[:, 1] / z + K[1, 2])
    inside = (z > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
    row, col = np.where(inside, row, 0).astype(np.int64), np.where(inside, col, 0).astype(np.int64)
    _, (near_r, near_c) = ndimage.distance_transform_edt(~valid, return_indices=True)
    pixel_class = np.asarray(seg)[near_r, near_c]
    footprint = np.nanmedian(np.abs(vertices[:, 2])) / np.sqrt(K[0, 0] * K[1, 1])
    arm_reach = int(np.ceil(ARM_REACH_M / max(float(footprint), 1e-6)))
    near, far = _wall_zone(segments, (H, W), reach_px)
    arm_near, _ = _wall_zone(segments, (H, W), arm_reach)
    arm = np.isin(pixel_class, class_ids(ARM_CLASSES))
    beside = inside & (((z >= near[row, col]) & (z <= far[row, col]))
                       | (arm[row, col] & (z >= arm_near[row, col])))
    out = np.asarray(labels).copy()
    out[beside] = pixel_class[row[beside], col[beside]]
    return out


def _wall_zone(segments: np.ndarray, shape, reach_px: int):
    """Per pixel, the nearest near and farthest far depth of the walls within `reach_px` pixels of
    it (inf / -inf elsewhere)."""
    H, W = shape
    near = np.full((H, W), np.inf)
    far = np.full((H, W), -np.inf)
    for x0, y0, x1, y1, z_near, z_far in segments:
        rows = slice(max(int(min(y0, y1)) - reach_px, 0), min(int(np.ceil(max(y0, y1))) + reach_px, H))
        cols = slice(max(int(min(x0, x1)) - reach_px, 0), min(int(np.ceil(max(x0, x1))) + reach_px, W))
        near[rows, cols] = np.minimum(near[rows, cols], z_near)
        far[rows, cols] = np.maximum(far[rows, cols], z_far)
    return near, far
