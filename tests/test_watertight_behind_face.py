"""The one-photo solid's back of the head behind the face takes the hair's class
(watertight._behind_the_face; docs/avatar.md, thirteenth session).

Made from the front pixel it lies behind, each back sample took that pixel's class: the back of
the head behind the face was labelled Face_Neck (bench_closed's largest label confusion). The
labels change, the samples and the solid do not.
"""

from __future__ import annotations

import numpy as np

from engine.geometry.labels import class_ids
from engine.geometry.watertight import _behind_the_face
from geometry_truth import closed_labels_toggled, true_classes_at

FACE, HAIR = (int(i) for i in class_ids(["Face_Neck", "Hair"]))


def _head(hair=True):
    """A head seen from the front, 1 cm pixels at 2 m: hair in rows 0-5 and in columns 0-2 and
    17-19 down to row 14, the face (Face_Neck) inside it and the neck below, rows 20-39; the
    face's back 20 cm behind its front, the neck's 9 cm."""
    h, w = 40, 20
    cls = np.full((h, w), FACE, np.int64)
    if hair:
        cls[:6] = HAIR
        cls[:15, :3] = HAIR
        cls[:15, 17:] = HAIR
    valid = np.ones((h, w), bool)
    depth = np.full((h, w), 2.0)
    thickness = np.full((h, w), 0.20)
    thickness[20:] = 0.09
    footprint = np.full((h, w), 0.01)
    return cls, valid, depth, thickness, footprint


def test_the_back_of_the_head_behind_the_face_is_the_hairs():
    cls, valid, depth, thickness, footprint = _head()
    out = _behind_the_face(cls.copy(), cls, valid, depth, thickness, footprint)
    face = cls == FACE
    # 20 cm behind the face, hair within 8 cm above it or 12 cm beside it on its row: the head's back is hair
    assert (out[6:15, 3:17] == HAIR).all()
    # below the side hair's rows and more than 8 cm below the top's: the face's
    assert (out[15:, 3:17] == FACE).all()
    # the neck's back (9 cm deep, less than 12 cm behind the hair's front) keeps the face's class
    assert (out[20:] == FACE).all()
    np.testing.assert_array_equal(out[~face], cls[~face])


def test_a_face_without_hair_near_it_keeps_its_class():
    cls, valid, depth, thickness, footprint = _head(hair=False)
    np.testing.assert_array_equal(_behind_the_face(cls.copy(), cls, valid, depth, thickness, footprint), cls)
    # hair only above (rows 0-5), 2 cm pixels: the face within 8 cm below it is hair, farther not
    cls, valid, depth, thickness, footprint = _head()
    cls[6:] = FACE
    footprint[:] = 0.02
    out = _behind_the_face(cls.copy(), cls, valid, depth, thickness, footprint)
    assert (out[6:10] == HAIR).all()
    assert (out[10:] == FACE).all()


def test_a_shallow_back_keeps_the_faces_class():
    # the face's back 9 cm behind its front: not behind the hair's front by 12 cm
    cls, valid, depth, thickness, footprint = _head()
    thickness[:] = 0.09
    np.testing.assert_array_equal(_behind_the_face(cls.copy(), cls, valid, depth, thickness, footprint), cls)


def test_the_nape_below_the_hairs_rows_keeps_the_faces_class():
    # hair only at the sides down to row 14 (none above the face): a face pixel below the hair's
    # rows is near it in the image (5 px away on the diagonal) but has no hair on its row or above
    cls, valid, depth, thickness, footprint = _head()
    cls[:6, 3:17] = FACE
    out = _behind_the_face(cls.copy(), cls, valid, depth, thickness, footprint)
    assert (out[18:20, 4:16] == FACE).all()
    # beside the side hair, on its rows: hair
    assert (out[6:15, 3:16] == HAIR).all()


def test_the_closed_solid_labels_the_back_of_the_head_as_the_truth_has_it(monkeypatch):
    """engine.synthetic's bent-101 (bench_closed's held-out person): the closed solid's vertices
    are the same with and without the relabelling; the vertices whose label changes go from the
    face to the hair, mostly where the nearest true outer surface is the hair's."""
    person, before, after, vertices = closed_labels_toggled(monkeypatch, "BEHIND_FACE")
    changed = before != after
    assert changed.sum() > 100
    assert (before[changed] == FACE).all()
    assert (after[changed] == HAIR).all()
    truth = true_classes_at(person, vertices[changed])  # the true mesh's class nearest each
    assert (truth == HAIR).mean() > 0.8
