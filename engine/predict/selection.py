"""What a predict run uses, settled before any photo is touched: tasks, model sizes, checkpoint
files (each checked to hold its task), the device and number format, where pre/post-processing run."""

from __future__ import annotations

from pathlib import Path

from engine.checkpoints import TASKS, find_checkpoint
from engine.errors import CheckpointError, EngineError

# run order: seg first (it finds the people the pose crops need)
TASK_ORDER = ("seg", "pose", "normal", "pointmap", "albedo")


def parse_sizes(size: str | dict, tasks) -> dict[str, str]:
    """'0.4b' or 'pose=1b,seg=0.4b' (or a dict) -> task -> size; unnamed tasks take the plain size."""
    if isinstance(size, dict):
        sizes = dict(size)
        default = sizes.pop("default", "0.4b")
    else:
        default, sizes = "0.4b", {}
        for part in str(size).split(","):
            if "=" in part:
                task, value = part.split("=", 1)
                sizes[task.strip()] = value.strip()
            elif part.strip():
                default = part.strip()
    unknown = set(sizes) - set(TASKS)
    if unknown:
        raise ValueError(f"--size names unknown task(s) {', '.join(sorted(unknown))}")
    return {t: sizes.get(t, default) for t in tasks}


def resolve_tasks(tasks, size, root: Path, allow_pickle: bool) -> tuple[list[str], dict[str, str], dict[str, Path]]:
    """Tasks to run, their sizes and checkpoint files; missing ones are errors only when asked for."""
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    explicit = tasks is not None
    wanted = list(tasks) if explicit else list(TASKS)
    unknown = [t for t in wanted if t not in TASKS]
    if unknown:
        raise CheckpointError(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    sizes = parse_sizes(size, wanted)
    paths = {}
    for task in wanted:
        try:
            paths[task] = find_checkpoint(task, sizes[task], root, allow_pickle=allow_pickle)
        except CheckpointError:
            if explicit:
                raise
    if not paths:
        raise CheckpointError(
            f"no checkpoints of size {size} in {root}; get them with `sapiens-engine download --size "
            f"{sizes.get('pose', '0.4b')}` or point --checkpoints / SAPIENS_CHECKPOINTS at them")
    check_checkpoint_tasks(paths)
    ordered = [t for t in TASK_ORDER if t in paths]
    return ordered, {t: sizes[t] for t in ordered}, paths


def check_checkpoint_tasks(paths: dict[str, Path]) -> None:
    """A file for another task fails here, before any photo is touched (headers only, mmapped)."""
    from engine.models.loading import inspect_checkpoint

    for task, path in paths.items():
        config = inspect_checkpoint(path)
        if config.task != task:
            what = f"a {config.task} checkpoint" if config.task else "a pretrain backbone (no task head)"
            raise CheckpointError(f"{path}: is {what}, but it sits where the {task} model belongs")


def resolve_runtime(backend: str, device: str, dtype: str, compile: str | None) -> tuple[str, str]:
    """The device ("cpu" / "cuda[:N]") and number format a run uses, checked before any photo is
    touched. On the CPU the format may be a fast mode (engine.runtime.cpu_modes)."""
    from engine.runtime.device import resolve_device, resolve_dtype_name
    from engine.runtime.factory import BACKENDS, onnx_dtype

    if backend == "torch":
        resolved = resolve_device(device)
        return str(resolved), resolve_dtype_name(dtype, resolved)
    if backend == "onnxruntime":
        from engine.runtime.onnx_backend import choose_providers

        if compile:
            raise EngineError("--compile applies to the torch backend only")
        on_cuda = choose_providers(str(device))[0] == "CUDAExecutionProvider"
        resolved = (device if str(device).startswith("cuda") else "cuda") if on_cuda else "cpu"
        return resolved, onnx_dtype(dtype, resolved)
    raise EngineError(f"unknown backend {backend!r}; use {' or '.join(BACKENDS)}")


def processing_device(device: str):
    """Where pre- and post-processing run: None for the exact numpy recipe (always on the CPU), or
    the CUDA device for engine.runtime.gpu_ops (resize, pad, warp, decode on the GPU)."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.device(device) if torch.cuda.is_available() else None
