"""Body-part labels on the avatar: faces' classes, material slots and avatar.json's tables.

Each vertex carries one of the 29 Sapiens segmentation classes (assets/seg_classes.json); the
label groups (skin, hair, clothing, shoes: assets/label_groups.json, read by
engine.geometry.labels) become the glb's material slots, so an artist can shade and select them
apart.
"""

from __future__ import annotations

import numpy as np

from engine.geometry.labels import class_ids, class_names, group_names, group_of_class, label_groups

__all__ = ["class_names", "class_ids", "group_names", "group_of_class", "face_labels", "labels_table", "groups_table",
           "FRONT_ONLY_CLASSES", "front_only_to_hair"]

# classes on which a person stands: they place the avatar's origin on the ground
FOOT_CLASSES_LEFT = ("Left_Foot", "Left_Shoe", "Left_Sock")
FOOT_CLASSES_RIGHT = ("Right_Foot", "Right_Shoe", "Right_Sock")
# classes that only the front of a person shows: their hidden side is another part (hair, skin)
FRONT_ONLY_CLASSES = ("Face_Neck", "Eyeglass", "Lower_Lip", "Upper_Lip", "Lower_Teeth", "Upper_Teeth", "Tongue")


def front_only_to_hair(vertex_labels: np.ndarray, where: np.ndarray) -> np.ndarray:
    """`vertex_labels` with the vertices `where` marks that carry a front-only class (face, lips,
    glasses...) given the Hair class: the back of a head whose hair frames the face."""
    labels = np.asarray(vertex_labels).copy()
    change = np.asarray(where, bool) & np.isin(labels, class_ids(FRONT_ONLY_CLASSES))
    labels[change] = class_ids(["Hair"])[0]
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
