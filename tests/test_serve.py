"""`sapiens-engine serve` driven as a real subprocess, the way the Blender add-on drives it.

Every stdout line the server writes is checked to be a protocol message (the reader thread
records anything else as a violation), so each test also checks that stdout stays clean.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from engine.protocol import (
    OversizedLine,
    ProtocolError,
    encode_message,
    parse_request,
    read_request_line,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 60.0  # generous: the CI machine is shared; nothing here is a timing assertion
FINAL_TYPES = ("result", "error")


class ServeClient:
    """A minimal protocol client: one reader thread, messages kept per request id."""

    def __init__(self, *args: str, env: dict | None = None):
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", *args],
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file, env=env,
        )
        self.messages: queue.Queue[dict] = queue.Queue()
        self.by_id: dict = {}
        self.order: list[dict] = []
        self.violations: list[bytes] = []
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ready = self.next_message()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
                assert isinstance(message, dict) and "id" in message and message.get("type") in (
                    "progress", "result", "error", "event")
            except (ValueError, AssertionError):
                self.violations.append(line)
                continue
            self.messages.put(message)

    def next_message(self, timeout: float = WAIT_S) -> dict:
        message = self.messages.get(timeout=timeout)
        self.order.append(message)
        self.by_id.setdefault(message["id"], []).append(message)
        return message

    def send_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, method: str, params: dict | None = None, request_id=None):
        if request_id is None:
            self._next_id += 1
            request_id = f"r{self._next_id}"
        request = {"id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        self.send_raw(json.dumps(request).encode() + b"\n")
        return request_id

    def final(self, request_id, timeout: float = WAIT_S) -> dict:
        """Wait for the request's result or error (collecting everything that arrives meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.by_id.get(request_id, []):
                if message["type"] in FINAL_TYPES:
                    return message
            self.next_message(timeout=max(0.1, deadline - time.monotonic()))

    def call(self, method: str, params: dict | None = None, timeout: float = WAIT_S) -> dict:
        return self.final(self.send(method, params), timeout=timeout)

    def wait_progress(self, request_id, count: int = 1) -> list[dict]:
        while len(self.progress(request_id)) < count:
            self.next_message()
        return self.progress(request_id)

    def progress(self, request_id) -> list[dict]:
        return [m for m in self.by_id.get(request_id, []) if m["type"] == "progress"]

    def stderr_text(self) -> str:
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode("utf-8", "replace")

    def assert_alive(self) -> None:
        reply = self.call("ping", {"check": 1})
        assert reply == {"id": reply["id"], "type": "result", "result": {"pong": True, "echo": {"check": 1}}}

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=WAIT_S)
        assert not self.violations, f"non-protocol lines on stdout: {self.violations[:3]}"
        return self.proc.returncode


@pytest.fixture
def serve():
    clients: list[ServeClient] = []

    def start(*args: str) -> ServeClient:
        client = ServeClient(*args)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()


@pytest.fixture
def debug_server(serve) -> ServeClient:
    return serve("--debug", "--jobs", "4")


def error_code(message: dict) -> str:
    assert message["type"] == "error", message
    return message["error"]["code"]


# --- startup and handshake -----------------------------------------------------------------------

def test_ready_event_then_handshake_reports_versions(serve):
    client = serve()
    assert client.ready["type"] == "event" and client.ready["event"] == "ready"
    assert client.ready["id"] is None
    assert client.ready["pid"] == client.proc.pid
    assert client.ready["protocol"] == "1.4" and client.ready["debug"] is False
    # a client of protocol 1.0 (the first release) is still served
    reply = client.call("handshake", {"client": "pytest", "protocol": "1.0"})
    result = reply["result"]
    assert result["protocol"] == "1.4"
    assert result["python"] == ".".join(map(str, sys.version_info[:3]))
    assert result["pid"] == client.proc.pid
    import engine

    assert result["engine_version"] == engine.__version__
    assert result["torch"] is None or result["torch"].split("+")[0][0].isdigit()


