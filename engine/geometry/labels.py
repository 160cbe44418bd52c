"""Body-part labels per vertex and the label groups used as material slots.

A vertex of the front surface takes the segmentation class of its pixel; a vertex made later
(closing the surface, decimation) takes the class of the nearest labelled vertex. Classes are
the 29 Sapiens ids (assets/seg_classes.json); groups (skin, hair, clothing, shoes) come from
assets/label_groups.json.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from engine.paths import asset


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """Segmentation class names indexed by class id."""
    table = json.loads(asset("seg_classes.json").read_text())
    return tuple(c["name"] for c in sorted(table["classes"], key=lambda c: c["id"]))


def class_ids(names) -> np.ndarray:
    """The class ids of `names` (KeyError for a name the table does not have)."""
    lookup = {name: i for i, name in enumerate(class_names())}
    return np.array([lookup[n] for n in names], np.int64)


# the arms (hands included) and the trunk with what covers it: an arm lying against the trunk
# (limb_contacts), the trunk's hidden side behind an arm (engine.avatar.appearance)
ARM_CLASSES = tuple(f"{side}_{part}" for side in ("Left", "Right") for part in ("Upper_Arm", "Lower_Arm", "Hand"))
TRUNK_CLASSES = ("Torso", "Upper_Clothing", "Lower_Clothing", "Apparel")


@lru_cache(maxsize=1)
def label_groups() -> dict:
    """assets/label_groups.json: {'groups': {name: [class names]}, 'unlabelled_group': name}."""
    table = json.loads(asset("label_groups.json").read_text())
    names = set(class_names())
    for group, members in table["groups"].items():
        unknown = set(members) - names
        if unknown:
            raise ValueError(f"label_groups.json: group {group!r} names unknown classes {sorted(unknown)}")
    return table


def group_names() -> list[str]:
    return list(label_groups()["groups"])


def group_of_class() -> np.ndarray:
    """Class id -> group index (into group_names()); Background maps to the unlabelled group."""
    table = label_groups()
    names = group_names()
    lookup = {name: i for i, name in enumerate(class_names())}
    out = np.full(len(class_names()), names.index(table["unlabelled_group"]), np.int64)
    for g, members in enumerate(table["groups"].values()):
        out[[lookup[m] for m in members]] = g
    return out


def vertex_groups(vertex_labels: np.ndarray) -> np.ndarray:
    """Group index per vertex from its class id (ids outside the table count as unlabelled)."""
    table = group_of_class()
    labels = np.asarray(vertex_labels, np.int64)
    fallback = group_names().index(label_groups()["unlabelled_group"])
    inside = (labels >= 0) & (labels < table.size)
    return np.where(inside, table[np.clip(labels, 0, table.size - 1)], fallback)


def labels_from_seg(seg: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Class of each vertex's pixel; pixel is V x 2 (row, col)."""
    return seg[pixel[:, 0], pixel[:, 1]].astype(np.uint8)


def transfer_labels(source_points: np.ndarray, source_labels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Class of the nearest labelled (non-Background) source point for each point."""
    labelled = np.asarray(source_labels) > 0
    if not labelled.any():
        return np.zeros(len(points), np.uint8)
    tree = cKDTree(np.asarray(source_points, np.float64)[labelled])
    _, nearest = tree.query(np.asarray(points, np.float64), k=1, workers=-1)
    return np.asarray(source_labels)[labelled][nearest].astype(np.uint8)
