"""Hands in detail on the closed solid: each hand solved again from its crop, finer, and put in
place of the body's.

The closed solid (watertight.py) is one screened Poisson solve over the whole person, with cells
of 8-16 mm, from samples one per 2 x 2 photo pixels or coarser: the gaps between spread fingers,
a few millimetres wide, fall inside its cells and between its samples, and the hand comes out a
mitten. A hand crop (engine.geometry.detail.AlignedCrop) sees the same hand on a grid 4x finer
than the photo: its mask has the gaps, its points and normals the fingers' fronts.

1. `hand_solid_samples`: each aligned hand crop with a segmentation and a normal map becomes
   oriented samples, at the crop's own grid (region grid points at most MAX_SAMPLES_PER_CROP,
   block averaged when more):
   - front: the crop's aligned points, normals turned toward the camera;
   - back: the per-part thickness the solid gives the body (watertight.back_surface, on the
     crop's grid: the front's bulge over a membrane pinned on the crop's outlines, mirrored and
     scaled, at least the part's minimum thickness away from the silhouette), so every finger
     has its own back and the gaps stay open behind as in front.
   Only the crop's pixels labelled as a hand inside its region (the part of its box the build
   replaces, detail.inner_region) are used.
2. `replace_hands` (SolidSamples.apply, called by the closed surface once the body's solid is
   made): per hand, a Poisson solve over a box around the hand alone (cells of about
   LOCAL_CELL_M) from those samples and the body's own vertices near it that are not the hand
   being replaced (the forearm, a torso behind the hand); then the body less the hand's box,
   united with the new solid inside that box (manifold3d's booleans: the result stays a closed
   2-manifold).

Measured by bench/bench_detail.py ("gap free": the share of the true gaps between the fingers
that no triangle covers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HAND_CLASSES = ("Left_Hand", "Right_Hand")
HAND_CROPS = ("left_hand", "right_hand")
# grid points of a hand crop's region used at most (block averaged to a coarser step of the
# crop's grid when more): a hand's region is 5-10k photo pixels, so its 4x grid is averaged to
# 2 points per photo pixel. Measured on bench_detail's open-hands person (samples at 2 / at 4
# per photo pixel): the true gaps between the fingers left free 80-84 % / 92 % on exact maps,
# but on degraded ones (3 mm noise per crop pixel) the 4x samples fold the hand's own solve
# (non-manifold, refused) where the averaged ones close; and 4x costs about 3x the sample time.
MAX_SAMPLES_PER_CROP = 40_000
# the hand's own solid: cells of about 2.2 mm (Poisson depth 7 over a hand's box), where the
# body's are 8-16 mm; on the same person the gaps left free were 62-66 % with cells of 4.3 mm
# (depth 6, 0.3 s a hand) and 80-84 % with 2.2 mm (depth 7, 0.8-1.2 s a hand, shared CPU)
LOCAL_CELL_M = 0.0022
LOCAL_MAX_DEPTH = 8
CUT_MARGIN_M = 0.01  # the box the new hand replaces the body in: the hand's samples + this
CONTEXT_M = 0.02  # the body's vertices this far around that box are solved with the hand
# the crop's depth smoothed over about this much (a Gaussian over the crop's person pixels, along
# the rays) before it is solved: cells of 2 mm follow a network's per-pixel noise (bench_detail's
# degraded crops, 3 mm per pixel, gave a hand as rough as sandpaper); fingers are 15-20 mm wide
SMOOTH_M = 0.0015
OLD_HAND_REACH_M = 0.015  # the body's hand vertices this near the crop's hand samples are replaced
OVERLAP_M = 0.003  # the new hand reaches this far past the box, into the body left outside it
SEAM_BAND_M = 0.004  # the band either side of the cut smoothed (_smooth_seams)
SEAM_ROUNDS = 6
MIN_PIECE_FACES = 200  # smaller pieces left after the cut (the body's mitten outside the box) go


@dataclass
class SolidSamples:
    """Oriented samples from the hand crops, camera frame, and where they replace the body's."""

    front: tuple  # (points N x 3, normals N x 3, labels N uint8)
    back: tuple
    regions: list  # (x0, y0, x1, y1) photo pixels, one per crop used
    K: np.ndarray  # the photo's camera matrix: samples project into `regions` through it
    class_ids: np.ndarray  # the label ids replaced (the hand classes)
    stats: list = field(default_factory=list)

    def replaced(self, points: np.ndarray, labels: np.ndarray, region) -> np.ndarray:
        """Which of the body's points (N x 3, labels N) the crop of `region` replaces: labelled
        as a hand and projecting into the region."""
        return self.in_region(points, region) & np.isin(labels, self.class_ids)

    def in_region(self, points: np.ndarray, region) -> np.ndarray:
        """Which points (N x 3, camera frame) project into `region` (photo pixels)."""
        uvw = np.asarray(points, np.float64) @ np.asarray(self.K, np.float64).T
        with np.errstate(invalid="ignore", divide="ignore"):
            x, y = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
        x0, y0, x1, y1 = region
        return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)

    def apply(self, vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray | None):
        """The closed body (vertices, faces, labels) with each hand solved again from the crop's
        samples and put in its place: (vertices, faces, labels, stats). See `replace_hands`."""
        return replace_hands(vertices, faces, labels, self)


