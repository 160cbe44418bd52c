"""Batch lists (YAML subset parser) and the headless batch entry with a real engine."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sapiens_blender.batch_list import BatchListError, parse_simple_yaml, read_batch_list

REPO_ROOT = Path(__file__).resolve().parent.parent

EXAMPLE = textwrap.dedent(
    """
    # rebuild the shoot with lighter meshes
    engine_python: /opt/sapiens/env/bin/python
    output_dir: "blends"   # relative to this file
    predict: {size: 0.4b, device: cpu}
    defaults:
      formats: [glb, usd]
      detail: none
      resolution: quarter
      texture_size: 512
      rig: true
    items:
      - photo: shoot/IMG_0001.jpg
        blend: out/first.blend
      - photo: 'shoot/IMG 0002.jpg'
        watertight: yes
        target_faces: 50000
      - shoot/IMG_0003.jpg
    """
)


def test_simple_yaml_subset_matches_pyyaml():
    yaml = pytest.importorskip("yaml")
    assert parse_simple_yaml(EXAMPLE) == yaml.safe_load(EXAMPLE)


def test_simple_yaml_errors_name_the_line():
    with pytest.raises(BatchListError, match="line 2"):
        parse_simple_yaml("items:\n  just text\n")
    with pytest.raises(BatchListError, match="tabs"):
        parse_simple_yaml("items:\n\t- a\n")


def test_list_files(tmp_path):
    (tmp_path / "a.json").write_text('[{"photo": "x.jpg"}]')
    assert read_batch_list(tmp_path / "a.json") == {"items": [{"photo": "x.jpg"}]}
    (tmp_path / "b.yaml").write_text("defaults:\n  detail: none\n")
    with pytest.raises(BatchListError, match="b.yaml.*items"):
        read_batch_list(tmp_path / "b.yaml")


def _surface_builder_available() -> bool:
    try:
        from engine.geometry import build_surface  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.blender
@pytest.mark.skipif(not _surface_builder_available(), reason="the engine's surface builder (issue 4) has not landed")
def test_headless_batch_writes_blend_files(tmp_path, shared_samples):
    pytest.importorskip("bpy")
    from blender_support import bundle_from_shared_sample

    sample = shared_samples / "person_102"
    bundle_from_shared_sample(sample, tmp_path / "bundles" / "person_102")
    (tmp_path / "list.yaml").write_text(textwrap.dedent(
        """
        cache_dir: cache
        output_dir: blends
        device: cpu
        items:
          - bundle: bundles/person_102
            export: [blends/person_102.blend, unity/person_102.fbx]
            preset: unity
            detail: none
            resolution: quarter
            texture_size: 512
            rig: true
          - photo: shoot/missing.png
        """
    ))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), SAPIENS_BLENDER_USER_DIR=str(tmp_path / "user"))
    result = subprocess.run(
        [sys.executable, "-m", "sapiens_blender.batch", str(tmp_path / "list.yaml"), "--engine-source", str(REPO_ROOT),
         "--size", "0.4b"],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out  # one of two items failed
    assert "ok   person_102" in out and "FAIL missing.png" in out and "photo not found" in out, out
    assert "[1/2] build   0.0% build started" in out, out  # each item's progress, as the CLI prints it
    blend = tmp_path / "blends" / "person_102.blend"
    assert blend.exists() and not list(blend.parent.glob(".*tmp*"))
    assert (tmp_path / "unity" / "person_102.fbx").stat().st_size > 10_000
    check = subprocess.run(
        [sys.executable, "-c", "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
         "c = bpy.data.collections['person_102']; print(sorted(o.type for o in c.objects))", str(blend)],
        capture_output=True, text=True, timeout=120,
    )
    assert "['ARMATURE', 'MESH']" in check.stdout, check.stdout + check.stderr


# --- the list's keys are the engine's options -------------------------------------------------


def _item_options(text: str, tmp_path, base=None):
    from sapiens_blender.batch import item_options

    spec = parse_simple_yaml(textwrap.dedent(text))
    return [item_options(spec, item, i, tmp_path, base or {}) for i, item in enumerate(spec["items"])]


def test_list_keys_are_the_engine_options_under_their_names(tmp_path):
    first, second = _item_options(
        """
        size: 0.8b
        predict:
          device: cpu
        defaults:
          rig: mixamo
          rest_pose: tpose
          formats: [glb, usd]
        items:
          - photo: a.jpg
            target_faces: 20000
            checkpoints: ckpt
          - photo: b.jpg
            rig: true
            device: cuda
        """, tmp_path, base={"device": "auto", "size": "0.4b", "backend": "torch"})
    assert first == {"device": "cpu", "size": "0.8b", "backend": "torch", "rig": "mixamo", "rest_pose": "tpose",
                     "formats": ["glb", "usd"], "max_faces": 20000, "checkpoints": str(tmp_path / "ckpt")}
    assert second["rig"] == "rigify" and second["device"] == "cuda" and "max_faces" not in second


def test_list_errors_name_the_key(tmp_path):
    with pytest.raises(BatchListError, match=r"items\[0\]\.detial: not an option"):
        _item_options("items:\n  - photo: a.jpg\n    detial: none\n", tmp_path)
    with pytest.raises(BatchListError, match=r"defaults\.rig: expected one of game, mixamo, rigify"):
        _item_options("defaults:\n  rig: maya\nitems:\n  - a.jpg\n", tmp_path)
    with pytest.raises(BatchListError, match=r"max_faces: 5 is below its minimum 100"):
        _item_options("max_faces: 5\nitems:\n  - a.jpg\n", tmp_path)
    with pytest.raises(BatchListError, match="reuse_predictions: no longer an option"):
        _item_options("items:\n  - photo: a.jpg\n    reuse_predictions: false\n", tmp_path)


def test_every_list_option_is_one_the_engine_accepts(tmp_path):
    """What the list gives passes the engine's own parameter check (engine/options.py)."""
    from engine.options import validate

    (first,) = _item_options(
        """
        size: pose=1b,seg=0.4b
        batch_size: 2
        max_memory: 6G
        items:
          - photo: a.jpg
            bbox: [10, 20, 300, 400]
            watertight: true
            texture_size: 1024
        """, tmp_path)
    checked = validate("avatar", {**first, "photos": [str(tmp_path / "a.jpg")], "out_dir": str(tmp_path / "out")},
                       fill_defaults=False)
    assert checked["size"] == {"pose": "1b", "seg": "0.4b"} and checked["bbox"] == [10, 20, 300, 400]