def test_handshake_refuses_another_major_and_keeps_serving(serve):
    client = serve()
    reply = client.call("handshake", {"client": "future", "protocol": "2.3"})
    assert error_code(reply) == "incompatible_protocol"
    assert reply["error"]["data"] == {"server_protocol": "1.4", "client_protocol": "2.3"}
    assert "2.3" in reply["error"]["message"]
    assert error_code(client.call("handshake", {"client": "no version"})) == "invalid_params"
    # another minor of the same major is accepted
    assert client.call("handshake", {"protocol": "1.7"})["type"] == "result"
    client.assert_alive()


def test_serving_does_not_import_torch(tmp_path):
    # the start-to-ready target (< 2 s) depends on the serve path never importing torch
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "engine", "serve"],
        input=b'{"id": 1, "method": "handshake", "params": {"protocol": "1.0"}}\n',
        cwd=REPO_ROOT, capture_output=True, timeout=WAIT_S,
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.decode().splitlines() if "|" in line}
    assert "engine.serve" in imported
    assert not {name for name in imported if name.split(".")[0] in ("torch", "numpy")}


# --- bad input ---------------------------------------------------------------------------------

BAD_LINES = [
    (b"this is not json", "parse_error", None),
    (b"\xff\xfe{}", "parse_error", None),
    (b'{"id": 1, "method": "ping", "params": {"x": NaN}}', "parse_error", None),
    (b"[1, 2, 3]", "invalid_request", None),
    (b'"just a string"', "invalid_request", None),
    (b'{"method": "ping"}', "invalid_request", None),
    (b'{"id": null, "method": "ping"}', "invalid_request", None),
    (b'{"id": 1.5, "method": "ping"}', "invalid_request", None),
    (b'{"id": true, "method": "ping"}', "invalid_request", None),
    (b'{"id": "no-method"}', "invalid_request", "no-method"),
    (b'{"id": 7, "method": 42}', "invalid_request", 7),
    (b'{"id": "p", "method": "ping", "params": [1]}', "invalid_params", "p"),
    (b'{"id": "u", "method": "no.such.method"}', "unknown_method", "u"),
    (b'{"id": "d", "method": "debug.sleep"}', "unknown_method", "d"),  # debug methods need --debug
    (b'{"id": "b", "method": "build", "params": {"out_dir": "x"}}', "invalid_params", "b"),
    (b'{"id": "c", "method": "cancel", "params": {}}', "invalid_params", "c"),
]


def test_malformed_requests_get_errors_and_the_server_keeps_serving(serve):
    client = serve()
    for line, code, request_id in BAD_LINES:
        client.send_raw(line + b"\n")
        reply = client.next_message()
        assert reply["id"] == request_id, (line, reply)
        assert error_code(reply) == code, (line, reply)
        assert reply["error"]["message"], line
        assert isinstance(reply["error"]["data"], dict)
        client.assert_alive()
    unknown = [m for m in client.order if m["type"] == "error" and m["error"]["code"] == "unknown_method"]
    assert "ping" in unknown[0]["error"]["data"]["methods"]
    assert "--debug" in unknown[1]["error"]["message"] and "debug.sleep" not in unknown[1]["error"]["data"]["methods"]
    assert client.close() == 0


def test_oversized_line_is_rejected_without_breaking_the_stream(serve):
    client = serve("--max-line-bytes", "1024")
    client.send_raw(b'{"id": "big", "method": "ping", "params": {"x": "' + b"y" * (5 << 20) + b'"}}\n')
    reply = client.next_message()
    assert reply["id"] is None and error_code(reply) == "request_too_large"
    assert reply["error"]["data"]["limit_bytes"] == 1024
    assert reply["error"]["data"]["received_bytes"] >= 5 << 20
    client.assert_alive()
    # a line of exactly the limit is still a request
    head = b'{"id": "edge", "method": "ping", "params": {"x": "'
    tail = b'"}}'
    client.send_raw(head + b"z" * (1024 - len(head) - len(tail)) + tail + b"\n")
    assert client.final("edge")["type"] == "result"
    client.send_raw(head + b"z" * (1025 - len(head) - len(tail)) + tail + b"\n")
    assert error_code(client.next_message()) == "request_too_large"
    client.assert_alive()


