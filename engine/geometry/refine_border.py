"""The material borders made fine: the triangles that straddle the face/hair border, the
skin/clothing border (collar, sleeves), the legs' hems or the shoes' tops split 1 -> 4, twice.

Material slots and the label-driven colours follow whole triangles; the closed solid's edges are
7-11 mm long, so the hairline drawn along them is a saw-tooth in a side view, and the neck's skin
slot (roughness 0.55) reaches into the shirt's (0.85) as a comb of glossy triangles. Before the
mesh is split into UV islands, the triangles whose corners mix the two sides of one of BORDERS
(Hair | the face classes; the bare skin of the neck, trunk and arms | the upper body's clothing;
the bare legs and feet | trousers, shorts, skirt and socks; the shoes | the legs, feet, socks and
trousers) are split at their edges' midpoints (red split); a neighbour that shares one split edge is halved
(green split), one that shares two or three is split 1 -> 4 too, so the mesh stays a closed
2-manifold without T-junctions (each midpoint is one shared vertex). Two rounds take the border's
edges to a quarter of their length (~2-3 mm on the head).

A new vertex the photo sees (its depth within SEEN_DEPTH_M of the pointmap's at its pixel, so
the face's edge-on side does not read the hair strip behind it) takes the class the photo's
segmentation gives its pixel when that is a class of a border one of its edge's ends lies on
(Hair or a face class on the head, a skin or clothing class at the collar or a hem, a shoe or
what meets it at a shoe's top); else the class its edge's four
vertices (the edge's ends and the corners facing it) mostly carry, ties to the lower-numbered
end. With several photos (a fused build) the first that sees the vertex says. The surface's
shape does not change (midpoints lie on the old triangles).

The head's seen/hidden UV island seam is split too (refine_seam): a closed avatar's islands are
cut where a smoothed visibility weight (engine.avatar.islands) crosses one half; along whole 7-11
mm triangles that cut is a colour staircase where the photo's colour meets the hidden side's. The
head's triangles are split along the line where the weight, linear over each triangle, is one
half (split_at_level: each crossed edge split at its crossing, a triangle halved or cut in three,
no other edge split), so every piece lies on one side and the islands' border runs along that
line, a polyline through the crossings, instead of a staircase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.geometry.labels import class_ids, class_names

# the classes on the face side of the hairline (a triangle mixing these with Hair is split)
FACE_CLASSES = ("Face_Neck", "Eyeglass", "Lower_Lip", "Upper_Lip", "Lower_Teeth", "Upper_Teeth", "Tongue")
# a new vertex is seen when its depth is this close to the photo's at its pixel
SEEN_DEPTH_M = 0.015
# a new vertex reads the class most of the seg's pixels within this many pixels of its own carry
SEG_WINDOW = 1
# the borders made fine: (one side's classes, the other's); a triangle with corners on both sides
# of one is split. The collar's and sleeves': the skin slot's classes of the neck, trunk and arms
# against the clothing of the upper body. The hems': the bare legs and feet against the trousers,
# shorts or skirt and the socks (skin slot | clothing slot). The shoes' tops: the shoes against
# whatever meets them (shoes slot | skin or clothing)
SKIN_CLASSES = ("Face_Neck", "Torso") + tuple(
    f"{side}_{part}" for side in ("Left", "Right") for part in ("Upper_Arm", "Lower_Arm", "Hand"))
CLOTHING_CLASSES = ("Upper_Clothing", "Apparel")
LEG_SKIN_CLASSES = tuple(f"{side}_{part}" for side in ("Left", "Right") for part in ("Upper_Leg", "Lower_Leg", "Foot"))
LEG_CLOTHING_CLASSES = ("Lower_Clothing", "Left_Sock", "Right_Sock")
SHOE_CLASSES = ("Left_Shoe", "Right_Shoe")
# in budget order: past max_faces the later ones are left out first (the hairline's kept longest)
BORDERS = ((("Hair",), FACE_CLASSES), (SKIN_CLASSES, CLOTHING_CLASSES), (LEG_SKIN_CLASSES, LEG_CLOTHING_CLASSES),
           (SHOE_CLASSES, LEG_SKIN_CLASSES + LEG_CLOTHING_CLASSES))
ROUNDS = 2
# a crossing of the level this close to an edge's end (fraction of the edge) moves onto that
# vertex: no sliver thinner than a tenth of the edge
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


def _side_tables(borders=BORDERS) -> list:
    """Per border, its two sides as class-id lookup tables (ids past the table: neither)."""
    n = len(class_names())
    tables = []
    for sides in borders:
        pair = []
        for names in sides:
            table = np.zeros(n + 1, bool)
            table[class_ids(names)] = True
            pair.append(table)
        tables.append(pair)
    return tables


def border_faces(faces: np.ndarray, labels: np.ndarray, borders=BORDERS) -> np.ndarray:
    """F bool: the face has corners on both sides of one of `borders`."""
    n = len(class_names())
    corner = np.minimum(np.asarray(labels, np.int64), n)[np.asarray(faces, np.int64)].T
    out = np.zeros(corner.shape[1], bool)
    for one, other in _side_tables(borders):
        out |= _any_corner(one, corner) & _any_corner(other, corner)
    return out


def _any_corner(flag: np.ndarray, columns) -> np.ndarray:
    """F bool: any corner flagged (three gathers: faster than .any(axis=1) over F x 3)."""
    return flag[columns[0]] | flag[columns[1]] | flag[columns[2]]


# rings of faces around the marked ones whose edges are numbered at once (the promotions to
# red rarely reach further; when they do the region grows and is numbered again)
REGION_RINGS = 3


def _conforming_split(n_vertices: int, faces: np.ndarray, marked: np.ndarray):
    """The split edges of a conforming red-green refinement of the `marked` faces.

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
        local = marked[near].copy()
        while True:
            split = np.zeros(len(edges), bool)
            split[face_edge[local].reshape(-1)] = True
            promote = (split[face_edge].sum(axis=1) >= 2) & ~local
            if not promote.any():
                break
            local |= promote
        if inner[local].all():
            return near, face_edge, edges, split
        touched[corner[local].reshape(-1)] = True  # a promotion reached the region's edge: grow it


