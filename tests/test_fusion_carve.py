"""The fused solid carved to every view's silhouette (engine/geometry/fusion.py carve_to_outlines)."""

from __future__ import annotations

import numpy as np
import trimesh

from engine.geometry.fusion import View, carve_to_outlines


def _disc_view(radius_px: float, K: np.ndarray, shape=(200, 200)) -> View:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    mask = np.hypot(cols + 0.5 - K[0, 2], rows + 0.5 - K[1, 2]) <= radius_px
    points = np.full(shape + (3,), np.nan, np.float32)
    return View(points, mask, K)


def test_a_solid_bulging_past_the_outline_is_carved_onto_it_and_stays_closed():
    K = np.array([[1000.0, 0, 100], [0, 1000.0, 100], [0, 0, 1]])
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.2)
    vertices = sphere.vertices + [0.0, 0.0, 3.0]  # 3 m in front of the camera: ~67 px radius
    view = _disc_view(50.0, K)  # the person's outline: 50 px, the sphere bulges 17 px past it
    carved, moved = carve_to_outlines(vertices, [view], [np.eye(4)])
    assert moved > 0
    u = K[0, 0] * carved[:, 0] / carved[:, 2] + K[0, 2]
    v = K[1, 1] * carved[:, 1] / carved[:, 2] + K[1, 2]
    radius = np.hypot(u - K[0, 2], v - K[1, 2])
    assert radius.max() <= 50.0 + 0.5 + 1e-3  # onto the outline, half a pixel past the last centre
    # each vertex keeps its depth; those inside the outline do not move
    assert np.allclose(carved[:, 2], vertices[:, 2], atol=1e-6)
    before = np.hypot(K[0, 0] * vertices[:, 0] / vertices[:, 2], K[1, 1] * vertices[:, 1] / vertices[:, 2])
    inside = before < 49.0
    assert np.allclose(carved[inside], vertices[inside], atol=1e-6)
    mesh = trimesh.Trimesh(carved, sphere.faces, process=False)
    assert mesh.is_watertight and 0 < mesh.volume < sphere.volume


def test_a_vertex_past_the_photo_border_is_left_alone():
    K = np.array([[1000.0, 0, 100], [0, 1000.0, 100], [0, 0, 1]])
    view = View(np.full((200, 200, 3), np.nan, np.float32), np.ones((200, 200), bool), K)  # the person fills the photo
    vertices = np.array([[0.0, 0.0, 3.0], [0.5, 0.0, 3.0], [0.0, -0.4, 3.0]])  # the last two project off the photo
    carved, moved = carve_to_outlines(vertices, [view], [np.eye(4)])
    assert moved == 0 and np.allclose(carved, vertices)
    # seen from a view turned half round (a back photo 6 m away: 33 px off its centre, 20 px disc),
    # the same rule in its frame
    back = np.eye(4)
    back[:3, :3] = np.diag([-1.0, 1.0, -1.0])
    back[2, 3] = 6.0
    small = _disc_view(20.0, K)
    carved, moved = carve_to_outlines(vertices[:1] + [0.1, 0.0, 0.0], [small], [back])
    assert moved == 1 and abs(K[0, 0] * -carved[0, 0] / 3.0) <= 20.5 + 1e-3
