"""Predict on the engine.runtime backends: ONNX Runtime end to end vs PyTorch, the GPU-path
processing (engine.runtime.gpu_ops) run on the CPU vs the numpy recipe, the CLI flags, and the
cache releasing ONNX sessions.

Tiny checkpoints at the real 1024 x 768 input. The ONNX exports (about 6 s per task here) are
made once, beside the checkpoints, by the first predict call and reused by the others.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.bundle import read_bundle
from engine.errors import EngineError
from engine.predict import predict_photos
from tests.test_predict_e2e import TASKS, ckpt_root  # noqa: F401  (the tiny checkpoints fixture)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two photos of different shapes (one taller, one wider than the model input), one batch."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name, (h, w) in (("tall", (320, 240)), ("wide", (240, 400))):
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.stack([xx * 255 // w, yy * 0.7, 255 - xx * 255 // w], axis=-1).astype(np.uint8)
        rgb[h // 6: h - h // 8, w // 3: 2 * w // 3] = [200, 150, 120]   # something person-sized
        Image.fromarray(rgb).save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    return paths


def _predict(photos, out, ckpt_root, **kw):
    kw.setdefault("dtype", "fp32")   # the exact CPU path on both backends
    dirs = predict_photos(photos, out, checkpoints=ckpt_root, device="cpu", seg_probs=True, batch_size=2, **kw)
    assert [d.name for d in dirs] == [p.stem for p in photos]
    return [read_bundle(d) for d in dirs]


@pytest.fixture(scope="module")
def torch_bundles(ckpt_root, photos, tmp_path_factory):
    return _predict(photos, tmp_path_factory.mktemp("torch"), ckpt_root)


@pytest.fixture(scope="module")
def onnx_bundles(ckpt_root, photos, tmp_path_factory):
    return _predict(photos, tmp_path_factory.mktemp("onnx"), ckpt_root, backend="onnxruntime")


# The GPU path's resizes and warps are float kernels; the recipe's are OpenCV's own (11-bit linear
# weights, warps sampled at 1/32 px), so its model inputs differ by a grey level here and there
# (docs/performance.md, Tolerances) and the tiny random models amplify that. Measured on the two
# photos: keypoints median 0.043 / 0.018 px, 81 / 88 % within 0.5 px, scores 0.017; normal median
# 0.028 deg, p99 1.1 deg; pointmap median 1.2 %; albedo p99 0.011, max 0.088.
GPU_PATH_LIMITS = dict(kp_median=0.1, kp_share=(0.5, 0.75), score=0.05, angle=(0.1, 3.0), rel=0.03,
                       albedo=(0.03, 0.2))
# ONNX Runtime and PyTorch see the same inputs (measured in the comments below)
SAME_INPUT_LIMITS = dict(kp_median=0.01, kp_share=(0.01, 0.9), score=1e-3, angle=(0.01, 0.1), rel=1e-3,
                         albedo=(2e-3, 0.05))


def assert_bundles_close(got, want, limits=SAME_INPUT_LIMITS):
    """The same photo through two numerically different paths of one model.

    Tiny random models have flat, ragged outputs, so a few argmax near-ties flip (seg pixels,
    heatmap peaks) and the DARK Newton step can move a weak keypoint by pixels; the figures
    asserted are medians and shares, with margin over those measured (in the comments).
    Albedo and seg probabilities are stored as half floats, hence their 1e-3 scale.
    """
    assert got.image.shape == want.image.shape and np.array_equal(got.image, want.image)
    assert (got.seg == want.seg).mean() > 0.999                  # measured 0.99997
    assert (got.mask == want.mask).mean() > 0.999                # measured: identical
    m = got.mask & want.mask
    assert m.sum() > 0.99 * want.mask.sum()
    for name in ("normal", "pointmap"):   # NaN exactly outside each bundle's own mask
        assert np.array_equal(np.isfinite(getattr(got, name)).all(-1), got.mask)
    kp = np.linalg.norm(got.keypoints[:, :2] - want.keypoints[:, :2], axis=1)
    within, share = limits["kp_share"]
    assert np.median(kp) < limits["kp_median"] and (kp < within).mean() > share   # measured 1e-4 px, 95 %
    assert np.abs(got.keypoints[:, 2] - want.keypoints[:, 2]).max() < limits["score"]   # measured 3e-4
    cos = np.clip((got.normal[m] * want.normal[m]).sum(-1), -1, 1)
    angle = np.degrees(np.arccos(cos))
    assert np.median(angle) < limits["angle"][0] and np.percentile(angle, 99) < limits["angle"][1]   # measured 0 / 0.03 deg
    rel = np.linalg.norm(got.pointmap[m] - want.pointmap[m], axis=-1) / np.linalg.norm(want.pointmap[m], axis=-1)
    assert np.median(rel) < limits["rel"]                        # measured 4e-5
    albedo = np.abs(got.albedo - want.albedo)
    # p99 in half-float steps; the max is where the GPU-path resize rounded an input pixel to the
    # next grey level (documented <= 1 level on < 1e-4 of pixels) and the random model amplified it
    assert np.percentile(albedo, 99) < limits["albedo"][0] and albedo.max() < limits["albedo"][1]   # measured 5e-4 / 1.2e-2
    probs = np.abs(got.seg_probs.astype(np.float32) - want.seg_probs.astype(np.float32))
    assert np.percentile(probs, 99) < 2e-3 and probs.max() < 0.05   # measured 5e-4 / 5e-4
    # a random model's points are nearly flat, so the fitted focal degenerates to ~1e-4 px, where
    # any change in the points changes it by its own size (or makes the fit give up): compare
    # intrinsics only where the focal is a real one
    real = [k for k in (got.K, want.K) if k is not None and k[0, 0] > 1]
    if real:
        assert len(real) == 2
        assert np.abs(got.K[:2, 2] - want.K[:2, 2]).max() < 0.1
        assert got.K[0, 0] == pytest.approx(want.K[0, 0], rel=1e-2)


def test_onnxruntime_backend_matches_torch(onnx_bundles, torch_bundles, ckpt_root):
    for got, want in zip(onnx_bundles, torch_bundles):
        assert_bundles_close(got, want)
        prov = got.meta["provenance"]
        assert prov["backend"] == "onnxruntime" and prov["device"] == "cpu" and prov["dtype"] == "float32"
        assert set(prov["runtime"]) == set(TASKS)
        pose = prov["runtime"]["pose"]
        assert pose["backend"] == "onnxruntime" and pose["providers"] == ["CPUExecutionProvider"]
        assert pose["batch_size"] == 4          # the flip pass rides in the same batch: 2 x 2 crops
        # exported once, beside the checkpoint, named after it
        assert pose["onnx"] == str(ckpt_root / "pose" / "onnx" / "sapiens2_0.4b_pose.fp32.onnx")
        assert torch_bundles[0].meta["provenance"]["runtime"]["seg"]["backend"] == "torch"
        assert torch_bundles[0].meta["provenance"]["runtime"]["seg"]["compile"] is None


def test_gpu_path_processing_matches_the_recipe(torch_bundles, ckpt_root, photos, tmp_path, monkeypatch):
    """The CUDA path's pre/post-processing (gpu_ops: resize, pad, warp, decode), run on the CPU."""
    import engine.predict.selection

    monkeypatch.setattr(engine.predict.selection, "processing_device", lambda device: torch.device("cpu"))
    for got, want in zip(_predict(photos, tmp_path, ckpt_root), torch_bundles):
        assert_bundles_close(got, want, GPU_PATH_LIMITS)


