"""The animate job shares the process's Predictor (engine/jobs/predictors.py): under `serve` a
second animation of images or video loads no model again, as the avatar job's second call loads none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from engine.bundle import write_bundle
from engine.jobs import predictors, run_job
from engine.synthetic import make_sequence, to_bundle

FRAMES = 4


@pytest.fixture(autouse=True)
def fresh_predictors():
    predictors.clear()
    yield
    predictors.clear()


@pytest.fixture
def made(monkeypatch):
    """engine.predict.Predictor replaced by one that counts its constructions, passes and closes
    and writes each frame's exact predictions (the synthetic sequence's own maps)."""
    import engine.predict

    frames = make_sequence(FRAMES, "wave", width=192, height=256)
    log = {"made": [], "passes": 0, "closed": 0}

    class Result:
        def __init__(self, photo, bundles):
            self.photo, self.status, self.bundles, self.error = photo, "written", bundles, None

    class CountingPredictor:
        def __init__(self, **model):
            log["made"].append(model)

        def predict(self, photos, out_dir, on_error=None, progress=None, **kwargs):
            log["passes"] += 1
            return [Result(str(p), [str(write_bundle(to_bundle(frames[int(Path(p).stem)]), Path(out_dir) / Path(p).stem))])
                    for p in photos]

        def close(self):
            log["closed"] += 1

    monkeypatch.setattr(engine.predict, "Predictor", CountingPredictor)
    return frames, log


def test_two_animations_in_one_process_make_one_predictor(made, tmp_path):
    frames, log = made
    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame.image).save(images / f"{i:03d}.png")
    params = {"frames": str(images), "device": "cpu", "size": "1b"}
    first = run_job("animate", {**params, "out_dir": str(tmp_path / "a")})
    second = run_job("animate", {**params, "out_dir": str(tmp_path / "b")})
    assert log["passes"] == 2 and len(log["made"]) == 1, log          # made (models loaded) once
    assert log["closed"] == 0                                        # kept for the next job
    assert log["made"][0]["tasks"] == ["pose", "seg", "pointmap"] and log["made"][0]["size"] == "1b"
    for result in (first, second):
        assert json.loads((Path(result["output"]) / "animation.json").read_text())["frames"] == FRAMES
    # other model options: another Predictor, the idle one closed (one configuration kept)
    run_job("animate", {**params, "size": "0.4b", "out_dir": str(tmp_path / "c")})
    assert len(log["made"]) == 2 and log["closed"] == 1


def test_a_script_call_makes_and_closes_its_own(made, tmp_path):
    from engine.motion.animate import animate_frames

    frames, log = made
    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame.image).save(images / f"{i:03d}.png")
    animate_frames(images, tmp_path / "a")
    assert len(log["made"]) == 1 and log["closed"] == 1