def test_duplicate_id_of_a_running_job_is_refused(debug_server):
    client = debug_server
    client.send("debug.sleep", {"steps": 200, "interval": 0.01}, request_id="same")
    client.wait_progress("same")
    client.send("debug.sleep", {"steps": 1}, request_id="same")
    duplicate = client.final("same")  # the running job needs 2 s: this is the duplicate's answer
    assert error_code(duplicate) == "duplicate_id"
    client.by_id["same"].remove(duplicate)
    assert client.final("same")["result"] == {"steps_done": 200}
    fractions = [m["fraction"] for m in client.progress("same")]  # the running job was not disturbed
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


# --- jobs ----------------------------------------------------------------------------------------

def test_concurrent_jobs_interleave_and_are_tagged_by_id(debug_server):
    client = debug_server
    steps = {"a": 12, "b": 8, "c": 10, 99: 6}
    for request_id, n in steps.items():
        client.send("debug.sleep", {"steps": n, "interval": 0.06, "stage": f"stage-{request_id}"},
                    request_id=request_id)
    for request_id, n in steps.items():
        assert client.final(request_id)["result"] == {"steps_done": n}
    for request_id, n in steps.items():
        progress = client.progress(request_id)
        assert {m["stage"] for m in progress} == {f"stage-{request_id}"}
        fractions = [m["fraction"] for m in progress]
        assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
        assert len(progress) == n + 1  # steps 60 ms apart: slower than progress coalescing
        # the final message comes after every progress message of its request
        positions = [i for i, m in enumerate(client.order) if m["id"] == request_id]
        assert client.order[positions[-1]]["type"] == "result"
    first_final = next(i for i, m in enumerate(client.order) if m["type"] == "result")
    ids_before = {m["id"] for m in client.order[:first_final] if m["type"] == "progress"}
    assert ids_before == set(steps), "jobs did not run concurrently"


def test_queued_job_waits_and_can_be_cancelled_in_the_queue(serve):
    client = serve("--debug", "--jobs", "1")
    running = client.send("debug.sleep", {"steps": 200, "interval": 0.01})
    client.wait_progress(running)
    queued = client.send("debug.sleep", {"steps": 3})
    jobs = {job["id"]: job for job in client.call("jobs")["result"]["jobs"]}
    assert jobs[running]["state"] == "running" and jobs[queued]["state"] == "queued"
    assert client.call("cancel", {"target": queued})["result"] == {"target": queued, "cancelled": True}
    assert error_code(client.final(queued)) == "cancelled"
    assert client.progress(queued) == []
    assert client.final(running)["result"] == {"steps_done": 200}


def test_cancel_stops_a_running_job(debug_server):
    client = debug_server
    job = client.send("debug.sleep", {"steps": 5000, "interval": 0.01})
    client.wait_progress(job, 3)
    reply = client.call("cancel", {"target": job})
    assert reply["result"] == {"target": job, "cancelled": True}
    final = client.final(job)
    assert error_code(final) == "cancelled"
    assert len(client.progress(job)) < 5000
    assert client.call("cancel", {"target": job})["result"]["cancelled"] is False
    assert client.call("cancel", {"target": "never-sent"})["result"] == {
        "target": "never-sent", "cancelled": False, "reason": "not running"}
    assert client.call("jobs")["result"] == {"jobs": []}
    client.assert_alive()


def test_large_response_arrives_intact(debug_server):
    client = debug_server
    size = 20 << 20
    reply = client.call("debug.echo", {"size_bytes": size, "payload": {"tag": "ü-✓", "n": [1, 2]}})
    result = reply["result"]
    assert len(result["blob"]) == size
    assert hashlib.sha256(result["blob"].encode("ascii")).hexdigest() == result["sha256"]
    assert result["payload"] == {"tag": "ü-✓", "n": [1, 2]}
    client.assert_alive()


