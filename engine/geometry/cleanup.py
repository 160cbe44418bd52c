"""Mesh cleanup and decimation over index arrays, carrying per-vertex attributes along.

Every function takes vertices (V x 3) and faces (F x 3 int) plus an optional dict of per-vertex
attributes (uv, labels, normals, pixel index, ...) and returns the same kinds of arrays, so a
caller never loses track of which attribute belongs to which vertex. `source_vertex` in the
results maps each output vertex to the input vertex its attributes came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


@dataclass
class MeshArrays:
    vertices: np.ndarray
    faces: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    source_vertex: np.ndarray | None = None  # output vertex -> input vertex
    removed: dict[str, int] = field(default_factory=dict)


def face_cross(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """np.cross(v[f1] - v[f0], v[f2] - v[f0]) per face (F x 3, the vertices' dtype): the same values,
    np.cross's products and differences in its order, made one coordinate at a time from each
    coordinate's column gathered at the corners (the F x 3 x 3 corner gather and np.cross's
    strided passes cost 2-3x more)."""
    v = np.asarray(vertices)
    f = np.asarray(faces)
    i0, i1, i2 = f[:, 0], f[:, 1], f[:, 2]
    a, b = [], []
    for k in range(3):
        column = np.ascontiguousarray(v[:, k])
        start = column[i0]
        a.append(column[i1] - start)
        b.append(column[i2] - start)
    out = np.empty((len(f), 3), np.result_type(a[0], b[0]))
    # np.cross(a, b): a1 b2 - a2 b1, a2 b0 - a0 b2, a0 b1 - a1 b0
    np.subtract(a[1] * b[2], a[2] * b[1], out=out[:, 0])
    np.subtract(a[2] * b[0], a[0] * b[2], out=out[:, 1])
    np.subtract(a[0] * b[1], a[1] * b[0], out=out[:, 2])
    return out


def row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a * b).sum(1) of two N x 3 arrays (the same sums in the same order), without numpy's
    reduction over 3-long rows."""
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def row_lengths(a: np.ndarray) -> np.ndarray:
    """np.linalg.norm(a, axis=1) of an N x 3 array (its squares summed in its order)."""
    return np.sqrt(row_dots(a, a))


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v = np.asarray(vertices, np.float64)
    return 0.5 * np.linalg.norm(np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]]), axis=1)


def degenerate_faces(vertices: np.ndarray, faces: np.ndarray, area_eps: float | None = 1e-12) -> np.ndarray:
    """Bool per face: a repeated corner or, unless area_eps is None, (near) zero area."""
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    if area_eps is None:
        return repeated
    return repeated | (face_areas(vertices, faces) <= area_eps)


# odd multipliers mixing a row's 64-bit words into one code (same_rows)
_ROW_HASH = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93], np.uint64)


def same_rows(rows: np.ndarray, *, as_numbers: bool):
    """The rows of an N x C array grouped by equal value through a hash of their bits and an
    integer sort (np.unique(axis=0) or np.isin over rows' bytes sort whole rows, several times
    slower): (group per row, the first row of each group). as_numbers: equal as numbers, as
    np.unique(rows, axis=0) groups float rows (-0 is 0; None for rows holding NaN); else equal
    bytes, as np.isin over the rows viewed as bytes compares them. None also when two different
    rows share a code (then the caller's np.unique or np.isin decides)."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or not len(rows) or rows.shape[1] > len(_ROW_HASH):
        return None
    if as_numbers:
        if rows.dtype not in (np.float32, np.float64) or np.isnan(rows).any():
            return None
        words = (np.asarray(rows, np.float64) + 0.0).view(np.uint64)  # + 0.0: -0 -> 0
    else:
        raw = np.ascontiguousarray(rows).view(np.uint8).reshape(len(rows), -1)
        if raw.shape[1] % 8:
            raw = np.concatenate([raw, np.zeros((len(rows), 8 - raw.shape[1] % 8), np.uint8)], axis=1)
        words = np.ascontiguousarray(raw).view(np.uint64)
        if words.shape[1] > len(_ROW_HASH):
            return None
    code = words[:, 0] * _ROW_HASH[0]
    for k in range(1, words.shape[1]):
        code ^= words[:, k] * _ROW_HASH[k]
    order = np.argsort(code, kind="stable")
    sorted_words = words[order]
    same_row = (sorted_words[1:] == sorted_words[:-1]).all(axis=1)
    if np.any((code[order][1:] == code[order][:-1]) & ~same_row):
        return None
    starts = np.concatenate([[True], ~same_row])
    group = np.empty(len(rows), np.int64)
    group[order] = np.cumsum(starts) - 1
    return group, order[starts]


def weld_by_position(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each point's group, the first point of each group) for points equal as numbers (the copies
    of a vertex a UV seam split): same_rows, or np.unique(axis=0) when two rows' codes clash."""
    same = same_rows(points, as_numbers=True)
    if same is not None:
        return same
    _, first, weld = np.unique(points, axis=0, return_index=True, return_inverse=True)
    return weld.reshape(-1), first


