"""build_surface end to end on the shared synthetic people, options, and bad inputs."""

from types import SimpleNamespace

import numpy as np
import pytest
import trimesh

from engine.errors import BundleError, EngineError
from engine.geometry import Surface, build_surface
from engine.geometry.cleanup import clean_mesh, decimate
from engine.geometry.labels import group_names, vertex_groups
from geometry_truth import angle_deg, distances, load_sample, mesh_scene, true_surface


@pytest.fixture(scope="module")
def person(shared_samples):
    sample = load_sample(shared_samples, "person_101")
    scene, mesh = true_surface(shared_samples, "person_101")
    return sample, scene, mesh


def _build(sample, **options):
    return build_surface(sample["pointmap"], sample["normal"], sample["mask"], sample["seg"], sample["K"], **options)


def test_front_surface_is_on_the_truth(person):
    sample, scene, _ = person
    surface = _build(sample, resolution="half")
    assert isinstance(surface, Surface)
    # Exact maps, refined with their own normals at half resolution. Measured: mean 0.9 mm,
    # 95th percentile 1.3 mm (101; 0.7 / 1.5 mm for 102); the refinement may only move the
    # surface within the consistency of block-averaged normals.
    d = distances(scene, surface.vertices)
    assert d.mean() < 0.0015 and np.percentile(d, 95) < 0.003
    true_normal = sample["normal"][surface.vertex_pixel[:, 0] * 2, surface.vertex_pixel[:, 1] * 2]
    ok = np.isfinite(true_normal).all(1)
    assert np.median(angle_deg(surface.vertex_normals[ok], true_normal[ok])) < 4.0
    # Share of person pixels in the mesh (measured 0.9998).
    assert surface.stats["covered_fraction"] > 0.99
    assert (surface.vertex_normals[:, 2] < 0).mean() > 0.99


def test_uv_labels_and_pixels_agree(person):
    sample, _, _ = person
    surface = _build(sample, resolution="quarter", detail="none")
    H, W = sample["mask"].shape
    rows, cols = surface.vertex_pixel[:, 0], surface.vertex_pixel[:, 1]
    # UV = photo projection; a grid vertex projects inside its 4 x 4 block (off its centre only
    # where the block is partly outside the person: measured at most 1.5 px).
    assert np.allclose(surface.uv[:, 0] * W, cols * 4 + 2, atol=2.0)
    assert np.allclose(surface.uv[:, 1] * H, rows * 4 + 2, atol=2.0)
    assert surface.uv.min() >= 0 and surface.uv.max() <= 1
    block_seg = sample["seg"][rows * 4 + 1, cols * 4 + 1]
    assert (surface.vertex_labels == block_seg).mean() > 0.9
    groups = np.array(group_names())[vertex_groups(surface.vertex_labels)]
    assert {"skin", "clothing", "shoes"} <= set(groups)


def test_watertight_solid_close_to_truth(person):
    sample, scene, true_mesh = person
    surface = _build(sample, resolution="half", detail="none", watertight=True)
    mesh = trimesh.Trimesh(surface.vertices, surface.faces, process=False)
    assert mesh.is_watertight
    # Measured: ours -> truth 7.0 mm mean, truth -> ours 4.4 mm, volume 107 % of the truth's
    # (the back's scales are set for predicted maps, where the bulge comes out flatter:
    # engine/geometry/watertight.py; before that 4.3 / 4.3 mm and 96 %).
    assert distances(scene, surface.vertices).mean() < 0.008
    truth_points = trimesh.Trimesh(np.asarray(true_mesh.vertices), np.asarray(true_mesh.triangles)).sample(20000, seed=0)
    assert distances(mesh_scene(surface.vertices, surface.faces), truth_points).mean() < 0.010
    true_volume = trimesh.Trimesh(np.asarray(true_mesh.vertices), np.asarray(true_mesh.triangles)).volume
    assert 0.85 < mesh.volume / true_volume < 1.1
    assert surface.front.any() and not surface.front.all()
    assert (surface.vertex_labels > 0).all()


def test_decimation_hits_target_and_keeps_uvs(person):
    sample, scene, _ = person
    full = _build(sample, resolution="half", detail="none")
    surface = _build(sample, resolution="half", detail="none", target_faces=8000)
    assert abs(len(surface.faces) - 8000) <= 80
    assert distances(scene, surface.vertices).mean() < 0.003
    # Labels and pixels come from a merged input vertex: the pixel's UV is within a few grid
    # pixels of the projection of the moved vertex.
    H, W = sample["mask"].shape
    pixel_uv = (surface.vertex_pixel[:, ::-1] * 2 + 1) / np.array([W, H])
    assert np.percentile(np.abs(pixel_uv - surface.uv) * np.array([W, H]), 99) < 12
    assert set(np.unique(surface.vertex_labels)) <= set(np.unique(full.vertex_labels))


