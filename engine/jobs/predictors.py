"""One Predictor per model configuration per process, kept across jobs.

`serve` runs many jobs in one process: the second avatar with the same models must not load them
again. A Predictor is created cheaply (its models load on first use) and is kept here under its
model configuration; jobs that share one take turns (a Predictor runs one batch at a time).
Only MAX_KEPT configurations stay loaded: an idle one beyond that is closed, releasing its memory.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import EngineError

# the options that make a Predictor (engine.predict.Predictor's keywords)
MODEL_OPTIONS = ("tasks", "size", "checkpoints", "device", "backend", "dtype", "compile", "batch_size",
                 "max_memory", "allow_pickle", "seg_probs", "onnx_dir", "detail_crops")
MAX_KEPT = 1


@dataclass
class _Entry:
    predictor: object
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


_entries: dict[str, _Entry] = {}
_guard = threading.Lock()


def model_options(options: dict) -> dict:
    """The Predictor keywords among a job's options (the ones the job has)."""
    return {name: options[name] for name in MODEL_OPTIONS if name in options}


def _check_folders(model: dict) -> None:
    """Folders the models are read from or exported to, refused in words when a file is in the way
    (the ONNX export would otherwise fail inside os.makedirs after the checkpoints were read)."""
    for name in ("checkpoints", "onnx_dir"):
        path = model.get(name)
        if path is not None and Path(path).exists() and not Path(path).is_dir():
            raise EngineError(f"{name} {path}: is a file, not a folder")


def _key(model: dict) -> str:
    return json.dumps(model, sort_keys=True, default=str)


def _make(model: dict):
    from engine.predict import Predictor

    return Predictor(**model)


@contextmanager
def predictor_for(options: dict):
    """The process's Predictor for these model options, held for this job alone while inside."""
    model = model_options(options)
    _check_folders(model)
    key = _key(model)
    with _guard:
        entry = _entries.get(key)
        if entry is None:
            entry = _Entry(predictor=_make(model))  # checks tasks, checkpoints, device: before any work
            _entries[key] = entry
            _close_idle(keep=key)
        entry.users += 1
    try:
        with entry.lock:
            yield entry.predictor
    finally:
        with _guard:
            entry.users -= 1


def _close_idle(keep: str) -> None:
    """Close idle configurations beyond MAX_KEPT, oldest first (caller holds _guard)."""
    for key in [k for k in _entries if k != keep]:
        if len(_entries) <= MAX_KEPT:
            return
        if _entries[key].users == 0:
            _entries.pop(key).predictor.close()


def clear() -> None:
    """Release every idle Predictor (tests, shutdown)."""
    with _guard:
        for key in [k for k, e in _entries.items() if e.users == 0]:
            _entries.pop(key).predictor.close()
