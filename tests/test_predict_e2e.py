"""End to end on CPU: tiny checkpoints in the released layout at the real 1024 x 768 input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from engine.bundle import read_bundle
from engine.checkpoints import sha256_file
from engine.errors import CheckpointError, EngineError, InputImageError
from engine.predict import predict_photos

TASKS = ("pose", "seg", "normal", "pointmap", "albedo")
PHOTO_HW = (320, 240)


@pytest.fixture(scope="module")
def ckpt_root(tmp_path_factory):
    from engine.models.testing import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    for task in TASKS:
        write_tiny_checkpoint(root / task / f"sapiens2_0.4b_{task}.safetensors", task, seed=1)
    return root


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    h, w = PHOTO_HW
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx, yy * 0.7, 255 - xx], axis=-1).astype(np.uint8)
    rgb[60:280, 80:160] = [200, 150, 120]   # something person-sized in the middle
    path = tmp_path_factory.mktemp("photos") / "someone.png"
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture(scope="module")
def full_bundle(ckpt_root, photo, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    seen = []
    dirs = predict_photos([photo], out, checkpoints=ckpt_root, progress=lambda *a: seen.append(a))
    return dirs, seen


def test_every_task_runs_and_the_bundle_is_consistent(full_bundle, photo, ckpt_root):
    dirs, seen = full_bundle
    assert len(dirs) == 1 and dirs[0].name == "someone"
    b = read_bundle(dirs[0])
    h, w = PHOTO_HW
    assert b.image.shape == (h, w, 3)
    assert np.array_equal(b.image, np.asarray(Image.open(photo)))
    for name in ("seg", "mask"):
        assert getattr(b, name).shape == (h, w)
    for name in ("normal", "pointmap", "albedo"):
        assert getattr(b, name).shape == (h, w, 3), name
    # masks agree across maps: the mask is a seg foreground component; normals and points are
    # known exactly inside it
    assert b.mask.any() and not (b.mask & (b.seg == 0)).any()
    assert np.array_equal(np.isfinite(b.normal).all(-1), b.mask)
    assert np.array_equal(np.isfinite(b.pointmap).all(-1), b.mask)
    assert np.allclose(np.linalg.norm(b.normal[b.mask], axis=-1), 1, atol=1e-4)
    assert b.albedo.min() >= 0 and b.albedo.max() <= 1
    # keypoints: photo pixels, within the pose crop the box gave, every one kept and flagged
    crop = b.meta["crop"]["pose"]
    lo = np.array(crop["center"]) - np.array(crop["scale"]) / 2 + 0.5
    hi = lo + np.array(crop["scale"])
    assert b.keypoints.shape == (308, 3)
    in_crop = ((b.keypoints[:, :2] >= lo - 1e-3) & (b.keypoints[:, :2] <= hi + 1e-3)).all(axis=1)
    # the DARK Newton step on a random model's ragged heatmaps can throw a few beyond the crop
    assert in_crop.mean() > 0.9
    flags = json.loads((dirs[0] / "keypoints.json").read_text())["inside"]
    assert np.array_equal(flags, b.keypoints_inside())
    # provenance names the files and their hashes; timings are there
    prov = b.meta["provenance"]
    assert set(prov["models"]) == set(TASKS)
    pose_file = ckpt_root / "pose" / "sapiens2_0.4b_pose.safetensors"
    assert prov["models"]["pose"]["sha256"] == sha256_file(pose_file)
    # dtype auto on the CPU: the mode this CPU runs fastest within the tolerances (fp32 or bf16)
    from engine.runtime.cpu_modes import auto_mode

    mode = auto_mode()
    assert prov["device"] == "cpu" and prov["dtype"] == {"fp32": "float32", "bf16": "bfloat16"}[mode]
    assert prov["runtime"]["pose"]["cpu_mode"] == mode
    assert {"decode", "forward_seg", "forward_pose", "post_pointmap"} <= set(prov["timings_s"])
    assert b.meta["person"]["bbox_source"] == "segmentation"
    assert b.meta["photo"]["width"] == w and b.meta["photo"]["height"] == h
    if b.K is not None:
        assert b.meta["intrinsics"]["fx"] == pytest.approx(b.K[0, 0])
    else:
        assert any("intrinsics" in n for n in b.meta["notes"])
    assert seen and seen[-1][1] == pytest.approx(1.0)


def test_skip_existing_leaves_bundles_alone(full_bundle, photo, ckpt_root):
    dirs, _ = full_bundle
    stamp = (dirs[0] / "bundle.json").stat().st_mtime_ns
    again = predict_photos([photo], dirs[0].parent, checkpoints=ckpt_root, skip_existing=True)
    assert again == dirs
    assert (dirs[0] / "bundle.json").stat().st_mtime_ns == stamp


def test_manual_box_keeps_and_flags_keypoints_outside_the_photo(ckpt_root, photo, tmp_path):
    # a box hanging off the left edge: most of the crop lies outside the photo
    dirs = predict_photos([photo], tmp_path, checkpoints=ckpt_root, tasks="pose", bbox=[-300, 0, 60, 320])
    b = read_bundle(dirs[0])
    inside = b.keypoints_inside()
    assert (~inside).any() and (b.keypoints[~inside, 0] < 0).any()
    assert b.meta["person"]["bbox_source"] == "manual"
    assert b.seg is None and b.normal is None
    assert b.mask[:, :61].all() and not b.mask[:, 62:].any()


def test_bad_photos_are_reported_and_skipped(ckpt_root, photo, tmp_path):
    (tmp_path / "notes.jpg").write_text("not a photo")
    Image.fromarray(np.zeros((400, 300, 3), np.uint8) + 90).save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    errors = []
    photos = [tmp_path / "notes.jpg", tmp_path / "cut.jpg", photo, tmp_path / "dot.png"]
    dirs = predict_photos(photos, tmp_path / "out", checkpoints=ckpt_root, tasks="normal",
                          on_error=lambda p, e: errors.append((p.name, e)))
    assert [d.name for d in dirs] == ["someone"]
    assert [name for name, _ in errors] == ["notes.jpg", "cut.jpg", "dot.png"]
    assert all(isinstance(e, InputImageError) for _, e in errors)
    b = read_bundle(dirs[0])
    assert any("segmentation not run" in n for n in b.meta["notes"])
    assert b.mask.all() and np.isfinite(b.normal).all()


def test_photo_with_no_person(ckpt_root, photo, tmp_path):
    from engine.models.loading import load_model, save_checkpoint

    model = load_model(ckpt_root / "seg" / "sapiens2_0.4b_seg.safetensors")
    with torch.no_grad():
        model.decode_head.conv_seg.weight.zero_()
        model.decode_head.conv_seg.bias.zero_()
        model.decode_head.conv_seg.bias[0] = 10.0     # background everywhere
    root = tmp_path / "ckpt"
    save_checkpoint(model, root / "seg" / "sapiens2_0.4b_seg.safetensors")
    dirs = predict_photos([photo], tmp_path / "out", checkpoints=root, tasks="seg")
    b = read_bundle(dirs[0])
    assert not b.mask.any() and (b.seg == 0).all()
    assert any("no person found" in n for n in b.meta["notes"])
    assert b.meta["person"]["bbox_source"] == "whole_image"


def test_missing_and_wrong_checkpoints(ckpt_root, photo, tmp_path):
    with pytest.raises(CheckpointError, match=r"sapiens-engine download --size 0.4b --tasks pose"):
        predict_photos([photo], tmp_path / "out", checkpoints=tmp_path / "empty", tasks="pose")
    with pytest.raises(CheckpointError, match="no checkpoints of size 0.4b"):
        predict_photos([photo], tmp_path / "out", checkpoints=tmp_path / "empty")
    wrong = tmp_path / "wrong"
    (wrong / "pose").mkdir(parents=True)
    shutil.copy(ckpt_root / "seg" / "sapiens2_0.4b_seg.safetensors", wrong / "pose" / "sapiens2_0.4b_pose.safetensors")
    with pytest.raises(CheckpointError, match="is a seg checkpoint.*pose"):
        predict_photos([photo], tmp_path / "out", checkpoints=wrong, tasks="pose")
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_is_refused_before_the_models_run(ckpt_root, photo, tmp_path, monkeypatch):
    from engine.model_cache import ModelCache

    (tmp_path / "taken").write_text("a file where the output directory should be")
    monkeypatch.setattr(ModelCache, "get", lambda *a: pytest.fail("a model ran before --out was checked"))
    with pytest.raises(EngineError, match="is a file, not a folder"):
        predict_photos([photo], tmp_path / "taken", checkpoints=ckpt_root, tasks="normal")
    assert (tmp_path / "taken").read_text() == "a file where the output directory should be"


def test_cli_predict(ckpt_root, photo, tmp_path, capsys):
    from engine.cli import main

    code = main(["predict", str(photo), "--out", str(tmp_path / "cli"), "--tasks", "normal",
                 "--checkpoints", str(ckpt_root), "--device", "cpu", "--dtype", "fp32"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip() == str(tmp_path / "cli" / "someone")
    assert "normal" in captured.err and "100.0%" in captured.err
    code = main(["predict", str(tmp_path / "nothing.png"), "--out", str(tmp_path / "cli2"),
                 "--tasks", "normal", "--checkpoints", str(ckpt_root)])
    assert code == 1 and "nothing.png: no such file" in capsys.readouterr().err
