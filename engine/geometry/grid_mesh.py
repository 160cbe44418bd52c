"""Front surface of a person as a pixel-grid mesh, cut where the depth jumps.

One vertex per valid pixel, triangles between neighbouring pixels. A triangle is dropped when
one of its edges crosses a depth discontinuity (an arm in front of the torso, a hand in front of
the face), detected by two tests on each pixel-neighbour edge:

- the relative depth step `|z_p - z_q| / min(z_p, z_q)` exceeds `rtol_hard` (a jump so large no
  surface seen by this camera makes it between two neighbouring pixels), or
- the step exceeds `rtol_soft` *and* the 3-D edge leaves the tangent plane given by the predicted
  normals at its ends by more than `max_normal_angle` degrees. A true surface seen at a grazing
  angle has big depth steps too, but its edges lie in its tangent plane; an edge that spans a
  jump points along the viewing ray while the normals on either side face the camera.

Everything is vectorised over the pixel grid; the maps may be downsampled first with
`downsample_maps` (mask-aware averaging that keeps the front-most layer of each block).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Defaults measured on the three shared synthetic people (exact maps, full/half/quarter grids):
# webbing triangles between a limb and the body behind it have steps of 1.9 % and more, true
# surfaces exceed 2 % only in a thin band at grazing silhouettes (0.01 % of triangles), so
# RTOL_HARD = 0.02 cut every webbing triangle there and kept 99.98 % of person pixels meshed.
# The soft test catches smaller gaps (a forearm resting 1-2 cm in front of the belly) where the
# surface behind faces the camera.
RTOL_HARD = 0.02
RTOL_SOFT = 0.004
MAX_NORMAL_ANGLE = 60.0


@dataclass
class GridMesh:
    vertices: np.ndarray  # V x 3 float32, the pointmap at each vertex's pixel (camera frame)
    faces: np.ndarray  # F x 3 int32, wound so front faces point toward the camera
    pixel: np.ndarray  # V x 2 int32 (row, col) in the grid the mesh was built on
    labels: np.ndarray | None  # V uint8 segmentation class per vertex, when seg was given
    normals: np.ndarray | None  # V x 3 float32 predicted normal per vertex, when given
    n_cut: int  # triangles dropped by the discontinuity tests


def finite_pixels(maps: np.ndarray) -> np.ndarray:
    """Pixels of an H x W x C map whose every channel is finite: np.isfinite(maps).all(-1), the
    same bools, without its reduction over a short last axis (15x slower on a 1024 x 768 map)."""
    finite = np.isfinite(maps[..., 0])
    for channel in range(1, maps.shape[-1]):
        finite &= np.isfinite(maps[..., channel])
    return finite


def block_mean(maps: np.ndarray, valid: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Average f x f blocks of an h x w x C map over its valid pixels -> (mean, valid fraction).

    Channel by channel, the blocks' pixels added one offset at a time, in the order (row, then
    column in the block) numpy's sum over the two block axes adds them (the same sums): each add
    runs along a row of blocks, where numpy's sum, or these adds on the interleaved map, ran their
    innermost loop over the C channels only (2-3x slower each)."""
    h, w = valid.shape
    valid_blocks = valid.reshape(h // f, f, w // f, f)
    count = valid_blocks[:, 0, :, 0].astype(np.int64)
    for row in range(f):
        for col in range(f):
            if row or col:
                count += valid_blocks[:, row, :, col]
    mean = np.empty((h // f, w // f, maps.shape[-1]), np.float32)
    for channel in range(maps.shape[-1]):
        blocks = np.where(valid, maps[..., channel], 0.0).reshape(h // f, f, w // f, f)
        total = blocks[:, 0, :, 0].copy()
        for row in range(f):
            for col in range(f):
                if row or col:
                    total += blocks[:, row, :, col]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[..., channel] = total / count
    return mean, count / float(f * f)


def valid_pixels(pointmap: np.ndarray, mask: np.ndarray, normal: np.ndarray | None = None) -> np.ndarray:
    """Mask pixels whose point (and normal, when given) is finite with positive depth."""
    with np.errstate(invalid="ignore"):
        valid = mask & finite_pixels(pointmap) & (pointmap[..., 2] > 0)
    if normal is not None:
        valid &= finite_pixels(normal)
    return valid


def downsample_maps(
    factor: int,
    pointmap: np.ndarray,
    mask: np.ndarray,
    normal: np.ndarray | None = None,
    seg: np.ndarray | None = None,
    K: np.ndarray | None = None,
    *,
    layer_rtol: float = 0.02,
):
    """Average `factor` x `factor` blocks of the maps over valid pixels.

    Only pixels of a block's front-most layer (depth within `layer_rtol` of the block's nearest)
    are averaged, so a block straddling an arm and the torso behind it gives an arm point, not a
    point floating in between. A block is valid when at least half of it is. Segmentation takes
    the block's most common class among the averaged pixels. K is rescaled so that it maps to the
    coarse grid's pixel coordinates (pixel centres stay at +0.5).
    Returns (pointmap, mask, normal, seg, K) at the coarse size ceil(H / factor) x ceil(W / factor).
    """
    if factor == 1:
        return pointmap, mask, normal, seg, K
    H, W = mask.shape
    h, w = -(-H // factor), -(-W // factor)
    pad = ((0, h * factor - H), (0, w * factor - W))

    def blocks(a, fill):
        tail = a.shape[2:]
        a = np.pad(a, pad + ((0, 0),) * len(tail), constant_values=fill)
        a = a.reshape(h, factor, w, factor, *tail)
        return np.moveaxis(a, 2, 1).reshape(h, w, factor * factor, *tail)

    valid_fine = valid_pixels(pointmap, mask, normal)
    valid = blocks(valid_fine, False)
    depth = blocks(np.where(valid_fine, pointmap[..., 2], np.inf), np.inf)
    nearest = depth.min(axis=2, keepdims=True)
    use = valid & (depth <= nearest * (1.0 + layer_rtol))
    count = use.sum(axis=2)
    out_mask = valid.sum(axis=2) * 2 >= factor * factor
    out_mask &= count > 0
    denom = np.maximum(count, 1)[..., None]

    # use per block pixel (row, col in the block), on the padded photo grid: h x f x w x f
    use_grid = use.reshape(h, w, factor, factor).transpose(0, 2, 1, 3)

    def average(a):
        # block_mean over the front-most layer's pixels of each block (those are finite in the
        # pointmap and the normal: valid_fine; block_mean reads no other pixel, so no nan_to_num)
        padded = np.pad(a, pad + ((0, 0),)) if any(pad[0] + pad[1]) else a
        b, _ = block_mean(padded, use_grid.reshape(h * factor, w * factor), factor)
        b[~out_mask] = np.nan
        return b

    out_points = average(pointmap)
    out_normal = None
    if normal is not None:
        out_normal = average(normal)
        length = np.linalg.norm(out_normal, axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            out_normal = out_normal / length
        out_mask &= length[..., 0] > 1e-6
        out_normal[~out_mask] = np.nan
        out_points[~out_mask] = np.nan
    out_seg = None
    if seg is not None:
        seg_blocks = blocks(seg, 0)
        if seg_blocks.dtype == np.uint8:  # np.unique's classes and inverse, by a table (no sort)
            present = np.bincount(seg_blocks.ravel(), minlength=256) > 0
            classes = np.flatnonzero(present).astype(np.uint8)
            compact_class = (np.cumsum(present) - 1)[seg_blocks]
        else:
            classes, compact_class = np.unique(seg_blocks, return_inverse=True)
            compact_class = compact_class.reshape(seg_blocks.shape)
        block = np.arange(h * w).reshape(h, w, 1)
        # One bincount over (block, class) pairs of the averaged pixels: votes per block.
        votes = np.bincount(
            (block * classes.size + compact_class)[use], minlength=h * w * classes.size
        ).reshape(h, w, classes.size)
        out_seg = classes[votes.argmax(axis=-1)].astype(np.uint8)
        out_seg[~out_mask] = 0
    out_K = None
    if K is not None:
        out_K = np.diag([1.0 / factor, 1.0 / factor, 1.0]) @ np.asarray(K, np.float64)
    return out_points, out_mask, out_normal, out_seg, out_K


def _edge_breaks(points, normal, valid, p_slice, q_slice, rtol_hard, rtol_soft, max_normal_angle):
    """Bool map over the pixel pairs (p, q) selected by two slices: True where the edge is cut."""
    p, q = points[p_slice], points[q_slice]
    zp, zq = p[..., 2], q[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.abs(zp - zq) / np.minimum(zp, zq)
        broken = step > rtol_hard
        if normal is not None and max_normal_angle < 90:
            # The edge must lie in the tangent planes at *both* ends: at an occluding contour the
            # near side's normal is itself grazing, only the far side's shows the jump.
            edge = q - p
            length = np.linalg.norm(edge, axis=-1)
            out_of_plane = np.maximum(
                np.abs((edge * normal[p_slice]).sum(-1)), np.abs((edge * normal[q_slice]).sum(-1))
            )
            leaves_plane = ~(out_of_plane <= length * np.sin(np.radians(max_normal_angle)))
            broken |= (step > rtol_soft) & leaves_plane
    return broken | ~(valid[p_slice] & valid[q_slice])


def grid_mesh(
    pointmap: np.ndarray,
    mask: np.ndarray,
    *,
    normal: np.ndarray | None = None,
    seg: np.ndarray | None = None,
    rtol_hard: float = RTOL_HARD,
    rtol_soft: float = RTOL_SOFT,
    max_normal_angle: float = MAX_NORMAL_ANGLE,
    corner_triangles: bool = True,
) -> GridMesh:
    """Triangulate the valid pixels of a pointmap (H x W x 3) over a mask (H x W).

    Each 2 x 2 quad of valid pixels gives two triangles (split along the diagonal that keeps more
    of them uncut, then the shorter one); with `corner_triangles`, a quad with exactly three valid
    corners gives the one triangle they span, so the silhouette is not eaten away by half a pixel.
    Triangles with an edge across a depth discontinuity (see the module doc) are dropped.
    """
    H, W = mask.shape
    valid = valid_pixels(pointmap, mask, normal)
    points = np.where(valid[..., None], pointmap, 0.0).astype(np.float32)
    unit_normal = None
    if normal is not None:
        unit_normal = np.where(valid[..., None], normal, 0.0).astype(np.float32)

    index = np.full((H, W), -1, np.int64)
    rows, cols = np.nonzero(valid)
    index[rows, cols] = np.arange(rows.size)

    def cut(p_slice, q_slice):
        return _edge_breaks(
            points, unit_normal, valid, p_slice, q_slice, rtol_hard, rtol_soft, max_normal_angle
        )

    a, b = slice(None, -1), slice(1, None)
    top_bottom_left = cut((a, a), (b, a))  # tl-bl
    top_bottom_right = cut((a, b), (b, b))  # tr-br
    left_right_top = cut((a, a), (a, b))  # tl-tr
    left_right_bottom = cut((b, a), (b, b))  # bl-br
    diagonal = cut((a, a), (b, b))  # tl-br
    anti_diagonal = cut((a, b), (b, a))  # tr-bl

    # Triangles of a quad (corners tl, tr, bl, br), wound toward the camera:
    # A (tl, bl, br), B (tl, br, tr) split on tl-br; C (tl, bl, tr), D (tr, bl, br) split on tr-bl.
    keep_a = ~(top_bottom_left | left_right_bottom | diagonal)
    keep_b = ~(diagonal | top_bottom_right | left_right_top)
    keep_c = ~(top_bottom_left | left_right_top | anti_diagonal)
    keep_d = ~(anti_diagonal | left_right_bottom | top_bottom_right)

    tl, tr = index[:-1, :-1], index[:-1, 1:]
    bl, br = index[1:, :-1], index[1:, 1:]
    corners_valid = (tl >= 0).astype(np.int8) + (tr >= 0) + (bl >= 0) + (br >= 0)

    kept_ab = keep_a.astype(np.int8) + keep_b
    kept_cd = keep_c.astype(np.int8) + keep_d
    diag_len = np.linalg.norm(points[:-1, :-1] - points[1:, 1:], axis=-1)
    anti_len = np.linalg.norm(points[:-1, 1:] - points[1:, :-1], axis=-1)
    use_ab = (kept_ab > kept_cd) | ((kept_ab == kept_cd) & (diag_len <= anti_len))
    four = corners_valid == 4
    three = (corners_valid == 3) if corner_triangles else np.zeros_like(four)
    # With three valid corners each of A-D is either the one triangle they span or touches the
    # missing corner, which `_edge_breaks` already marked as broken.
    choose_a = keep_a & ((four & use_ab) | three)
    choose_b = keep_b & ((four & use_ab) | three)
    choose_c = keep_c & ((four & ~use_ab) | three)
    choose_d = keep_d & ((four & ~use_ab) | three)

    faces = np.concatenate(
        [
            np.stack([tl[choose_a], bl[choose_a], br[choose_a]], -1),
            np.stack([tl[choose_b], br[choose_b], tr[choose_b]], -1),
            np.stack([tl[choose_c], bl[choose_c], tr[choose_c]], -1),
            np.stack([tr[choose_d], bl[choose_d], br[choose_d]], -1),
        ]
    ).astype(np.int32)
    possible = int(2 * four.sum() + three.sum())
    return GridMesh(
        vertices=points[rows, cols],
        faces=faces,
        pixel=np.stack([rows, cols], -1).astype(np.int32),
        labels=None if seg is None else seg[rows, cols].astype(np.uint8),
        normals=None if unit_normal is None else unit_normal[rows, cols],
        n_cut=possible - faces.shape[0],
    )