def refine_once(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray, marked: np.ndarray, *,
                photos=(), borders=BORDERS) -> Refined:
    """One red-green round over the `marked` faces: the new vertices appended in the order of
    their edges (sorted vertex pairs), the faces that were split replaced by their pieces at the
    end (Refined.values empty)."""
    faces = np.asarray(faces, np.int64)
    if not marked.any():
        return Refined(vertices, faces, labels, np.arange(len(faces)), [])
    near, face_edge, edges, split = _conforming_split(len(vertices), faces, np.asarray(marked, bool))
    split_ids = np.nonzero(split)[0]
    new_index = np.full(len(edges), -1, np.int64)
    new_index[split_ids] = len(vertices) + np.arange(len(split_ids))
    ends = edges[split_ids]
    midpoints = 0.5 * (vertices[ends[:, 0]] + vertices[ends[:, 1]])
    new_labels = _midpoint_labels(midpoints, ends, labels, faces[near], face_edge, split_ids, photos, borders)

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
    return Refined(np.concatenate([vertices, midpoints]), out_faces,
                   np.concatenate([np.asarray(labels), new_labels.astype(np.asarray(labels).dtype)]), parent, [])


def _midpoint_labels(midpoints, ends, labels, corner, face_edge, split_ids, photos, borders=BORDERS):
    """Each new vertex's class (face_edge: the faces' edge ids, split_ids: the sorted ids of the
    split edges, in the order of `midpoints`): the first photo's that sees the vertex and says a
    class of a border (`borders`) one of its edge's ends lies on (_window_class); else the class
    most of its edge's four vertices carry (ties: the lower end's)."""
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
    # the photo may give a new vertex a class of a border one of its edge's ends lies on
    table_size = len(class_names()) + 1
    end_ids = np.minimum(labels[ends], table_size - 1)
    allowed = np.zeros((n, table_size), bool)
    for one, other in _side_tables(borders):
        either = one | other
        allowed[either[end_ids[:, 0]] | either[end_ids[:, 1]]] |= either
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
        says = _window_class(np.asarray(photo.seg), row, col, allowed)
        take = seen & (says >= 0) & ~decided
        out = np.where(take, says, out)
        decided |= take
    return out


