"""`sapiens-engine batch INPUT... --out DIR`: many photos or bundles on Ray Data (docs/batch.md)."""

from __future__ import annotations

import argparse
import sys

from engine.options import add_arguments as add_options
from engine.options import from_args

HELP = "many photos or bundles to bundles and avatars, on Ray (local or a cluster)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run predict and build over many inputs with Ray Data: photos decoded on CPU workers, the "
        "models in a pool of workers that load them once, builds as CPU tasks. Each item's outputs "
        "go to OUT/NAME/ with batch_item.json; a rerun skips the items already done. Writes "
        "OUT/batch_report.jsonl and OUT/batch_report.html."
    )
    add_options(parser, "batch")


def _print_progress(stage: str, fraction: float, message: str) -> None:
    print(f"  {fraction:4.0%} {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from engine.jobs import run_job

    result = run_job("batch", from_args(args, "batch"), progress=_print_progress)
    for row in result["failed"]:
        print(f"sapiens-engine batch: {row['name']}: {row['error']}", file=sys.stderr)
    print(result["summary"])
    print(f"report: {result['report']}, contact sheet: {result['sheet']}", file=sys.stderr)
    return 1 if result["counts"]["failed"] else 0
