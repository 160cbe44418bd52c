"""PyTorch runner: the model exactly as load_model returns it on the CPU, tuned on a CUDA GPU.

CPU (fp32): `model(x)` under inference_mode, nothing else; the parity fixtures' numbers hold.
CPU fast modes (bf16, int8): the model transformed by engine.runtime.cpu_modes; threads set to
the physical cores.
CUDA, everything guarded by `device.type == "cuda"` so none of it touches the CPU path:
- weights in bf16 (fp16 where bf16 is missing); RoPE periods stay bf16 as in the reference;
- fp32 when asked for is fp32: TF32 off while it computes (exact_fp32);
- scaled-dot-product attention restricted to the fused kernels, fastest first (cuDNN and flash
  on Hopper, flash first elsewhere), the math kernel last as a fallback;
- cudnn.benchmark for the static input shape;
- optional torch.compile with static shapes: "max-autotune-no-cudagraphs", or
  "reduce-overhead" for CUDA graphs (every chunk is padded to the batch size so one graph is
  captured and replayed);
- host batches pinned and copied on a side stream, so the copy of chunk i+1 overlaps the compute
  of chunk i; outputs copied back on that stream into pinned memory, synchronized once per call.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from pathlib import Path

import torch
from torch import nn

from engine.errors import EngineError
from engine.runtime.device import DTYPE_NAMES, load_dtype, resolve_device, resolve_dtype
from engine.runtime.runner import Runner

log = logging.getLogger(__name__)

COMPILE_MODES = ("max-autotune-no-cudagraphs", "reduce-overhead", "default", "max-autotune")


def sdpa_backends(device: torch.device) -> list:
    """Attention kernels in the order to try them on this GPU (fused first, math last)."""
    from torch.nn.attention import SDPBackend

    names = ["FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"]
    if torch.cuda.get_device_capability(device)[0] >= 9:   # Hopper: cuDNN's fused attention leads
        names = ["CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"]
    return [getattr(SDPBackend, n) for n in names if hasattr(SDPBackend, n)]


def sdpa_context(device: torch.device):
    """A context that prefers the fused attention kernels (CUDA only; a no-op elsewhere)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    try:
        from torch.nn.attention import sdpa_kernel
    except ImportError:
        return contextlib.nullcontext()
    backends = sdpa_backends(device)
    try:
        return sdpa_kernel(backends, set_priority=True)
    except TypeError:   # torch without set_priority: the set is still restricted to the list
        return sdpa_kernel(backends)


@contextlib.contextmanager
def exact_fp32(on: bool):
    """TF32 off while an fp32 model computes on a GPU (torch lets cuDNN's convolutions use TF32 by
    default): fp32 on CUDA asked for is fp32, within 1e-5 of the reference's CPU numbers instead
    of 1e-3 (the parity fixtures, measured on an H200)."""
    if not on:
        yield
        return
    kept = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = kept


