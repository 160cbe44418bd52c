"""Jobs: queued, run on a small pool of worker threads, reporting progress, cancellable.

A job answers exactly one final message (result or error). A cancelled queued job answers at once;
a running one stops at its next progress step (its `progress` raises Cancelled).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.errors import Cancelled, EngineError
from engine.protocol import (
    ProtocolError,
    Request,
    RequestId,
    encode_message,
    error_message,
    progress_message,
    result_message,
)

log = logging.getLogger("engine.serve")

DEFAULT_JOB_WORKERS = 2
# Progress for one stage is sent at most this often (the first and last of a stage always are).
PROGRESS_INTERVAL_S = 0.05


@dataclass
class Job:
    request: Request
    handler: Callable[["Job"], dict]
    emit: Callable[[dict], bool]
    options: dict[str, Any] | None = None  # the parameters as engine.options.validate checked them
    state: str = "queued"  # queued -> running -> done, or queued -> cancelled
    stage: str | None = None
    fraction: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    _last_progress_at: float = 0.0

    @property
    def id(self) -> RequestId:
        return self.request.id

    @property
    def params(self) -> dict:
        return self.request.params

    def cancelled(self) -> bool:
        return self.cancel_requested.is_set()

    def progress(self, stage: str, fraction: float | None = None, message: str = "") -> None:
        """The `progress` callback given to engine jobs; raises Cancelled when asked to stop."""
        if self.cancel_requested.is_set():
            raise Cancelled(f"{self.request.method} was cancelled by the client")
        if self.state == "done":  # a helper thread reporting after the job answered: too late
            return
        stage = str(stage)
        try:
            fraction = min(1.0, max(0.0, float(fraction))) if fraction is not None else None
        except (TypeError, ValueError):
            fraction = None
        if fraction is not None and fraction != fraction:  # NaN
            fraction = None
        now = time.monotonic()
        is_boundary = stage != self.stage or fraction in (0.0, 1.0, None)
        self.stage, self.fraction = stage, fraction
        if not is_boundary and now - self._last_progress_at < PROGRESS_INTERVAL_S:
            return
        self._last_progress_at = now
        self.emit(progress_message(self.id, stage, fraction, str(message or "")))

    def describe(self) -> dict:
        return {
            "id": self.id,
            "method": self.request.method,
            "state": self.state,
            "stage": self.stage,
            "fraction": self.fraction,
            "cancelling": self.cancel_requested.is_set(),
        }


def internal_error(request_id: RequestId | None, exc: BaseException) -> dict:
    return error_message(
        request_id, "internal", f"internal engine error: {type(exc).__name__}: {exc}",
        {"exception": type(exc).__name__, "traceback": "".join(traceback.format_exception(exc))},
    )


def run_job(job: Job) -> dict:
    """The job's final message: its result, or its error in the protocol's words."""
    started = time.monotonic()
    method = job.request.method
    try:
        result = job.handler(job)
        message = result_message(job.id, result)
        log.info("%s %r done in %.2f s", method, job.id, time.monotonic() - started)
    except ProtocolError as exc:
        message = error_message(job.id, exc.code, exc.message, exc.data)
    except Cancelled as exc:
        log.info("%s %r cancelled", method, job.id)
        message = error_message(job.id, Cancelled.code, str(exc) or f"{method} was cancelled")
    except EngineError as exc:
        log.info("%s %r failed: %s", method, job.id, exc)
        message = error_message(job.id, exc.code, str(exc), getattr(exc, "data", None))
    except Exception as exc:  # a bug: report it with its traceback and keep serving
        log.exception("%s %r failed with an unexpected error", method, job.id)
        message = internal_error(job.id, exc)
    except BaseException as exc:  # SystemExit / KeyboardInterrupt raised inside a job
        message = internal_error(job.id, exc)
    return message


class Scheduler:
    """The jobs by id, a queue, and `workers` threads taking jobs from it."""

    def __init__(self, workers: int, write_encoded: Callable[[bytes], bool]):
        self.worker_count = max(1, workers)
        self._write_encoded = write_encoded
        self._jobs: dict[RequestId, Job] = {}
        self.changed = threading.Condition()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self.closing = False

    def start(self) -> None:
        for index in range(self.worker_count):
            worker = threading.Thread(target=self._work, name=f"serve-job-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def __len__(self) -> int:
        return len(self._jobs)

    def submit(self, job: Job) -> None:
        with self.changed:
            if self.closing:
                raise ProtocolError("shutting_down", "the engine is shutting down")
            if job.id in self._jobs:
                raise ProtocolError("duplicate_id", f"a request with id {job.id!r} is still running")
            self._jobs[job.id] = job
            self.changed.notify_all()
        self._queue.put(job)

    def describe(self) -> list[dict]:
        with self.changed:
            return [job.describe() for job in self._jobs.values()]

    def cancel(self, target) -> dict:
        with self.changed:
            valid = isinstance(target, (str, int)) and not isinstance(target, bool)
            job = self._jobs.get(target) if valid else None
            if job is None:
                return {"target": target, "cancelled": False, "reason": "not running"}
            job.cancel_requested.set()
            was_queued = job.state == "queued"
            if was_queued:
                job.state = "cancelled"
                self._forget(job)
        if was_queued:  # a queued job never reaches a progress step: answer for it now
            job.emit(error_message(job.id, "cancelled", f"{job.request.method} was cancelled before it started"))
        log.info("cancel requested for %r (%s)", target, "queued" if was_queued else "running")
        return {"target": target, "cancelled": True}

    def cancel_all(self) -> None:
        with self.changed:
            ids = list(self._jobs)
        for job_id in ids:
            self.cancel(job_id)

    def wait_idle(self, timeout: float | None) -> list[RequestId]:
        """Wait until no job is left (or `timeout` passed); returns the ids still unfinished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.changed:
            while self._jobs:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self.changed.wait(timeout=0.5 if remaining is None else min(remaining, 0.5))
            return list(self._jobs)

    def stop_workers(self) -> None:
        for _ in self._workers:
            self._queue.put(None)

    def _forget(self, job: Job) -> None:
        """Drop a finished job (caller holds `changed`), before its final message is written,
        so a client that reuses the id after that message never gets `duplicate_id`."""
        if self._jobs.get(job.id) is job:
            del self._jobs[job.id]
        self.changed.notify_all()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self.changed:
                if job.state == "cancelled":
                    continue
                job.state = "running"
            final = self._encode_final(job, run_job(job))
            with self.changed:
                job.state = "done"
                self._forget(job)
            self._write_encoded(final)

    @staticmethod
    def _encode_final(job: Job, message: dict) -> bytes:
        try:
            return encode_message(message)
        except (TypeError, ValueError) as exc:  # a result the engine cannot put into JSON is a bug
            log.exception("%s %r: result is not JSON serializable", job.request.method, job.id)
            return encode_message(internal_error(job.id, exc))
