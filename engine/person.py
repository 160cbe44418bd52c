"""Person boxes without a detector: connected components of the segmentation foreground.

The reference finds people with an RTMDet detector; the seg model already separates people from
the background, so each connected blob of non-background pixels is a person candidate. Tiny
blobs (specks, a hand of someone cut by the frame edge) are dropped relative to the largest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# a blob smaller than this fraction of the largest one is not counted as a person
MIN_FRACTION_OF_LARGEST = 0.05
# nor one below this fraction of the photo
MIN_FRACTION_OF_PHOTO = 0.001


@dataclass
class Person:
    mask: np.ndarray        # H x W bool
    bbox: np.ndarray        # x1, y1, x2, y2 in reference pixel coordinates (integer-centred, inclusive)
    source: str             # "segmentation", "manual" or "whole_image"
    area: int

    def as_dict(self) -> dict:
        return {"bbox": [float(v) for v in self.bbox], "bbox_source": self.source, "area_px": self.area}


def whole_image(size_hw: tuple[int, int]) -> Person:
    h, w = size_hw
    # the reference's fallback box when its detector finds nobody
    return Person(mask=np.ones((h, w), bool), bbox=np.array([0.0, 0.0, w - 1.0, h - 1.0]),
                  source="whole_image", area=h * w)


def manual(bbox_xyxy, size_hw: tuple[int, int], foreground: np.ndarray | None = None) -> Person:
    """A box given by hand; its mask is the foreground inside the box (or the box itself)."""
    h, w = size_hw
    x1, y1, x2, y2 = (float(v) for v in bbox_xyxy)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"bbox {bbox_xyxy}: need x1 < x2 and y1 < y2")
    inside = np.zeros((h, w), bool)
    inside[max(0, int(np.floor(y1))):max(0, int(np.ceil(y2)) + 1),
           max(0, int(np.floor(x1))):max(0, int(np.ceil(x2)) + 1)] = True
    mask = inside if foreground is None else inside & foreground
    return Person(mask=mask, bbox=np.array([x1, y1, x2, y2]), source="manual", area=int(mask.sum()))


def people_from_foreground(foreground: np.ndarray) -> list[Person]:
    """Connected components (8-connected) of an H x W bool mask, largest first."""
    labels, count = ndimage.label(foreground, structure=np.ones((3, 3), bool))
    if count == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    slices = ndimage.find_objects(labels)
    floor = max(areas.max() * MIN_FRACTION_OF_LARGEST, foreground.size * MIN_FRACTION_OF_PHOTO)
    people = []
    for index in np.argsort(-areas, kind="stable"):
        if areas[index] < floor:
            break
        rows, cols = slices[index]
        people.append(Person(
            mask=labels == index + 1,
            bbox=np.array([cols.start, rows.start, cols.stop - 1, rows.stop - 1], dtype=np.float64),
            source="segmentation", area=int(areas[index])))
    return people