def _pair_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One int64 per unordered vertex pair (1-D unique is much faster than unique rows)."""
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    return lo * (np.int64(1) << 31) + hi


def duplicate_faces(faces: np.ndarray) -> np.ndarray:
    """Bool per face: same corner set as an earlier face (either winding)."""
    corners = np.sort(faces, axis=1).astype(np.int64)
    key = (corners[:, 0] << 42) + (corners[:, 1] << 21) + corners[:, 2]
    if len(faces) and corners.max() >= (1 << 21):
        key = np.unique(corners, axis=0, return_inverse=True)[1].ravel()
    _, first = np.unique(key, return_index=True)
    duplicate = np.ones(len(faces), bool)
    duplicate[first] = False
    return duplicate


@dataclass(frozen=True)
class EdgeCensus:
    """The edges of a face list, from one sort of its half-edges. Half-edges are taken edge-major:
    every face's (0 1) edge, then every face's (1 2), then (2 0) (a: from, b: to)."""

    a: np.ndarray  # per half-edge: its first vertex
    b: np.ndarray  # per half-edge: its second vertex
    edge: np.ndarray  # per half-edge: its undirected edge's id (the rank of its vertex pair, np.unique's inverse)
    counts: np.ndarray  # per undirected edge: how many half-edges lie on it
    repeated: np.ndarray  # per half-edge: another half-edge runs from the same vertex to the same vertex


_LAST_CENSUS = None  # (faces as int64, their EdgeCensus): the closed solid's repair asks for it several times
# the census is kept for at most this many faces (~40 bytes per half-edge stay held until the next
# census): the one-photo solid's and the crop hands' depth-7 meshes (~40k faces) are, a fused
# solid's million faces are counted again when asked again
KEEP_CENSUS_FACES = 200_000


def edge_census(faces: np.ndarray) -> EdgeCensus:
    """The EdgeCensus of `faces` (its arrays read-only). The last faces' census is kept (up to
    KEEP_CENSUS_FACES faces): the same faces again (equal values) give it back without sorting
    again (poisson_solid's repair rounds and statistics ask for the edges of the same faces up to
    six times)."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    last = _LAST_CENSUS
    if last is not None and last[0].shape == f.shape and np.array_equal(last[0], f):
        return last[1]
    a = np.ascontiguousarray(f.T).ravel()
    b = np.ascontiguousarray(f[:, [1, 2, 0]].T).ravel()
    key = _pair_key(a, b)
    order = np.argsort(key)
    sorted_key = key[order]
    starts = np.ones(len(key), bool)
    starts[1:] = sorted_key[1:] != sorted_key[:-1]
    rank = np.cumsum(starts) - 1
    edge = np.empty(len(key), np.int64)
    edge[order] = rank
    counts = np.bincount(rank) if len(key) else np.zeros(0, np.int64)
    # the half-edges of one undirected edge run either way: a repeat is a second one running
    # the same way (a vertex pair (v, v) runs one way only)
    forward = a < b
    forward_count = np.bincount(edge[forward], minlength=len(counts))
    repeated = np.where(forward, forward_count[edge] >= 2, (counts - forward_count)[edge] >= 2)
    census = EdgeCensus(a, b, edge, counts, repeated)
    for array in (a, b, edge, counts, repeated):
        array.flags.writeable = False
    globals()["_LAST_CENSUS"] = (f.copy(), census) if len(f) <= KEEP_CENSUS_FACES else None
    return census


def _edge_face_table(faces: np.ndarray):
    """Undirected edges of every face: (edge id per face-edge, face per face-edge, n_edges)."""
    census = edge_census(faces)
    return census.edge.reshape(3, -1).T.ravel(), np.repeat(np.arange(len(faces)), 3), census.counts


