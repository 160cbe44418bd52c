"""The faster forms in the closed build's front and crop maps (issue 13) give what the plain numpy
forms they replace give: the same bools and classes exactly, the same sums (the same order on this
numpy; to float32 rounding stated here, CPUs may differ)."""

import numpy as np

from engine.geometry.detail import block_mean
from engine.geometry.grid_mesh import downsample_maps, finite_pixels
from engine.geometry.trust import _dot, _length


def _maps(seed=0, shape=(37, 50, 3)):
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=shape).astype(np.float32)
    maps.reshape(-1)[rng.choice(maps.size, maps.size // 9, replace=False)] = np.nan
    maps.reshape(-1)[rng.choice(maps.size, 20, replace=False)] = np.inf
    maps.reshape(-1)[rng.choice(maps.size, 20, replace=False)] = -np.inf
    return maps


def test_finite_pixels_is_isfinite_all():
    maps = _maps()
    assert np.array_equal(finite_pixels(maps), np.isfinite(maps).all(-1))
    assert np.array_equal(finite_pixels(maps[:, ::2, :2]), np.isfinite(maps[:, ::2, :2]).all(-1))


def test_dot_and_length_are_numpys():
    a, b = np.nan_to_num(_maps(1), posinf=0.0, neginf=0.0), _maps(2).astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf * 0 is NaN in both
        np.testing.assert_allclose(_dot(a, b), (a * b).sum(-1), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(_length(a), np.linalg.norm(a, axis=-1, keepdims=True), rtol=1e-6)
    assert _length(a).shape == a.shape[:2] + (1,)


def test_block_mean_is_the_blocks_mean():
    maps = _maps(3, (40, 48, 3))
    valid = np.isfinite(maps).all(-1)
    for f in (1, 2, 4):
        mean, fraction = block_mean(maps, valid, f)
        blocks = np.where(valid[..., None], maps, 0.0).reshape(40 // f, f, 48 // f, f, 3)
        count = valid.reshape(40 // f, f, 48 // f, f).sum((1, 3))
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = (blocks.sum((1, 3)) / count[..., None]).astype(np.float32)
        assert mean.dtype == np.float32 and mean.shape == expected.shape
        np.testing.assert_allclose(mean, expected, rtol=1e-6, atol=1e-7, equal_nan=True)
        assert np.array_equal(fraction, count / float(f * f))


def test_downsample_maps_averages_and_votes_as_before():
    rng = np.random.default_rng(4)
    H, W, factor = 45, 61, 4
    points = np.concatenate([rng.normal(size=(H, W, 2)), rng.uniform(2.0, 2.1, (H, W, 1))], -1).astype(np.float32)
    points[rng.random((H, W)) < 0.1] = np.nan
    normal = rng.normal(size=(H, W, 3)).astype(np.float32)
    mask = rng.random((H, W)) < 0.8
    seg = rng.choice(np.array([0, 3, 7, 20], np.uint8), (H, W))
    out_points, out_mask, out_normal, out_seg, _ = downsample_maps(factor, points, mask, normal, seg)
    # the plain forms: a block's average over its front layer's valid pixels, its most common class
    h, w = -(-H // factor), -(-W // factor)
    pad = ((0, h * factor - H), (0, w * factor - W))

    def blocks(a, fill):
        a = np.pad(a, pad + ((0, 0),) * (a.ndim - 2), constant_values=fill)
        return np.moveaxis(a.reshape(h, factor, w, factor, *a.shape[2:]), 2, 1).reshape(h, w, factor * factor, *a.shape[2:])

    valid = mask & np.isfinite(points).all(-1) & (points[..., 2] > 0) & np.isfinite(normal).all(-1)
    depth = blocks(np.where(valid, points[..., 2], np.inf), np.inf)
    use = blocks(valid, False) & (depth <= depth.min(axis=2, keepdims=True) * 1.02)
    denom = np.maximum(use.sum(axis=2), 1)[..., None]
    expected = (np.where(use[..., None], np.nan_to_num(blocks(points, 0.0)), 0.0).sum(axis=2) / denom).astype(np.float32)
    kept = out_mask
    assert kept.any()
    np.testing.assert_allclose(out_points[kept], expected[kept], rtol=1e-6)
    assert np.isnan(out_points[~kept]).all() and np.isnan(out_normal[~kept]).all()
    seg_blocks = blocks(seg, 0)
    classes, inverse = np.unique(seg_blocks, return_inverse=True)
    votes = np.zeros((h, w, classes.size), int)
    rows, cols, _ = np.nonzero(use)
    np.add.at(votes, (rows, cols, inverse.reshape(seg_blocks.shape)[use]), 1)
    assert np.array_equal(out_seg[kept], classes[votes.argmax(-1)][kept])
    assert not out_seg[~kept].any()


def test_jacobi_cg_is_scipys_cg():
    """normal_integration's own Jacobi-preconditioned CG loop gives scipy's cg's x and count."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import LinearOperator, cg

    from engine.geometry.normal_integration import _jacobi_cg

    rng = np.random.default_rng(5)
    n = 400
    i = np.arange(n - 1)
    off = sp.coo_matrix((-rng.uniform(0.1, 1.0, n - 1), (i, i + 1)), shape=(n, n))
    far = sp.coo_matrix((-rng.uniform(0.1, 1.0, n - 20), (np.arange(n - 20), np.arange(20, n))), shape=(n, n))
    lower = (off + far).tocsr()
    matrix = (lower + lower.T + sp.diags(-np.asarray((lower + lower.T).sum(1)).ravel() + rng.uniform(1e-3, 1e-2, n))).tocsr()
    rhs = rng.normal(size=n)
    for x0, rtol, maxiter in ((np.zeros(n), 1e-6, None), (rng.normal(size=n), 1e-3, None), (rng.normal(size=n), 1e-9, 7)):
        inverse_diag = 1.0 / matrix.diagonal()
        count = [0]
        expected, _ = cg(matrix, rhs, x0=x0, rtol=rtol, maxiter=maxiter, callback=lambda _: count.__setitem__(0, count[0] + 1),
                         M=LinearOperator(matrix.shape, matvec=lambda x: inverse_diag * x, dtype=np.float64))
        kept = x0.copy()
        got, iterations = _jacobi_cg(matrix, rhs, inverse_diag, x0, rtol=rtol, maxiter=maxiter)
        assert np.array_equal(x0, kept)  # x0 is not changed
        assert iterations == count[0] and iterations > 0
        assert np.array_equal(got, expected)


def test_depth_normals_are_the_cross_product_of_the_differences():
    """trust.depth_normals (channel by channel) against its interleaved numpy form: the same values."""
    from engine.geometry.trust import depth_normals

    rng = np.random.default_rng(6)
    H, W = 31, 45
    points = np.stack(np.meshgrid(np.linspace(-0.3, 0.3, W), np.linspace(-0.4, 0.4, H)) + [np.full((H, W), 2.0)], -1)
    points[..., 2] += 0.05 * rng.normal(size=(H, W))
    valid = rng.random((H, W)) > 0.25
    for maps in (points, points.astype(np.float32)):
        padded = np.full((H + 2, W + 2, 3), np.nan, np.float32)
        padded[1:-1, 1:-1][valid] = maps[valid]
        centre = padded[1:-1, 1:-1]

        def difference(after, before):
            d, forward = after - before, after - centre
            return np.where(np.isfinite(d), d, np.where(np.isfinite(forward), forward, centre - before))

        n = np.cross(difference(padded[2:, 1:-1], padded[:-2, 1:-1]), difference(padded[1:-1, 2:], padded[1:-1, :-2]))
        length = np.sqrt((n * n).sum(-1, keepdims=True))
        with np.errstate(invalid="ignore", divide="ignore"):
            n = n / length
        n = np.where(((n * centre).sum(-1) > 0)[..., None], -n, n)
        n[~valid | ~(length[..., 0] > 1e-12)] = np.nan
        got = depth_normals(maps, valid)
        assert got.dtype == np.float32 and np.isfinite(got).any()
        assert np.array_equal(got, n, equal_nan=True)


def test_face_cross_and_row_sums_are_numpys():
    """cleanup.face_cross / row_dots / row_lengths against np.cross, .sum(1), np.linalg.norm: the same values."""
    from engine.geometry.cleanup import face_cross, row_dots, row_lengths

    rng = np.random.default_rng(7)
    for dtype in (np.float64, np.float32):
        v = (rng.normal(size=(500, 3)) * rng.uniform(0.01, 100.0, (500, 3))).astype(dtype)
        for faces in (rng.integers(0, 500, (2000, 3)), rng.integers(0, 500, (2000, 3)).astype(np.int32)):
            expected = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
            got = face_cross(v, faces)
            assert got.dtype == expected.dtype and np.array_equal(got, expected)
        other = np.roll(expected, 1, axis=0)
        assert np.array_equal(row_dots(expected, other), (expected * other).sum(1))
        assert np.array_equal(row_lengths(expected), np.linalg.norm(expected, axis=1))


def test_edge_census_counts_as_np_unique_does():
    """cleanup.edge_census (one sort, kept for the same faces) against the np.unique forms the solid's
    repair used: edge ids and counts, the repeated directed edges, open edges; a changed face list
    (even the same array changed in place) is counted again."""
    from engine.geometry.cleanup import _pair_key, edge_census
    from engine.geometry.watertight import _misoriented_faces, _open_edges

    rng = np.random.default_rng(8)
    faces = rng.integers(0, 60, (400, 3))
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])]
    faces = np.concatenate([faces, faces[:30], faces[30:50, ::-1]])  # repeated and reversed faces
    for _ in range(2):
        census = edge_census(faces)
        half = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        _, inverse, counts = np.unique(_pair_key(half[:, 0], half[:, 1]), return_inverse=True, return_counts=True)
        assert np.array_equal(census.edge, inverse.ravel()) and np.array_equal(census.counts, counts)
        assert np.array_equal(np.stack([census.a, census.b], 1), half)
        _, directed_inverse, directed_counts = np.unique(half[:, 0] * 1000 + half[:, 1], return_inverse=True, return_counts=True)
        assert np.array_equal(census.repeated, directed_counts[directed_inverse.ravel()] > 1)
        assert census.repeated.any() and not census.repeated.all()
        assert np.array_equal(_misoriented_faces(faces), (directed_counts[directed_inverse.ravel()] > 1).reshape(3, -1).any(0))
        assert _open_edges(faces) == int((counts != 2).sum())
        assert edge_census(faces.copy()) is census  # the same faces again: kept
        faces[:5] = faces[5:10]  # changed in place: counted again on the next pass
