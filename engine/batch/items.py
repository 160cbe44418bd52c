"""What identifies an item's work, and the record that makes a batch resumable.

An item's key is a hash of its input's content (the photo's bytes; a bundle's files), the model
files (path, size, modification time) and every option that changes its outputs. Each item's
folder OUT/NAME holds its outputs and `batch_item.json`, written last and atomically by the
worker that finished the item: {key, status (done or failed), outputs, timings, error}; the
driver writes it first with status pending, so a folder with a record is the batch's. A rerun
skips an item whose record has its key and status done (and whose outputs are there), and one
that failed with the same key unless retry_failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from engine.options import OPTIONS

RECORD = "batch_item.json"
RECORD_VERSION = "1.0"
# options that change what an item's outputs are (not where the work runs or how fast)
# (the model pass's that do, then every build option from the option table)
OUTPUT_OPTIONS = ("steps", "tasks", "size", "dtype", "bbox", "seg_probs", "all_people",
                  *(o.name for o in OPTIONS if "build" in o.jobs and o.name not in ("bundle_dir", "views", "out_dir")))


def input_digest(path: Path, kind: str) -> str:
    """Content of a photo (sha256 of its bytes), or of a bundle (its files' names and bytes)."""
    digest = hashlib.sha256()
    files = [path] if kind == "photo" else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() if kind == "bundle" else b"")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_files(options: dict) -> dict:
    """The checkpoint files the run's models come from: path, size, modification time."""
    from engine.checkpoints import TASKS, checkpoint_path, checkpoints_root

    if "predict" not in options.get("steps", ()):
        return {}
    root = checkpoints_root(options.get("checkpoints"))
    sizes = options.get("size") or "0.4b"
    files = {}
    for task in options.get("tasks") or TASKS:
        size = sizes.get(task, "0.4b") if isinstance(sizes, dict) else sizes
        path = checkpoint_path(root, task, size)
        if path.is_file():
            stat = path.stat()
            files[task] = [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    return files


def item_key(digest: str, models: dict, options: dict) -> str:
    from engine import __version__

    chosen = {name: options.get(name) for name in OUTPUT_OPTIONS}
    text = json.dumps({"engine": __version__, "input": digest, "models": models, "options": chosen},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def read_record(item_dir: Path) -> dict | None:
    try:
        record = json.loads((item_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_complete(item_dir: Path, key: str) -> bool:
    record = read_record(item_dir)
    if not record or record.get("key") != key or record.get("status") != "done":
        return False
    return all((item_dir / rel).exists() for rel in (record.get("outputs") or {}).values())


def failed_before(item_dir: Path, key: str) -> dict | None:
    record = read_record(item_dir)
    if record and record.get("key") == key and record.get("status") == "failed":
        return record
    return None


def write_record(item_dir: Path, record: dict) -> None:
    """batch_item.json, atomically (a temporary file renamed over the old record)."""
    item_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{RECORD}.", suffix=".tmp", dir=item_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"version": RECORD_VERSION, **record}, f, indent=1, default=str)
        os.replace(tmp, item_dir / RECORD)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
