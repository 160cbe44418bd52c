"""`sapiens-engine batch` on Ray Data (local Ray, 2 CPUs) with tiny checkpoints in the released
format: outputs equal to the serial path's, a rerun does nothing, a corrupt photo is one failed
row, a run whose driver is killed resumes with only the items it had not finished, bundles as
inputs are built.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data")

from engine.batch import inputs as batch_inputs  # noqa: E402
from engine.batch.items import RECORD  # noqa: E402
from engine.options import validate  # noqa: E402
from engine.paths import asset  # noqa: E402

TASKS = ["seg", "normal", "pointmap"]   # what an unrigged build needs; keeps the tiny run short


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    from engine.checkpoints import checkpoint_path
    from engine.models.testing import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    for task in TASKS:
        path = checkpoint_path(root, task, "0.4b")
        path.parent.mkdir(parents=True, exist_ok=True)
        # small inputs keep the test quick; the pointmap model takes only its training size
        size = (1024, 768) if task == "pointmap" else (256, 192)
        write_tiny_checkpoint(path, task, img_size=size, num_layers=2, num_kv_heads=(4, 4))
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    image = Image.open(asset("sample", "image.png"))
    image.save(folder / "front.png")
    image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "mirrored.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder


@pytest.fixture(scope="module")
def local_ray():
    import ray

    yield
    ray.shutdown()


def _options(**params) -> dict:
    return validate("batch", {"texture_size": 512, "cpus": 2, "tasks": TASKS, **params})


def _rows(out: Path) -> dict:
    lines = (out / "batch_report.jsonl").read_text().splitlines()
    return {row["name"]: row for row in map(json.loads, lines)}


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory, photos, tiny_checkpoints, local_ray):
    from engine.jobs.batch import run

    out = tmp_path_factory.mktemp("ray_out")
    seen = []
    result = run(_predict_options(photos, out, tiny_checkpoints),
                 progress=lambda stage, fraction, message: seen.append(message))
    return out, result, seen


def _predict_options(photos: Path, out: Path, checkpoints: Path, **extra) -> dict:
    """Random tiny models give maps no surface can be built from: these runs predict only; the
    build stage runs on real bundles below."""
    # batch_size 1: a photo's maps depend on how many photos share its forward pass (other kernel
    # shapes: 8e-7 relative on the raw outputs, which random tiny weights amplify to 1e-1 in unit
    # normals), and Ray need not group photos as the serial loop does
    return _options(inputs=[str(photos)], out_dir=str(out), checkpoints=str(checkpoints), steps=["predict"],
                    batch_size=1, **extra)


@pytest.mark.slow
def test_a_corrupt_photo_is_one_failed_row_and_progress_is_reported(ray_run):
    out, result, seen = ray_run
    rows = _rows(out)
    assert result["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    assert rows["corrupt"]["status"] == "failed"
    assert rows["corrupt"]["error"].startswith("decode: ") and "corrupt.jpg" in rows["corrupt"]["error"]
    for name in ("front", "mirrored"):
        row = rows[name]
        assert row["status"] == "done" and set(row["timings"]) == {"decode", "predict"}
        assert (out / name / row["outputs"]["bundle"] / "bundle.json").is_file()
        assert json.loads((out / name / RECORD).read_text())["status"] == "done"
    assert any("front: done" in m for m in seen) and any("corrupt: failed" in m for m in seen)
    assert "2 done, 0 skipped, 1 failed" in result["summary"] and "items/s" in result["summary"]
    import html

    sheet = (out / "batch_report.html").read_text()      # the contact sheet says the failure in words
    assert '<figure class="failed">' in sheet and html.escape(rows["corrupt"]["error"]) in sheet


@pytest.mark.slow
def test_the_ray_run_writes_what_the_serial_path_writes(ray_run, photos, tiny_checkpoints, tmp_path):
    """Same bundles and avatars; the model passes ran in other processes with other thread counts,
    so maps agree to float rounding (stated tolerances), not bit for bit."""
    from engine.bundle import read_bundle
    from engine.jobs.batch import run

    out, _, _ = ray_run
    serial_out = tmp_path / "serial"
    run(_predict_options(photos, serial_out, tiny_checkpoints), serial=True)
    for name in ("front", "mirrored"):
        a, b = (json.loads((o / name / RECORD).read_text())["outputs"] for o in (out, serial_out))
        assert a.keys() == b.keys()
        ray_bundle, serial_bundle = read_bundle(out / name / a["bundle"]), read_bundle(serial_out / name / b["bundle"])
        assert (ray_bundle.seg == serial_bundle.seg).mean() > 0.999
        for field in ("normal", "pointmap"):
            x, y = getattr(ray_bundle, field), getattr(serial_bundle, field)
            assert np.array_equal(np.isnan(x), np.isnan(y))
            assert np.nanmax(np.abs(x - y)) <= 1e-4 * np.nanmax(np.abs(y)), field


@pytest.mark.slow
def test_a_rerun_does_nothing_and_a_killed_run_resumes(ray_run, photos, tiny_checkpoints):
    from engine.jobs.batch import run

    out, _, _ = ray_run
    options = _predict_options(photos, out, tiny_checkpoints)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "batch_report.jsonl"
              and p.name != "batch_report.html"}
    again = run(options)
    assert again["counts"] == {"done": 0, "skipped": 2, "failed": 1}
    assert "earlier run" in _rows(out)["corrupt"]["error"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps          # nothing rewritten
    # a run killed while 'mirrored' was in flight: its record still says pending, its worker's
    # temporary is left behind; the next run redoes only that item
    from engine import fileio
    from engine.batch.items import write_record

    write_record(out / "mirrored", {"name": "mirrored", "status": "pending"})
    shutil.rmtree(out / "mirrored" / "bundle")
    stale = out / f".batch.{fileio._HOST}-999999999.x.tmp"
    stale.mkdir()
    fileio._swept.clear()
    resumed = run(options)
    assert resumed["counts"] == {"done": 1, "skipped": 1, "failed": 1}
    assert _rows(out)["mirrored"]["status"] == "done" and (out / "mirrored" / "bundle" / "bundle.json").is_file()
    assert not stale.exists()   # the killed writer's temporary was cleaned
    assert stamps[out / "front" / RECORD] == (out / "front" / RECORD).stat().st_mtime_ns
    retried = run({**options, "retry_failed": True})
    assert _rows(out)["corrupt"]["error"].startswith("decode: ") and retried["counts"]["skipped"] == 2


@pytest.mark.slow
def test_build_step_on_bundles_with_per_item_options_from_the_cli(ray_run, tmp_path, capsys, local_ray):
    """--steps build on bundles (from a YAML list with per-item options, and a folder of bundles):
    avatars built by Ray CPU tasks, their previews drawn, the contact sheet shows them; a bad
    per-item option is that item's failed row."""
    from PIL import Image

    from engine.cli import main

    out, _, _ = ray_run
    predicted = next(p.parent for p in (out / "front").glob("*/bundle.json"))
    folder = tmp_path / "bundles"
    shutil.copytree(asset("sample"), folder / "copy")
    listing = tmp_path / "items.yaml"
    listing.write_text(f"- path: {asset('sample')}\n  texture_size: 256\n- path: {predicted}\n  size: 1b\n")
    built = tmp_path / "built"
    code = main(["batch", str(listing), str(folder), "--steps", "build", "--out", str(built), "--cpus", "2",
                 "--texture-size", "512"])
    captured = capsys.readouterr()
    assert code == 1   # one item failed: see below
    assert "2 done, 0 skipped, 1 failed" in captured.out
    rows = _rows(built)
    for name, size in (("sample", 256), ("copy", 512)):
        assert rows[name]["status"] == "done" and set(rows[name]["timings"]) == {"build", "preview"}
        avatar = json.loads((built / name / "avatar" / "avatar.json").read_text())
        assert avatar["options"]["texture_size"] == size
        preview = np.asarray(Image.open(built / name / "avatar" / "preview.png"))
        assert preview.shape == (256, 256, 3) and rows[name]["outputs"]["preview"] == "avatar/preview.png"
        assert ((preview != 240).any(axis=-1)).mean() > 0.05          # a person was drawn, front and back
        assert 'src="%s/avatar/preview.png"' % name in (built / "batch_report.html").read_text()
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert len(failed) == 1 and "'size': cannot be set per item" in failed[0]["error"]


