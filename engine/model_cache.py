"""Task models loaded on first use and kept in an LRU cache bounded by a memory budget.

Safetensors checkpoints are memory-mapped by engine.load_model, so an fp32 model on the CPU costs
page cache rather than a private copy; the budget still counts every model's parameter bytes
(what the device must hold while it runs). When a newly loaded model pushes the total over the
budget, the least recently used models are dropped first; the model just asked for always stays.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from engine.errors import CheckpointError

log = logging.getLogger(__name__)

DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError("--device cuda was asked for but torch sees no CUDA GPU")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cuda or cpu")
    return device


def resolve_dtype(dtype: str, device: str):
    """auto: bf16 on a CUDA GPU that supports it, else fp32."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32")
    return getattr(torch, DTYPE_NAMES[dtype])


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


@dataclass
class CachedModel:
    model: object
    path: Path
    bytes: int


class ModelCache:
    def __init__(self, paths: dict[str, Path], *, device: str = "cpu", dtype=None,
                 max_memory: int | None = None):
        import torch

        self.paths = dict(paths)
        self.device = device
        self.dtype = dtype or torch.float32
        self.max_memory = max_memory
        self._models: OrderedDict[str, CachedModel] = OrderedDict()
        self.loads = 0
        self.evictions = 0

    @property
    def used_bytes(self) -> int:
        return sum(m.bytes for m in self._models.values())

    def loaded(self) -> list[str]:
        return list(self._models)

    def get(self, task: str):
        if task in self._models:
            self._models.move_to_end(task)
            return self._models[task].model
        if task not in self.paths:
            raise CheckpointError(f"no checkpoint configured for task {task!r}")
        from engine.models.loading import load_model

        path = self.paths[task]
        model = load_model(path, device=self.device, dtype=self.dtype, task=task)
        entry = CachedModel(model=model, path=path, bytes=model_bytes(model))
        self.loads += 1
        self._models[task] = entry
        self._evict(keep=task)
        return model

    def _evict(self, keep: str) -> None:
        if self.max_memory is None:
            return
        while self.used_bytes > self.max_memory and len(self._models) > 1:
            victim = next(t for t in self._models if t != keep)
            log.debug("model cache over budget (%d > %d bytes): dropping %s",
                      self.used_bytes, self.max_memory, victim)
            del self._models[victim]
            self.evictions += 1
        if self.used_bytes > self.max_memory:
            log.warning("the %s model alone (%.1f GB) is larger than --max-memory (%.1f GB)",
                        keep, self.used_bytes / 1e9, self.max_memory / 1e9)

    def clear(self) -> None:
        self._models.clear()
