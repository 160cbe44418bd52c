"""CPU fast modes: what the processor computes quickly, and the model transforms that use it.

- fp32: the model exactly as load_model returns it; the reference's numbers (the parity path).
- bf16: the backbone's Linear layers (its matmuls: 56% of the fp32 time) in bf16, their outputs
  back in fp32, except those of the first quarter of the blocks, which stay fp32: rounding there is
  amplified by every later block (0.4b: blocks 0-5 in fp32 cut the feature error from 1.6% to
  0.71%, the last 6 in fp32 only to 1.58%). Attention, where the linears are bf16, runs as bf16
  matrix products with an fp32 softmax (engine.runtime.cpu_attention: torch's fused kernel is no
  faster in bf16 on AVX-512 without AMX); in the leading fp32 blocks it stays the fused fp32
  kernel. The residual stream and the norms stay fp32 (an all-bf16 residual stream
  tripled the pointmap scale error on the parity models: 4.5% against 1.3%); the head (3x3
  convolutions at up to the input resolution) in bf16 but the pointmap's scale branch
  (FP32_HEAD_PARTS), outputs back to fp32 before decoding. Worth it where the CPU has bf16 dot products (AVX512-BF16, AMX-BF16): oneDNN's
  convolutions and matmuls then run about 2-3x faster.
- both fast modes flush denormal floats to zero while they compute (torch.set_flush_denormal,
  engine.runtime.torch_backend.cpu_flush_denormals): a bf16 head ran 1.7-1.8x faster so.
- int8: the backbone's Linear layers quantized dynamically (int8 weights per output channel,
  activations quantized per call, fbgemm, VNNI where the CPU has it); attention, norms and the
  patch embedding stay fp32; the head runs in bf16 where the CPU has bf16 dot products, else fp32.

`auto_mode()` picks the mode a run takes when the user leaves it to us: the fastest one whose
accuracy loss stays within the tolerances docs/performance.md states, among those the CPU runs
natively, fp32 otherwise. That is bf16 where the CPU has bf16 dot products: with its first blocks in
fp32 it keeps every tolerance on the parity fixtures and at the released 0.4b depth (random
weights; with all blocks bf16 it missed two there: seg agreement and pointmap median). int8 keeps
none at 0.4b. SAPIENS_CPU_MODE (fp32, bf16, int8) overrides the automatic choice, e.g. to keep a
test machine on the exact path.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from functools import lru_cache

import torch
from torch import nn

log = logging.getLogger(__name__)

CPU_MODES = ("fp32", "bf16", "int8")
# the bf16 mode's leading blocks in fp32 (see the module docstring; measured: docs/performance.md)
FP32_LEADING_FRACTION = 0.25
ENV_OVERRIDE = "SAPIENS_CPU_MODE"
# parts of a bf16 head that stay fp32: the pointmap's scale branch, one number per photo (every
# point is divided by it) from a few small convolutions and an MLP over the whole feature map;
# in bf16 it carried most of the mode's pointmap error on the parity models (scale 1.8 % -> 0.4 %
# in fp32, pointmap median 1.9 % -> 1.5 %) for under 0.1 % of the head's work
FP32_HEAD_PARTS = ("scale_conv_layers", "scale_final_layer")
# what auto picks, best first, when the CPU runs it natively: only modes within every tolerance of
# docs/performance.md at the released sizes (measured there; int8 is far outside them)
AUTO_PREFERENCE: tuple[str, ...] = ("bf16",)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo on Linux; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_features() -> dict:
    """What this CPU offers the fast modes, from torch's dispatch level and the CPU flags."""
    flags = cpu_flags()
    capability = torch.backends.cpu.get_cpu_capability()
    bf16 = bool({"avx512_bf16", "amx_bf16"} & flags)
    int8 = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)
    if not flags:   # no /proc/cpuinfo (macOS, Windows): oneDNN decides at run time; claim nothing
        bf16 = int8 = False
    return {"capability": capability, "bf16_dot": bf16, "int8_dot": int8, "amx": bool({"amx_bf16"} & flags),
            "physical_cores": physical_cores()}


def native_modes(features: dict | None = None) -> list[str]:
    f = features or cpu_features()
    return ["fp32"] + (["bf16"] if f["bf16_dot"] else []) + (["int8"] if f["int8_dot"] else [])


def auto_mode(features: dict | None = None) -> str:
    """The mode `dtype="auto"` takes on the CPU (see the module docstring)."""
    override = os.environ.get(ENV_OVERRIDE, "").strip().lower()
    if override:
        return check_mode(override)
    native = native_modes(features)
    return next((m for m in AUTO_PREFERENCE if m in native), "fp32")


def check_mode(mode: str) -> str:
    from engine.errors import EngineError

    if mode not in CPU_MODES:
        raise EngineError(f"unknown CPU mode {mode!r} ({ENV_OVERRIDE} or --dtype); use {', '.join(CPU_MODES)}")
    return mode


def physical_cores() -> int:
    """Cores, not hardware threads: two threads of one core share its vector units."""
    try:
        pairs = set()
        with open("/proc/cpuinfo") as fh:
            phys = core = None
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not line.strip() and core is not None:
                    pairs.add((phys, core))
                    phys = core = None
            if core is not None:
                pairs.add((phys, core))
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if pairs:
            return max(1, min(len(pairs), usable or len(pairs)))
    except OSError:
        pass
    return max(1, os.cpu_count() or 1)


