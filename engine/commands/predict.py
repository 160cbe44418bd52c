"""`sapiens-engine predict PHOTO... --out DIR`: Sapiens2 predictions bundles for photos."""

from __future__ import annotations

import sys
import time

from engine.options import add_arguments as add_options
from engine.options import from_args

HELP = "run the Sapiens2 models on photos and write predictions bundles"


def add_arguments(parser) -> None:
    add_options(parser, "predict")


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


def run(args) -> int:
    from engine.jobs import run_job

    bar = ProgressBar()
    try:
        result = run_job("predict", from_args(args, "predict"), progress=bar)
    finally:
        bar.close()
    for row in result["skipped"]:
        print(f"sapiens-engine predict: {row['message']} (skipped)", file=sys.stderr)
    for path in result["bundles"]:
        print(path)
    if result["skipped"]:
        print(f"sapiens-engine predict: {len(result['skipped'])} of {len(args.photos)} photo(s) failed",
              file=sys.stderr)
        return 1
    return 0
