"""Planted feet as a Blender user sees them: the animate output of a synthetic walk imported with
Blender's glTF importer; the foot and toe bones evaluated frame by frame stay put while the
manifest says the foot stands, as much as the manifest reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

FPS = 30.0
FEET_BONES = {"L": ("foot.L", "toe.L"), "R": ("foot.R", "toe.R")}


def test_imported_walk_keeps_its_standing_feet(tmp_path):
    from engine.bundle import write_bundle
    from engine.motion.animate import animate_frames
    from engine.synthetic import degrade, make_sequence, to_bundle
    frames = make_sequence(24, "walk_line", fps=FPS, width=192, height=256, yaw_deg=35.0)
    for i, f in enumerate(frames):
        write_bundle(to_bundle(degrade(f, seed=i)), tmp_path / "b" / f"{i:04d}")
    anim = animate_frames(tmp_path / "b", tmp_path / "anim", fps=FPS)
    feet = json.loads((anim / "animation.json").read_text())["feet"]

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = int(FPS)                   # one glTF key per scene frame
    bpy.ops.import_scene.gltf(filepath=str(anim / "animation.glb"))
    arm = next(o for o in scene.objects if o.type == "ARMATURE")
    points = []
    for f in range(len(frames)):
        scene.frame_set(f)
        row = []
        for side in "LR":
            for name in FEET_BONES[side]:
                pb = arm.pose.bones[name]
                row += [np.array(arm.matrix_world @ pb.head), np.array(arm.matrix_world @ pb.tail)]
        points.append(row)
    points = np.array(points)                     # T x 8 x 3, Blender's Z up
    slides = []
    for k, side in enumerate("LR"):
        standing = np.zeros(len(frames), bool)
        for a, b in feet["contact_frames"][side]:
            standing[a:b] = True
        step = np.diff(points[:, 4 * k:4 * k + 4], axis=0)[..., :2]
        slides.append(np.linalg.norm(step[standing[1:] & standing[:-1]], axis=-1).ravel())
    skate = float(np.concatenate(slides).mean() * 1000)
    assert skate < 5.0, skate
    assert abs(skate - feet["skate_mm_per_frame"]["after_on_bones"]) < 0.5, (skate, feet)
    assert feet["skate_mm_per_frame"]["before"] > 3 * skate
    assert points[..., 2].min() > -0.04           # no foot deep in the floor (ground z = 0)