def _window_class(seg: np.ndarray, row: np.ndarray, col: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Per point, the allowed class (allowed: N x classes + 1 bool) most of the seg's pixels
    within SEG_WINDOW of its pixel carry (ties: the point's own pixel's, then the lower id), -1
    where none is allowed: a ragged seg's single pixels do not move the border."""
    h, w = seg.shape[:2]
    size = allowed.shape[1]
    counts = np.zeros(allowed.shape, np.float64)
    rows = np.arange(len(row))
    for dr in range(-SEG_WINDOW, SEG_WINDOW + 1):
        for dc in range(-SEG_WINDOW, SEG_WINDOW + 1):
            says = seg[np.clip(row + dr, 0, h - 1), np.clip(col + dc, 0, w - 1)].astype(np.int64)
            counts[rows, np.clip(says, 0, size - 1)] += 1.0 + 0.5 * (dr == 0 and dc == 0)
    counts[~allowed] = 0.0
    best = np.argmax(counts, axis=1)
    return np.where(counts[rows, best] > 0, best, -1)


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
    """The mesh with its material borders' triangles (BORDERS) split 1 -> 4 `rounds` times (conforming:
    a closed 2-manifold stays one). Returns (vertices, faces, labels); the old vertices keep
    their indices and classes. photos: Photo list the new vertices read their class from (the
    first also sets the pixel footprint no round goes below). A round that would take the mesh
    past `max_faces` (the user's face budget) is made over fewer borders (the later ones in
    BORDERS left out first: the hairline's is kept longest), or not at all."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    labels = np.asarray(labels)
    photos = list(photos)
    for _ in range(rounds):
        made = False
        for kept in range(len(BORDERS), 0, -1):  # past the budget: the later borders left out first
            marked = border_faces(faces, labels, BORDERS[:kept])
            if not marked.any() or _finer_than_the_photo(vertices, faces[marked], photos[0] if photos else None):
                break
            refined = refine_once(vertices, faces, labels, marked, photos=photos, borders=BORDERS[:kept])
            if max_faces is None or len(refined.faces) <= int(max_faces):
                vertices, faces, labels = refined.vertices, refined.faces, refined.labels
                made = True
                break
        if not made:
            break
    return vertices, faces, labels


def head_faces(faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """F bool: a corner is Hair or a face class."""
    n = len(class_names())
    table = np.zeros(n + 1, bool)
    table[class_ids(["Hair"])] = True
    table[class_ids(FACE_CLASSES)] = True
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


def split_at_level(vertices, faces, labels, weight, level: float, region: np.ndarray, *, photos=()) -> Refined:
    """The mesh split along the line where the per-vertex `weight` (linear over each triangle)
    equals `level`, over the `region` faces: each edge of a region face whose ends lie on either
    side is split where the weight equals the level (a new vertex, its weight the level, its class
    as refine_border's midpoints'); a triangle with one such edge is halved from it to the
    opposite corner, one with two cut into the corner's triangle and the other side's quad (two
    triangles, the shorter diagonal). No other edge is split, so nothing spreads: a face outside
    the region that shares a split edge is halved the same way, and the mesh stays conforming.
    Every piece of a region face lies on one side of the level. Refined.values: [the weight]."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    weight = np.asarray(weight, np.float64)
    n = np.int64(len(vertices))

    def keys(f):
        pairs = np.sort(np.stack([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=1), axis=2)
        return pairs[..., 0] * n + pairs[..., 1]  # F x 3, edge (j, j+1)

    region_keys = keys(faces[region])
    a, b = region_keys // n, region_keys % n
    crossed = (np.minimum(weight[a], weight[b]) < level) & (np.maximum(weight[a], weight[b]) > level)
    cut_keys = np.unique(region_keys[crossed])
    if not len(cut_keys):
        return Refined(vertices, faces, labels, np.arange(len(faces)), [weight])
    # the faces holding a cut edge: both its ends lie on region faces
    on_region = np.zeros(len(vertices), bool)
    on_region[faces[region].reshape(-1)] = True
    candidate = np.nonzero(on_region[faces].sum(axis=1) >= 2)[0]
    candidate_keys = keys(faces[candidate])
    position = np.searchsorted(cut_keys, candidate_keys)
    is_cut = cut_keys[np.minimum(position, len(cut_keys) - 1)] == candidate_keys
    cut_faces = candidate[is_cut.any(axis=1)]
    face_edge = position[is_cut.any(axis=1)]
    mid = np.where(is_cut[is_cut.any(axis=1)], len(vertices) + face_edge, -1)  # new vertex per edge (j, j+1) or -1

    ends = np.column_stack([cut_keys // n, cut_keys % n])
    w0, w1 = weight[ends[:, 0]], weight[ends[:, 1]]
    t = (level - w0) / (w1 - w0)
    points = vertices[ends[:, 0]] + t[:, None] * (vertices[ends[:, 1]] - vertices[ends[:, 0]])
    new_labels = _midpoint_labels(points, ends, labels, faces[cut_faces], np.where(mid >= 0, face_edge, -1),
                                  np.arange(len(cut_keys)), photos)

    corner = faces[cut_faces]
    count = (mid >= 0).sum(axis=1)
    one = count == 1
    k = np.argmax(mid[one] >= 0, axis=1)  # the cut edge rotated to (0, 1)
    rows = np.arange(int(one.sum()))[:, None]
    r = corner[one][rows, (k[:, None] + np.arange(3)) % 3]
    m = mid[one][rows[:, 0], k]
    halves = np.stack([np.stack([r[:, 0], m, r[:, 2]], 1), np.stack([m, r[:, 1], r[:, 2]], 1)], axis=1).reshape(-1, 3)
    two = count == 2
    k = np.argmax(mid[two] < 0, axis=1)  # the uncut edge rotated to (1, 2): the cut ones are (0, 1), (2, 0)
    k = (k + 2) % 3
    rows = np.arange(int(two.sum()))[:, None]
    r = corner[two][rows, (k[:, None] + np.arange(3)) % 3]
    m01 = mid[two][rows[:, 0], k]
    m20 = mid[two][rows[:, 0], (k + 2) % 3]
    every = np.concatenate([vertices, points])
    # the quad (m01, r1, r2, m20) split along its shorter diagonal
    short = np.linalg.norm(every[m01] - every[r[:, 2]], axis=1) <= np.linalg.norm(every[r[:, 1]] - every[m20], axis=1)
    quad = np.where(short[:, None, None],
                    np.stack([np.stack([m01, r[:, 1], r[:, 2]], 1), np.stack([m01, r[:, 2], m20], 1)], axis=1),
                    np.stack([np.stack([m01, r[:, 1], m20], 1), np.stack([r[:, 1], r[:, 2], m20], 1)], axis=1))
    thirds = np.concatenate([np.stack([r[:, 0], m01, m20], 1)[:, None], quad], axis=1).reshape(-1, 3)
    keep = np.ones(len(faces), bool)
    keep[cut_faces] = False
    out_faces = np.concatenate([faces[keep], halves, thirds])
    parent = np.concatenate([np.nonzero(keep)[0], np.repeat(cut_faces[one], 2), np.repeat(cut_faces[two], 3)])
    return Refined(every, out_faces, np.concatenate([np.asarray(labels), new_labels.astype(np.asarray(labels).dtype)]),
                   parent, [np.concatenate([weight, np.full(len(points), float(level))])])


def refine_seam(vertices, faces, labels, face_weight, vertex_weight, *, cut: float = 0.5, photos=(),
                max_faces: int | None = None):
    """The head's triangles split along the line where `vertex_weight` (e.g. engine.avatar
    .islands' visibility, linear over each triangle) equals `cut` (split_at_level; a crossing
    within CROSSING_CLAMP of a vertex moves onto it, so no sliver is made). Returns (vertices,
    faces, labels, face weight (each piece its source face's), vertex weight, F bool head: the
    faces that should read the weight at their corners, every piece of which lies on one side of
    the cut). Not made when it would take the mesh past `max_faces`."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    head = head_faces(faces, labels)
    weight = _snap_to_level(np.asarray(vertex_weight, np.float64), faces[head], cut)
    refined = split_at_level(vertices, faces, labels, weight, cut, head, photos=photos)
    if max_faces is not None and len(refined.faces) > int(max_faces):
        return vertices, faces, labels, np.asarray(face_weight, np.float64), weight, head
    return (refined.vertices, refined.faces, refined.labels, np.asarray(face_weight, np.float64)[refined.parent],
            refined.values[0], head_faces(refined.faces, refined.labels))