def nonmanifold_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Bool per face to drop so that no edge has more than two faces.

    On an edge with more than two faces the two largest stay (they are the surface; the others
    are folds and slivers), so a manifold neighbourhood is kept rather than punching a hole.
    """
    if len(faces) == 0:
        return np.zeros(0, bool)
    edge_id, face_of, counts = _edge_face_table(faces)
    bad_edge = counts > 2
    if not bad_edge.any():
        return np.zeros(len(faces), bool)
    on_bad = bad_edge[edge_id]
    e, f = edge_id[on_bad], face_of[on_bad]
    area = face_areas(vertices, faces)[f]
    order = np.lexsort((-area, e))
    e, f = e[order], f[order]
    starts = np.r_[0, np.flatnonzero(np.diff(e)) + 1]
    rank = np.arange(e.size) - np.repeat(starts, np.diff(np.r_[starts, e.size]))
    drop = np.zeros(len(faces), bool)
    drop[f[rank >= 2]] = True
    return drop


def face_components(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Connected component id per face (faces sharing a vertex are connected)."""
    if len(faces) == 0:
        return np.zeros(0, np.int64)
    # Components of the vertex graph (face edges), then each face takes its first corner's.
    a = faces[:, [0, 1, 2]].ravel()
    b = faces[:, [1, 2, 0]].ravel()
    adjacency = sp.coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n_vertices, n_vertices))
    _, vertex_component = connected_components(adjacency.tocsr(), directed=False)
    return vertex_component[faces[:, 0]]


def small_islands(faces: np.ndarray, n_vertices: int, *, min_faces: int = 50, min_fraction: float = 0.002) -> np.ndarray:
    """Bool per face in a component with fewer than max(min_faces, min_fraction * F) faces.

    The largest component always stays.
    """
    if len(faces) == 0:
        return np.zeros(0, bool)
    component = face_components(faces, n_vertices)
    sizes = np.bincount(component)
    limit = max(min_faces, int(min_fraction * len(faces)))
    small = sizes < limit
    small[np.argmax(sizes)] = False
    return small[component]


def compact(vertices, faces, attributes=None, source_vertex=None) -> MeshArrays:
    """Drop vertices no face uses and renumber the faces; attributes follow their vertex."""
    used = np.zeros(len(vertices), bool)
    used[faces.ravel()] = True
    new_index = np.cumsum(used) - 1
    kept = np.flatnonzero(used)
    attributes = {k: np.asarray(v)[kept] for k, v in (attributes or {}).items()}
    base = np.arange(len(vertices)) if source_vertex is None else source_vertex
    return MeshArrays(
        vertices=np.asarray(vertices)[kept],
        faces=new_index[faces].astype(np.int32),
        attributes=attributes,
        source_vertex=base[kept],
    )


def clean_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    attributes: dict[str, np.ndarray] | None = None,
    *,
    min_island_faces: int = 50,
    min_island_fraction: float = 0.002,
    area_eps: float | None = 1e-12,
) -> MeshArrays:
    """Degenerate and duplicate faces, non-manifold edges and small islands removed.

    area_eps=None keeps zero-area faces (only faces with a repeated corner go), for closed
    meshes where dropping a sliver would open a hole.
    """
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    removed = {}
    drop = degenerate_faces(vertices, faces, area_eps)
    removed["degenerate"] = int(drop.sum())
    faces = faces[~drop]
    drop = duplicate_faces(faces)
    removed["duplicate"] = int(drop.sum())
    faces = faces[~drop]
    drop = nonmanifold_faces(vertices, faces)
    removed["nonmanifold"] = int(drop.sum())
    faces = faces[~drop]
    drop = small_islands(faces, len(vertices), min_faces=min_island_faces, min_fraction=min_island_fraction)
    removed["islands"] = int(drop.sum())
    faces = faces[~drop]
    result = compact(vertices, faces, attributes)
    result.removed = removed
    return result


