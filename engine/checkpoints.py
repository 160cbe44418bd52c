"""Where checkpoints live, which are installed, and fetching the released ones from the hub.

Layout (the reference tools' own): ROOT/pose/sapiens2_0.4b_pose.safetensors,
ROOT/seg/..., ROOT/normal/..., ROOT/pointmap/..., ROOT/albedo/..., ROOT/pretrain/sapiens2_{size}_pretrain.safetensors.
ROOT is --checkpoints, else $SAPIENS_CHECKPOINTS, else $SAPIENS_CHECKPOINT_ROOT (the reference
scripts' variable), else ~/.cache/sapiens-blender/checkpoints.

Downloads use huggingface_hub's own HEAD (metadata: commit, sha256 etag, size) and streaming GET
(with Range for resume), into `NAME.part` beside the target; an interrupted download resumes from
the .part next time; the finished file must have the hub's size and sha256 before it is renamed
into place. HF_ENDPOINT (read at call time) points it at a mirror.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.errors import CheckpointError
from engine.options import path_lookup_problem

TASKS = ("pose", "seg", "normal", "pointmap", "albedo")
TASK_SIZES = ("0.4b", "0.8b", "1b", "5b")
PRETRAIN_SIZES = ("0.1b", "0.4b", "0.8b", "1b", "5b", "1b_4k")
# tasks whose weights are not on the hub yet (the head is defined; files may come from elsewhere)
UNPUBLISHED = {"albedo"}
PICKLE_SUFFIXES = (".pth", ".bin", ".pt")
DEFAULT_ROOT = Path.home() / ".cache" / "sapiens-blender" / "checkpoints"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
HASH_CHUNK = 8 * 1024 * 1024

Progress = Callable[[str, float, str], None]


def checkpoints_root(explicit: str | os.PathLike | None = None) -> Path:
    for source, candidate in (("--checkpoints", explicit), ("SAPIENS_CHECKPOINTS", os.environ.get("SAPIENS_CHECKPOINTS")),
                              ("SAPIENS_CHECKPOINT_ROOT", os.environ.get("SAPIENS_CHECKPOINT_ROOT"))):
        if candidate:
            root = Path(candidate).expanduser()
            if problem := path_lookup_problem(root):
                raise CheckpointError(f"{source} {problem}")
            return root
    return DEFAULT_ROOT


def checkpoint_filename(task: str, size: str) -> str:
    return f"sapiens2_{size}_{task}.safetensors"


def checkpoint_path(root: Path, task: str, size: str) -> Path:
    return Path(root) / task / checkpoint_filename(task, size)


def hub_repo(task: str, size: str) -> str:
    # hub repo names spell the 4K variant with a dash
    return f"facebook/sapiens2-{task}-{size.replace('_', '-')}"


def download_command(task: str, size: str) -> str:
    return f"sapiens-engine download --size {size} --tasks {task}"


def check_task_size(task: str, size: str) -> None:
    if task == "pretrain":
        if size not in PRETRAIN_SIZES:
            raise CheckpointError(f"no pretrain checkpoint of size {size}; sizes: {', '.join(PRETRAIN_SIZES)}")
        return
    if task not in TASKS:
        raise CheckpointError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if size not in TASK_SIZES:
        raise CheckpointError(f"no {task} checkpoint of size {size}; sizes: {', '.join(TASK_SIZES)}")


def find_checkpoint(task: str, size: str, root: Path, *, allow_pickle: bool = False) -> Path:
    """The checkpoint file for task and size, or a CheckpointError that says how to get it."""
    check_task_size(task, size)
    path = checkpoint_path(root, task, size)
    if path.is_file():
        return path
    pickled = [path.with_suffix(s) for s in PICKLE_SUFFIXES if path.with_suffix(s).is_file()]
    if pickled and allow_pickle:
        return pickled[0]
    if pickled:
        raise CheckpointError(
            f"{pickled[0]}: only a {pickled[0].suffix} file is present for {task} {size}. Such files "
            "can run code when loaded, so they are used only with --allow-pickle (then loaded with "
            f"torch.load(weights_only=True)); or get the safetensors file: {download_command(task, size)}")
    how = (f"get it with `{download_command(task, size)}`" if task not in UNPUBLISHED
           else f"no {task} checkpoint is published yet; place one there by hand")
    raise CheckpointError(
        f"no {task} checkpoint of size {size}: expected {path}; {how} "
        "(or point --checkpoints / SAPIENS_CHECKPOINTS at a directory that has it)")


@dataclass
class Installed:
    task: str
    size: str
    path: Path
    present: bool              # a file is there
    bytes: int | None
    problem: str | None = None  # why that file is not a usable checkpoint (from its header)

    @property
    def installed(self) -> bool:
        return self.present and self.problem is None

    def as_dict(self) -> dict:
        return {"task": self.task, "size": self.size, "path": str(self.path), "present": self.present,
                "installed": self.installed, "problem": self.problem, "bytes": self.bytes,
                "published": self.task not in UNPUBLISHED}


def checkpoint_problem(path: Path, task: str, size: str) -> str | None:
    """Why the file at `path` is not the `task` checkpoint of `size`, read from its header alone
    (no tensor is loaded): truncated or not safetensors, another task's head, another size."""
    from engine.models.loading import HEAD_OUTPUT
    from engine.models.safetensors_mmap import read_header
    from engine.models.sapiens2 import ARCHS

    try:
        header, _ = read_header(path)
    except CheckpointError as exc:
        return str(exc).removeprefix(f"{path}: ")
    heads = [t for t, name in HEAD_OUTPUT.items() if f"decode_head.{name}.weight" in header]
    if heads != [task]:
        held = f"a {heads[0]} checkpoint" if len(heads) == 1 else "no task head" if not heads else \
            f"several heads ({', '.join(heads)})"
        return f"holds {held}, not {task}: a misplaced or renamed file"
    embed = header.get("backbone.patch_embed.projection.weight", {}).get("shape")
    dims = ARCHS.get(f"sapiens2_{size}", {}).get("embed_dims")
    if embed and dims and embed[0] != dims:
        found = next((a.removeprefix("sapiens2_") for a, c in ARCHS.items() if c["embed_dims"] == embed[0]), None)
        return f"holds a {found or str(embed[0]) + '-wide'} model, not {size}: a misplaced or renamed file"
    return None


