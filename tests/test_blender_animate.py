"""Image sequence / video input in real Blender (bpy): the panel's Animate runs the engine's
`animate` in a real engine subprocess and imports the skeleton with its action."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_support import action_fcurves, addon, keyframes, scene_snapshot  # noqa: E402,F401

pytestmark = pytest.mark.blender
FRAMES = 4
STEP_PX = 12  # the person moves this many pixels to the right per frame...
FARTHER = 0.04  # ...and this much farther from the camera (relative)


@pytest.fixture(scope="module")
def bundle_frames(shared_samples, tmp_path_factory) -> Path:
    """A folder of predicted bundles: one synthetic person walking right and away from the camera.

    Each frame is consistent with the camera: the maps move by whole pixels, every 3-D point moves
    so it still projects to its pixel (x + STEP_PX * z / fx), then the whole scene is scaled about
    the camera centre (which keeps every projection)."""
    from engine.bundle import Bundle, write_bundle

    sample = shared_samples / "person_101"
    maps = np.load(sample / "gt_maps.npz")
    keypoints = np.array(json.loads((sample / "keypoints.json").read_text())["keypoints"], np.float32)
    K = maps["K"].astype(np.float64)
    frames = tmp_path_factory.mktemp("sequence") / "walk"
    h, w = maps["mask"].shape
    for index in range(FRAMES):
        shift = STEP_PX * index
        pointmap = np.roll(maps["pointmap"].astype(np.float32), shift, axis=1)
        pointmap[..., 0] += shift * pointmap[..., 2] / K[0, 0]
        pointmap *= 1.0 + FARTHER * index
        moved = keypoints.copy()
        moved[:, 0] += shift
        bundle = Bundle(image=np.zeros((h, w, 3), np.uint8), mask=np.roll(maps["mask"], shift, axis=1),
                        keypoints=moved, seg=np.roll(maps["seg"], shift, axis=1), normal=None,
                        pointmap=pointmap, albedo=None, K=K)
        write_bundle(bundle, frames / f"frame_{index:03d}")
    return frames


def test_sequence_of_bundles_is_animated_and_imported_as_an_action(addon, bundle_frames):
    scene = bpy.context.scene
    settings = scene.sapiens
    settings.input_kind = "SEQUENCE"
    settings.frames_dir = str(bundle_frames)
    settings.animate.fps = 24
    settings.animate.smooth = False  # the motion is exact: keep it as it is

    assert bpy.ops.sapiens.run() == {"FINISHED"}

    status = bpy.context.window_manager.sapiens_status
    collection = bpy.data.collections[status.last_collection]
    assert collection.name == "walk" and status.message == "imported walk" and not status.error
    assert [o.type for o in collection.objects] == ["ARMATURE"], "a skeleton only, no mesh"
    armature = collection.objects[0]
    out_dir = next((Path(addon_user_dir()) / "cache").glob("walk-*/animation-*"))
    skeleton = json.loads((out_dir / "skeleton.json").read_text())
    summary = json.loads((out_dir / "animation.json").read_text())
    assert summary["frames"] == FRAMES and summary["fps"] == 24
    bones = armature.data.bones
    assert sorted(b.name for b in bones) == sorted(b["name"] for b in skeleton["bones"])
    for bone in skeleton["bones"]:
        parent = bones[bone["name"]].parent
        assert (parent.name if parent else None) == (bone["parent"] or None)

    # the action: every animated bone keyed on every frame of the sequence, from the scene's start
    assert scene.render.fps == 24 and scene.render.fps_base == 1.0
    fcurves = action_fcurves(armature)
    keyed_bones = {fc.data_path.split('"')[1] for fc in fcurves}
    assert len(keyed_bones) >= len(bones) // 2, keyed_bones
    expected_frames = scene.frame_start + np.arange(FRAMES)
    for fcurve in fcurves:
        np.testing.assert_allclose(keyframes(fcurve)[:, 0], expected_frames, atol=1e-4)
    assert scene.frame_end >= expected_frames[-1]

    # the imported pose follows the engine's frames: the root bone's head is the engine's root
    # position (avatar frame, +Y up) in Blender's axes, every frame; the person walks right and away
    root = next(b["name"] for b in skeleton["bones"] if not b["parent"])
    previous = None
    for index, frame in enumerate(expected_frames):
        engine_frame = json.loads((out_dir / "frames" / f"{index:06d}.json").read_text())
        x, y, z = engine_frame["root_position"]
        scene.frame_set(int(frame))
        head = np.array(armature.matrix_world @ armature.pose.bones[root].head)
        np.testing.assert_allclose(head, [x, -z, y], atol=2e-3, err_msg=f"frame {index}")
        if previous is not None:
            assert head[0] - previous[0] > 0.01 and head[1] - previous[1] > 0.01, (previous, head)
        previous = head


def addon_user_dir() -> str:
    from sapiens_blender import user_data

    return str(user_data.user_dir())


def test_unusable_sequence_inputs_are_explained(addon, tmp_path):
    settings = bpy.context.scene.sapiens
    before = scene_snapshot()
    settings.input_kind = "SEQUENCE"
    settings.frames_dir = str(tmp_path / "no_such_folder")
    with pytest.raises(RuntimeError, match="Choose a folder of frames.*no_such_folder"):
        bpy.ops.sapiens.run()
    settings.input_kind = "VIDEO"
    settings.video = str(tmp_path / "IMG_7.png")
    with pytest.raises(RuntimeError, match="IMG_7.png is not a video.*\\.mp4"):
        bpy.ops.sapiens.run()
    settings.input_kind = "SEQUENCE"
    settings.frames_dir = str(tmp_path)
    with pytest.raises(RuntimeError, match="Rebuild reuses a photo's predictions"):
        bpy.ops.sapiens.run(rebuild_only=True)
    # an empty folder reaches the engine, whose error comes back in words
    (tmp_path / "empty").mkdir()
    settings.frames_dir = str(tmp_path / "empty")
    with pytest.raises(RuntimeError, match="no frames in it"):
        bpy.ops.sapiens.run()
    assert scene_snapshot() == before


def test_video_goes_to_the_engine_decoded_then_predicted(addon, tmp_path):
    """A video through the panel: the engine decodes it and then needs checkpoints for its frames
    (none in this folder), which it says in words; nothing is added to the scene."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    video = tmp_path / "clip.mp4"
    writer = imageio_ffmpeg.write_frames(str(video), (64, 48), fps=12, macro_block_size=1)
    writer.send(None)
    for index in range(3):
        writer.send(np.full((48, 64, 3), 40 * index, np.uint8))
    writer.close()
    addon.checkpoint_dir = str(tmp_path / "no_checkpoints")
    settings = bpy.context.scene.sapiens
    settings.input_kind, settings.video = "VIDEO", str(video)
    before = scene_snapshot()
    with pytest.raises(RuntimeError, match="checkpoint"):
        bpy.ops.sapiens.run()
    status = bpy.context.window_manager.sapiens_status
    assert "no_checkpoints" in status.error and not status.running
    assert scene_snapshot() == before
