"""The torch runner: exact on the CPU in fp32, batching, out-of-memory fallback, flip pass, bf16.

bf16 agreement on the tiny parity models (random weights, measured on this CPU; real-size figures
come from bench/bench_precision.py): raw outputs within 2-3 % relative L2; we assert < 6 %.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import engine
from engine import recipe
from engine.errors import CheckpointError, EngineError
from engine.paths import asset
from engine.runtime import get_runner
from engine.runtime.device import is_out_of_memory, resolve_device, resolve_dtype
from engine.runtime.precision import compare
from engine.runtime.torch_backend import TorchRunner

TASKS = ["pose", "seg", "normal", "pointmap", "albedo"]


@pytest.fixture(scope="module")
def parity(shared_reference):
    folder = shared_reference / "parity" / "tiny_1k"
    return folder, load_file(folder / "io.safetensors")


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("task", TASKS)
def test_cpu_fp32_runner_is_the_plain_model_exactly(parity, task):
    folder, io = parity
    x = io["input"]
    model = engine.load_model(folder / f"{task}.safetensors")
    with torch.no_grad():
        want = _tuple(model(x))
        want_single = _tuple(model(x[1:2]))
    runner = get_runner(task, folder / f"{task}.safetensors", device="cpu", dtype="auto", batch_size=2)
    assert runner.device.type == "cpu" and runner.dtype == torch.float32
    got = _tuple(runner(x))
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    runner.batch_size = 1                                   # one image per pass: the same per image
    got = _tuple(runner(x))
    assert all(torch.equal(a[1:2], b) for a, b in zip(got, want_single))
    # and the parity fixture holds through the runner
    ref = io[f"{task}.out"]
    assert (got[0] - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_runner_wraps_the_cached_model_without_copying(parity):
    folder, io = parity
    model = engine.load_model(folder / "normal.safetensors")
    runner = get_runner("normal", folder / "normal.safetensors", model=model, device="cpu")
    assert runner.model is model
    with pytest.raises(CheckpointError, match="holds a normal model, but a seg model"):
        get_runner("seg", folder / "normal.safetensors", model=model, device="cpu")


def test_flip_pass_in_one_batch_equals_two_passes_and_the_recipe(parity):
    folder, io = parity
    x = io["input"]
    flip = json.loads(asset("keypoints308.json").read_text())["flip_indices"]
    runner = get_runner("pose", folder / "pose.safetensors", device="cpu", batch_size=4)
    together = runner.pose_flip_test(x, flip, in_one_batch=True)
    apart = runner.pose_flip_test(x, flip, in_one_batch=False)
    with torch.no_grad():
        want = recipe.flip_test_average(runner.model(x), runner.model(x.flip(-1)), flip)
    assert together.shape == (2, 308, 64, 48)
    assert torch.equal(apart, want)
    # a batch of 4 instead of 2 may sum in another order: float rounding only
    assert (together - want).abs().max() <= 1e-5 * want.abs().max()


class _OutOfMemoryAbove:
    """Raises the device's out-of-memory error for batches larger than `limit` (as a GPU would)."""

    def __init__(self, model, limit):
        self.model, self.limit, self.calls = model, limit, []

    def __call__(self, x):
        self.calls.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.model(x)


def test_out_of_memory_halves_the_batch_and_keeps_every_result(parity):
    folder, io = parity
    x = torch.cat([io["input"]] * 3)                         # 6 images
    runner = get_runner("seg", folder / "seg.safetensors", device="cpu", batch_size=8)
    with torch.no_grad():
        want = torch.cat([runner.model(x[i:i + 2]) for i in range(0, 6, 2)])
    runner.forward = _OutOfMemoryAbove(runner.model, limit=2)
    got = runner(x)
    assert runner.batch_size == 2 and runner.oom_fallbacks == 2
    assert runner.forward.calls == [6, 4, 2, 2, 2]           # 8 -> 4 -> 2, then the rest at 2
    assert torch.equal(got, want)


def test_out_of_memory_at_batch_one_is_a_clear_error(parity):
    folder, io = parity
    runner = get_runner("normal", folder / "normal.safetensors", device="cpu", batch_size=2)
    runner.forward = _OutOfMemoryAbove(runner.model, limit=0)
    with pytest.raises(EngineError, match=r"out of memory running the normal model \(normal.safetensors\)"
                                          r".*one image at a time"):
        runner(io["input"])
    assert is_out_of_memory(RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory for requested buffer"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_device_and_dtype_resolution():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16 and resolve_dtype("fp16", "cpu") == torch.float16
    with pytest.raises(EngineError, match="unknown dtype"):
        resolve_dtype("int8", "cpu")
    with pytest.raises(EngineError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(EngineError, match="sees no CUDA GPU"):
            resolve_device("cuda")


def test_wrong_input_size_is_refused_for_pointmaps(parity):
    folder, _ = parity
    runner = get_runner("pointmap", folder / "pointmap.safetensors", device="cpu")
    with pytest.raises(ValueError, match=r"takes 256 x 192 inputs, got 128 x 96"):
        runner(torch.zeros(1, 3, 128, 96))


def test_bf16_agrees_with_fp32_on_the_tiny_models(parity):
    folder, io = parity
    x = io["input"]
    figures = {}
    for task in TASKS:
        fp32 = get_runner(task, folder / f"{task}.safetensors", device="cpu", dtype="fp32", batch_size=2)(x)
        bf16 = TorchRunner.from_checkpoint(folder / f"{task}.safetensors", task, device="cpu", dtype="bf16",
                                           batch_size=2)(x)
        assert all(o.dtype == torch.float32 for o in _tuple(bf16))   # returned as fp32 whatever ran
        figures[task] = compare(task, bf16, fp32, (256, 192))
    for task, f in figures.items():
        assert 0 < f["raw_rel_l2"] < 0.06, (task, f)            # it did run in bf16, and close
    assert figures["pose"]["keypoint_px"]["median"] < 0.5
    assert figures["pose"]["keypoint_px"]["within_4px"] > 0.8
    assert figures["seg"]["seg_agreement"] > 0.95
    assert figures["normal"]["normal_angle_deg"]["median"] < 2.0
    assert figures["pointmap"]["pointmap_rel"]["median"] < 0.1
    assert figures["albedo"]["albedo_abs"]["median"] < 0.005


def test_fp32_on_a_gpu_runs_without_tf32_and_puts_the_flags_back():
    """exact_fp32 turns TF32 off for cuDNN and matmuls while an fp32 model computes on CUDA (on an
    H200 the parity fixtures went from 9.1e-3 to 1.1e-5 of the largest output) and restores what
    the process had; the flags exist on CPU builds of torch too."""
    from engine.runtime.torch_backend import exact_fp32

    kept = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
    try:
        with exact_fp32(True):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with exact_fp32(False):   # bf16 / fp16 runs leave them alone
            assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with pytest.raises(RuntimeError), exact_fp32(True):
            raise RuntimeError("a failed forward")
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = kept