@pytest.mark.parametrize("failure", ["bad_image", "bad_bundle", "engine_error"])
def test_engine_errors_come_back_with_their_code(debug_server, failure):
    client = debug_server
    reply = client.call("debug.sleep", {"steps": 4, "interval": 0.06, "fail_at": 2, "fail_with": failure})
    assert error_code(reply) == failure
    assert "step 2" in reply["error"]["message"]
    assert [m["fraction"] for m in client.progress(reply["id"])] == [0.0, 0.25, 0.5]
    client.assert_alive()


def test_unexpected_exception_is_an_internal_error_with_traceback(debug_server):
    client = debug_server
    reply = client.call("debug.sleep", {"steps": 2, "interval": 0.0, "fail_at": 1, "fail_with": "internal"})
    assert error_code(reply) == "internal"
    data = reply["error"]["data"]
    assert data["exception"] == "RuntimeError"
    assert "Traceback" in data["traceback"] and "failed on purpose" in data["traceback"]
    client.assert_alive()
    assert "failed on purpose" in client.stderr_text()


def test_bad_job_params_are_invalid_params(debug_server):
    client = debug_server
    assert error_code(client.call("debug.sleep", {"steps": -1})) == "invalid_params"
    assert error_code(client.call("debug.sleep", {"bogus": 1})) == "invalid_params"
    assert error_code(client.call("predict", {"photos": [], "out_dir": "o"})) == "invalid_params"
    assert error_code(client.call("animate", {"frames": ["a.png"], "out_dir": "o"})) == "invalid_params"
    client.assert_alive()


def test_capabilities_lists_devices_methods_and_checkpoints(debug_server, tmp_path):
    client = debug_server
    planted = tmp_path / "pose" / "sapiens2_0.4b_pose.safetensors"
    planted.parent.mkdir()
    planted.write_bytes(b"x" * 123)
    reply = client.call("capabilities", {"checkpoints_root": str(tmp_path)})
    result = reply["result"]
    assert result["devices"][0]["type"] == "cpu"
    assert result["default_device"] in {d["type"] for d in result["devices"]}
    for method in ("handshake", "ping", "cancel", "shutdown", "predict", "build", "avatar", "animate", "debug.sleep"):
        assert method in result["methods"]
    # the options come from the declaration (engine/options.py), as the add-on's engine_options.json
    from engine.options import export

    assert result["options"] == json.loads(json.dumps(export()))
    rows = {row["name"]: row for row in result["options"]["options"]}
    assert rows["max_faces"]["label"] == "Max Faces" and "avatar" in rows["max_faces"]["jobs"]
    assert result["methods"]["ping"] is True
    assert result["checkpoints_error"] is None and result["checkpoints_root"] == str(tmp_path)
    present = [row for row in result["checkpoints"] if row["present"]]
    assert [{k: row[k] for k in ("task", "size", "path", "present", "bytes", "published")} for row in present] == [
        {"task": "pose", "size": "0.4b", "path": str(planted), "present": True, "bytes": 123, "published": True}]
    # 123 bytes of "x" are no checkpoint: the listing says so where it checks headers
    assert present[0].get("installed", False) is False
    assert [m["stage"] for m in client.progress(reply["id"])][0] == "devices"
    assert error_code(client.call("capabilities", {"checkpoints_root": 5})) == "invalid_params"


def test_stdout_stays_protocol_only_when_a_job_prints(debug_server):
    client = debug_server
    reply = client.call("debug.sleep", {"steps": 3, "interval": 0.0, "print": True})
    assert reply["result"] == {"steps_done": 3}
    assert client.close() == 0  # close() fails on any non-protocol stdout line
    stderr = client.stderr_text()
    assert "stray print at step 3" in stderr and "stray fd-1 write at step 3" in stderr


