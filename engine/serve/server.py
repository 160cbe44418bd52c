"""The server: reads requests, answers control methods at once, hands job methods to the scheduler.

Control methods (handshake, ping, cancel, jobs, shutdown) are answered in the reading thread, so
the engine stays responsive while jobs run. A job method's parameters are checked here, before
it is queued (engine/serve/methods.py), so a bad parameter is answered at once.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import threading
from typing import BinaryIO

from engine import __version__
from engine.protocol import (
    DEFAULT_MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    MessageWriter,
    OversizedLine,
    ProtocolError,
    Request,
    error_message,
    event_message,
    parse_request,
    read_request_line,
    result_message,
)
from engine.serve.debug import DEBUG_METHODS
from engine.serve.methods import invalid_params, job_methods
from engine.serve.scheduler import DEFAULT_JOB_WORKERS, Job, Scheduler, internal_error

log = logging.getLogger("engine.serve")

DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0
# When the client stops reading stdout: how long cancelled jobs get to clean up, and the exit code.
CLIENT_GONE_GRACE_S = 10.0
EXIT_CLIENT_GONE = 3


def _installed_version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


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
        self.max_line_bytes = max_line_bytes
        self.scheduler = Scheduler(job_workers, self.out.write_encoded)
        self.abandoned_jobs = False  # set when shutdown timed out with jobs still running
        self._control = {
            "handshake": self._handshake,
            "ping": self._ping,
            "cancel": self._cancel,
            "jobs": self._list_jobs,
        }
        self._methods = job_methods(self.method_names)
        if debug:
            self._methods.update(DEBUG_METHODS)

    def method_names(self) -> list[str]:
        return sorted([*self._control, "shutdown", *self._methods])

    # -- main loop -----------------------------------------------------------------------------

    def serve(self) -> int:
        self.scheduler.start()
        self.out.write(event_message(
            "ready", engine_version=__version__, protocol=PROTOCOL_VERSION, pid=os.getpid(),
            debug=self.debug, max_line_bytes=self.max_line_bytes, jobs=self.scheduler.worker_count,
        ))
        log.info("serving protocol %s (pid %d, %d job workers%s)", PROTOCOL_VERSION, os.getpid(),
                 self.scheduler.worker_count, ", debug methods on" if self.debug else "")
        try:
            while True:
                line = read_request_line(self.reader, self.max_line_bytes)
                if line is None:
                    log.info("end of input: finishing %d job(s), then exiting", len(self.scheduler))
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
            log.info("Ctrl-C: cancelling %d job(s)", len(self.scheduler))
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
            elif request.method in self._methods:
                self._submit(request)
            else:
                hint = " (debug methods need `serve --debug`)" if request.method.startswith("debug.") else ""
                raise ProtocolError("unknown_method", f"unknown method '{request.method}'{hint}",
                                    {"method": request.method, "methods": self.method_names()})
        except ProtocolError as exc:
            self.out.write(error_message(request.id, exc.code, exc.message, exc.data))
        except Exception as exc:  # a bug in a control method must not stop the server
            log.exception("control method %s failed", request.method)
            self.out.write(internal_error(request.id, exc))
        return None

    def _submit(self, request: Request) -> None:
        method = self._methods[request.method]
        options = method.check(request.params)  # invalid_params before any other check or any work
        job = Job(request=request, handler=method.run, emit=self.out.write, options=options)
        self.scheduler.submit(job)

    # -- control methods -----------------------------------------------------------------------

    def _handshake(self, request: Request) -> dict:
        client_protocol = request.params.get("protocol")
        if not isinstance(client_protocol, (str, int)) or isinstance(client_protocol, bool):
            raise invalid_params("'protocol' is required: the protocol version the client speaks, e.g. \"1.1\"")
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
            raise invalid_params("'target' is required: the id of the job to cancel")
        target = request.params["target"]
        if not (isinstance(target, str) or (isinstance(target, int) and not isinstance(target, bool))):
            # a list or object would name no job (and cannot be looked up); say so rather than "not running"
            raise invalid_params(f"'target' must be a job's id (a string or an integer), not {target!r:.60}",
                                 {"param": "target", "detail": "not a request id"})
        return self.scheduler.cancel(target)

    def _list_jobs(self, request: Request) -> dict:
        return {"jobs": self.scheduler.describe()}

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

    # -- ending --------------------------------------------------------------------------------

    def _client_gone(self) -> None:
        log.warning("the client stopped reading (stdout closed): cancelling all jobs and exiting")
        threading.Thread(target=self._exit_without_client, name="serve-client-gone", daemon=True).start()

    def _exit_without_client(self) -> None:
        # Nothing can be answered any more, and the main thread may be blocked reading a stdin the
        # client never closes: cancel, give jobs a moment to clean up their temp dirs, and go.
        self.scheduler.cancel_all()
        self.scheduler.wait_idle(CLIENT_GONE_GRACE_S)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(EXIT_CLIENT_GONE)

    def _shutdown(self, *, cancel_jobs: bool, timeout: float | None) -> list:
        with self.scheduler.changed:
            self.scheduler.closing = True
        if cancel_jobs:
            self.scheduler.cancel_all()
        unfinished = self.scheduler.wait_idle(timeout)
        self.scheduler.stop_workers()
        if unfinished:
            log.warning("abandoning unfinished job(s) %s", unfinished)
        self.abandoned_jobs = bool(unfinished)
        return unfinished
