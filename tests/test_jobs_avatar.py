"""The avatar job (engine/jobs/avatar.py): models loaded once per process, predictions cached,
outputs and bundles checked before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import BundleError, EngineError
from engine.jobs import predictors, run_job

TASKS = ("pose", "seg", "normal", "pointmap")


@pytest.fixture(scope="module")
def ckpt_root(tmp_path_factory):
    from engine.models.testing import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    for task in TASKS:
        # small inputs keep the test quick; the pointmap model takes only its training size
        size = (1024, 768) if task == "pointmap" else (256, 192)
        write_tiny_checkpoint(root / task / f"sapiens2_0.4b_{task}.safetensors", task, img_size=size, seed=1)
    return root


def _photo(path: Path, shade: int) -> Path:
    yy, xx = np.mgrid[0:320, 0:240]
    rgb = np.stack([xx, yy * 0.7, 255 - xx], axis=-1).astype(np.uint8)
    rgb[60:280, 80:160] = [200, shade, 120]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def photos(tmp_path):
    # two photos with the same file name in different folders: two avatars, not one
    return [_photo(tmp_path / "in" / "a" / "someone.png", 150), _photo(tmp_path / "in" / "b" / "someone.png", 90),
            _photo(tmp_path / "in" / "third.png", 60)]


@pytest.fixture(autouse=True)
def fresh_predictors():
    predictors.clear()
    yield
    predictors.clear()


@pytest.fixture
def counted_loads(monkeypatch):
    """Every model load in this process goes through engine.models.loading.load_model: count them."""
    import engine.models.loading as loading

    calls = []
    real = loading.load_model

    def load_model(path, *args, **kwargs):
        calls.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loading, "load_model", load_model)
    return calls


@pytest.fixture
def stub_build(monkeypatch):
    """The build step as a marker file: these tests are about predicting and caching."""
    import engine.jobs.avatar as avatar_job

    built = []

    def build_one(bundle_dir, out_dir, options, progress=None, source=None):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "avatar.json").write_text(json.dumps({"bundle": str(bundle_dir), "texture_size": options["texture_size"]}))
        built.append((Path(bundle_dir), out_dir))
        return out_dir

    monkeypatch.setattr(avatar_job, "build_one", build_one)
    monkeypatch.setattr(avatar_job, "_check_tasks", lambda options: None)  # the stub builds without a pointmap
    return built


def test_models_load_once_for_many_photos_and_two_calls(ckpt_root, photos, tmp_path, counted_loads, stub_build):
    tasks = ["pose", "seg", "normal"]  # the small-input models (pointmap runs at 1024 x 768 only)
    params = {"out_dir": str(tmp_path / "avatars"), "cache_dir": str(tmp_path / "cache"), "tasks": tasks,
              "checkpoints": str(ckpt_root), "device": "cpu", "dtype": "fp32", "batch_size": 2}
    first = run_job("avatar", {**params, "photos": [str(p) for p in photos[:2]]})
    assert sorted(counted_loads) == sorted(f"sapiens2_0.4b_{t}.safetensors" for t in tasks)
    assert [row["predictions"] for row in first["avatars"]] == ["predicted", "predicted"]
    names = [row["name"] for row in first["avatars"]]
    assert len(set(names)) == 2 and len({row["bundle_dir"] for row in first["avatars"]}) == 2

    # a second call in the same process: the same models, cached predictions for the first two
    second = run_job("avatar", {**params, "photos": [str(p) for p in photos]})
    assert len(counted_loads) == len(tasks), "a model was loaded again"
    assert [row["predictions"] for row in second["avatars"]] == ["cached", "cached", "predicted"]
    assert second["model_loads"] == len(tasks)
    assert [row["bundle_dir"] for row in second["avatars"][:2]] == [row["bundle_dir"] for row in first["avatars"]]
    assert len(stub_build) == 5


def test_changed_build_options_rebuild_without_predicting(ckpt_root, photos, tmp_path, stub_build,
                                                         sample_predictions):
    _, calls = sample_predictions
    params = {"photos": [str(photos[0])], "out_dir": str(tmp_path / "avatars"), "cache_dir": str(tmp_path / "cache"),
              "checkpoints": str(ckpt_root), "device": "cpu", "dtype": "fp32"}
    run_job("avatar", params)
    again = run_job("avatar", {**params, "texture_size": 512, "max_faces": 5000})
    assert again["avatars"][0]["predictions"] == "cached" and len(calls) == 1
    assert json.loads((Path(again["avatars"][0]["avatar_dir"]) / "avatar.json").read_text())["texture_size"] == 512
    # a changed photo (same name, new content) and a changed model option are predicted again
    _photo(photos[0], 30)
    assert run_job("avatar", params)["avatars"][0]["predictions"] == "predicted" and len(calls) == 2
    assert run_job("avatar", {**params, "bbox": [10, 10, 200, 300]})["avatars"][0]["predictions"] == "predicted"
    assert run_job("avatar", params)["avatars"][0]["predictions"] == "cached" and len(calls) == 3


def test_an_output_that_is_not_an_avatar_is_refused_before_any_model_loads(ckpt_root, photos, tmp_path, counted_loads):
    out = tmp_path / "avatars"
    (out / "third").mkdir(parents=True)
    (out / "third" / "thesis.txt").write_text("the user's own file")
    with pytest.raises(EngineError, match="not an avatar"):
        run_job("avatar", {"photos": [str(photos[2])], "out_dir": str(out), "cache_dir": str(tmp_path / "cache"),
                           "checkpoints": str(ckpt_root), "device": "cpu"})
    assert counted_loads == []
    assert (out / "third" / "thesis.txt").read_text() == "the user's own file"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_bad_options_are_refused_before_anything(tmp_path, counted_loads):
    from engine.options import OptionError

    for bad in ({"rig": "../keypoints308"}, {"watertight": "false"}, {"batch_size": -3}, {"bbox": [0, 0, -1, -1]}):
        with pytest.raises(OptionError):
            run_job("avatar", {"photos": ["x.png"], "out_dir": str(tmp_path / "o"), **bad})
    assert counted_loads == [] and not (tmp_path / "o").exists()


@pytest.fixture
def sample_predictions(monkeypatch):
    """Predictor.predict writes the bundled sample person as every photo's predictions (no models)."""
    from engine.paths import asset
    from engine.predict import PhotoResult, Predictor, bundle_names

    sample = asset("sample")
    if not (sample / "bundle.json").is_file():
        pytest.skip("the bundled sample is not in this checkout")
    calls = []

    def predict(self, photos, out_dir, **kwargs):
        calls.append(list(photos))
        results = []
        for photo, name in zip(photos, bundle_names([Path(p) for p in photos])):
            shutil.copytree(sample, Path(out_dir) / name)
            results.append(PhotoResult(str(photo), name, "written", bundles=[str(Path(out_dir) / name)],
                                       people_found=1, people_kept=1))
        return results

    monkeypatch.setattr(Predictor, "predict", predict)
    return sample, calls


