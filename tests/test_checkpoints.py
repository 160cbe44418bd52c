"""Checkpoint layout, listing, and the real huggingface_hub download code against a local hub.

The server below answers the way the hub's resolve endpoint does for an LFS file: HEAD with
X-Repo-Commit, ETag / X-Linked-Etag (the sha256), X-Linked-Size and Content-Length; GET with
Range support (206 + Content-Range). HF_ENDPOINT points huggingface_hub at it. No mocks.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from engine import checkpoints as ck
from engine.errors import CheckpointError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LocalHub:
    def __init__(self, files: dict[str, bytes]):
        self.files = files               # "repo/filename" -> content
        self.requests: list[tuple[str, str, str | None]] = []
        self.cut_first_get_at: int | None = None
        self.corrupt = False
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _lookup(self):
                # /{org}/{name}/resolve/{revision}/{filename}
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) != 5 or parts[2] != "resolve":
                    return None
                return hub.files.get(f"{parts[0]}/{parts[1]}/{parts[4]}")

            def _headers(self, data: bytes, status: int, start: int = 0):
                sha = hashlib.sha256(data).hexdigest()
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()

            def _missing(self):
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Error-Message", "Entry not found")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self):
                hub.requests.append(("HEAD", self.path, None))
                data = self._lookup()
                if data is None:
                    return self._missing()
                self._headers(data, 200)

            def do_GET(self):
                rng = self.headers.get("Range")
                hub.requests.append(("GET", self.path, rng))
                data = self._lookup()
                if data is None:
                    return self._missing()
                if hub.corrupt:
                    data = data[:-1] + bytes([data[-1] ^ 1])
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                self._headers(data, 206 if rng else 200, start)
                body = data[start:]
                if hub.cut_first_get_at is not None:
                    cut, hub.cut_first_get_at = hub.cut_first_get_at, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # the connection drops mid-file
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def payload():
    return np.random.default_rng(0).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()


@pytest.fixture
def hub(payload, monkeypatch):
    files = {"facebook/sapiens2-pose-0.4b/sapiens2_0.4b_pose.safetensors": payload}
    with LocalHub(files) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "5")
        yield server


def test_download_lands_in_the_reference_layout_with_progress(tmp_path, hub, payload):
    seen = []
    path = ck.download_checkpoint("pose", "0.4b", tmp_path, progress=lambda s, f, m: seen.append((s, f)))
    assert path == tmp_path / "pose" / "sapiens2_0.4b_pose.safetensors"
    assert path.read_bytes() == payload
    assert not path.with_name(path.name + ".part").exists()
    assert ck.sha256_file(path) == hashlib.sha256(payload).hexdigest()
    fractions = [f for s, f in seen if s == "download"]
    assert fractions and fractions[-1] == pytest.approx(1.0) and fractions == sorted(fractions)
    # a second call finds the verified file and downloads nothing
    gets = sum(1 for m, *_ in hub.requests if m == "GET")
    ck.download_checkpoint("pose", "0.4b", tmp_path)
    assert sum(1 for m, *_ in hub.requests if m == "GET") == gets


def test_download_resumes_a_partial_file(tmp_path, hub, payload):
    part = tmp_path / "pose" / "sapiens2_0.4b_pose.safetensors.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(payload[:1_234_567])
    path = ck.download_checkpoint("pose", "0.4b", tmp_path)
    assert path.read_bytes() == payload
    ranges = [r for m, _, r in hub.requests if m == "GET"]
    assert ranges == ["bytes=1234567-"]


def test_download_survives_a_dropped_connection(tmp_path, hub):
    # huggingface_hub streams in 10 MB chunks, so the drop must come after the first one
    big = np.random.default_rng(1).integers(0, 256, 24_000_000, dtype=np.uint8).tobytes()
    hub.files["facebook/sapiens2-seg-0.8b/sapiens2_0.8b_seg.safetensors"] = big
    hub.cut_first_get_at = 15_000_000
    path = ck.download_checkpoint("seg", "0.8b", tmp_path)
    assert path.read_bytes() == big
    gets = [r for m, _, r in hub.requests if m == "GET"]
    assert len(gets) == 2 and gets[0] is None
    assert gets[1].startswith("bytes=") and int(gets[1][6:-1]) >= 10_000_000  # resumed, not restarted


def test_download_rejects_a_corrupted_file(tmp_path, hub):
    hub.corrupt = True
    with pytest.raises(CheckpointError, match="sha256 .* does not match"):
        ck.download_checkpoint("pose", "0.4b", tmp_path)
    assert not list((tmp_path / "pose").glob("*.safetensors*"))


def test_download_errors_are_clear(tmp_path, hub, monkeypatch):
    with pytest.raises(CheckpointError, match="sapiens2-seg-0.4b.*404"):
        ck.download_checkpoint("seg", "0.4b", tmp_path)
    with pytest.raises(CheckpointError, match="no albedo checkpoint is published"):
        ck.download_checkpoint("albedo", "0.4b", tmp_path)
    with pytest.raises(CheckpointError, match="sizes: 0.4b"):
        ck.download_checkpoint("pose", "2b", tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(CheckpointError, match="cannot reach the hub"):
        ck.download_checkpoint("pose", "0.4b", tmp_path)


def test_root_resolution_and_missing_checkpoint_message(tmp_path, monkeypatch):
    monkeypatch.delenv("SAPIENS_CHECKPOINTS", raising=False)
    monkeypatch.delenv("SAPIENS_CHECKPOINT_ROOT", raising=False)
    assert ck.checkpoints_root() == ck.DEFAULT_ROOT
    monkeypatch.setenv("SAPIENS_CHECKPOINT_ROOT", str(tmp_path / "ref"))
    assert ck.checkpoints_root() == tmp_path / "ref"
    monkeypatch.setenv("SAPIENS_CHECKPOINTS", str(tmp_path / "env"))
    assert ck.checkpoints_root() == tmp_path / "env"
    assert ck.checkpoints_root(tmp_path / "cli") == tmp_path / "cli"
    with pytest.raises(CheckpointError, match=r"sapiens-engine download --size 0.4b --tasks normal"):
        ck.find_checkpoint("normal", "0.4b", tmp_path)


def test_pickle_checkpoints_need_opt_in(tmp_path):
    pth = tmp_path / "seg" / "sapiens2_1b_seg.pth"
    pth.parent.mkdir()
    pth.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="--allow-pickle"):
        ck.find_checkpoint("seg", "1b", tmp_path)
    assert ck.find_checkpoint("seg", "1b", tmp_path, allow_pickle=True) == pth


def test_list_checkpoints(tmp_path):
    (tmp_path / "pose").mkdir()
    (tmp_path / "pose" / "sapiens2_0.8b_pose.safetensors").write_bytes(b"12345")
    rows = ck.list_checkpoints(tmp_path)
    assert len(rows) == len(ck.TASKS) * len(ck.TASK_SIZES)
    present = [r for r in rows if r.present]
    assert [(r.task, r.size, r.bytes) for r in present] == [("pose", "0.8b", 5)]
    assert not present[0].installed and "not a safetensors file" in present[0].problem


def test_models_tells_truncated_and_misplaced_checkpoints_from_installed_ones(tmp_path, capsys):
    """A file's header decides: truncated, another task's head or another size is not installed."""
    from engine.cli import main
    from engine.models.sapiens2 import ARCHS
    from engine.models.testing import write_tiny_checkpoint

    def tiny(task, path, dims=64):
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_tiny_checkpoint(path, task, img_size=(64, 48), embed_dims=dims)

    good = tiny("normal", ck.checkpoint_path(tmp_path, "normal", "0.4b"), dims=ARCHS["sapiens2_0.4b"]["embed_dims"])
    truncated = tiny("pose", ck.checkpoint_path(tmp_path, "pose", "0.4b"))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    tiny("seg", ck.checkpoint_path(tmp_path, "pointmap", "0.4b"))                   # a seg file under pointmap's name
    tiny("seg", ck.checkpoint_path(tmp_path, "seg", "1b"), dims=ARCHS["sapiens2_0.4b"]["embed_dims"])  # 0.4b as 1b
    rows = {(r.task, r.size): r for r in ck.list_checkpoints(tmp_path)}
    assert rows["normal", "0.4b"].installed and rows["normal", "0.4b"].problem is None
    assert not rows["pose", "0.4b"].installed and "truncated" in rows["pose", "0.4b"].problem
    assert "holds a seg checkpoint, not pointmap" in rows["pointmap", "0.4b"].problem
    assert "holds a 0.4b model, not 1b" in rows["seg", "1b"].problem
    assert main(["models", "--checkpoints", str(tmp_path)]) == 0
    lines = {tuple(line.split()[:2]): line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "installed" in lines["0.4b", "normal"] and str(good) not in lines["0.4b", "normal"]
    assert "unusable" in lines["0.4b", "pose"] and "truncated" in lines["0.4b", "pose"]
    assert "unusable" in lines["0.4b", "pointmap"] and "unusable" in lines["1b", "seg"]


def test_cli_download_and_models(tmp_path, hub, payload, capsys):
    import json

    from engine.cli import main

    assert main(["download", "--size", "0.4b", "--tasks", "pose", "--checkpoints", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == str(tmp_path / "pose" / "sapiens2_0.4b_pose.safetensors")
    assert "100.0%" in out.err
    assert main(["models", "--checkpoints", str(tmp_path), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    present = [(r["task"], r["size"], r["bytes"]) for r in listing["checkpoints"] if r["present"]]
    assert present == [("pose", "0.4b", len(payload))]
    assert main(["models", "--checkpoints", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    # the hub here serves random bytes: downloaded whole, but its header says it is no checkpoint
    assert "unusable" in text and "not a safetensors file" in text
    assert "sapiens-engine download --size 0.4b --tasks seg" in text
    assert main(["download", "--tasks", "seg", "--checkpoints", str(tmp_path)]) == 1
    assert "404" in capsys.readouterr().err
