"""Projection UV islands: which faces the camera saw, and the vertex splits that separate them.

A front-only surface is one island: every face takes its texture from where it projects in the
photo. A closed surface also has faces the camera never saw (its back, the far side of limbs);
they form a second island so they neither share texels with the front nor take its normal-map
detail. Vertices on the border between the islands are duplicated (a UV seam).

Which faces were seen is decided with a smooth weight, not a hard test per face: near the
outline the surface turns away from the camera, one photo pixel spans centimetres of depth and
a per-face depth test flips from face to face, which left a saw-tooth border with patches of
either island on the other side (the front's colour and normal detail beside the back's). The
weight (how squarely the face looks at the camera, how well it agrees with the seen depth
around its pixel) is spread over the surface and cut at one half, so the border follows the
outline in one smooth line and no island leaves specks in the other. On the head the cut reads
the weight at the vertices (carried to the faces split along it by engine.geometry.refine_border
.refine_seam), so the seam there follows a line finer than the solid's triangles.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from engine.avatar.textures import FRONT, HIDDEN

# a face counts as seen when its centre is this close to the pointmap's depth around its pixel
SEEN_DEPTH_TOLERANCE_M = 0.02
SEEN_DEPTH_TOLERANCE_REL = 0.01
# facing weight: 0 for faces this edge-on to the camera (cosine of the view angle), 1 from the second
GRAZING_COS = (0.05, 0.2)
# the weight is spread over about this radius of surface before it is cut at one half
VISIBILITY_SMOOTHING_M = 0.015
MAX_SMOOTHING_STEPS = 60
# a piece of one island smaller than this (m^2) inside the other joins it (specks the cut left)
MIN_ISLAND_PIECE_M2 = 4e-4


def project(points_camera: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (N x 3) -> photo pixel coordinates (N x 2, centres at +0.5)."""
    p = np.asarray(points_camera, np.float64)
    K = np.asarray(K, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = p[:, :2] / p[:, 2:3]
    if K[0, 1] == 0 and K[1, 0] == 0 and K[0, 2] != 0 and K[1, 2] != 0:
        # no skew: the matrix product's numbers without a BLAS call (whose idle threads spin on
        # the other core): one product per coordinate, the other term a zero (NaN from an
        # infinite coordinate, as in the product); the zeros' signs vanish in the centre added
        x, y = xy[:, 0], xy[:, 1]
        out = np.empty_like(xy)
        with np.errstate(invalid="ignore"):
            out[:, 0] = x * K[0, 0] + y * K[0, 1]
            out[:, 1] = x * K[1, 0] + y * K[1, 1]
        out += K[:2, 2]
        return out
    return xy @ K[:2, :2].T + K[:2, 2]


def _filter3(values: np.ndarray, pick) -> np.ndarray:
    """ndimage's size-3 minimum_filter / maximum_filter (pick: np.minimum / np.maximum) with
    mode='nearest': along the rows, then along the columns, each neighbour's value compared
    (exact: a minimum or maximum picks one of the values)."""
    out = values.copy()
    pick(out[1:], values[:-1], out=out[1:])
    pick(out[:-1], values[1:], out=out[:-1])
    rows = out.copy()
    pick(out[:, 1:], rows[:, :-1], out=out[:, 1:])
    pick(out[:, :-1], rows[:, 1:], out=out[:, :-1])
    return out


def _depth_range_at(depth: np.ndarray, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At the pixels (row, col), the nearest and farthest seen depth in their 3 x 3
    neighbourhood (NaN: none): at a grazing angle the surface a face lies on spans that range
    within one pixel. Filtered over the person's box (plus the filter's reach) only."""
    finite = np.isfinite(depth)
    seen_rows, seen_cols = np.flatnonzero(finite.any(axis=1)), np.flatnonzero(finite.any(axis=0))
    low, high = np.full(len(row), np.nan), np.full(len(row), np.nan)
    if not len(seen_rows):
        return low, high
    r0, r1 = max(seen_rows[0] - 1, 0), min(seen_rows[-1] + 2, depth.shape[0])
    c0, c1 = max(seen_cols[0] - 1, 0), min(seen_cols[-1] + 2, depth.shape[1])
    box, seen = depth[r0:r1, c0:c1].astype(np.float64), finite[r0:r1, c0:c1]
    near = _filter3(np.where(seen, box, np.inf), np.minimum)
    far = _filter3(np.where(seen, box, -np.inf), np.maximum)
    r, c = row - r0, col - c0
    in_box = (r >= 0) & (r < r1 - r0) & (c >= 0) & (c < c1 - c0)
    r, c = np.clip(r, 0, r1 - r0 - 1), np.clip(c, 0, c1 - c0 - 1)
    near, far = near[r, c], far[r, c]
    low[in_box & np.isfinite(near)] = near[in_box & np.isfinite(near)]
    high[in_box & np.isfinite(far)] = far[in_box & np.isfinite(far)]
    return low, high


def visibility_weights(vertices_camera: np.ndarray, faces: np.ndarray, pointmap: np.ndarray, K: np.ndarray) -> np.ndarray:
    """F weights in [0, 1], per face and before smoothing: facing the camera squarely (ramped
    over GRAZING_COS) times lying on the seen surface (1 within the depth tolerance of the
    seen depths around its pixel, falling to 0 at twice the tolerance). 0 off the photo and
    where the camera saw no person."""
    v = np.asarray(vertices_camera, np.float64)
    c0, c1, c2 = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    centre = (c0 + c1 + c2) / 3  # the corners' mean, added in the same order
    normal = _cross(c1 - c0, c2 - c0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("ij,ij->i", normal, -centre) / (_length(normal) * _length(centre))
    facing = np.clip((np.nan_to_num(cos, nan=-1.0) - GRAZING_COS[0]) / (GRAZING_COS[1] - GRAZING_COS[0]), 0.0, 1.0)
    h, w = pointmap.shape[:2]
    xy = project(centre, K)
    inside = np.isfinite(xy).all(axis=1) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    col = np.clip(np.nan_to_num(xy[:, 0]).astype(np.int64), 0, w - 1)
    row = np.clip(np.nan_to_num(xy[:, 1]).astype(np.int64), 0, h - 1)
    low, high = _depth_range_at(pointmap[..., 2], row, col)
    z = centre[:, 2]
    outside_range = np.maximum(low - z, z - high)  # NaN where nothing was seen
    tolerance = np.maximum(SEEN_DEPTH_TOLERANCE_M, SEEN_DEPTH_TOLERANCE_REL * z)
    on_surface = np.clip(2.0 - np.nan_to_num(outside_range, nan=np.inf) / tolerance, 0.0, 1.0)
    return np.where(inside, facing * on_surface, 0.0)


def _face_vertex_incidence(faces: np.ndarray, n_vertices: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(faces)), 3)
    return sp.csr_matrix((np.ones(3 * len(faces)), (rows, faces.reshape(-1))), shape=(len(faces), n_vertices))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.cross of N x 3 rows, the same products and differences one column at a time (np.cross
    of rows costs several times more)."""
    out = np.empty_like(a)
    out[:, 0] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    out[:, 1] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    out[:, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return out


def _length(a: np.ndarray) -> np.ndarray:
    """np.linalg.norm(a, axis=1) of N x 3 rows: the squares added in the same order."""
    x, y, z = a[:, 0], a[:, 1], a[:, 2]
    return np.sqrt(x * x + y * y + z * z)


def _face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v = np.asarray(vertices, np.float64)
    v0 = v[faces[:, 0]]
    return 0.5 * _length(_cross(v[faces[:, 1]] - v0, v[faces[:, 2]] - v0))


def faces_to_vertices(vertices: np.ndarray, faces: np.ndarray, incidence=None):
    """V x F: each vertex the area-weighted mean of its faces' values (incidence: the faces'
    _face_vertex_incidence, when made already)."""
    if incidence is None:
        incidence = _face_vertex_incidence(faces, len(vertices))
    weighted = incidence.multiply(_face_areas(vertices, faces)[:, None]).tocsr()
    return sp.diags(1.0 / np.maximum(np.asarray(weighted.sum(axis=0)).ravel(), 1e-30)) @ weighted.T


def smooth_over_surface(face_values: np.ndarray, vertices: np.ndarray, faces: np.ndarray, radius_m: float,
                        with_vertices: bool = False):
    """Face values averaged over about `radius_m` of surface: alternately to the vertices
    (area-weighted) and back to the faces, as many times as the mean edge length needs to
    reach that far (diffusion: steps ~ (radius / edge)^2). with_vertices: (face values, the
    result averaged once more to the vertices)."""
    v = np.asarray(vertices, np.float64)
    edge = float(np.mean(_length(v[faces[:, 1]] - v[faces[:, 0]]))) if len(faces) else 1.0
    steps = int(np.clip(round((radius_m / max(edge, 1e-9)) ** 2), 1, MAX_SMOOTHING_STEPS))
    incidence = _face_vertex_incidence(faces, len(vertices))
    to_vertices = faces_to_vertices(vertices, faces, incidence)
    to_faces = incidence / 3.0
    values = np.asarray(face_values, np.float64)
    for _ in range(steps):
        values = to_faces @ (to_vertices @ values)
    return (values, to_vertices @ values) if with_vertices else values


def _drop_small_pieces(seen: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Pieces of either island (faces joined by edges) under MIN_ISLAND_PIECE_M2 join the other."""
    from scipy.sparse.csgraph import connected_components

    area = _face_areas(vertices, faces)
    first, second = np.asarray(faces, np.int64).T, np.roll(np.asarray(faces, np.int64), -1, axis=1).T
    edges = np.stack([np.minimum(first, second).ravel(), np.maximum(first, second).ravel()], axis=1)
    face_of = np.tile(np.arange(len(faces)), 3)
    order = np.argsort(edges[:, 0] * (len(vertices) + 1) + edges[:, 1])
    key = edges[order, 0] * (len(vertices) + 1) + edges[order, 1]
    pair = np.nonzero(key[1:] == key[:-1])[0]
    a, b = face_of[order][pair], face_of[order][pair + 1]
    out = seen.copy()
    for value in (False, True):  # hidden specks in the front first, then front specks
        same = (out[a] == value) & (out[b] == value)
        graph = sp.coo_matrix((np.ones(int(same.sum())), (a[same], b[same])), shape=(len(faces), len(faces)))
        _, piece = connected_components(graph, directed=False)
        piece_area = np.bincount(piece, weights=np.where(out == value, area, 0.0))
        small = (out == value) & (piece_area[piece] < MIN_ISLAND_PIECE_M2)
        out[small] = not value
    return out


def seen_weight(vertices_camera: np.ndarray, faces: np.ndarray, pointmap: np.ndarray, K: np.ndarray,
                with_vertices: bool = False):
    """F in [0, 1]: visibility_weights spread over VISIBILITY_SMOOTHING_M of surface (the
    islands are cut where it crosses one half). with_vertices: (that, V: it averaged to the
    vertices)."""
    weights = visibility_weights(vertices_camera, faces, pointmap, K)
    return smooth_over_surface(weights, vertices_camera, faces, VISIBILITY_SMOOTHING_M, with_vertices=with_vertices)


def seen_faces(vertices_camera: np.ndarray, faces: np.ndarray, pointmap: np.ndarray, K: np.ndarray) -> np.ndarray:
    """F bool: the face lies in the part of the surface the camera saw (seen_weight at least one
    half; specks dropped)."""
    faces = np.asarray(faces, np.int64)
    if len(faces) == 0:
        return np.zeros(0, bool)
    return cut_islands(seen_weight(vertices_camera, faces, pointmap, K), vertices_camera, faces)


def cut_islands(face_weight: np.ndarray, vertices: np.ndarray, faces: np.ndarray, vertex_weight=None,
                at_corners=None) -> np.ndarray:
    """F bool seen: the weight at least one half, specks dropped. Faces flagged `at_corners`
    (the head, split along the cut by refine_seam) read the mean of their corners'
    `vertex_weight` instead of their own."""
    weight = np.asarray(face_weight, np.float64)
    if at_corners is not None and np.any(at_corners):
        weight = np.where(at_corners, np.asarray(vertex_weight, np.float64)[faces].mean(axis=1), weight)
    return _drop_small_pieces(weight >= 0.5, vertices, faces)


def split_islands(faces: np.ndarray, face_island: np.ndarray, n_islands: int = 2):
    """Give each (vertex, island) pair its own vertex.

    Returns (new faces F x 3, source vertex per new vertex, island per new vertex). Vertices no
    face uses are dropped; new vertices keep the order of their source vertices.
    """
    corner_key = faces.astype(np.int64) * n_islands + np.repeat(face_island.astype(np.int64), 3).reshape(-1, 3)
    # np.unique(corner_key, return_inverse=True) without its sort: the keys are small
    # (vertex x island), a table of the ones used numbers them in increasing order
    used = np.zeros(int(corner_key.max()) + 1 if corner_key.size else 0, bool)
    used[corner_key.reshape(-1)] = True
    keys = np.flatnonzero(used)
    inverse = (np.cumsum(used) - 1)[corner_key]
    return inverse.astype(np.int64), keys // n_islands, (keys % n_islands).astype(np.int8)


def assign_islands(vertices_camera, faces, labels, pointmap, K, *, closed: bool, photos=(), max_faces=None):
    """The mesh and its F int8 island per face: all FRONT for a front-only surface, FRONT /
    HIDDEN for a closed one, whose head is first split along the cut (refine_seam: along the
    line where the seen weight read at the vertices is one half, not along whole triangles,
    which on the head's 7-11 mm triangles was a colour staircase). Returns
    (vertices, faces, labels, face island); photos: as refine_border's, for the new vertices'
    classes; a split past `max_faces` is not made."""
    from engine.geometry.refine_border import refine_seam

    faces = np.asarray(faces, np.int64)
    if not closed or len(faces) == 0:
        return vertices_camera, faces, labels, np.full(len(faces), FRONT, np.int8)
    weight, vertex_weight = seen_weight(vertices_camera, faces, pointmap, K, with_vertices=True)
    vertices_camera, faces, labels, weight, vertex_weight, head = refine_seam(
        vertices_camera, faces, labels, weight, vertex_weight, photos=photos, max_faces=max_faces)
    seen = cut_islands(weight, vertices_camera, faces, vertex_weight, at_corners=head)
    return vertices_camera, faces, labels, np.where(seen, FRONT, HIDDEN).astype(np.int8)
