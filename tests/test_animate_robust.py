"""`animate` on bad input (issue 11): every frame keeps its place, unusable ones are filled and
say why, a sequence with too few usable frames is refused in words before anything is written,
a non-animation output folder is never replaced, a fake video says so plainly."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from engine.bundle import write_bundle
from engine.errors import EngineError, InputImageError
from engine.motion.animate import TooFewFrames, animate_frames
from engine.synthetic import make_sequence, to_bundle

FPS = 30.0
N = 6


@pytest.fixture(scope="module")
def frames():
    return make_sequence(N, "wave", fps=FPS, width=192, height=256)


def write_bundles(frames, root: Path, edit=None) -> Path:
    for i, frame in enumerate(frames):
        bundle = to_bundle(frame)
        if edit is not None:
            edit(i, bundle)
        write_bundle(bundle, root / f"{i:04d}")
    return root


def frame_joints(anim: Path, i: int) -> dict:
    return json.loads((anim / "frames" / f"{i:06d}.json").read_text())


def body_distance_m(anim: Path, i: int, j: int) -> float:
    """Largest distance of any joint of frame i from the same joint in frame j."""
    a, b = frame_joints(anim, i)["joints"], frame_joints(anim, j)["joints"]
    return max(float(np.linalg.norm(np.subtract(a[n], b[n]))) for n in a)


def test_corrupt_bundle_frames_are_filled_in_place(frames, tmp_path):
    root = write_bundles(frames, tmp_path / "bundles")
    (root / "0002" / "bundle.json").write_text("{ not json")
    (root / "0004" / "pointmap.exr").write_bytes(b"garbage")
    anim = animate_frames(root, tmp_path / "anim", fps=FPS)
    summary = json.loads((anim / "animation.json").read_text())
    assert summary["frames"] == N and len(list((anim / "frames").iterdir())) == N
    assert {2, 4} <= set(summary["filled_frames"])
    assert set(summary["unusable_frames"]) >= {"2", "4"}
    # a filled frame lies between its neighbours (it had a joint 3.5 m from the body)
    for i in (2, 4):
        assert frame_joints(anim, i)["filled"]
        assert body_distance_m(anim, i, i - 1) < 0.3


def test_bad_predictions_are_checked_on_the_lifted_joints(frames, tmp_path):
    def nan_pointmap(i, bundle):
        if i == 3:
            bundle.pointmap = np.full_like(bundle.pointmap, np.nan)
    anim = animate_frames(write_bundles(frames, tmp_path / "nan", nan_pointmap), tmp_path / "anim", fps=FPS)
    summary = json.loads((anim / "animation.json").read_text())
    assert 3 in summary["filled_frames"] and "pointmap" in summary["unusable_frames"]["3"]
    assert body_distance_m(anim, 3, 2) < 0.3

    def tiny_focal(i, bundle):
        bundle.K = bundle.K.copy()
        bundle.K[0, 0] = bundle.K[1, 1] = 0.03
    out = tmp_path / "refused"
    with pytest.raises(TooFewFrames, match="too few usable frames.*focal length is 0.03 px"):
        animate_frames(write_bundles(frames, tmp_path / "focal", tiny_focal), out, fps=FPS)
    assert not out.exists()                        # refused before anything was written


def test_no_usable_frame_is_refused_in_words(frames, tmp_path):
    def nobody(i, bundle):
        bundle.keypoints = bundle.keypoints.copy()
        bundle.keypoints[:, 2] = 0.0               # nothing confident in any frame
    with pytest.raises(TooFewFrames, match=f"too few usable frames: 0 of {N}"):
        animate_frames(write_bundles(frames, tmp_path / "b", nobody), tmp_path / "anim", fps=FPS)


@dataclass
class FakeResult:
    photo: str
    status: str
    bundles: list = field(default_factory=list)
    error: dict | None = None


def test_bad_image_frames_keep_the_timeline(frames, tmp_path, monkeypatch):
    """Images -> predictions (the model passes replaced by each frame's exact predictions) with
    two unreadable images among five: five frames come out, the two filled and marked."""
    from PIL import Image

    import engine.predict
    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate(frames[:5]):
        Image.fromarray(frame.image).save(images / f"{i:03d}.png")
    for i in (1, 3):
        (images / f"{i:03d}.png").write_bytes(b"not a png")
    made = {}

    class ExactPredictor:
        def __init__(self, **kwargs):
            made.update(kwargs)

        def predict(self, photos, out_dir, on_error=None, progress=None, **kwargs):
            out = []
            for p in photos:
                try:
                    Image.open(p).verify()
                except Exception as exc:   # what the real predictor reports for a broken photo
                    out.append(FakeResult(str(p), "failed", error={"code": "bad_image", "message": f"{p}: {exc}"}))
                    continue
                i = int(Path(p).stem)
                out.append(FakeResult(str(p), "written", [str(write_bundle(to_bundle(frames[i]), Path(out_dir) / p.stem))]))
            return out

        def close(self):
            pass

    monkeypatch.setattr(engine.predict, "Predictor", ExactPredictor)
    anim = animate_frames(images, tmp_path / "anim", fps=FPS, backend="onnxruntime", size="1b")
    assert made["backend"] == "onnxruntime" and made["size"] == "1b"
    summary = json.loads((anim / "animation.json").read_text())
    assert summary["frames"] == 5 and len(list((anim / "frames").iterdir())) == 5
    assert summary["filled_frames"] == [1, 3]
    assert "001.png" in summary["unusable_frames"]["1"]
    assert frame_joints(anim, 3)["source"].endswith("003.png")
    assert body_distance_m(anim, 1, 0) < 0.3


def test_fake_video_says_not_readable(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    fake = tmp_path / "clip.mp4"
    fake.write_text("this is not a video\n")
    with pytest.raises(InputImageError) as info:
        animate_frames(fake, tmp_path / "anim")
    message = str(info.value)
    assert "not a readable video" in message
    assert "libav" not in message and len(message.splitlines()) == 1


def test_out_folder_that_is_not_an_animation_is_refused(frames, tmp_path):
    from engine.jobs import run_job
    root = write_bundles(frames[:3], tmp_path / "bundles")
    mine = tmp_path / "my_things"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious")
    with pytest.raises(EngineError, match="not an animation"):
        run_job("animate", {"frames": str(root), "out_dir": str(mine)})
    assert (mine / "thesis.txt").read_text() == "precious" and len(list(mine.iterdir())) == 1
    # an earlier animation may be replaced
    run_job("animate", {"frames": str(root), "out_dir": str(tmp_path / "anim")})
    run_job("animate", {"frames": str(root), "out_dir": str(tmp_path / "anim")})


def test_animate_takes_the_model_options():
    from engine.options import BY_NAME
    for name in ("checkpoints", "size", "device", "backend"):
        assert "animate" in BY_NAME[name].jobs, name