def hand_solid_samples(aligned: list, K: np.ndarray) -> tuple[SolidSamples | None, list[str]]:
    """SolidSamples from the aligned hand crops that have a segmentation (the hand's pixels must
    be told from the forearm's and the background's), and notes for those that cannot give any."""
    from engine.geometry.detail import block_mean, fine_K
    from engine.geometry.labels import class_names
    from engine.geometry.watertight import back_surface

    names = class_names()
    class_ids = np.array([names.index(n) for n in HAND_CLASSES if n in names], np.uint8)
    fronts, backs, regions, stats, notes = [], [], [], [], []
    for a in aligned:
        c = a.crop
        if c.name not in HAND_CROPS:
            continue
        words = f"detail crop {c.name.replace('_', ' ')}"
        if c.seg is None or c.normal is None:
            notes.append(f"{words}: the closed surface keeps the body's samples there (the crop has no "
                         f"{'segmentation' if c.seg is None else 'normal map'})")
            continue
        f = int(c.factor)
        x0, y0, x1, y1 = c.box
        rx0, ry0, rx1, ry1 = a.region
        step = 1
        while f % (step * 2) == 0 and (rx1 - rx0) * (ry1 - ry0) * (f // step) ** 2 > MAX_SAMPLES_PER_CROP:
            step *= 2
        q = f // step                                   # crop grid points per photo pixel used
        valid = np.isfinite(a.points).all(-1) & (a.points[..., 2] > 0) & c.mask
        normal_ok = valid & np.isfinite(c.normal).all(-1)
        points, fraction = block_mean(a.points, valid, step)
        normals, _ = block_mean(c.normal, normal_ok, step)
        seg = c.seg[step // 2::step, step // 2::step]
        on = (fraction >= 0.5) & np.isfinite(points).all(-1) & np.isfinite(normals).all(-1)
        normals = normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-8)
        points = _smoothed_along_rays(points, on, SMOOTH_M * q * np.sqrt(K[0, 0] * K[1, 1]) / np.nanmedian(points[on][:, 2]))
        # outward on the front is toward the camera: against the point's ray
        normals *= np.where((normals * points).sum(-1, keepdims=True) > 0, -1.0, 1.0)
        Kq = fine_K(K, (x0, y0), q)
        grid_points = np.where(on[..., None], points, np.nan).astype(np.float32)
        # the back over the whole crop box (its outline pins the membrane; the region is 12 % in)
        back, back_normals, back_labels, info = back_surface(grid_points, on, seg, Kq, normals)
        h, w = on.shape
        rows, cols = np.mgrid[0:h, 0:w]
        px, py = x0 + (cols + 0.5) / q, y0 + (rows + 0.5) / q
        use = on & (px >= rx0) & (px < rx1) & (py >= ry0) & (py < ry1) & np.isin(seg, class_ids)
        front = (points[use].astype(np.float64), normals[use].astype(np.float64), seg[use].astype(np.uint8))
        if not len(front[0]):
            notes.append(f"{words}: the closed surface keeps the body's samples there (no hand pixels in the crop's region)")
            continue
        uvw = back.astype(np.float64) @ np.asarray(K, np.float64).T
        bx, by = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
        in_back = (bx >= rx0) & (bx < rx1) & (by >= ry0) & (by < ry1) & np.isin(back_labels, class_ids)
        fronts.append(front)
        backs.append((back[in_back].astype(np.float64), back_normals[in_back].astype(np.float64),
                      back_labels[in_back].astype(np.uint8)))
        regions.append(tuple(int(v) for v in a.region))
        stats.append({"name": c.name, "samples_per_px": int(q), "front_samples": int(len(front[0])),
                      "back_samples": int(in_back.sum()), "back_factor": int(info["back_factor"])})
    if not fronts:
        return None, notes

    def joined(parts):
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

    return SolidSamples(joined(fronts), joined(backs), regions, np.asarray(K, np.float64), class_ids, stats), notes


def _smoothed_along_rays(points: np.ndarray, valid: np.ndarray, sigma_px: float) -> np.ndarray:
    """Each valid point moved along its ray to the Gaussian-weighted mean depth of the valid
    points around it (normalised convolution: the gaps between fingers do not pull it)."""
    from scipy import ndimage

    depth = np.where(valid, points[..., 2], 0.0).astype(np.float64)
    weight = ndimage.gaussian_filter(valid.astype(np.float64), sigma_px)
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = ndimage.gaussian_filter(depth, sigma_px) / weight
        scale = np.where(valid, smooth / points[..., 2], 1.0)
    return (points * scale[..., None]).astype(np.float32)


def _zone_boxes(points: np.ndarray):
    """(hand box lo, hi), (box the hand replaces the body in), (box of the samples solved)."""
    lo, hi = points.min(0), points.max(0)
    return (lo - CUT_MARGIN_M, hi + CUT_MARGIN_M), (lo - CUT_MARGIN_M - CONTEXT_M, hi + CUT_MARGIN_M + CONTEXT_M)


def _local_depth(lo: np.ndarray, hi: np.ndarray) -> int:
    """Poisson depth whose cells over this box (Open3D's cube: the largest side x 1.1) are about LOCAL_CELL_M."""
    extent = 1.1 * float((hi - lo).max())
    return int(np.clip(round(np.log2(max(extent, 1e-3) / LOCAL_CELL_M)), 5, LOCAL_MAX_DEPTH))


def _box(lo, hi):
    import manifold3d

    return manifold3d.Manifold.cube(tuple(float(v) for v in hi - lo)).translate(tuple(float(v) for v in lo))


def _manifold(vertices, faces):
    import manifold3d

    return manifold3d.Manifold(manifold3d.Mesh(vert_properties=np.ascontiguousarray(vertices, np.float32),
                                               tri_verts=np.ascontiguousarray(faces, np.uint32)))


def _smooth_seams(vertices: np.ndarray, faces: np.ndarray, boxes: list) -> tuple[np.ndarray, int]:
    """Where the new hand meets the body (a band of SEAM_BAND_M either side of each cut box's
    faces) the two solves differ by a millimetre or two, and the union leaves a step with thin
    triangles along it that shades as a dark line: Taubin smoothing (no shrinking) over that
    band only, SEAM_ROUNDS rounds."""
    import scipy.sparse as sp

    v = np.asarray(vertices, np.float64)
    band = np.zeros(len(v), bool)
    for lo, hi in boxes:
        outer = ((v >= lo - OVERLAP_M - SEAM_BAND_M) & (v <= hi + OVERLAP_M + SEAM_BAND_M)).all(1)
        inner = ((v > lo + SEAM_BAND_M) & (v < hi - SEAM_BAND_M)).all(1)
        band |= outer & ~inner
    if not band.any():
        return vertices, 0
    f = np.asarray(faces, np.int64)
    i = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    j = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    adjacency = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(len(v), len(v))).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    mean = sp.diags(1.0 / np.maximum(np.asarray(adjacency.sum(1)).ravel(), 1)) @ adjacency
    move = band[:, None]
    for _ in range(SEAM_ROUNDS):
        for step in (0.5, -0.53):
            v = np.where(move, v + step * (mean @ v - v), v)
    return v.astype(np.float32), int(band.sum())