def test_decimate_carries_attributes_exactly():
    sphere = trimesh.creation.icosphere(5)
    uv = np.stack([sphere.vertices[:, 0], sphere.vertices[:, 1]], -1) * 0.5 + 0.5
    out = decimate(sphere.vertices, sphere.faces, 2000, {"uv": uv, "id": np.arange(len(uv))})
    assert len(out.faces) == 2000
    assert trimesh.Trimesh(out.vertices, out.faces, process=False).is_watertight
    assert np.array_equal(out.attributes["uv"], uv[out.attributes["id"]])
    assert np.array_equal(out.source_vertex, out.attributes["id"])
    moved = np.linalg.norm(out.vertices - sphere.vertices[out.source_vertex], axis=1)
    assert moved.max() < 0.1


def test_cleanup_removes_islands_degenerate_and_nonmanifold():
    grid = trimesh.creation.box().subdivide().subdivide()
    v = np.asarray(grid.vertices)
    f = np.asarray(grid.faces)
    speck = np.array([[10, 10, 10], [10.1, 10, 10], [10, 10.1, 10]]) + 0.0
    v2 = np.concatenate([v, speck])
    n = len(v)
    extra = np.array([[n, n + 1, n + 2], [0, 0, 1], [f[0, 0], f[0, 1], f[5, 2]], [f[0, 0], f[0, 1], f[9, 2]]])
    out = clean_mesh(v2, np.concatenate([f, extra]), {"i": np.arange(len(v2))})
    assert out.removed["islands"] == 1 and out.removed["degenerate"] == 1
    assert out.removed["nonmanifold"] >= 1
    edges = np.sort(out.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    assert np.unique(edges, axis=0, return_counts=True)[1].max() <= 2
    assert np.array_equal(out.vertices, v2[out.attributes["i"]])


def test_bundle_like_input(person):
    sample, _, _ = person
    bundle = SimpleNamespace(pointmap=sample["pointmap"], normal=sample["normal"], mask=sample["mask"], seg=sample["seg"], K=sample["K"])
    surface = build_surface(bundle, resolution="quarter", target_faces=3000)
    assert abs(len(surface.faces) - 3000) <= 30
    assert surface.grid_factor == 4


def test_bad_inputs(person):
    sample, _, _ = person
    p, n, m, s, K = sample["pointmap"], sample["normal"], sample["mask"], sample["seg"], sample["K"]
    with pytest.raises(BundleError, match="empty"):
        build_surface(p, n, np.zeros_like(m), s, K)
    with pytest.raises(BundleError, match="no finite point"):
        build_surface(np.full_like(p, np.nan), n, m, s, K)
    with pytest.raises(BundleError, match="sizes differ"):
        build_surface(p, n[:-1], m, s, K)
    with pytest.raises(BundleError, match="sizes differ"):
        build_surface(p, n, m[:, :-1], s, K)
    with pytest.raises(BundleError, match="sizes differ"):
        build_surface(p, n, m, s[:10], K)
    with pytest.raises(BundleError, match="normal map"):
        build_surface(p, None, m, s, K, detail="normals")
    with pytest.raises(BundleError, match="NaN on most"):
        build_surface(p, np.full_like(n, np.nan), m, s, K)
    with pytest.raises(BundleError, match="intrinsics"):
        build_surface(p, n, m, s, np.eye(2))
    half_nan = p.copy()
    half_nan[: p.shape[0] * 3 // 4] = np.nan
    with pytest.raises(BundleError, match="does not match the mask"):
        build_surface(half_nan, n, m, s, K)
    with pytest.raises(EngineError, match="resolution"):
        build_surface(p, n, m, s, K, resolution="eighth")
    with pytest.raises(EngineError, match="detail"):
        build_surface(p, n, m, s, K, detail="max")
    # A few NaNs inside the mask are fine: those pixels are simply left out.
    spotted = p.copy()
    spotted[::7, ::5] = np.nan
    surface = build_surface(spotted, n, m, s, K, resolution="quarter", detail="none")
    assert np.isfinite(surface.vertices).all()
