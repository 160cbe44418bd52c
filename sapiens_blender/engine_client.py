"""Client for the engine's stdio server (`python -m engine serve`, docs/protocol.md). No bpy.

The engine runs as a subprocess of the engine's own Python environment. A reader thread parses
its stdout (one JSON message per line) and updates Job objects and an event queue; a second
thread drains stderr into a log file and a short in-memory tail, so the pipe never fills and a
crash can be explained with the engine's last words. The caller (Blender's timer, a test, the
batch runner) polls jobs; nothing here blocks unless asked to wait.

A dead engine (killed, crashed, broken pipe) finishes every unfinished job with the error code
`engine_died`; `EngineClient.alive` turns false and the owner starts a new client next time.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROTOCOL_VERSION = "1.0"
CLIENT_NAME = "sapiens_blender"
DEFAULT_READY_TIMEOUT_S = 60.0
STDERR_TAIL_LINES = 40
PREFERENCES_HINT = "Edit > Preferences > Add-ons > Sapiens Avatars"

# error codes this client adds to the protocol's own (docs/protocol.md)
ENGINE_DIED = "engine_died"


class EngineClientError(RuntimeError):
    """A problem talking to the engine, explained in words (shown to the user as is)."""


class EngineNotConfigured(EngineClientError):
    """The engine's Python environment is not set or does not exist."""


class EngineStartError(EngineClientError):
    """The engine process did not come up (exited, timed out, wrong version)."""


class EngineDied(EngineClientError):
    """The engine process went away while the client was using it."""