def test_inputs_expand_from_folders_globs_and_list_files(tmp_path, photos):
    (tmp_path / "list.txt").write_text(f"# two photos\n{photos / 'front.png'}\n\n{photos / 'mirrored.png'}\n")
    (tmp_path / "list.csv").write_text(f"path,texture_size,watertight\n{photos / 'front.png'},256,true\n")
    (tmp_path / "list.json").write_text(json.dumps([str(photos / "front.png"), {"path": str(asset("sample")),
                                                                                 "rig": "mixamo"}]))
    items = batch_inputs.expand_inputs([str(tmp_path / "list.txt")])
    assert [i.path.name for i in items] == ["front.png", "mirrored.png"]
    items = batch_inputs.expand_inputs([str(tmp_path / "list.csv")])
    assert items[0].options == {"texture_size": 256, "watertight": True}
    items = batch_inputs.expand_inputs([str(tmp_path / "list.json")])
    assert [i.kind for i in items] == ["photo", "bundle"] and items[1].options == {"rig": "mixamo"}
    items = batch_inputs.expand_inputs([str(photos / "*.png"), str(photos)])   # the same photo once
    assert sorted(i.path.name for i in items) == ["corrupt.jpg", "front.png", "mirrored.png"]
    with pytest.raises(batch_inputs.BatchInputError, match="matches nothing"):
        batch_inputs.expand_inputs([str(tmp_path / "*.heic")])
    with pytest.raises(batch_inputs.BatchInputError, match="no such file"):
        batch_inputs.expand_inputs([str(tmp_path / "missing.png")])


