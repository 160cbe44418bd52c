"""The face/hair border made fine: the head's triangles that straddle it split 1 -> 4, twice.

Material slots and the label-driven colours follow whole triangles; the closed solid's head
edges are 7-11 mm long, so the hairline drawn along them is a saw-tooth in a side view. Before
the mesh is split into UV islands, the triangles whose corners mix Hair with a face class are
split at their edges' midpoints (red split); a neighbour that shares one split edge is halved
(green split), one that shares two or three is split 1 -> 4 too, so the mesh stays a closed
2-manifold without T-junctions (each midpoint is one shared vertex). Two rounds take the border's
edges to a quarter of their length (~2-3 mm on the head).

A new vertex the photo sees (its depth within SEEN_DEPTH_M of the pointmap's at its pixel, so
the face's edge-on side does not read the hair strip behind it) takes the class the photo's
segmentation gives its pixel when that is Hair or a face class; else the class its edge's four
vertices (the edge's ends and the corners facing it) mostly carry, ties to the lower-numbered
end. With several photos (a fused build) the first that sees the vertex says. The surface's
shape does not change (midpoints lie on the old triangles).

The same split follows the head's seen/hidden UV island seam (refine_seam): a closed avatar's
islands are cut where a smoothed visibility weight (engine.avatar.islands) crosses one half;
along whole 7-11 mm triangles that cut is a colour staircase where the photo's colour meets the
hidden side's. The head's triangles whose corners' weight straddles one half are split the same
conforming way, but an edge the half-way line crosses is split where the weight (linear along
it) is one half, not at its midpoint: the pieces then lie wholly on one side, and the islands'
border runs along the line itself (a polyline through the crossings) instead of a staircase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.geometry.labels import class_names

# the classes on the face side of the hairline (a triangle mixing these with Hair is split)
FACE_CLASSES = ("Face_Neck", "Eyeglass", "Lower_Lip", "Upper_Lip", "Lower_Teeth", "Upper_Teeth", "Tongue")
# a new vertex is seen when its depth is this close to the photo's at its pixel
SEEN_DEPTH_M = 0.015
ROUNDS = 2
# an edge crossed by a cut is split where the weight crosses, kept this far from its ends (no
# sliver thinner than a tenth of the edge)
CROSSING_CLAMP = 0.1


@dataclass(frozen=True)
class Photo:
    """A photo the new vertices may read their class from: its segmentation, pointmap and
    camera matrix, and T (4 x 4) from its camera frame to the mesh's (None: the same frame)."""

    seg: np.ndarray
    pointmap: np.ndarray
    K: np.ndarray
    T: np.ndarray | None = None

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, np.float64)
        if self.T is None:
            return points
        T = np.asarray(self.T, np.float64)
        return (points - T[:3, 3]) @ T[:3, :3]


@dataclass
class Refined:
    """One round's result: the mesh (old vertices first, same indices), each face's source face
    (`parent`), and per-vertex `values` carried along (linear along each split edge)."""

    vertices: np.ndarray
    faces: np.ndarray
    labels: np.ndarray
    parent: np.ndarray  # F' index into the input faces
    values: list


def _ids(names) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(class_names())}
    return np.array([lookup[n] for n in names], np.int64)


