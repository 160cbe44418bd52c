"""A closed body's booleans with small boxes, done on the body's part near those boxes only.

The closed hands (detail_solid.join_hands) take the body less each hand's box, united with the
hand solved again inside that box. manifold3d's booleans cost in proportion to the meshes they
are given, not to the part that changes: on the 1024 x 768 bench person the whole body's import,
its cut and the union took 0.6 s of CPU for two boxes that touch a few thousand of its 80k
vertices. Here only the body's faces near the boxes go to manifold3d:

- `near`: the faces with a corner within `reach` of a box (reach: the box's own growth plus the
  body's longest edge, so no other face can meet the grown box); their rim (the edges they share
  with the far faces) is closed by a fan around each rim loop's mean (a cap), giving a small
  closed solid that is the body there;
- that solid less the boxes, united with the new solids (which must lie inside the grown boxes);
  the caps then come off again and the far faces, untouched, are put back on the same rim
  vertices.

The result is the whole body's boolean as long as nothing there could tell the two apart: the
caps must stay clear of the grown boxes (each cap triangle's bounds tested); no box may lie inside
the far faces closed by those caps (rays from its centre along three axes must cross them an even
number of times; a box pressed into a fold of the body could fail it); every rim vertex must
start one rim edge (a simple rim); every cap must come out of the boolean whole; and the result's
open edges must be the rim's (so the far faces close it). When any of these fails `cut` or
`union` returns None and the caller does the whole body's boolean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# how much wider than needed the near part is taken, tried in turn until its caps stay clear of
# the boxes (a forearm leaving its box at a slant has a slanted rim whose cap can cut the box)
MARGINS_M = (0.0, 0.02, 0.04, 0.08)


@dataclass
class NearCut:
    """The body near the boxes, capped, less the boxes (a manifold3d solid), and what puts the rest
    of the body back: the far faces (body vertex indices), the body's vertices, and which of the
    solid's triangles are caps (its source run and the first cap's triangle index)."""

    solid: object  # manifold3d.Manifold
    run_id: int
    near_faces: int  # triangles of the near part; the caps follow
    caps: int
    vertices: np.ndarray  # the body's, V x 3 float32
    far_faces: np.ndarray  # F' x 3, body vertex indices
    rim: np.ndarray  # body vertex indices on the rim, shared by near and far faces
    rim_edges: np.ndarray  # R x 2, the near faces' directed edges along the rim (body vertex indices)
    boxes: list


def cut(vertices: np.ndarray, faces: np.ndarray, boxes: list, grow: float) -> NearCut | None:
    """The body (closed 2-manifold, outward wound) near `boxes` ((lo, hi) pairs) less the boxes, to
    be united with solids lying within the boxes grown by `grow` (`union`); None when the near
    part cannot stand for the body (module docstring) and the caller must cut the whole body.
    A cap that meets a grown box (a limb leaving the box at a slant) is tried again with a near
    part wider by each of MARGINS_M."""
    import manifold3d

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    longest = _longest_edge_near(v, f, boxes, grow)
    if longest is None:
        return None
    for margin in MARGINS_M:
        capped = _capped_near_part(v, f, boxes, grow, grow + longest + margin)
        if capped is not None:
            break
    else:
        return None
    near_f, far_f, rim_start, rim_end, near_vertices, near_faces, cap_corners = capped
    # the far faces closed by the same caps must not hold a box (they do not cross it, so its
    # centre tells): rays from the centre along three axes must each cross them an even number
    # of times (a ray through an edge or a corner could count twice: then they disagree)
    far_closed = _Triangles(v, far_f, cap_corners)
    for lo, hi in boxes:
        if any(far_closed.crossings((np.asarray(lo) + np.asarray(hi)) / 2, axis) % 2 for axis in range(3)):
            return None
    solid = mesh_solid(near_vertices, near_faces)
    if solid.status().name != "NoError" or solid.volume() <= 0:
        return None
    run_id = int(solid.to_mesh().run_original_id[0])
    less = manifold3d.Manifold.batch_boolean([solid, *(box_solid(lo, hi) for lo, hi in boxes)], manifold3d.OpType.Subtract)
    return NearCut(less, run_id, int(len(near_f)), int(len(near_faces) - len(near_f)), np.asarray(vertices, np.float32),
                   far_f, np.unique(rim_start), np.stack([rim_start, rim_end], 1), list(boxes))


def _capped_near_part(v: np.ndarray, f: np.ndarray, boxes: list, grow: float, reach: float):
    """The faces with a corner within `reach` of a box, their rim closed by caps that stay clear of
    the boxes grown by `grow`: (near faces, far faces, the rim edges' start and end vertices, the
    capped near part's vertices and faces, the caps' corners C x 3 x 3), or None."""
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    n = len(v)
    close = np.zeros(n, bool)
    for lo, hi in boxes:
        close |= ((v >= np.asarray(lo) - reach) & (v <= np.asarray(hi) + reach)).all(1)
    near = close[f].any(1)
    if not near.any() or near.all():
        return None
    near_f, far_f = f[near], f[~near]
    # the rim: the near faces' directed edges whose reverse runs in a far face (both ends on
    # vertices of both kinds of face)
    shared = np.zeros(n, bool)
    shared[near_f.ravel()] = True
    on_far = np.zeros(n, bool)
    on_far[far_f.ravel()] = True
    shared &= on_far
    start, end = near_f.ravel(), near_f[:, [1, 2, 0]].ravel()
    candidate = shared[start] & shared[end]
    start, end = start[candidate], end[candidate]
    far_near_rim = far_f[shared[far_f].any(1)]
    far_edges = np.sort(far_near_rim.ravel() * n + far_near_rim[:, [1, 2, 0]].ravel())
    reverse = end * n + start
    at = np.minimum(np.searchsorted(far_edges, reverse), max(len(far_edges) - 1, 0))
    on_rim = far_edges[at] == reverse if len(far_edges) else np.zeros(len(reverse), bool)
    rim_start, rim_end = start[on_rim], end[on_rim]
    if not len(rim_start) or np.bincount(rim_start, minlength=n).max() > 1 or np.bincount(rim_end, minlength=n).max() > 1:
        return None
    graph = sparse.coo_matrix((np.ones(len(rim_start), np.int8), (rim_start, rim_end)), shape=(n, n)).tocsr()
    _, vertex_loop = connected_components(graph, directed=False)
    loops, loop = np.unique(vertex_loop[rim_start], return_inverse=True)
    centres = np.stack([np.bincount(loop, v[rim_start, k], len(loops)) for k in range(3)], 1) / np.bincount(loop)[:, None]
    # the caps (wound to close the near part), tested against the grown boxes by their bounds
    cap_corners = np.stack([v[rim_end], v[rim_start], centres[loop]], 1)
    cap_lo, cap_hi = cap_corners.min(1), cap_corners.max(1)
    for lo, hi in boxes:
        if (((cap_lo <= np.asarray(hi) + grow) & (cap_hi >= np.asarray(lo) - grow)).all(1)).any():
            return None
    used = np.unique(near_f)
    local = np.full(n, -1, np.int64)
    local[used] = np.arange(len(used))
    near_vertices = np.concatenate([v[used], centres]).astype(np.float32)
    caps = np.stack([local[rim_end], local[rim_start], len(used) + loop], 1)
    return near_f, far_f, rim_start, rim_end, near_vertices, np.concatenate([local[near_f], caps]), cap_corners


def union(near: NearCut, solids: list) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The body less the boxes (`near`) united with `solids` (manifold3d solids within the grown
    boxes): (vertices float32, faces int64, body_index) of the whole body, the near part's result
    first and the far faces' own vertices after it (body_index: their index in the body, -1 for
    the near part's); None when a cap did not come out whole or the result's open edges are not
    the rim's."""
    import manifold3d

    mesh = manifold3d.Manifold.batch_boolean([near.solid, *solids], manifold3d.OpType.Add).to_mesh()
    tris = np.asarray(mesh.tri_verts, np.int64).reshape(-1, 3)
    out_v = np.asarray(mesh.vert_properties, np.float32)[:, :3]
    run_index = np.asarray(mesh.run_index, np.int64)
    source = np.repeat(np.asarray(mesh.run_original_id, np.int64), np.diff(run_index) // 3)
    cap = (source == near.run_id) & (np.asarray(mesh.face_id, np.int64) >= near.near_faces)
    if int(cap.sum()) != near.caps:
        return None
    tris = tris[~cap]
    # the rim's vertices in the result, found by their exact position (the boolean did not move them)
    kept, tris = np.unique(tris, return_inverse=True)
    tris = tris.reshape(-1, 3)
    out_v = out_v[kept]
    keys = np.concatenate([out_v, near.vertices[near.rim]]).view(np.dtype((np.void, 12))).ravel()
    key, where = np.unique(keys, return_inverse=True)
    owner = np.full(len(key), -1, np.int64)
    owner[where[:len(out_v)]] = np.arange(len(out_v))
    rim_at = owner[where[len(out_v):]]
    if (rim_at < 0).any():
        return None
    # the far faces on the result's rim vertices and the far part's own vertices appended
    n = len(near.vertices)
    index = np.full(n, -1, np.int64)
    index[near.rim] = rim_at
    # the result's open edges must be the rim's, run as the near part ran them: then the far faces
    # close it again (a cap's edges swapped into the near part's would leave a hole or a seam)
    m = np.int64(len(out_v))
    forward = tris.ravel() * m + tris[:, [1, 2, 0]].ravel()
    backward = tris[:, [1, 2, 0]].ravel() * m + tris.ravel()
    present = np.sort(forward)
    at = np.minimum(np.searchsorted(present, backward), len(present) - 1)
    open_edges = np.sort(forward[present[at] != backward])
    if not np.array_equal(open_edges, np.sort(index[near.rim_edges[:, 0]] * m + index[near.rim_edges[:, 1]])):
        return None
    # the far faces' vertices that are not the rim's, in order (a mask: np.unique's sort cost 0.03 s)
    far_used = np.zeros(n, bool)
    far_used[near.far_faces.ravel()] = True
    far_used[near.rim] = False
    far_only = np.nonzero(far_used)[0]
    index[far_only] = len(out_v) + np.arange(len(far_only))
    vertices = np.concatenate([out_v, near.vertices[far_only]])
    body_index = np.concatenate([np.full(len(out_v), -1, np.int64), far_only])
    return vertices, np.concatenate([tris, index[near.far_faces]]), body_index


def box_solid(lo, hi):
    """The axis-aligned box from lo to hi as a manifold3d solid."""
    import manifold3d

    return manifold3d.Manifold.cube(tuple(float(x) for x in np.asarray(hi) - np.asarray(lo))).translate(tuple(float(x) for x in lo))


def mesh_solid(vertices, faces):
    """A closed triangle mesh as a manifold3d solid (check its status())."""
    import manifold3d

    return manifold3d.Manifold(manifold3d.Mesh(vert_properties=np.ascontiguousarray(vertices, np.float32),
                                               tri_verts=np.ascontiguousarray(faces, np.uint32)))


def _longest_edge_near(v: np.ndarray, f: np.ndarray, boxes: list, grow: float, search: float = 0.1) -> float | None:
    """The longest edge of the faces that could meet a box grown by `grow`: of those with a corner
    within `search` of it, when that edge is shorter than `search` (a longer one could reach the
    box from further out: None)."""
    close = np.zeros(len(v), bool)
    for lo, hi in boxes:
        close |= ((v >= np.asarray(lo) - grow - search) & (v <= np.asarray(hi) + grow + search)).all(1)
    corners = v[f[close[f].any(1)]]
    if not len(corners):
        return 0.0
    edges = corners - corners[:, [1, 2, 0]]
    longest = float(np.sqrt(np.einsum("fki,fki->fk", edges, edges).max()))
    return longest if longest < search else None


class _Triangles:
    """Triangles given as faces over vertices plus a few given by their corners, with their
    bounds, for ray crossing counts."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, extra: np.ndarray):
        self.vertices, self.faces, self.extra = vertices, faces, extra
        lo = np.minimum(np.minimum(vertices[faces[:, 0]], vertices[faces[:, 1]]), vertices[faces[:, 2]])
        hi = np.maximum(np.maximum(vertices[faces[:, 0]], vertices[faces[:, 1]]), vertices[faces[:, 2]])
        self.lo, self.hi = np.concatenate([lo, extra.min(1)]), np.concatenate([hi, extra.max(1)])

    def crossings(self, point: np.ndarray, axis: int) -> int:
        """How many triangles the ray from `point` along +`axis` crosses."""
        u, w = [k for k in range(3) if k != axis]
        pu, pw = point[u], point[w]
        candidate = np.nonzero((self.lo[:, u] <= pu) & (self.hi[:, u] >= pu) & (self.lo[:, w] <= pw) & (self.hi[:, w] >= pw))[0]
        listed = candidate[candidate < len(self.faces)]
        t = np.concatenate([self.vertices[self.faces[listed]], self.extra[candidate[candidate >= len(self.faces)] - len(self.faces)]])
        a, b, c = t[:, 0], t[:, 1], t[:, 2]

        def side(p, q):  # the sign of the point against edge p -> q, in the plane across the ray
            return (q[:, u] - p[:, u]) * (pw - p[:, w]) - (q[:, w] - p[:, w]) * (pu - p[:, u])

        s0, s1, s2 = side(a, b), side(b, c), side(c, a)
        inside = ((s0 > 0) & (s1 > 0) & (s2 > 0)) | ((s0 < 0) & (s1 < 0) & (s2 < 0))
        # where the ray meets the triangle's plane, along the axis
        normal = np.cross(b - a, c - a)
        with np.errstate(invalid="ignore", divide="ignore"):
            depth = a[:, axis] + ((a[:, u] - pu) * normal[:, u] + (a[:, w] - pw) * normal[:, w]) / normal[:, axis]
        return int(np.count_nonzero(inside & (depth > point[axis])))
