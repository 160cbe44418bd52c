"""File-level building blocks every writer shares: atomic output directories and EXR images.

An output directory (a bundle, an avatar, an animation) is written into a hidden temporary
directory beside its target and published by a rename only when complete, so a crash, a cancel or
a full disk never leaves something that looks finished. Publishing never replaces what is not an
earlier output of the same kind: the target must be new, empty, or hold the manifest the new
output holds (bundle.json, avatar.json, animation.json). An earlier output is moved aside to a
hidden backup, the new one renamed in, the backup deleted.

Hidden names carry the writer's host and process id (`.NAME.HOST-PID.XXXX.tmp`, `.NAME.HOST-PID.old`),
so the next writer into the same folder cleans what dead processes of this host left: a stale
temporary is deleted; a backup whose output is missing (the process died between the two renames)
is renamed back, one whose output is present is deleted.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from engine.errors import EngineError

# the file that marks each kind of output directory, and what to call that kind
MANIFESTS = {"bundle.json": "a predictions bundle", "avatar.json": "an avatar", "animation.json": "an animation",
             "gt.json": "a synthetic sample"}

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0]) or "host"
_HIDDEN = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)(?:\.[^./]+\.tmp|\.old)$")
SWEEP_INTERVAL_S = 60.0
_swept: dict[Path, float] = {}   # folder -> when this process last cleaned it
_sweep_lock = threading.Lock()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(parent: Path) -> list[str]:
    """Clean what dead processes of this host left in `parent` (see the module doc); what was done."""
    done = []
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(".")]
    except OSError:
        return done
    for entry in entries:
        m = _HIDDEN.match(entry.name)
        if not m or m["host"] != _HOST or int(m["pid"]) == os.getpid() or _process_alive(int(m["pid"])):
            continue
        path = Path(entry.path)
        target = path.parent / m["name"]
        try:
            if entry.name.endswith(".old") and not (target.exists() or target.is_symlink()):
                os.replace(path, target)
                done.append(f"recovered {target} from its backup")
            else:
                shutil.rmtree(path)
                done.append(f"removed {path}")
        except OSError:
            pass  # another writer got there first, or it is not ours to remove
    return done


def _sweep(parent: Path) -> None:
    """Clean `parent` before writing there, at most once a minute (a batch writes thousands of
    outputs into one folder; a listing per output would cost more than the outputs)."""
    key, now = parent.resolve(), time.monotonic()
    with _sweep_lock:
        if now - _swept.get(key, -SWEEP_INTERVAL_S) < SWEEP_INTERVAL_S:
            return
        _swept[key] = now
    clean_stale(parent)


def staging_dir(out_dir: Path, error: type[EngineError] = EngineError) -> Path:
    """A fresh hidden directory beside `out_dir`, on the same file system so a rename is atomic."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _sweep(out_dir.parent)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{_HOST}-{os.getpid()}.", suffix=".tmp",
                                     dir=out_dir.parent))
    except OSError as exc:
        raise error(f"{out_dir}: cannot create the output directory ({exc.strerror or exc})") from exc


def refusal(out_dir: Path, manifest: str | None) -> str | None:
    """Why `out_dir` may not be replaced by an output marked by `manifest`; None when it may."""
    if not (out_dir.exists() or out_dir.is_symlink()):
        return None
    if out_dir.is_symlink() or not out_dir.is_dir():
        return f"{out_dir}: exists and is not a folder; not replaced. Move it away or choose another output"
    if not any(out_dir.iterdir()):
        return None
    if manifest is not None and (out_dir / manifest).is_file():
        return None
    noun = MANIFESTS.get(manifest, "an earlier output of this kind") if manifest else "an earlier output of this kind"
    has = f" (no {manifest})" if manifest else ""
    return (f"{out_dir}: exists and is not {noun}{has}; its contents were not replaced. "
            "Move it away or choose another output")


def _manifest_of(tmp: Path) -> str | None:
    return next((name for name in MANIFESTS if (tmp / name).is_file()), None)


