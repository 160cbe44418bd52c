"""`sapiens-engine animate FRAMES --out DIR`: an animated skeleton from a sequence of frames."""

from __future__ import annotations

import argparse

from engine.options import add_arguments as add_options
from engine.options import from_args

HELP = "turn a sequence of frames into an animated skeleton"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, "animate")


def run(args: argparse.Namespace) -> int:
    from engine.jobs import run_job

    def progress(stage: str, fraction: float, message: str) -> None:
        print(f"{stage} {fraction * 100:5.1f}% {message}", flush=True)

    result = run_job("animate", from_args(args, "animate"), progress=progress)
    print(f"animation written to {result['output']} ({', '.join(f for f in result['files'] if '/' not in f)}, frames/*.json)")
    return 0
