"""Every user-facing option of the engine's jobs, declared once.

One table, OPTIONS, says for each option its name, kind, choices, range, default, label, help and
which jobs use it. From it come:

- the CLI options of every command (`add_arguments(parser, job)`): `max_faces` -> `--max-faces`;
- the protocol's parameter checks (`validate(job, params)`): an ill-typed or out-of-range value is
  an `invalid_params` error naming the parameter, raised before any other check or any work;
- `capabilities`' option list and the JSON export the Blender add-on draws its panel and reads its
  batch keys from (`export()`, written to sapiens_blender/engine_options.json by
  scripts/sync_options.py).

One name everywhere: the protocol and batch key, the Python keyword of the job, the CLI flag with
dashes, the panel's label. Old spellings stay accepted as aliases (`target_faces`, `--faces`,
`convention`). A new option is one entry here (plus its use in the job). docs/architecture.md
describes the table's shape.

This module is at the bottom of the engine's layers: it imports only engine.errors, engine.paths
and the standard library, so the server can validate a request without importing torch.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.errors import EngineError
from engine.paths import asset

OPTIONS_VERSION = 1

JOBS = ("predict", "build", "avatar", "animate", "retarget", "batch")
KINDS = ("bool", "int", "float", "choice", "choices", "string", "path", "paths", "box", "sizes", "bytes")

# The model tasks and sizes (engine.checkpoints.TASKS / TASK_SIZES: a test checks they agree; they
# are repeated here so that validating a request does not import the checkpoint machinery).
TASKS = ("pose", "seg", "normal", "pointmap", "albedo")
TASK_SIZES = ("0.4b", "0.8b", "1b", "5b")
REST_POSES = ("photo", "apose", "tpose")
# an optional choice's "off" (`--rig none`, `"rig": "none"`): null or a missing key means the
# job's default, which for `rig` is a rig
OFF = "none"
FORMATS = ("glb", "usd", "usdz", "obj", "ply", "bvh")


def rig_names() -> tuple[str, ...]:
    """The skeleton conventions in the engine's rig table (a name, never a path)."""
    return tuple(sorted(p.stem for p in asset("rigs").glob("*.json")))


class OptionError(EngineError):
    """A parameter of the wrong type, out of range, unknown or missing; names the parameter."""

    code = "invalid_params"

    def __init__(self, name: str, problem: str):
        super().__init__(f"bad parameter '{name}': {problem}")
        self.name = name
        self.problem = problem
        self.data = {"param": name, "detail": f"'{name}' {problem}"}