def test_every_build_option_reaches_the_builds_and_the_item_keys():
    """The batch takes the build options from the option table: one added there (detail_crops was
    missed by a hand-kept list) is passed to the builds and changes an item's key, so a rerun with
    another value redoes the item instead of skipping it."""
    from engine.batch.items import OUTPUT_OPTIONS, item_key
    from engine.batch.stages import BUILD_OPTION_NAMES
    from engine.options import OPTIONS

    build = {o.name for o in OPTIONS if "build" in o.jobs} - {"bundle_dir", "views", "out_dir"}
    assert build == set(BUILD_OPTION_NAMES) and build <= set(OUTPUT_OPTIONS)
    assert item_key("d", {}, {"detail_crops": True}) != item_key("d", {}, {"detail_crops": False})
    assert "detail_crops" not in batch_inputs.ITEM_OPTIONS      # a model-pass option: the run's
    assert {"max_faces", "texture_size", "rig", "bbox"} <= set(batch_inputs.ITEM_OPTIONS)


def test_an_existing_user_folder_where_an_item_goes_is_refused(tmp_path, photos):
    from engine.jobs.batch import plan

    out = tmp_path / "out"
    (out / "front").mkdir(parents=True)
    (out / "front" / "notes.txt").write_text("mine")
    todo, settled = plan(_options(inputs=[str(photos / "front.png")], out_dir=str(out)))
    assert todo == [] and "is not a batch item's folder" in settled[0]["error"]
    assert (out / "front" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_address_with_no_cluster_is_refused_in_words_before_any_item_is_marked(tmp_path, address):
    """Ray's own connect retries such an address for minutes; the job says so at once, naming it."""
    from engine.errors import EngineError
    from engine.jobs.batch import run

    out = tmp_path / "out"
    with pytest.raises(EngineError, match=f"Ray cluster address {address}: no Ray cluster answers there"):
        run(_options(inputs=[str(asset("sample"))], out_dir=str(out), steps=["build"], address=address))
    assert not out.exists()      # no item folder marked as pending, no report


def test_a_model_worker_that_cannot_start_is_said_in_words(tmp_path, photos, tiny_checkpoints):
    """A device the local machine lacks is refused in the driver, before Ray and before OUT; a
    worker failure Ray reports anyway is cut down to the engine's own message."""
    import torch

    from engine.batch.pipeline import ray_failure
    from engine.errors import EngineError
    from engine.jobs.batch import run

    if not torch.cuda.is_available():
        out = tmp_path / "out"
        with pytest.raises(EngineError, match="device 'cuda' was asked for"):
            run(_predict_options(photos, out, tiny_checkpoints, device="cuda"))
        assert not out.exists()
    died = RuntimeError("The actor died because of an error raised in its creation task\n  File \"x.py\", line 3\n"
                        "engine.errors.CheckpointError: seg.safetensors: truncated\n")
    assert ray_failure(died) == "seg.safetensors: truncated"
    assert ray_failure(RuntimeError("\nnode 10.0.0.2 died\nmore")) == "RuntimeError: node 10.0.0.2 died"


def test_a_batch_on_another_ray_waits_for_the_running_one(monkeypatch):
    """In one engine process (serve runs jobs side by side) a batch does not shut down the Ray
    another batch is running on to join a different one; with none running, it switches."""
    import socket
    import sys
    import types

    from engine.batch import cluster
    from engine.errors import EngineError

    calls = []
    fake = types.SimpleNamespace(is_initialized=lambda: bool(calls) and calls[-1] != "shutdown",
                                 shutdown=lambda: calls.append("shutdown"),
                                 init=lambda **kw: calls.append(kw.get("address") or "local"))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(cluster, "_state", {"address": None, "users": 0, "stuck": None})
    head = socket.socket()
    head.bind(("127.0.0.1", 0))
    head.listen()
    address = f"127.0.0.1:{head.getsockname()[1]}"   # something listens: the TCP check passes
    try:
        with cluster.using({"cpus": 2}):
            with cluster.using({"cpus": 2}):           # the same local Ray: shared
                pass
            with pytest.raises(EngineError, match=f"another batch in this engine is running on Ray at local; "
                                                  f"a batch on {address} waits"):
                with cluster.using({"address": address}):
                    pass
        assert calls == ["local"]
        with cluster.using({"address": address}):        # nothing running: let go of the local Ray, join
            pass
        assert calls == ["local", "shutdown", address] and cluster._state["users"] == 0
    finally:
        head.close()


@pytest.mark.slow
def test_a_killed_driver_loses_only_the_items_in_flight(tmp_path):
    """SIGKILL the batch driver once an item is done; the next run does only what is missing."""
    import os
    import signal
    import subprocess
    import sys
    import time

    bundles = tmp_path / "bundles"
    for i in range(6):
        shutil.copytree(asset("sample"), bundles / f"b{i}")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "engine", "batch", str(bundles), "--steps", "build", "--out", str(out),
               "--cpus", "2", "--workers", "1", "--texture-size", "256"]
    repo = Path(__file__).resolve().parent.parent

    def statuses() -> dict:
        found = {}
        for record in out.glob(f"*/{RECORD}"):
            try:
                found[record.parent.name] = json.loads(record.read_text())["status"]
            except (OSError, ValueError):
                pass
        return found

    driver = subprocess.Popen(command, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while "done" not in statuses().values() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(3)   # the local Ray the driver started goes down with it (a task may still finish)
    before = statuses()
    finished = sorted(name for name, status in before.items() if status == "done")
    if len(finished) == 6:
        pytest.skip("every item finished before the kill")
    assert finished, before
    rerun = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{6 - len(finished)} done, {len(finished)} skipped, 0 failed" in rerun.stdout
    assert set(statuses().values()) == {"done"}
    assert not [p for p in out.rglob(".*")]      # no temporary left behind
