"""`sapiens-engine export-onnx CHECKPOINT... --out DIR`: task models as ONNX files for ONNX Runtime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "export task models to ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Export each task checkpoint (released .safetensors layout) to <out>/<name>.<dtype>.onnx: "
        "a static 1024 x 768 input (the size the model was trained at) with a dynamic batch axis, "
        "opset 18, task and configuration in the file's metadata. Run them with "
        "`sapiens-engine predict --backend onnxruntime`."
    )
    parser.add_argument("checkpoints", nargs="+", type=Path, metavar="CHECKPOINT")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the .onnx files")
    parser.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32",
                        help="weights and input of the exported graph (fp16 is for GPUs; default fp32)")
    parser.add_argument("--input-size", type=_size, default=None, metavar="HxW",
                        help="input size of the graph (default: the training size, 1024x768; "
                             "pointmap models accept only that)")
    parser.add_argument("--verify", action="store_true",
                        help="run each export in onnxruntime on a random input and print its "
                             "largest difference from PyTorch")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HxW such as 1024x768") from None
    if h < 16 or w < 16 or h % 16 or w % 16:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be multiples of 16 (the patch size)")
    return h, w


def _print_progress(stage: str, fraction: float, message: str) -> None:
    print(f"  {stage} {fraction:4.0%} {message}", file=sys.stderr)


def check_targets(checkpoints: list[Path], out: Path, dtype: str) -> None:
    """Before any tracing (a minute per model): the checkpoints are readable safetensors files and
    --out is a folder (or can be one) where no folder sits in the way of an .onnx file."""
    from engine.errors import CheckpointError, EngineError
    from engine.models.safetensors_mmap import read_header
    from engine.options import path_lookup_problem
    from engine.runtime.onnx_export import onnx_name

    for given in (out, *checkpoints):
        if problem := path_lookup_problem(given):
            raise EngineError(f"{'--out ' if given is out else ''}{problem}")
    if out.exists() and not out.is_dir():
        raise EngineError(f"--out {out}: is a file, not a folder; export-onnx writes one "
                          "<checkpoint>.<dtype>.onnx file per checkpoint into a folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise EngineError(f"--out {out}: {parent} is a file, not a folder")
            break
    for checkpoint in checkpoints:
        if not checkpoint.is_file():
            raise CheckpointError(f"{checkpoint}: checkpoint file not found")
        if checkpoint.suffix == ".safetensors":
            read_header(checkpoint)  # truncated or not safetensors: said now, not after tracing
        target = out / onnx_name(checkpoint, dtype)
        if target.is_dir():
            raise EngineError(f"--out {out}: {target} is a folder; the export would need its name")


def run(args: argparse.Namespace) -> int:
    from engine.runtime.onnx_export import export_checkpoint

    check_targets(args.checkpoints, args.out, args.dtype)
    for checkpoint in args.checkpoints:
        print(f"exporting {checkpoint}", file=sys.stderr)
        path = export_checkpoint(checkpoint, args.out, dtype=args.dtype, input_hw=args.input_size,
                                 progress=_print_progress)
        line = f"{path}"
        if args.verify:
            line += f"  max relative difference {verify(checkpoint, path):.2e}"
        print(line)
    return 0


def verify(checkpoint: Path, onnx_path: Path) -> float:
    """Largest |onnx - torch| / max|torch| over the outputs, on one random normalized image."""
    import torch

    from engine.models.loading import load_model
    from engine.runtime.onnx_backend import OnnxRunner

    runner = OnnxRunner(onnx_path, device="cpu")
    model = load_model(checkpoint)
    x = torch.randn(1, 3, *runner.input_hw, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)
    got = runner(x)
    pairs = zip(got, want) if isinstance(want, tuple) else [(got, want)]
    return max(float((a - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)) for a, b in pairs)