def test_cli_backend_flags(onnx_bundles, ckpt_root, photos, tmp_path, capsys):
    from engine.cli import main

    exported = ckpt_root / "normal" / "onnx" / "sapiens2_0.4b_normal.fp32.onnx"
    stamp = exported.stat().st_mtime_ns
    code = main(["predict", str(photos[0]), "--out", str(tmp_path / "cli"), "--tasks", "normal",
                 "--checkpoints", str(ckpt_root), "--device", "cpu", "--backend", "onnxruntime"])
    assert code == 0, capsys.readouterr().err
    assert exported.stat().st_mtime_ns == stamp     # the export is reused, not made again
    b = read_bundle(tmp_path / "cli" / "tall")
    assert b.meta["provenance"]["runtime"]["normal"]["onnx"] == str(exported)
    capsys.readouterr()
    code = main(["predict", str(photos[0]), "--out", str(tmp_path / "bad"), "--tasks", "normal",
                 "--checkpoints", str(ckpt_root), "--backend", "onnxruntime", "--dtype", "bf16"])
    assert code == 1 and "fp32 or fp16" in capsys.readouterr().err
    with pytest.raises(EngineError, match="--compile applies to the torch backend"):
        predict_photos(photos, tmp_path / "bad", checkpoints=ckpt_root, tasks="normal",
                       backend="onnxruntime", compile="default")
    with pytest.raises(EngineError, match="unknown backend"):
        predict_photos(photos, tmp_path / "bad", checkpoints=ckpt_root, tasks="normal", backend="tensorrt")
    assert not (tmp_path / "bad").exists()


def test_cache_releases_onnx_sessions(onnx_bundles, ckpt_root):
    from engine.model_cache import ModelCache

    paths = {t: ckpt_root / t / f"sapiens2_0.4b_{t}.safetensors" for t in ("normal", "albedo")}
    cache = ModelCache(paths, device="cpu", dtype="fp32", backend="onnxruntime", max_memory=1)
    normal = cache.get("normal")
    assert cache.used_bytes == normal.path.stat().st_size    # the graph file: no external data here
    cache.get("albedo")                                      # over budget: normal is released
    assert cache.loaded() == ["albedo"] and cache.evictions == 1 and normal.session is None
    assert cache.described["normal"]["providers"] == ["CPUExecutionProvider"]
    cache.clear()
    assert cache.loaded() == []
