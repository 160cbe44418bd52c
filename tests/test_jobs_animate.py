"""The animate job shares the process's Predictor (engine/jobs/predictors.py): under `serve` a
second animation of images or video loads no model again, as the avatar job's second call loads none."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def _bundle_frames(folder: Path, frames) -> Path:
    for i, frame in enumerate(frames):
        write_bundle(to_bundle(frame), folder / f"f{i:02d}")
    return folder


def test_a_frame_of_another_shape_is_refused_naming_it_before_any_work(tmp_path):
    """Each frame's joints are lifted in its own camera: a frame of another shape (a crop, another
    shot) would put the skeleton elsewhere for that frame, so the sequence is refused in words."""
    from engine.errors import BundleError

    folder = _bundle_frames(tmp_path / "frames", make_sequence(FRAMES, "wave", width=192, height=256))
    write_bundle(to_bundle(make_sequence(1, "wave", width=256, height=256)[0]), folder / "f01")   # square
    with pytest.raises(BundleError, match=r"1 of 4 frames have another shape than the sequence's 192x256 photos: "
                                          r"f01 \(256x256\)") as refused:
        run_job("animate", {"frames": str(folder), "out_dir": str(tmp_path / "anim")})
    assert "move them out of the folder" in str(refused.value)
    assert not (tmp_path / "anim").exists()


def test_a_frame_of_another_resolution_is_noted_and_animated_as_the_same_camera(tmp_path):
    """The same shape at another resolution is the same camera scaled (metric pointmap, scaled
    intrinsics): animated, with a note naming it, and its joints where the other frames put them."""
    low = make_sequence(FRAMES, "wave", width=192, height=256)
    high = make_sequence(FRAMES, "wave", width=384, height=512)
    same = run_job("animate", {"frames": str(_bundle_frames(tmp_path / "same", low)), "out_dir": str(tmp_path / "a")})
    mixed_folder = _bundle_frames(tmp_path / "mixed", low)
    write_bundle(to_bundle(high[2]), mixed_folder / "f02")
    seen = []
    mixed = run_job("animate", {"frames": str(mixed_folder), "out_dir": str(tmp_path / "b")},
                    progress=lambda stage, fraction, message: seen.append(message))
    assert same["notes"] == []
    assert mixed["notes"] == ["1 of 4 frames are of another resolution than the sequence's 192x256 photos, with the "
                              "same shape: f02 (384x512); animated as the same camera at another resolution"]
    assert f"note: {mixed['notes'][0]}" in seen
    joints = [json.loads((Path(r["output"]) / "frames" / "000002.json").read_text())["joints"] for r in (same, mixed)]
    gap = max(float(np.linalg.norm(np.subtract(joints[0][n], joints[1][n]))) for n in joints[0])
    assert gap < 0.02, gap   # metres: the same place, up to the finer frame's sampling of its maps