# --- ending --------------------------------------------------------------------------------------

def test_shutdown_cancels_running_jobs_and_exits_zero(debug_server):
    client = debug_server
    job = client.send("debug.sleep", {"steps": 5000, "interval": 0.01})
    client.wait_progress(job)
    shutdown = client.send("shutdown")
    reply = client.final(shutdown)
    assert reply["result"] == {"shutdown": True, "unfinished": []}
    assert error_code(client.final(job)) == "cancelled"
    assert client.order.index(client.final(job)) < client.order.index(reply)
    assert client.proc.wait(timeout=WAIT_S) == 0


def test_shutdown_can_let_jobs_finish(debug_server):
    client = debug_server
    job = client.send("debug.sleep", {"steps": 5, "interval": 0.02})
    reply = client.final(client.send("shutdown", {"cancel_jobs": False}))
    assert reply["result"]["unfinished"] == []
    assert client.final(job)["result"] == {"steps_done": 5}
    assert client.proc.wait(timeout=WAIT_S) == 0


def test_end_of_input_finishes_jobs_then_exits_zero(debug_server):
    client = debug_server
    job = client.send("debug.sleep", {"steps": 5, "interval": 0.02})
    client.proc.stdin.close()
    assert client.final(job)["result"] == {"steps_done": 5}
    assert client.proc.wait(timeout=WAIT_S) == 0
    assert client.close() == 0


def test_client_closing_stdout_cancels_jobs_and_ends_the_engine():
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--debug"], cwd=REPO_ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b'{"id": 1, "method": "debug.sleep", "params": {"steps": 100000, "interval": 0.001}}\n')
        proc.stdin.flush()
        while json.loads(proc.stdout.readline()).get("type") != "progress":
            pass
        proc.stdout.close()  # the client went away without closing stdin
        assert proc.wait(timeout=WAIT_S) != 0
        assert b"cancelling all jobs" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
        proc.stderr.close()


# --- framing, in process -----------------------------------------------------------------------

