"""Feet planted on the retargeted character (engine/motion/retarget_feet.py): a grounded synthetic
motion (its true foot contacts) onto characters whose legs are proportioned unlike the motion's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.motion.retarget import plan_retarget, retarget
from engine.motion.retarget_feet import foot_points, lock_target_feet, target_skate_mm
from engine.motion.retarget_output import retarget_to_dir
from engine.motion.retarget_sources import read_motion
from engine.motion.retarget_synthetic import character, humanoid_parts, synthetic_motion, write_motion_dir

FRAMES = 40


@pytest.fixture(scope="module")
def squat():
    return synthetic_motion("squat", FRAMES)


def test_longer_shins_slide_until_the_feet_are_locked(squat):
    assert squat.contact is not None and squat.contact.any()
    target = character(squat.skeleton, rest_pose="tpose", roll_seed=5, shin_scale=1.25, names="mixamo")
    plan = plan_retarget(squat.skeleton, target)
    result = retarget(plan, squat.world, squat.fps)
    planted, report = lock_target_feet(plan, squat.world, result, squat.contact)
    before, after = report["skate_mm_per_frame"]["before"], report["skate_mm_per_frame"]["after"]
    assert before > 1.0 and after < 0.1 * before, report          # measured 2.07 -> 0.00 mm per frame
    assert after == pytest.approx(target_skate_mm(plan, planted, squat.contact), abs=1e-3)
    tp = humanoid_parts(target)
    # only the legs changed: the hips, the spine and the arms are where they were
    for part in ("hips", "chest", "head", "leftHand", "rightHand"):
        np.testing.assert_allclose(planted.world[:, tp[part]], result.world[:, tp[part]], atol=1e-9)
    # the feet keep their world rotation; the standing foot's ankle stays on one spot of the floor
    # through a run (its height only where the leg reaches: the hips are not lowered, a leg out of
    # reach stops straight)
    for side, k in (("left", 0), ("right", 1)):
        foot = tp[f"{side}Foot"]
        np.testing.assert_allclose(planted.world[:, foot, :3, :3], result.world[:, foot, :3, :3], atol=1e-9)
        for a, b in report["contact_frames"]["LR"[k]]:
            ankle = planted.world[a:b, foot, :3, 3][:, [0, 2]]
            assert np.abs(ankle - ankle[0]).max() < 1e-3
    # the legs keep their lengths
    for side in ("left", "right"):
        hip, knee, ankle = (planted.world[:, tp[side + p], :3, 3] for p in ("UpperLeg", "LowerLeg", "Foot"))
        rest = target.heads[[tp[side + p] for p in ("UpperLeg", "LowerLeg", "Foot")]]
        np.testing.assert_allclose(np.linalg.norm(knee - hip, axis=1), np.linalg.norm(rest[1] - rest[0]), rtol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(ankle - knee, axis=1), np.linalg.norm(rest[2] - rest[1]), rtol=1e-6)


def test_same_proportions_are_left_alone(squat):
    target = character(squat.skeleton, rest_pose="apose", roll_seed=2, scale=1.2, names="unreal")
    plan = plan_retarget(squat.skeleton, target)
    result = retarget(plan, squat.world, squat.fps)
    planted, report = lock_target_feet(plan, squat.world, result, squat.contact)
    assert report["skate_mm_per_frame"]["before"] < 0.01        # uniformly scaled: nothing slides
    feet = np.concatenate(foot_points(plan, planted.world), 1)
    np.testing.assert_allclose(feet, np.concatenate(foot_points(plan, result.world), 1), atol=1e-4)


def test_the_job_reads_contacts_and_reports_feet(tmp_path):
    motion = write_motion_dir(tmp_path / "jump", "jump", 30)
    frame = json.loads((motion / "frames" / "000000.json").read_text())
    assert set(frame["contacts"]) == {"L", "R"}
    assert read_motion(motion).contact.shape == (30, 2)
    target = character(read_motion(motion).skeleton, rest_pose="tpose", shin_scale=0.8)
    bones = [{"name": n, "parent": target.names[p] if p >= 0 else None, "head": target.heads[b].tolist(),
              "tail": target.tails[b].tolist(), "z_axis": target.rest[b, :3, 2].tolist()}
             for b, (n, p) in enumerate(zip(target.names, target.parents))]
    (tmp_path / "short_shins.json").write_text(json.dumps({"format": "sapiens-skeleton", "bones": bones}))
    locked = retarget_to_dir(motion, tmp_path / "short_shins.json", tmp_path / "locked", formats=["glb"])
    loose = retarget_to_dir(motion, tmp_path / "short_shins.json", tmp_path / "loose", formats=["glb"], feet="off")
    skate = locked["feet"]["skate_mm_per_frame"]
    assert locked["feet"]["locked"] and skate["after"] < 0.2 * skate["before"], skate
    assert not loose["feet"]["locked"]
    written = json.loads((tmp_path / "locked" / "animation.json").read_text())
    assert written["retarget"]["feet"] == locked["feet"]
    # a motion without contacts (animate --feet off) is retargeted as it is, and says so
    for f in (motion / "frames").glob("*.json"):
        doc = json.loads(f.read_text())
        doc.pop("contacts")
        f.write_text(json.dumps(doc))
    plain = retarget_to_dir(motion, tmp_path / "short_shins.json", tmp_path / "plain", formats=["glb"])
    assert not plain["feet"]["locked"] and "no foot contacts" in plain["feet"]["note"]
