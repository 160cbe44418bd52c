"""One engine job for the add-on, on a worker thread: `avatar` (a photo -> an avatar; the engine
predicts or reuses its cached predictions, then builds), `build` (Rebuild: the photo's recorded
predictions -> an avatar, no model pass) or `animate` (a folder of frames or a video). No bpy.

A Pipeline runs on its own thread so Blender's UI never waits on the engine; Blender's side
(a modal operator, the batch runner, a test) calls `poll()` from the main thread to read the
progress and, once `state` is "ready", imports `avatar_dir` itself (bpy is main-thread only).

The parameters come from the panel and the preferences under the engine's option names and go
unchanged; the pipeline adds only where things go. Every photo (or sequence) gets an output folder
keyed by its path, size and modification time, with one avatar folder per set of options; the
engine keeps predictions in `CACHE_ROOT/predictions` (keyed by photo content, models and
options), and the bundle an `avatar` run used is recorded in the photo's folder for Rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .engine_client import ENGINE_DIED, EngineClient, EngineClientError

# states a pipeline goes through; "ready", "error" and "cancelled" are final
FINAL_STATES = ("ready", "error", "cancelled")
POLL_INTERVAL_S = 0.05




@dataclass
class RunRequest:
    """What to run: the engine job, its input (a photo, or a sequence's folder or video file) and
    the job's parameters as the engine names them."""

    photos: list[str]  # the photo; for a sequence, its frames folder or video file
    cache_root: Path
    # avatar | build (Rebuild: the photo's recorded predictions) | bundle (photos[0] is a
    # predictions bundle: `build` it) | animate
    method: str = "avatar"
    params: dict = field(default_factory=dict)
    debug_sleep_steps: int = 0  # > 0: run debug.sleep first (client tests; needs serve --debug)

    @property
    def name(self) -> str:
        return photo_name(self.photos[0])


def photo_name(photo: str | os.PathLike) -> str:
    """A readable name for datablocks and folders: the photo's stem, without odd characters."""
    stem = Path(photo).stem or "photo"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:48]


def photo_cache_dir(cache_root: Path, photo: str | os.PathLike) -> Path:
    """The cache folder of one photo: same photo file (path, size, mtime) -> same folder."""
    path = Path(photo).resolve()
    try:
        stat = path.stat()
        identity = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        identity = str(path)
    digest = hashlib.sha1(identity.encode("utf-8")).hexdigest()[:10]
    return Path(cache_root) / f"{photo_name(photo)}-{digest}"


def with_glb(params: dict) -> dict:
    """The add-on imports the glb: it is among the formats asked for."""
    formats = params.get("formats")
    if formats is None or "glb" in formats:
        return dict(params)
    return {**params, "formats": ["glb", *formats]}


def job_params(params: dict, job: str) -> dict:
    """The parameters `job` takes (engine_options.json), of a set meant for a wider job."""
    from .option_table import load_table

    table = load_table()
    return {k: v for k, v in params.items() if k in table and job in table[k].jobs}


def options_key(options: dict) -> str:
    return hashlib.sha1(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:10]


def cached_bundle(cache_dir: Path) -> Path | None:
    """The bundle a previous run left in `cache_dir` (recorded in cache.json), if it still exists."""
    try:
        record = json.loads((cache_dir / "cache.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    bundle = Path(record.get("bundle", ""))
    return bundle if record.get("bundle") and bundle.is_dir() else None


def _record_bundle(cache_dir: Path, bundle: Path, photo: str) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / "cache.json.tmp"
    tmp.write_text(json.dumps({"photo": str(photo), "bundle": str(bundle), "time": time.time()}), encoding="utf-8")
    os.replace(tmp, cache_dir / "cache.json")


class Pipeline:
    """predict -> build on a worker thread; poll() from the UI; cancel() from anywhere."""

    def __init__(self, request: RunRequest, get_client):
        self.request = request
        self._get_client = get_client  # () -> a started EngineClient (restarting a dead one)
        self.state = "starting"
        self.stage = "engine"
        self.fraction = 0.0
        self.message = "starting the engine"
        self.error: str | None = None
        self.error_code: str | None = None
        self.avatar_dir: Path | None = None
        self.bundle_dir: Path | None = None
        self.used_cache = False
        # every progress step in order, (stage, fraction, message): the engine's messages per
        # stage, task and batch, and the pipeline's own; blocking callers print them as they come
        self.events: list[tuple[str, float, str]] = []
        self._cancel = threading.Event()
        self._job = None
        self._client: EngineClient | None = None
        self._thread = threading.Thread(target=self._run, name="sapiens-pipeline", daemon=True)

    def start(self) -> "Pipeline":
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def poll(self) -> tuple[str, str, float, str]:
        """(state, stage, fraction, message) as of now; cheap, for timers."""
        job = self._job
        if job is not None and not job.finished and self.state not in FINAL_STATES:
            self.stage, self.fraction, self.message = job.stage or self.stage, job.fraction, job.message
        return self.state, self.stage, self.fraction, self.message

    def cancel(self) -> None:
        self._cancel.set()
        job, client = self._job, self._client
        if job is not None and client is not None:
            client.cancel(job)

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.finished

    # --- worker thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._client = self._get_client()
            if self._cancel.is_set():
                return self._finish("cancelled", "cancelled before the engine started")
            request = self.request
            if request.debug_sleep_steps > 0:
                self.state = "debug"
                if not self._step("debug.sleep", {"steps": request.debug_sleep_steps, "interval": 0.05}):
                    return
            cache_dir = photo_cache_dir(request.cache_root, request.photos[0])
            if request.method == "bundle":
                return self._build(Path(request.photos[0]), cache_dir)
            {"avatar": self._avatar, "build": self._rebuild, "animate": self._animate}[request.method](cache_dir)
        except EngineClientError as exc:
            self._finish("error", str(exc), ENGINE_DIED if "stopped unexpectedly" in str(exc) else "engine_error")
        except Exception as exc:  # a bug here must still end the run, not hang the UI
            self._finish("error", f"{type(exc).__name__}: {exc}", "internal")

    def _avatar(self, cache_dir: Path) -> None:
        """A photo -> an avatar with the engine's `avatar` job (its prediction cache decides
        whether the models run); the bundle it used is recorded for Rebuild."""
        request = self.request
        params = with_glb(request.params)
        self.state = "building"
        # the other views (fused photos) are part of what the avatar is made of
        key = options_key({**params, "views": [str(p) for p in request.photos[1:]]} if len(request.photos) > 1 else params)
        result = self._step("avatar", {
            **params, "photos": [str(p) for p in request.photos],
            "out_dir": str(cache_dir / f"avatars-{key}"),
            "cache_dir": str(Path(request.cache_root) / "predictions"),
        })
        if result is None:
            return
        avatars = result.get("avatars") or []
        if not avatars:
            failed = (result.get("failed") or [{}])[0]
            return self._finish("error", failed.get("message") or "the engine made no avatar", "engine_error")
        avatar = avatars[0]
        if avatar.get("bundle_dir"):
            self.bundle_dir = Path(avatar["bundle_dir"])
            _record_bundle(cache_dir, self.bundle_dir, request.photos[0])
        self.used_cache = avatar.get("predictions") == "cached"
        self.avatar_dir = Path(avatar["avatar_dir"])
        self._finish("ready", f"avatar built in {self.avatar_dir}")

    def _rebuild(self, cache_dir: Path) -> None:
        """Rebuild: the photo's recorded predictions -> an avatar with `build` (no model pass)."""
        bundle = cached_bundle(cache_dir)
        if bundle is None:
            return self._finish("error", "No cached predictions for this photo yet: run Build Avatar once first",
                                "bad_params")
        self.used_cache = True
        self._build(bundle, cache_dir)

    def _build(self, bundle: Path, cache_dir: Path) -> None:
        """A predictions bundle -> an avatar with `build` (no model pass)."""
        self.bundle_dir = bundle
        params = with_glb(job_params(self.request.params, "build"))
        self.state = "building"
        out = cache_dir / f"avatar-{options_key(params)}"
        result = self._step("build", {**params, "bundle_dir": str(bundle), "out_dir": str(out)})
        if result is None:
            return
        self.avatar_dir = Path(result.get("avatar_dir") or out)
        self._finish("ready", f"avatar built in {self.avatar_dir}")

    def _animate(self, cache_dir: Path) -> None:
        """A sequence -> an animated skeleton folder (animation.glb, skeleton.json, animation.json)."""
        params = with_glb(self.request.params)
        self.state = "animating"
        out = cache_dir / f"animation-{options_key(params)}"
        result = self._step("animate", {**params, "frames": str(self.request.photos[0]), "out_dir": str(out)})
        if result is None:
            return
        self.avatar_dir = Path(result.get("output") or out)
        self._finish("ready", f"animation written to {self.avatar_dir}")

    def _step(self, method: str, params: dict) -> dict | None:
        """Run one engine job to its end; None (and a final state) when it did not succeed."""
        if self._cancel.is_set():
            self._finish("cancelled", f"cancelled before {method}")
            return None
        self._note(method, 0.0, f"{method} started")
        job = self._job = self._client.submit(method, params)
        if self._cancel.is_set():  # cancel() may have run before the job existed
            self._client.cancel(job)
        seen = 0
        while not job.wait(POLL_INTERVAL_S):
            seen = self._copy_progress(job, seen)
        self._copy_progress(job, seen)
        if job.state == "done":
            return job.result or {}
        code = (job.error or {}).get("code", "engine_error")
        if code == "cancelled":
            self._finish("cancelled", f"{method} was cancelled")
        else:
            self._finish("error", job.error_message or f"{method} failed", code)
        return None

    def _note(self, stage: str, fraction: float, message: str) -> None:
        self.stage, self.fraction, self.message = stage, fraction, message
        self.events.append((stage, fraction, message))

    def _copy_progress(self, job, seen: int) -> int:
        log = job.progress_log
        end = len(log)
        self.events.extend(log[seen:end])
        return end

    def _finish(self, state: str, message: str, code: str | None = None) -> None:
        self.events.append((state, self.fraction if state != "ready" else 1.0, message))
        self.message = message
        if state == "error":
            self.error, self.error_code = message, code
        self.state = state



def format_progress(stage: str, fraction: float, message: str) -> str:
    """One progress line as the engine's CLI prints it: `stage  42.0% message`."""
    return f"{stage} {fraction * 100:5.1f}% {message}"


class ProgressPrinter:
    """For blocking runs (scripts, the batch): print a pipeline's new progress steps on each call."""

    def __init__(self, write=None, prefix: str = ""):
        self.write = write or (lambda line: print(line, flush=True))
        self.prefix, self.cursor = prefix, 0

    def __call__(self, pipeline: Pipeline) -> None:
        events = pipeline.events
        end = len(events)
        for event in events[self.cursor:end]:
            self.write(f"{self.prefix}{format_progress(*event)}")
        self.cursor = end
