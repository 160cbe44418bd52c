"""Fast inference: runners for one task model on PyTorch (CPU fp32, CUDA bf16/fp16) or ONNX Runtime.

`get_runner(task, checkpoint, backend=..., device=..., dtype=...)` is the one entry point the
predict pipeline needs (engine/runtime/factory.py). Imported lazily: the package itself pulls in
neither torch nor onnxruntime.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name == "get_runner":
        from engine.runtime.factory import get_runner

        return get_runner
    raise AttributeError(f"module 'engine.runtime' has no attribute {name!r}")


__all__ = ["get_runner"]
