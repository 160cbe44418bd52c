"""`sapiens-engine serve`: the engine as a long-lived subprocess driven over stdin/stdout.

The main thread reads requests and answers control methods (handshake, ping, cancel, jobs,
shutdown) at once; jobs (predict, build, animate, capabilities, debug.*) run on a small pool of
worker threads and stream progress. The job implementations are imported only when first called,
so the server starts without importing torch. docs/protocol.md is the contract with clients.
"""

from __future__ import annotations

import faulthandler
import hashlib
import importlib
import importlib.util
import inspect
import logging
import os
import platform
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

from engine import __version__
from engine.errors import Cancelled, EngineError
from engine.protocol import (
    DEFAULT_MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    MessageWriter,
    OversizedLine,
    ProtocolError,
    Request,
    RequestId,
    encode_message,
    error_message,
    event_message,
    parse_request,
    progress_message,
    read_request_line,
    result_message,
)

log = logging.getLogger("engine.serve")

DEFAULT_JOB_WORKERS = 2
# Progress for one stage is sent at most this often (the first and last of a stage always are).
PROGRESS_INTERVAL_S = 0.05
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0
# When the client stops reading stdout: how long cancelled jobs get to clean up, and the exit code.
CLIENT_GONE_GRACE_S = 10.0
EXIT_CLIENT_GONE = 3


# ---------------------------------------------------------------------------------------------
# stdio: keep the protocol streams private so nothing else can write to stdout or read stdin
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# jobs
# ---------------------------------------------------------------------------------------------

@dataclass
class Job:
    request: Request
    handler: Callable[["Job"], dict]
    emit: Callable[[dict], bool]
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

    def progress(self, stage: str, fraction: float | None = None, message: str = "") -> None:
        """The `progress` callback given to engine functions; raises Cancelled when asked to stop."""
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


def _not_available(method: str, detail: str) -> ProtocolError:
    return ProtocolError("not_available", f"'{method}' is not available in this engine: {detail}",
                         {"method": method, "detail": detail})


def _invalid_params(detail: str) -> ProtocolError:
    return ProtocolError("invalid_params", f"bad parameters: {detail}", {"detail": detail})


