"""engine.predict.Predictor: models loaded once for many photos, distinct bundle names, the output
checked before any model runs, who was found said in the result, progress during the passes."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from engine.bundle import read_bundle
from engine.errors import EngineError
from engine.predict import Predictor, bundle_names
from engine.predict.ops import CpuOps
from tests.test_predict_e2e import ckpt_root  # noqa: F401  (the tiny checkpoints fixture)


def _photo(path, value, hw=(160, 120)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.full((*hw, 3), value, np.uint8)
    rgb[20:140, 40:80] = [200, 150, 120]
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def count_loads(monkeypatch):
    import engine.models.loading as loading

    loads = []
    real = loading.load_model

    def counting(path, *a, **kw):
        loads.append(path)
        return real(path, *a, **kw)

    monkeypatch.setattr(loading, "load_model", counting)
    return loads


def test_models_load_once_across_photos_and_calls(ckpt_root, tmp_path, count_loads):
    photos = [_photo(tmp_path / "in" / f"p{i}.png", 30 * i) for i in range(3)]
    with Predictor(tasks=["seg", "normal"], checkpoints=ckpt_root, device="cpu", batch_size=2) as predictor:
        first = predictor.predict(photos, tmp_path / "out")
        second = predictor.predict(photos[:1], tmp_path / "out2")
        assert predictor.loads == 2
    assert len(count_loads) == 2          # seg and normal, each once, for 4 photos in two calls
    assert [r.status for r in first + second] == ["written"] * 4
    assert [r.name for r in first] == ["p0", "p1", "p2"]
    assert all(read_bundle(b).normal is not None for r in first for b in r.bundles)
    assert json.dumps([r.as_dict() for r in first])   # results are JSON-able for the protocol


def test_same_file_name_in_two_folders_gets_two_bundles(ckpt_root, tmp_path):
    a = _photo(tmp_path / "a" / "photo.png", 10)
    b = _photo(tmp_path / "b" / "photo.png", 220)
    results = Predictor(tasks="normal", checkpoints=ckpt_root, device="cpu").predict([a, b], tmp_path / "out")
    assert [r.name for r in results] == ["a_photo_png", "b_photo_png"]
    for result, photo in zip(results, (a, b)):
        bundle = read_bundle(result.bundles[0])
        assert np.array_equal(bundle.image, np.asarray(Image.open(photo)))


def test_bundle_names_are_deterministic_and_distinct():
    names = bundle_names(["x/photo.png", "y/photo.png", "z/photo.jpg", "solo.png", "solo.png",
                          "p/photo_png.png", "q/one/pic.png", "r/one/pic.png"])
    assert names[:5] == ["x_photo_png", "y_photo_png", "photo_jpg", "solo", "solo"]
    assert names[5] == "photo_png"
    # the same folder name and file name: the path's hash tells them apart
    assert names[6].startswith("one_pic_png_") and names[7].startswith("one_pic_png_") and names[6] != names[7]
    assert bundle_names(["q/one/pic.png", "r/one/pic.png"]) == names[6:]


def test_an_output_folder_that_is_not_a_bundle_is_refused_before_the_models_run(ckpt_root, tmp_path, count_loads):
    photo = _photo(tmp_path / "in" / "photo.png", 50)
    mine = tmp_path / "out" / "photo"
    mine.mkdir(parents=True)
    (mine / "thesis.txt").write_text("years of work")
    with pytest.raises(EngineError, match=r"not a predictions bundle.*choose another --out"):
        Predictor(tasks="normal", checkpoints=ckpt_root, device="cpu").predict([photo], tmp_path / "out")
    assert count_loads == [] and (mine / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.txt"]


def _two_people(monkeypatch):
    """Seg that sees two people: a tall one on the left and a smaller one on the right."""
    def seg_labels(self, logits, hw, with_probs):
        labels = np.zeros(hw, np.uint8)
        labels[10:150, 5:40] = 5
        labels[60:120, 90:110] = 7
        return labels, None
    monkeypatch.setattr(CpuOps, "seg_labels", seg_labels)


def test_several_people_said_in_the_result_the_bundle_and_the_log(ckpt_root, tmp_path, monkeypatch, caplog):
    _two_people(monkeypatch)
    photo = _photo(tmp_path / "in" / "group.png", 50)
    predictor = Predictor(tasks=["seg", "pose"], checkpoints=ckpt_root, device="cpu")
    with caplog.at_level(logging.WARNING, logger="engine.predict"):
        [result] = predictor.predict([photo], tmp_path / "out")
    assert result.people_found == 2 and result.people_kept == 1
    assert any("2 people found; the largest was kept" in n for n in result.notes)
    assert "2 people found" in caplog.text
    meta = read_bundle(result.bundles[0]).meta
    assert meta["person"]["count"] == 2 and meta["person"]["kept"] == 1
    assert meta["person"]["bbox"] == [5.0, 10.0, 39.0, 149.0]       # the larger one
    [every] = predictor.predict([photo], tmp_path / "all", all_people=True)
    assert every.people_found == 2 and every.people_kept == 2
    assert [p.split("/")[-1] for p in every.bundles] == ["group", "group_person1"]
    predictor.close()


def test_no_person_said_in_the_result(ckpt_root, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(CpuOps, "seg_labels", lambda self, logits, hw, p: (np.zeros(hw, np.uint8), None))
    photo = _photo(tmp_path / "in" / "empty.png", 50)
    with caplog.at_level(logging.WARNING, logger="engine.predict"):
        [result] = Predictor(tasks="seg", checkpoints=ckpt_root, device="cpu").predict([photo], tmp_path / "out")
    assert result.people_found == 0 and result.status == "written"
    assert any("no person found" in n for n in result.notes) and "no person found" in caplog.text
    assert read_bundle(result.bundles[0]).meta["person"]["count"] == 0


def test_progress_moves_during_the_model_passes(ckpt_root, tmp_path):
    photos = [_photo(tmp_path / "in" / f"p{i}.png", 40 * i) for i in range(3)]
    seen = []
    Predictor(tasks=["seg", "normal", "albedo"], checkpoints=ckpt_root, device="cpu", batch_size=2).predict(
        photos, tmp_path / "out", progress=lambda *a: seen.append(a))
    fractions = [f for stage, f, _ in seen if stage == "predict"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    first_write = next(i for i, (_, _, m) in enumerate(seen) if ": written" in m)
    before = {round(f, 4) for _, f, _ in seen[:first_write]}
    assert len(before - {0.0}) >= 3        # seg, normal and albedo of the first batch each moved it
    assert any("normal" in m for _, _, m in seen)


def test_bad_batch_size_is_refused(ckpt_root):
    for bad in (0, -3, "four", True):
        with pytest.raises(EngineError, match="batch_size"):
            Predictor(tasks="normal", checkpoints=ckpt_root, device="cpu", batch_size=bad)