@dataclass(frozen=True)
class Option:
    name: str
    kind: str
    label: str
    help: str
    jobs: tuple[str, ...]
    default: Any = None
    # choice/choices: the allowed values, or a function returning them (the rig table)
    choices: tuple | Callable[[], tuple] | None = None
    min: float | None = None
    max: float | None = None
    # None is a valid value (it means what `help` says: no decimation, every installed task, ...)
    optional: bool = True
    required: bool = False  # the job cannot run without it (photos, out_dir, ...)
    pattern: str | None = None  # string: a regular expression the whole value must match
    default_by_job: dict = field(default_factory=dict)  # where a job's default differs
    aliases: tuple[str, ...] = ()  # older protocol/batch keys that still work
    cli: str | None = None  # the CLI flag when it is not --name-with-dashes ("" = positional)
    cli_aliases: tuple[str, ...] = ()  # older CLI spellings, hidden from --help
    metavar: str | None = None
    group: str = "general"  # where the panel puts it: input, model, surface, texture, rig, motion, output

    def allowed(self) -> tuple:
        return tuple(self.choices()) if callable(self.choices) else tuple(self.choices or ())

    def default_for(self, job: str) -> Any:
        return self.default_by_job.get(job, self.default)

    @property
    def flag(self) -> str:
        return self.cli if self.cli is not None else "--" + self.name.replace("_", "-")

    def turns_off(self) -> bool:
        """An optional choice without a choice named OFF: OFF turns it off (`--rig none`)."""
        return self.kind == "choice" and self.optional and OFF not in self.allowed()

    # -- checking one value --------------------------------------------------------------------

    def check(self, value: Any) -> Any:
        """The value in its canonical form, or OptionError naming this option."""
        if value == "" and self.kind in ("path", "string") and self.optional and not self.required:
            value = None  # an unset text field (a panel's empty folder) means the default
        if isinstance(value, (list, tuple)) and not value and self.kind == "paths" and self.optional and not self.required:
            value = None  # no paths given (`build BUNDLE` without other views, a panel's empty list)
        if value is None:
            if self.optional and not self.required:
                return None
            raise OptionError(self.name, "is required" if self.required else "must not be null")
        return _CHECKS[self.kind](self, value)

    def parse_text(self, text: str) -> Any:
        """A CLI string -> the value `check` accepts (commas separate list items)."""
        if self.kind in ("choices", "paths"):
            return [t.strip() for t in text.split(",") if t.strip()]
        if self.kind == "box":
            parts = [t.strip() for t in text.split(",")]
            try:
                return [float(t) for t in parts]
            except ValueError:
                raise OptionError(self.name, f"expected four numbers X1,Y1,X2,Y2, not {text!r}") from None
        if self.kind == "int":
            try:
                return int(text)
            except ValueError:
                raise OptionError(self.name, f"expected an integer, not {text!r}") from None
        if self.kind == "float":
            try:
                return float(text)
            except ValueError:
                raise OptionError(self.name, f"expected a number, not {text!r}") from None
        if text == OFF and self.turns_off():
            return OFF  # `--rig none`: the option's "off", kept apart from "not given" until validate
        return text

    def describe(self) -> dict:
        """The option as JSON (capabilities, engine_options.json)."""
        row = {
            "name": self.name, "kind": self.kind, "label": self.label, "help": self.help,
            "jobs": list(self.jobs), "default": _plain(self.default), "optional": self.optional,
            "required": self.required, "group": self.group, "cli": self.flag,
        }
        if self.choices is not None:
            row["choices"] = list(self.allowed())
        if self.min is not None:
            row["min"] = self.min
        if self.max is not None:
            row["max"] = self.max
        if self.pattern:
            row["pattern"] = self.pattern
        if self.default_by_job:
            row["default_by_job"] = {job: _plain(v) for job, v in self.default_by_job.items()}
        if self.aliases:
            row["aliases"] = list(self.aliases)
        return row


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _bad_type(option: Option, value: Any, wanted: str) -> OptionError:
    return OptionError(option.name, f"must be {wanted}, not {_type_name(value)} {value!r:.60}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _in_range(option: Option, value: float) -> None:
    if option.min is not None and value < option.min:
        raise OptionError(option.name, f"must be at least {option.min:g}, not {value!r}")
    if option.max is not None and value > option.max:
        raise OptionError(option.name, f"must be at most {option.max:g}, not {value!r}")


def _check_bool(option: Option, value: Any) -> bool:
    if not isinstance(value, bool):  # "false" and 0 are not booleans: a client means something else
        raise _bad_type(option, value, "true or false")
    return value


def _check_int(option: Option, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value):
        raise _bad_type(option, value, "an integer")
    _in_range(option, value)
    return value


def _check_float(option: Option, value: Any) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise _bad_type(option, value, "a finite number")
    _in_range(option, value)
    return float(value)


def _check_choice(option: Option, value: Any) -> str:
    allowed = option.allowed()
    if value == OFF and option.turns_off():
        return OFF  # turned off (validate makes it None); a default fills only a value not given
    if not isinstance(value, str) or value not in allowed:
        raise OptionError(option.name, f"must be one of {', '.join(allowed)}, not {value!r:.60}")
    return value


def _check_choices(option: Option, value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _bad_type(option, value, f"a non-empty list of {', '.join(option.allowed())}")
    items = [_check_choice(option, v) for v in value]
    return list(dict.fromkeys(items))


def _check_string(option: Option, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _bad_type(option, value, "a non-empty string")
    if option.pattern and not re.fullmatch(option.pattern, value):
        raise OptionError(option.name, f"{value!r:.60} is not valid ({option.help})")
    return value


def _check_path(option: Option, value: Any) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise _bad_type(option, value, "a path (a non-empty string)")
    problem = path_lookup_problem(value)
    if problem:
        raise OptionError(option.name, problem)
    return value


NAME_MAX_BYTES = 255   # the longest file or folder name of ext4, APFS, NTFS (in its units), XFS


def path_lookup_problem(path: str | os.PathLike) -> str | None:
    """Why the file system will not even look `path` up (a name too long, a folder without
    permission) or it names no file or folder (a named pipe, a device), in words, or None: said
    where a path is first checked, not as an OSError from the first exists() that meets it or a
    read that never returns. A path that is not there is no problem here (an output to make, or an
    input whose job says it is missing)."""
    text = os.fspath(path)
    shown = text if len(text) <= 80 else f"{text[:40]}...{text[-30:]}"
    # a folder that is not there yet hides a name too long below it from lstat (ENOENT comes first)
    longest = max((len(os.fsencode(part)) for part in text.split(os.sep)), default=0)
    if longest > NAME_MAX_BYTES:
        return f"{shown}: a name in it is {longest} bytes long; file systems take at most {NAME_MAX_BYTES}"
    try:
        os.lstat(path)
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"{shown}: {exc.strerror or exc}"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        # reading a named pipe waits for a writer forever; a device never ends
        kind = "named pipe" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
        return f"{shown}: a {kind}, not a file or a folder"
    return None


def _check_paths(option: Option, value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _bad_type(option, value, "a non-empty list of paths")
    return [_check_path(option, v) for v in value]


def _check_box(option: Option, value: Any) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4 or not all(_is_number(v) for v in value):
        raise _bad_type(option, value, "four numbers [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (float(v) for v in value)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise OptionError(option.name, f"must be finite numbers, not {value!r}")
    if min(x1, y1) < 0 or not (x1 < x2 and y1 < y2):
        raise OptionError(option.name, f"must be a box in photo pixels with 0 <= x1 < x2 and 0 <= y1 < y2, not {list(value)}")
    return [x1, y1, x2, y2]


def _check_sizes(option: Option, value: Any) -> str | dict[str, str]:
    """One size for every task ("0.4b"), or per task ("pose=1b,seg=0.4b" or {"pose": "1b"})."""
    if isinstance(value, str) and "=" in value:
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        value = {task.strip(): size.strip() for task, size in pairs}
    if isinstance(value, str):
        if value not in TASK_SIZES:
            raise OptionError(option.name, f"must be one of {', '.join(TASK_SIZES)} (or per task, pose=1b,seg=0.4b), not {value!r:.60}")
        return value
    if not isinstance(value, dict) or not value:
        raise _bad_type(option, value, f"a model size ({', '.join(TASK_SIZES)}) or a task -> size object")
    for task, size in value.items():
        if task not in TASKS:
            raise OptionError(option.name, f"names an unknown task {task!r} (tasks: {', '.join(TASKS)})")
        if size not in TASK_SIZES:
            raise OptionError(option.name, f"gives {task} the size {size!r:.40}; sizes: {', '.join(TASK_SIZES)}")
    return dict(value)


_BYTES_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _check_bytes(option: Option, value: Any) -> int:
    """A byte count: 6000000000, "6G", "512M", "2.5GB" -> an integer of bytes (at least 1)."""
    if _is_int(value):
        number = value
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:I?B)?\s*", value.upper())
        if match is None:
            raise OptionError(option.name, f"must be bytes such as 6G, 512M or 2000000000, not {value!r:.60}")
        number = int(float(match.group(1)) * _BYTES_UNITS[match.group(2)])
    else:
        raise _bad_type(option, value, "bytes such as \"6G\" or an integer")
    if number < 1:
        raise OptionError(option.name, f"must be at least 1 byte, not {value!r}")
    return number


_CHECKS = {
    "bool": _check_bool, "int": _check_int, "float": _check_float, "choice": _check_choice,
    "choices": _check_choices, "string": _check_string, "path": _check_path, "paths": _check_paths,
    "box": _check_box, "sizes": _check_sizes, "bytes": _check_bytes,
}

# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------

_MODEL_JOBS = ("predict", "avatar", "animate", "batch")
_BUILD_JOBS = ("build", "avatar", "batch")

OPTIONS: tuple[Option, ...] = (
    # -- inputs and outputs (required by the jobs that take them) --
    Option("photos", "paths", "Photos", "photo files (JPEG, PNG, WebP, TIFF, EXR)",
           ("predict", "avatar"), required=True, optional=False, cli="", metavar="PHOTO", group="input"),
    Option("bundle_dir", "path", "Bundle", "predictions bundle directory (or the reference demo's output files/folder)",
           ("build",), required=True, optional=False, cli="", metavar="BUNDLE", group="input"),
    Option("views", "paths", "Other Views",
           "more predictions bundles of the same person in the same pose (back, sides): fused with BUNDLE, the "
           "reference view, into one closed avatar (docs/avatar.md, Several views)",
           ("build",), cli="", metavar="VIEW", group="input"),
    Option("frames", "path", "Frames",
           "directory of frames (images, or predictions bundles), or a video file (.mp4 .mov .avi .mkv .webm .m4v)",
           ("animate",), required=True, optional=False, cli="", metavar="FRAMES", group="input"),
    Option("inputs", "paths", "Inputs",
           "photos, folders, globs, list files (.txt, .csv, .yaml, .json with per-item options) or predictions bundles",
           ("batch",), required=True, optional=False, cli="", metavar="INPUT", group="input"),
    Option("out_dir", "path", "Output", "output directory (written atomically; an existing output of another kind is refused)",
           ("predict", "build", "avatar", "animate", "retarget", "batch"), required=True, optional=False, cli="--out", metavar="DIR",
           group="output"),
    Option("cache_dir", "path", "Prediction Cache",
           "where the avatar job keeps predictions bundles for reuse (default: ~/.cache/sapiens-blender/predictions)",
           ("avatar",), metavar="DIR", group="output"),
    # -- models --
    Option("tasks", "choices", "Tasks",
           "model tasks to run (default: every task whose checkpoint is installed)",
           ("predict", "avatar", "batch"), choices=TASKS, group="model"),
    Option("size", "sizes", "Model Size", "model size, one for every task (0.4b) or per task (pose=1b,seg=0.4b)",
           _MODEL_JOBS, default="0.4b", optional=False, metavar="SIZE", group="model"),
    Option("checkpoints", "path", "Checkpoints", "checkpoint directory (default: $SAPIENS_CHECKPOINTS, else the user cache)",
           _MODEL_JOBS, metavar="DIR", group="model"),
    Option("device", "string", "Device", "auto, cpu, cuda, cuda:N or mps (auto: a CUDA GPU when there is one)",
           _MODEL_JOBS, default="auto", optional=False, pattern=r"auto|cpu|mps|cuda(:[0-9]+)?", metavar="DEVICE", group="model"),
    Option("backend", "choice", "Backend", "torch, or onnxruntime (checkpoints exported to ONNX on first use)",
           _MODEL_JOBS, default="torch", optional=False, choices=("torch", "onnxruntime"),
           group="model"),
    Option("dtype", "choice", "Precision",
           "auto: bf16 on a CUDA GPU that supports it (fp16 where it does not); on the CPU the fastest "
           "mode within the stated tolerances that it runs natively (bf16 with AVX512-BF16/AMX, else "
           "fp32, the exact path); int8: the CPU's int8 mode (quantized linear layers)",
           ("predict", "avatar", "batch"), default="auto", optional=False,
           choices=("auto", "bf16", "fp16", "fp32", "int8"),
           group="model"),
    Option("compile", "string", "Compile", "torch.compile mode for the torch backend: default, reduce-overhead, "
           "max-autotune or max-autotune-no-cudagraphs",
           ("predict", "avatar", "batch"), pattern=r"default|reduce-overhead|max-autotune|max-autotune-no-cudagraphs",
           metavar="MODE", group="model"),
    Option("onnx_dir", "path", "ONNX Folder", "where ONNX exports are kept (default: onnx/ beside each checkpoint)",
           ("predict", "avatar", "batch"), metavar="DIR", group="model"),
    Option("batch_size", "int", "Batch Size", "photos per forward pass (default 4)",
           ("predict", "avatar", "batch"), min=1, max=4096, metavar="N", group="model"),
    Option("max_memory", "bytes", "Max Memory", "budget for loaded models, e.g. 6G (least recently used are dropped)",
           ("predict", "avatar", "batch"), metavar="BYTES", group="model"),
    Option("allow_pickle", "bool", "Allow Pickle Checkpoints",
           "accept .pth/.bin checkpoints (loaded with torch.load(weights_only=True))",
           ("predict", "avatar", "batch"), default=False, optional=False, group="model"),
    # -- finding the person --
    Option("bbox", "box", "Person Box", "the person's box in photo pixels X1,Y1,X2,Y2, instead of finding it",
           ("predict", "avatar", "batch"), metavar="X1,Y1,X2,Y2", group="input"),
    Option("fuse", "bool", "Fuse as One Person",
           "the photos are views of one person in one pose (front, back, sides): one closed avatar fused from "
           "them all, named after the first, instead of one avatar per photo", ("avatar",), default=False,
           optional=False, group="input"),
    Option("all_people", "bool", "All People", "one bundle per person found (default: the largest person)",
           ("predict",), default=False, optional=False, group="input"),
    Option("skip_existing", "bool", "Skip Existing", "leave photos that already have a bundle alone",
           ("predict",), default=False, optional=False, group="output"),
    Option("seg_probs", "bool", "Segmentation Probabilities", "also write the class probabilities",
           ("predict",), default=False, optional=False, group="output"),
    Option("detail_crops", "bool", "Hand and Face Detail",
           "hands and face in detail: predict runs the dense models again on boxes around the hands and the "
           "face (from the keypoints); the build aligns those crops and fuses their finer surface into the avatar",
           ("predict", *_BUILD_JOBS), default=True, optional=False,
           default_by_job={"predict": False}, group="surface"),
    # -- surface --
    Option("detail", "choice", "Detail", "refine the pointmap's depth with the predicted normals, or not",
           _BUILD_JOBS, default="normals", optional=False, choices=("normals", "none"), group="surface"),
    Option("resolution", "choice", "Resolution", "mesh resolution relative to the photo",
           _BUILD_JOBS, default="full", optional=False, choices=("full", "half", "quarter"), group="surface"),
    Option("watertight", "bool", "Watertight",
           "close the surface into a solid (back side, Poisson) instead of the front only",
           _BUILD_JOBS, default=True, optional=False, aliases=("closed",), group="surface"),
    Option("max_faces", "int", "Max Faces", "decimate to about this many triangles (UVs kept); default: no decimation",
           _BUILD_JOBS, min=100, max=50_000_000, aliases=("target_faces",), cli_aliases=("--faces",), metavar="N",
           group="surface"),
    # -- texture --
    Option("texture_size", "int", "Texture Size", "long side of the textures in texels",
           _BUILD_JOBS, default=2048, optional=False, min=64, max=8192, metavar="N", group="texture"),
    # -- rig --
    # an avatar is rigged unless asked not to (`--rig none`): the artist's default is a rigged
    # avatar (issue 13); retarget reads the convention from its target when none is given
    Option("rig", "choice", "Rig", "skeleton and skin weights in this convention (a name from the engine's rig table)",
           (*_BUILD_JOBS, "animate", "retarget"), choices=rig_names,
           default_by_job={job: "rigify" for job in (*_BUILD_JOBS, "animate")},
           aliases=("convention",), metavar="NAME", group="rig"),
    Option("rest_pose", "choice", "Rest Pose", "with a rig: the rig's rest pose, the photo's pose or a canonical one",
           _BUILD_JOBS, default="photo", optional=False, choices=REST_POSES, group="rig"),
    # -- motion --
    Option("fps", "float", "Frame Rate", "frame rate of the sequence (default: the video's own, else 30)",
           ("animate",), min=0.1, max=1000.0, group="motion"),
    Option("smooth", "bool", "Smooth", "remove jitter with the One Euro filter (--no-smooth keeps raw per-frame joints)",
           ("animate",), default=True, optional=False, group="motion"),
    Option("min_cutoff", "float", "Min Cutoff", "One Euro filter: cutoff at rest, Hz",
           ("animate",), default=1.0, optional=False, min=0.001, max=1000.0, group="motion"),
    Option("beta", "float", "Beta", "One Euro filter: cutoff gain per m/s of speed",
           ("animate",), default=2.0, optional=False, min=0.0, max=1000.0, group="motion"),
    Option("feet", "choice", "Feet", "lock: feet standing on the ground stay put (two-bone leg IK) and the body "
           "never sinks through it (retarget: the character's feet stay where the motion's stand), foot skate "
           "reported in animation.json; off: joints as lifted (retarget: legs as retargeted)",
           ("animate", "retarget"), default="lock", optional=False, choices=("lock", "off"), group="motion"),
    # -- output files --
    Option("formats", "choices", "Formats", "files to write: glb, usd, usdz, obj, ply, bvh",
           (*_BUILD_JOBS, "animate", "retarget"), default=("glb", "obj", "ply"), optional=False, choices=FORMATS,
           default_by_job={"animate": ("glb", "bvh"), "retarget": ("glb", "bvh")}, group="output"),
    # -- batch runs on Ray Data (docs/batch.md) --
    Option("steps", "choices", "Steps", "what to run for each input: predict, build (bundles as inputs: build only)",
           ("batch",), default=("predict", "build"), optional=False, choices=("predict", "build"), group="general"),
    Option("address", "string", "Ray Cluster",
           "run on a Ray cluster: auto (the one this machine belongs to), HOST:PORT (its head) or ray://HOST:PORT "
           "(Ray Client); default: a local Ray sized to this machine", ("batch",),
           pattern=r"auto|(ray://)?[A-Za-z0-9_.-]+:[0-9]+", metavar="ADDRESS",
           group="general"),
    Option("workers", "int", "Model Workers", "model worker processes, each holding the models once "
           "(default: one per GPU, else one)", ("batch",), min=1, max=1024, metavar="N", group="model"),
    Option("cpus", "int", "CPUs", "CPUs of the local Ray (default: all of this machine's)", ("batch",), min=1,
           max=4096, metavar="N", group="general"),
    Option("retry_failed", "bool", "Retry Failed", "run again the items an earlier run of this batch failed on",
           ("batch",), default=False, optional=False, group="general"),
    # -- retargeting (docs/retarget.md) --
    Option("motion", "path", "Motion", "an animation directory written by animate (skeleton.json, frames/)",
           ("retarget",), required=True, optional=False, cli="", metavar="MOTION_DIR", group="input"),
    Option("target", "path", "Target Character", "the character to move: a skinned .glb/.gltf/.vrm or a skeleton.json",
           ("retarget",), required=True, optional=False, metavar="CHARACTER", group="input"),
    Option("bone_map", "path", "Bone Map", "JSON bone map, target bone -> humanoid part (default: detected from the names)",
           ("retarget",), metavar="JSON", group="rig"),
    Option("curves", "bool", "Curves", "also return per-bone curves (rotation, location per frame) for a client's armature",
           ("retarget",), default=False, optional=False, group="output"),
)

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
_ALIASES: dict[str, str] = {alias: o.name for o in OPTIONS for alias in o.aliases}


def options_for(job: str) -> tuple[Option, ...]:
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}; jobs: {', '.join(JOBS)}")
    return tuple(o for o in OPTIONS if job in o.jobs)


# ---------------------------------------------------------------------------------------------
# validation (the protocol, the batch, the jobs themselves)
# ---------------------------------------------------------------------------------------------

def validate(job: str, params: dict, *, fill_defaults: bool = True) -> dict:
    """Check a job's parameters against the declaration; returns them in canonical form.

    Aliases become the option's name, every value is type- and range-checked, unknown and missing
    required parameters are errors. Raises OptionError naming the first bad parameter.
    """
    if not isinstance(params, dict):
        raise OptionError("params", f"must be an object, not {_type_name(params)}")
    declared = {o.name: o for o in options_for(job)}
    values: dict[str, Any] = {}
    for key, value in params.items():
        name = _ALIASES.get(key, key)
        if name not in declared:
            known = ", ".join(sorted(declared))
            raise OptionError(key, f"is not a parameter of {job} (its parameters: {known})")
        if name in values and name != key:
            raise OptionError(key, f"is another name for '{name}'; give only one of them")
        try:
            values[name] = declared[name].check(value)
        except OptionError as exc:
            if key == name:
                raise
            raise OptionError(key, exc.problem) from None  # name the key the client sent
    for name, option in declared.items():
        if values.get(name) == OFF and option.turns_off():
            values[name] = None  # turned off: no default replaces it
            continue
        if name in values and values[name] is None and option.default_for(job) is not None:
            values[name] = _plain(option.default_for(job))
        if name not in values:
            if option.required:
                raise OptionError(name, "is required")
            if fill_defaults:
                values[name] = _plain(option.default_for(job))
    return values


# ---------------------------------------------------------------------------------------------
# argparse
# ---------------------------------------------------------------------------------------------

def _argparse_type(option: Option) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return option.check(option.parse_text(text))
        except OptionError as exc:
            raise argparse.ArgumentTypeError(exc.problem) from None
    convert.__name__ = option.kind  # argparse names the type in its messages
    return convert


def add_arguments(parser: argparse.ArgumentParser, job: str, *, skip: tuple[str, ...] = (),
                  defaults: dict | None = None) -> None:
    """Add the job's options to `parser`: --max-faces N, --watertight/--no-watertight, ...

    Values are checked by the same code the protocol uses; `defaults` overrides a default for this
    command (the demo builds a rigged avatar). Hidden aliases keep older spellings working.
    """
    defaults = defaults or {}
    for option in options_for(job):
        if option.name in skip:
            continue
        default = defaults.get(option.name, _plain(option.default_for(job)))
        shown = default if not isinstance(default, list) else ",".join(default)
        help_text = option.help
        if option.kind == "choice" and option.metavar:
            help_text += f": {', '.join(option.allowed())}" + (" or none" if option.optional else "")
        help_text += f" (default {shown})" if default not in (None, False, True) else ""
        if option.flag == "":
            nargs = ("+" if option.required else "*") if option.kind == "paths" else None
            parser.add_argument(option.name, nargs=nargs, metavar=option.metavar, help=help_text,
                                type=_argparse_type(option) if option.kind != "paths" else None,
                                **({"default": None} if nargs == "*" else {}))
            continue
        flags = [option.flag]
        if option.kind == "bool":
            parser.add_argument(*flags, dest=option.name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
        else:
            kind_type = _argparse_type(option) if option.kind not in ("paths",) else option.parse_text
            kwargs = {"dest": option.name, "default": default, "type": kind_type,
                      "metavar": option.metavar or _metavar(option), "help": help_text}
            if option.required and option.flag.startswith("--"):
                kwargs["required"] = True
            parser.add_argument(*flags, **kwargs)
        for alias in option.cli_aliases:
            parser.add_argument(alias, dest=option.name, type=_argparse_type(option), help=argparse.SUPPRESS)


def _metavar(option: Option) -> str:
    if option.kind == "choice":
        return "{" + ",".join(option.allowed()) + "}"
    if option.kind == "choices":
        return ",".join(option.allowed()[:3]) + ",..."
    return option.kind.upper()


def from_args(args: argparse.Namespace, job: str) -> dict:
    """The job's option values from parsed CLI arguments (the names the table declares)."""
    values = {o.name: getattr(args, o.name) for o in options_for(job) if hasattr(args, o.name)}
    # an optional positional list left empty (`build BUNDLE` without other views) is unset
    return {name: None if value == [] and not BY_NAME[name].required else value for name, value in values.items()}


# ---------------------------------------------------------------------------------------------
# export (capabilities, the add-on's engine_options.json)
# ---------------------------------------------------------------------------------------------

def export() -> dict:
    """Every option as JSON: what the add-on draws its panel and batch keys from."""
    return {
        "version": OPTIONS_VERSION,
        "jobs": list(JOBS),
        "kinds": list(KINDS),
        "options": [o.describe() for o in OPTIONS],
    }