def test_avatar_job_builds_from_cached_predictions(ckpt_root, photos, tmp_path, sample_predictions):
    _, calls = sample_predictions
    params = {"photos": [str(photos[2])], "out_dir": str(tmp_path / "avatars"), "cache_dir": str(tmp_path / "cache"),
              "checkpoints": str(ckpt_root), "device": "cpu", "resolution": "quarter", "texture_size": 256,
              "detail": "none", "rig": "rigify"}
    seen = []
    result = run_job("avatar", params, progress=lambda *a: seen.append(a))
    row = result["avatars"][0]
    avatar = Path(row["avatar_dir"])
    assert avatar == tmp_path / "avatars" / "third"
    manifest = json.loads((avatar / "avatar.json").read_text())
    assert manifest["options"]["texture_size"] == 256
    assert {"avatar.glb", "avatar.json"} <= set(row["files"])
    assert {"cache", "read", "write"} <= {stage for stage, *_ in seen}
    again = run_job("avatar", {**params, "texture_size": 128})
    assert again["avatars"][0]["predictions"] == "cached" and len(calls) == 1
    sample_meta = json.loads((sample_predictions[0] / "bundle.json").read_text())
    assert again["avatars"][0]["notes"] == list(sample_meta.get("notes") or [])
    assert json.loads((avatar / "avatar.json").read_text())["options"]["texture_size"] == 128