def test_model_flags_round_trip_through_the_batch_command_line(tmp_path):
    """The panel's Batch passes the preferences' model options as flags; the batch reads them back."""
    import argparse

    from sapiens_blender import batch
    from sapiens_blender.batch import base_options_from, model_arguments

    options = {"device": "cpu", "size": {"pose": "1b", "seg": "0.4b"}, "checkpoints": str(tmp_path / "ckpt"),
               "backend": "torch", "allow_pickle": True, "batch_size": 3}
    args = model_arguments(options)
    assert "pose=1b,seg=0.4b" in args and "--allow-pickle" in args
    parser = argparse.ArgumentParser()
    batch._add_model_arguments(parser)
    assert base_options_from(parser.parse_args(args)) == options


def test_item_outputs_and_presets(tmp_path):
    from sapiens_blender.batch import item_outputs

    spec = {"preset": "maya", "items": []}
    files, preset = item_outputs(spec, {"photo": "a.jpg"}, 0, tmp_path, tmp_path / "blends", "a")
    assert files == [tmp_path / "blends" / "a.blend"] and preset == "maya"
    files, preset = item_outputs(spec, {"photo": "a.jpg", "export": "out/a.usdc", "preset": "unity"}, 0, tmp_path,
                                 tmp_path, "a")
    assert files == [tmp_path / "out" / "a.usdc"] and preset == "unity"
    with pytest.raises(BatchListError, match=r"items\[3\]\.export: a\.obj: export to"):
        item_outputs(spec, {"photo": "a.jpg", "export": ["a.fbx", "a.obj"]}, 3, tmp_path, tmp_path, "a")
    with pytest.raises(BatchListError, match=r"items\[0\]\.preset: 'godot' is not a preset"):
        item_outputs(spec, {"photo": "a.jpg", "preset": "godot"}, 0, tmp_path, tmp_path, "a")


