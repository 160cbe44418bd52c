"""Skin-weight building blocks against plain reference computations (the fast paths must give
the same numbers as the obvious dense ones)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from engine.rig import weights as W


def grid_mesh(n: int = 30, seed: int = 0):
    """An n x n vertex sheet, slightly jittered, two triangles per cell."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    v = np.stack([x.ravel(), y.ravel(), rng.normal(0, 0.05, n * n)], 1) * 0.01
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    return v, f


def test_segment_distances_match_the_direct_formula():
    rng = np.random.default_rng(1)
    p = rng.normal(0, 0.5, (200, 3))
    a, b = rng.normal(0, 0.5, (7, 3)), rng.normal(0, 0.5, (7, 3))
    b[3] = a[3]                                     # a degenerate (zero-length) segment
    ab = b - a
    t = np.clip(((p[:, None] - a) * ab).sum(2) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
    direct = np.linalg.norm(p[:, None] - (a + t[..., None] * ab), axis=2)
    assert np.allclose(W.point_segment_distance(p, a, b), direct, atol=1e-9)
    f32 = np.sqrt(W.segment_distance2(p.astype(np.float32), a.astype(np.float32), b.astype(np.float32)))
    assert f32.dtype == np.float32 and np.abs(f32 - direct).max() < 2e-3


def test_mesh_graph_has_each_edge_once_with_its_length():
    v, f = grid_mesh(12)
    f = np.concatenate([f, [[5, 5, 6]]])            # a degenerate face adds no self edge
    g = W.mesh_graph(v, f)
    edges = {tuple(sorted(e)) for tri in f for e in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0]))
             if e[0] != e[1]}
    coo = g.tocoo()
    got = {(int(r), int(c)) for r, c in zip(coo.row, coo.col) if r < c}
    assert got == edges and g.nnz == 2 * len(edges)
    assert np.allclose(coo.data, np.linalg.norm(v[coo.row] - v[coo.col], axis=1), atol=1e-6)
    assert abs(g - g.T).max() == 0


def test_block_smoothing_equals_dense_masked_averaging():
    v, f = grid_mesh(30)
    V, B, C = len(v), 9, 4
    rng = np.random.default_rng(2)
    # candidates: bones 0-5 anywhere, bones 6-8 only on a corner patch (like fingers on a hand)
    cand = np.full((V, C), -1, np.int32)
    common = np.stack([rng.choice(6, 3, replace=False) for _ in range(V)])
    cand[:, :3] = common
    corner = (v[:, 0] < 0.08) & (v[:, 1] < 0.08)
    cand[corner, 3] = rng.integers(6, 9, corner.sum())
    weights = np.where(cand >= 0, rng.random((V, C)), 0).astype(np.float32)
    g = W.mesh_graph(v, f)
    adjacency = sp.csr_matrix((np.ones(g.nnz, np.float32), g.indices, g.indptr), shape=(V, V))
    assert len(W._smoothing_blocks(cand, B)) == 2      # the corner bones get their own block

    dense = np.zeros((V, B))
    may = np.zeros((V, B), bool)
    rows = np.repeat(np.arange(V), C)[cand.ravel() >= 0]
    dense[rows, cand.ravel()[cand.ravel() >= 0]] = weights.ravel()[cand.ravel() >= 0]
    may[rows, cand.ravel()[cand.ravel() >= 0]] = True
    avg = adjacency.toarray() + np.eye(V)
    avg /= avg.sum(1, keepdims=True)
    for _ in range(3):
        dense = (avg @ dense) * may
    want = np.where(cand >= 0, np.take_along_axis(dense, np.maximum(cand, 0), 1), 0)
    got = W._smooth(weights, cand, adjacency, B, 3)
    assert np.abs(got - want).max() < 1e-5


def test_body_part_rules_hold_on_a_two_limb_mesh():
    """Two parallel tubes labelled arm and leg lying next to each other: no cross-over weights."""
    from engine.rig.joints import L_LOWER_ARM, L_LOWER_LEG
    import trimesh
    arm = trimesh.creation.cylinder(radius=0.04, height=0.5, sections=24)
    arm = arm.subdivide().subdivide()
    leg = arm.copy()
    leg.apply_translation([0.085, 0, 0])            # 5 mm gap between the surfaces
    v = np.concatenate([arm.vertices, leg.vertices])
    f = np.concatenate([arm.faces, leg.faces + len(arm.vertices)])
    labels = np.r_[np.full(len(arm.vertices), L_LOWER_ARM), np.full(len(leg.vertices), L_LOWER_LEG)]
    heads = np.array([[0, 0, -0.25], [0.085, 0, -0.25]])
    tails = np.array([[0, 0, 0.25], [0.085, 0, 0.25]])
    wj, w = W.compute_weights(v, f, labels, heads, tails, np.array([-1, -1]), ["forearm", "shin"], ["L", "L"])
    assert wj.shape == (len(v), 4) and np.allclose(w.sum(1), 1, atol=1e-6)
    main = wj[:, 0]
    assert (main[labels == L_LOWER_ARM] == 0).all() and (main[labels == L_LOWER_LEG] == 1).all()
    assert (w[:, 1:] == 0).all()                    # each vertex follows its own limb only


