"""What every inference runner does the same way: batching, out-of-memory fallback, the flip pass.

A runner holds one task model on one backend. Calling it with a normalized B x 3 x H x W batch
returns what the model's forward returns (pose heatmaps, seg logits, normal/albedo maps, or
(points, scale) for pointmaps), as float32 CPU tensors unless `keep_on_device` is asked for.
It splits the batch into chunks of `batch_size`; when a chunk runs out of device memory the
chunk size is halved and the chunk retried, and at batch 1 the failure becomes an EngineError
that says what to change. The chunk size that worked is kept for the next calls.

Backends implement three steps so that the copy of the next chunk can overlap the compute of
this one: `_upload(chunk)` (starts the host -> device copy), `_compute(uploaded)` (runs the
model, returns a tuple of device outputs) and `_download(outputs)` (starts the copy back).
`_finish(downloaded)` waits for the copies of a whole call once, at the end.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from engine.errors import EngineError
from engine.runtime.device import is_out_of_memory

log = logging.getLogger(__name__)


class Runner:
    backend = "base"

    def __init__(self, task: str, config, *, device: torch.device, dtype: torch.dtype,
                 batch_size: int = 1, input_hw: tuple[int, int] | None = None, source: str = ""):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.task, self.config = task, config
        self.device, self.dtype = device, dtype
        self.batch_size = batch_size
        self.input_hw = tuple(input_hw or config.backbone.img_size)
        self.source = source
        self.oom_fallbacks = 0

    # ------------------------------------------------------------------ backend steps

    def _upload(self, chunk: torch.Tensor):
        raise NotImplementedError

    def _compute(self, uploaded) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _download(self, outputs: tuple[torch.Tensor, ...]):
        return tuple(o.float().cpu() for o in outputs)

    def _finish(self, downloaded: list) -> list[tuple[torch.Tensor, ...]]:
        return downloaded

    def _after_oom(self) -> None:
        """Give back what a failed chunk held before retrying smaller."""

    def release(self) -> None:
        """Free the model and its device memory; the runner cannot be used after this."""

    def describe(self) -> dict:
        return {"backend": self.backend, "task": self.task, "device": str(self.device),
                "dtype": str(self.dtype).replace("torch.", ""), "batch_size": self.batch_size,
                "input_hw": list(self.input_hw), "source": self.source}

    # ------------------------------------------------------------------ the public call

    def __call__(self, batch, *, keep_on_device: bool = False):
        x = self._as_batch(batch)
        pieces = self._run_chunks(x, keep_on_device)
        outs = tuple(torch.cat(parts) if len(parts) > 1 else parts[0] for parts in zip(*pieces))
        return outs if self.task == "pointmap" else outs[0]

    def _as_batch(self, batch) -> torch.Tensor:
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a B x 3 x H x W batch, got shape {tuple(batch.shape)}")
        if tuple(batch.shape[2:]) != self.input_hw and self._fixed_input_size():
            raise ValueError(f"the {self.task} model takes {self.input_hw[0]} x {self.input_hw[1]} "
                             f"inputs, got {batch.shape[2]} x {batch.shape[3]}")
        return batch

    def _fixed_input_size(self) -> bool:
        # the pointmap scale MLP (and every exported graph) fixes the input size
        return self.task == "pointmap"

    def _run_chunks(self, x: torch.Tensor, keep_on_device: bool) -> list:
        n = x.shape[0]
        done: list = []
        start = 0
        pending = self._upload(x[: self.batch_size]) if n else None
        while start < n:
            size = min(self.batch_size, n - start)
            current = pending
            following = start + size
            # start the next copy before this compute, so the two overlap on a GPU
            pending = self._upload(x[following: following + self.batch_size]) if following < n else None
            try:
                outputs = self._compute(current)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                current = pending = outputs = None
                self._after_oom()
                self._shrink_after_oom(exc)
                pending = self._upload(x[start: start + self.batch_size])
                continue
            outputs = tuple(o[:size] for o in outputs)   # drop padding a static-shape backend added
            done.append(outputs if keep_on_device else self._download(outputs))
            start = following
        return done if keep_on_device else self._finish(done)

    def _shrink_after_oom(self, exc: BaseException) -> None:
        if self.batch_size == 1:
            raise EngineError(
                f"out of memory running the {self.task} model ({self.source or 'in memory'}) on "
                f"{self.device} in {str(self.dtype).replace('torch.', '')} even one image at a time. "
                "Free memory used by other programs, ask for fewer tasks at once, use a smaller "
                "--size, --dtype bf16/fp16 on a GPU, or --device cpu."
            ) from exc
        self.batch_size //= 2
        self.oom_fallbacks += 1
        log.warning("%s model ran out of memory; retrying with batches of %d", self.task, self.batch_size)

    # ------------------------------------------------------------------ pose flip test

    def pose_flip_test(self, crops, flip_indices: Sequence[int], *, in_one_batch: bool = True,
                       keep_on_device: bool = False) -> torch.Tensor:
        """Heatmaps of normalized crops averaged with those of their mirror images (flip test).

        in_one_batch: the mirrored crops are concatenated to the batch (one pass of 2B images,
        better GPU use); otherwise two passes. Both give the same numbers.
        """
        if self.task != "pose":
            raise ValueError(f"the flip test is for pose models, this runner holds a {self.task} model")
        x = self._as_batch(crops)
        mirrored = x.flip(-1)
        if in_one_batch:
            both = self(torch.cat([x, mirrored]), keep_on_device=keep_on_device)
            direct, of_mirrored = both[: x.shape[0]], both[x.shape[0]:]
        else:
            direct = self(x, keep_on_device=keep_on_device)
            of_mirrored = self(mirrored, keep_on_device=keep_on_device)
        from engine.recipe import flip_test_average   # the one definition of the average

        return flip_test_average(direct, of_mirrored, flip_indices)
