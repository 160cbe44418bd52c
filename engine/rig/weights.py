"""Skin weights: every vertex gets up to four bones, chosen by body part and surface distance.

1. Body part: a vertex's segmentation label allows only bones of the parts that label can belong
   to (a left-arm vertex never follows a leg bone, a torso vertex never a hand).
2. Surface distance: one multi-source Dijkstra over the mesh's edge graph, seeded on the surface
   around every bone, gives each vertex the bone nearest along the surface. Only that bone and
   its neighbours in the hierarchy may influence the vertex, so a torso vertex next to a hanging
   arm (near in space, far along the surface) keeps following the spine.
3. Blending: among the allowed bones, inverse fourth power of the distance to each bone segment,
   a few rounds of averaging over mesh neighbours (smooth across joints and label borders),
   the label rule applied again, the four largest kept, normalised.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from engine.rig.joints import (APPAREL, FACE_NECK, HAIR, LOWER_CLOTHING, MOUTH, N_CLASSES, SIDE_LABELS,
                               TORSO, UPPER_CLOTHING)

MAX_INFLUENCES = 4
SMOOTH_ITERATIONS = 3
ALL = "*"


def _label_parts() -> dict[int, set[tuple[str, str]]]:
    """Which (part, side) bones each segmentation class may follow."""
    both = lambda *parts: {(p, s) for p in parts for s in "LR"}  # noqa: E731
    centre = lambda *parts: {(p, "") for p in parts}              # noqa: E731
    table: dict[int, set] = {
        APPAREL: {ALL},
        2: centre("head"),
        FACE_NECK: centre("neck", "head", "jaw", "chest"),
        HAIR: centre("head", "neck", "chest"),
        LOWER_CLOTHING: centre("pelvis", "spine") | both("thigh", "shin", "foot"),
        TORSO: centre("pelvis", "spine", "chest", "neck") | both("shoulder", "upper_arm", "thigh"),
        UPPER_CLOTHING: centre("pelvis", "spine", "chest", "neck") | both("shoulder", "upper_arm", "forearm"),
    }
    for m in MOUTH:
        table[m] = centre("head", "jaw")
    for s, lab in SIDE_LABELS.items():
        side = lambda *parts: {(p, s) for p in parts}  # noqa: E731
        table[lab["upper_arm"]] = side("shoulder", "upper_arm", "forearm") | centre("chest")
        table[lab["lower_arm"]] = side("upper_arm", "forearm", "hand")
        table[lab["hand"]] = side("forearm", "hand", "palm", "finger")
        table[lab["upper_leg"]] = side("thigh", "shin") | centre("pelvis", "spine")
        table[lab["lower_leg"]] = side("thigh", "shin", "foot")
        for foot in ("foot", "shoe", "sock"):
            table[lab[foot]] = side("shin", "foot", "toe")
    return table


def allowed_matrix(parts: list[str], sides: list[str]) -> np.ndarray:
    """(N_CLASSES + 1) x B bool: may a vertex of this class follow this bone? (last row: unknown)"""
    table = _label_parts()
    allowed = np.zeros((N_CLASSES + 1, len(parts)), bool)
    for label in range(N_CLASSES + 1):
        rule = table.get(label, {ALL})
        for b, (part, side) in enumerate(zip(parts, sides)):
            allowed[label, b] = ALL in rule or (part, side) in rule
    empty = ~allowed.any(1)
    allowed[empty] = True   # a class with none of its parts in this convention follows anything
    return allowed


def _padded_lists(mask: np.ndarray) -> np.ndarray:
    """Row-wise column indices of True entries of a V x B bool array, padded with -1."""
    counts = mask.sum(1)
    width = max(int(counts.max()), 1) if len(counts) else 1
    order = np.argsort(~mask, axis=1, kind="stable")[:, :width]
    return np.where(np.arange(width)[None, :] < counts[:, None], order, -1)


def point_segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """N x B distances from points (N x 3) to segments a->b (B x 3 each)."""
    ab = b - a
    denom = np.maximum((ab * ab).sum(1), 1e-12)
    t = np.clip(((points[:, None, :] - a[None]) * ab[None]).sum(2) / denom[None], 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None, :] - closest, axis=2)


def mesh_graph(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """Symmetric V x V matrix of edge lengths (each undirected edge once per direction)."""
    V = len(vertices)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e.sort(axis=1)
    key = np.unique(e[:, 0] * V + e[:, 1])
    a, b = key // V, key % V
    w = np.sqrt(((vertices[a] - vertices[b]) ** 2).sum(1)) + 1e-9
    rows = np.concatenate([a, b])
    cols = np.concatenate([b, a])
    return sp.csr_matrix((np.concatenate([w, w]), (rows, cols)), shape=(V, V))


def _surface_nearest_bone(vertices, graph, labels, heads, tails, allowed, radius) -> np.ndarray:
    """Index of the bone nearest each vertex along the surface (-1 where unreachable)."""
    tree = cKDTree(vertices)
    ts = np.linspace(0.1, 0.9, 5)
    samples = heads[:, None, :] + ts[None, :, None] * (tails - heads)[:, None, :]   # B x 5 x 3
    k = 16
    dist, nn = tree.query(samples.reshape(-1, 3), k=min(k, len(vertices)))
    nn = nn.reshape(len(heads), len(ts), -1)
    dist = dist.reshape(len(heads), len(ts), -1)
    bone = np.repeat(np.arange(len(heads)), len(ts) * nn.shape[2]).reshape(nn.shape)
    ok = allowed[labels[nn], bone] & (dist < 2.5 * radius[:, None, None])
    seeds, seed_bone = nn[ok], bone[ok]
    if len(seeds) == 0:
        return np.full(len(vertices), -1)
    seeds, first = np.unique(seeds, return_index=True)   # a vertex seeds one bone
    seed_bone = seed_bone[first]
    _, _, sources = dijkstra(graph, directed=False, indices=seeds, min_only=True,
                             return_predecessors=True)
    nearest = np.full(len(vertices), -1)
    reached = sources >= 0
    lookup = np.full(len(vertices), -1)
    lookup[seeds] = seed_bone
    nearest[reached] = lookup[sources[reached]]
    return nearest


def compute_weights(vertices: np.ndarray, faces: np.ndarray, vertex_labels: np.ndarray | None,
                    heads: np.ndarray, tails: np.ndarray, parents: np.ndarray, parts: list[str],
                    sides: list[str], *, height: float = 1.7,
                    progress: Callable[[str, float, str], None] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(V x 4 uint16 bone indices, V x 4 float32 weights) over the given (deforming) bones."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    V, B = len(vertices), len(heads)
    if vertex_labels is None:
        labels = np.full(V, N_CLASSES, np.int64)
    else:
        labels = np.asarray(vertex_labels).astype(np.int64)
        labels = np.where((labels >= 0) & (labels < N_CLASSES), labels, N_CLASSES)
    allowed = allowed_matrix(parts, sides)
    bone_len = np.linalg.norm(tails - heads, axis=1)
    radius = np.maximum(0.35 * bone_len, 0.06 * height)

    # hierarchy neighbourhood: a bone, its parent, children, grandparent and grandchildren
    adj = np.eye(B, dtype=bool)
    has_p = parents >= 0
    adj[np.flatnonzero(has_p), parents[has_p]] = True
    adj[parents[has_p], np.flatnonzero(has_p)] = True
    adj = adj | ((adj.astype(np.int32) @ adj.astype(np.int32)) > 0)

    if progress:
        progress("weights", 0.1, "surface distances")
    graph = mesh_graph(vertices, faces) if len(faces) else sp.csr_matrix((V, V))
    nearest = _surface_nearest_bone(vertices, graph, labels, heads, tails, allowed, radius)
    may = allowed[labels]                                              # V x B
    reach = nearest >= 0
    may[reach] &= adj[nearest[reach]]
    stranded = ~may.any(1)
    may[stranded] = allowed[labels[stranded]]                          # never leave a vertex without bones

    if progress:
        progress("weights", 0.4, "blending")
    # distances only to each vertex's candidate bones (a dozen of the ~60)
    cand = _padded_lists(may)                                          # V x C, -1 padded
    ok = cand >= 0
    c = np.where(ok, cand, 0)
    a, ab = heads[c], (tails - heads)[c]                               # V x C x 3
    rel = vertices[:, None, :] - a
    t = np.clip((rel * ab).sum(2) / np.maximum((ab * ab).sum(2), 1e-12), 0.0, 1.0)
    d2 = ((rel - t[..., None] * ab) ** 2).sum(2)
    w = np.where(ok, 1.0 / (d2 + (0.01 * height) ** 2) ** 2, 0.0)
    w /= np.maximum(w.sum(1, keepdims=True), 1e-30)
    dense = np.zeros((V, B + 1), np.float32)
    np.put_along_axis(dense, np.where(ok, cand, B), w.astype(np.float32), axis=1)
    dense = np.ascontiguousarray(dense[:, :B])

    if len(faces) and SMOOTH_ITERATIONS:
        avg = graph.copy()
        avg.data[:] = 1.0
        avg = avg + sp.identity(V, format="csr")
        avg = sp.diags(1.0 / np.asarray(avg.sum(1)).ravel()) @ avg
        avg = avg.astype(np.float32)
        for i in range(SMOOTH_ITERATIONS):
            dense = avg @ dense
            dense *= may                        # smoothing never carries a bone across the rules
            if progress:
                progress("weights", 0.5 + 0.4 * (i + 1) / SMOOTH_ITERATIONS, "smoothing")

    k = min(MAX_INFLUENCES, B)
    top = np.argpartition(-dense, k - 1, axis=1)[:, :k] if B > k else np.tile(np.arange(B), (V, 1))
    w = np.take_along_axis(dense, top, axis=1)
    order = np.argsort(-w, axis=1)
    top, w = np.take_along_axis(top, order, 1), np.take_along_axis(w, order, 1)
    total = w.sum(1, keepdims=True)
    lost = total[:, 0] <= 0
    if lost.any():   # only possible for a vertex no bone may take: give it its nearest bone
        d = point_segment_distance(vertices[lost], heads, tails)
        top[lost] = 0
        top[lost, 0] = d.argmin(1)
        w[lost] = 0
        w[lost, 0] = 1
        total = w.sum(1, keepdims=True)
    w = (w / total).astype(np.float32)
    top = np.where(w > 0, top, 0)
    if progress:
        progress("weights", 1.0, "done")
    return top.astype(np.uint16), w