@contextlib.contextmanager
def cpu_flush_denormals(on: bool):
    """Denormal floats flushed to zero while a fast CPU mode computes (the fp32 path is left exact).

    Values below 1.2e-38 (softmax and SiLU tails) take slow microcode paths on x86; flushing them
    made a bf16 head 1.7-1.8x faster here and changes nothing a bf16 result can represent."""
    if not on:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, model: nn.Module, *, device="auto", dtype="auto", batch_size: int = 1,
                 compile: str | None = None, source: str = ""):
        device = resolve_device(device)
        # on the CPU a number format is a mode (engine.runtime.cpu_modes): int8 takes fp32 inputs
        self.cpu_mode = None
        if device.type == "cpu":
            from engine.runtime import cpu_modes

            self.cpu_mode = "int8" if dtype == "int8" else DTYPE_NAMES.get(resolve_dtype(dtype, device))
            cpu_modes.set_threads()
            dtype = cpu_modes.input_dtype(self.cpu_mode) if self.cpu_mode in cpu_modes.CPU_MODES \
                else resolve_dtype(dtype, device)
        elif dtype == "int8":
            raise EngineError("--dtype int8 is a CPU mode; on a GPU use bf16, fp16 or fp32")
        else:
            dtype = resolve_dtype(dtype, device)
        super().__init__(model.task, model.config, device=device, dtype=dtype, batch_size=batch_size,
                         source=source or str(getattr(model, "source", "")))
        self.model = self._place(model)
        self.compile_mode = compile
        self.forward = self._compiled(self.model, compile) if compile else self.model
        self._cuda = device.type == "cuda"
        if self._cuda:
            torch.backends.cudnn.benchmark = True   # one static input shape: autotune the convs once
            self._copy_stream = torch.cuda.Stream(device)
            self._events: list = []

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, task: str | None = None, *, device="auto",
                        dtype="auto", **kw) -> "TorchRunner":
        from engine.models.loading import load_model

        dev = resolve_device(device)
        model = load_model(checkpoint, device=dev, dtype=load_dtype(dtype, dev), task=task or "any")
        return cls(model, device=dev, dtype=dtype, source=Path(checkpoint).name, **kw)

    # ------------------------------------------------------------------ setup

    def _place(self, model: nn.Module) -> nn.Module:
        if self.cpu_mode == "int8":
            from engine.runtime import cpu_modes

            return cpu_modes.prepare(model, "int8").eval()
        first = next(model.parameters())
        if self.cpu_mode == "bf16":
            from engine.runtime import cpu_modes

            return cpu_modes.prepare(model, "bf16").eval()
        if first.device == self.device and first.dtype == self.dtype:
            return model.eval()    # the CPU fp32 path: the very module load_model returned
        periods = {n: m.periods for n, m in model.named_modules() if hasattr(m, "periods")}
        model = model.to(device=self.device, dtype=self.dtype)
        for name, p in periods.items():   # RoPE periods keep the reference's bf16
            model.get_submodule(name).periods = p.to(self.device)
        return model.eval()

    def _compiled(self, model: nn.Module, mode: str):
        if mode not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {mode!r}; use one of {', '.join(COMPILE_MODES)}")
        if not hasattr(torch, "compile"):
            log.warning("this torch has no torch.compile; running eagerly")
            return model
        return torch.compile(model, mode=mode, dynamic=False, fullgraph=False)

    # ------------------------------------------------------------------ backend steps

    def _upload(self, chunk: torch.Tensor):
        if self.compile_mode and chunk.shape[0] < self.batch_size:
            # static shapes: pad the last chunk so the compiled graph (and CUDA graph) is reused
            pad = chunk[-1:].expand(self.batch_size - chunk.shape[0], *chunk.shape[1:])
            chunk = torch.cat([chunk, pad])
        if not self._cuda:
            return chunk.to(dtype=self.dtype)
        host = chunk if chunk.is_cuda else chunk.contiguous().pin_memory()
        with torch.cuda.stream(self._copy_stream):
            on_device = host.to(self.device, non_blocking=True).to(self.dtype)
            ready = torch.cuda.Event()
            ready.record(self._copy_stream)
        return on_device, ready

    def _compute(self, uploaded) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            if not self._cuda:
                with cpu_flush_denormals(self.cpu_mode not in (None, "fp32")):
                    out = self.forward(uploaded)
            else:
                x, ready = uploaded
                stream = torch.cuda.current_stream(self.device)
                stream.wait_event(ready)
                x.record_stream(stream)   # the copy stream's allocation is used on this stream
                with sdpa_context(self.device), exact_fp32(self.dtype == torch.float32):
                    out = self.forward(x)
        return out if isinstance(out, tuple) else (out,)

    def _download(self, outputs):
        if not self._cuda:
            return tuple(o.float() for o in outputs)   # already fp32 on the CPU: no copy
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))
        host = []
        with torch.cuda.stream(self._copy_stream):
            self._copy_stream.wait_event(done)
            for o in outputs:
                o.record_stream(self._copy_stream)
                pinned = torch.empty(o.shape, dtype=torch.float32, pin_memory=True)
                pinned.copy_(o, non_blocking=True)   # the fp32 cast happens in the copy
                host.append(pinned)
        return tuple(host)

    def _finish(self, downloaded):
        if self._cuda:
            self._copy_stream.synchronize()
        return downloaded

    def _after_oom(self) -> None:
        gc.collect()
        if self._cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()

    def release(self) -> None:
        self.model = self.forward = None
        gc.collect()
        if self._cuda:
            torch.cuda.empty_cache()

    def describe(self) -> dict:
        return {**super().describe(), "compile": self.compile_mode, "cpu_mode": self.cpu_mode}
