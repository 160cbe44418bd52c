"""Export one Sapiens2 task model to ONNX, with what it is recorded in the file's metadata.

Exporter: torch.onnx.export(dynamo=True) (torch.export + onnxscript), the one PyTorch keeps
developing; the TorchScript exporter cannot translate aten::rms_norm and is deprecated.

Two things in the model do not translate as they are, so the export runs a patched copy of the
forward that computes the same numbers:

- RoPE sin/cos tables depend only on the token grid, which a static 1024 x 768 input fixes: they
  are computed once by the model's own module and baked in as constants.
- The reference rotates q/k in bfloat16. ONNX Runtime's CPU provider has no bf16 arithmetic, so
  the rotation runs in fp32 with a cast to bf16 and back after every operation. A product of two
  bf16 numbers is exact in fp32, and PyTorch's bf16 kernels also compute in fp32 and round, so
  this reproduces the eager bf16 results bit for bit.

Grouped-query blocks repeat their k/v heads before attention (the same numbers as SDPA's
enable_gqa), since older opsets have no grouped attention. The batch axis is dynamic except for
the 4K tokenizer (its window chunking depends on the batch). Files over 2 GB keep their weights
in external data (`<name>.onnx.data` beside the model).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from engine.errors import EngineError

log = logging.getLogger(__name__)

OPSET = 18
PROTOBUF_LIMIT = 2 * 1024**3          # a single ONNX protobuf cannot exceed 2 GB
METADATA_PREFIX = "sapiens."
EXPORT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class OnnxExportError(EngineError):
    code = "onnx_export_failed"


def output_names(task: str) -> list[str]:
    return ["points", "scale"] if task == "pointmap" else ["out"]


def _round_to(x: Tensor, dtype: torch.dtype) -> Tensor:
    """x (fp32) rounded to `dtype` and back: one rounding step of arithmetic done in `dtype`."""
    return x if dtype == torch.float32 else x.to(dtype).to(torch.float32)


def rotate_emulated(x: Tensor, sin: Tensor, cos: Tensor, compute_dtype: torch.dtype) -> Tensor:
    """engine.models.sapiens2.apply_rope, with the `compute_dtype` arithmetic emulated in fp32."""
    prefix = x.shape[-2] - sin.shape[-2]
    head = _round_to(x[..., :prefix, :].float(), compute_dtype)  # rounded, not rotated
    patches = _round_to(x[..., prefix:, :].float(), compute_dtype)
    half1, half2 = patches.chunk(2, dim=-1)
    turned = torch.cat([-half2, half1], dim=-1)
    rotated = _round_to(_round_to(patches * cos, compute_dtype) + _round_to(turned * sin, compute_dtype),
                        compute_dtype)
    return torch.cat([head, rotated], dim=-2).to(x.dtype)


class FrozenRope(nn.Module):
    """The sin/cos tables of one token grid as constants (fp32 holding the computed values)."""

    def __init__(self, rope: nn.Module, grid_hw: tuple[int, int]):
        super().__init__()
        with torch.no_grad():
            sin, cos = rope(*grid_hw)
        self.grid_hw = tuple(grid_hw)
        self.compute_dtype = sin.dtype
        self.register_buffer("sin", sin.float(), persistent=False)
        self.register_buffer("cos", cos.float(), persistent=False)

    def forward(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        if (h, w) != self.grid_hw:
            raise ValueError(f"export traced a {h}x{w} token grid, tables were made for {self.grid_hw}")
        return self.sin, self.cos


def token_grid(config, input_hw: tuple[int, int]) -> tuple[int, int]:
    b = config.backbone
    h, w = input_hw[0] // b.patch_size, input_hw[1] // b.patch_size
    if b.use_tokenizer:
        h, w = h // b.window_size, w // b.window_size
    return h, w


@contextlib.contextmanager
def export_friendly(model: nn.Module, input_hw: tuple[int, int]):
    """Temporarily give `model` the export-ready RoPE and attention forwards (restored after)."""
    from engine.models.sapiens2 import GroupedQueryAttention, apply_rope

    backbone = model.backbone if hasattr(model, "backbone") else model
    original_rope = backbone.rope_embed
    frozen = FrozenRope(original_rope, token_grid(model.config, input_hw))
    patched = [m for m in backbone.modules() if isinstance(m, GroupedQueryAttention)]
    try:
        backbone.rope_embed = frozen
        for attn in patched:
            attn.rotate = functools.partial(rotate_emulated, compute_dtype=frozen.compute_dtype)
            attn.native_gqa = False
        yield model
    finally:
        backbone.rope_embed = original_rope
        for attn in patched:
            attn.rotate, attn.native_gqa = apply_rope, True


def _require_onnxscript() -> None:
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's translation library)
    except ImportError:
        raise OnnxExportError(
            "ONNX export needs the onnxscript package: pip install onnxscript") from None


def model_metadata(model: nn.Module, dtype: str, input_hw: tuple[int, int], source: str | None) -> dict:
    from engine import __version__

    return {
        f"{METADATA_PREFIX}task": model.task or "",
        f"{METADATA_PREFIX}config": json.dumps(model.config.to_dict(), sort_keys=True),
        f"{METADATA_PREFIX}engine_version": __version__,
        f"{METADATA_PREFIX}dtype": dtype,
        f"{METADATA_PREFIX}input_hw": json.dumps(list(input_hw)),
        f"{METADATA_PREFIX}outputs": json.dumps(output_names(model.task) if model.task else ["featmap"]),
        f"{METADATA_PREFIX}source": source or "",
        f"{METADATA_PREFIX}torch_version": torch.__version__,
    }


def read_metadata(path: str | os.PathLike) -> dict:
    """The sapiens.* metadata of an exported file, decoded (config as a dict, input_hw a tuple)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return decode_metadata({p.key: p.value for p in proto.metadata_props}, path)