def _import_entry(method: str, module_name: str, function_name: str) -> Callable:
    """Import a job's implementation on first use; a missing one is `not_available`, not a crash."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if module_name == missing or module_name.startswith(missing + "."):
            raise _not_available(method, f"module {module_name} is not part of this build") from None
        raise _not_available(method, f"{module_name} needs the Python package '{missing}', which is not installed") from None
    function = getattr(module, function_name, None)
    if function is None:
        raise _not_available(method, f"{module_name} has no {function_name}()")
    return function


def _require(params: dict, name: str, kind: type | tuple[type, ...], what: str) -> Any:
    if name not in params:
        raise _invalid_params(f"'{name}' is required ({what})")
    value = params[name]
    if not isinstance(value, kind):
        raise _invalid_params(f"'{name}' must be {what}, not {value!r:.80}")
    return value


def _require_path_list(params: dict, name: str) -> list[str]:
    values = _require(params, name, list, "a list of paths")
    if not values or not all(isinstance(v, str) and v for v in values):
        raise _invalid_params(f"'{name}' must be a non-empty list of path strings")
    return values


# keyword arguments of engine entry points that take Python callables: never set from a request
CALLBACK_PARAMS = ("progress", "on_error")


def _call_with_params(function: Callable, job: Job, params: dict, **callbacks: Callable) -> Any:
    """Call an engine entry point with the request's params as keywords, checked against its signature.

    `callbacks` (other than progress) are passed only when the entry point takes them.
    """
    reserved = sorted(set(params) & set(CALLBACK_PARAMS))
    if reserved:
        raise _invalid_params(f"{reserved} cannot be set by a client: the server passes its own callbacks")
    signature = inspect.signature(function)
    takes_progress = "progress" in signature.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    if takes_progress:
        params = {**params, "progress": job.progress}
    else:  # such a job cannot report progress or stop early; it still runs
        log.warning("%s takes no progress callback: no progress, cancel only before it starts", function.__qualname__)
    params = {**params, **{name: cb for name, cb in callbacks.items() if name in signature.parameters}}
    try:
        bound = signature.bind(**params)
    except TypeError as exc:
        raise _invalid_params(str(exc)) from None
    return function(*bound.args, **bound.kwargs)


def _relative_files(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def _job_predict(job: Job) -> dict:
    _require_path_list(job.params, "photos")
    _require(job.params, "out_dir", str, "a directory path")
    predict_photos = _import_entry("predict", "engine.predict", "predict_photos")
    skipped: list[tuple[str, BaseException]] = []
    bundles = _call_with_params(predict_photos, job, job.params,
                                on_error=lambda photo, exc: skipped.append((os.fspath(photo), exc)))
    skipped_rows = [{"photo": photo, "code": getattr(exc, "code", "internal"), "message": str(exc)}
                    for photo, exc in skipped]
    if skipped and not bundles:
        # nothing came out: the request failed, with the first photo's reason as the error
        first = skipped[0][1]
        error = first if isinstance(first, EngineError) else EngineError(str(first))
        error.data = {"skipped": skipped_rows}
        raise error
    return {"bundles": [os.fspath(b) for b in bundles], "skipped": skipped_rows}


def _job_build(job: Job) -> dict:
    _require(job.params, "bundle_dir", str, "a bundle directory path")
    _require(job.params, "out_dir", str, "a directory path")
    build_avatar = _import_entry("build", "engine.avatar.build", "build_avatar")
    avatar_dir = Path(_call_with_params(build_avatar, job, job.params))
    return {"avatar_dir": os.fspath(avatar_dir), "files": _relative_files(avatar_dir)}


def _job_animate(job: Job) -> dict:
    _require(job.params, "frames", str, "a directory of frames (images or predictions bundles)")
    _require(job.params, "out_dir", str, "a directory path")
    animate_frames = _import_entry("animate", "engine.motion.animate", "animate_frames")
    output = Path(_call_with_params(animate_frames, job, job.params))
    return {"output": os.fspath(output), "files": _relative_files(output)}


# method -> module holding its implementation (for `capabilities`' availability table)
IMPLEMENTATION_MODULES = {
    "predict": "engine.predict",
    "build": "engine.avatar.build",
    "animate": "engine.motion.animate",
}


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _installed_version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _devices(job: Job) -> tuple[list[dict], str | None]:
    devices = [{"type": "cpu", "name": platform.processor() or platform.machine() or "cpu",
                "count": os.cpu_count()}]
    job.progress("devices", 0.0, "importing torch to look for GPUs")
    try:
        import torch
    except ImportError:
        return devices, None
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append({"type": "cuda", "index": index, "name": props.name, "memory_bytes": props.total_memory})
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append({"type": "mps", "name": "Apple Metal"})
    job.progress("devices", 1.0, f"{len(devices)} device(s)")
    return devices, torch.__version__


def _checkpoints(root: str | None) -> tuple[str | None, list | None, str | None]:
    """(root, one row per task and size with `present`, error): as `sapiens-engine models` lists them."""
    try:
        checkpoints = importlib.import_module("engine.checkpoints")
        directory = checkpoints.checkpoints_root(root)
        rows = [row.as_dict() for row in checkpoints.list_checkpoints(directory)]
    except ModuleNotFoundError as exc:
        return None, None, f"checkpoint listing is not available in this engine ({exc})"
    except Exception as exc:  # a broken listing must not hide the devices and methods
        log.exception("listing checkpoints failed")
        return None, None, f"cannot list checkpoints: {type(exc).__name__}: {exc}"
    return str(directory), rows, None


def _job_capabilities(job: Job, server: "Server") -> dict:
    unknown = set(job.params) - {"checkpoints_root"}
    if unknown:
        raise _invalid_params(f"unknown parameter(s) {sorted(unknown)}")
    root = job.params.get("checkpoints_root")
    if root is not None and not isinstance(root, str):
        raise _invalid_params("'checkpoints_root' must be a directory path")
    devices, torch_version = _devices(job)
    gpu = next((d["type"] for d in devices if d["type"] != "cpu"), None)
    methods = {name: True for name in server.method_names()}
    for method, module in IMPLEMENTATION_MODULES.items():
        methods[method] = _module_exists(module)
    job.progress("checkpoints", 0.0, "listing installed checkpoints")
    checkpoints_root, checkpoints, checkpoints_error = _checkpoints(root)
    return {
        "engine_version": __version__,
        "protocol": PROTOCOL_VERSION,
        "torch": torch_version,
        "devices": devices,
        "default_device": gpu or "cpu",
        "methods": methods,
        "checkpoints_root": checkpoints_root,
        "checkpoints": checkpoints,
        "checkpoints_error": checkpoints_error,
    }


# ---------------------------------------------------------------------------------------------
# debug methods (`serve --debug`): real features for testing clients without models
# ---------------------------------------------------------------------------------------------

_DEBUG_FAILURES = {
    "engine_error": EngineError,
    **{cls.code: cls for cls in EngineError.__subclasses__() if cls is not Cancelled},
}
MAX_DEBUG_BLOB_BYTES = 256 << 20


def _debug_int(params: dict, name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _invalid_params(f"'{name}' must be an integer in [{low}, {high}]")
    return value


def _job_debug_sleep(job: Job) -> dict:
    params = job.params
    unknown = set(params) - {"steps", "interval", "stage", "fail_at", "fail_with", "print"}
    if unknown:
        raise _invalid_params(f"unknown parameter(s) {sorted(unknown)}")
    steps = _debug_int(params, "steps", 10, 0, 1_000_000)
    interval = params.get("interval", 0.1)
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not 0 <= interval <= 3600:
        raise _invalid_params("'interval' must be a number of seconds in [0, 3600]")
    stage = str(params.get("stage", "sleep"))
    fail_at = params.get("fail_at")
    if fail_at is not None:
        fail_at = _debug_int(params, "fail_at", 0, 0, 1_000_000)
    fail_with = params.get("fail_with", "engine_error")
    if fail_with != "internal" and fail_with not in _DEBUG_FAILURES:
        raise _invalid_params(f"'fail_with' must be one of {sorted([*_DEBUG_FAILURES, 'internal'])}")
    noisy = bool(params.get("print", False))
    for step in range(steps + 1):
        job.progress(stage, step / steps if steps else 1.0, f"step {step} of {steps}")
        if noisy:  # both ways a job can reach stdout: Python's sys.stdout and file descriptor 1
            print(f"debug.sleep {job.id}: stray print at step {step}")
            sys.stdout.flush()
            os.write(1, f"debug.sleep {job.id}: stray fd-1 write at step {step}\n".encode())
        if step == fail_at:
            if fail_with == "internal":
                raise RuntimeError(f"debug.sleep failed on purpose at step {step}")
            raise _DEBUG_FAILURES[fail_with](f"debug.sleep failed on purpose at step {step}")
        if step < steps:
            time.sleep(interval)
    return {"steps_done": steps}


def _debug_blob(size: int) -> str:
    pattern = "".join(chr(c) for c in range(0x21, 0x7F))  # printable ASCII, no quote-escaping issues
    pattern = pattern.replace('"', "").replace("\\", "")
    repeats = size // len(pattern) + 1
    return (pattern * repeats)[:size]


def _job_debug_echo(job: Job) -> dict:
    unknown = set(job.params) - {"payload", "size_bytes"}
    if unknown:
        raise _invalid_params(f"unknown parameter(s) {sorted(unknown)}")
    size = _debug_int(job.params, "size_bytes", 0, 0, MAX_DEBUG_BLOB_BYTES)
    job.progress("echo", 0.0, f"making a {size}-byte payload")
    blob = _debug_blob(size)
    return {"payload": job.params.get("payload"), "blob": blob,
            "sha256": hashlib.sha256(blob.encode("ascii")).hexdigest()}


# ---------------------------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------------------------

class Server:
    def __init__(
        self,
        reader: BinaryIO,
        writer: BinaryIO,
        *,
        debug: bool = False,
        job_workers: int = DEFAULT_JOB_WORKERS,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ):
        self.reader = reader
        self.out = MessageWriter(writer, on_broken=self._client_gone)
        self.debug = debug
        self.job_workers = max(1, job_workers)
        self.max_line_bytes = max_line_bytes
        self._jobs: dict[RequestId, Job] = {}
        self._jobs_changed = threading.Condition()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._closing = False
        self.abandoned_jobs = False  # set when shutdown timed out with jobs still running
        self._control = {
            "handshake": self._handshake,
            "ping": self._ping,
            "cancel": self._cancel,
            "jobs": self._list_jobs,
        }
        self._job_handlers: dict[str, Callable[[Job], dict]] = {
            "capabilities": lambda job: _job_capabilities(job, self),
            "predict": _job_predict,
            "build": _job_build,
            "animate": _job_animate,
        }
        if debug:
            self._job_handlers["debug.sleep"] = _job_debug_sleep
            self._job_handlers["debug.echo"] = _job_debug_echo

    def method_names(self) -> list[str]:
        return sorted([*self._control, "shutdown", *self._job_handlers])

    # -- main loop -----------------------------------------------------------------------------

    def serve(self) -> int:
        for index in range(self.job_workers):
            worker = threading.Thread(target=self._work, name=f"serve-job-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        self.out.write(event_message(
            "ready", engine_version=__version__, protocol=PROTOCOL_VERSION, pid=os.getpid(),
            debug=self.debug, max_line_bytes=self.max_line_bytes, jobs=self.job_workers,
        ))
        log.info("serving protocol %s (pid %d, %d job workers%s)", PROTOCOL_VERSION, os.getpid(),
                 self.job_workers, ", debug methods on" if self.debug else "")
        try:
            while True:
                line = read_request_line(self.reader, self.max_line_bytes)
                if line is None:
                    log.info("end of input: finishing %d job(s), then exiting", len(self._jobs))
                    self._shutdown(cancel_jobs=self.out.broken, timeout=None)
                    return 0
                if isinstance(line, OversizedLine):
                    self.out.write(error_message(
                        None, "request_too_large",
                        f"request line of at least {line.received_bytes} bytes is over the "
                        f"{self.max_line_bytes}-byte limit",
                        {"limit_bytes": self.max_line_bytes, "received_bytes": line.received_bytes},
                    ))
                    continue
                if not line.strip():
                    continue
                if self._handle_line(line) == "shutdown":
                    return 0
        except KeyboardInterrupt:
            log.info("interrupted: cancelling jobs")
            self._shutdown(cancel_jobs=True, timeout=5.0)
            return 130

    def _handle_line(self, line: bytes) -> str | None:
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            self.out.write(error_message(exc.request_id, exc.code, exc.message, exc.data))
            return None
        log.debug("request %r: %s", request.id, request.method)
        if request.method == "shutdown":
            self._handle_shutdown(request)
            return "shutdown"
        try:
            if request.method in self._control:
                self.out.write(result_message(request.id, self._control[request.method](request)))
            elif request.method in self._job_handlers:
                self._submit(request)
            else:
                hint = " (debug methods need `serve --debug`)" if request.method.startswith("debug.") else ""
                raise ProtocolError("unknown_method", f"unknown method '{request.method}'{hint}",
                                    {"method": request.method, "methods": self.method_names()})
        except ProtocolError as exc:
            self.out.write(error_message(request.id, exc.code, exc.message, exc.data))
        except Exception as exc:  # a bug in a control method must not stop the server
            log.exception("control method %s failed", request.method)
            self.out.write(_internal_error(request.id, exc))
        return None

    # -- control methods -----------------------------------------------------------------------

    def _handshake(self, request: Request) -> dict:
        client_protocol = request.params.get("protocol")
        if not isinstance(client_protocol, (str, int)) or isinstance(client_protocol, bool):
            raise _invalid_params("'protocol' is required: the protocol version the client speaks, e.g. \"1.0\"")
        client_major = str(client_protocol).split(".")[0]
        server_major = PROTOCOL_VERSION.split(".")[0]
        if client_major != server_major:
            raise ProtocolError(
                "incompatible_protocol",
                f"the client speaks protocol {client_protocol} but this engine ({__version__}) speaks "
                f"{PROTOCOL_VERSION}; install an engine with protocol {client_major}.x",
                {"server_protocol": PROTOCOL_VERSION, "client_protocol": str(client_protocol)},
            )
        client = request.params.get("client")
        log.info("handshake from %s (protocol %s)", client or "an unnamed client", client_protocol)
        return {
            "engine": "sapiens-engine",
            "engine_version": __version__,
            "protocol": PROTOCOL_VERSION,
            "python": platform.python_version(),
            "torch": _installed_version("torch"),
            "pid": os.getpid(),
            "platform": sys.platform,
            "debug": self.debug,
        }

    def _ping(self, request: Request) -> dict:
        return {"pong": True, "echo": request.params}

    def _cancel(self, request: Request) -> dict:
        if "target" not in request.params:
            raise _invalid_params("'target' is required: the id of the job to cancel")
        target = request.params["target"]
        with self._jobs_changed:
            job = self._jobs.get(target) if isinstance(target, (str, int)) and not isinstance(target, bool) else None
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

    def _list_jobs(self, request: Request) -> dict:
        with self._jobs_changed:
            return {"jobs": [job.describe() for job in self._jobs.values()]}

    def _handle_shutdown(self, request: Request) -> None:
        cancel_jobs = request.params.get("cancel_jobs", True)
        timeout = request.params.get("timeout", DEFAULT_SHUTDOWN_TIMEOUT_S)
        if not isinstance(cancel_jobs, bool) or not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
            # a malformed shutdown still shuts down: the client clearly wants the engine gone
            log.warning("shutdown with bad params %r: using the defaults", request.params)
            cancel_jobs, timeout = True, DEFAULT_SHUTDOWN_TIMEOUT_S
        unfinished = self._shutdown(cancel_jobs=cancel_jobs, timeout=float(timeout))
        self.out.write(result_message(request.id, {"shutdown": True, "unfinished": unfinished}))
        log.info("shutdown")

    # -- jobs ----------------------------------------------------------------------------------

    def _submit(self, request: Request) -> None:
        job = Job(request=request, handler=self._job_handlers[request.method], emit=self.out.write)
        with self._jobs_changed:
            if self._closing:
                raise ProtocolError("shutting_down", "the engine is shutting down")
            if request.id in self._jobs:
                raise ProtocolError("duplicate_id", f"a request with id {request.id!r} is still running")
            self._jobs[request.id] = job
            self._jobs_changed.notify_all()
        self._queue.put(job)

    def _forget(self, job: Job) -> None:
        """Drop a finished job (caller holds _jobs_changed), before its final message is written,
        so a client that reuses the id after that message never gets `duplicate_id`."""
        if self._jobs.get(job.id) is job:
            del self._jobs[job.id]
        self._jobs_changed.notify_all()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._jobs_changed:
                if job.state == "cancelled":
                    continue
                job.state = "running"
            final = self._encode_final(job, self._run(job))
            with self._jobs_changed:
                job.state = "done"
                self._forget(job)
            self.out.write_encoded(final)

    def _encode_final(self, job: Job, message: dict) -> bytes:
        try:
            return encode_message(message)
        except (TypeError, ValueError) as exc:  # a result the engine cannot put into JSON is a bug
            log.exception("%s %r: result is not JSON serializable", job.request.method, job.id)
            return encode_message(_internal_error(job.id, exc))

    def _run(self, job: Job) -> dict:
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
            message = _internal_error(job.id, exc)
        except BaseException as exc:  # SystemExit / KeyboardInterrupt raised inside a job
            message = _internal_error(job.id, exc)
        return message

    def _cancel_all(self) -> None:
        with self._jobs_changed:
            jobs = list(self._jobs.values())
        for job in jobs:
            self._cancel(Request(id="", method="cancel", params={"target": job.id}))

    def _client_gone(self) -> None:
        log.warning("the client stopped reading (stdout closed): cancelling all jobs and exiting")
        threading.Thread(target=self._exit_without_client, name="serve-client-gone", daemon=True).start()

    def _exit_without_client(self) -> None:
        # Nothing can be answered any more, and the main thread may be blocked reading a stdin the
        # client never closes: cancel, give jobs a moment to clean up their temp dirs, and go.
        self._cancel_all()
        with self._jobs_changed:
            self._jobs_changed.wait_for(lambda: not self._jobs, timeout=CLIENT_GONE_GRACE_S)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(EXIT_CLIENT_GONE)

    def _shutdown(self, *, cancel_jobs: bool, timeout: float | None) -> list[RequestId]:
        with self._jobs_changed:
            self._closing = True
        if cancel_jobs:
            self._cancel_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._jobs_changed:
            while self._jobs:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._jobs_changed.wait(timeout=0.5 if remaining is None else min(remaining, 0.5))
            unfinished = list(self._jobs)
        for _ in self._workers:
            self._queue.put(None)
        if unfinished:
            log.warning("abandoning unfinished job(s) %s", unfinished)
        self.abandoned_jobs = bool(unfinished)
        return unfinished


def _internal_error(request_id: RequestId | None, exc: BaseException) -> dict:
    return error_message(
        request_id, "internal", f"internal engine error: {type(exc).__name__}: {exc}",
        {"exception": type(exc).__name__, "traceback": "".join(traceback.format_exception(exc))},
    )


def serve_stdio(*, debug: bool = False, job_workers: int = DEFAULT_JOB_WORKERS,
                max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> int:
    """Serve the protocol on this process's stdin/stdout until shutdown or end of input."""
    protocol_in, protocol_out = claim_stdio()
    # a crash in native code (torch, open3d) then leaves its Python stack in the client's stderr tail
    faulthandler.enable(file=sys.stderr)
    server = Server(protocol_in, protocol_out, debug=debug, job_workers=job_workers, max_line_bytes=max_line_bytes)
    code = server.serve()
    protocol_out.flush()
    sys.stderr.flush()
    if server.abandoned_jobs:
        # Their daemon threads may hold the stdout writer's lock, which makes a normal interpreter
        # exit abort ("could not acquire lock"); their outputs are atomic, so leave at once.
        logging.shutdown()
        os._exit(code)
    return code
