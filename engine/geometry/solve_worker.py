"""A second process for geometry solves that hold the GIL (open3d's screened Poisson), so that one
can run beside the build's own work on the machine's other core.

Threads cannot do it: open3d's Poisson holds the GIL for its whole run (measured: two hands in
two threads took as long as one after the other). So the closed build sends work on the hands
here (engine.geometry.detail_solid.HandSolve: the crops' samples while it solves the body, one
hand's Poisson solve while it solves the other).

- One worker per engine process, started lazily by the first build that needs it (`shared()`),
  kept warm for the next ones (a running engine, `sapiens-engine serve`), and ended with the
  engine: at exit (atexit), or when the engine dies, since the worker's requests then read
  end-of-file.
- A fresh interpreter (`python -m engine.geometry.solve_worker`), never a fork: the engine
  process may hold torch's or OpenMP's threads, which a forked child would inherit in an unknown
  state; and unlike multiprocessing's "spawn" it does not import the engine's main script again.
  Requests come on its stdin and answers go out on its stdout (length-prefixed pickles); the
  worker moves its own stdout to stderr first, so that no library's print (open3d's warnings)
  can reach the answers, and so never the engine's protocol stream either.
- Any function of engine.geometry can be called by reference (`submit(function, *args)` ->
  concurrent.futures.Future). A worker that dies (crashed, killed) fails every pending future
  with WorkerLost; the caller then solves in its own process, with a note, and the next
  `shared()` starts a fresh worker.
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

ALLOWED_PREFIX = "engine.geometry."  # the only functions the worker runs
START_TIMEOUT_S = 60.0
_HEADER = 8  # bytes of the little-endian length before each pickle


class WorkerLost(RuntimeError):
    """The worker process ended, or could not be started, before it answered."""


class WorkerError(RuntimeError):
    """The function raised in the worker (its traceback as the message)."""


def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(_HEADER, "little"))
    stream.write(data)
    stream.flush()


def _receive(stream):
    """The next message, or EOFError at the end of the stream."""
    header = stream.read(_HEADER)
    if len(header) < _HEADER:
        raise EOFError
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


class SolveWorker:
    """One worker process and a thread that hands its answers to the waiting futures."""

    def __init__(self):
        root = str(Path(__file__).resolve().parents[2])   # where `engine` is importable from
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
               # one core is the worker's: the build's process keeps the other
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, "-m", "engine.geometry.solve_worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env)
        self.ready: Future = Future()
        self._pending: dict[int, Future] = {}
        self._ticket = 0
        self._lock = threading.Lock()
        self._lost: str | None = None
        self._reader = threading.Thread(target=self._read, name="geometry-worker-answers", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self._lost is None and self.process.poll() is None

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> float:
        """Seconds from start until the worker had imported what it runs; raises WorkerLost."""
        return self.ready.result(timeout=timeout)

    def submit(self, function, *args) -> Future:
        """`function(*args)` in the worker; its result (or WorkerLost / WorkerError) in the future."""
        module, name = function.__module__, function.__qualname__
        if not module.startswith(ALLOWED_PREFIX):
            raise ValueError(f"the geometry worker runs engine.geometry functions only, not {module}.{name}")
        future: Future = Future()
        with self._lock:
            if self._lost is not None:
                future.set_exception(WorkerLost(self._lost))
                return future
            self._ticket += 1
            ticket = self._ticket
            self._pending[ticket] = future
            try:
                _send(self.process.stdin, (ticket, module, name, args))
            except (OSError, ValueError) as exc:
                self._pending.pop(ticket, None)
                self._lost = f"the request could not be sent ({type(exc).__name__}: {exc})"
                future.set_exception(WorkerLost(self._lost))
        return future

    def close(self, timeout: float = 2.0) -> None:
        """End the worker: end-of-file on its requests (it finishes the solve it is in), then
        terminate it if it has not gone within `timeout` seconds."""
        with self._lock:
            if self._lost is None:
                self._lost = "the worker was shut down"
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        self._reader.join(timeout)

    def _read(self) -> None:
        while True:
            try:
                ticket, status, value = _receive(self.process.stdout)
            except (EOFError, OSError):
                break
            except Exception as exc:  # noqa: BLE001: an answer that cannot be read: the stream is lost
                self._lost = self._lost or f"an answer could not be read ({type(exc).__name__}: {exc})"
                self.process.kill()
                break
            if ticket == 0:
                self.ready.set_result(time.perf_counter() - self.started_at)
                continue
            with self._lock:
                future = self._pending.pop(ticket, None)
            if future is None:  # nobody waits for it any more (a cancelled build)
                continue
            if status == "ok":
                future.set_result(value)
            else:
                future.set_exception(WorkerError(value))
        try:
            code = self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            code = None
        with self._lock:
            self._lost = self._lost or f"the geometry worker process ended (exit code {code})"
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(WorkerLost(self._lost))
        if not self.ready.done():
            self.ready.set_exception(WorkerLost(self._lost))


def serve() -> None:
    """The worker process: answers out on a private copy of stdout (stdout itself goes to stderr),
    warm imports, then one request after another until end-of-file."""
    import signal
    import traceback

    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer
    # Ctrl-C in a terminal reaches the whole process group; the engine decides what stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the heavy imports before the first request (the engine's own modules come with it)
    import manifold3d  # noqa: F401
    import open3d  # noqa: F401
    import scipy.spatial  # noqa: F401

    import engine.geometry.watertight  # noqa: F401

    _send(answers, (0, "ready", None))
    while True:
        try:
            ticket, module, name, args = _receive(requests)
        except (EOFError, OSError):
            return
        try:
            if not module.startswith(ALLOWED_PREFIX):
                raise ValueError(f"not an engine.geometry function: {module}.{name}")
            target = importlib.import_module(module)
            for part in name.split("."):
                target = getattr(target, part)
            answer = (ticket, "ok", target(*args))
        except BaseException as exc:  # noqa: BLE001: every failure goes back to the caller
            answer = (ticket, "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        try:
            _send(answers, answer)
        except (OSError, ValueError):
            return


_shared: SolveWorker | None = None
_shared_lock = threading.Lock()


def shared(start: bool = True) -> SolveWorker | None:
    """The engine process's worker, started on first use (and again after one was lost); None
    when `start` is False and none runs, or when it cannot be started."""
    global _shared
    with _shared_lock:
        if _shared is not None and not _shared.alive:
            _shared.close(timeout=0.5)
            _shared = None
        if _shared is None and start:
            try:
                _shared = SolveWorker()
            except Exception:  # noqa: BLE001: no worker means solving in this process
                _shared = None
        return _shared


def shutdown() -> None:
    """End the shared worker (the engine's exit does it; tests and benches may call it)."""
    global _shared
    with _shared_lock:
        worker, _shared = _shared, None
    if worker is not None:
        worker.close()


atexit.register(shutdown)


if __name__ == "__main__":
    serve()
