"""The option table (engine/options.py): validation, argparse, the add-on's JSON export."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import options
from engine.options import OptionError, validate

REPO = Path(__file__).resolve().parent.parent

PREDICT = {"photos": ["a.jpg"], "out_dir": "out"}
BUILD = {"bundle_dir": "bundle", "out_dir": "out"}


# the bad inputs of issue 11 (and a few more): each is refused naming its parameter
@pytest.mark.parametrize("job,name,value", [
    ("predict", "batch_size", "four"),
    ("predict", "batch_size", -3),
    ("predict", "batch_size", 2.5),
    ("predict", "bbox", "a,b"),
    ("predict", "bbox", [1, 2]),
    ("predict", "bbox", [0, 0, -1, -1]),
    ("predict", "bbox", [0, 0, float("nan"), 4]),
    ("predict", "max_memory", "lots"),
    ("predict", "max_memory", 0),
    ("predict", "checkpoints", 12),
    ("predict", "all_people", "yes"),
    ("predict", "tasks", "seg"),
    ("predict", "tasks", ["seg", "depth"]),
    ("predict", "size", "2b"),
    ("predict", "size", "pose=1b,face=0.4b"),
    ("predict", "device", "gpu"),
    ("predict", "dtype", "float32"),
    ("predict", "photos", "a.jpg"),
    ("predict", "photos", []),
    ("build", "watertight", "false"),
    ("build", "watertight", 0),
    ("build", "rig", "../keypoints308"),
    ("build", "rig", "/etc/hostname"),
    ("build", "max_faces", 10),
    ("build", "target_faces", "many"),
    ("build", "texture_size", 100_000),
    ("build", "rest_pose", "sitting"),
    ("build", "formats", ["glb", "fbx"]),
    ("animate", "fps", 0),
    ("animate", "fps", float("inf")),
    ("animate", "smooth", "no"),
])
def test_bad_values_are_refused_naming_the_parameter(job, name, value):
    base = {"predict": PREDICT, "build": BUILD, "animate": {"frames": "f", "out_dir": "o"}}[job]
    with pytest.raises(OptionError) as info:
        validate(job, {**base, name: value})
    assert info.value.code == "invalid_params"
    assert info.value.name == name
    assert f"'{name}'" in str(info.value)


def test_unknown_and_missing_parameters_are_named():
    with pytest.raises(OptionError, match="'texture': is not a parameter of build"):
        validate("build", {**BUILD, "texture": 512})
    with pytest.raises(OptionError, match="'out_dir': is required"):
        validate("build", {"bundle_dir": "b"})
    with pytest.raises(OptionError, match="'bundle_dir': is required"):
        validate("build", {"bundle_dir": None, "out_dir": "o"})


def test_defaults_aliases_and_canonical_values():
    values = validate("build", {**BUILD, "target_faces": 5000, "rig": "mixamo"})
    assert values["max_faces"] == 5000 and "target_faces" not in values
    assert values["watertight"] is True and values["texture_size"] == 2048 and values["detail"] == "normals"
    assert values["formats"] == ["glb", "obj", "ply"]
    animate = validate("animate", {"frames": "f", "out_dir": "o", "convention": "game"})
    assert animate["rig"] == "game"
    assert validate("animate", {"frames": "f", "out_dir": "o"})["rig"] == "rigify"
    assert validate("animate", {"frames": "f", "out_dir": "o"})["formats"] == ["glb", "bvh"]
    predict = validate("predict", {**PREDICT, "max_memory": "6G", "size": "pose=1b,seg=0.4b", "bbox": [1, 2, 30, 40]})
    assert predict["max_memory"] == 6 << 30
    assert predict["size"] == {"pose": "1b", "seg": "0.4b"}
    assert predict["bbox"] == [1.0, 2.0, 30.0, 40.0]
    # an empty optional folder is unset; an empty required one is not a path
    assert validate("predict", {**PREDICT, "checkpoints": ""})["checkpoints"] is None
    with pytest.raises(OptionError, match="'out_dir'"):
        validate("predict", {**PREDICT, "out_dir": ""})
    with pytest.raises(OptionError, match="give only one"):
        validate("build", {**BUILD, "max_faces": 1000, "target_faces": 2000})


def test_an_avatar_is_rigged_unless_the_rig_is_turned_off():
    # issue 13: the artist's default avatar is rigged; "none" turns it off, null means the default
    for job, required in (("build", BUILD), ("avatar", {"photos": ["a.jpg"], "out_dir": "o"}),
                          ("batch", {"inputs": ["a.jpg"], "out_dir": "o"})):
        assert validate(job, required)["rig"] == "rigify", job
        assert validate(job, {**required, "rig": None})["rig"] == "rigify", job
        assert validate(job, {**required, "rig": "none"})["rig"] is None, job
    assert validate("retarget", {"motion": "m", "target": "t", "out_dir": "o"})["rig"] is None  # read from the target
    # a motion is a rig's motion: animate refuses "none" in words, before any work
    from engine.jobs import animate

    with pytest.raises(OptionError, match="'rig'.*not none"):
        animate.run(validate("animate", {"frames": "f", "out_dir": "o", "rig": "none"}))


def test_every_job_name_and_kind_is_known():
    for option in options.OPTIONS:
        assert option.kind in options.KINDS, option.name
        assert set(option.jobs) <= set(options.JOBS), option.name
        assert option.name.isidentifier() and option.name == option.name.lower()
        assert set(option.default_by_job) <= set(option.jobs)
        if option.default is not None:
            option.check(option.default)  # every default passes its own check
    names = [o.name for o in options.OPTIONS]
    assert len(names) == len(set(names))
    aliases = [a for o in options.OPTIONS for a in o.aliases]
    assert not set(aliases) & set(names) and len(aliases) == len(set(aliases))


def test_repeated_constants_agree_with_the_engine():
    from engine.checkpoints import TASK_SIZES, TASKS
    from engine.rig.pose import REST_POSES
    from engine.rig.skeleton import available_conventions

    assert options.TASKS == tuple(TASKS)
    assert options.TASK_SIZES == tuple(TASK_SIZES)
    assert options.REST_POSES == tuple(REST_POSES)
    assert list(options.rig_names()) == available_conventions()
    assert {"rigify", "mixamo", "game"} <= set(options.rig_names())


def test_formats_agree_with_the_writers_table():
    from engine.formats import AVATAR_DEFAULT, MOTION_DEFAULT, WRITERS

    assert set(options.FORMATS) == set(WRITERS)
    formats = options.BY_NAME["formats"]
    assert tuple(formats.default_for("build")) == AVATAR_DEFAULT == tuple(formats.default_for("avatar"))
    assert tuple(formats.default_for("animate")) == MOTION_DEFAULT


def _parser(job: str, **kw) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    options.add_arguments(parser, job, **kw)
    return parser


def test_argparse_options_come_from_the_table(capsys):
    parser = _parser("build")
    args = parser.parse_args(["bundle", "--out", "x", "--max-faces", "2000", "--watertight", "--rig", "game"])
    assert options.from_args(args, "build") | {} == {
        "bundle_dir": "bundle", "out_dir": "x", "detail": "normals", "resolution": "full", "watertight": True,
        "max_faces": 2000, "texture_size": 2048, "rig": "game", "rest_pose": "photo",
        "formats": ["glb", "obj", "ply"], "detail_crops": True, "views": None}
    # old spellings still work, hidden from --help
    old = parser.parse_args(["bundle", "--out", "x", "--faces", "3000"])
    assert old.max_faces == 3000
    assert "--faces" not in parser.format_help() and "--max-faces" in parser.format_help()
    # `--rig none` reaches the job as None: off, not replaced by the default rig
    none = parser.parse_args(["b", "--out", "x", "--rig", "none"])
    assert options.validate("build", options.from_args(none, "build"))["rig"] is None
    predict = _parser("predict").parse_args(["a.jpg", "b.jpg", "--out", "o", "--bbox", "1,2,30,40",
                                             "--tasks", "pose,seg", "--size", "pose=1b"])
    assert predict.photos == ["a.jpg", "b.jpg"] and predict.bbox == [1.0, 2.0, 30.0, 40.0]
    assert predict.tasks == ["pose", "seg"] and predict.size == {"pose": "1b"}
    assert _parser("animate").parse_args(["f", "--out", "o", "--no-smooth"]).smooth is False


@pytest.mark.parametrize("argv", [
    ["a.jpg", "--out", "o", "--batch-size", "-3"],
    ["a.jpg", "--out", "o", "--batch-size", "four"],
    ["a.jpg", "--out", "o", "--bbox", "0,0,-1,-1"],
    ["a.jpg", "--out", "o", "--max-memory", "lots"],
])
def test_argparse_refuses_what_the_protocol_refuses(argv):
    with pytest.raises(argparse.ArgumentError):
        _parser("predict").parse_args(argv)


def test_cli_refuses_a_rig_path_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine", "build", str(tmp_path), "--out", str(tmp_path / "a"),
                           "--rig", "/etc/hostname"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "--rig" in proc.stderr and "must be one of" in proc.stderr
    assert not (tmp_path / "a").exists()


def test_engine_options_json_is_in_sync():
    generated = REPO / "sapiens_blender" / "engine_options.json"
    assert json.loads(generated.read_text()) == options.export(), (
        "sapiens_blender/engine_options.json is stale: run .venv/bin/python scripts/sync_options.py")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "sync_options.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_export_is_plain_json_the_add_on_can_read():
    exported = options.export()
    assert json.loads(json.dumps(exported)) == exported
    rows = {row["name"]: row for row in exported["options"]}
    assert rows["max_faces"]["label"] == "Max Faces" and rows["max_faces"]["cli"] == "--max-faces"
    assert rows["max_faces"]["aliases"] == ["target_faces"]
    assert set(rows["rig"]["choices"]) >= {"rigify", "mixamo", "game"}
    assert rows["formats"]["choices"] == ["glb", "usd", "usdz", "obj", "ply", "bvh"]
