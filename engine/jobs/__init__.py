"""The engine's jobs: one module per job, each a function of validated options.

    from engine.jobs import run_job
    result = run_job("avatar", {"photos": ["me.jpg"], "out_dir": "avatars/"}, progress=print)

Every job module exposes `run(options, progress=None, cancel=None) -> dict`: `options` are the
job's options as engine.options.validate returns them (every option of the job, defaults filled,
canonical types), `progress(stage, fraction, message)` reports and may raise Cancelled, `cancel()`
says whether to stop at the next step; the result is JSON-able. The CLI commands
(engine/commands/) and the protocol methods (engine/serve/) are thin callers of these.

A new job = a module here, its name in JOBS and engine.options.JOBS, its options tagged with it.
Job modules are imported only when run, so the server starts without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Callable

from engine.options import validate

Progress = Callable[[str, float, str], None]

# job name -> module under engine.jobs
JOBS = {
    "predict": "predict",
    "build": "build",
    "avatar": "avatar",
    "animate": "animate",
    "retarget": "retarget",
    "batch": "batch",
}

# the module that implements each job's work (capabilities reports whether this build has it)
IMPLEMENTATIONS = {
    "predict": "engine.predict",
    "build": "engine.avatar.build",
    "avatar": "engine.avatar.build",
    "animate": "engine.motion.animate",
    "retarget": "engine.motion.retarget",
    "batch": "engine.batch.pipeline",
}


def load(name: str):
    """The job's module (imported on first use)."""
    return importlib.import_module(f"engine.jobs.{JOBS[name]}")


def run_job(name: str, params: dict, progress: Progress | None = None,
            cancel: Callable[[], bool] | None = None) -> dict:
    """Check `params` against the option table, then run the job."""
    options = validate(name, params)
    return load(name).run(options, progress=progress, cancel=cancel)


def checked_progress(progress: Progress | None, cancel: Callable[[], bool] | None) -> Progress:
    """`progress` that also stops the job (raises Cancelled) once `cancel()` says so."""
    from engine.errors import Cancelled

    def report(stage: str, fraction: float, message: str = "") -> None:
        if cancel is not None and cancel():
            raise Cancelled("the job was cancelled")
        if progress is not None:
            progress(stage, fraction, message)

    return report
