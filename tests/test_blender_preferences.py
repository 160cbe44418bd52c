"""Preferences in real Blender (bpy): model sizes per task reach the engine's predict in a form it
accepts, and Download Checkpoints builds the engine's real download command lines."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

bpy = pytest.importorskip("bpy")

from blender_support import REPO_ROOT, addon, scene_snapshot  # noqa: E402,F401

from sapiens_blender import checkpoint_download, preferences  # noqa: E402

pytestmark = pytest.mark.blender


def _set_sizes(prefs, **sizes) -> None:
    for task in preferences.TASKS:
        setattr(prefs, f"size_{task}", sizes.get(task, sizes.get("default", "0.4b")))


def test_size_menus_offer_only_sizes_with_task_checkpoints(addon):
    from engine.checkpoints import TASK_SIZES

    items = {item.identifier for item in addon.bl_rna.properties["size_pose"].enum_items}
    assert items == set(TASK_SIZES)


def test_model_sizes_are_sent_as_predict_accepts_them(addon):
    from engine.predict import parse_sizes

    tasks = list(preferences.TASKS)
    _set_sizes(addon, default="0.8b")
    assert addon.predict_options()["size"] == "0.8b"  # one size: a plain string
    assert parse_sizes(addon.predict_options()["size"], tasks) == dict.fromkeys(tasks, "0.8b")
    _set_sizes(addon, pose="1b", seg="0.8b", default="0.4b")
    size = addon.predict_options()["size"]
    json.dumps(size)  # it travels as JSON
    assert parse_sizes(size, tasks) == {"pose": "1b", "seg": "0.8b", "normal": "0.4b", "pointmap": "0.4b",
                                        "albedo": "0.4b"}
    assert parse_sizes(size, ["pose", "seg", "pointmap"])["pose"] == "1b"  # what animate asks for


def test_per_task_size_picks_that_checkpoint_in_a_real_predict(addon, tmp_path):
    """Through the operator and a real engine: pose at 1b, the rest at 0.4b, with only a (tiny)
    1b pose checkpoint installed. The engine runs the 1b pose model (its bundle records it); the
    build then stops for want of a pointmap, in words, and nothing enters the scene."""
    from engine.models.testing import write_tiny_checkpoint

    checkpoints = tmp_path / "checkpoints"
    write_tiny_checkpoint(checkpoints / "pose" / "sapiens2_1b_pose.safetensors", "pose", seed=1)
    addon.checkpoint_dir = str(checkpoints)
    addon.device = "cpu"
    _set_sizes(addon, pose="1b", default="0.4b")
    before = scene_snapshot()
    with pytest.raises(RuntimeError, match="pointmap"):
        bpy.ops.sapiens.run()
    from sapiens_blender import user_data

    bundle_json = next((user_data.cache_root()).glob("predictions/*/bundle.json"))  # the engine's cache
    models = json.loads(bundle_json.read_text())["provenance"]["models"]
    assert set(models) == {"pose"} and models["pose"]["size"] == "1b"
    assert scene_snapshot() == before


def _engine_download_parser() -> argparse.ArgumentParser:
    from engine.commands import download

    parser = argparse.ArgumentParser(exit_on_error=False)
    download.add_arguments(parser)
    return parser


def test_download_commands_match_the_engine_command(addon, tmp_path):
    from engine.checkpoints import UNPUBLISHED

    addon.checkpoint_dir = str(tmp_path / "ckpt")
    _set_sizes(addon, pose="1b", normal="1b", default="0.4b")
    commands = addon.download_commands()
    parser = _engine_download_parser()
    fetched = {}
    for command in commands:
        assert command[:4] == [sys.executable, "-m", "engine", "download"]
        args = parser.parse_args(command[4:])  # the engine's own arguments: unknown ones fail here
        assert args.checkpoints == str(tmp_path / "ckpt")
        for task in args.tasks.split(","):
            fetched[task] = args.size
    published = [t for t in preferences.TASKS if t not in UNPUBLISHED]
    assert fetched == {t: {"pose": "1b", "normal": "1b"}.get(t, "0.4b") for t in published}
    assert len(commands) == 2, "one call per size"
    # no checkpoint folder set: the engine's default (no --checkpoints)
    addon.checkpoint_dir = ""
    _set_sizes(addon, default="0.8b")
    (command,) = addon.download_commands()
    assert "--checkpoints" not in command and parser.parse_args(command[4:]).size == "0.8b"


def test_download_runs_the_commands_and_reports_a_failure(tmp_path):
    """The runner executes the commands in order and stops at the first failure with its exit code."""
    marker = tmp_path / "ran.txt"
    ok = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('one;')", "download"]
    failing = [sys.executable, "-c", "import sys; print('hub unreachable'); sys.exit(3)", "download", "--size", "1b"]
    never = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('never;')", "download"]
    job = checkpoint_download.CheckpointDownload([ok, failing, never], tmp_path / "logs" / "download.log").start()
    assert job.wait(60)
    assert job.state == "error" and "exit code 3" in job.summary and "--size 1b" in job.summary
    assert marker.read_text() == "one;"
    assert "hub unreachable" in (tmp_path / "logs" / "download.log").read_text()


def test_download_only_with_online_access(addon, tmp_path):
    prefs_system = bpy.context.preferences.system
    prefs_system.use_online_access = False
    assert not bpy.app.online_access
    assert not bpy.ops.sapiens.download_checkpoints.poll()
    with pytest.raises(RuntimeError, match="poll"):
        bpy.ops.sapiens.download_checkpoints()
    # allowed: the download starts (with an engine that has no hub access it fails, and says so)
    prefs_system.use_online_access = True
    try:
        assert bpy.app.online_access and bpy.ops.sapiens.download_checkpoints.poll()
        addon.checkpoint_dir = str(tmp_path / "ckpt")
        addon.engine_python = str(tmp_path / "missing" / "python")
        with pytest.raises(RuntimeError, match="does not exist.*Preferences"):
            bpy.ops.sapiens.download_checkpoints()
    finally:
        prefs_system.use_online_access = False