def _processes_with(mark: str) -> dict:
    """pid -> command line of every process whose environment holds `mark` (inherited from the
    engine: the engine's own children, Ray's processes and theirs, wherever they were reparented)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark.encode() in (entry / "environ").read_bytes():
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the run's processes by their /proc environment")
def test_a_killed_engine_leaves_no_ray_process_behind(tmp_path):
    """A batch through the protocol starts a local Ray in the engine; when the engine is killed (as
    a client does when its shutdown takes too long) no process of that Ray may outlive it. Ray's
    DashboardAgent and RuntimeEnvAgent used to: they saw their raylet die and hung on their way out."""
    import os
    import shutil
    import uuid

    pytest.importorskip("ray.data")
    from engine.paths import asset

    mark = f"sapiens-test-ray-run-{uuid.uuid4().hex}"
    client = ServeClient(env={**os.environ, "SAPIENS_TEST_RUN_MARK": mark})
    try:
        shutil.copytree(asset("sample"), tmp_path / "bundles" / "b0")
        reply = client.call("batch", {"inputs": [str(tmp_path / "bundles")], "out_dir": str(tmp_path / "out"),
                                      "steps": ["build"], "cpus": 1, "texture_size": 256, "formats": ["glb"]},
                            timeout=600)
        assert reply["type"] == "result" and reply["result"]["counts"]["done"] == 1, reply
        started = _processes_with(mark)
        assert any("raylet" in command for command in started.values()), started   # a Ray of this run ran
        client.proc.kill()
        client.proc.wait()
        deadline = time.monotonic() + WAIT_S
        while (left := _processes_with(mark)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"processes of the killed engine's Ray still running: {left}"
    finally:
        client.close()
        for pid in _processes_with(mark):   # this test's own, found by its mark
            try:
                os.kill(pid, 9)
            except OSError:
                pass


def test_read_request_line_bounds_memory_and_resynchronises():
    stream = io.BytesIO(b"short\n" + b"x" * 100 + b"\nnext\r\nlast-without-newline")
    assert read_request_line(stream, 10) == b"short"
    assert read_request_line(stream, 10) == OversizedLine(received_bytes=100)
    assert read_request_line(stream, 10) == b"next"
    assert read_request_line(stream, 100) == b"last-without-newline"
    assert read_request_line(stream, 10) is None


def test_parse_request_and_encode_message():
    request = parse_request(b'{"id": 3, "method": "build", "params": {"a": [1]}}')
    assert (request.id, request.method, request.params) == (3, "build", {"a": [1]})
    assert parse_request(b'{"id": "x", "method": "ping", "params": null}').params == {}
    with pytest.raises(ProtocolError) as info:
        parse_request(b'{"id": "x", "method": ""}')
    assert info.value.code == "invalid_request" and info.value.request_id == "x"
    line = encode_message({"id": 1, "value": float("nan"), "path": Path("/a/b"), "nested": [float("inf")]})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"id": 1, "value": None, "path": "/a/b", "nested": [None]}
    assert json.loads(encode_message({"text": "line\nbreak ü"})) == {"text": "line\nbreak ü"}

    @dataclasses.dataclass
    class Entry:
        task: str
        path: Path

    assert json.loads(encode_message({"checkpoints": [Entry("pose", Path("/c/p.safetensors"))]})) == {
        "checkpoints": [{"task": "pose", "path": "/c/p.safetensors"}]}


def test_missing_implementation_is_not_available():
    from engine.serve.methods import import_module_for

    with pytest.raises(ProtocolError) as info:
        import_module_for("predict", "engine.no_such_module_here")
    assert info.value.code == "not_available" and info.value.data["method"] == "predict"


# issue 11: each of these was answered `internal`, or accepted; each is `invalid_params` naming it
BAD_PARAMS = [
    ("predict", "batch_size", "four"),
    ("predict", "bbox", "a,b"),
    ("predict", "bbox", [1, 2]),
    ("predict", "bbox", [0, 0, -1, -1]),
    ("predict", "max_memory", "lots"),
    ("predict", "checkpoints", 12),
    ("avatar", "rig", "../keypoints308"),
    ("build", "rig", "../keypoints308"),
    ("predict", "all_people", "yes"),
    ("predict", "tasks", "seg"),
    ("build", "watertight", "false"),
    ("predict", "batch_size", -3),
    ("avatar", "batch_size", -3),
    ("animate", "rig", "/etc/hostname"),
    ("predict", "progress", None),
    ("predict", "on_error", "x"),
]


def _required(job: str) -> dict:
    """A well-typed value for each required parameter of a job, from the option table."""
    from engine.options import options_for

    sample = {"path": "x", "paths": ["x.png"]}
    return {o.name: sample[o.kind] for o in options_for(job) if o.required and o.name != "out_dir"}


def test_ill_typed_parameters_are_invalid_params_naming_them_before_any_work(serve, tmp_path):
    client = serve()
    out = tmp_path / "out"
    for method, name, value in BAD_PARAMS:
        reply = client.call(method, {**_required(method), "out_dir": str(out), name: value})
        assert error_code(reply) == "invalid_params", (method, name, reply)
        assert reply["error"]["data"]["param"] == name, reply
        assert f"'{name}'" in reply["error"]["message"]
        # answered at once, from the reading thread: no job ran, so no progress was sent
        assert client.progress(reply["id"]) == []
    assert not out.exists()
    client.assert_alive()


def test_job_methods_take_the_option_names_and_the_old_ones(serve, tmp_path):
    from engine.jobs import JOBS
    from engine.options import options_for
    from engine.serve.methods import checked_options

    for job in JOBS:
        names = {o.name for o in options_for(job)}
        assert set(checked_options(job, {**_required(job), "out_dir": "o"})) == names
    # protocol 1.0 spellings keep working
    assert checked_options("build", {"bundle_dir": "b", "out_dir": "o", "target_faces": 5000})["max_faces"] == 5000
    assert checked_options("animate", {"frames": "f", "out_dir": "o", "convention": "mixamo"})["rig"] == "mixamo"


def test_shutdown_timeout_abandons_a_stuck_job_and_still_exits_zero(debug_server):
    client = debug_server
    # one 30 s step: cancel cannot reach it before the shutdown timeout
    job = client.send("debug.sleep", {"steps": 1, "interval": 30})
    client.wait_progress(job)
    reply = client.final(client.send("shutdown", {"timeout": 0.2}))
    assert reply["result"] == {"shutdown": True, "unfinished": [job]}
    assert client.proc.wait(timeout=WAIT_S) == 0
    assert "abandoning unfinished job" in client.stderr_text()


# --- real engine jobs through the server ------------------------------------------------------

def test_build_of_a_missing_bundle_is_a_bad_bundle_error(serve, tmp_path):
    client = serve()
    out_dir = tmp_path / "avatar"
    reply = client.call("build", {"bundle_dir": str(tmp_path / "no_such_bundle"), "out_dir": str(out_dir)})
    assert error_code(reply) == "bad_bundle"
    assert "no_such_bundle" in reply["error"]["message"]
    assert not out_dir.exists()
    reply = client.call("build", {"bundle_dir": str(tmp_path), "out_dir": str(out_dir), "detial": "typo"})
    assert error_code(reply) == "invalid_params" and "detial" in reply["error"]["message"]
    assert reply["error"]["data"]["param"] == "detial"
    client.assert_alive()


def test_predict_through_the_server_reports_skipped_photos(serve, tmp_path):
    import numpy as np
    from PIL import Image

    from engine.models.testing import write_tiny_checkpoint

    root = tmp_path / "checkpoints"
    (root / "seg").mkdir(parents=True)
    write_tiny_checkpoint(root / "seg" / "sapiens2_0.4b_seg.safetensors", "seg", img_size=(256, 192))
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 192, 3), dtype=np.uint8)).save(photo)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    client = serve()
    common = {"out_dir": str(tmp_path / "bundles"), "tasks": ["seg"], "checkpoints": str(root), "device": "cpu"}
    reply = client.call("predict", {"photos": [str(photo), str(broken)], **common}, timeout=300)
    result = reply["result"]
    assert result["bundles"] == [str(tmp_path / "bundles" / "photo")]
    assert (tmp_path / "bundles" / "photo" / "bundle.json").is_file()
    assert result["skipped"] == [{"photo": str(broken), "code": "bad_image", "message": result["skipped"][0]["message"]}]
    assert "broken.png" in result["skipped"][0]["message"]
    assert "predict" in {m["stage"] for m in client.progress(reply["id"])}
    # nothing usable at all: the request itself fails with the photo's error
    reply = client.call("predict", {"photos": [str(broken)], **common}, timeout=300)
    assert error_code(reply) == "bad_image"
    assert [row["photo"] for row in reply["error"]["data"]["skipped"]] == [str(broken)]
    assert error_code(client.call("predict", {"photos": [str(photo)], **common, "on_error": "x"})) == "invalid_params"


def test_animate_an_empty_frames_directory_is_a_clear_error(serve, tmp_path):
    client = serve()
    (tmp_path / "frames").mkdir()
    reply = client.call("animate", {"frames": str(tmp_path / "frames"), "out_dir": str(tmp_path / "anim")})
    assert error_code(reply) == "bad_image" and "frames" in reply["error"]["message"]
    assert not (tmp_path / "anim").exists()


# --- end to end: the bundled sample through the server ------------------------------------------

def _bundle_from_shared_sample(person: Path, out_dir: Path) -> Path:
    """A predictions bundle holding a shared synthetic person's exact maps (a perfect prediction)."""
    import numpy as np
    from PIL import Image

    from engine.bundle import Bundle, write_bundle

    maps = np.load(person / "gt_maps.npz")
    keypoints = np.asarray(json.loads((person / "keypoints.json").read_text())["keypoints"], np.float32)
    bundle = Bundle(
        image=np.asarray(Image.open(person / "image.png").convert("RGB")), mask=maps["mask"], keypoints=keypoints,
        seg=maps["seg"], normal=maps["normal"].astype(np.float32), pointmap=maps["pointmap"].astype(np.float32),
        albedo=maps["albedo"].astype(np.float32), K=maps["K"],
    )
    return write_bundle(bundle, out_dir)