def border_faces(faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """F bool: the face has a Hair corner and a face-class corner."""
    n = len(class_names())
    hair_table = np.zeros(n + 1, bool)
    hair_table[_ids(["Hair"])] = True
    face_table = np.zeros(n + 1, bool)
    face_table[_ids(FACE_CLASSES)] = True
    corner = np.minimum(np.asarray(labels, np.int64), n)[faces].T  # ids past the table: neither
    return (hair_table[corner[0]] | hair_table[corner[1]] | hair_table[corner[2]]) & (
        face_table[corner[0]] | face_table[corner[1]] | face_table[corner[2]])


def _any_corner(flag: np.ndarray, columns) -> np.ndarray:
    """F bool: any corner flagged (three gathers: faster than .any(axis=1) over F x 3)."""
    return flag[columns[0]] | flag[columns[1]] | flag[columns[2]]


# rings of faces around the marked ones whose edges are numbered at once (the promotions to
# red rarely reach further; when they do the region grows and is numbered again)
REGION_RINGS = 3


def _conforming_split(n_vertices: int, faces: np.ndarray, marked: np.ndarray, seed=None):
    """The split edges of a conforming red-green refinement of the `marked` faces (all their
    edges split), or with `seed` (E x 2 sorted vertex pairs -> E bool) of the seeded edges only,
    which must all lie on marked faces.

    Returns (local face indices, their F' x 3 edge ids, the edges' E x 2 vertex pairs, E bool
    split). Only the faces near a marked face are numbered (any face with a split edge has both
    its ends on a marked face); a face with two or more split edges is marked (all three split)
    until none is left with two."""
    columns = [np.ascontiguousarray(faces[:, j]) for j in range(3)]
    touched = np.zeros(n_vertices, bool)
    touched[faces[marked].reshape(-1)] = True
    while True:
        for _ in range(REGION_RINGS):
            touched[faces[_any_corner(touched, columns)].reshape(-1)] = True
        near = np.nonzero(_any_corner(touched, columns))[0]
        corner = faces[near]
        inner = touched[corner].all(axis=1)  # its neighbours are all in `near`
        pairs = np.sort(np.stack([corner[:, [0, 1]], corner[:, [1, 2]], corner[:, [2, 0]]], axis=1), axis=2).reshape(-1, 2)
        keys, face_edge = np.unique(pairs[:, 0] * np.int64(n_vertices) + pairs[:, 1], return_inverse=True)
        edges = np.column_stack([keys // n_vertices, keys % n_vertices])
        face_edge = face_edge.reshape(-1, 3)
        seeded = np.zeros(len(edges), bool) if seed is None else seed(edges)
        local = marked[near].copy() if seed is None else np.zeros(len(near), bool)
        while True:
            split = seeded.copy()
            split[face_edge[local].reshape(-1)] = True
            promote = (split[face_edge].sum(axis=1) >= 2) & ~local
            if not promote.any():
                break
            local |= promote
        if inner[local].all():
            return near, face_edge, edges, split
        touched[corner[local].reshape(-1)] = True  # a promotion reached the region's edge: grow it


def refine_once(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray, marked: np.ndarray, *,
                photos=(), values=(), crossing=None) -> Refined:
    """One red-green round over the `marked` faces: the new vertices appended in the order of
    their edges (sorted vertex pairs), the faces that were split replaced by their pieces at the
    end; `values` (per-vertex arrays) interpolated linearly at the new vertices. Edges are split
    at their midpoints. With crossing=(V weight, level) only the edges of the marked faces whose
    ends' weights lie on either side of `level` are split, where their linear weight equals it
    (CROSSING_CLAMP), and the faces the closure needs: a face crossed through a corner is halved
    along the line, one crossed through two edges split 1 -> 4 (its third edge at the midpoint),
    so every piece lies on one side of the level."""
    faces = np.asarray(faces, np.int64)
    values = [np.asarray(v) for v in values]
    if not marked.any():
        return Refined(vertices, faces, labels, np.arange(len(faces)), values)
    seed = None
    if crossing is not None:
        weight, level = np.asarray(crossing[0], np.float64), float(crossing[1])

        def seed(edges):  # the edges the level crosses
            w0, w1 = weight[edges[:, 0]], weight[edges[:, 1]]
            return (np.minimum(w0, w1) < level) & (np.maximum(w0, w1) > level)
    near, face_edge, edges, split = _conforming_split(len(vertices), faces, np.asarray(marked, bool), seed)
    split_ids = np.nonzero(split)[0]
    new_index = np.full(len(edges), -1, np.int64)
    new_index[split_ids] = len(vertices) + np.arange(len(split_ids))
    ends = edges[split_ids]
    t = np.full(len(ends), 0.5)
    if crossing is not None:
        w0, w1 = weight[ends[:, 0]], weight[ends[:, 1]]
        crossed = seed(ends)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(crossed, np.clip((level - w0) / (w1 - w0), CROSSING_CLAMP, 1.0 - CROSSING_CLAMP), 0.5)
    midpoints = vertices[ends[:, 0]] + t[:, None] * (vertices[ends[:, 1]] - vertices[ends[:, 0]])
    new_labels = _midpoint_labels(midpoints, ends, labels, faces[near], face_edge, split_ids, photos)

    count = split[face_edge].sum(axis=1)
    corner = faces[near]
    mid = new_index[face_edge]  # F' x 3: midpoint of edge (0,1), (1,2), (2,0) or -1
    red = count == 3
    a, b, c = corner[red].T
    ab, bc, ca = mid[red].T
    red_faces = np.stack([np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1), np.stack([ca, bc, c], 1),
                          np.stack([ab, bc, ca], 1)], axis=1).reshape(-1, 3)
    green = count == 1
    k = np.argmax(mid[green] >= 0, axis=1)  # which edge is split: rotate it to (0, 1)
    rows = np.arange(int(green.sum()))[:, None]
    rotated = corner[green][rows, (k[:, None] + np.arange(3)) % 3]
    m = mid[green][rows[:, 0], k]
    green_faces = np.stack([np.stack([rotated[:, 0], m, rotated[:, 2]], 1),
                            np.stack([m, rotated[:, 1], rotated[:, 2]], 1)], axis=1).reshape(-1, 3)
    keep = np.ones(len(faces), bool)
    keep[near[count > 0]] = False
    out_faces = np.concatenate([faces[keep], green_faces, red_faces])
    parent = np.concatenate([np.nonzero(keep)[0], np.repeat(near[green], 2), np.repeat(near[red], 4)])
    carried = [np.concatenate([v, (v[ends[:, 0]] + t * (v[ends[:, 1]] - v[ends[:, 0]])).astype(v.dtype)]) for v in values]
    return Refined(np.concatenate([vertices, midpoints]), out_faces,
                   np.concatenate([np.asarray(labels), new_labels.astype(np.asarray(labels).dtype)]), parent, carried)


def _midpoint_labels(midpoints, ends, labels, corner, face_edge, split_ids, photos):
    """Each new vertex's class: the first photo's that sees the vertex and says Hair or a face
    class; else the class most of its edge's four vertices carry (ties: the lower end's)."""
    labels = np.asarray(labels, np.int64)
    # the corner facing each (face, edge): edge j = (j, j+1) faces corner j+2
    opposite = corner[:, [2, 0, 1]].reshape(-1)
    edge_of = face_edge.reshape(-1)
    position = np.searchsorted(split_ids, edge_of)
    on_split = (position < len(split_ids)) & (split_ids[np.minimum(position, len(split_ids) - 1)] == edge_of)
    n = len(split_ids)
    first = labels[ends[:, 0]]
    votes_first = 2 * np.ones(n) - (labels[ends[:, 1]] != first)  # the two ends
    opposite_first = np.bincount(position[on_split], weights=(labels[opposite[on_split]] == first[position[on_split]]), minlength=n)
    opposite_count = np.bincount(position[on_split], minlength=n)
    votes_first = votes_first + opposite_first
    total = 2 + opposite_count
    out = np.where(2 * votes_first >= total, first, labels[ends[:, 1]])
    decided = np.zeros(n, bool)
    head_ids = np.concatenate([_ids(["Hair"]), _ids(FACE_CLASSES)])
    for photo in photos:  # a few views at most
        points = photo.to_camera(midpoints)
        K = np.asarray(photo.K, np.float64)
        h, w = photo.seg.shape[:2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = points[:, :2] / points[:, 2:3] @ K[:2, :2].T + K[:2, 2]
        inside = np.isfinite(xy).all(axis=1) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        col = np.clip(np.nan_to_num(xy[:, 0]).astype(np.int64), 0, w - 1)
        row = np.clip(np.nan_to_num(xy[:, 1]).astype(np.int64), 0, h - 1)
        with np.errstate(invalid="ignore"):
            seen = inside & (np.abs(photo.pointmap[row, col, 2].astype(np.float64) - points[:, 2]) < SEEN_DEPTH_M)
        says = np.asarray(photo.seg)[row, col].astype(np.int64)
        take = seen & np.isin(says, head_ids) & ~decided
        out = np.where(take, says, out)
        decided |= take
    return out


def _finer_than_the_photo(vertices: np.ndarray, faces: np.ndarray, photo: Photo | None) -> bool:
    """The border's edges (median) are already shorter than a photo pixel's footprint at their
    depth: halved they would be under half a pixel, finer than the segmentation can place the
    border."""
    if photo is None:
        return False
    corners = vertices[faces]
    edge = np.median(np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1))
    depth = photo.to_camera(corners[:, 0])[:, 2]
    footprint = np.median(np.abs(depth)) / float(np.asarray(photo.K)[0, 0])
    return bool(edge < footprint)


def refine_border(vertices, faces, labels, *, photos=(), rounds: int = ROUNDS, max_faces: int | None = None):
    """The mesh with its face/hair border's triangles split 1 -> 4 `rounds` times (conforming:
    a closed 2-manifold stays one). Returns (vertices, faces, labels); the old vertices keep
    their indices and classes. photos: Photo list the new vertices read their class from (the
    first also sets the pixel footprint no round goes below). A round that would take the mesh
    past `max_faces` (the user's face budget) is not made."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    labels = np.asarray(labels)
    photos = list(photos)
    for _ in range(rounds):
        marked = border_faces(faces, labels)
        if not marked.any() or _finer_than_the_photo(vertices, faces[marked], photos[0] if photos else None):
            break
        refined = refine_once(vertices, faces, labels, marked, photos=photos)
        if max_faces is not None and len(refined.faces) > int(max_faces):
            break
        vertices, faces, labels = refined.vertices, refined.faces, refined.labels
    return vertices, faces, labels


def head_faces(faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """F bool: a corner is Hair or a face class."""
    n = len(class_names())
    table = np.zeros(n + 1, bool)
    table[_ids(["Hair"])] = True
    table[_ids(FACE_CLASSES)] = True
    return _any_corner(table[np.minimum(np.asarray(labels, np.int64), n)], faces.T)


def _snap_to_level(weight: np.ndarray, faces: np.ndarray, level: float) -> np.ndarray:
    """The weight with each vertex that a crossing of `level` lies within CROSSING_CLAMP of (along
    an edge of `faces`) set to the level: the line then runs through that vertex, and no edge is
    split into a sliver."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    w0, w1 = weight[edges[:, 0]], weight[edges[:, 1]]
    crossed = (np.minimum(w0, w1) < level) & (np.maximum(w0, w1) > level)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (level - w0[crossed]) / (w1[crossed] - w0[crossed])
    near = np.concatenate([edges[crossed, 0][t < CROSSING_CLAMP], edges[crossed, 1][t > 1.0 - CROSSING_CLAMP]])
    if not len(near):
        return weight
    weight = weight.copy()
    weight[near] = level
    return weight


def refine_seam(vertices, faces, labels, face_weight, vertex_weight, *, cut: float = 0.5, photos=(), rounds: int = ROUNDS,
                max_faces: int | None = None):
    """The head's triangles whose corners' weight (`vertex_weight`, e.g. engine.avatar.islands'
    visibility) lies on both sides of `cut` split along the line (refine_once's crossing; a
    crossing near a vertex moves onto it), up to `rounds` times (one round leaves none such as
    a rule: the next finds nothing to do). Conforming as refine_border; labels as
    refine_border's. Returns (vertices, faces, labels, face weight (each piece its source
    face's), vertex weight (linear at the new vertices), F bool head: the faces that should read
    the weight at their corners). A round past `max_faces` is not made."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    labels = np.asarray(labels)
    face_weight = np.asarray(face_weight, np.float64)
    weight = np.asarray(vertex_weight, np.float64)
    photos = list(photos)
    for _ in range(rounds):
        head = head_faces(faces, labels)
        weight = _snap_to_level(weight, faces[head], cut)
        corner = weight[faces]
        marked = head & (corner.min(axis=1) < cut) & (corner.max(axis=1) > cut)
        if not marked.any():
            break
        refined = refine_once(vertices, faces, labels, marked, photos=photos, values=[weight], crossing=(weight, cut))
        if max_faces is not None and len(refined.faces) > int(max_faces):
            break
        vertices, faces, labels, weight = refined.vertices, refined.faces, refined.labels, refined.values[0]
        face_weight = face_weight[refined.parent]
    return vertices, faces, labels, face_weight, weight, head_faces(faces, labels)