def list_checkpoints(root: Path, sizes=TASK_SIZES, tasks=TASKS) -> list[Installed]:
    """Each expected checkpoint: present or not, and for a present file whether its header fits."""
    rows = []
    for size in sizes:
        for task in tasks:
            path = checkpoint_path(root, task, size)
            present = path.is_file()
            rows.append(Installed(task, size, path, present, path.stat().st_size if present else None,
                                  checkpoint_problem(path, task, size) if present else None))
    return rows


# --------------------------------------------------------------------------- hashing


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    """sha256 of a file, cached in `NAME.sha256` beside it (keyed by size and mtime)."""
    path = Path(path)
    stat = path.stat()
    sidecar = path.with_name(path.name + ".sha256")
    key = f"{stat.st_size} {stat.st_mtime_ns}"
    try:
        digest, cached_key = sidecar.read_text().split("\n")[:2]
        if cached_key == key and SHA256_RE.match(digest):
            return digest
    except (OSError, ValueError):
        pass
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress("hash", done / max(stat.st_size, 1), path.name)
    digest = h.hexdigest()
    try:
        sidecar.write_text(f"{digest}\n{key}\n")
    except OSError:
        pass  # a read-only checkpoint directory only costs re-hashing next time
    return digest


# --------------------------------------------------------------------------- download


def _progress_bar_class(progress: Progress | None, label: str):
    """A tqdm subclass that shows nothing and reports bytes to `progress` (hub's tqdm_class hook)."""
    from tqdm.auto import tqdm

    class ReportingBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["disable"] = True
            self._total_bytes = kwargs.get("total")
            self._done_bytes = kwargs.get("initial") or 0
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            self._done_bytes += n or 0
            if progress and self._total_bytes:
                progress("download", min(self._done_bytes / self._total_bytes, 1.0),
                         f"{label}: {self._done_bytes / 1e6:.0f} / {self._total_bytes / 1e6:.0f} MB")
            return super().update(n)

    return ReportingBar


def download_checkpoint(task: str, size: str, root: Path, *, revision: str = "main",
                        token: str | None = None, progress: Progress | None = None) -> Path:
    """Fetch one released checkpoint into the layout; resumes a .part; verifies size and sha256."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    check_task_size(task, size)
    if task in UNPUBLISHED:
        raise CheckpointError(f"no {task} checkpoint is published on the hub yet; place one by hand at "
                              f"{checkpoint_path(root, task, size)}")
    repo, filename = hub_repo(task, size), checkpoint_filename(task, size)
    dest = checkpoint_path(root, task, size) if task != "pretrain" else Path(root) / "pretrain" / filename
    endpoint = os.environ.get("HF_ENDPOINT") or None
    url = hf_hub_url(repo, filename, revision=revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url, token=token, endpoint=endpoint)
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        raise CheckpointError(f"{repo}/{filename}: the hub answered {status or 'an error'} "
                              f"({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # connection refused, DNS, TLS: the hub's HTTP layer raises its own types
        raise CheckpointError(f"cannot reach the hub for {repo} ({type(exc).__name__}: {exc}); "
                              f"download {filename} by hand and place it at {dest}") from None
    expected_sha = meta.etag if meta.etag and SHA256_RE.match(meta.etag) else None
    if dest.is_file() and _matches(dest, meta.size, expected_sha, progress):
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"{dest.parent}: cannot create ({exc.strerror})") from None
    part = dest.with_name(dest.name + ".part")
    resume = part.stat().st_size if part.is_file() else 0
    if meta.size is not None and resume > meta.size:
        part.unlink()
        resume = 0
    try:
        with open(part, "ab") as f:
            http_get(meta.location, f, resume_size=resume, expected_size=meta.size,
                     headers=build_hf_headers(token=token), displayed_filename=filename,
                     tqdm_class=_progress_bar_class(progress, filename))
    except OSError as exc:
        raise CheckpointError(f"{part}: cannot write ({exc.strerror or exc})") from None
    except Exception as exc:
        raise CheckpointError(f"{repo}/{filename}: download interrupted ({exc}); run the same command "
                              f"again to resume from {part.stat().st_size if part.exists() else 0} bytes") from None
    got_size = part.stat().st_size
    if meta.size is not None and got_size != meta.size:
        raise CheckpointError(f"{part}: {got_size} bytes, the hub says {meta.size}; run again to resume")
    if expected_sha is not None:
        digest = sha256_file(part, progress)
        if digest != expected_sha:
            part.unlink()
            part.with_name(part.name + ".sha256").unlink(missing_ok=True)
            raise CheckpointError(f"{repo}/{filename}: sha256 {digest} does not match the hub's "
                                  f"{expected_sha}; the partial file was deleted, run again")
        # keep the hash so provenance does not read the file again
        os.replace(part.with_name(part.name + ".sha256"), dest.with_name(dest.name + ".sha256"))
    os.replace(part, dest)
    return dest


def _matches(path: Path, size: int | None, sha: str | None, progress) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return sha is None or sha256_file(path, progress) == sha