def _sample_copy(tmp_path: Path, **changes) -> Path:
    from engine.paths import asset

    sample = asset("sample")
    if not (sample / "bundle.json").is_file():
        pytest.skip("the bundled sample is not in this checkout")
    bundle = tmp_path / "bundle"
    shutil.copytree(sample, bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    for key, value in changes.items():
        if value is None and key == "keypoints":
            meta["files"].pop("keypoints")
        else:
            meta[key] = value
    (bundle / "bundle.json").write_text(json.dumps(meta))
    return bundle


def test_a_bundle_that_cannot_be_rigged_fails_before_the_build_starts(tmp_path, monkeypatch):
    import engine.avatar.build as build_module

    monkeypatch.setattr(build_module, "build_avatar", lambda *a, **k: pytest.fail("the build started"))
    for changes, words in (({"keypoints": None}, "rigging needs the predicted keypoints"),
                           ({"K": [[0, 0, 0], [0, 0, 0], [0, 0, 1]]}, "not a valid pinhole")):
        bundle = _sample_copy(tmp_path, **changes)
        with pytest.raises(BundleError, match=words):
            run_job("build", {"bundle_dir": str(bundle), "out_dir": str(tmp_path / "avatar"), "rig": "rigify"})
        assert not (tmp_path / "avatar").exists()
        shutil.rmtree(bundle)


def test_a_bundle_without_K_is_rigged_with_the_K_fitted_once(tmp_path):
    bundle = _sample_copy(tmp_path, K=None)
    result = run_job("build", {"bundle_dir": str(bundle), "out_dir": str(tmp_path / "avatar"), "rig": "rigify",
                               "resolution": "quarter", "texture_size": 128, "detail": "none"})
    manifest = json.loads((Path(result["avatar_dir"]) / "avatar.json").read_text())
    assert manifest["camera"]["K_source"].startswith("fitted") and "skeleton.json" in result["files"]


class InProcessServer:
    """engine.serve.Server on pipes in this process (so the Predictor can be observed)."""

    def __init__(self):
        import os
        import threading

        from engine.serve import Server

        r_in, self._w_in = os.pipe()
        self._r_out, w_out = os.pipe()
        self.server = Server(os.fdopen(r_in, "rb"), os.fdopen(w_out, "wb"))
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()
        self.lines = os.fdopen(self._r_out, "rb")
        self.input = os.fdopen(self._w_in, "wb")
        assert json.loads(self.lines.readline())["event"] == "ready"

    def call(self, request_id, method, params) -> tuple[dict, list[dict]]:
        self.input.write(json.dumps({"id": request_id, "method": method, "params": params}).encode() + b"\n")
        self.input.flush()
        progress = []
        while True:
            message = json.loads(self.lines.readline())
            assert message["id"] == request_id, message
            if message["type"] in ("result", "error"):
                return message, progress
            progress.append(message)

    def close(self) -> None:
        self.input.close()
        self.thread.join(timeout=60)


def test_avatar_method_keeps_one_predictor_across_calls(ckpt_root, photos, tmp_path, sample_predictions, monkeypatch):
    made = []
    real_make = predictors._make
    monkeypatch.setattr(predictors, "_make", lambda model: made.append(model) or real_make(model))
    server = InProcessServer()
    try:
        common = {"out_dir": str(tmp_path / "avatars"), "cache_dir": str(tmp_path / "cache"),
                  "checkpoints": str(ckpt_root), "device": "cpu", "resolution": "quarter", "texture_size": 128,
                  "detail": "none"}
        first, progress = server.call(1, "avatar", {**common, "photos": [str(photos[2])], "rig": "rigify"})
        assert first["type"] == "result", first
        assert first["result"]["avatars"][0]["predictions"] == "predicted"
        assert "avatar.glb" in first["result"]["avatars"][0]["files"]
        assert {"cache", "read", "write"} <= {m["stage"] for m in progress}
        second, _ = server.call(2, "avatar", {**common, "photos": [str(photos[2]), str(photos[0])],
                                              "max_faces": 2000})
        assert second["type"] == "result", second
        assert [row["predictions"] for row in second["result"]["avatars"]] == ["cached", "predicted"]
        assert len(made) == 1, "the server made a second Predictor for the same models"
        bad, progress = server.call(3, "avatar", {**common, "photos": [str(photos[0])], "watertight": "false"})
        assert bad["error"]["code"] == "invalid_params" and bad["error"]["data"]["param"] == "watertight"
        assert progress == []
    finally:
        server.close()


def test_a_killed_run_leaves_no_staging_behind_in_the_cache(ckpt_root, photos, tmp_path, stub_build,
                                                            sample_predictions):
    import subprocess
    import sys

    from engine import fileio

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    cache = tmp_path / "cache"
    left = cache / f".predicting.{fileio._HOST}-{int(dead.stdout)}.abc123.tmp"
    (left / "someone").mkdir(parents=True)
    run_job("avatar", {"photos": [str(photos[0])], "out_dir": str(tmp_path / "avatars"), "cache_dir": str(cache),
                       "checkpoints": str(ckpt_root), "device": "cpu"})
    assert not left.exists()
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []
