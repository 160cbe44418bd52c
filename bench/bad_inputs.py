"""Every bad input a new user or a script would try, across the CLI and the stdio protocol (issue 11).

    .venv/bin/python bench/bad_inputs.py              # every case (a few minutes: some run tiny models)
    .venv/bin/python bench/bad_inputs.py --fast       # only the cases that need no model pass (seconds each)
    .venv/bin/python bench/bad_inputs.py --slow       # only the cases with a model pass or a Ray start
    .venv/bin/python bench/bad_inputs.py -k bbox      # the cases whose name contains "bbox" (-k repeats)

Each case runs in a fresh temporary workspace shared by all cases: tiny checkpoints in the released
format (random weights, so model-backed cases take seconds, not minutes), a photo, the bundled
sample as a predictions bundle, a sequence of bundle frames, an animation, and a folder of the
user's own files that no case may touch. CLI cases run `sapiens-engine ...` as a subprocess; protocol
cases drive one `sapiens-engine serve` over stdio. Each result is classified:

- handled: refused (non-zero exit, or an `error` answer that is not `internal`) with a message in
  words, no traceback, no user file touched, nothing half-written left (no output folder of a
  refused job, no hidden temporary or backup anywhere). Cases that must succeed (odd but valid
  inputs, a rerun after a kill) are handled when they succeed cleanly.
- traceback: a Python traceback reached the user (CLI output, or an `internal` protocol error).
- data lost: a file of the user's (or an input) was changed, replaced or removed.
- half-written: a refused job left an output folder or a hidden temporary behind.
- accepted: a bad input was taken as good (exit 0 / a `result`).
- no words: refused without a message a person can read.
- engine died: the `serve` process stopped (or hung) instead of answering; every later request of
  its client is lost with it.
- hung: a command still had not answered after its time limit (it was stopped).
- stdout noise: `serve` wrote a line to stdout that is not a protocol message.

tests/test_bad_inputs.py imports CASES from here and runs the fast subset.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
ENGINE = [sys.executable, "-m", "engine"]
SAMPLE_BUNDLE = REPO_ROOT / "assets" / "sample"
USER_TEXT = "my notes, not an engine output\n"
TASKS = ("pose", "seg", "normal", "pointmap", "albedo")
CLI_TIMEOUT_S = 300
SERVE_TIMEOUT_S = 120

HANDLED, TRACEBACK, DATA_LOST, HALF_WRITTEN, ACCEPTED, NO_WORDS, FAILED, DIED, HUNG, STRAY = (
    "handled", "traceback", "data lost", "half-written", "accepted", "no words", "failed", "engine died", "hung",
    "stdout noise")


# --------------------------------------------------------------------------- the workspace


class Workspace:
    """One temporary folder with the inputs every case builds on; heavy parts are made on first use."""

    def __init__(self, root: Path):
        self.root = root
        self.out = root / "out"          # each case writes under out/<case>; refused cases leave nothing
        self.user = root / "user"        # the user's own files: no case may change them
        self.inputs = root / "inputs"    # per-case bad inputs
        for d in (self.out, self.user, self.inputs):
            d.mkdir(parents=True, exist_ok=True)
        (self.user / "notes.txt").write_text(USER_TEXT)
        self._made: dict[str, Path] = {}
        self._server: Server | None = None
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SAPIENS_CHECKPOINTS": str(root / "no-checkpoints"),
                    "HOME": str(root / "home"), "XDG_CACHE_HOME": str(root / "home" / ".cache")}

    # -- inputs made on first use
    def _once(self, key: str, make: Callable[[Path], None]) -> Path:
        if key not in self._made:
            path = self.root / "made" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            make(path)
            self._made[key] = path
        return self._made[key]

    @property
    def ckpt(self) -> Path:
        def make(root: Path) -> None:
            from engine.models.testing import write_tiny_checkpoint
            for task in TASKS:
                write_tiny_checkpoint(root / task / f"sapiens2_0.4b_{task}.safetensors", task, seed=1)
        return self._once("checkpoints", make)

    @property
    def photo(self) -> Path:
        def make(path: Path) -> None:
            import numpy as np
            from PIL import Image
            path.mkdir()
            yy, xx = np.mgrid[0:320, 0:240]
            rgb = np.stack([xx, yy * 0.7, 255 - xx], axis=-1).astype(np.uint8)
            rgb[60:280, 80:160] = [200, 150, 120]
            Image.fromarray(rgb).save(path / "photo.png")
        return self._once("photo", make) / "photo.png"

    @property
    def bundle(self) -> Path:
        return self._once("bundle", lambda p: shutil.copytree(SAMPLE_BUNDLE, p))

    @property
    def frames(self) -> Path:
        def make(path: Path) -> None:
            for i in range(4):
                shutil.copytree(SAMPLE_BUNDLE, path / f"frame_{i:03d}")
        return self._once("frames", make)

    @property
    def animation(self) -> Path:
        def make(path: Path) -> None:
            proc = subprocess.run(ENGINE + ["animate", str(self.frames), "--out", str(path)], cwd=self.root,
                                  env=self.env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
            if proc.returncode:
                raise RuntimeError(f"could not make the animation the retarget cases need:\n{proc.stderr}")
        return self._once("animation", make)

    def user_folder(self, name: str) -> Path:
        """An existing folder of the user's things, where a case will put its output."""
        path = self.user / name
        path.mkdir(parents=True, exist_ok=True)
        (path / "notes.txt").write_text(USER_TEXT)
        return path

    def bad(self, name: str) -> Path:
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def server(self) -> "Server":
        if self._server is None or self._server.proc.poll() is not None:
            self._server = Server(self)
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    # -- what the classification looks at
    def snapshot(self) -> dict[str, tuple]:
        """Every file outside out/ and the made models: content hash by size, mtime and inode."""
        seen = {}
        for base in (self.user, self.inputs, self.root / "made"):
            for dirpath, dirnames, filenames in os.walk(base):
                for name in filenames:
                    p = Path(dirpath) / name
                    try:
                        st = p.lstat()
                    except OSError:
                        continue
                    seen[str(p)] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return seen

    def hidden_leftovers(self) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                if name.startswith(".") and (name.endswith((".tmp", ".old")) or ".tmp" in name):
                    found.append(str(Path(dirpath, name).relative_to(self.root)))
        return found


# --------------------------------------------------------------------------- the protocol driver


class Server:
    """One `sapiens-engine serve` over pipes; messages read on a thread into a queue."""

    def __init__(self, ws: Workspace, *args: str):
        self.stderr = open(ws.root / f"serve-{time.monotonic_ns()}.log", "wb")
        self.proc = subprocess.Popen(ENGINE + ["serve", *args], cwd=ws.root, env=ws.env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        self.messages: queue.Queue = queue.Queue()
        self.stray: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.next(lambda m: m.get("event") == "ready", 60)
        if ready is None:
            raise RuntimeError("sapiens-engine serve did not say ready in 60 s")

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:
                try:
                    self.messages.put(json.loads(line))
                except ValueError:
                    self.stray.append(line)    # a stdout line that is not a message: an engine bug
        except (ValueError, OSError):          # the case closed the pipe itself (a client that goes away)
            pass
        self.messages.put(None)

    def send(self, request: dict | bytes) -> None:
        line = request if isinstance(request, bytes) else json.dumps(request).encode()
        self.proc.stdin.write(line.rstrip(b"\n") + b"\n")
        self.proc.stdin.flush()

    def next(self, match: Callable[[dict], bool], timeout: float) -> dict | None:
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                return None
            if msg is None:
                return None
            if match(msg):
                return msg
        return None

    def final(self, req_id, timeout: float = SERVE_TIMEOUT_S, *, or_null: bool = False) -> dict | None:
        """The final message about `req_id` (with `or_null`, also one about a line whose id could not be read)."""
        ids = (req_id, None) if or_null else (req_id,)
        return self.next(lambda m: m.get("id") in ids and m.get("type") in ("result", "error"), timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"id": "bye", "method": "shutdown", "params": {"timeout": 5}})
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


# --------------------------------------------------------------------------- cases


@dataclass
class Outcome:
    refused: bool
    message: str
    traceback: bool
    detail: str = ""
    died: bool = False                   # the engine process stopped or hung instead of answering
    hung: bool = False                   # a command still running at its time limit


@dataclass
class Case:
    name: str
    via: str                                  # "cli" or "serve"
    make: Callable[[Workspace, Path], object]  # returns argv (cli) or a request / raw line (serve) or an Outcome
    expect: str = "refuse"                    # "refuse", "ok" or "any" (valid but odd: succeed or refuse in words)
    fast: bool = True                         # runs without a model pass or a Ray start (seconds at most)
    owner: str = ""                           # who fixes it when it is not handled
    check_ok: Callable[[Workspace, Path], str | None] | None = None
    least_words: int = 3                      # a refusal's message has at least this many words


CASES: list[Case] = []


def case(name: str, via: str = "cli", **kw):
    def register(make):
        CASES.append(Case(name, via, make, **kw))
        return make
    return register


def _words(message: str, least: int = 3) -> bool:
    """At least `least` words of letters: a sentence, not a bare exception name or a caret."""
    words = (w.strip("()[]{}:;,.!?'\"") for w in message.split())
    return sum(w.isalpha() and len(w) > 1 for w in words) >= least