def set_threads() -> int:
    """torch's intra-op threads = physical cores (unless the user set OMP_NUM_THREADS)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = physical_cores()
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)
    return cores


# ----------------------------------------------------------------------------- model transforms


def input_dtype(mode: str) -> torch.dtype:
    """The format a runner hands the model its batch in: fp32 in every mode (the patch embedding
    and the residual stream stay fp32)."""
    return torch.float32


def prepare(model: nn.Module, mode: str, features: dict | None = None) -> nn.Module:
    """The model transformed for `mode` (fp32: untouched). Outputs are float32 in every mode
    except bf16, whose runner casts them back."""
    check_mode(mode)
    if mode == "fp32":
        return model
    features = features or cpu_features()
    model = _to_dtype(model, torch.float32)   # a model loaded in another format starts from fp32
    backbone = getattr(model, "backbone", model)
    if mode == "bf16":
        leading = fp32_leading(backbone)
        bf16_linears(backbone, keep=leading)
        bf16_attention(backbone, keep=leading)
    else:
        quantize_linears(backbone)
    head = getattr(model, "decode_head", None)
    if head is not None and (mode == "bf16" or features["bf16_dot"]):
        in_bf16(head)
        for name in FP32_HEAD_PARTS:
            if hasattr(head, name):
                in_fp32(getattr(head, name))
    return own_memory(model)


def in_fp32(module: nn.Module) -> nn.Module:
    """`module` (inside a bf16 one) computes in fp32 from whatever its input arrives in."""
    module.float()
    module.register_forward_pre_hook(_inputs_to(torch.float32))
    return module


def in_bf16(module: nn.Module) -> nn.Module:
    """`module` computes in bf16 between fp32 inputs and fp32 outputs."""
    module.to(torch.bfloat16)
    module.register_forward_pre_hook(_inputs_to(torch.bfloat16))
    module.register_forward_hook(_outputs_to_float)
    return module


def bf16_linears(module: nn.Module, keep: frozenset[int] = frozenset()) -> nn.Module:
    """Every nn.Linear under `module` but those whose id() is in `keep` computes in bf16 (weights
    stored so), fp32 in and out."""
    for layer in module.modules():
        if type(layer) is nn.Linear and id(layer) not in keep:
            in_bf16(layer)
    return module


def bf16_attention(module: nn.Module, keep: frozenset[int] = frozenset()) -> nn.Module:
    """Every attention under `module` but those whose id() is in `keep` computes its products in
    bf16 (engine.runtime.cpu_attention) instead of the fused fp32 kernel."""
    from engine.runtime.cpu_attention import attention_bf16

    for layer in module.modules():
        if hasattr(layer, "attend") and id(layer) not in keep:
            layer.attend = attention_bf16
    return module


def fp32_leading_blocks(num_blocks: int) -> int:
    """How many of the first blocks keep fp32 linears in the bf16 mode: a quarter, rounded up."""
    return math.ceil(num_blocks * FP32_LEADING_FRACTION)


def fp32_leading(backbone: nn.Module) -> frozenset[int]:
    """ids of the modules the bf16 mode leaves in fp32: the 4K tokenizer's (it runs first) and those of
    the first fp32_leading_blocks() blocks."""
    blocks = list(getattr(backbone, "blocks", None) or [])
    early = [blocks[:fp32_leading_blocks(len(blocks))]]
    if getattr(backbone, "tokenizer", None) is not None:
        early.append([backbone.tokenizer])
    return frozenset(id(m) for group in early for part in group for m in part.modules())


def _to_dtype(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Floating weights to `dtype`; the RoPE periods keep their bf16 (the reference's)."""
    periods = {n: m.periods for n, m in model.named_modules() if hasattr(m, "periods")}
    if any(p.dtype != dtype for p in model.parameters()):
        model = model.to(dtype)
        for name, p in periods.items():
            model.get_submodule(name).periods = p
    return model


def own_memory(model: nn.Module) -> nn.Module:
    """Copy the tensors still backed by the checkpoint's memory map into private memory (the
    unconverted ones: RoPE periods, int8 mode's fp32 norms), so the map, and every file page the
    conversion read, is let go: a fast mode then holds only its converted weights."""
    with torch.no_grad():
        for module in model.modules():
            for store in (module._parameters, module._buffers):
                for name, t in store.items():
                    if t is not None and not t.is_meta and not t.untyped_storage().resizable():
                        copy = t.detach().clone()
                        store[name] = nn.Parameter(copy, requires_grad=False) if isinstance(t, nn.Parameter) else copy
    return model


def quantize_linears(module: nn.Module) -> nn.Module:
    """Every nn.Linear under `module`, in place, as a dynamically quantized int8 Linear."""
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:   # a torch without eager-mode quantization
        from engine.errors import EngineError

        raise EngineError(f"the int8 CPU mode needs torch.ao.quantization, missing in torch "
                          f"{torch.__version__}; use --dtype bf16 or fp32") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # its deprecation notices are for library authors
        quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return module


def _inputs_to(dtype: torch.dtype):
    def hook(module, args):
        return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
    return hook


def _outputs_to_float(module, args, output):
    if isinstance(output, tuple):
        return tuple(o.float() for o in output)
    return output.float()
