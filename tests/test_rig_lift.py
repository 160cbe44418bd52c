"""Joint lifting on the shared synthetic people: 3-D error against their true joint centres."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.errors import BundleError
from engine.rig.lift import LIFTED, lift_joints

PEOPLE = ("person_101", "person_102", "person_103")
METRIC_JOINTS = [f"{j}_{s}" for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle") for s in "LR"] + ["neck"]
# bounds set from measurement (docs/rig.md): exact 0.94 cm, degraded 2.2 cm mean over the three
EXACT_BOUND_CM = 1.5
DEGRADED_BOUND_CM = 3.5


def load(samples, person):
    d = samples / person
    maps = np.load(d / "gt_maps.npz")
    kp = np.array(json.loads((d / "keypoints.json").read_text())["keypoints"], np.float64)
    gt = json.loads((d / "gt.json").read_text())["joints3d_camera"]
    return maps, kp, gt


def mean_error_cm(joints, gt) -> float:
    return float(np.mean([np.linalg.norm(joints.get(n) - np.asarray(gt[n])) for n in METRIC_JOINTS]) * 100)


def test_exact_predictions_within_bound(shared_samples):
    errors = []
    for person in PEOPLE:
        maps, kp, gt = load(shared_samples, person)
        joints = lift_joints(kp, maps["pointmap"], maps["seg"], maps["K"], mask=maps["mask"])
        errors.append(mean_error_cm(joints, gt))
        assert np.isfinite(joints.positions).all()
        assert ((joints.confidence >= 0) & (joints.confidence <= 1)).all()
    assert np.mean(errors) < EXACT_BOUND_CM, errors
    assert max(errors) < 2 * EXACT_BOUND_CM, errors


def test_degraded_predictions_within_bound(shared_samples):
    rng = np.random.default_rng(7)
    errors = []
    for person in PEOPLE:
        maps, kp, gt = load(shared_samples, person)
        pointmap = maps["pointmap"] + rng.normal(0, 0.01, maps["pointmap"].shape).astype(np.float32)
        noisy = kp.copy()
        noisy[:, :2] += rng.normal(0, 3.0, noisy[:, :2].shape)
        joints = lift_joints(noisy, pointmap, maps["seg"], maps["K"], mask=maps["mask"])
        errors.append(mean_error_cm(joints, gt))
    assert np.mean(errors) < DEGRADED_BOUND_CM, errors


def test_hidden_joints_are_filled_not_lifted_onto_the_occluder(shared_samples):
    maps, kp, gt = load(shared_samples, "person_101")   # right ankle hidden behind the left foot
    joints = lift_joints(kp, maps["pointmap"], maps["seg"], maps["K"], mask=maps["mask"])
    i = joints.index("ankle_R")
    assert joints.status[i] != LIFTED
    assert joints.confidence[i] < 0.5
    # the surface seen at that pixel is the occluder, > 10 cm in front of the true joint
    assert np.linalg.norm(joints.get("ankle_R") - np.asarray(gt["ankle_R"])) < 0.05


def test_inward_offset_matters(shared_samples):
    """Without moving inward the error would be the limb radius: the lift must beat the surface."""
    maps, kp, gt = load(shared_samples, "person_103")
    joints = lift_joints(kp, maps["pointmap"], maps["seg"], maps["K"], mask=maps["mask"])
    surface_err = []
    lifted_err = []
    for n in ("elbow_R", "knee_L", "knee_R"):
        i = joints.index(n)
        x, y = kp[[7, 8, 11, 12][["elbow_L", "elbow_R", "knee_L", "knee_R"].index(n)], :2]
        surface_err.append(np.linalg.norm(maps["pointmap"][int(y), int(x)] - gt[n]))
        lifted_err.append(np.linalg.norm(joints.positions[i] - gt[n]))
    assert np.mean(lifted_err) < 0.25 * np.mean(surface_err)


def test_missing_pointmap_is_a_clear_error():
    with pytest.raises(BundleError, match="pointmap"):
        lift_joints(np.zeros((308, 3)), None, None, np.eye(3))