@dataclass
class Job:
    """One request and what came back for it. Updated by the reader thread; read by anyone."""

    id: int
    method: str
    params: dict
    state: str = "running"  # running | done | error
    stage: str = ""
    fraction: float = 0.0
    message: str = ""
    result: dict | None = None
    error: dict | None = None  # {"code", "message", "data"}
    started: float = field(default_factory=time.monotonic)
    # every progress message in order, (stage, fraction, message): a poller that looks only now
    # and then still sees each stage, task and batch the engine reported
    progress_log: list = field(default_factory=list, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    @property
    def cancelled(self) -> bool:
        return self.state == "error" and (self.error or {}).get("code") == "cancelled"

    @property
    def error_message(self) -> str:
        return (self.error or {}).get("message", "")

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def _finish(self, state: str, result: dict | None = None, error: dict | None = None) -> None:
        if self._done.is_set():
            return
        self.state, self.result, self.error = state, result, error
        if state == "done":
            self.fraction = 1.0
        self._done.set()


def engine_command(python: str | os.PathLike, debug: bool = False) -> list[str]:
    cmd = [str(python), "-m", "engine", "serve"]
    return cmd + ["--debug"] if debug else cmd


def check_python(python: str | os.PathLike | None) -> Path:
    """The engine environment's interpreter, or EngineNotConfigured saying where to set it."""
    if not python:
        raise EngineNotConfigured(
            f"No engine environment is set. Set 'Engine Python' (or create one) in {PREFERENCES_HINT}."
        )
    path = Path(python).expanduser()
    if path.is_dir():  # a venv folder: use its interpreter
        for candidate in (path / "bin" / "python", path / "Scripts" / "python.exe", path / "bin" / "python3"):
            if candidate.exists():
                return candidate
        raise EngineNotConfigured(f"{path} has no bin/python: not a Python environment. Fix it in {PREFERENCES_HINT}.")
    if not path.exists():
        raise EngineNotConfigured(f"The engine Python {path} does not exist. Fix it in {PREFERENCES_HINT}.")
    return path


class EngineClient:
    """A running engine process and the jobs sent to it."""

    def __init__(
        self,
        python: str | os.PathLike | None,
        *,
        engine_source: str | os.PathLike | None = None,
        debug: bool = False,
        log_path: str | os.PathLike | None = None,
        cwd: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
    ):
        self.python = check_python(python)
        self.engine_source = Path(engine_source) if engine_source else None
        self.debug = debug
        self.log_path = Path(log_path) if log_path else None
        self.cwd = cwd
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None
        self.ready_info: dict | None = None
        self.handshake_info: dict | None = None
        self.events: queue.Queue[dict] = queue.Queue()  # every message, for UIs that want a feed
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.death: str | None = None  # why the engine is gone, once it is
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, ready_timeout: float = DEFAULT_READY_TIMEOUT_S, handshake: bool = True) -> dict:
        """Start the engine, wait for its `ready` event and check the protocol; return handshake."""
        env = dict(os.environ)
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONHOME", None)  # Blender's own Python home must not leak into the engine's
        if self.engine_source:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.engine_source), env.get("PYTHONPATH")]))
        try:
            self.process = subprocess.Popen(
                engine_command(self.python, self.debug),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env=env,
                # its own process group: Ctrl-C in Blender's terminal must not kill the engine mid-write
                start_new_session=(os.name == "posix"),
            )
        except OSError as exc:
            raise EngineStartError(f"Cannot start the engine with {self.python}: {exc.strerror}") from exc
        for target, name in ((self._read_stdout, "stdout"), (self._read_stderr, "stderr")):
            thread = threading.Thread(target=target, name=f"sapiens-engine-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + ready_timeout
        while not self._ready.wait(0.05):
            if self.death or time.monotonic() > deadline:
                reason = self.death or f"no 'ready' from the engine within {ready_timeout:.0f} s"
                self.kill()
                raise EngineStartError(f"The engine did not start: {reason}")
        if handshake:
            job = self.submit("handshake", {"client": f"{CLIENT_NAME}", "protocol": PROTOCOL_VERSION})
            if not job.wait(ready_timeout) or job.state != "done":
                message = job.error_message or "no answer to the handshake"
                self.kill()
                raise EngineStartError(f"The engine refused the connection: {message}")
            self.handshake_info = job.result
        return self.handshake_info or {}

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None and self.death is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask the engine to stop (cancelling its jobs), then kill it if it lingers."""
        if self.process is None:
            return
        if self.alive:
            try:
                self.submit("shutdown", {"cancel_jobs": True, "timeout": timeout})
            except EngineClientError:
                pass
            try:
                self.process.wait(timeout + 2.0)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(5.0)
            except subprocess.TimeoutExpired:
                pass
        for stream in (self.process.stdin,):
            try:
                stream and stream.close()
            except OSError:
                pass
        for thread in self._threads:
            thread.join(2.0)
        self._mark_dead(self.death or "the engine was stopped")

    # --- requests --------------------------------------------------------------------------
    def submit(self, method: str, params: dict | None = None) -> Job:
        """Send a request; returns its Job at once (raises EngineDied if the engine is gone)."""
        if not self.alive:
            raise EngineDied(self._death_message())
        job = Job(next(self._ids), method, dict(params or {}))
        line = json.dumps({"id": job.id, "method": method, "params": job.params}, allow_nan=False) + "\n"
        with self._lock:
            self._jobs[job.id] = job
        try:
            with self._write_lock:
                self.process.stdin.write(line.encode("utf-8"))
                self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            self._mark_dead(f"writing to the engine failed ({type(exc).__name__})")
            raise EngineDied(self._death_message()) from exc
        return job

    def call(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        """Send a request and wait for its result; raises EngineClientError on any error."""
        job = self.submit(method, params)
        if not job.wait(timeout):
            self.cancel(job)
            raise EngineClientError(f"{method} did not finish within {timeout} s")
        if job.state != "done":
            raise EngineClientError(job.error_message or f"{method} failed")
        return job.result or {}

    def cancel(self, job: Job) -> None:
        """Ask the engine to stop `job`; its final message (cancelled, or a result) still comes."""
        if job.finished or not self.alive:
            return
        try:
            self.submit("cancel", {"target": job.id})
        except EngineDied:
            pass

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    # --- reader threads ---------------------------------------------------------------------
    def _read_stdout(self) -> None:
        stream = self.process.stdout
        try:
            for raw in stream:
                try:
                    message = json.loads(raw)
                except ValueError:
                    self.stderr_tail.append(f"(not a protocol line on stdout) {raw[:200]!r}")
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        except (OSError, ValueError):
            pass
        code = self.process.wait()
        self._mark_dead(f"the engine process exited with code {code}")

    def _read_stderr(self) -> None:
        log = None
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        try:
            for raw in self.process.stderr:
                text = raw.decode("utf-8", "replace").rstrip("\n")
                self.stderr_tail.append(text)
                if log:
                    log.write(text + "\n")
                    log.flush()
        except (OSError, ValueError):
            pass
        finally:
            if log:
                log.close()

    def _dispatch(self, message: dict) -> None:
        self.events.put(message)
        kind = message.get("type")
        if kind == "event":
            if message.get("event") == "ready":
                self.ready_info = message
                self._ready.set()
            return
        with self._lock:
            job = self._jobs.get(message.get("id"))
        if job is None:
            return
        if kind == "progress":
            job.stage = str(message.get("stage", ""))
            job.fraction = float(message.get("fraction") or 0.0)
            job.message = str(message.get("message", ""))
            job.progress_log.append((job.stage, job.fraction, job.message))
        elif kind == "result":
            job._finish("done", result=message.get("result") or {})
        elif kind == "error":
            job._finish("error", error=message.get("error") or {"code": "internal", "message": "unknown error"})

    def _mark_dead(self, reason: str) -> None:
        with self._lock:
            if self.death is None:
                self.death = reason
            pending = [j for j in self._jobs.values() if not j.finished]
        message = self._death_message()
        for job in pending:
            job._finish("error", error={"code": ENGINE_DIED, "message": message, "data": {}})

    def _death_message(self) -> str:
        reason = self.death or "the engine is not running"
        tail = [line for line in self.stderr_tail if line.strip()][-3:]
        hint = f" Last engine log lines: {' | '.join(tail)}" if tail else ""
        return f"The engine stopped unexpectedly ({reason}); it will be restarted on the next run.{hint}"

