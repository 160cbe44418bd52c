"""`sapiens-engine serve`: the JSON-lines stdio server DCC clients drive (docs/protocol.md)."""

from __future__ import annotations

import argparse

from engine.commands import positive_int
from engine.protocol import DEFAULT_MAX_LINE_BYTES

HELP = "JSON-lines protocol over stdio for DCC clients"
MAX_JOBS = 64  # each job is a worker thread started at once; 100000 kept the engine from ever saying ready


def job_count(text: str) -> int:
    """argparse type: how many jobs run at once, 1..MAX_JOBS."""
    try:
        value = positive_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
    if value > MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_JOBS}, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve the engine over stdin/stdout: one JSON request per line in, progress, results and "
        "errors as JSON lines out, logs on stderr. The protocol is documented in docs/protocol.md."
    )
    parser.add_argument("--debug", action="store_true",
                        help="enable the debug.* methods (debug.sleep, debug.echo) for testing clients")
    parser.add_argument("--jobs", type=job_count, default=2, metavar="N",
                        help=f"jobs that run at the same time, 1 to {MAX_JOBS}; more wait in a queue (default 2)")
    parser.add_argument("--max-line-bytes", type=positive_int, default=DEFAULT_MAX_LINE_BYTES, metavar="BYTES",
                        help=f"longest request line accepted (default {DEFAULT_MAX_LINE_BYTES})")


def run(args: argparse.Namespace) -> int:
    from engine.serve import serve_stdio

    return serve_stdio(debug=args.debug, job_workers=args.jobs, max_line_bytes=args.max_line_bytes)
