"""The debug.* methods (`serve --debug`): real features for testing clients without models
(progress bars, cancel, large messages, error paths, a job that prints to stdout)."""

from __future__ import annotations

import hashlib
import os
import sys
import time

from engine.errors import Cancelled, EngineError
from engine.serve.methods import Method, invalid_params
from engine.serve.scheduler import Job

FAILURES = {
    "engine_error": EngineError,
    **{cls.code: cls for cls in EngineError.__subclasses__() if cls is not Cancelled},
}
MAX_BLOB_BYTES = 256 << 20


def _int(params: dict, name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid_params(f"'{name}' must be an integer in [{low}, {high}]",
                             {"param": name, "detail": f"must be an integer in [{low}, {high}]"})
    return value


def _known(params: dict, names: set[str]) -> None:
    unknown = set(params) - names
    if unknown:
        raise invalid_params(f"unknown parameter(s) {sorted(unknown)}", {"param": sorted(unknown)[0],
                                                                         "detail": "unknown parameter"})


def _check_sleep(params: dict) -> dict:
    _known(params, {"steps", "interval", "stage", "fail_at", "fail_with", "print"})
    interval = params.get("interval", 0.1)
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not 0 <= interval <= 3600:
        raise invalid_params("'interval' must be a number of seconds in [0, 3600]")
    fail_with = params.get("fail_with", "engine_error")
    if fail_with != "internal" and fail_with not in FAILURES:
        raise invalid_params(f"'fail_with' must be one of {sorted([*FAILURES, 'internal'])}")
    fail_at = params.get("fail_at")
    return {
        "steps": _int(params, "steps", 10, 0, 1_000_000),
        "interval": interval,
        "stage": str(params.get("stage", "sleep")),
        "fail_at": None if fail_at is None else _int(params, "fail_at", 0, 0, 1_000_000),
        "fail_with": fail_with,
        "print": bool(params.get("print", False)),
    }


def _sleep(job: Job) -> dict:
    o = job.options
    steps = o["steps"]
    for step in range(steps + 1):
        job.progress(o["stage"], step / steps if steps else 1.0, f"step {step} of {steps}")
        if o["print"]:  # both ways a job can reach stdout: Python's sys.stdout and file descriptor 1
            print(f"debug.sleep {job.id}: stray print at step {step}")
            sys.stdout.flush()
            os.write(1, f"debug.sleep {job.id}: stray fd-1 write at step {step}\n".encode())
        if step == o["fail_at"]:
            if o["fail_with"] == "internal":
                raise RuntimeError(f"debug.sleep failed on purpose at step {step}")
            raise FAILURES[o["fail_with"]](f"debug.sleep failed on purpose at step {step}")
        if step < steps:
            time.sleep(o["interval"])
    return {"steps_done": steps}


def _blob(size: int) -> str:
    pattern = "".join(chr(c) for c in range(0x21, 0x7F))  # printable ASCII, no quote-escaping issues
    pattern = pattern.replace('"', "").replace("\\", "")
    repeats = size // len(pattern) + 1
    return (pattern * repeats)[:size]


def _check_echo(params: dict) -> dict:
    _known(params, {"payload", "size_bytes"})
    return {"payload": params.get("payload"), "size_bytes": _int(params, "size_bytes", 0, 0, MAX_BLOB_BYTES)}


def _echo(job: Job) -> dict:
    size = job.options["size_bytes"]
    job.progress("echo", 0.0, f"making a {size}-byte payload")
    blob = _blob(size)
    return {"payload": job.options["payload"], "blob": blob, "sha256": hashlib.sha256(blob.encode("ascii")).hexdigest()}


DEBUG_METHODS = {
    "debug.sleep": Method("debug.sleep", check=_check_sleep, run=_sleep),
    "debug.echo": Method("debug.echo", check=_check_echo, run=_echo),
}
