"""Body-part labels on the avatar: faces' classes, material slots and avatar.json's tables.

Each vertex carries one of the 29 Sapiens segmentation classes (assets/seg_classes.json); the
label groups (skin, hair, clothing, shoes: assets/label_groups.json, read by
engine.geometry.labels) become the glb's material slots, so an artist can shade and select them
apart.
"""

from __future__ import annotations

import numpy as np

import scipy.sparse as sp
from scipy.spatial import cKDTree

from engine.geometry.labels import class_names, group_names, group_of_class, label_groups

__all__ = ["class_names", "class_ids", "group_names", "group_of_class", "face_labels", "labels_table", "groups_table",
           "FRONT_ONLY_CLASSES", "front_only_to_hair", "smooth_hairline"]

# classes on which a person stands: they place the avatar's origin on the ground
FOOT_CLASSES_LEFT = ("Left_Foot", "Left_Shoe", "Left_Sock")
FOOT_CLASSES_RIGHT = ("Right_Foot", "Right_Shoe", "Right_Sock")
# classes that only the front of a person shows: their hidden side is another part (hair, skin)
# the hairline's vote (smooth_hairline): Gaussian weights of this sigma on the surface, out to
# twice it: teeth a centimetre wide go, a lock of hair two centimetres wide stays
HAIRLINE_VOTE_M = 0.006
FRONT_ONLY_CLASSES = ("Face_Neck", "Eyeglass", "Lower_Lip", "Upper_Lip", "Lower_Teeth", "Upper_Teeth", "Tongue")


def class_ids(names) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(class_names())}
    return np.array([lookup[n] for n in names], np.int64)


def front_only_to_hair(vertex_labels: np.ndarray, where: np.ndarray) -> np.ndarray:
    """`vertex_labels` with the vertices `where` marks that carry a front-only class (face, lips,
    glasses...) given the Hair class: the back of a head whose hair frames the face."""
    labels = np.asarray(vertex_labels).copy()
    change = np.asarray(where, bool) & np.isin(labels, class_ids(FRONT_ONLY_CLASSES))
    labels[change] = class_ids(["Hair"])[0]
    return labels


def smooth_hairline(vertex_labels: np.ndarray, vertices: np.ndarray, where: np.ndarray) -> np.ndarray:
    """`vertex_labels` with the head's vertices among `where` (Hair or a face class) classed by
    a vote of the head vertices around them (within twice HAIRLINE_VOTE_M on the surface,
    `vertices` in metres, Gaussian weights): the segmentation's ragged edge and its pixel
    staircase (which the side of the head, seen edge-on, stretches into centimetre teeth) are
    ironed out, so the border between the hair and the skin slots runs smooth, while a lock of
    hair wider than the vote stays hair. A vertex voted off Hair takes the class of the nearest
    face vertex."""
    labels = np.asarray(vertex_labels).copy()
    hair_id = class_ids(["Hair"])[0]
    face_ids = class_ids(FRONT_ONLY_CLASSES)
    head = np.nonzero(np.asarray(where, bool) & np.isin(labels, np.append(face_ids, hair_id)))[0]
    hair = labels[head] == hair_id
    if hair.all() or not hair.any():
        return labels
    points = np.asarray(vertices, np.float64)[head]
    tree = cKDTree(points)
    pairs = tree.sparse_distance_matrix(tree, 2.0 * HAIRLINE_VOTE_M, output_type="coo_matrix")
    weight = sp.csr_matrix((np.exp(-0.5 * (pairs.data / HAIRLINE_VOTE_M) ** 2), (pairs.row, pairs.col)), shape=pairs.shape)
    weight = weight + sp.identity(len(head), format="csr")  # a vertex's own vote (distance 0 is not stored)
    vote = (weight @ hair.astype(np.float64)) / np.asarray(weight.sum(axis=1)).ravel()
    to_hair, to_face = (vote >= 0.5) & ~hair, (vote < 0.5) & hair
    new = labels[head]
    new[to_hair] = hair_id
    if to_face.any():
        _, nearest = cKDTree(points[~hair]).query(points[to_face])
        new[to_face] = labels[head][~hair][nearest]
    labels[head] = new
    return labels


def face_labels(vertex_labels: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Each face's class: the one at least two of its corners share, else its first corner's.

    Unlabelled corners (0) give way to labelled ones, so a face on the edge of the labelled
    region keeps a body part.
    """
    corner = vertex_labels[faces].astype(np.int64)  # F x 3
    a, b, c = corner[:, 0], corner[:, 1], corner[:, 2]
    label = np.where((b == c) & (b != 0), b, a)
    label = np.where((a == b) | (a == c), a, label)
    for column in (a, b, c):  # still unlabelled: take any labelled corner
        label = np.where(label == 0, column, label)
    return label


def labels_table(vertex_labels: np.ndarray) -> list[dict]:
    """avatar.json's labels table: id, name, group and vertex count for every class."""
    counts = np.bincount(vertex_labels.astype(np.int64), minlength=len(class_names()))
    groups = group_names()
    group = group_of_class()
    return [
        {"id": i, "name": name, "group": None if i == 0 else groups[group[i]], "vertices": int(counts[i])}
        for i, name in enumerate(class_names())
    ]


def groups_table() -> dict[str, list[int]]:
    """avatar.json's label groups: group name -> class ids."""
    return {name: class_ids(members).tolist() for name, members in label_groups()["groups"].items()}
