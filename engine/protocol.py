"""The stdio protocol's framing: reading bounded request lines, validating them, writing messages.

Nothing here knows what the methods do (that is engine/serve/); docs/protocol.md is the
contract both sides follow.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

PROTOCOL_VERSION = "1.4"
DEFAULT_MAX_LINE_BYTES = 1 << 20

# Reading the rest of an oversized line in pieces this big keeps memory bounded.
_DRAIN_CHUNK_BYTES = 1 << 16

RequestId = str | int


class ProtocolError(Exception):
    """A request the server answers with an error without running anything.

    `request_id` is the id to tag the answer with (None when the line's id could not be read).
    """

    def __init__(self, code: str, message: str, data: dict | None = None, request_id: RequestId | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data or {}
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    id: RequestId
    method: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OversizedLine:
    """A request line longer than the limit; only its length was kept."""

    received_bytes: int


def read_request_line(stream: BinaryIO, max_line_bytes: int) -> bytes | OversizedLine | None:
    """Read one line of at most `max_line_bytes` (without its newline); None at end of input.

    A longer line is read to its end in small pieces and dropped, so a client sending a huge
    line cannot make the server hold it in memory.
    """
    line = stream.readline(max_line_bytes + 1)
    if not line:
        return None
    if line.endswith(b"\n") or len(line) <= max_line_bytes:
        return line.rstrip(b"\r\n")
    received = len(line)
    while True:
        piece = stream.readline(_DRAIN_CHUNK_BYTES)
        received += len(piece)
        if not piece or piece.endswith(b"\n"):
            return OversizedLine(received_bytes=received - (1 if piece.endswith(b"\n") else 0))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _is_valid_id(value: Any) -> bool:
    # bool is an int subclass in Python but not an id a client means
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_request(line: bytes) -> Request:
    """Decode and validate one request line, or raise ProtocolError naming what is wrong."""
    try:
        message = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise ProtocolError("parse_error", "the request line is not valid UTF-8", {"detail": str(exc)}) from None
    except ValueError as exc:
        raise ProtocolError("parse_error", "the request line is not valid JSON", {"detail": str(exc)}) from None
    except RecursionError:  # a line of [[[[...]]]] must not stop the engine for every other client request
        raise ProtocolError("parse_error", "the request line nests JSON arrays or objects too deeply",
                            {"detail": "nested too deeply"}) from None
    if not isinstance(message, dict):
        kind = type(message).__name__
        raise ProtocolError("invalid_request", f"a request must be a JSON object, not {kind}", {"detail": kind})
    request_id = message.get("id")
    if not _is_valid_id(request_id):
        detail = "missing 'id'" if request_id is None else f"'id' must be a string or an integer, not {request_id!r}"
        raise ProtocolError("invalid_request", f"bad request: {detail}", {"detail": detail})
    method = message.get("method")
    if not isinstance(method, str) or not method:
        detail = "missing 'method'" if method is None else f"'method' must be a non-empty string, not {method!r}"
        raise ProtocolError("invalid_request", f"bad request: {detail}", {"detail": detail}, request_id)
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        detail = f"'params' must be an object, not {type(params).__name__}"
        raise ProtocolError("invalid_params", f"bad request: {detail}", {"detail": detail}, request_id)
    return Request(id=request_id, method=method, params=params)


def _jsonable(value: Any) -> Any:
    """json.dumps fallback: paths as strings, dataclasses as objects, numpy values as Python values."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _without_non_finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _without_non_finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_non_finite(v) for v in value]
    return value


def encode_message(message: dict) -> bytes:
    """One protocol line: compact UTF-8 JSON, NaN/Infinity written as null, ending in a newline."""
    try:
        text = json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_jsonable)
    except ValueError:  # a non-finite float somewhere: rare, so only then walk the message
        plain = json.loads(json.dumps(message, default=_jsonable))
        text = json.dumps(_without_non_finite(plain), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text + "\n").encode("utf-8")


def error_message(request_id: RequestId | None, code: str, message: str, data: dict | None = None) -> dict:
    return {"id": request_id, "type": "error", "error": {"code": code, "message": message, "data": data or {}}}


def result_message(request_id: RequestId, result: dict) -> dict:
    return {"id": request_id, "type": "result", "result": result}


def progress_message(request_id: RequestId, stage: str, fraction: float | None, message: str) -> dict:
    return {"id": request_id, "type": "progress", "stage": stage, "fraction": fraction, "message": message}


def event_message(event: str, **fields: Any) -> dict:
    return {"id": None, "type": "event", "event": event, **fields}


class MessageWriter:
    """Writes whole messages to the protocol stream, one thread at a time.

    When the client has gone away (the pipe is broken) writes are dropped and `on_broken` is
    called once, so jobs can be cancelled instead of failing one write at a time.
    """

    def __init__(self, stream: BinaryIO, on_broken: Callable[[], None] | None = None):
        self._stream = stream
        self._lock = threading.Lock()
        self._on_broken = on_broken
        self.broken = False

    def write(self, message: dict) -> bool:
        return self.write_encoded(encode_message(message))

    def write_encoded(self, data: bytes) -> bool:
        with self._lock:
            if self.broken:
                return False
            try:
                self._stream.write(data)
                self._stream.flush()
                return True
            except (BrokenPipeError, ConnectionError, OSError, ValueError):
                # ValueError: the stream was closed under us; OSError covers EPIPE/EINVAL on Windows
                self.broken = True
        if self._on_broken is not None:
            self._on_broken()
        return False
