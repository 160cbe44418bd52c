"""Task runners made on first use and kept in an LRU cache bounded by a memory budget.

Each entry is an engine.runtime runner (torch or onnxruntime). For the torch backend the model
comes from engine.load_model, which memory-maps safetensors, so an fp32 model on the CPU costs
page cache rather than a private copy; the budget still counts every model's parameter bytes
(what the device must hold while it runs). An ONNX runner counts its model file (and external
weights), which the session holds in memory. When a new runner pushes the total over the
budget, the least recently used ones are released first; the one just asked for always stays.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from engine.errors import CheckpointError

log = logging.getLogger(__name__)


def parse_memory(text: str | int | None) -> int | None:
    """'6G', '512M', '2.5GB', 1000000 -> bytes; None/'' -> no limit."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(float(t))
    except ValueError:
        raise ValueError(f"--max-memory {text!r}: expected bytes such as 6G, 512M or 2000000000") from None


def model_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def runner_bytes(runner) -> int:
    """What a runner holds: a torch model's tensors, or an ONNX file with its external data."""
    if getattr(runner, "model", None) is not None:
        return model_bytes(runner.model)
    onnx = Path(runner.path)
    # external weights sit beside the graph under names the exporter chose: count the folder's
    # files that start with the graph's name (model.onnx, model.onnx.data, ...)
    return sum(p.stat().st_size for p in onnx.parent.glob(onnx.name + "*") if p.is_file())


@dataclass
class CachedRunner:
    runner: object
    path: Path
    bytes: int


class ModelCache:
    """task -> runner for one backend, device and number format.

    device: "auto", "cpu" or "cuda[:N]"; dtype: "auto", "fp32", "bf16" or "fp16" (names, as the
    CLI takes them). batch_size: images per forward pass (pose gets twice that: its flip pass
    runs in the same batch).
    """

    def __init__(self, paths: dict[str, Path], *, device: str = "cpu", dtype: str = "fp32",
                 max_memory: int | None = None, backend: str = "torch", compile: str | None = None,
                 batch_size: int = 1, onnx_dir=None, progress=None):
        self.paths = dict(paths)
        self.device, self.dtype = str(device), dtype
        self.backend, self.compile = backend, compile
        self.batch_size, self.onnx_dir, self.progress = batch_size, onnx_dir, progress
        self.max_memory = max_memory
        self._runners: OrderedDict[str, CachedRunner] = OrderedDict()
        self.described: dict[str, dict] = {}   # task -> runner.describe() of the last runner made
        self.loads = 0
        self.evictions = 0

    @property
    def used_bytes(self) -> int:
        return sum(r.bytes for r in self._runners.values())

    def loaded(self) -> list[str]:
        return list(self._runners)

    def get(self, task: str):
        if task in self._runners:
            self._runners.move_to_end(task)
            return self._runners[task].runner
        if task not in self.paths:
            raise CheckpointError(f"no checkpoint configured for task {task!r}")
        runner = self._make(task, self.paths[task])
        self.loads += 1
        self._runners[task] = CachedRunner(runner=runner, path=self.paths[task], bytes=runner_bytes(runner))
        self.described[task] = runner.describe()
        self._evict(keep=task)
        return runner

    def _make(self, task: str, path: Path):
        from engine.runtime.factory import get_runner

        batch = self.batch_size * 2 if task == "pose" else self.batch_size
        model = None
        if self.backend == "torch":
            from engine.models.loading import load_model
            from engine.runtime.device import load_dtype, resolve_device

            device = resolve_device(self.device)
            # loaded straight onto the device in its format: on the CPU in fp32 the runner then
            # wraps the very memory-mapped module (int8 quantizes from fp32)
            model = load_model(path, device=device, dtype=load_dtype(self.dtype, device), task=task)
        return get_runner(task, path, backend=self.backend, device=self.device, dtype=self.dtype,
                          batch_size=batch, compile=self.compile, onnx_dir=self.onnx_dir, model=model,
                          progress=self.progress)

    def _evict(self, keep: str) -> None:
        if self.max_memory is None:
            return
        while self.used_bytes > self.max_memory and len(self._runners) > 1:
            victim = next(t for t in self._runners if t != keep)
            log.debug("model cache over budget (%d > %d bytes): releasing %s",
                      self.used_bytes, self.max_memory, victim)
            self._runners.pop(victim).runner.release()
            self.evictions += 1
        if self.used_bytes > self.max_memory:
            log.warning("the %s model alone (%.1f GB) is larger than --max-memory (%.1f GB)",
                        keep, self.used_bytes / 1e9, self.max_memory / 1e9)

    def clear(self) -> None:
        while self._runners:
            self._runners.popitem(last=False)[1].runner.release()