def replace_hands(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray | None, fine: SolidSamples):
    """Each hand of the closed body re-solved on its own, finer, and put in place of the body's.

    Per hand crop: a screened Poisson solve over a box around the hand (the crop's front and back
    samples, and the body's own vertices there that are not the replaced hand: the forearm, a
    torso behind), with cells of about LOCAL_CELL_M where the body's solve has 8-16 mm ones;
    then the body without the hand's box, united with the new solid inside that box (grown by
    OVERLAP_M, so the two overlap and join). The boolean operations (manifold3d) keep the result
    a closed 2-manifold. Pieces of the body's mitten left outside the box are dropped (under
    MIN_PIECE_FACES triangles). Returns (vertices, faces, labels, stats); the body unchanged,
    with a note in stats, when the crops cannot be used this way.
    """
    from scipy.spatial import cKDTree

    from engine.geometry.labels import transfer_labels
    from engine.geometry.surface import vertex_normals
    from engine.geometry.watertight import poisson_solid

    stats = {"crops": list(fine.stats)}
    if labels is None:
        stats["note"] = "the closed surface has no part labels: the hands are the body's"
        return vertices, faces, labels, stats
    try:
        import manifold3d
    except ImportError:
        stats["note"] = "manifold3d is not installed: the hands are the body's"
        return vertices, faces, labels, stats
    body_v = np.asarray(vertices, np.float64)
    body_n = vertex_normals(body_v, np.asarray(faces, np.int64)).astype(np.float64)
    body_l = np.asarray(labels, np.uint8)
    front_p, front_n, front_l = fine.front
    back_p, back_n, back_l = fine.back
    solid = _manifold(vertices, faces)
    if solid.status().name != "NoError":
        stats["note"] = f"the closed surface is not a 2-manifold ({solid.status().name}): the hands are the body's"
        return vertices, faces, labels, stats
    label_points, label_values = [body_v], [body_l]
    seams, hands = [], []
    for k, region in enumerate(fine.regions):
        front_in = fine.in_region(front_p, region)
        back_in = fine.in_region(back_p, region)
        hand = np.concatenate([front_p[front_in], back_p[back_in]])
        # the body's own hand there: hand-labelled, in the region, and near the crop's hand (a
        # wrist labelled hand but not in the crop's hand pixels stays a sample, or the new solid
        # would be dented there); the box covers it too, so no piece of the old mitten (its back
        # is often thicker than the new hand's) stays outside
        old = fine.replaced(body_v, body_l, region)
        if old.any():
            distance, _ = cKDTree(hand).query(body_v[old], k=1)
            old[np.nonzero(old)[0][distance > OLD_HAND_REACH_M]] = False
        (cut_lo, cut_hi), (zone_lo, zone_hi) = _zone_boxes(np.concatenate([hand, body_v[old]]))
        around = ((body_v >= zone_lo) & (body_v <= zone_hi)).all(1) & ~old
        points = np.concatenate([body_v[around], hand])
        normals = np.concatenate([body_n[around], front_n[front_in], back_n[back_in]])
        # marching cubes can leave a fold the cleanup cannot close (a hand seen end-on, its
        # thin back close to its front): then once more with cells twice as large
        new_hand = None
        for depth in (_local_depth(zone_lo, zone_hi), _local_depth(zone_lo, zone_hi) - 1):
            hand_v, hand_f, _, local = poisson_solid(points, normals, None, depth=depth)
            if not local["open_edges"]:
                new_hand = _manifold(hand_v, hand_f)
                if new_hand.status().name == "NoError":
                    break
            new_hand = None
        if new_hand is None:
            stats["crops"][k]["note"] = "the hand's own solid did not close: the body's hand stays"
            continue
        hands.append(new_hand ^ _box(cut_lo - OVERLAP_M, cut_hi + OVERLAP_M))
        seams.append((cut_lo, cut_hi))
        stats["crops"][k].update(poisson_depth=depth, cell_mm=round(1e3 * 1.1 * float((zone_hi - zone_lo).max()) / 2**depth, 2),
                                 body_vertices_used=int(around.sum()), box_m=np.round(cut_hi - cut_lo, 4).tolist())
        label_points += [front_p[front_in], back_p[back_in]]
        label_values += [front_l[front_in], back_l[back_in]]
    if hands:
        # all the boxes cut at once, all the hands joined at once: each operation on the whole
        # body costs about as much as the body's size, whatever the number of hands
        solid = manifold3d.Manifold.batch_boolean([solid, *(_box(lo, hi) for lo, hi in seams)], manifold3d.OpType.Subtract)
        solid = manifold3d.Manifold.batch_boolean([solid, *hands], manifold3d.OpType.Add)
    pieces = solid.decompose()
    kept = [p for p in pieces if p.num_tri() >= MIN_PIECE_FACES]
    stats["pieces_dropped"] = len(pieces) - len(kept)
    mesh = manifold3d.Manifold.compose(kept).to_mesh() if kept else solid.to_mesh()
    out_v = np.asarray(mesh.vert_properties, np.float32)[:, :3]
    out_f = np.asarray(mesh.tri_verts, np.int32)
    out_v, stats["seam_vertices_smoothed"] = _smooth_seams(out_v, out_f, seams)
    out_l = transfer_labels(np.concatenate(label_points), np.concatenate(label_values), out_v)
    stats.update(vertices_before=int(len(vertices)), vertices=int(len(out_v)), faces=int(len(out_f)))
    return out_v, out_f, out_l, stats
