"""ONNX Runtime runner: the same interface as the torch runner, on a file from onnx_export.

Provider: CUDAExecutionProvider when onnxruntime-gpu is installed and a GPU answers (device
"auto" or "cuda"), else CPUExecutionProvider. All graph optimizations on; intra-op threads = the
cores this process may use. Inputs and outputs go through IO binding on every provider (one code
path, so the CPU tests exercise it): on CUDA the outputs stay in device memory until the copy
back, instead of being copied per run by `session.run`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from engine.errors import EngineError
from engine.runtime.runner import Runner

log = logging.getLogger(__name__)

ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def choose_providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise EngineError(f"unknown device {device!r} for onnxruntime; use auto, cpu or cuda")
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device.startswith("cuda"):
        raise EngineError("--device cuda with --backend onnxruntime needs the onnxruntime-gpu package "
                          f"(this onnxruntime offers {', '.join(available)})")
    return ["CPUExecutionProvider"]


class OnnxRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike, *, device: str = "auto", batch_size: int = 1,
                 threads: int | None = None):
        import onnxruntime as ort

        from engine.models.sapiens2 import ModelConfig
        from engine.runtime.onnx_export import decode_metadata

        path = Path(onnx_path)
        if not path.is_file():
            raise EngineError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or usable_cores()
        # The CPU arena keeps every activation size it has seen: with 1024 x 768 maps at batch 4
        # it doubled peak memory (3.3 GB against 1.7 GB, measured on a tiny normal model) and
        # was not faster.
        options.enable_cpu_mem_arena = False
        providers = choose_providers(str(device))
        device_id = int(str(device).split(":")[1]) if str(device).startswith("cuda:") else 0
        provider_options = [{"device_id": device_id} if p == "CUDAExecutionProvider" else {} for p in providers]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers,
                                                provider_options=provider_options)
        except Exception as exc:   # ORT raises its own exception types for unreadable graphs
            raise EngineError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:300]})") from exc
        meta = decode_metadata(self.session.get_modelmeta().custom_metadata_map, path)
        used = self.session.get_providers()
        on_cuda = used[0] == "CUDAExecutionProvider"
        if providers[0] == "CUDAExecutionProvider" and not on_cuda:
            log.warning("onnxruntime could not start its CUDA provider; running on the CPU")
        config = ModelConfig.from_dict(meta["config"])
        self.input_name = self.session.get_inputs()[0].name
        self.input_dtype = ORT_DTYPES.get(self.session.get_inputs()[0].type, np.float32)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ort_device = ("cuda", device_id) if on_cuda else ("cpu", 0)
        self.batch_axis_static = isinstance(self.session.get_inputs()[0].shape[0], int)
        dtype = torch.float16 if self.input_dtype == np.float16 else torch.float32
        super().__init__(meta["task"], config, device=torch.device("cuda" if on_cuda else "cpu"), dtype=dtype,
                         batch_size=batch_size, input_hw=meta["input_hw"], source=meta.get("source", path.name))
        if self.batch_axis_static:
            self.batch_size = self.session.get_inputs()[0].shape[0]
        self.metadata = meta
        self.path = path

    def _fixed_input_size(self) -> bool:
        return True   # an exported graph takes exactly the size it was traced at

    def _upload(self, chunk: torch.Tensor):
        arr = chunk.detach().cpu().numpy().astype(self.input_dtype, copy=False)
        if self.batch_axis_static and arr.shape[0] < self.batch_size:
            pad = np.repeat(arr[-1:], self.batch_size - arr.shape[0], axis=0)
            arr = np.concatenate([arr, pad])
        return np.ascontiguousarray(arr)

    def _compute(self, uploaded: np.ndarray) -> tuple[torch.Tensor, ...]:
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, uploaded)
        for name in self.output_names:
            binding.bind_output(name, self.ort_device[0], self.ort_device[1])
        self.session.run_with_iobinding(binding)
        outputs = binding.copy_outputs_to_cpu()
        return tuple(torch.from_numpy(np.asarray(o, dtype=np.float32)) for o in outputs)

    def release(self) -> None:
        self.session = None

    def describe(self) -> dict:
        return {**super().describe(), "providers": self.session.get_providers() if self.session else [],
                "onnx": str(self.path)}
