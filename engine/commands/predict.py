"""`sapiens-engine predict PHOTO... --out DIR`: Sapiens2 predictions bundles for photos."""

from __future__ import annotations

import sys
import time

HELP = "run the Sapiens2 models on photos and write predictions bundles"


def add_arguments(parser) -> None:
    parser.add_argument("photos", nargs="+", help="photo files (JPEG, PNG, WebP, TIFF, EXR)")
    parser.add_argument("--out", required=True, help="directory that receives one bundle per photo")
    parser.add_argument("--tasks", default=None,
                        help="comma list of pose,seg,normal,pointmap,albedo (default: every task "
                             "whose checkpoint is installed)")
    parser.add_argument("--size", default="0.4b",
                        help="model size, or per task: pose=1b,seg=0.4b (default 0.4b)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                        help="auto: bf16 on a CUDA GPU that supports it (fp16 where it does not), "
                             "fp32 on the CPU; onnxruntime runs fp32 or fp16")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                        help="torch (default) or onnxruntime (checkpoints exported to ONNX on first use)")
    parser.add_argument("--compile", default=None, metavar="MODE",
                        help="torch.compile the models (torch backend), e.g. max-autotune-no-cudagraphs "
                             "or reduce-overhead (CUDA graphs)")
    parser.add_argument("--onnx-dir", default=None, metavar="DIR",
                        help="where ONNX exports are kept (default: onnx/ beside each checkpoint)")
    parser.add_argument("--all-people", action="store_true", help="one bundle per person found")
    parser.add_argument("--bbox", default=None, metavar="X1,Y1,X2,Y2",
                        help="the person's box in photo pixels, instead of finding it")
    parser.add_argument("--skip-existing", action="store_true", help="leave photos with a bundle alone")
    parser.add_argument("--max-memory", default=None, metavar="BYTES",
                        help="budget for loaded models, e.g. 6G (least recently used are dropped)")
    parser.add_argument("--checkpoints", default=None, metavar="DIR",
                        help="checkpoint directory (default: $SAPIENS_CHECKPOINTS)")
    parser.add_argument("--batch-size", type=int, default=None, help="photos per forward pass (default 4)")
    parser.add_argument("--seg-probs", action="store_true", help="also write class probabilities")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="accept .pth/.bin checkpoints (loaded with torch.load(weights_only=True))")


class ProgressBar:
    """One line on stderr, redrawn in place on a terminal, one line per update otherwise."""

    def __init__(self, stream=None, width: int = 30):
        # resolved at call time: sys.stderr may have been replaced since import
        self.stream, self.width = stream or sys.stderr, width
        self.tty = self.stream.isatty()
        self.start = time.monotonic()

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        filled = int(round(self.width * min(max(fraction, 0.0), 1.0)))
        bar = "#" * filled + "." * (self.width - filled)
        line = f"{stage:>8} [{bar}] {fraction * 100:5.1f}% {time.monotonic() - self.start:6.1f}s {message}"
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def parse_bbox(text: str | None):
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not (values[0] < values[2] and values[1] < values[3]):
        raise SystemExit(f"sapiens-engine predict: --bbox {text!r}: expected X1,Y1,X2,Y2 with X1 < X2, Y1 < Y2")
    return values


def run(args) -> int:
    from engine.predict import predict_photos

    failures = []
    bar = ProgressBar()

    def on_error(path, exc):
        failures.append((path, exc))
        sys.stderr.write(f"\nsapiens-engine predict: {exc} (skipped)\n")

    try:
        written = predict_photos(
            args.photos, args.out, tasks=args.tasks, size=args.size, checkpoints=args.checkpoints,
            device=args.device, dtype=args.dtype, bbox=parse_bbox(args.bbox), all_people=args.all_people,
            skip_existing=args.skip_existing, progress=bar, max_memory=args.max_memory,
            batch_size=args.batch_size, allow_pickle=args.allow_pickle, seg_probs=args.seg_probs,
            backend=args.backend, compile=args.compile, onnx_dir=args.onnx_dir, on_error=on_error)
    finally:
        bar.close()
    for path in written:
        print(path)
    if failures:
        print(f"sapiens-engine predict: {len(failures)} of {len(args.photos)} photo(s) failed",
              file=sys.stderr)
        return 1
    return 0