@pytest.fixture(scope="module")
def sample_bundle(request, tmp_path_factory) -> Path:
    """assets/sample (the bundled sample); until it is in the repo, the same kind of bundle made
    from ../shared/samples/person_101."""
    bundled = REPO_ROOT / "assets" / "sample"
    if (bundled / "bundle.json").is_file():
        return bundled
    shared = request.getfixturevalue("shared_samples")
    return _bundle_from_shared_sample(shared / "person_101", tmp_path_factory.mktemp("sample") / "bundle")


def test_build_the_sample_through_the_server_with_progress(serve, sample_bundle, tmp_path):
    client = serve()
    out_dir = tmp_path / "avatar"
    reply = client.call("build", {"bundle_dir": str(sample_bundle), "out_dir": str(out_dir), "rig": "rigify",
                                  "resolution": "quarter", "texture_size": 256}, timeout=300)
    assert reply["type"] == "result", reply
    result = reply["result"]
    assert result["avatar_dir"] == str(out_dir)
    assert {"avatar.glb", "avatar.json", "skeleton.json", "textures/albedo.png"} <= set(result["files"])
    assert sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()) == result["files"]
    manifest = json.loads((out_dir / "avatar.json").read_text())
    assert manifest["format"] == "sapiens-avatar" and manifest["version"].split(".")[0] == "1"
    assert (out_dir / "avatar.glb").read_bytes()[:4] == b"glTF"
    progress = client.progress(reply["id"])
    stages = list(dict.fromkeys(m["stage"] for m in progress))
    assert stages[0] == "read" and {"surface", "textures", "rig", "write"} <= set(stages), stages
    assert progress[-1] == {"id": reply["id"], "type": "progress", "stage": "write", "fraction": 1.0,
                            "message": progress[-1]["message"]}
    assert all(0.0 <= m["fraction"] <= 1.0 for m in progress if m["fraction"] is not None)
    assert [p.name for p in tmp_path.iterdir()] == ["avatar"]  # no temporary directories left


