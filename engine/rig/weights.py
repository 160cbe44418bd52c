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

Speed (300k vertices in well under a second or two): float32 throughout; a vertex's candidate
bones depend only on its (label, surface-nearest bone) pair, so vertices are grouped by that pair
and distances are computed only to each group's few candidates; smoothing runs per block of
bones over just the vertices those bones may reach (finger and palm bones, two thirds of a
Rigify skeleton, live on the hands only), which gives exactly the dense result at a fraction
of the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from engine.rig.joints import (APPAREL, FACE_NECK, HAIR, LOWER_CLOTHING, MOUTH, N_CLASSES, SIDE_LABELS,
                               TORSO, UPPER_CLOTHING)

MAX_INFLUENCES = 4
SMOOTH_ITERATIONS = 3
# a trunk vertex (torso skin, the shirt) follows an arm bone only inside that arm's tube, this
# share of the body height from the bone's segment (an adult's sleeved upper arm is 5-6 cm
# thick): the sleeve does, the flank beside an arm lying on the trunk does not (the closed solid
# unites them, so the surface distance that keeps the flank on the spine is short; shared
# person_101 / person_102 raised their shirt's flank as a wing with the arm, bench/render_posed.py)
ARM_TUBE = 0.04
ARM_PARTS = ("upper_arm", "forearm")
# at the arm's root (the upper arm's first ARM_ROOT of its length from the shoulder) the tube is
# ARM_ROOT_TUBE times wider: a sleeve flares at the armpit, and the 4 % tube cut the demo's sleeve
# there, so its underside stayed on the trunk as a sheet when the arm was raised
# (bench/bench_posed_stretch.py)
ARM_ROOT = 0.35
ARM_ROOT_TUBE = 1.25
ALL = "*"
# an arm's chain of bones: what its side of a parted solid follows (keep_parted_sides)
ARM_CHAIN = ("upper_arm", "forearm", "hand", "palm", "finger")


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
    return np.sqrt(segment_distance2(points, a, b))


