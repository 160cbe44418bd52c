"""Pieces of the closed hands' join made cheaper with the same results as the plain forms
(engine.geometry.detail_solid): the new vertices' labels looked up among the labelled points near
them only (_nearest_labels) against labels.transfer_labels over all of them."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry import labels as labels_module
from engine.geometry.detail_solid import _nearest_labels
from engine.geometry.labels import transfer_labels


@pytest.fixture
def plain_calls(monkeypatch):
    """How many times _nearest_labels fell back to transfer_labels."""
    calls = []

    def counted(*args):
        calls.append(args)
        return transfer_labels(*args)

    monkeypatch.setattr(labels_module, "transfer_labels", counted)
    return calls


def _source(seed, n=20_000):
    rng = np.random.default_rng(seed)
    points = rng.uniform(-0.5, 0.5, (n, 3))
    labels = rng.integers(0, 6, n).astype(np.uint8)  # 0: unlabelled, skipped by both
    return points, labels


def test_nearest_labels_are_transfer_labels(plain_calls):
    points, labels = _source(1)
    rng = np.random.default_rng(2)
    # dense samples round a small region (a hand's), the new vertices among them
    dense = rng.uniform(0.05, 0.25, (30_000, 3))
    points = np.concatenate([points, dense])
    labels = np.concatenate([labels, rng.integers(0, 6, len(dense)).astype(np.uint8)])
    query = rng.uniform(0.1, 0.2, (800, 3))
    got = _nearest_labels(points, labels, query)
    assert got.dtype == np.uint8 and np.array_equal(got, transfer_labels(points, labels, query))
    # not every label the same: the lookup decides something; and the points near them did
    assert len(np.unique(got)) > 2 and not plain_calls


def test_ties_and_far_points_take_the_plain_lookup(plain_calls):
    points, labels = _source(3)
    # a query exactly halfway between two labelled points of different labels (and nearer them
    # than to any other): a smaller tree could pick the other one, so the whole lookup decides
    a, b = np.array([0.3125, 0.25, 0.125]), np.array([0.3125, 0.25, 0.1328125])
    points = np.concatenate([points, [a, b]])
    labels = np.concatenate([labels, [1, 2]]).astype(np.uint8)
    tie = np.array([[0.3125, 0.25, 0.12890625]])
    assert np.array_equal(_nearest_labels(points, labels, tie), transfer_labels(points, labels, tie))
    assert len(plain_calls) == 1
    # a point farther from every labelled one than half the margin
    far = np.array([[3.0, 3.0, 3.0], [0.0, 0.0, 0.0]])
    assert np.array_equal(_nearest_labels(points, labels, far), transfer_labels(points, labels, far))
    assert len(plain_calls) == 2


def test_no_labelled_point_gives_zeros():
    points, _ = _source(4, 100)
    out = _nearest_labels(points, np.zeros(100, np.uint8), points[:5])
    assert out.dtype == np.uint8 and not out.any()
