"""Texture pieces: crop layout, push-pull padding, rasteriser, tangents, normal-map bake round trip."""

from __future__ import annotations

import numpy as np
import pytest

from engine.avatar import textures as tx
from engine.avatar.islands import split_islands


def _grid(n: int, height_fn):
    """An n x n grid over [0, 1]^2 (avatar-like frame: x right, y up), z from height_fn, with glTF UVs."""
    s = np.linspace(0.0, 1.0, n)
    x, y = np.meshgrid(s, s[::-1])  # row 0 at the top (y = 1), like an image
    z = height_fn(x, y)
    positions = np.stack([x, y, z], -1).reshape(-1, 3)
    uv = np.stack([x, 1.0 - y], -1).reshape(-1, 2)  # glTF: v grows downward
    idx = np.arange(n * n).reshape(n, n)
    tl, tr, bl, br = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([tl, bl, br], -1).reshape(-1, 3), np.stack([tl, br, tr], -1).reshape(-1, 3)])
    return positions, uv, faces


def _vertex_normals(positions, faces):
    from engine.geometry.surface import vertex_normals

    return vertex_normals(positions, faces)


def test_layout_keeps_aspect_covers_the_person_and_inverts():
    mask = np.zeros((400, 300), bool)
    mask[50:350, 100:180] = True
    layout = tx.plan_layout(mask, np.empty((0, 2)), 512, 1)
    x0, y0, x1, y1 = layout.crop
    assert x0 <= 100 and x1 >= 180 and y0 <= 50 and y1 >= 350
    assert layout.height == 512 and layout.width < 512
    assert layout.width / layout.height == pytest.approx((x1 - x0) / (y1 - y0), abs=0.02)
    xy = np.array([[120.5, 60.25], [179.0, 349.0]])
    assert np.allclose(layout.texel_to_photo(layout.photo_to_texel(xy)), xy)
    two = tx.plan_layout(mask, np.empty((0, 2)), 512, 2)
    hidden = two.photo_to_texel(xy, tx.HIDDEN)
    assert (hidden[:, 0] >= two.island_width + two.gutter).all() and (hidden[:, 0] <= two.width).all()


def test_push_pull_keeps_valid_pixels_and_fills_the_rest_smoothly():
    rng = np.random.default_rng(1)
    values = rng.uniform(0.2, 0.8, (37, 53, 3)).astype(np.float32)
    valid = np.zeros((37, 53), bool)
    valid[10:20, 5:30] = True
    filled = tx.push_pull_fill(values, valid)
    assert np.array_equal(filled[valid], values[valid])
    assert np.isfinite(filled).all()
    assert filled[~valid].min() >= values[valid].min() - 1e-6 and filled[~valid].max() <= values[valid].max() + 1e-6
    constant = tx.push_pull_fill(np.full((20, 20, 1), 0.3, np.float32), valid[:20, :20])
    assert np.allclose(constant, 0.3)


def test_rasterizer_covers_each_texel_once_with_exact_barycentrics():
    positions, uv, faces = _grid(9, lambda x, y: 0 * x)
    size = 64
    texel_xy = uv * size
    raster = tx.rasterize(texel_xy, faces, np.zeros(len(uv)), size, size)
    assert raster.covered.all()  # texel centres all lie inside [0, size]^2
    # interpolating the UVs with the barycentrics gives back each texel centre
    centres = np.stack(np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5), -1)
    interp = np.einsum("hwk,hwkd->hwd", raster.bary, texel_xy[faces[raster.face]])
    assert np.abs(interp - centres).max() < 1e-6
    # two overlapping triangles: the nearer (smaller depth) wins
    tri = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 40.0]])
    raster = tx.rasterize(np.concatenate([tri, tri]), np.array([[0, 1, 2], [3, 4, 5]]), np.array([2.0] * 3 + [1.0] * 3), 48, 48)
    assert set(np.unique(raster.face[raster.covered])) == {1}


def test_tangents_follow_u_and_image_up_with_handedness():
    positions, uv, faces = _grid(6, lambda x, y: 0.1 * np.sin(3 * x))
    normals = _vertex_normals(positions, faces)
    tangents = tx.vertex_tangents(positions, normals, uv, faces)
    assert np.allclose(np.linalg.norm(tangents[:, :3], axis=1), 1.0, atol=1e-5)
    assert np.abs(np.einsum("ij,ij->i", tangents[:, :3], normals)).max() < 1e-5
    assert (tangents[:, 0] > 0.7).all() and (tangents[:, 3] == 1.0).all()
    bitangent = np.cross(normals, tangents[:, :3]) * tangents[:, 3:]
    assert (bitangent[:, 1] > 0.99).all()  # image up = +y here
    mirrored = uv.copy()
    mirrored[:, 0] = 1.0 - mirrored[:, 0]
    assert (tx.vertex_tangents(positions, normals, mirrored, faces)[:, 3] == -1.0).all()


def test_normal_bake_round_trip_reproduces_the_target_normals():
    """Bake a bumpy surface's true normals against a coarse flat mesh; decoding recovers them."""
    rng = np.random.default_rng(3)
    positions, uv, faces = _grid(5, lambda x, y: 0.05 * x * y)  # coarse, almost flat
    normals = _vertex_normals(positions, faces)
    tangents = tx.vertex_tangents(positions, normals, uv, faces)
    size = 96
    raster = tx.rasterize(uv * size, faces, np.zeros(len(uv)), size, size)
    # target: smooth random tilts (what fine detail looks like), within 40 degrees of +z
    tilt = rng.normal(size=(size, size, 2)) * 0.3
    from scipy.ndimage import gaussian_filter

    tilt = gaussian_filter(tilt, (4, 4, 0))
    target = np.concatenate([tilt, np.ones((size, size, 1))], -1)
    target /= np.linalg.norm(target, axis=-1, keepdims=True)
    local, baked = tx.bake_tangent_normals(raster, faces, normals, tangents, target.astype(np.float32))
    assert baked.all()
    rgb = tx.encode_normal_map(local)
    assert rgb[..., 2].min() > 128  # tangent-space maps point out of the surface: blue
    decoded = tx.decode_normal_map(rgb)
    assert np.allclose(np.linalg.norm(decoded, axis=-1), 1.0)
    texels, t, b, n = tx.interpolated_tbn(raster, faces, normals, tangents)
    d = decoded.reshape(-1, 3)[texels]
    world = t * d[:, :1] + b * d[:, 1:2] + n * d[:, 2:]
    angle = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", world, target.reshape(-1, 3)[texels]), -1, 1)))
    assert angle.max() < 1.0  # 8-bit quantisation only (about 0.5 degree at most)


def test_split_islands_duplicates_only_border_vertices():
    faces = np.array([[0, 1, 2], [1, 3, 2], [3, 4, 2]])
    island = np.array([0, 0, 1], np.int8)
    new_faces, source, vertex_island = split_islands(faces, island)
    assert len(source) == 7  # 2 and 3 are on the border, used by both islands
    assert np.array_equal(source[new_faces], faces)
    assert (vertex_island[new_faces] == island[:, None]).all()