def segment_distance2(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """N x B squared distances from points to segments a->b, as three small matrix products
    (no N x B x 3 temporaries); stays in the points' float type."""
    dtype = np.result_type(points.dtype, np.float32)
    p = np.asarray(points, dtype)
    a = np.asarray(a, dtype)
    ab = np.asarray(b, dtype) - a
    ab2 = np.maximum((ab * ab).sum(1), 1e-12)
    rel_ab = p @ ab.T - (a * ab).sum(1)                          # (p - a) . ab
    rel2 = (p * p).sum(1)[:, None] - 2 * (p @ a.T) + (a * a).sum(1)  # |p - a|^2
    t = np.clip(rel_ab / ab2, 0.0, 1.0)
    return np.maximum(rel2 - t * (2 * rel_ab - t * ab2), 0.0)


def mesh_graph(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """Symmetric V x V matrix of edge lengths (float64, as Dijkstra wants), each undirected edge
    once per direction. Built by a counting sort (COO -> CSR), not a global sort of edge keys."""
    V = len(vertices)
    f = np.asarray(faces, np.int32 if V < 2 ** 31 else np.int64).reshape(-1, 3)
    i, j = f.reshape(-1), f[:, [1, 2, 0]].reshape(-1)
    keep = i != j                                                # degenerate faces add no edge
    i, j = i[keep], j[keep]
    graph = sp.csr_matrix((np.ones(2 * len(i), np.float32), (np.concatenate([i, j]), np.concatenate([j, i]))),
                          shape=(V, V))
    graph.sum_duplicates()
    rows = np.repeat(np.arange(V, dtype=graph.indices.dtype), np.diff(graph.indptr))
    v32 = np.asarray(vertices, np.float32)
    graph.data = np.sqrt(((v32[rows] - v32[graph.indices]) ** 2).sum(1)).astype(np.float64) + 1e-9
    return graph


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
    # one multi-source search; the graph is symmetric, so the directed search needs no transpose
    _, _, sources = dijkstra(graph, directed=True, indices=seeds, min_only=True,
                             return_predecessors=True)
    nearest = np.full(len(vertices), -1)
    reached = sources >= 0
    lookup = np.full(len(vertices), -1)
    lookup[seeds] = seed_bone
    nearest[reached] = lookup[sources[reached]]
    return nearest


def _candidates(labels, nearest, allowed, adj) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate bones per vertex group: (group of each vertex (V), group candidate lists G x C
    padded with -1, group label). A group is one (label, surface-nearest bone) pair."""
    B = allowed.shape[1]
    key = labels * (B + 1) + (nearest + 1)
    group_key, group_of = np.unique(key, return_inverse=True)
    g_label, g_near = group_key // (B + 1), group_key % (B + 1) - 1
    may = allowed[g_label]
    near = g_near >= 0
    may[near] &= adj[g_near[near]]
    stranded = ~may.any(1)
    may[stranded] = allowed[g_label[stranded]]                  # never leave a vertex without bones
    return group_of.reshape(-1), _padded_lists(may).astype(np.int32), g_label


def _blend_by_distance(vertices, group_of, group_cand, heads, tails, softening2) -> np.ndarray:
    """V x C inverse-fourth-power distance weights to each vertex's candidates, rows summing to 1.
    One small dense block per group: no padding, no per-vertex gathers of bone ends."""
    V, C = len(vertices), group_cand.shape[1]
    out = np.zeros((V, C), np.float32)
    order = np.argsort(group_of, kind="stable")
    bounds = np.searchsorted(group_of[order], np.arange(len(group_cand) + 1))
    for g, bones in enumerate(group_cand):   # a few hundred groups, each vectorised over its vertices
        rows = order[bounds[g]:bounds[g + 1]]
        bones = bones[bones >= 0]
        if len(rows) == 0:
            continue
        w = 1.0 / (segment_distance2(vertices[rows], heads[bones], tails[bones]) + softening2) ** 2
        out[rows, :len(bones)] = w / w.sum(1, keepdims=True)
    return out


def _trunk_off_the_arms(weights, cand, labels, vertices, heads, tails, parts, tube: float) -> np.ndarray:
    """weights with the arm bones' (ARM_PARTS) share taken from trunk vertices (Torso,
    Upper_Clothing) farther than `tube` from those bones' segments (ARM_ROOT_TUBE times `tube` at
    the upper arm's root), rows renormalised; a row left without weight keeps its own. The bones
    stay candidates, so the smoothing blends the tube's edge."""
    arm = np.isin(np.asarray(parts), ARM_PARTS)
    trunk = np.isin(labels, (TORSO, UPPER_CLOTHING))
    slot = (cand >= 0) & arm[np.maximum(cand, 0)] & trunk[:, None]
    rows, cols = np.nonzero(slot)
    if not len(rows):
        return weights
    # distances from the trunk's vertices to the arm bones only (a few columns)
    arm_bones, trunk_rows = np.flatnonzero(arm), np.flatnonzero(trunk)
    points = vertices[trunk_rows].astype(np.float32)
    a, b = heads[arm_bones].astype(np.float32), tails[arm_bones].astype(np.float32)
    d2 = segment_distance2(points, a, b)
    ab = b - a
    along = (points @ ab.T - (a * ab).sum(1)) / np.maximum((ab * ab).sum(1), 1e-12)   # 0 head, 1 tail
    root = (np.asarray(parts)[arm_bones] == "upper_arm") & (along < ARM_ROOT)
    limit2 = np.where(root, (ARM_ROOT_TUBE * tube) ** 2, tube * tube)
    position, column = np.full(len(labels), -1), np.full(len(arm), -1)
    position[trunk_rows], column[arm_bones] = np.arange(len(trunk_rows)), np.arange(len(arm_bones))
    at = position[rows], column[cand[rows, cols]]
    outside = d2[at] > limit2[at]
    out = weights.copy()
    out[rows[outside], cols[outside]] = 0.0
    total = out.sum(1, keepdims=True)
    kept = total[:, 0] > 0
    out[kept] /= total[kept]
    out[~kept] = weights[~kept]
    return out


def _smoothing_blocks(cand: np.ndarray, B: int) -> list[np.ndarray]:
    """Split the bones in two blocks so that smoothing costs least: bones reaching few vertices
    (fingers, palms, face) are smoothed over just the vertices they reach.

    Cost of a block ~ (vertices it spans) x (its bones). Bones sorted by how many vertices may
    follow them; the union of the k smallest spans the vertices whose smallest-ranked candidate
    is below k, so every split is priced from one cumulative count."""
    present = cand >= 0
    support = np.bincount(cand[present], minlength=B)
    order = np.argsort(support, kind="stable")
    rank = np.empty(B, np.int64)
    rank[order] = np.arange(B)
    vertex_min_rank = np.where(present, rank[np.maximum(cand, 0)], B).min(1)
    spans = np.cumsum(np.bincount(vertex_min_rank, minlength=B + 1))[:B]   # |union of k+1 smallest|
    k = np.arange(1, B + 1)
    cost = spans * k + len(cand) * (B - k)
    split = int(k[np.argmin(cost)]) if cost.min() < len(cand) * B else 0
    return [b for b in (order[:split], order[split:]) if len(b)]


def _smooth(weights: np.ndarray, cand: np.ndarray, adjacency: sp.csr_matrix, B: int, iterations: int,
            progress=None) -> np.ndarray:
    """`iterations` rounds of averaging each bone's weight over a vertex and its neighbours, the
    weight forced to zero wherever that bone is not a candidate (so no round carries a bone
    across the body-part rules). Same result as doing it on a dense V x B array, block by block."""
    V, C = cand.shape
    inv_count = (1.0 / (np.diff(adjacency.indptr) + 1.0)).astype(np.float32)
    blocks = _smoothing_blocks(cand, B)
    block_of = np.empty(B, np.int32)
    column = np.empty(B, np.int32)
    for n, bones in enumerate(blocks):
        block_of[bones] = n
        column[bones] = np.arange(len(bones))
    slots = np.flatnonzero(cand.reshape(-1) >= 0)          # every (vertex, candidate) pair, flat
    slot_bone = cand.reshape(-1)[slots]
    slot_block = block_of[slot_bone]
    out = weights.copy()
    flat_out = out.reshape(-1)
    for n, bones in enumerate(blocks):
        mine = slots[slot_block == n] if len(blocks) > 1 else slots
        slot_v = mine // C
        rows = np.flatnonzero(np.bincount(slot_v, minlength=V))
        position = np.full(V, -1, np.int64)
        position[rows] = np.arange(len(rows))
        at = position[slot_v] * len(bones) + column[cand.reshape(-1)[mine]]   # flat index in X
        X = np.zeros(len(rows) * len(bones), np.float32)
        X[at] = weights.reshape(-1)[mine]
        keep = np.zeros(X.shape, bool)
        keep[at] = True
        X, keep = X.reshape(len(rows), -1), keep.reshape(len(rows), -1)
        # rows outside the block hold zeros in its columns, so the sub-graph sums are exact
        A = adjacency if len(rows) == V else adjacency[rows][:, rows]
        scale = inv_count[rows][:, None]
        for _ in range(iterations):
            X = A @ X + X            # neighbours and the vertex itself ...
            X *= scale               # ... averaged
            X *= keep
        flat_out[mine] = X.reshape(-1)[at]
        if progress:
            progress("weights", 0.6 + 0.3 * (n + 1) / len(blocks), "smoothing")
    return out


def compute_weights(vertices: np.ndarray, faces: np.ndarray, vertex_labels: np.ndarray | None,
                    heads: np.ndarray, tails: np.ndarray, parents: np.ndarray, parts: list[str],
                    sides: list[str], *, height: float = 1.7, parted: PartedArms | None = None,
                    progress: Callable[[str, float, str], None] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(V x 4 uint16 bone indices, V x 4 float32 weights) over the given (deforming) bones.
    parted: the arms the solid was parted from what they touched (keep_parted_sides)."""
    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces).reshape(-1, 3)
    V, B = len(vertices), len(heads)
    heads = np.asarray(heads, np.float64)
    tails = np.asarray(tails, np.float64)
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

    if progress:
        progress("weights", 0.4, "blending")
    group_of, group_cand, _ = _candidates(labels, nearest, allowed, adj)
    softening2 = np.float32((0.01 * height) ** 2)
    weights = _blend_by_distance(vertices, group_of, group_cand, heads.astype(np.float32),
                                 tails.astype(np.float32), softening2)
    cand = group_cand[group_of]                                        # V x C, -1 padded
    weights = _trunk_off_the_arms(weights, cand, labels, vertices, heads, tails, parts, ARM_TUBE * height)
    if len(faces) and SMOOTH_ITERATIONS:
        adjacency = sp.csr_matrix((np.ones(graph.nnz, np.float32), graph.indices, graph.indptr), shape=(V, V))
        weights = _smooth(weights, cand, adjacency, B, SMOOTH_ITERATIONS, progress)
    bone, w = _top_influences(weights, cand, vertices, heads, tails, progress)
    if parted is not None:
        bone, w = keep_parted_sides(bone, w, vertices, heads, tails, parts, sides, parted)
    return bone, w


@dataclass
class PartedArms:
    """Where the closed solid was cut between an arm and what it touched
    (engine.geometry.arm_parting.arm_sides): V x A arrays, a column per parted arm, and each
    arm's side."""

    inside: np.ndarray   # bool: the vertex lies in that arm's tube past its root: the arm's side
    barred: np.ndarray   # 0-1: on the other side, how much of that arm's weight it loses
    sides: list[str]     # "L" / "R" per column


def keep_parted_sides(bone, w, vertices, heads, tails, parts, sides, parted: PartedArms):
    """(bone, w) with the cut kept: a vertex on an arm's side follows that arm's chain (ARM_CHAIN
    bones of its side) alone, a barred one loses its share of it (parted.barred, fading in past
    the shoulder); a vertex left without weight follows the nearest bone it may. Only the rows on
    either side change: renormalised, the largest MAX_INFLUENCES kept, as _top_influences."""
    B = len(heads)
    parts, sides = np.asarray(parts), np.asarray(sides)
    # a barred row changes only where it follows that arm's chain (most of the body lies past a
    # hanging arm's root and follows none of it)
    chains = [np.isin(parts, ARM_CHAIN) & (sides == side) for side in parted.sides]
    follows = np.zeros(len(bone), bool)
    for k, chain in enumerate(chains):
        follows |= (parted.barred[:, k] > 0) & (chain[bone.astype(np.int64)] & (w > 0)).any(1)
    rows = np.flatnonzero(parted.inside.any(1) | follows)
    if not len(rows):
        return bone, w
    dense = np.zeros((len(rows), B), np.float32)
    np.add.at(dense, (np.repeat(np.arange(len(rows)), bone.shape[1]), bone[rows].ravel().astype(np.int64)), w[rows].ravel())
    for k, chain in enumerate(chains):
        barred = np.flatnonzero(parted.barred[rows, k] > 0)
        dense[np.ix_(barred, np.flatnonzero(chain))] *= (1.0 - parted.barred[rows[barred], k])[:, None].astype(np.float32)
        inside = np.flatnonzero(parted.inside[rows, k])
        dense[np.ix_(inside, np.flatnonzero(~chain))] = 0.0
        for at, allowed in ((barred, ~chain), (inside, chain)):
            empty = at[dense[at].sum(1) <= 0]
            columns = np.flatnonzero(allowed)
            if len(empty) and len(columns):
                d2 = segment_distance2(vertices[rows[empty]], heads[columns], tails[columns])
                dense[empty, columns[d2.argmin(1)]] = 1.0
    k = min(MAX_INFLUENCES, B)
    top = np.argsort(-dense, axis=1, kind="stable")[:, :k]
    top_w = np.take_along_axis(dense, top, axis=1)
    top_w = (top_w / np.maximum(top_w.sum(1, keepdims=True), 1e-12)).astype(np.float32)
    top = np.where(top_w > 0, top, 0)
    if k < MAX_INFLUENCES:
        top = np.pad(top, ((0, 0), (0, MAX_INFLUENCES - k)))
        top_w = np.pad(top_w, ((0, 0), (0, MAX_INFLUENCES - k)))
    bone, w = bone.copy(), w.copy()
    bone[rows], w[rows] = top.astype(bone.dtype), top_w
    return bone, w


def _top_influences(weights, cand, vertices, heads, tails, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """The MAX_INFLUENCES largest weights per vertex, sorted, normalised (V x 4, zero padded)."""
    V, C = weights.shape
    k = min(MAX_INFLUENCES, C)
    top = np.argpartition(-weights, k - 1, axis=1)[:, :k] if C > k else np.tile(np.arange(C), (V, 1))
    w = np.take_along_axis(weights, top, axis=1)
    order = np.argsort(-w, axis=1)
    top, w = np.take_along_axis(top, order, 1), np.take_along_axis(w, order, 1)
    bone = np.take_along_axis(cand, top, axis=1)
    total = w.sum(1, keepdims=True)
    lost = total[:, 0] <= 0
    if lost.any():   # only possible for a vertex no bone may take: give it its nearest bone
        d = segment_distance2(vertices[lost], heads, tails)
        bone[lost] = 0
        bone[lost, 0] = d.argmin(1)
        w[lost] = 0
        w[lost, 0] = 1
        total = w.sum(1, keepdims=True)
    w = (w / total).astype(np.float32)
    bone = np.where(w > 0, bone, 0)
    if k < MAX_INFLUENCES:
        pad = MAX_INFLUENCES - k
        bone = np.pad(bone, ((0, 0), (0, pad)))
        w = np.pad(w, ((0, 0), (0, pad)))
    if progress:
        progress("weights", 1.0, "done")
    return bone.astype(np.uint16), w
