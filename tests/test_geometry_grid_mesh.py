"""Pixel-grid front mesh: exact on exact maps, no webbing across depth jumps, downsampling."""

import numpy as np
import pytest

from engine.geometry.grid_mesh import downsample_maps, grid_mesh
from engine.geometry.normal_integration import pixel_rays
from geometry_truth import distances, load_sample, true_surface


def arm_in_front_of_torso(gap_axis_depth: float, size=(120, 160)):
    """A torso plane at z = 3 m facing the camera and a horizontal cylindrical arm in front.

    Exact pointmap, normals, mask and seg (Torso = 22, arm = 7) by ray casting.
    """
    H, W = size
    K = np.array([[400.0, 0, W / 2], [0, 400.0, H / 2], [0, 0, 1]])
    rays = pixel_rays(K, (H, W))
    radius = 0.04
    # Arm: cylinder along x at (y = 0, z = gap_axis_depth); ray p = t * rays.
    ry, rz = rays[..., 1], rays[..., 2]
    a = ry**2 + rz**2
    b = -2 * rz * gap_axis_depth
    c = gap_axis_depth**2 - radius**2
    disc = b**2 - 4 * a * c
    hit = disc > 0
    t_arm = np.where(hit, (-b - np.sqrt(np.where(hit, disc, 0))) / (2 * a), np.inf)
    t_torso = 3.0 / rz
    on_arm = hit & (t_arm < t_torso)
    t = np.where(on_arm, t_arm, t_torso)
    points = rays * t[..., None]
    normal = np.zeros_like(points)
    normal[..., 2] = -1.0
    arm_normal = points - np.stack([points[..., 0], np.zeros((H, W)), np.full((H, W), gap_axis_depth)], -1)
    arm_normal /= np.linalg.norm(arm_normal, axis=-1, keepdims=True)
    normal[on_arm] = arm_normal[on_arm]
    mask = np.ones((H, W), bool)
    seg = np.where(on_arm, 7, 22).astype(np.uint8)
    return points.astype(np.float32), normal.astype(np.float32), mask, seg, K


@pytest.mark.parametrize("axis_depth", [2.80, 2.90, 2.935])
def test_no_triangle_joins_arm_and_torso(axis_depth):
    # Gaps between the arm's back and the torso: 16 cm, 6 cm and 2.5 cm.
    points, normal, mask, seg, K = arm_in_front_of_torso(axis_depth)
    mesh = grid_mesh(points, mask, normal=normal, seg=seg)
    corner_labels = mesh.labels[mesh.faces]
    mixed = (corner_labels == 7).any(1) & (corner_labels == 22).any(1)
    assert mixed.sum() == 0
    # Both parts are still meshed: nearly all of their pixels are in some triangle.
    used = np.zeros(len(mesh.vertices), bool)
    used[mesh.faces.ravel()] = True
    assert used[mesh.labels == 7].mean() > 0.95
    assert used[mesh.labels == 22].mean() > 0.97


def test_front_faces_point_to_camera_and_no_cuts_on_smooth_surface():
    points, normal, mask, seg, K = arm_in_front_of_torso(2.80)
    mesh = grid_mesh(points, mask, normal=normal, seg=seg)
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces
    face_normal = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert (face_normal[:, 2] < 0).mean() > 0.99
    # The cylinder behind the torso plane is never seen: a plane must not be cut anywhere.
    points, normal, mask, seg, K = arm_in_front_of_torso(5.0)
    torso_only = grid_mesh(points, mask, normal=normal, seg=seg)
    assert torso_only.n_cut == 0
    assert len(torso_only.faces) == 2 * (mask.shape[0] - 1) * (mask.shape[1] - 1)


@pytest.mark.parametrize("factor", [2, 4])
def test_grid_mesh_on_true_maps(shared_samples, factor):
    # Measured (3 samples; half / quarter): vertex distance to the true surface 0.02-0.03 / 0.09-0.11
    # mm, no triangle centroid more than 5*factor mm off it, 99.97-100 % of pixels meshed.
    for name in ("person_101", "person_102"):
        sample = load_sample(shared_samples, name)
        scene, _ = true_surface(shared_samples, name)
        points, mask, normal, seg, K = downsample_maps(
            factor, sample["pointmap"], sample["mask"], sample["normal"], sample["seg"], sample["K"]
        )
        mesh = grid_mesh(points, mask, normal=normal, seg=seg)
        assert distances(scene, mesh.vertices).mean() < 0.0005 * factor
        centroid_off = distances(scene, mesh.vertices[mesh.faces].mean(axis=1))
        assert centroid_off.max() < 0.005 * factor, "a triangle spans a depth jump"
        used = np.zeros(len(mesh.vertices), bool)
        used[mesh.faces.ravel()] = True
        assert used.mean() > 0.995
        assert len(mesh.vertices) > 0.98 * mask.sum()


def test_downsample_keeps_points_on_their_pixels(shared_samples):
    sample = load_sample(shared_samples, "person_103")
    points, mask, normal, seg, K = downsample_maps(
        4, sample["pointmap"], sample["mask"], sample["normal"], sample["seg"], sample["K"]
    )
    assert mask.shape == (256, 192)
    rows, cols = np.nonzero(mask)
    p = points[rows, cols].astype(np.float64)
    x = K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]
    y = K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]
    # Averages of 4 x 4 blocks of one surface project inside their block.
    assert np.abs(x - (cols + 0.5)).max() < 0.75
    assert np.abs(y - (rows + 0.5)).max() < 0.75
    assert np.allclose(np.linalg.norm(normal[mask], axis=-1), 1.0, atol=1e-4)
    assert set(np.unique(seg[mask])) <= set(np.unique(sample["seg"][sample["mask"]]))