def publish_dir(tmp: Path, out_dir: Path, error: type[EngineError] = EngineError) -> None:
    """Rename the finished `tmp` to `out_dir`, replacing only an earlier output of the same kind."""
    reason = refusal(out_dir, _manifest_of(tmp))
    if reason:
        raise error(reason)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.{_HOST}-{os.getpid()}.old"
        if old.exists():  # this process's own backup of an earlier publish that failed midway
            shutil.rmtree(old)
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        if old is not None and not out_dir.exists():
            os.replace(old, out_dir)  # the earlier output stays where it was
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_directory(out_dir: str | os.PathLike, error: type[EngineError] = EngineError):
    """`with atomic_directory(out) as tmp:` write into tmp; out appears whole, or not at all.

    Refused (`error`, in words) when `out` exists and is neither empty nor an earlier output with
    the manifest the new one has."""
    out_dir = Path(out_dir)
    tmp = staging_dir(out_dir, error)
    try:
        yield tmp
        publish_dir(tmp, out_dir, error)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        elsewhere = _outside(exc.filename, tmp, out_dir)
        if elsewhere is not None:
            # a file the job reads (an asset, an input) failed, not the output being written
            raise error(f"{elsewhere}: cannot read ({_os_words(exc)}); {out_dir} was not written") from exc
        raise error(f"{out_dir}: cannot write ({_os_words(exc)})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _outside(filename, *folders: Path) -> str | None:
    """`filename` when it names a file outside every one of `folders`; else None."""
    if not filename:
        return None
    try:
        path = Path(os.fsdecode(filename)).resolve()
    except (TypeError, ValueError, OSError):
        return None
    for folder in folders:
        if path == folder.resolve() or folder.resolve() in path.parents:
            return None
    return str(filename)


def _os_words(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    return exc.strerror or str(exc)


def write_exr(path: str | os.PathLike, rgb: np.ndarray, half: bool = False) -> None:
    """H x W x 3 values as a zip-compressed RGB EXR (float32, or half floats)."""
    import OpenEXR

    pixels = np.ascontiguousarray(rgb, dtype=np.float16 if half else np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    try:
        with OpenEXR.File(header, {"RGB": pixels}) as exr:
            exr.write(str(path))
    except RuntimeError as exc:  # OpenEXR reports a failed write (a full disk too) as RuntimeError
        if "no space left" in str(exc).lower():
            raise OSError(errno.ENOSPC, "no space left on device", str(path)) from exc
        raise OSError(errno.EIO, f"EXR not written ({exc})", str(path)) from exc


def read_exr(path: str | os.PathLike, error: type[EngineError] = EngineError) -> np.ndarray:
    """H x W x 3 float32 from an RGB EXR (half or float channels)."""
    import OpenEXR

    try:
        try:
            # R, G and B of one pixel type come grouped, H x W x 3 as decoded (no stack of
            # three planes); other channels, or R, G, B of mixed types, are read one by one
            channels = OpenEXR.File(str(path)).channels()
        except ValueError as exc:
            if "coalesce" not in str(exc):  # a damaged file: said below
                raise
            channels = {}  # "cannot coalesce channels into RGB" (mixed pixel types)
        grouped = channels.get("RGB")
        if grouped is not None and grouped.pixels.ndim == 3 and grouped.pixels.shape[2] == 3:
            return grouped.pixels.astype(np.float32, copy=False)
        channels = OpenEXR.File(str(path), separate_channels=True).channels()
    except Exception as exc:  # OpenEXR raises plain RuntimeError on a damaged file
        raise error(f"{path}: not a readable EXR file ({exc})") from exc
    missing = [c for c in "RGB" if c not in channels]
    if missing:
        raise error(f"{path}: EXR lacks channel(s) {', '.join(missing)} (has {sorted(channels)})")
    return np.stack([channels[c].pixels for c in "RGB"], axis=-1).astype(np.float32)
