"""One run of the engine for the add-on: predict (or reuse cached predictions), then build; or
animate a sequence (a folder of frames or predicted bundles, or a video). No bpy.

A Pipeline runs on its own thread so Blender's UI never waits on the engine; Blender's side
(a modal operator, the batch runner, a test) calls `poll()` from the main thread to read the
progress and, once `state` is "ready", imports `avatar_dir` itself (bpy is main-thread only).

Cached predictions: every photo gets a cache folder keyed by its path, size and modification
time; its predictions bundle stays there, so changing mesh options rebuilds without running the
models again. Each set of build options gets its own avatar folder next to it. A sequence gets a
cache folder keyed the same way (by the folder or video file) with one animation folder per set
of animate options.
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
    """What to run: one photo (predict + build), or a sequence (animate) and the engine's options."""

    photos: list[str]  # the photo; for a sequence, its frames folder or video file
    cache_root: Path
    predict_options: dict = field(default_factory=dict)  # keywords of the `predict` method
    build_options: dict = field(default_factory=dict)  # keywords of the `build` method
    reuse_predictions: bool = True
    debug_sleep_steps: int = 0  # > 0: run debug.sleep first (client tests; needs serve --debug)
    animate_options: dict | None = None  # set: run `animate` on photos[0] with these keywords

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
            if request.animate_options is not None:
                return self._animate(cache_dir)
            bundle = cached_bundle(cache_dir) if request.reuse_predictions else None
            if bundle is None:
                self.state = "predicting"
                out = cache_dir / "predictions"
                params = {"photos": [str(p) for p in request.photos], "out_dir": str(out), **request.predict_options}
                result = self._step("predict", params)
                if result is None:
                    return
                bundles = result.get("bundles") or []
                if not bundles:
                    return self._finish("error", "the engine found no person in the photo", "engine_error")
                bundle = Path(bundles[0])
                _record_bundle(cache_dir, bundle, request.photos[0])
            else:
                self.used_cache = True
                self._note("predict", 1.0, f"cached predictions: {bundle}")
            self.bundle_dir = bundle
            self.state = "building"
            out = cache_dir / f"avatar-{options_key(request.build_options)}"
            result = self._step("build", {"bundle_dir": str(bundle), "out_dir": str(out), **request.build_options})
            if result is None:
                return
            self.avatar_dir = Path(result.get("avatar_dir") or out)
            self._finish("ready", f"avatar built in {self.avatar_dir}")
        except EngineClientError as exc:
            self._finish("error", str(exc), ENGINE_DIED if "stopped unexpectedly" in str(exc) else "engine_error")
        except Exception as exc:  # a bug here must still end the run, not hang the UI
            self._finish("error", f"{type(exc).__name__}: {exc}", "internal")

    def _animate(self, cache_dir: Path) -> None:
        """A sequence -> an animated skeleton folder (animation.glb, skeleton.json, animation.json)."""
        options = self.request.animate_options
        self.state = "animating"
        out = cache_dir / f"animation-{options_key(options)}"
        result = self._step("animate", {"frames": str(self.request.photos[0]), "out_dir": str(out), **options})
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
