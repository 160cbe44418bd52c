"""The avatar frame: glTF's axes (+Y up, the person facing +Z), origin on the ground between the feet.

A camera-frame point p (OpenCV: x right, y down, z forward) maps to (p.x, -p.y, -p.z) and is then
translated; `camera_to_avatar` returns that 4 x 4 transform (docs/conventions.md).
"""

from __future__ import annotations

import numpy as np

from engine.avatar.labels import FOOT_CLASSES_LEFT, FOOT_CLASSES_RIGHT, class_ids
from engine.formats.scene import CAMERA_TO_AVATAR_AXES, camera_to_avatar_axes
# fewer labelled foot vertices than this and the feet are not trusted to place the origin
MIN_FOOT_VERTICES = 10


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    rotation, shift = np.asarray(matrix)[:3, :3], np.asarray(matrix)[:3, 3]
    points = np.asarray(points)
    if (points.ndim == 2 and points.dtype == np.float64 and rotation.dtype == np.float64
            and not (rotation - np.diag(np.diag(rotation))).any() and shift.all()):
        # axes only turned (camera_to_avatar's matrix): the matrix product's numbers without a
        # BLAS call (whose idle threads spin on the other core), one product per coordinate plus
        # zeros (NaN from an infinite coordinate, as in the product); their signs vanish in the shift
        out = np.empty_like(points)
        with np.errstate(invalid="ignore"):
            for k in range(3):
                out[:, k] = points[:, 0] * rotation[k, 0] + points[:, 1] * rotation[k, 1] + points[:, 2] * rotation[k, 2]
        out += shift
        return out
    return points @ rotation.T + shift


def camera_to_avatar(vertices_camera: np.ndarray, vertex_labels: np.ndarray | None) -> tuple[np.ndarray, str]:
    """The 4 x 4 camera -> avatar transform for this mesh, and how the origin was placed.

    The origin sits at the height of the lowest foot vertex, midway between the centroids of the
    left and right feet (shoes, socks). Without labelled feet (a portrait, no segmentation) it
    sits below the lowest vertex, under the centroid of the lowest 2 % of the mesh.
    """
    turned = camera_to_avatar_axes(vertices_camera)
    left = right = np.zeros(len(turned), bool)
    if vertex_labels is not None:
        left = np.isin(vertex_labels, class_ids(FOOT_CLASSES_LEFT))
        right = np.isin(vertex_labels, class_ids(FOOT_CLASSES_RIGHT))
    if left.sum() >= MIN_FOOT_VERTICES and right.sum() >= MIN_FOOT_VERTICES:
        centre = 0.5 * (turned[left].mean(axis=0) + turned[right].mean(axis=0))
        ground = turned[left | right, 1].min()
        how = "ground at the lowest foot vertex, midway between the feet"
    elif (left | right).sum() >= MIN_FOOT_VERTICES:
        feet = left | right
        centre = turned[feet].mean(axis=0)
        ground = turned[feet, 1].min()
        how = "ground at the lowest foot vertex, under the one visible foot"
    else:
        lowest = turned[:, 1] <= np.quantile(turned[:, 1], 0.02)
        centre = turned[lowest].mean(axis=0)
        ground = turned[:, 1].min()
        how = "no feet labelled: ground at the lowest vertex"
    matrix = np.eye(4)
    matrix[:3, :3] = CAMERA_TO_AVATAR_AXES
    matrix[:3, 3] = [-centre[0], -ground, -centre[2]]
    return matrix, how