# --- the Ray runner: the list's items through the engine's `batch` job, then Blender's files ------


def test_ray_runner_splits_the_run_options_from_the_items(tmp_path):
    from sapiens_blender import batch_ray

    requests = [(tmp_path / "a.jpg", False, None, {"size": "0.4b", "texture_size": 512, "rig": "mixamo"}),
                (tmp_path / "b", True, None, {"size": "0.4b", "texture_size": 256, "rig": "mixamo"})]
    run, own = batch_ray.split_options(requests)
    assert run == {"size": "0.4b", "rig": "mixamo"} and own == [{"texture_size": 512}, {"texture_size": 256}]
    assert batch_ray.engine_list(requests, own) == [{"path": str(tmp_path / "a.jpg"), "texture_size": 512},
                                                    {"path": str(tmp_path / "b"), "texture_size": 256}]
    requests[1][3]["size"] = "1b"
    with pytest.raises(BatchListError, match=r"items\[1\]\.size: the Ray runner's workers share their models"):
        batch_ray.split_options(requests)
    with pytest.raises(BatchListError, match=r"items\[1\]: the same input as items\[0\]"):
        batch_ray.engine_list([requests[0], requests[0]], [{}, {}])
    assert batch_ray.runner_of({"runner": "ray"}, None) == "ray" and batch_ray.runner_of({}, None) == "serial"
    assert batch_ray.runner_of({"runner": "ray"}, "serial") == "serial"
    with pytest.raises(BatchListError, match="runner: 'slurm' is not a runner"):
        batch_ray.runner_of({"runner": "slurm"}, None)
    assert batch_ray.ray_options({"ray": {"workers": 2, "address": "auto"}}) == {"workers": 2, "address": "auto"}
    with pytest.raises(BatchListError, match=r"ray\.gpus: not an option of the Ray runner"):
        batch_ray.ray_options({"ray": {"gpus": 2}})
    with pytest.raises(BatchListError, match="workers"):
        batch_ray.ray_options({"ray": {"workers": 0}})


