"""Body-part labels on the avatar: the segmentation class table and the label groups.

Each vertex carries one of the 29 Sapiens segmentation classes (assets/seg_classes.json). The
mesh's faces are split into material slots by label group, so an artist can give skin, hair,
clothing and shoes their own shading and select them in one click.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from engine.paths import asset

# group name -> class names (every class but Background belongs to exactly one group)
LABEL_GROUPS: dict[str, tuple[str, ...]] = {
    "skin": (
        "Face_Neck", "Left_Foot", "Left_Hand", "Left_Lower_Arm", "Left_Lower_Leg", "Left_Upper_Arm",
        "Left_Upper_Leg", "Right_Foot", "Right_Hand", "Right_Lower_Arm", "Right_Lower_Leg",
        "Right_Upper_Arm", "Right_Upper_Leg", "Torso", "Lower_Lip", "Upper_Lip", "Lower_Teeth",
        "Upper_Teeth", "Tongue",
    ),
    "hair": ("Hair",),
    "clothing": ("Apparel", "Eyeglass", "Left_Sock", "Right_Sock", "Lower_Clothing", "Upper_Clothing"),
    "shoes": ("Left_Shoe", "Right_Shoe"),
}
# faces whose label is Background (0: unknown, e.g. surface closed where no pixel saw it) join this group
UNLABELLED_GROUP = "skin"
# classes on which a person stands: they place the avatar's origin on the ground
FOOT_CLASSES_LEFT = ("Left_Foot", "Left_Shoe", "Left_Sock")
FOOT_CLASSES_RIGHT = ("Right_Foot", "Right_Shoe", "Right_Sock")


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """Class names indexed by class id."""
    table = json.loads(asset("seg_classes.json").read_text())
    classes = sorted(table["classes"], key=lambda c: c["id"])
    return tuple(c["name"] for c in classes)


def class_ids(names) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(class_names())}
    return np.array([lookup[n] for n in names], np.int64)


def group_of_class() -> np.ndarray:
    """Class id -> index into list(LABEL_GROUPS)."""
    out = np.full(len(class_names()), list(LABEL_GROUPS).index(UNLABELLED_GROUP), np.int64)
    for g, names in enumerate(LABEL_GROUPS.values()):
        out[class_ids(names)] = g
    return out


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
    groups = list(LABEL_GROUPS)
    group = group_of_class()
    return [
        {"id": i, "name": name, "group": None if i == 0 else groups[group[i]], "vertices": int(counts[i])}
        for i, name in enumerate(class_names())
    ]


def groups_table() -> dict[str, list[int]]:
    """avatar.json's label groups: group name -> class ids."""
    return {name: class_ids(names).tolist() for name, names in LABEL_GROUPS.items()}