def decimate(
    vertices: np.ndarray,
    faces: np.ndarray,
    target_faces: int,
    attributes: dict[str, np.ndarray] | None = None,
    *,
    aggressiveness: float = 7.0,
) -> MeshArrays:
    """Quadric decimation (fast-simplification) to about `target_faces` faces.

    The collapse history is replayed to know which input vertices merged into each output
    vertex; each output vertex takes the attributes (UV, label, ...) of the nearest of its merged
    input vertices, so discrete attributes stay valid and UVs stay on the texture they index.
    """
    import fast_simplification

    faces = np.asarray(faces, np.int64)
    if target_faces >= len(faces):
        return compact(np.asarray(vertices), faces, attributes)
    points = np.asarray(vertices, np.float64)
    _, _, collapses = fast_simplification.simplify(
        points, faces, target_count=int(target_faces), agg=aggressiveness, return_collapses=True
    )
    new_points, new_faces, mapping = fast_simplification.replay_simplification(points, faces, collapses)
    mapping = np.asarray(mapping, np.int64)
    new_faces = np.asarray(new_faces, np.int64)
    distance = np.linalg.norm(points - new_points[mapping], axis=1)
    order = np.lexsort((distance, mapping))
    group_first = np.r_[True, np.diff(mapping[order]) != 0]
    representative = np.empty(len(new_points), np.int64)
    representative[mapping[order][group_first]] = order[group_first]
    attributes = {k: np.asarray(v)[representative] for k, v in (attributes or {}).items()}
    out = compact(new_points.astype(np.asarray(vertices).dtype), new_faces, attributes, representative)
    drop = degenerate_faces(out.vertices, out.faces, area_eps=None)
    if drop.any():
        out = compact(out.vertices, out.faces[~drop], out.attributes, out.source_vertex)
    return out


def fill_holes(vertices: np.ndarray, faces: np.ndarray, *, max_edges: int = 200) -> tuple[np.ndarray, np.ndarray, int]:
    """Close the small holes of a nearly closed surface: one vertex at each hole's centre, a fan.

    A marching-cubes solid may carry a few folds (two faces on the same corners) or non-manifold
    edges; removing them leaves holes of a few edges that this closes. Holes are the loops of
    boundary edges (used by one face), walked along the faces' own half-edges; loops longer than
    `max_edges` (a real opening) stay open. Each fan is wound against the faces along its loop,
    so it continues their orientation.
    Returns (vertices, faces, holes filled).
    """
    faces = np.asarray(faces, np.int64)
    census = edge_census(faces)
    on_one = census.counts[census.edge] == 1
    boundary = np.stack([census.a[on_one], census.b[on_one]], axis=1)  # in the faces' (0 1), (1 2), (2 0) order
    if len(boundary) == 0:
        return vertices, faces, 0
    # walk the boundary half-edges (as the faces run them) edge by edge, so two holes touching
    # at a vertex come out as two loops
    outgoing: dict[int, list[int]] = {}
    for a, b in boundary:
        outgoing.setdefault(int(a), []).append(int(b))
    new_vertices, new_faces, loops = [], [], []
    for start in list(outgoing):
        while outgoing.get(start):
            loop, current = [start], outgoing[start].pop()
            while current != start and outgoing.get(current) and len(loop) <= max_edges:
                loop.append(current)
                current = outgoing[current].pop()
            if current == start and len(loop) >= 3:
                loops.append(loop)
    loops += _undirected_loops(boundary, loops, max_edges)
    directed = {(int(a), int(b)) for a, b in boundary}
    for loop in loops:
        ring = np.asarray(loop, np.int64)
        if 2 * sum((int(a), int(b)) in directed for a, b in zip(ring, np.roll(ring, -1))) < len(ring):
            ring = ring[::-1]  # a rim whose faces disagree: wound as most of them run
        centre = len(vertices) + len(new_vertices)
        new_vertices.append(np.asarray(vertices, np.float64)[ring].mean(axis=0))
        # the faces walk the loop one way: the fan walks it the other
        new_faces.append(np.column_stack([np.roll(ring, -1), ring, np.full(len(ring), centre)]))
    if not new_faces:
        return vertices, faces, 0
    vertices = np.concatenate([np.asarray(vertices), np.asarray(new_vertices, np.asarray(vertices).dtype)])
    return vertices, np.concatenate([faces, *new_faces]), len(new_faces)


def _undirected_loops(boundary: np.ndarray, found: list, max_edges: int) -> list:
    """Loops of the boundary edges the directed walk left (a rim whose faces are wound both
    ways), followed as plain edges through vertices on exactly two of them."""
    used = {frozenset(pair) for loop in found for pair in zip(loop, loop[1:] + loop[:1])}
    neighbours: dict[int, list[int]] = {}
    for a, b in boundary:
        if frozenset((int(a), int(b))) not in used:
            neighbours.setdefault(int(a), []).append(int(b))
            neighbours.setdefault(int(b), []).append(int(a))
    loops, seen = [], set()
    for start, ends in neighbours.items():
        if start in seen or len(ends) != 2:
            continue
        loop, previous, current = [start], start, ends[0]
        seen.add(start)
        while current != start and current not in seen and len(neighbours[current]) == 2 and len(loop) <= max_edges:
            seen.add(current)
            loop.append(current)
            a, b = neighbours[current]
            previous, current = current, (b if a == previous else a)
        if current == start and len(loop) >= 3:
            loops.append(loop)
    return loops


