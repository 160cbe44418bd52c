"""The panel, the preferences and the panel's Batch take their options from the engine's option
table (sapiens_blender/engine_options.json): every option is there, under the engine's name, with
the engine's default, and what they send passes the engine's own parameter check."""

from __future__ import annotations

import argparse

import pytest

bpy = pytest.importorskip("bpy")

from blender_support import addon  # noqa: E402,F401  (a fixture)
from sapiens_blender import option_table  # noqa: E402

pytestmark = pytest.mark.blender


def _property_names(owner) -> set[str]:
    return {p.identifier for p in owner.bl_rna.properties} - {"rna_type", "name"}


@pytest.mark.parametrize("job", ["avatar", "animate"])
def test_every_option_of_the_job_has_a_property(addon, job):
    settings = bpy.context.scene.sapiens
    panel = _property_names(getattr(settings, job))
    preferences = _property_names(addon.model) | {"size", "device", "checkpoints"}  # own settings for these
    for spec in option_table.job_options(job):
        where = preferences if spec.group == option_table.MODEL_GROUP else panel
        assert spec.name in where, f"{job} option {spec.name} reaches neither the panel nor the preferences"
    assert {"rig", "rest_pose", "formats"} <= _property_names(settings.avatar)


@pytest.mark.parametrize("job", ["avatar", "animate"])
def test_untouched_panel_sends_the_engines_defaults(addon, job, tmp_path):
    from engine.options import validate

    settings = bpy.context.scene.sapiens
    params = settings.avatar_params() if job == "avatar" else settings.animate_params()
    required = {"photos": [str(tmp_path / "a.png")]} if job == "avatar" else {"frames": str(tmp_path)}
    required["out_dir"] = str(tmp_path / "out")
    engine_defaults = validate(job, required)
    for name, value in params.items():
        assert engine_defaults[name] == value, name


def test_panel_choices_arrive_as_engine_parameters(addon, tmp_path):
    from engine.options import validate

    settings = bpy.context.scene.sapiens
    options = settings.avatar
    options.rig, options.rest_pose, options.max_faces, options.formats = "mixamo", "tpose", 20000, {"glb", "usd"}
    options.watertight, options.detail, options.bbox = True, "none", (10, 20, 300, 400)
    addon.model.backend, addon.model.batch_size = "onnxruntime", 2
    addon.device = "cpu"
    params = {**addon.predict_options("avatar"), **settings.avatar_params()}
    assert {k: params[k] for k in ("rig", "rest_pose", "max_faces", "formats", "watertight", "detail", "bbox",
                                   "backend", "batch_size", "device")} == {
        "rig": "mixamo", "rest_pose": "tpose", "max_faces": 20000, "formats": ["glb", "usd"], "watertight": True,
        "detail": "none", "bbox": [10, 20, 300, 400], "backend": "onnxruntime", "batch_size": 2, "device": "cpu"}
    validate("avatar", {**params, "photos": [str(tmp_path / "a.png")], "out_dir": str(tmp_path / "o")})
    options.max_faces, options.rig = 0, "NONE"  # back to "not set": left out, the engine decides
    params = settings.avatar_params()
    assert "max_faces" not in params
    # the rig's "None" is off, not the default (a rig): sent as "none", the engine builds no rig
    assert params["rig"] == "none"
    assert validate("avatar", {**params, "photos": [str(tmp_path / "a.png")], "out_dir": str(tmp_path / "o")})["rig"] is None


def test_batch_button_passes_the_preferences_model_options(addon, tmp_path):
    from sapiens_blender import batch
    from sapiens_blender.operators import batch_arguments

    addon.checkpoint_dir = str(tmp_path / "ckpt")
    addon.device = "cpu"
    addon.size_pose = "1b"
    addon.model.dtype = "fp32"
    args = batch_arguments(addon, str(tmp_path / "list.yaml"))
    assert args[0] == str(tmp_path / "list.yaml")
    parser = argparse.ArgumentParser()
    parser.add_argument("list")
    parser.add_argument("--engine-python")
    parser.add_argument("--engine-source")
    batch._add_model_arguments(parser)
    given = batch.base_options_from(parser.parse_args(args))
    assert given["checkpoints"] == str(tmp_path / "ckpt") and given["device"] == "cpu" and given["dtype"] == "fp32"
    assert given["size"] == {"pose": "1b", "seg": "0.4b", "normal": "0.4b", "pointmap": "0.4b", "albedo": "0.4b"}
