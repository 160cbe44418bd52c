"""Projection UV islands: which faces the camera saw, and the vertex splits that separate them.

A front-only surface is one island: every face takes its texture from where it projects in the
photo. A closed surface also has faces the camera never saw (its back, the far side of limbs);
they form a second island so they neither share texels with the front nor take its normal-map
detail. Vertices on the border between the islands are duplicated (a UV seam).
"""

from __future__ import annotations

import numpy as np

from engine.avatar.textures import FRONT, HIDDEN

# a face counts as seen when its centre is this close to the pointmap's depth at its pixel
SEEN_DEPTH_TOLERANCE_M = 0.02
SEEN_DEPTH_TOLERANCE_REL = 0.01


def project(points_camera: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (N x 3) -> photo pixel coordinates (N x 2, centres at +0.5)."""
    p = np.asarray(points_camera, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = p[:, :2] / p[:, 2:3]
    return xy @ np.asarray(K, np.float64)[:2, :2].T + np.asarray(K, np.float64)[:2, 2]


def seen_faces(vertices_camera: np.ndarray, faces: np.ndarray, pointmap: np.ndarray, K: np.ndarray) -> np.ndarray:
    """F bool: the face points toward the camera and lies on the surface the camera saw there."""
    corners = vertices_camera[faces].astype(np.float64)
    centre = corners.mean(axis=1)
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    facing = np.einsum("ij,ij->i", normal, -centre) > 0.0
    h, w = pointmap.shape[:2]
    xy = project(centre, K)
    inside = np.isfinite(xy).all(axis=1) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    col = np.clip(np.nan_to_num(xy[:, 0]).astype(np.int64), 0, w - 1)
    row = np.clip(np.nan_to_num(xy[:, 1]).astype(np.int64), 0, h - 1)
    seen_depth = pointmap[row, col, 2].astype(np.float64)
    tolerance = np.maximum(SEEN_DEPTH_TOLERANCE_M, SEEN_DEPTH_TOLERANCE_REL * centre[:, 2])
    with np.errstate(invalid="ignore"):
        on_surface = np.abs(centre[:, 2] - seen_depth) <= tolerance  # NaN (unseen pixel) -> False
    return facing & inside & on_surface


def split_islands(faces: np.ndarray, face_island: np.ndarray, n_islands: int = 2):
    """Give each (vertex, island) pair its own vertex.

    Returns (new faces F x 3, source vertex per new vertex, island per new vertex). Vertices no
    face uses are dropped; new vertices keep the order of their source vertices.
    """
    corner_key = faces.astype(np.int64) * n_islands + np.repeat(face_island.astype(np.int64), 3).reshape(-1, 3)
    keys, inverse = np.unique(corner_key.reshape(-1), return_inverse=True)
    return inverse.reshape(-1, 3).astype(np.int64), keys // n_islands, (keys % n_islands).astype(np.int8)


def assign_islands(vertices_camera, faces, pointmap, K, *, closed: bool) -> np.ndarray:
    """F int8 island per face: all FRONT for a front-only surface, FRONT / HIDDEN for a closed one."""
    if not closed:
        return np.full(len(faces), FRONT, np.int8)
    return np.where(seen_faces(vertices_camera, faces, pointmap, K), FRONT, HIDDEN).astype(np.int8)
