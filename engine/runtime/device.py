"""Which device and number format a runner uses, feature-detected so newer torch builds work too.

auto: a CUDA GPU when torch sees one, else the CPU. On CUDA, bf16 when the GPU computes in it
(Ampere and later), fp16 where it does not (Volta, Turing), and fp32 on the CPU, where the
released recipe's numbers are reproduced exactly.
"""

from __future__ import annotations

import torch

from engine.errors import EngineError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if device.startswith("cuda"):
        if not cuda_available():
            raise EngineError(f"device {device!r} was asked for, but this torch build sees no CUDA GPU "
                              f"(torch {torch.__version__}); use --device cpu")
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise EngineError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def bf16_supported(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:   # `including_emulation` (torch >= 2.4) must be off: emulated bf16 is slower than fp16
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:
        return bool(torch.cuda.is_bf16_supported())


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    device = torch.device(device)
    if isinstance(dtype, torch.dtype):
        name = DTYPE_NAMES.get(dtype)
        if name is None:
            raise EngineError(f"unsupported dtype {dtype}; use fp32, bf16 or fp16")
        dtype = name
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if bf16_supported(device) else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise EngineError(f"unknown dtype {dtype!r}; use auto, fp32, bf16 or fp16")
    return DTYPES[dtype]


def out_of_memory_types() -> tuple[type[BaseException], ...]:
    """The exception types torch raises when a device allocation fails (renamed across versions)."""
    types: list[type[BaseException]] = []
    for owner, name in ((torch, "OutOfMemoryError"), (torch.cuda, "OutOfMemoryError")):
        t = getattr(owner, name, None)
        if isinstance(t, type) and t not in types:
            types.append(t)
    return tuple(types)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, out_of_memory_types()):
        return True
    text = str(exc).lower()
    # ONNX Runtime (and older torch) report it as a runtime error with a message
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "failed to allocate memory" in text or isinstance(exc, MemoryError))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine() or "cpu"


def resolve_dtype_name(dtype: str | torch.dtype = "auto", device: torch.device | str = "cpu") -> str:
    """The number format's name a predict run records and the model cache takes: "fp32", "bf16",
    "fp16", or "int8" (a CPU mode). "auto" on the CPU is engine.runtime.cpu_modes.auto_mode():
    the fastest mode within the stated tolerances that this CPU runs natively."""
    device = torch.device(device)
    if device.type == "cpu" and dtype in ("auto", "int8"):
        from engine.runtime.cpu_modes import auto_mode

        return auto_mode() if dtype == "auto" else "int8"
    if dtype == "int8":
        raise EngineError("--dtype int8 is a CPU mode; on a GPU use bf16, fp16 or fp32")
    return DTYPE_NAMES[resolve_dtype(dtype, device)]


def load_dtype(name: str, device: torch.device | str = "cpu") -> torch.dtype:
    """The format weights are loaded in for a run in `name`: the CPU modes (bf16, int8) convert
    from fp32, layer by layer (engine.runtime.cpu_modes)."""
    if name == "int8" or (name == "bf16" and torch.device(device).type == "cpu"):
        return torch.float32
    return resolve_dtype(name, device)