def decode_metadata(raw: dict[str, str], path) -> dict:
    """metadata_props key -> value strings (onnx, or an onnxruntime session's) -> decoded sapiens.* entries."""
    props = {k[len(METADATA_PREFIX):]: v for k, v in raw.items() if k.startswith(METADATA_PREFIX)}
    if "config" not in props:
        raise EngineError(f"{path}: not exported by sapiens-engine (no sapiens.config metadata)")
    props["config"] = json.loads(props["config"])
    props["input_hw"] = tuple(json.loads(props["input_hw"]))
    props["outputs"] = json.loads(props["outputs"])
    return props


def export_model(model: nn.Module, path: str | os.PathLike, *, dtype: str = "fp32",
                 input_hw: tuple[int, int] | None = None, dynamic_batch: bool = True, static_batch: int = 1,
                 source: str | None = None, optimize: bool = True, progress=None) -> Path:
    """Write `model` (an engine Sapiens2, fp32 weights) as ONNX at `path`, atomically.

    input_hw defaults to the size the model was trained at (1024 x 768 for released files); the
    exported graph accepts exactly that size. dtype "fp16" casts weights and the input to half.
    The batch axis is dynamic unless dynamic_batch is False (or the model has the 4K tokenizer):
    then the graph takes batches of exactly `static_batch` (the runner pads the last chunk).
    optimize: run onnxscript's graph optimizer (constant folding, dead code); ONNX Runtime
    optimizes again when it loads the file, so it only makes the file leaner.
    """
    _require_onnxscript()
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"unknown export dtype {dtype!r}; use {' or '.join(EXPORT_DTYPES)}")
    path = Path(path)
    input_hw = tuple(input_hw or model.config.backbone.img_size)
    torch_dtype = EXPORT_DTYPES[dtype]
    if progress:
        progress("export", 0.0, f"tracing {model.task or 'backbone'} model at {input_hw[0]}x{input_hw[1]}")
    export_copy = _copy_for_export(model, torch_dtype)
    dynamic = dynamic_batch and not model.config.backbone.use_tokenizer
    # a dynamic axis is traced at 2 so that torch.export does not specialise it to 1
    example = torch.zeros(2 if dynamic else static_batch, 3, *input_hw, dtype=torch_dtype)
    names = output_names(model.task) if model.task else ["featmap"]
    batch = torch.export.Dim("batch", min=1, max=4096)
    with export_friendly(export_copy, input_hw), torch.inference_mode(False), torch.no_grad():
        try:
            program = torch.onnx.export(
                export_copy, (example,), dynamo=True, opset_version=OPSET, input_names=["input"],
                output_names=names, dynamic_shapes=({0: batch},) if dynamic else None,
                optimize=optimize, verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; say which model failed
            raise OnnxExportError(f"exporting the {model.task} model from {source or 'memory'} to ONNX "
                                  f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:500]}") from exc
    if progress:
        progress("export", 0.7, "writing the ONNX file")
    program.model.metadata_props.update(model_metadata(model, dtype, input_hw, source))
    weight_bytes = sum(p.numel() * p.element_size() for p in export_copy.parameters())
    _save_atomically(program, path, external=weight_bytes > PROTOBUF_LIMIT - (64 << 20))
    if progress:
        progress("export", 1.0, f"wrote {path.name}")
    return path


def _copy_for_export(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """fp32: the model itself (export_friendly restores what it swaps); fp16: a cast deep copy."""
    import copy

    if dtype == torch.float32:
        return model
    clone = copy.deepcopy(model)
    periods = {name: m.periods.clone() for name, m in clone.named_modules() if hasattr(m, "periods")}
    clone.to(dtype)
    for name, saved in periods.items():      # RoPE periods keep their own (bf16) dtype
        clone.get_submodule(name).periods = saved
    return clone.eval()


def _save_atomically(program, path: Path, external: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp_path = tmp_dir / path.name
        program.save(tmp_path, external_data=external)
        data = [p for p in tmp_dir.iterdir() if p != tmp_path]
        for extra in data:                     # external data first, so the model never dangles
            os.replace(extra, path.parent / extra.name)
        os.replace(tmp_path, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *, dtype: str = "fp32",
                      input_hw: tuple[int, int] | None = None, progress=None) -> Path:
    """Export a released-format checkpoint as `<out_dir>/<checkpoint stem>.<dtype>.onnx`.

    input_hw defaults to the training size the checkpoint implies (1024 x 768 for released files).
    """
    from engine.models.loading import load_model

    checkpoint = Path(checkpoint)
    model = load_model(checkpoint, device="cpu", dtype=torch.float32)
    if model.task is None:
        raise OnnxExportError(f"{checkpoint}: a pretrain backbone; export-onnx exports task models")
    return export_model(model, Path(out_dir) / onnx_name(checkpoint, dtype), dtype=dtype, input_hw=input_hw,
                        source=checkpoint.name, progress=progress)


def onnx_name(checkpoint: str | os.PathLike, dtype: str) -> str:
    return f"{Path(checkpoint).stem}.{dtype}.onnx"


__all__ = ["export_model", "export_checkpoint", "read_metadata", "onnx_name", "OnnxExportError",
           "export_friendly", "rotate_emulated"]
