"""Joint lifting on the project's generated people (engine.synthetic): 3-D error against the true
joint centres, exact and degraded predictions, named and random poses."""

from __future__ import annotations

import numpy as np
import pytest

from engine.rig.lift import lift_joints
from engine.synthetic import degrade, make_person

METRIC_JOINTS = [f"{j}_{s}" for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle") for s in "LR"] + ["neck"]
CASES = [(0, "apose"), (1, "bent"), (2, "step"), (3, "arms_forward"), (4, None), (5, None), (6, None), (7, None)]
# bounds from measurement (384 x 512 renders): mean over the cases 1.29 cm exact, 2.62 cm degraded
# since lift.py checks limb joints against their bone length (1.64 / 2.75 before: a forearm toward
# the camera covers the elbow, lifted 10 cm too close in "bent"; 3.2 / 3.8 before width walks
# stopped at the mirror limb's bisector). Left: wrists behind their own hand and ankles behind an
# oblique shin lift 4-6 cm too close with bone lengths still plausible (seeds 2, 3, 6)
EXACT_MEAN_BOUND_CM = 3.0
DEGRADED_MEAN_BOUND_CM = 4.5
# poses without self-occlusion (measured 0.4-1.1 cm)
SEEN_POSE_BOUND_CM = 1.5


def joint_errors_cm(person, predicted) -> dict[str, float]:
    joints = lift_joints(predicted.keypoints, predicted.pointmap, predicted.seg, predicted.K, mask=predicted.mask)
    assert np.isfinite(joints.positions).all()
    return {n: float(np.linalg.norm(joints.get(n) - person.joints3d_camera[n]) * 100) for n in METRIC_JOINTS}


@pytest.fixture(scope="module")
def errors():
    out = {}
    for seed, pose in CASES:
        person = make_person(seed, pose=pose, width=384, height=512)
        out[(seed, pose)] = (joint_errors_cm(person, person), joint_errors_cm(person, degrade(person, seed=seed)))
    return out


def test_exact_predictions_within_goal(errors):
    means = {case: np.mean(list(exact.values())) for case, (exact, _) in errors.items()}
    assert np.mean(list(means.values())) < EXACT_MEAN_BOUND_CM, means
    for case in [(0, "apose"), (1, "bent"), (2, "step"), (5, None), (7, None)]:
        assert means[case] < SEEN_POSE_BOUND_CM, (case, errors[case][0])


def test_degraded_predictions_within_goal(errors):
    means = {case: np.mean(list(degraded.values())) for case, (_, degraded) in errors.items()}
    assert np.mean(list(means.values())) < DEGRADED_MEAN_BOUND_CM, means


def test_hips_between_touching_thighs(errors):
    """Both thighs in one label (trousers): the width walk must not run across onto the other
    leg (it did, doubling the hip radius and pushing hips ~10 cm too deep)."""
    for case in [(0, "apose"), (1, "bent"), (2, "step"), (5, None)]:
        exact = errors[case][0]
        assert max(exact["hip_L"], exact["hip_R"]) < 3.0, (case, exact["hip_L"], exact["hip_R"])