@pytest.mark.blender
@pytest.mark.slow
def test_ray_runner_hands_the_list_to_the_engine_batch_then_saves_blend_files(tmp_path):
    """A bundle (built), a photo through tiny random models (predicted on Ray; their maps hold no
    surface, so its build fails: that item's failure in the engine's words) and a missing photo;
    the rerun has nothing left for the engine to do and saves the .blend files again."""
    pytest.importorskip("bpy")
    pytest.importorskip("ray.data")
    import json
    import shutil

    from engine.checkpoints import checkpoint_path
    from engine.models.testing import write_tiny_checkpoint
    from engine.paths import asset

    for task in ("seg", "normal", "pointmap"):
        path = checkpoint_path(tmp_path / "ckpt", task, "0.4b")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tiny_checkpoint(path, task, img_size=(1024, 768) if task == "pointmap" else (256, 192), num_layers=2,
                              num_kv_heads=(4, 4))
    shutil.copytree(asset("sample"), tmp_path / "bundles" / "sample")
    (tmp_path / "shoot").mkdir()
    shutil.copy(asset("sample", "image.png"), tmp_path / "shoot" / "front.png")
    (tmp_path / "list.yaml").write_text(textwrap.dedent(
        """
        cache_dir: cache
        output_dir: blends
        runner: ray
        ray:
          cpus: 2
          workers: 1
        device: cpu
        tasks: [seg, normal, pointmap]
        checkpoints: ckpt
        defaults:
          texture_size: 256
        items:
          - bundle: bundles/sample
            texture_size: 128
            rig: false
            export: [blends/sample.blend, unity/sample.fbx]
            preset: unity
          - photo: shoot/front.png
          - photo: shoot/missing.png
        """
    ))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), SAPIENS_BLENDER_USER_DIR=str(tmp_path / "user"))
    command = [sys.executable, "-m", "sapiens_blender.batch", str(tmp_path / "list.yaml"), "--engine-source",
               str(REPO_ROOT)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "[ray] 2 item(s) to the engine's Ray batch" in out and "[ray] batch" in out, out   # its progress
    assert "[1/3] ok   sample -> sample.blend, sample.fbx" in out, out
    assert "[2/3] FAIL front.png -> build:" in out, out          # the engine's row error, in words
    assert "[3/3] FAIL missing.png -> FileNotFoundError: photo not found" in out, out
    (report,) = (tmp_path / "cache" / "ray-batch").glob("*/batch_report.jsonl")
    rows = {row["name"]: row for row in map(json.loads, report.read_text().splitlines())}
    assert rows["sample"]["status"] == "done" and rows["front"]["status"] == "failed"
    assert rows["front"]["timings"].get("predict", 0) > 0        # the tiny models ran on the Ray workers
    albedo = report.parent / "sample" / "avatar" / "textures" / "albedo.png"
    from PIL import Image

    assert max(Image.open(albedo).size) == 128                   # the item's own option reached the engine
    blend = tmp_path / "blends" / "sample.blend"
    assert blend.stat().st_size > 100_000 and (tmp_path / "unity" / "sample.fbx").stat().st_size > 10_000
    check = subprocess.run(
        [sys.executable, "-c", "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
         "c = bpy.data.collections['sample']; print(sorted(o.type for o in c.objects), c.asset_data is not None, "
         "tuple(c.preview.image_size))", str(blend)],
        capture_output=True, text=True, timeout=120,
    )
    # the engine's preview.png is the asset thumbnail of the avatar's collection; `rig: false` turned
    # the default rig off for this item (the run's default, a rig, did not fill it back in)
    assert "['MESH'] True (256, 256)" in check.stdout, check.stdout + check.stderr

    blend.unlink()
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    out = rerun.stdout + rerun.stderr
    assert "0 done, 1 skipped, 1 failed" in out, out          # the engine did nothing again
    assert "[1/3] ok   sample -> sample.blend, sample.fbx" in out and blend.is_file(), out


@pytest.mark.blender
@pytest.mark.slow
def test_panel_batch_on_the_ray_runner_is_cancelled_by_its_button(tmp_path, monkeypatch):
    """The panel's Batch with Runner = Ray starts the background batch with --runner ray; Cancel
    Batch ends it: the engine's job is cancelled, exit code 130, the log says so."""
    bpy = pytest.importorskip("bpy")
    pytest.importorskip("ray.data")
    import shutil
    import time

    import addon_utils

    from engine.paths import asset

    monkeypatch.setenv("SAPIENS_BLENDER_USER_DIR", str(tmp_path / "user"))
    for i in range(4):
        shutil.copytree(asset("sample"), tmp_path / "bundles" / f"b{i}")
    (tmp_path / "list.yaml").write_text("cache_dir: cache\nray: {cpus: 2, workers: 1}\nitems:\n"
                                        + "".join(f"  - bundle: bundles/b{i}\n" for i in range(4)))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("sapiens_blender", default_set=True, handle_error=None)
    try:
        from sapiens_blender import operators

        prefs = bpy.context.preferences.addons["sapiens_blender"].preferences
        prefs.engine_python, prefs.engine_source = sys.executable, str(REPO_ROOT)
        assert not bpy.ops.sapiens.batch_cancel.poll()
        bpy.ops.sapiens.batch(filepath=str(tmp_path / "list.yaml"), runner="ray")
        process, log = operators.BATCH["process"], operators.BATCH["log"]
        assert process.args[process.args.index("--runner") + 1] == "ray"
        deadline = time.monotonic() + 600
        while "4 to run" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not bpy.ops.sapiens.batch.poll()                   # one batch at a time
        bpy.ops.sapiens.batch_cancel()
        code = process.wait(300)
        text = log.read_text()
        if code == 0:
            pytest.skip("the batch finished before the cancel")
        assert code == 130, text
        assert "cancelling the engine's batch" in text and "sapiens batch: cancelled" in text, text
        assert "Traceback" not in text, text
        assert bpy.ops.sapiens.batch.poll()
    finally:
        addon_utils.disable("sapiens_blender", default_set=True, handle_error=None)