def run_cli(ws: Workspace, argv: list[str], timeout: float = CLI_TIMEOUT_S) -> Outcome:
    try:
        proc = subprocess.run(ENGINE + [str(a) for a in argv], cwd=ws.root, env=ws.env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-300:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return Outcome(False, "", False, f"still running after {timeout:.0f} s; stderr ends: {tail!r}", hung=True)
    text = proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # the CLI's own error line (argparse's form, "sapiens-engine CMD: error: ..."), else the last line
    said = [line for line in lines if line.startswith("sapiens-engine") and ": error:" in line]
    message = said[-1] if said else (lines[-1] if lines else "")
    return Outcome(proc.returncode != 0, message, "Traceback (most recent call last)" in text, f"exit {proc.returncode}")


def ask(ws: Workspace, request: dict | bytes, req_id=None, timeout: float = SERVE_TIMEOUT_S) -> Outcome:
    server = ws.server()
    server.send(request)
    raw = isinstance(request, bytes)
    if not raw:
        req_id = request.get("id")
    msg = server.final(req_id, timeout, or_null=raw)
    if msg is None:
        return Outcome(False, "", False, "no final message (engine died or hung)", died=True)
    if msg["type"] == "result":
        return Outcome(False, "", False, "result: " + json.dumps(msg["result"])[:120])
    err = msg["error"]
    return Outcome(True, err.get("message", ""), err.get("code") == "internal", f"error {err.get('code')}")


# -- images (predict)

def _png_with_size(path: Path, width: int, height: int) -> Path:
    """A valid 1 x 1 PNG whose header claims width x height (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
                     + chunk(b"IEND", b""))
    return path


def _predict(ws, out, *photos, extra=()):
    return ["predict", *photos, "--out", out, "--checkpoints", ws.ckpt, "--tasks", "pose", *extra]


@case("photo: a text file named .jpg", owner="predict")
def _(ws, out):
    (p := ws.bad("notes.jpg")).write_text("shopping list")
    return _predict(ws, out, p)


@case("photo: zero bytes", owner="predict")
def _(ws, out):
    (p := ws.bad("empty.png")).write_bytes(b"")
    return _predict(ws, out, p)


@case("photo: truncated JPEG", owner="predict")
def _(ws, out):
    import numpy as np
    from PIL import Image
    whole = ws.bad("whole.jpg")
    Image.fromarray(np.full((400, 300, 3), 90, np.uint8)).save(whole)
    (p := ws.bad("cut.jpg")).write_bytes(whole.read_bytes()[:800])
    return _predict(ws, out, p)


@case("photo: PNG header claiming 30000 x 30000", owner="predict")
def _(ws, out):
    return _predict(ws, out, _png_with_size(ws.bad("bomb.png"), 30000, 30000))


@case("photo: 1 x 1 pixel", owner="predict")
def _(ws, out):
    from PIL import Image
    Image.new("RGB", (1, 1)).save(p := ws.bad("dot.png"))
    return _predict(ws, out, p)


@case("photo: a folder passed as a photo", owner="predict")
def _(ws, out):
    (p := ws.bad("holiday.png")).mkdir()
    return _predict(ws, out, p)


@case("photo: path does not exist", owner="predict")
def _(ws, out):
    return _predict(ws, out, ws.inputs / "nowhere" / "me.jpg")


@case("photo: dangling symlink", owner="predict")
def _(ws, out):
    link = ws.bad("link.jpg")
    link.symlink_to(ws.inputs / "gone.jpg")
    return _predict(ws, out, link)


@case("photo: unreadable (/proc/self/mem)", owner="predict")
def _(ws, out):
    return _predict(ws, out, "/proc/self/mem")


@case("photo: odd modes (16-bit grey, CMYK, palette+alpha, LA, float EXR)", expect="ok", fast=False, owner="predict",
      check_ok=lambda ws, out: None if len([p for p in out.iterdir() if (p / "bundle.json").is_file()]) == 5
      else f"bundles written: {sorted(p.name for p in out.iterdir())} (want one per photo, 5)")
def _(ws, out):
    import numpy as np
    from PIL import Image
    from engine.fileio import write_exr
    base = np.asarray(Image.open(ws.photo))
    grey = (base.mean(-1) * 256).astype(np.uint16)
    Image.fromarray(grey).save(a := ws.bad("odd/grey16.png"))
    Image.fromarray(base).convert("CMYK").save(b := ws.bad("odd/cmyk.jpg"))
    Image.fromarray(base).convert("P").save(c := ws.bad("odd/palette.png"), transparency=0)
    Image.fromarray(base).convert("LA").save(d := ws.bad("odd/la.png"))
    write_exr(e := ws.bad("odd/linear.exr"), base.astype(np.float32) / 255)
    return _predict(ws, out, a, b, c, d, e)


@case("photo: two photos with the same file name", expect="ok", fast=False, owner="predict",
      check_ok=lambda ws, out: None if len([p for p in out.iterdir() if (p / "bundle.json").is_file()]) == 2
      else f"bundles written: {sorted(p.name for p in out.iterdir())} (want 2 distinct)")
def _(ws, out):
    for d in ("a", "b"):
        ws.bad(f"{d}/photo.png").write_bytes(ws.photo.read_bytes())
    return _predict(ws, out, ws.inputs / "a" / "photo.png", ws.inputs / "b" / "photo.png")


# -- checkpoints

def _tiny(path: Path, task: str) -> Path:
    from engine.models.testing import write_tiny_checkpoint
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tiny_checkpoint(path, task, img_size=(64, 48))


@case("checkpoint: none installed", owner="predict")
def _(ws, out):
    (root := ws.bad("ck_empty")).mkdir()
    return ["predict", ws.photo, "--out", out, "--checkpoints", root, "--tasks", "pose"]


@case("checkpoint: truncated safetensors", owner="package")
def _(ws, out):
    p = _tiny(ws.bad("ck_trunc/pose/sapiens2_0.4b_pose.safetensors"), "pose")
    p.write_bytes(p.read_bytes()[:-100])
    return ["predict", ws.photo, "--out", out, "--checkpoints", p.parent.parent, "--tasks", "pose"]


@case("checkpoint: random bytes named .safetensors", owner="package")
def _(ws, out):
    p = ws.bad("ck_junk/pose/sapiens2_0.4b_pose.safetensors")
    p.write_bytes(os.urandom(4096))
    return ["predict", ws.photo, "--out", out, "--checkpoints", p.parent.parent, "--tasks", "pose"]


@case("checkpoint: huge header length", owner="package")
def _(ws, out):
    p = ws.bad("ck_header/pose/sapiens2_0.4b_pose.safetensors")
    p.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    return ["predict", ws.photo, "--out", out, "--checkpoints", p.parent.parent, "--tasks", "pose"]


@case("checkpoint: a seg model under pose's name", owner="package")
def _(ws, out):
    p = _tiny(ws.bad("ck_swap/pose/sapiens2_0.4b_pose.safetensors"), "seg")
    return ["predict", ws.photo, "--out", out, "--checkpoints", p.parent.parent, "--tasks", "pose"]


def _pickle_with_code(path: Path, marker: Path) -> Path:
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"state_dict": Evil()}))
    return path


@case("checkpoint: .pth without --allow-pickle", owner="package")
def _(ws, out):
    p = _pickle_with_code(ws.bad("ck_pth/pose/sapiens2_0.4b_pose.pth"), ws.inputs / "PWNED")
    return ["predict", ws.photo, "--out", out, "--checkpoints", p.parent.parent, "--tasks", "pose"]


@case("checkpoint: .pth with code, --allow-pickle", owner="package")
def _(ws, out):
    marker = ws.inputs / "PWNED2"
    p = _pickle_with_code(ws.bad("ck_pth2/pose/sapiens2_0.4b_pose.pth"), marker)
    result = run_cli(ws, ["predict", ws.photo, "--out", out, "--checkpoints", p.parent.parent, "--tasks", "pose",
                          "--allow-pickle"])
    if marker.exists():
        result.refused, result.detail = False, "the pickle's code ran"
    if "weights_only=False" in result.message:
        result.message = ""                     # advising the unsafe switch is not a good message
    return result


def _legacy_pth(ws: Workspace, path: Path, payload=None) -> Path:
    """A tiny pose model saved in torch's legacy (non-zip) format, or `payload` in that format."""
    import torch

    from engine.models.loading import read_state_dict
    tiny = _tiny(ws.bad(f"{path.parent.parent.name}_src/pose/sapiens2_0.4b_pose.safetensors"), "pose")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(read_state_dict(tiny) if payload is None else payload, path, _use_new_zipfile_serialization=False)
    return path


def _a_bundle(ws: Workspace, out: Path) -> str | None:
    made = [p for p in out.iterdir() if (p / "bundle.json").is_file()] if out.is_dir() else []
    return None if made else "no bundle was written"


@case("checkpoint: a legacy (non-zip) .pth, --allow-pickle", expect="ok", owner="package", check_ok=_a_bundle)
def _(ws, out):
    p = _legacy_pth(ws, ws.bad("ck_legacy/pose/sapiens2_0.4b_pose.pth"))
    return ["predict", ws.photo, "--out", out, "--checkpoints", p.parent.parent, "--tasks", "pose", "--allow-pickle"]


@case("checkpoint: a legacy (non-zip) .pth holding code, --allow-pickle", owner="package")
def _(ws, out):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    marker = ws.inputs / "PWNED_LEGACY"
    p = _legacy_pth(ws, ws.bad("ck_legacy_code/pose/sapiens2_0.4b_pose.pth"), {"state_dict": Evil()})
    result = run_cli(ws, ["predict", ws.photo, "--out", out, "--checkpoints", p.parent.parent, "--tasks", "pose",
                          "--allow-pickle"])
    if marker.exists():
        result.refused, result.detail = False, "the pickle's code ran"
    if "weights_only=False" in result.message or "mmap" in result.message:
        result.message = ""                     # torch's hints are not the engine's words
    return result


@case("checkpoint: --checkpoints is a file", owner="package")
def _(ws, out):
    (p := ws.bad("ck_file.safetensors")).write_bytes(b"x" * 100)
    return ["predict", ws.photo, "--out", out, "--checkpoints", p, "--tasks", "pose"]


@case("models: --checkpoints is a file", owner="options/jobs")
def _(ws, out):
    return ["models", "--checkpoints", ws.photo]


@case("checkpoint: models lists a truncated file as unusable", expect="ok", owner="package",
      check_ok=lambda ws, out: None if "unusable" in (out.parent / (out.name + ".txt")).read_text()
      else "the truncated checkpoint is not called unusable")
def _(ws, out):
    p = _tiny(ws.bad("ck_list/pose/sapiens2_0.4b_pose.safetensors"), "pose")
    p.write_bytes(p.read_bytes()[:-100])
    proc = subprocess.run(ENGINE + ["models", "--checkpoints", str(p.parent.parent)], cwd=ws.root, env=ws.env,
                          capture_output=True, text=True, timeout=60)
    (out.parent / (out.name + ".txt")).write_text(proc.stdout + proc.stderr)
    return Outcome(proc.returncode != 0, proc.stderr.strip()[-200:], "Traceback" in proc.stderr, f"exit {proc.returncode}")


# -- bundles (build)

def _bundle_copy(ws: Workspace, name: str) -> Path:
    return shutil.copytree(ws.bundle, ws.bad(name))


@case("bundle: path does not exist", owner="package")
def _(ws, out):
    return ["build", ws.inputs / "no_bundle", "--out", out]


@case("bundle: a file, not a folder", owner="package")
def _(ws, out):
    (p := ws.bad("bundle.txt")).write_text("x")
    return ["build", p, "--out", out]


for _name, _file in {"its bundle.json": "bundle.json", "its image.png": "image.png"}.items():
    @case(f"bundle: {_name} given instead of its folder (a second view too)", owner="package")
    def _(ws, out, _file=_file):
        result = run_cli(ws, ["build", ws.bundle, ws.bundle / _file, "--out", out])
        if "no bundle.json" in result.message:      # the folder has one: a message that misleads
            result.message = ""
        return result


@case("bundle: bundle.json missing", owner="package")
def _(ws, out):
    (p := _bundle_copy(ws, "b_nojson")).joinpath("bundle.json").unlink()
    return ["build", p, "--out", out]


@case("bundle: bundle.json not JSON", owner="package")
def _(ws, out):
    (p := _bundle_copy(ws, "b_badjson")).joinpath("bundle.json").write_text("{ not json")
    return ["build", p, "--out", out]


@case("bundle: pointmap.exr corrupt", owner="package")
def _(ws, out):
    (p := _bundle_copy(ws, "b_badexr")).joinpath("pointmap.exr").write_bytes(b"v/1\x01" + os.urandom(2000))
    return ["build", p, "--out", out]


@case("bundle: image.png missing", owner="package")
def _(ws, out):
    (p := _bundle_copy(ws, "b_noimage")).joinpath("image.png").unlink()
    return ["build", p, "--out", out]


@case("bundle: pointmap all NaN", owner="closed avatar")
def _(ws, out):
    import numpy as np
    from engine.fileio import read_exr, write_exr
    p = _bundle_copy(ws, "b_nan")
    pm = read_exr(p / "pointmap.exr")
    write_exr(p / "pointmap.exr", np.full_like(pm, np.nan))
    return ["build", p, "--out", out, "--resolution", "quarter", "--formats", "glb"]


@case("bundle: pointmap of the wrong size", owner="package")
def _(ws, out):
    import numpy as np
    from engine.fileio import write_exr
    p = _bundle_copy(ws, "b_size")
    write_exr(p / "pointmap.exr", np.ones((10, 10, 3), np.float32))
    return ["build", p, "--out", out]


@case("bundle: keypoints.json wrong shape", owner="package")
def _(ws, out):
    p = _bundle_copy(ws, "b_kp")
    kp = json.loads((p / "keypoints.json").read_text())
    kp["keypoints"] = kp.get("keypoints", [])[:5]
    (p / "keypoints.json").write_text(json.dumps(kp))
    return ["build", p, "--out", out, "--resolution", "quarter", "--formats", "glb"]


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@case("bundle: bundle.json names a file outside the bundle", owner="package")
def _(ws, out):
    p = _bundle_copy(ws, "b_escape")
    shutil.copy(p / "pointmap.exr", ws.inputs / "elsewhere.exr")
    (p / "pointmap.exr").unlink()
    _edit_json(p / "bundle.json", lambda d: d["files"].update(pointmap="../elsewhere.exr"))
    return ["build", p, "--out", out, "--resolution", "quarter", "--formats", "glb"]


@case("bundle: bundle.json is a JSON list", owner="package")
def _(ws, out):
    (p := _bundle_copy(ws, "b_list")).joinpath("bundle.json").write_text("[1, 2, 3]")
    return ["build", p, "--out", out]


@case("bundle: a files entry that is a number", owner="package")
def _(ws, out):
    p = _bundle_copy(ws, "b_filenum")
    _edit_json(p / "bundle.json", lambda d: d["files"].update(normal=12))
    return ["build", p, "--out", out]


for _name, _files in {
    "files is a list": ["mask"],
    "mask file is a number": {"mask": 12},
    "mask file is outside the bundle": {"mask": "../stray_crop_mask.png"},
    "mask file is an absolute path": {"mask": "/etc/hostname"},
}.items():
    @case(f"bundle: a detail crop whose {_name}", owner="crops")
    def _(ws, out, _name=_name, _files=_files):
        p = _bundle_copy(ws, "b_crop_" + "".join(ch for ch in _name if ch.isalnum()))
        if isinstance(_files, dict) and _files["mask"] == "../stray_crop_mask.png":
            shutil.copy(p / "mask.png", p.parent / "stray_crop_mask.png")
        _edit_json(p / "bundle.json", lambda d: d.update(
            version="1.2", detail_crops=[{"name": "face", "box": [0, 0, 4, 4], "factor": 1, "files": _files}]))
        return ["build", p, "--out", out, "--resolution", "quarter", "--formats", "glb"]


@case("bundle: a newer format version", owner="package")
def _(ws, out):
    p = _bundle_copy(ws, "b_v9")
    _edit_json(p / "bundle.json", lambda d: d.update(version="9.0"))
    return ["build", p, "--out", out]


@case("bundle: intrinsics with a focal of 0", owner="closed avatar")
def _(ws, out):
    p = _bundle_copy(ws, "b_k0")
    _edit_json(p / "bundle.json", lambda d: d.update(K=[[0, 0, 288], [0, 0, 384], [0, 0, 1]]))
    return ["build", p, "--out", out, "--resolution", "quarter", "--formats", "glb"]


@case("bundle: keypoints NaN", expect="any", owner="rig/motion")
def _(ws, out):
    p = _bundle_copy(ws, "b_kpnan")
    _edit_json(p / "keypoints.json", lambda d: d.update(keypoints=[[None, None, 0.9]] * len(d["keypoints"])))
    return ["build", p, "--out", out, "--resolution", "quarter", "--formats", "glb", "--rig", "rigify"]


@case("bundle: empty mask (no person)", owner="closed avatar")
def _(ws, out):
    import numpy as np
    from PIL import Image
    p = _bundle_copy(ws, "b_nomask")
    h, w = np.asarray(Image.open(p / "mask.png")).shape[:2]
    Image.fromarray(np.zeros((h, w), np.uint8)).save(p / "mask.png")
    return ["build", p, "--out", out, "--resolution", "quarter", "--formats", "glb"]


# -- output targets

@case("out: build into an existing folder of the user's", owner="package")
def _(ws, out):
    return ["build", ws.bundle, "--out", ws.user_folder("build_here")]


@case("out: build onto an existing file", owner="package")
def _(ws, out):
    return ["build", ws.bundle, "--out", ws.user / "notes.txt"]


@case("out: build into a read-only place (/proc)", owner="package")
def _(ws, out):
    return ["build", ws.bundle, "--out", "/proc/sapiens_avatar"]


@case("out: build below a file", owner="package")
def _(ws, out):
    return ["build", ws.bundle, "--out", ws.user / "notes.txt" / "avatar"]


@case("out: predict where OUT/photo is the user's folder", fast=False, owner="package")
def _(ws, out):
    ws.user_folder("predict_here/photo")
    return _predict(ws, ws.user / "predict_here", ws.photo)


@case("out: animate into an existing folder of the user's", owner="rig/motion")
def _(ws, out):
    return ["animate", ws.frames, "--out", ws.user_folder("animate_here")]


@case("out: retarget into an existing folder of the user's", owner="retarget")
def _(ws, out):
    return ["retarget", ws.animation, "--target", ws.animation / "skeleton.json", "--out", ws.user_folder("retarget_here")]


@case("out: retarget onto its own motion folder", owner="retarget")
def _(ws, out):
    return ["retarget", ws.animation, "--target", ws.animation / "skeleton.json", "--out", ws.animation]


@case("out: build onto its own bundle", owner="package")
def _(ws, out):
    return ["build", (p := _bundle_copy(ws, "b_self")), "--out", p]


@case("out: animate onto its own frames folder", owner="rig/motion")
def _(ws, out):
    return ["animate", shutil.copytree(ws.frames, ws.bad("frames_self")), "--out", ws.inputs / "frames_self"]


@case("out: an empty --out", owner="options/jobs")
def _(ws, out):
    return ["build", ws.bundle, "--out", ""]


LONG_NAME = "x" * 300            # a file name no file system takes (255 bytes at most)

for _name, _argv in {
    "build --out": lambda ws, out: ["build", ws.bundle, "--out", out / LONG_NAME],
    "build BUNDLE": lambda ws, out: ["build", ws.inputs / LONG_NAME, "--out", out],
    "animate FRAMES": lambda ws, out: ["animate", ws.inputs / LONG_NAME, "--out", out],
    "retarget MOTION": lambda ws, out: ["retarget", ws.inputs / LONG_NAME, "--target", ws.inputs / "t.glb",
                                        "--out", out],
    "models --checkpoints": lambda ws, out: ["models", "--checkpoints", ws.inputs / LONG_NAME],
    "export-onnx --out": lambda ws, out: ["export-onnx", ws.ckpt / "pose" / "sapiens2_0.4b_pose.safetensors",
                                          "--out", out / LONG_NAME],
}.items():
    case(f"path: a 300-character file name as {_name}", owner="options/jobs")(_argv)


@case("path: SAPIENS_CHECKPOINTS naming a folder with a 300-character name", owner="predict")
def _(ws, out):
    saved = dict(ws.env)
    ws.env["SAPIENS_CHECKPOINTS"] = str(ws.inputs / LONG_NAME)
    try:
        return run_cli(ws, ["predict", ws.photo, "--out", out, "--tasks", "pose"])
    finally:
        ws.env.clear()
        ws.env.update(saved)


@case("out: export-onnx onto an existing file", owner="options/jobs")
def _(ws, out):
    started = time.monotonic()
    result = run_cli(ws, ["export-onnx", ws.ckpt / "pose" / "sapiens2_0.4b_pose.safetensors", "--out", ws.user / "notes.txt"])
    if time.monotonic() - started > 30:
        result.detail += f" after {time.monotonic() - started:.0f} s (not checked before the work)"
    return result


@case("out: batch where an item's folder is the user's", owner="package")
def _(ws, out):
    ws.user_folder("batch_here/bundle")          # the item's name is its bundle folder's name
    return ["batch", ws.bundle, "--out", ws.user / "batch_here", "--steps", "build"]


@case("out: batch into a folder of the user's (items added beside the user's files)", expect="any", fast=False,
      owner="package")
def _(ws, out):
    return ["batch", ws.bundle, "--out", ws.user_folder("batch_beside"), "--steps", "build"]


@case("out: avatar where OUT/photo is the user's folder", fast=False, owner="options/jobs")
def _(ws, out):
    ws.user_folder("avatar_here/photo")
    return ["avatar", ws.photo, "--out", ws.user / "avatar_here", "--checkpoints", ws.ckpt, "--tasks", "pose",
            "--cache-dir", ws.root / "cache", "--resolution", "quarter"]


# -- option values on the CLI

for _name, _argv in {
    "--batch-size -3": ["--batch-size", "-3"],
    "--batch-size four": ["--batch-size", "four"],
    "--bbox a,b": ["--bbox", "a,b"],
    "--bbox 1,2": ["--bbox", "1,2"],
    "--bbox 0,0,-1,-1": ["--bbox", "0,0,-1,-1"],
    "--bbox nan,0,10,10": ["--bbox", "nan,0,10,10"],
    "--max-memory lots": ["--max-memory", "lots"],
    "--tasks seg,foo": ["--tasks", "seg,foo"],
    "--tasks (empty)": ["--tasks", ""],
    "--size 7b": ["--size", "7b"],
    "--size pose=": ["--size", "pose="],
    "--device tpu": ["--device", "tpu"],
    "--dtype fp8": ["--dtype", "fp8"],
}.items():
    case(f"cli option: predict {_name}", owner="options/jobs")(
        lambda ws, out, _argv=_argv: ["predict", ws.photo, "--out", out, "--checkpoints", ws.ckpt, *_argv])

for _name, _argv in {
    "--rig /etc/hostname": ["--rig", "/etc/hostname"],
    "--rig ../keypoints308": ["--rig", "../keypoints308"],
    "--max-faces 5": ["--max-faces", "5"],
    "--max-faces 1e3": ["--max-faces", "1e3"],
    "--texture-size 100000": ["--texture-size", "100000"],
    "--formats gif": ["--formats", "gif"],
    "--resolution eighth": ["--resolution", "eighth"],
    "--rest-pose sitting": ["--rest-pose", "sitting"],
}.items():
    case(f"cli option: build {_name}", owner="options/jobs")(
        lambda ws, out, _argv=_argv: ["build", ws.bundle, "--out", out, *_argv])

for _name, _argv in {
    "--fps -1": ["--fps", "-1"],
    "--fps nan": ["--fps", "nan"],
    "--fps inf": ["--fps", "inf"],
    "--min-cutoff -5": ["--min-cutoff", "-5"],
    "--feet float": ["--feet", "float"],
}.items():
    case(f"cli option: animate {_name}", owner="options/jobs")(
        lambda ws, out, _argv=_argv: ["animate", ws.frames, "--out", out, *_argv])

case("cli: unknown command", owner="options/jobs")(lambda ws, out: ["sculpt", ws.photo])
case("cli: serve --jobs 100000", owner="options/jobs")(
    lambda ws, out: run_cli(ws, ["serve", "--jobs", "100000"], timeout=60))
case("cli: serve --max-line-bytes 0", owner="options/jobs")(lambda ws, out: ["serve", "--max-line-bytes", "0"])
case("cli: predict without --out", owner="options/jobs")(lambda ws, out: ["predict", ws.photo])


# -- animate

@case("animate: frames folder does not exist", owner="rig/motion")
def _(ws, out):
    return ["animate", ws.inputs / "no_frames", "--out", out]


@case("animate: empty frames folder", owner="rig/motion")
def _(ws, out):
    (p := ws.bad("frames_empty")).mkdir()
    return ["animate", p, "--out", out]


@case("animate: no usable frames (text files named .png)", owner="rig/motion")
def _(ws, out):
    for i in range(3):
        ws.bad(f"frames_text/{i:03d}.png").write_text("not a frame")
    return ["animate", ws.inputs / "frames_text", "--out", out, "--checkpoints", ws.ckpt]


@case("animate: only corrupt bundle frames", owner="rig/motion")
def _(ws, out):
    for i in range(3):
        p = shutil.copytree(ws.bundle, ws.bad(f"frames_corrupt/f{i}"))
        (p / "keypoints.json").write_text("{ broken")
    return ["animate", ws.inputs / "frames_corrupt", "--out", out]


def _frames_kept(ws: Workspace, out: Path) -> str | None:
    frames = len(list((out / "frames").glob("*.json")))
    return None if frames == 4 else f"{frames} frames written for 4 inputs (the timeline must keep them)"


@case("animate: corrupt bundle frames mixed with good ones", expect="any", owner="rig/motion", check_ok=_frames_kept)
def _(ws, out):
    for i in range(4):
        p = shutil.copytree(ws.bundle, ws.bad(f"frames_mixed/f{i}"))
        if i in (1, 2):
            (p / "pointmap.exr").write_bytes(b"junk")
    return ["animate", ws.inputs / "frames_mixed", "--out", out]


def _frames_with_bundle_json(ws: Workspace, name: str, edit: Callable[[dict], object]) -> Path:
    """Three bundle frames whose bundle.json is edited (edit returns the new document)."""
    for i in range(3):
        p = shutil.copytree(ws.bundle, ws.bad(f"{name}/f{i}"))
        p.joinpath("bundle.json").write_text(json.dumps(edit(json.loads(p.joinpath("bundle.json").read_text()))))
    return ws.inputs / name


@case("animate: bundle frames whose bundle.json is a JSON list", owner="package")
def _(ws, out):
    return ["animate", _frames_with_bundle_json(ws, "frames_list", lambda d: [1, 2]), "--out", out]


@case("animate: bundle frames whose files entry is a number", owner="package")
def _(ws, out):
    return ["animate", _frames_with_bundle_json(ws, "frames_filenum", lambda d: {**d, "files": {**d["files"], "keypoints": 12}}),
            "--out", out]


@case("animate: bundle frames whose keypoints file is outside the bundle", owner="package")
def _(ws, out):
    shutil.copy(ws.bundle / "keypoints.json", ws.inputs / "stray_keypoints.json")
    return ["animate", _frames_with_bundle_json(ws, "frames_escape", lambda d: {
        **d, "files": {**d["files"], "keypoints": "../../stray_keypoints.json"}}), "--out", out]


@case("animate: a fake .mp4", owner="rig/motion")
def _(ws, out):
    (p := ws.bad("clip.mp4")).write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    result = run_cli(ws, ["animate", p, "--out", out, "--checkpoints", ws.ckpt])
    if "ffmpeg version" in result.message or "configuration:" in result.message:
        result.message = ""
    return result


@case("animate: a single frame", expect="any", owner="rig/motion")
def _(ws, out):
    shutil.copytree(ws.bundle, ws.bad("frames_one/f0"))
    return ["animate", ws.inputs / "frames_one", "--out", out]


@case("animate: a frames folder of bundles and images mixed", owner="rig/motion")
def _(ws, out):
    for i in range(3):
        shutil.copytree(ws.bundle, ws.bad(f"frames_two_kinds/f{i}"))
    shutil.copy(ws.bundle / "image.png", ws.inputs / "frames_two_kinds" / "f3.png")   # taken alone, it dropped a frame
    return ["animate", ws.inputs / "frames_two_kinds", "--out", out]


@case("animate: bundle frames of another photo size and person between the sample's", expect="any",
      owner="rig/motion")
def _(ws, out):
    from engine.bundle import write_bundle
    from engine.synthetic import make_person, to_bundle

    shutil.copytree(ws.bundle, ws.bad("frames_sizes/f0"))
    write_bundle(to_bundle(make_person(seed=3, width=384, height=512)), ws.inputs / "frames_sizes" / "f1")
    shutil.copytree(ws.bundle, ws.inputs / "frames_sizes" / "f2")
    return ["animate", ws.inputs / "frames_sizes", "--out", out]


@case("animate: a bundle frame of another shape (a square crop) between the sample's", owner="jobs")
def _(ws, out):
    from engine.bundle import write_bundle
    from engine.synthetic import make_person, to_bundle

    shutil.copytree(ws.bundle, ws.bad("frames_shapes/f0"))
    write_bundle(to_bundle(make_person(seed=3, width=512, height=512)), ws.inputs / "frames_shapes" / "f1")
    shutil.copytree(ws.bundle, ws.inputs / "frames_shapes" / "f2")
    return ["animate", ws.inputs / "frames_shapes", "--out", out]


@case("animate: frames of NaN pointmaps", owner="rig/motion")
def _(ws, out):
    import numpy as np
    from engine.fileio import read_exr, write_exr
    for i in range(3):
        p = shutil.copytree(ws.bundle, ws.bad(f"frames_nan/f{i}"))
        pm = read_exr(p / "pointmap.exr")
        write_exr(p / "pointmap.exr", np.full_like(pm, np.nan))
    return ["animate", ws.inputs / "frames_nan", "--out", out]


# -- retarget

@case("retarget: target does not exist", owner="retarget")
def _(ws, out):
    return ["retarget", ws.animation, "--target", ws.inputs / "hero.glb", "--out", out]


@case("retarget: target is random bytes named .glb", owner="retarget")
def _(ws, out):
    (p := ws.bad("junk.glb")).write_bytes(os.urandom(5000))
    return ["retarget", ws.animation, "--target", p, "--out", out]


@case("retarget: target is a .txt", owner="retarget")
def _(ws, out):
    (p := ws.bad("hero.txt")).write_text("a hero")
    return ["retarget", ws.animation, "--target", p, "--out", out]


@case("retarget: target glb without a skin (the sample mesh)", fast=False, owner="retarget")
def _(ws, out):
    import numpy as np  # noqa: F401  (the glb is written by the demo's own writer below)
    proc = subprocess.run(ENGINE + ["build", str(ws.bundle), "--out", str(ws.inputs / "unrigged"), "--rig", "none",
                                    "--resolution", "quarter", "--formats", "glb"],
                          cwd=ws.root, env=ws.env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    if proc.returncode:
        return Outcome(True, "", False, "could not build the unrigged target: " + proc.stderr[-200:])
    return ["retarget", ws.animation, "--target", ws.inputs / "unrigged" / "avatar.glb", "--out", out]


@case("retarget: skeleton.json is not JSON", owner="retarget")
def _(ws, out):
    (p := ws.bad("rig_bad/skeleton.json")).write_text("{ nope")
    return ["retarget", ws.animation, "--target", p, "--out", out]


@case("retarget: motion is a folder of the user's", owner="retarget")
def _(ws, out):
    return ["retarget", ws.user_folder("not_motion"), "--target", ws.animation / "skeleton.json", "--out", out]


@case("retarget: a skeleton.json whose parents form a loop", owner="retarget")
def _(ws, out):
    skeleton = json.loads((ws.animation / "skeleton.json").read_text())
    names = [b["name"] for b in skeleton["bones"]]
    skeleton["bones"][0]["parent"] = names[-1]            # the root's parent is a leaf: a cycle
    (p := ws.bad("rig_loop/skeleton.json")).write_text(json.dumps(skeleton))
    started = time.monotonic()
    result = run_cli(ws, ["retarget", ws.animation, "--target", p, "--out", out], timeout=120)
    result.detail += f" after {time.monotonic() - started:.0f} s"
    return result


@case("retarget: a motion whose frames are corrupt", owner="retarget")
def _(ws, out):
    motion = shutil.copytree(ws.animation, ws.bad("motion_corrupt"))
    for f in (motion / "frames").glob("*.json"):
        f.write_text("{ torn")
    return ["retarget", motion, "--target", ws.animation / "skeleton.json", "--out", out]


def _motion_copy(ws: Workspace, name: str, edit_file: str | None = None, edit=None, frames_edit=None) -> Path:
    """A copy of the animation with one of its JSON files (or every frame) edited."""
    motion = shutil.copytree(ws.animation, ws.bad(name))
    if edit_file is not None:
        doc = json.loads((motion / edit_file).read_text())
        (motion / edit_file).write_text(json.dumps(edit(doc)))
    for f in (motion / "frames").glob("*.json") if frames_edit else ():
        doc = json.loads(f.read_text())
        frames_edit(doc)
        f.write_text(json.dumps(doc))
    return motion


def _zero_rotations(doc: dict) -> None:
    for bone in doc["bones"].values():
        bone["rotation"] = [0, 0, 0, 0]


for _name, _kw in {
    "skeleton.json is a JSON list": dict(edit_file="skeleton.json", edit=lambda d: [1]),
    "animation.json is a JSON list": dict(edit_file="animation.json", edit=lambda d: [1]),
    "animation.json fps 'fast'": dict(edit_file="animation.json", edit=lambda d: {**d, "fps": "fast"}),
    "animation.json fps -5": dict(edit_file="animation.json", edit=lambda d: {**d, "fps": -5}),
    "frames with zero quaternions": dict(frames_edit=_zero_rotations),
}.items():
    case(f"retarget: a motion whose {_name}", owner="retarget")(
        lambda ws, out, _name=_name, _kw=_kw: ["retarget", _motion_copy(ws, "motion_" + "".join(
            ch for ch in _name if ch.isalnum()), **_kw), "--target", ws.animation / "skeleton.json", "--out", out])


@case("retarget: bone map not JSON", owner="retarget")
def _(ws, out):
    (p := ws.bad("map.json")).write_text("hips: pelvis")
    return ["retarget", ws.animation, "--target", ws.animation / "skeleton.json", "--bone-map", p, "--out", out]


@case("retarget: bone map naming bones the target lacks", owner="retarget")
def _(ws, out):
    (p := ws.bad("map_missing.json")).write_text(json.dumps({"NoSuchBone": "hips", "Other": "spine"}))
    return ["retarget", ws.animation, "--target", ws.animation / "skeleton.json", "--bone-map", p, "--out", out]


# -- batch

@case("batch: --address of a cluster that is not there", fast=False, owner="package")
def _(ws, out):
    return run_cli(ws, ["batch", ws.bundle, "--steps", "build", "--out", out, "--address", "127.0.0.1:1"], timeout=150)


@case("batch: input does not exist", owner="package")
def _(ws, out):
    return ["batch", ws.inputs / "no_such_list.txt", "--out", out]


@case("batch: list file naming missing photos", expect="any", owner="package")
def _(ws, out):
    (p := ws.bad("list_missing.txt")).write_text("/nowhere/a.jpg\n/nowhere/b.jpg\n")
    return ["batch", p, "--out", out, "--steps", "build"]


@case("batch: empty list file", owner="package")
def _(ws, out):
    (p := ws.bad("list_empty.txt")).write_text("")
    return ["batch", p, "--out", out]


@case("batch: YAML list that is not YAML", owner="package")
def _(ws, out):
    (p := ws.bad("list_bad.yaml")).write_text("- photo: [unclosed\n  max_faces: {\n")
    return ["batch", p, "--out", out]


@case("batch: JSON list with a bad per-item option", expect="any", owner="package")
def _(ws, out):
    (p := ws.bad("list_opts.json")).write_text(json.dumps([{"path": str(ws.bundle), "max_faces": "lots"}]))
    return ["batch", p, "--out", out, "--steps", "build"]


@case("batch: CSV list file of binary junk", owner="package")
def _(ws, out):
    (p := ws.bad("list_junk.csv")).write_bytes(os.urandom(3000))
    return ["batch", p, "--out", out]


# -- a killed engine, then a rerun

@case("killed: build killed mid-write, then the same command again", expect="ok", owner="package",
      check_ok=lambda ws, out: None if (out / "avatar.json").is_file() else "no avatar after the rerun")
def _(ws, out):
    argv = ENGINE + ["build", str(ws.bundle), "--out", str(out), "--resolution", "quarter", "--formats", "glb,obj,ply"]
    proc = subprocess.Popen(argv, cwd=ws.root, env=ws.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + CLI_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < end:
        if any(p.name.startswith(f".{out.name}.") for p in out.parent.iterdir()):
            time.sleep(0.3)
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stale = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    if not stale:
        return Outcome(True, "", False, "the kill did not land while the output was being written")
    result = run_cli(ws, argv[3:])
    result.detail += f"; killed with {stale[0]} half-written"
    return result


# the build's progress line as the closed surface starts: seconds of work are still ahead of it
MID_BUILD_LINE = "closing the surface"


@case("killed: Ctrl-C (SIGINT) mid-build", owner="options/jobs", least_words=2)   # "build: interrupted" says it
def _(ws, out):
    argv = ENGINE + ["build", str(ws.bundle), "--out", str(out), "--resolution", "quarter"]
    proc = subprocess.Popen(argv, cwd=ws.root, env=ws.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Sent on the build's own progress line, not after a fixed sleep: a fast machine finished the
    # whole quarter build inside 2.5 s and the Ctrl-C landed in the interpreter's shutdown.
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if MID_BUILD_LINE in line:
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=CLI_TIMEOUT_S)
    text = "".join(seen) + rest
    if not any(MID_BUILD_LINE in line for line in seen):
        return Outcome(proc.returncode != 0, "", "Traceback (most recent call last)" in text,
                       f"exit {proc.returncode}; the build never said {MID_BUILD_LINE!r}, so no Ctrl-C was sent")
    lines = [line for line in text.splitlines() if line.strip()]
    return Outcome(proc.returncode != 0, lines[-1] if lines else "", "Traceback (most recent call last)" in text,
                   f"exit {proc.returncode}")


@case("killed: two builds into the same --out at once", expect="ok", fast=False, owner="package",
      check_ok=lambda ws, out: None if (out / "avatar.json").is_file() else "no avatar left by either build")
def _(ws, out):
    argv = ENGINE + ["build", str(ws.bundle), "--out", str(out), "--resolution", "quarter", "--formats", "glb"]
    procs = [subprocess.Popen(argv, cwd=ws.root, env=ws.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    texts = [p.communicate(timeout=CLI_TIMEOUT_S)[0] for p in procs]
    codes = [p.returncode for p in procs]
    refused = [t.strip().splitlines()[-1] for t, c in zip(texts, codes) if c]
    return Outcome(all(codes), refused[0] if refused else "", any("Traceback" in t for t in texts), f"exits {codes}")


# -- the protocol

def _req(method: str, params, req_id=None) -> dict:
    return {"id": req_id or f"{method}-{time.monotonic_ns()}", "method": method, "params": params}


for _name, _line in {
    "not JSON": b"{this is not json",
    "not UTF-8": b'{"id": 1, "method": "ping\xff\xfe"}',
    "a JSON array": b"[1, 2, 3]",
    "a JSON string": b'"ping"',
    "NaN in JSON": b'{"id": "nan", "method": "ping", "params": {"x": NaN}}',
}.items():
    case(f"protocol line: {_name}", "serve", owner="options/jobs")(lambda ws, out, _line=_line: (_line, "nan"))

for _name, _request in {
    "id null": {"id": None, "method": "ping"},
    "id a float": {"id": 1.5, "method": "ping"},
    "id a boolean": {"id": True, "method": "ping"},
    "id an object": {"id": {"a": 1}, "method": "ping"},
    "no method": {"id": "nomethod"},
    "method a number": {"id": "methodnum", "method": 7},
    "unknown method": {"id": "unknown", "method": "sculpt"},
    "debug method without --debug": {"id": "dbg", "method": "debug.sleep", "params": {"seconds": 1}},
    "params a list": {"id": "plist", "method": "build", "params": [1, 2]},
    "handshake of protocol 2.0": {"id": "hs", "method": "handshake", "params": {"protocol": "2.0"}},
    "handshake of protocol 'one'": {"id": "hs2", "method": "handshake", "params": {"protocol": "one"}},
}.items():
    case(f"protocol request: {_name}", "serve", owner="options/jobs")(
        lambda ws, out, _request=_request: (json.dumps(_request).encode(), _request.get("id")
                                            if isinstance(_request.get("id"), str) else None))


@case("protocol line: JSON nested 400000 deep", "serve", owner="options/jobs")
def _(ws, out):
    return (b'{"id": "deep", "method": "ping", "params": {"x": ' + b"[" * 400_000 + b"]" * 400_000 + b"}}", "deep")


@case("protocol params: build out_dir ''", "serve", owner="options/jobs")
def _(ws, out):
    return _req("build", {"bundle_dir": str(ws.bundle), "out_dir": ""})


@case("protocol line: 2 MB (over max_line_bytes)", "serve", owner="options/jobs")
def _(ws, out):
    return (json.dumps({"id": "big", "method": "ping", "params": {"x": "a" * 2_000_000}}).encode(), None)


def _predict_params(ws: Workspace, out: Path, **extra) -> dict:
    return {"photos": [str(ws.photo)], "out_dir": str(out), "checkpoints": str(ws.ckpt), "tasks": ["pose"], **extra}


for _name, _extra in {
    "batch_size 'four'": {"batch_size": "four"},
    "batch_size -3": {"batch_size": -3},
    "batch_size 2.5": {"batch_size": 2.5},
    "batch_size true": {"batch_size": True},
    "bbox 'a,b'": {"bbox": "a,b"},
    "bbox [1, 2]": {"bbox": [1, 2]},
    "bbox [0, 0, -1, -1]": {"bbox": [0, 0, -1, -1]},
    "bbox of strings": {"bbox": ["0", "0", "10", "10"]},
    "max_memory 'lots'": {"max_memory": "lots"},
    "max_memory -1": {"max_memory": -1},
    "checkpoints 12": {"checkpoints": 12},
    "all_people 'yes'": {"all_people": "yes"},
    "all_people 1": {"all_people": 1},
    "tasks 'seg'": {"tasks": "seg"},
    "tasks ['sculpt']": {"tasks": ["sculpt"]},
    "tasks []": {"tasks": []},
    "size '7b'": {"size": "7b"},
    "size {'pose': 3}": {"size": {"pose": 3}},
    "device 'tpu'": {"device": "tpu"},
    "photos a string": {"photos": "/tmp/a.jpg"},
    "photos []": {"photos": []},
    "photos [12]": {"photos": [12]},
    "out_dir missing": {"out_dir": None},
    "unknown parameter": {"colour": "blue"},
}.items():
    case(f"protocol params: predict {_name}", "serve", owner="options/jobs")(
        lambda ws, out, _extra=_extra: _req("predict", {k: v for k, v in _predict_params(ws, out, **_extra).items()
                                                        if not (k == "out_dir" and v is None)}))

for _name, _line in {
    "animate fps 1e400 (JSON's infinity)": '{"id": "inf-fps", "method": "animate", "params": {"frames": "FRAMES", '
                                           '"out_dir": "OUT", "fps": 1e400}}',
    "build max_faces 1e400": '{"id": "inf-faces", "method": "build", "params": {"bundle_dir": "BUNDLE", '
                             '"out_dir": "OUT", "max_faces": 1e400}}',
    "build max_faces 10**26": '{"id": "big-faces", "method": "build", "params": {"bundle_dir": "BUNDLE", '
                              '"out_dir": "OUT", "max_faces": 100000000000000000000000000}}',
    "predict bbox [0, 0, 1e400, 1e400]": '{"id": "inf-bbox", "method": "predict", "params": {"photos": ["PHOTO"], '
                                         '"out_dir": "OUT", "bbox": [0, 0, 1e400, 1e400]}}',
}.items():
    case(f"protocol params: {_name}", "serve", owner="options/jobs")(
        lambda ws, out, _line=_line: (_line.replace("FRAMES", str(ws.frames)).replace("BUNDLE", str(ws.bundle))
                                      .replace("PHOTO", str(ws.photo)).replace("OUT", str(out)).encode(),
                                      json.loads(_line.replace("1e400", "0"))["id"]))

for _name, _extra in {
    "rig '../keypoints308'": {"rig": "../keypoints308"},
    "rig '/etc/hostname'": {"rig": "/etc/hostname"},
    "max_faces 5": {"max_faces": 5},
    "max_faces '10k'": {"max_faces": "10k"},
    "texture_size 100000": {"texture_size": 100000},
    "texture_size true": {"texture_size": True},
    "formats 'glb'": {"formats": "glb"},
    "formats ['gif']": {"formats": ["gif"]},
    "watertight 'false'": {"watertight": "false"},
    "resolution 2": {"resolution": 2},
    "bundle_dir 12": {"bundle_dir": 12},
    "views 12": {"views": 12},
    "views [12]": {"views": [12]},
    "views ['/nowhere']": {"views": ["/nowhere"]},
    "views with watertight false": {"views": ["SAMPLE"], "watertight": False},
    "detail_crops 'no'": {"detail_crops": "no"},
}.items():
    case(f"protocol params: build {_name}", "serve", owner="options/jobs")(
        lambda ws, out, _extra=_extra: _req("build", {"bundle_dir": str(ws.bundle), "out_dir": str(out), **{
            k: [str(ws.bundle) if v == "SAMPLE" else v for v in x] if isinstance(x, list) else x
            for k, x in _extra.items()}}))

for _name, _extra in {
    "fps '30'": {"fps": "30"},
    "fps -1": {"fps": -1},
    "fps 0": {"fps": 0},
    "smooth 'on'": {"smooth": "on"},
    "frames missing": {"frames": None},
}.items():
    case(f"protocol params: animate {_name}", "serve", owner="options/jobs")(
        lambda ws, out, _extra=_extra: _req("animate", {k: v for k, v in {"frames": str(ws.frames), "out_dir": str(out),
                                                                          **_extra}.items() if v is not None}))

case("protocol params: retarget target 12", "serve", owner="options/jobs")(
    lambda ws, out: _req("retarget", {"motion": str(ws.animation), "target": 12, "out_dir": str(out)}))
case("protocol params: batch inputs 'a.jpg'", "serve", owner="options/jobs")(
    lambda ws, out: _req("batch", {"inputs": "a.jpg", "out_dir": str(out)}))
case("protocol params: batch workers 0", "serve", owner="options/jobs")(
    lambda ws, out: _req("batch", {"inputs": [str(ws.bundle)], "out_dir": str(out), "workers": 0}))


@case("protocol params: predict compile 'nonsense-mode'", "serve", owner="options/jobs")
def _(ws, out):
    return _req("predict", _predict_params(ws, out, compile="nonsense-mode"))


@case("protocol job: predict with onnx_dir a file", "serve", owner="options/jobs")
def _(ws, out):
    return _req("predict", _predict_params(ws, out, backend="onnxruntime", onnx_dir=str(ws.photo)))


@case("protocol job: predict a text file named .jpg", "serve", owner="predict")
def _(ws, out):
    (p := ws.bad("proto_notes.jpg")).write_text("shopping list")
    return _req("predict", {**_predict_params(ws, out), "photos": [str(p)]})


@case("protocol job: predict with a truncated checkpoint", "serve", owner="package")
def _(ws, out):
    p = _tiny(ws.bad("proto_ck_trunc/pose/sapiens2_0.4b_pose.safetensors"), "pose")
    p.write_bytes(p.read_bytes()[:-100])
    return _req("predict", {**_predict_params(ws, out), "checkpoints": str(p.parent.parent)})


@case("protocol job: predict with a .pth holding code, allow_pickle", "serve", owner="package")
def _(ws, out):
    marker = ws.inputs / "PWNED_PROTO"
    p = _pickle_with_code(ws.bad("proto_ck_pth/pose/sapiens2_0.4b_pose.pth"), marker)
    result = ask(ws, _req("predict", {**_predict_params(ws, out), "checkpoints": str(p.parent.parent),
                                      "allow_pickle": True}))
    if marker.exists():
        result.refused, result.detail = False, "the pickle's code ran"
    if "weights_only=False" in result.message:
        result.message = ""                     # advising the unsafe switch is not a good message
    return result


@case("protocol job: predict with a legacy (non-zip) .pth, allow_pickle", "serve", expect="ok", owner="package",
      check_ok=_a_bundle)
def _(ws, out):
    p = _legacy_pth(ws, ws.bad("proto_ck_legacy/pose/sapiens2_0.4b_pose.pth"))
    return _req("predict", {**_predict_params(ws, out), "checkpoints": str(p.parent.parent), "allow_pickle": True})


def _one_bundle(ws: Workspace, out: Path) -> str | None:
    """One bundle folder inside --out (out/sub), not --out itself made a bundle."""
    given = out / "sub"
    made = [p.name for p in given.iterdir() if (p / "bundle.json").is_file()] if given.is_dir() else []
    if (given / "bundle.json").is_file():
        return "the bundle was written as the --out folder itself, not inside it"
    return None if len(made) == 1 else f"bundles inside --out: {made}"


for _name, _file in {"'..png' (stem '.')": "..png", "'...png' (stem '..')": "...png"}.items():
    @case(f"protocol job: predict a photo named {_name}", "serve", expect="ok", owner="predict", check_ok=_one_bundle)
    def _(ws, out, _file=_file):
        (p := ws.bad(f"dots/{_file}")).write_bytes(ws.photo.read_bytes())
        return _req("predict", {**_predict_params(ws, out / "sub"), "photos": [str(p)]})


@case("protocol job: predict a photo with a 300-character file name", "serve", owner="options/jobs")
def _(ws, out):
    return _req("predict", {**_predict_params(ws, out), "photos": [str(ws.inputs / (LONG_NAME + ".png"))]})


def _named_pipe(ws: Workspace, name: str) -> Path:
    """A FIFO: opening it for reading waits for a writer that never comes."""
    path = ws.bad(f"pipes/{name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


@case("protocol job: predict a named pipe named .png", "serve", owner="predict")
def _(ws, out):
    return _req("predict", {**_predict_params(ws, out), "photos": [str(_named_pipe(ws, "proto.png"))]})


@case("bundle: a named pipe given as the bundle", owner="options/jobs")
def _(ws, out):
    return ["build", _named_pipe(ws, "bundle"), "--out", out]


@case("retarget: target is a named pipe named .glb", owner="options/jobs")
def _(ws, out):
    return ["retarget", ws.animation, "--target", _named_pipe(ws, "target.glb"), "--out", out]


@case("protocol job: build into an out_dir with a 300-character name", "serve", owner="options/jobs")
def _(ws, out):
    return _req("build", {"bundle_dir": str(ws.bundle), "out_dir": str(out / LONG_NAME)})


@case("protocol job: predict a photo that does not exist", "serve", owner="predict")
def _(ws, out):
    return _req("predict", {**_predict_params(ws, out), "photos": [str(ws.inputs / "nowhere.jpg")]})


@case("protocol job: predict an EXR photo of NaN and infinity", "serve", expect="any", owner="predict")
def _(ws, out):
    import numpy as np
    from engine.fileio import write_exr
    pixels = np.full((320, 240, 3), np.nan, np.float32)
    pixels[::2] = np.inf
    write_exr(p := ws.bad("nan_photo.exr"), pixels)
    return _req("predict", {**_predict_params(ws, out), "photos": [str(p)]})


@case("protocol job: build a bundle that does not exist", "serve", owner="package")
def _(ws, out):
    return _req("build", {"bundle_dir": str(ws.inputs / "nobundle"), "out_dir": str(out)})


@case("protocol job: build into a folder of the user's", "serve", owner="package")
def _(ws, out):
    return _req("build", {"bundle_dir": str(ws.bundle), "out_dir": str(ws.user_folder("proto_build_here"))})


@case("protocol job: animate into a folder of the user's", "serve", owner="rig/motion")
def _(ws, out):
    return _req("animate", {"frames": str(ws.frames), "out_dir": str(ws.user_folder("proto_animate_here"))})


@case("protocol job: retarget with a junk target", "serve", owner="retarget")
def _(ws, out):
    (p := ws.bad("proto_junk.glb")).write_bytes(os.urandom(3000))
    return _req("retarget", {"motion": str(ws.animation), "target": str(p), "out_dir": str(out)})


@case("protocol job: cancel a build mid-job", "serve", owner="options/jobs")
def _(ws, out):
    server = ws.server()
    server.send(_req("build", {"bundle_dir": str(ws.bundle), "out_dir": str(out)}, "tocancel"))
    if server.next(lambda m: m.get("id") == "tocancel", SERVE_TIMEOUT_S) is None:
        return Outcome(False, "", False, "the build never started")
    server.send(_req("cancel", {"target": "tocancel"}, "canceller"))
    msg = server.final("tocancel")
    if msg is None:
        return Outcome(False, "", False, "no final message after cancel")
    if msg["type"] == "result":
        return Outcome(False, "", False, "finished before the cancel arrived")
    err = msg["error"]
    return Outcome(err["code"] == "cancelled", err["message"], err["code"] == "internal", f"error {err['code']}")


@case("protocol job: a second request with a running job's id", "serve", owner="options/jobs")
def _(ws, out):
    server = ws.server()
    server.send(_req("build", {"bundle_dir": str(ws.bundle), "out_dir": str(out / "first")}, "twice"))
    if server.next(lambda m: m.get("id") == "twice", SERVE_TIMEOUT_S) is None:
        return Outcome(False, "", False, "the first build never started")
    server.send(_req("build", {"bundle_dir": str(ws.bundle), "out_dir": str(out / "second")}, "twice"))
    second = server.final("twice")
    server.send(_req("cancel", {"target": "twice"}, "cancel-twice"))
    first = server.final("twice")
    if second is None or second["type"] != "error":
        return Outcome(False, "", False, f"the second request got {second and second['type']}")
    err = second["error"]
    detail = f"error {err['code']}; first then: {first and (first.get('error') or {}).get('code', first['type'])}"
    if first is not None and first["type"] == "result":
        shutil.rmtree(out / "first")              # it finished before the cancel: a good output, not half-made
    return Outcome(err["code"] == "duplicate_id", err["message"], err["code"] == "internal", detail)


@case("protocol job: avatar with tasks that give no pointmap", "serve", owner="options/jobs")
def _(ws, out):
    started = time.monotonic()
    result = ask(ws, _req("avatar", {**_predict_params(ws, out), "cache_dir": str(ws.root / "cache")}))
    if time.monotonic() - started > 20:
        result.detail += f" after {time.monotonic() - started:.0f} s (the models ran first)"
        result.message = ""                 # refused only after the work: not the check asked for
    return result


@case("protocol params: avatar fuse 'yes'", "serve", owner="options/jobs")
def _(ws, out):
    return _req("avatar", {**_predict_params(ws, out), "fuse": "yes", "cache_dir": str(ws.root / "cache")})


@case("protocol job: avatar fusing one photo with itself", "serve", expect="any", owner="several views")
def _(ws, out):
    return _req("avatar", {**_predict_params(ws, out), "photos": [str(ws.photo), str(ws.photo)], "fuse": True,
                           "tasks": ["seg", "pose", "normal", "pointmap"], "cache_dir": str(ws.root / "cache")})


@case("protocol job: avatar with a rig but no pose task", "serve", owner="options/jobs")
def _(ws, out):
    return _req("avatar", {**_predict_params(ws, out), "tasks": ["seg", "pointmap"], "rig": "rigify",
                           "cache_dir": str(ws.root / "cache")})


@case("protocol job: avatar of a text file named .jpg", "serve", owner="options/jobs")
def _(ws, out):
    (p := ws.bad("proto_avatar_notes.jpg")).write_text("shopping list")
    return _req("avatar", {**_predict_params(ws, out), "photos": [str(p)], "cache_dir": str(ws.root / "cache")})


@case("photo: avatar of a text file named .jpg", owner="options/jobs")
def _(ws, out):
    (p := ws.bad("avatar_notes.jpg")).write_text("shopping list")
    return ["avatar", p, "--out", out, "--checkpoints", ws.ckpt, "--tasks", "pose", "--cache-dir", ws.root / "cache"]


for _name, _target in {"a list": [1], "an object": {"a": 1}, "a float": 1.5, "a boolean": True}.items():
    case(f"protocol request: cancel with a target that is {_name}", "serve", owner="options/jobs")(
        lambda ws, out, _target=_target: _req("cancel", {"target": _target}))


@case("protocol job: cancel a job that does not exist", "serve", expect="any", owner="options/jobs")
def _(ws, out):
    return _req("cancel", {"target": "nobody"})


@case("protocol: stdin closed mid-build (the build finishes, as documented)", "serve", expect="ok", fast=False,
      owner="options/jobs", check_ok=lambda ws, out: None if (out / "avatar.json").is_file() else "no avatar")
def _(ws, out):
    server = Server(ws)
    server.send(_req("build", {"bundle_dir": str(ws.bundle), "out_dir": str(out), "resolution": "quarter"}, "orphan"))
    server.next(lambda m: m.get("id") == "orphan", SERVE_TIMEOUT_S)
    server.proc.stdin.close()
    final = server.final("orphan")
    try:
        rc = server.proc.wait(timeout=SERVE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        return Outcome(False, "", False, "the engine kept running after its input ended", died=True)
    server.stderr.close()
    log = Path(server.stderr.name).read_text(errors="replace")
    refused = final is None or final["type"] != "result"
    return Outcome(refused or rc != 0, "" if final is None else json.dumps(final)[:200], "Traceback" in log, f"exit {rc}")


@case("protocol: the client goes away mid-build (both pipes closed)", "serve", owner="options/jobs")
def _(ws, out):
    server = Server(ws)
    server.send(_req("build", {"bundle_dir": str(ws.bundle), "out_dir": str(out)}, "abandoned"))
    server.next(lambda m: m.get("id") == "abandoned", SERVE_TIMEOUT_S)
    server.proc.stdin.close()
    server.proc.stdout.close()               # the engine's next message fails: the client is gone
    try:
        rc = server.proc.wait(timeout=SERVE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        return Outcome(False, "", False, "the engine kept running with no client", died=True)
    server.stderr.close()
    log = Path(server.stderr.name).read_text(errors="replace")
    # docs/protocol.md: a client that has gone away cancels every job, and the engine exits with code 3
    return Outcome(rc == 3, f"engine exited with code {rc} when its client went away", "Traceback" in log,
                   f"exit {rc} (3 documented)")


# --------------------------------------------------------------------------- running and classifying


@dataclass
class Result:
    case: Case
    verdict: str
    detail: str
    message: str
    seconds: float
    problems: list[str] = field(default_factory=list)


def run_case(ws: Workspace, c: Case) -> Result:
    out = ws.out / "".join(ch if ch.isalnum() else "_" for ch in c.name)[:80]
    started = time.monotonic()
    # taken before the case makes its inputs: files it adds are not in `before`, and a case that runs
    # and reruns inside make (a kill, then the same command) is judged on what it leaves at the end
    before = ws.snapshot()
    hidden_before = set(ws.hidden_leftovers())
    stray_before = len(ws._server.stray) if ws._server is not None else 0
    try:
        made = c.make(ws, out)
        if isinstance(made, Outcome):
            outcome = made
        elif c.via == "cli":
            outcome = run_cli(ws, made)
        elif isinstance(made, tuple):
            outcome = ask(ws, made[0], made[1])
        else:
            outcome = ask(ws, made)
        after = ws.snapshot()
    except Exception as exc:  # the harness itself failed: report it, do not hide it
        return Result(c, FAILED, f"{type(exc).__name__}: {exc}", "", time.monotonic() - started)
    problems = [DIED] if outcome.died else [HUNG] if outcome.hung else []
    if ws._server is not None and len(ws._server.stray) > stray_before:
        problems.append(STRAY)          # docs/protocol.md: stdout carries protocol messages only
    changed = sorted(p for p in before if before[p] != after.get(p))
    if changed:
        problems.append(DATA_LOST)
    if outcome.traceback:
        problems.append(TRACEBACK)
    leftovers = sorted(set(ws.hidden_leftovers()) - hidden_before)
    ok_wanted = c.expect == "ok" or (c.expect == "any" and not outcome.refused)
    if ok_wanted:
        if outcome.refused:
            problems.append(FAILED)
        elif c.check_ok is not None and (why := c.check_ok(ws, out)):
            problems.append(FAILED)
            outcome.detail += f"; {why}"
        if leftovers:
            problems.append(HALF_WRITTEN)
    else:
        if not outcome.refused:
            problems.append(ACCEPTED)
        elif not _words(outcome.message, c.least_words):
            problems.append(NO_WORDS)
        # a batch's report is its answer, not a half-made output (a bad item is a failed row)
        if leftovers or (out.exists() and any(not p.name.startswith("batch_report.") for p in out.iterdir())):
            problems.append(HALF_WRITTEN)
    detail = outcome.detail
    if changed:
        detail += "; changed: " + ", ".join(str(Path(p).relative_to(ws.root)) for p in changed[:3])
    if leftovers:
        detail += "; left: " + ", ".join(leftovers[:3])
    verdict = problems[0] if problems else HANDLED
    return Result(c, verdict, detail, outcome.message, time.monotonic() - started, problems)


def select(fast: bool = False, keywords: list[str] | None = None, slow_only: bool = False) -> list[Case]:
    """The cases to run: all, the fast ones, the slow ones, or those whose name holds one of `keywords`."""
    return [c for c in CASES if (not fast or c.fast) and (not slow_only or not c.fast)
            and (not keywords or any(k.lower() in c.name.lower() for k in keywords))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fast", action="store_true", help="only the cases without a model pass")
    ap.add_argument("--slow", action="store_true", help="only the cases with a model pass or a Ray start")
    ap.add_argument("-k", dest="keywords", action="append", help="only cases whose name contains this (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    cases = select(args.fast, args.keywords, args.slow)
    root = Path(tempfile.mkdtemp(prefix="sapiens-bad-inputs-"))
    ws = Workspace(root)
    results = []
    print(f"{len(cases)} cases in {root}", flush=True)
    try:
        for c in cases:
            r = run_case(ws, c)
            results.append(r)
            mark = "ok " if r.verdict == HANDLED else "!! "
            print(f"{mark}{r.verdict:12s} {r.seconds:5.1f}s  [{c.via:5s}] {c.name}", flush=True)
            if r.verdict != HANDLED:
                print(f"      {r.detail} | message: {r.message[:200]!r} | owner: {c.owner}", flush=True)
    finally:
        ws.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    handled = sum(r.verdict == HANDLED for r in results)
    data_loss = sum(DATA_LOST in r.problems for r in results)
    tracebacks = sum(TRACEBACK in r.problems for r in results)
    print()
    print(f"{'case':70s} {'via':5s} verdict")
    for r in results:
        print(f"{r.case.name[:70]:70s} {r.case.via:5s} {r.verdict}")
    print()
    died = sum(DIED in r.problems for r in results)
    print(f"cases tried: {len(results)}  handled: {handled}  data-loss cases: {data_loss}  "
          f"tracebacks shown to a user: {tracebacks}  engine deaths: {died}  other problems: {len(results) - handled}")
    by_verdict: dict[str, int] = {}
    for r in results:
        by_verdict[r.verdict] = by_verdict.get(r.verdict, 0) + 1
    print("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(by_verdict.items())))
    if args.json:
        args.json.write_text(json.dumps([{"case": r.case.name, "via": r.case.via, "verdict": r.verdict,
                                          "problems": r.problems, "detail": r.detail, "message": r.message,
                                          "owner": r.case.owner, "seconds": round(r.seconds, 2)} for r in results],
                                        indent=1))
    return 0 if handled == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
