"""Helpers of the add-on's bpy tests: the add-on enabled with a real engine, scene snapshots, fcurves.

Import with `from blender_support import addon, scene_snapshot` (pytest finds the fixture through
the import). Needs bpy; the test modules importorskip it before importing this.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import addon_utils
import bpy
import numpy as np
import pytest

from sapiens_blender.engine_session import SESSION

REPO_ROOT = Path(__file__).resolve().parent.parent


def scene_snapshot() -> dict:
    return {
        kind: sorted(d.name for d in getattr(bpy.data, kind))
        for kind in ("objects", "meshes", "armatures", "materials", "images", "actions", "collections")
    }


@pytest.fixture
def addon(tmp_path, monkeypatch):
    """The add-on enabled in a fresh scene, its engine set to this interpreter + this checkout."""
    monkeypatch.setenv("SAPIENS_BLENDER_USER_DIR", str(tmp_path / "user"))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("sapiens_blender", default_set=True, handle_error=None)
    prefs = bpy.context.preferences.addons["sapiens_blender"].preferences
    prefs.engine_python = sys.executable
    prefs.engine_source = str(REPO_ROOT)
    photo = tmp_path / "IMG_7.png"
    from PIL import Image

    Image.new("RGB", (32, 48), (90, 90, 90)).save(photo)
    bpy.context.scene.sapiens.photo = str(photo)
    yield prefs
    addon_utils.disable("sapiens_blender", default_set=True, handle_error=None)
    assert SESSION.current is None, "unregister stops the engine"


def with_debug_job(monkeypatch, steps: int) -> None:
    """Runs start with the engine's debug.sleep job (progress without models) for `steps` steps:
    the add-on's start_run takes it as an argument; the operators carry no test hook."""
    from sapiens_blender import operators

    start_run = getattr(operators.start_run, "real", operators.start_run)

    def with_debug(context, report, **kw):
        return start_run(context, report, debug_sleep_steps=steps, **kw)

    with_debug.real = start_run
    monkeypatch.setattr(operators, "start_run", with_debug)


@pytest.fixture(scope="session")
def rigify_avatar(tmp_path_factory) -> Path:
    """The bundled sample built by the real engine with the Rigify rig (small: no detail, quarter
    resolution, 512 px textures)."""
    import subprocess

    from engine.paths import asset

    out = tmp_path_factory.mktemp("rigify") / "sample"
    command = [sys.executable, "-m", "engine", "build", str(asset("sample")), "--out", str(out), "--rig", "rigify",
               "--detail", "none", "--resolution", "quarter", "--texture-size", "512"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def evaluated_positions(obj) -> np.ndarray:
    """World-space vertex positions of `obj` after its modifiers (the deformed mesh)."""
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    try:
        co = np.empty(3 * len(mesh.vertices), np.float32)
        mesh.vertices.foreach_get("co", co)
    finally:
        evaluated.to_mesh_clear()
    co = co.reshape(-1, 3).astype(np.float64)
    matrix = np.array(obj.matrix_world)
    return co @ matrix[:3, :3].T + matrix[:3, 3]


def action_fcurves(obj) -> list:
    """The fcurves of the action assigned to `obj` (layered actions of 4.4+, or legacy ones)."""
    data = obj.animation_data
    if data is None or data.action is None:
        return []
    action = data.action
    if hasattr(action, "fcurves") and not hasattr(action, "slots"):
        return list(action.fcurves)
    from bpy_extras import anim_utils

    channelbag = anim_utils.action_get_channelbag_for_slot(action, data.action_slot)
    return list(channelbag.fcurves) if channelbag else []


def keyframes(fcurve) -> np.ndarray:
    """K x 2 (frame, value) of an fcurve."""
    co = np.empty(2 * len(fcurve.keyframe_points), np.float32)
    fcurve.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


def bundle_from_shared_sample(sample: Path, out: Path) -> Path:
    """A predictions bundle holding a shared synthetic person's exact maps (what a perfect model gives)."""
    from PIL import Image

    from engine.bundle import Bundle, write_bundle

    maps = np.load(sample / "gt_maps.npz")
    keypoints = np.array(json.loads((sample / "keypoints.json").read_text())["keypoints"], np.float32)
    bundle = Bundle(
        image=np.array(Image.open(sample / "image.png").convert("RGB")),
        mask=maps["mask"], keypoints=keypoints, seg=maps["seg"], normal=maps["normal"],
        pointmap=maps["pointmap"], albedo=maps["albedo"], K=maps["K"].astype(np.float64),
    )
    write_bundle(bundle, out)
    return out
