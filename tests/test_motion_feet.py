"""Feet and ground (issue 12): contacts, the ground plane, feet locked by two-bone leg IK, the
body kept above the floor, foot skate before and after. On engine.synthetic grounded motions,
whose ground truth has planted feet and contact labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.motion.contacts import detect_contacts, fit_ground, foot_skate_mm
from engine.motion.feet import lock_feet
from engine.rig.joints import joint_names
from engine.synthetic import make_motion

FPS = 30.0
# the engine's foot joints from the synthetic skeleton's (one toe joint there: both toes on it)
FROM_SYNTHETIC = {"big_toe": "toe", "small_toe": "toe"}


def engine_tracks(track, noise_m=0.0, seed=0) -> tuple[list[str], np.ndarray]:
    """The truth as the engine's joint tracks (avatar axes: x, -y, -z of the camera), with
    per-frame jitter like lifted joints after smoothing."""
    names = [n for n in joint_names() if n[:-2] in ("neck", "shoulder", "hip", "knee", "ankle", "heel",
                                                     "big_toe", "small_toe")]
    cols = []
    for n in names:
        base, side = (n[:-2], n[-2:]) if n[-2:] in ("_L", "_R") else (n, "")
        cols.append(track.joint(FROM_SYNTHETIC.get(base, base) + side))
    tracks = np.stack(cols, 1) * np.array([1.0, -1.0, -1.0])
    rng = np.random.default_rng(seed)
    return names, tracks + rng.normal(0.0, noise_m, tracks.shape)


@pytest.fixture(scope="module")
def walk():
    return make_motion(60, "walk_line", fps=FPS, yaw_deg=30.0)


def truth_up(track) -> np.ndarray:
    up, _ = track.ground_camera()
    return up * np.array([1.0, -1.0, -1.0])


def test_ground_plane_from_the_feet(walk):
    names, tracks = engine_tracks(walk, noise_m=0.005)
    normal, _ = fit_ground(tracks, names, FPS)
    angle = np.degrees(np.arccos(np.clip(normal @ truth_up(walk), -1, 1)))
    assert angle < 3.0, angle


def test_contacts_follow_the_truth(walk):
    names, tracks = engine_tracks(walk, noise_m=0.005)
    normal, d = fit_ground(tracks, names, FPS)
    contact = detect_contacts(tracks, names, FPS, normal, d)
    agree = (contact == walk.contacts).mean()
    assert agree > 0.85, agree
    assert contact.any(0).all()


@pytest.mark.parametrize("motion", ["walk_line", "side_step", "turn", "squat"])
def test_locked_feet_stop_skating(motion):
    track = make_motion(60, motion, fps=FPS, yaw_deg=30.0)
    names, tracks = engine_tracks(track, noise_m=0.01, seed=1)
    out, report, contact, moved = lock_feet(tracks, names, FPS)
    up = np.array([0.0, 1.0, 0.0])            # lock_feet levels its output: the ground is y = 0
    before = foot_skate_mm(tracks, names, track.contacts, truth_up(track))
    after = foot_skate_mm(out, names, track.contacts, up)
    assert before > 8.0 and after < 5.0, (before, after)
    assert report["skate_mm_per_frame"]["after"] < report["skate_mm_per_frame"]["before"]
    # the legs keep their lengths (two-bone IK), the soles stay on or above the ground
    for side in "LR":
        hip, knee, ankle = (names.index(f"{j}_{side}") for j in ("hip", "knee", "ankle"))
        for a, b in ((hip, knee), (knee, ankle)):
            lengths = np.linalg.norm(out[:, a] - out[:, b], axis=1)
            assert np.ptp(lengths[moved[:, "LR".index(side)]]) < 1e-6
    feet = [names.index(n) for n in names if n[:-2] in ("ankle", "heel", "big_toe", "small_toe")]
    assert out[:, feet, 1][np.repeat(contact, len(feet) // 2, axis=1)].min() >= -1e-9


def test_body_never_sinks_through_the_floor(walk):
    names, tracks = engine_tracks(walk)
    tracks = tracks.copy()
    tracks[20:24] += np.array([0.0, -0.15, 0.0])      # four frames sunk 15 cm (a bad depth)
    out, report, _, _ = lock_feet(tracks, names, FPS)
    feet = [names.index(n) for n in names if n[:-2] in ("ankle", "heel", "big_toe", "small_toe")]
    assert out[20:24, feet, 1].min() > -0.021
    assert report["frames_lifted_out_of_the_ground"] >= 4


def test_animate_reports_skate_and_plants_its_bones(tmp_path):
    """Rendered walk along a line, exact predictions, the animate pipeline end to end: the
    manifest reports the skate before and after, and the written bones stay planted."""
    from engine.bundle import write_bundle
    from engine.motion.animate import animate_frames
    from engine.synthetic import make_sequence, to_bundle
    frames = make_sequence(24, "walk_line", fps=FPS, width=192, height=256, yaw_deg=30.0)
    for i, f in enumerate(frames):
        write_bundle(to_bundle(f), tmp_path / "b" / f"{i:04d}")
    anim = animate_frames(tmp_path / "b", tmp_path / "anim", fps=FPS)
    feet = json.loads((anim / "animation.json").read_text())["feet"]
    skate = feet["skate_mm_per_frame"]
    assert feet["mode"] == "lock" and feet["contact_frames"]["L"] and feet["contact_frames"]["R"]
    assert skate["after"] < 0.5 * skate["before"] and skate["after_on_bones"] < 5.0, skate
    first_stance = feet["contact_frames"]["L"][0][0]
    frame = json.loads((anim / "frames" / f"{first_stance:06d}.json").read_text())
    assert frame["contacts"]["L"] is True
    off = animate_frames(tmp_path / "b", tmp_path / "off", fps=FPS, feet="off")
    assert "contacts" not in json.loads((off / "frames" / "000000.json").read_text())
    assert json.loads((off / "animation.json").read_text())["feet"] == {"mode": "off"}
