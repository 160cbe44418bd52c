"""The process's stdin/stdout as the protocol's streams, and the server run on them."""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
from typing import BinaryIO

from engine.protocol import DEFAULT_MAX_LINE_BYTES
from engine.serve.scheduler import DEFAULT_JOB_WORKERS


def claim_stdio() -> tuple[BinaryIO, BinaryIO]:
    """Take the process's stdin/stdout for the protocol; everything else gets stderr / devnull.

    File descriptors are moved, not only sys.stdout: C extensions, subprocesses and libraries
    that cached sys.stdout would otherwise still write to (or read from) the protocol pipes.
    """
    sys.stdout.flush()
    protocol_in = os.fdopen(os.dup(0), "rb")
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    return protocol_in, protocol_out


def serve_stdio(*, debug: bool = False, job_workers: int = DEFAULT_JOB_WORKERS,
                max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> int:
    """Serve the protocol on this process's stdin/stdout until shutdown or end of input."""
    from engine.serve.server import EXIT_CLIENT_GONE, Server

    protocol_in, protocol_out = claim_stdio()
    # a crash in native code (torch, open3d) then leaves its Python stack in the client's stderr tail
    faulthandler.enable(file=sys.stderr)
    server = Server(protocol_in, protocol_out, debug=debug, job_workers=job_workers, max_line_bytes=max_line_bytes)
    code = server.serve()
    try:
        protocol_out.flush()
    except BrokenPipeError:
        # the client went away while the last messages were on their way: drop them (the fd now
        # leads nowhere) so neither this flush nor the interpreter's exit ends in a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, protocol_out.fileno())
        os.close(devnull)
    if server.out.broken:
        # the jobs may have ended (cancelled) before the client-gone thread exits with its code
        code = EXIT_CLIENT_GONE
    sys.stderr.flush()
    if server.abandoned_jobs:
        # Their daemon threads may hold the stdout writer's lock, which makes a normal interpreter
        # exit abort ("could not acquire lock"); their outputs are atomic, so leave at once.
        logging.shutdown()
        os._exit(code)
    return code