def _trunk_and_sleeve():
    """A shirt's trunk (cylinder r 15 cm along z) with a sleeved upper arm hanging 5 mm beside it,
    both labelled Upper_Clothing, and their bones: spine on the trunk's axis, the arm's on its own."""
    import trimesh

    from engine.rig.joints import UPPER_CLOTHING

    def fine(mesh):  # edges under 1.5 cm, as a built avatar's (a cylinder's sides are one quad tall)
        return trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=0.015)

    trunk_v, trunk_f = fine(trimesh.creation.cylinder(radius=0.15, height=0.6, sections=48))
    sleeve_v, sleeve_f = fine(trimesh.creation.cylinder(radius=0.045, height=0.3, sections=24))
    sleeve_v = sleeve_v + [0.2, 0.0, 0.15]
    v = np.concatenate([trunk_v, sleeve_v])
    f = np.concatenate([trunk_f, sleeve_f + len(trunk_v)])
    labels = np.full(len(v), UPPER_CLOTHING)
    heads = np.array([[0.0, 0.0, -0.3], [0.2, 0.0, 0.3]])
    tails = np.array([[0.0, 0.0, 0.3], [0.2, 0.0, 0.0]])
    on_trunk = np.r_[np.ones(len(trunk_v), bool), np.zeros(len(sleeve_v), bool)]
    return v, f, labels, heads, tails, on_trunk


def _arm_weight(wj, w, arm: int) -> np.ndarray:
    return np.where(wj == arm, w, 0.0).sum(1)


def test_the_shirt_beside_a_hanging_arm_follows_the_spine_and_the_sleeve_the_arm(monkeypatch):
    """A trunk vertex follows an arm bone only within ARM_TUBE of it: the flank beside an arm lying
    on the trunk stayed with the raised arm (a wing from armpit to hip in a posed render)."""
    v, f, labels, heads, tails, on_trunk = _trunk_and_sleeve()
    args = (v, f, labels, heads, tails, np.array([-1, 0]), ["spine", "upper_arm"], ["", "L"])
    arm_distance = W.point_segment_distance(v, heads[1:], tails[1:])[:, 0]
    # the trunk beyond the arm's tube (wider at its root) and the smoothing's three 1.5 cm rings
    away = on_trunk & (arm_distance > W.ARM_ROOT_TUBE * W.ARM_TUBE * 1.7 + 0.045)
    wj, w = W.compute_weights(*args)
    arm = _arm_weight(wj, w, 1)
    assert away.sum() > 100
    assert arm[away].max() == 0.0
    assert np.median(arm[~on_trunk]) > 0.9           # the sleeve follows its arm
    # without the tube the same flank follows the arm
    monkeypatch.setattr(W, "ARM_TUBE", 10.0)
    wj, w = W.compute_weights(*args)
    assert _arm_weight(wj, w, 1)[away].max() > 0.3


def test_the_tube_is_wider_at_the_arms_root():
    """Near the shoulder (ARM_ROOT of the upper arm) a trunk vertex follows the arm within
    ARM_ROOT_TUBE times the tube: a sleeve flaring at the armpit keeps its underside on the arm;
    at the same distance farther down the arm the flank does not."""
    from engine.rig.joints import UPPER_CLOTHING

    tube = 0.068
    heads = np.array([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0]])            # spine, upper arm (hanging)
    tails = np.array([[0.0, 0.5, 0.0], [0.2, -0.3, 0.0]])
    gap = 0.5 * (1 + W.ARM_ROOT_TUBE) * tube                          # between the two tubes
    vertices = np.array([[0.2 - gap, -0.3 * 0.5 * W.ARM_ROOT, 0.0],   # beside the root
                         [0.2 - gap, -0.3 * 0.7, 0.0]], np.float32)   # beside the arm's middle
    labels = np.full(2, UPPER_CLOTHING)
    cand = np.array([[0, 1], [0, 1]])
    weights = np.full((2, 2), 0.5, np.float32)
    out = W._trunk_off_the_arms(weights, cand, labels, vertices, heads, tails, ["spine", "upper_arm"], tube)
    assert out[0, 1] == 0.5 and out[1, 1] == 0.0
    assert np.allclose(out.sum(1), 1.0)
