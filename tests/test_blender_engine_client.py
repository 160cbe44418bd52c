"""The add-on's engine client against the real engine server (`python -m engine serve --debug`)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from sapiens_blender.engine_client import (
    ENGINE_DIED,
    EngineClient,
    EngineDied,
    EngineNotConfigured,
    PREFERENCES_HINT,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(tmp_path):
    c = EngineClient(sys.executable, engine_source=REPO_ROOT, debug=True, log_path=tmp_path / "engine.log")
    c.start(ready_timeout=60)
    yield c
    c.kill()


def test_handshake_and_progress(client):
    assert client.handshake_info["protocol"].split(".")[0] == "1"
    job = client.submit("debug.sleep", {"steps": 4, "interval": 0.02})
    assert job.wait(30)
    assert job.state == "done" and job.result == {"steps_done": 4}
    assert job.fraction == 1.0 and job.stage == "sleep"
    assert client.alive


def test_engine_error_is_reported_not_fatal(client):
    job = client.submit("debug.sleep", {"steps": 3, "interval": 0.01, "fail_at": 1, "fail_with": "bad_image"})
    assert job.wait(30)
    assert job.state == "error" and job.error["code"] == "bad_image" and job.error_message
    assert client.call("ping", {"x": 1}, timeout=10)["echo"] == {"x": 1}


def test_large_response_arrives_whole(client):
    import hashlib

    result = client.call("debug.echo", {"payload": [1, 2], "size_bytes": 5_000_000}, timeout=60)
    assert len(result["blob"]) == 5_000_000
    assert hashlib.sha256(result["blob"].encode()).hexdigest() == result["sha256"]


def test_cancel_mid_job(client):
    job = client.submit("debug.sleep", {"steps": 200, "interval": 0.05})
    deadline = time.monotonic() + 20
    while job.fraction == 0.0 and time.monotonic() < deadline:
        time.sleep(0.02)
    client.cancel(job)
    assert job.wait(20)
    assert job.cancelled
    assert client.call("ping", timeout=10)["pong"] is True


def test_killed_engine_fails_pending_jobs_and_refuses_new_ones(client):
    job = client.submit("debug.sleep", {"steps": 200, "interval": 0.05})
    os.kill(client.pid, signal.SIGKILL)
    assert job.wait(20)
    assert job.state == "error" and job.error["code"] == ENGINE_DIED
    assert "restarted on the next run" in job.error_message
    assert not client.alive
    with pytest.raises(EngineDied):
        client.submit("ping")


def test_missing_environment_points_at_preferences(tmp_path):
    for python in (None, "", tmp_path / "nope" / "bin" / "python", tmp_path):
        with pytest.raises(EngineNotConfigured, match="Preferences"):
            EngineClient(python)
    assert "Sapiens" in PREFERENCES_HINT


def test_engine_that_exits_at_start_is_explained(tmp_path):
    # an interpreter without the engine installed (the base Python under the venv, since the
    # venv has the engine installed editable): `-m engine` fails before `ready`
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    if not base_python.exists() or sys.base_prefix == sys.prefix:
        pytest.skip("needs a virtual environment whose base interpreter lacks the engine")
    c = EngineClient(str(base_python), env={"PYTHONPATH": str(tmp_path)}, debug=True)
    c.cwd = tmp_path
    from sapiens_blender.engine_client import EngineStartError

    with pytest.raises(EngineStartError, match="exited with code"):
        c.start(ready_timeout=30)
