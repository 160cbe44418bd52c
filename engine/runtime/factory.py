"""get_runner: one task model on the backend, device and number format asked for.

    runner = get_runner("pose", "pose/sapiens2_0.4b_pose.safetensors", backend="torch",
                        device="auto", dtype="auto", batch_size=8)
    heatmaps = runner(normalized_batch)                     # B x 308 x 256 x 192, fp32 CPU
    heatmaps = runner.pose_flip_test(crops, flip_indices)   # flip pass in the same batch

backend "onnxruntime" takes an exported `.onnx` file, or a checkpoint, in which case the export
`<onnx_dir>/<stem>.<dtype>.onnx` is used when it is newer than the checkpoint and made (once)
otherwise. onnx_dir defaults to `onnx/` beside the checkpoint, or the user cache when that
directory cannot be written.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import CheckpointError, EngineError

BACKENDS = ("torch", "onnxruntime")


def get_runner(task: str | None, checkpoint: str | os.PathLike, backend: str = "torch", device: str = "auto",
               dtype: str = "auto", *, batch_size: int = 1, compile: str | None = None,
               onnx_dir: str | os.PathLike | None = None, model=None, progress=None):
    """A runner (engine.runtime.runner.Runner) for `task` from `checkpoint`.

    task None accepts whatever task the file holds. model: an already loaded engine model to wrap
    (torch backend; the predict cache's), instead of loading `checkpoint` again.
    """
    if backend == "torch":
        from engine.runtime.torch_backend import TorchRunner

        if model is not None:
            _check_task(model.task, task, checkpoint)
            return TorchRunner(model, device=device, dtype=dtype, batch_size=batch_size, compile=compile,
                               source=Path(checkpoint).name if checkpoint else "")
        return TorchRunner.from_checkpoint(checkpoint, task, device=device, dtype=dtype,
                                           batch_size=batch_size, compile=compile)
    if backend == "onnxruntime":
        from engine.runtime.onnx_backend import OnnxRunner

        if compile:
            raise EngineError("--compile applies to the torch backend only")
        onnx_path = ensure_onnx(checkpoint, onnx_dtype(dtype, device), onnx_dir, progress=progress)
        runner = OnnxRunner(onnx_path, device=device, batch_size=batch_size)
        _check_task(runner.task, task, onnx_path)
        return runner
    raise EngineError(f"unknown backend {backend!r}; use {' or '.join(BACKENDS)}")


def onnx_dtype(dtype: str, device: str) -> str:
    """ONNX Runtime runs fp32 or fp16 graphs (its bf16 coverage is thin): auto is fp16 on CUDA."""
    if dtype == "auto":
        return "fp16" if str(device).startswith("cuda") or (device == "auto" and _ort_has_cuda()) else "fp32"
    if dtype == "bf16":
        raise EngineError("--backend onnxruntime runs fp32 or fp16 models; use --dtype fp16 or fp32")
    if dtype not in ("fp32", "fp16"):
        raise EngineError(f"unknown dtype {dtype!r}; use auto, fp32 or fp16")
    return dtype


def _ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _check_task(have: str | None, want: str | None, path) -> None:
    if want is not None and have != want:
        raise CheckpointError(f"{path}: holds a {have} model, but a {want} model was asked for")


def ensure_onnx(checkpoint: str | os.PathLike, dtype: str, onnx_dir=None, progress=None) -> Path:
    """The ONNX file for a checkpoint (itself when it is one), exported when missing or stale."""
    from engine.runtime.onnx_export import export_checkpoint, onnx_name

    checkpoint = Path(checkpoint)
    if checkpoint.suffix == ".onnx":
        if not checkpoint.is_file():
            raise CheckpointError(f"{checkpoint}: ONNX model not found")
        return checkpoint
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: checkpoint file not found")
    folder = Path(onnx_dir) if onnx_dir else _default_onnx_dir(checkpoint)
    target = folder / onnx_name(checkpoint, dtype)
    if target.is_file() and target.stat().st_mtime >= checkpoint.stat().st_mtime:
        return target
    return export_checkpoint(checkpoint, folder, dtype=dtype, progress=progress)


def _default_onnx_dir(checkpoint: Path) -> Path:
    beside = checkpoint.parent / "onnx"
    probe = beside if beside.exists() else checkpoint.parent
    if os.access(probe, os.W_OK):
        return beside
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "sapiens-engine" / "onnx"
