"""The CUDA path: the runners, the whole predict pipeline and the crops' second pass on a GPU.

Run only where torch sees a CUDA GPU (skipped elsewhere: CI has none). On the lent GPU machine,
bench/device_check.sh runs this file with the parity fixtures carried along; the figures it
printed are in docs/performance.md ("GPU figures"). Tolerances:
- fp32 on CUDA against the reference's CPU outputs: TF32 off (engine.runtime.torch_backend.
  exact_fp32; with torch's default TF32 convolutions an H200 gave 5.6e-4 to 9.1e-3 of the
  output's largest value), so within 1e-4 of it.
- bf16 (the GPU's auto format) against the fixtures: the CPU bf16 test's bounds
  (tests/test_runtime_torch.py).
- the pipeline on CUDA against the same torch pre/post-processing (engine.runtime.gpu_ops) on the
  CPU, tiny random models, fp32: maps where both masks hold within 1 degree (normals) and 1 %
  (points, of their median distance; albedo levels) at the 99th percentile, segmentation agreeing
  on 99 % of pixels, keypoints within half a pixel at the median. Not against the numpy recipe's
  pipeline (CpuOps): its OpenCV resizes round their weights to 11 bits, so the model inputs differ
  by a grey level on about 12 % of pixels (tests/test_runtime_gpu_ops.py bounds that), and a tiny
  random model amplifies it (its pointmap 17 % of the median distance apart at the 99th
  percentile, the same on the H200 and with gpu_ops on this CPU).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from engine.runtime import get_runner
from engine.runtime.precision import compare
from tests.test_predict_e2e import ckpt_root  # noqa: F401  (the tiny checkpoints fixture)
from tests.test_runtime_torch import TASKS, _tuple, parity  # noqa: F401  (the parity fixtures)

# SAPIENS_GPU_TEST_DEVICE picks another GPU (cuda:1), or the CPU to dry-run this file's logic
DEVICE = os.environ.get("SAPIENS_GPU_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                reason="no CUDA GPU: the GPU path's tests run on one")

def test_fp32_on_cuda_reproduces_the_parity_fixtures(parity):
    folder, io = parity
    for task in TASKS:
        runner = get_runner(task, folder / f"{task}.safetensors", device=DEVICE, dtype="fp32", batch_size=2)
        assert runner.device == torch.device(DEVICE) and runner.dtype == torch.float32
        got = _tuple(runner(io["input"]))
        assert got[0].device.type == "cpu" and got[0].dtype == torch.float32
        ref = io[f"{task}.out"]
        error = float((got[0] - ref).abs().max() / ref.abs().max())
        print(f"fp32 on {DEVICE}: {task} max error / max output {error:.2e}")
        assert error < 1e-4, (task, error)
        if task == "pointmap":
            assert torch.allclose(got[1].flatten(), io["pointmap.scale"].flatten(), rtol=1e-4)
        runner.release()


def test_the_gpu_auto_format_agrees_with_the_fixtures(parity):
    folder, io = parity
    figures = {}
    for task in TASKS:
        runner = get_runner(task, folder / f"{task}.safetensors", device=DEVICE, dtype="auto", batch_size=2)
        assert runner.dtype in (torch.bfloat16, torch.float16)
        got = runner(io["input"])
        want = tuple(io[k] for k in ("pointmap.out", "pointmap.scale")) if task == "pointmap" else io[f"{task}.out"]
        figures[task] = compare(task, got, want, (256, 192))
        runner.release()
    print({t: round(f["raw_rel_l2"], 4) for t, f in figures.items()})
    for task, f in figures.items():
        assert 0 < f["raw_rel_l2"] < 0.06, (task, f)
    assert figures["pose"]["keypoint_px"]["median"] < 0.5
    assert figures["seg"]["seg_agreement"] > 0.95
    assert figures["normal"]["normal_angle_deg"]["median"] < 2.0
    assert figures["pointmap"]["pointmap_rel"]["median"] < 0.1


def test_a_pose_flip_pass_and_a_padded_chunk_on_cuda(parity):
    """The flip pass rides in the batch; 3 images through batch 2 (a short last chunk)."""
    folder, io = parity
    from engine.paths import asset
    import json

    flip = json.loads(asset("keypoints308.json").read_text())["flip_indices"]
    x = torch.cat([io["input"], io["input"][:1]])
    cpu = get_runner("pose", folder / "pose.safetensors", device="cpu", dtype="fp32", batch_size=2)
    gpu = get_runner("pose", folder / "pose.safetensors", device=DEVICE, dtype="fp32", batch_size=2)
    want, got = cpu.pose_flip_test(x, flip), gpu.pose_flip_test(x, flip)
    assert got.shape == want.shape
    assert float((got - want).abs().max() / want.abs().max()) < 1e-2


@pytest.fixture(scope="module")
def person_photo():
    """The bundled sample's photo and its true keypoints (no renderer needed: open3d is not on
    every GPU machine)."""
    from engine.bundle import read_bundle
    from engine.paths import asset

    return read_bundle(asset("sample")).keypoints, asset("sample") / "image.png"


def _passes(device, checkpoints, photo, keypoints):
    """The whole-photo passes and the crops' second pass, as Predictor.predict runs them, with the
    torch pre/post-processing (GpuOps) on `device` whatever it is."""
    from engine.predict import Predictor
    from engine.predict.crops import run_crops
    from engine.predict.ops import GpuOps
    from engine.predict.photos import PhotoWork, load_work
    from engine.predict.tasks import TaskRun

    with Predictor(tasks=TASKS, checkpoints=checkpoints, device=device, dtype="fp32") as predictor:
        ops = GpuOps(torch.device(device))
        run = TaskRun(cache=predictor.cache, ops=ops, bbox=None, all_people=False, seg_probs=False)
        work = PhotoWork(path=photo, out_name="photo")
        load_work(work)
        for task in ["seg", "pose", "normal", "pointmap", "albedo"]:
            run(task, [work])
        found = [k.copy() for k in work.keypoints]
        work.keypoints = [keypoints.copy()]   # the true keypoints: the tiny pose model's are noise
        run_crops(run, [work], TASKS)
        run.finish(work)
    return work, found


def _agree(a: dict, b: dict, mask: np.ndarray) -> dict:
    cos = np.clip((a["normal"][mask] * b["normal"][mask]).sum(-1), -1, 1)
    points = np.linalg.norm(a["pointmap"][mask] - b["pointmap"][mask], axis=-1)
    return {"normal_deg_p99": float(np.percentile(np.degrees(np.arccos(cos)), 99)),
            # of the median distance: a random model's points near the camera make per-point ratios blow up
            "point_rel_p99": float(np.percentile(points, 99) / np.median(np.linalg.norm(b["pointmap"][mask], axis=-1))),
            "albedo_p99": float(np.percentile(np.abs(a["albedo"][mask] - b["albedo"][mask]), 99))}


def test_the_pipeline_on_cuda_matches_the_cpu(ckpt_root, person_photo):
    keypoints, photo = person_photo
    cpu, cpu_kp = _passes("cpu", ckpt_root, photo, keypoints)
    gpu, gpu_kp = _passes(DEVICE, ckpt_root, photo, keypoints)
    assert (gpu.seg == cpu.seg).mean() > 0.99
    both = np.isfinite(cpu.maps["normal"]).all(-1) & np.isfinite(gpu.maps["normal"]).all(-1)
    assert both.sum() > 1000
    whole = _agree(gpu.maps, cpu.maps, both)
    kp = np.linalg.norm(gpu_kp[0][:, :2] - cpu_kp[0][:, :2], axis=-1)
    print(f"whole photo, CUDA vs CPU (fp32, gpu_ops on both): {whole}, keypoints median {np.median(kp):.3f} px")
    assert whole["normal_deg_p99"] < 1.0 and whole["point_rel_p99"] < 0.01 and whole["albedo_p99"] < 0.01
    assert np.median(kp) < 0.5
    # the crops: the same boxes (the same keypoints), the same maps within the same bounds
    assert [c.box for c in gpu.crops[0]] == [c.box for c in cpu.crops[0]] and len(cpu.crops[0]) >= 2
    for g, c in zip(gpu.crops[0], cpu.crops[0]):
        assert (g.seg == c.seg).mean() > 0.99
        both = np.isfinite(g.normal).all(-1) & np.isfinite(c.normal).all(-1)
        figures = _agree({"normal": g.normal, "pointmap": g.pointmap, "albedo": g.albedo},
                         {"normal": c.normal, "pointmap": c.pointmap, "albedo": c.albedo}, both)
        print(f"crop {g.name}, CUDA vs CPU (fp32, gpu_ops on both): {figures}")
        assert figures["normal_deg_p99"] < 1.0 and figures["point_rel_p99"] < 0.01 and figures["albedo_p99"] < 0.01


def test_compiled_with_cuda_graphs_agrees_with_eager(parity):
    folder, io = parity
    x = torch.cat([io["input"], io["input"][:1]])   # 3 images through batch 2: the padded chunk
    eager = get_runner("normal", folder / "normal.safetensors", device=DEVICE, dtype="auto", batch_size=2)(x)
    compiled = get_runner("normal", folder / "normal.safetensors", device=DEVICE, dtype="auto", batch_size=2,
                          compile="reduce-overhead")
    got = compiled(x)
    again = compiled(x)                              # the captured graph replayed
    assert got.shape == eager.shape == (3, *eager.shape[1:])
    f = compare("normal", got, eager, (256, 192))   # measured on an H200: 0.026, 0.78 degrees
    print(f"reduce-overhead vs eager ({compiled.dtype}): {f['raw_rel_l2']:.4f} raw rel. L2, "
          f"normal angle median {f['normal_angle_deg']['median']:.3f} deg")
    assert f["raw_rel_l2"] < 0.05 and f["normal_angle_deg"]["median"] < 1.5
    assert torch.equal(got, again)