def test_cancel_a_build_leaves_nothing_behind(serve, sample_bundle, tmp_path):
    client = serve()
    out_dir = tmp_path / "avatar"
    job = client.send("build", {"bundle_dir": str(sample_bundle), "out_dir": str(out_dir),
                                "resolution": "quarter", "texture_size": 256})
    surface_started = False
    while not surface_started:
        message = client.next_message(timeout=300)
        assert message["type"] == "progress", message  # the build must not end before the cancel
        surface_started = message["stage"] == "surface"
    assert client.call("cancel", {"target": job})["result"]["cancelled"] is True
    assert error_code(client.final(job, timeout=300)) == "cancelled"
    assert list(tmp_path.iterdir()) == []
    client.assert_alive()


def test_animate_frames_through_the_server(serve, sample_bundle, tmp_path):
    import shutil

    frames = tmp_path / "frames"
    for index in range(3):
        shutil.copytree(sample_bundle, frames / f"frame_{index:03d}")
    client = serve()
    reply = client.call("animate", {"frames": str(frames), "out_dir": str(tmp_path / "anim"), "fps": 24},
                        timeout=300)
    result = reply["result"]
    assert result["output"] == str(tmp_path / "anim")
    assert {"animation.glb", "skeleton.json", "frames/000002.json"} <= set(result["files"])
    assert client.progress(reply["id"])[-1]["fraction"] == 1.0