def subdivide(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each triangle into four at its edge midpoints. A midpoint is shared by the faces of its
    edge, so a closed mesh stays closed and keeps its orientation.
    Returns (vertices, faces, edge_ends: the two vertices each new vertex lies between)."""
    v = np.asarray(vertices)
    f = np.asarray(faces, np.int64)
    edges = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    _, first, inverse = np.unique(_pair_key(edges[:, 0], edges[:, 1]), return_index=True, return_inverse=True)
    ends = edges[first]
    middle = len(v) + inverse.reshape(-1, 3)  # per face: the midpoints of (0 1), (1 2), (2 0)
    out_vertices = np.concatenate([v, 0.5 * (v[ends[:, 0]] + v[ends[:, 1]])]).astype(v.dtype)
    c0, c1, c2 = f.T
    m01, m12, m20 = middle.T
    out_faces = np.stack([
        np.column_stack([c0, m01, m20]),
        np.column_stack([m01, c1, m12]),
        np.column_stack([m20, m12, c2]),
        np.column_stack([m01, m12, m20]),
    ], axis=1).reshape(-1, 3)
    return out_vertices, out_faces, ends


# weld_short_edges: the solid's edges shorter than this are collapsed. Marching cubes (Poisson)
# leaves a few hundred edges of a few micrometres where the surface passes next to a grid corner;
# once the avatar's positions are float32 (or an artist merges by distance, Blender's default
# 0.1 mm) the two ends of such an edge become one vertex, its two faces become slivers with a
# repeated corner and the closed mesh reads as open (engine.synthetic person 2 at 288 x 384 with
# crops, fused: a 0.025 deg / 0.25 mm registration change left two edges of four faces at the head)
WELD_M = 1e-4


def weld_short_edges(vertices, faces, labels=None, min_length: float = WELD_M, rounds: int = 8):
    """A closed mesh's edges shorter than min_length collapsed to their midpoints; (vertices
    float64, faces, labels or None, collapsed count). Per round, each vertex is in at most one
    collapse (the shortest edge it is on) and an edge is collapsed only when its ends share
    exactly two neighbours (the corners of its two faces: the link condition), so the mesh stays
    closed and manifold; its two faces go."""
    v = np.asarray(vertices, np.float64).copy()
    f = np.asarray(faces, np.int64)
    n = len(v)
    collapsed = 0
    for _ in range(rounds):
        key = np.unique(_pair_key(f.ravel(), f[:, [1, 2, 0]].ravel()))
        edges = np.stack([key >> 31, key & ((np.int64(1) << 31) - 1)], axis=1)
        length = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
        short = np.flatnonzero(length < min_length)
        if not len(short):
            break
        short = short[np.argsort(length[short], kind="stable")]
        first = np.full(n, len(short))  # per vertex: its shortest short edge (rank)
        rank = np.arange(len(short))
        np.minimum.at(first, edges[short, 0], rank)
        np.minimum.at(first, edges[short, 1], rank)
        pick = edges[short[(first[edges[short, 0]] == rank) & (first[edges[short, 1]] == rank)]]
        adjacency = sp.csr_matrix((np.ones(2 * len(edges)), (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])),
                                  shape=(n, n))
        shared = np.asarray(adjacency[pick[:, 0]].multiply(adjacency[pick[:, 1]]).sum(axis=1)).ravel()
        pick = pick[shared == 2]
        if not len(pick):
            break
        v[pick[:, 0]] = 0.5 * (v[pick[:, 0]] + v[pick[:, 1]])
        remap = np.arange(n)
        remap[pick[:, 1]] = pick[:, 0]
        f = remap[f]
        f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
        collapsed += len(pick)
    if not collapsed:
        return v, np.asarray(faces), labels, 0
    out = compact(v, f, None if labels is None else {"labels": np.asarray(labels)})
    return out.vertices, out.faces.astype(np.asarray(faces).dtype), out.attributes.get("labels"), int(collapsed)
