"""The engine's option declaration as the add-on reads it (no bpy).

`engine_options.json` is the engine's own table of user-facing options (engine/options.py,
exported by scripts/sync_options.py): name, kind, choices, default, min/max, label, help and the
jobs that take it. The panel's properties, the preferences' model options, the batch list's keys
and the protocol parameters all come from it, under the engine's names: a new engine option
reaches Blender without code here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("engine_options.json")
# options whose values the add-on fills in itself (the input it was given, where outputs go)
ADDON_FILLED = frozenset({"photos", "bundle_dir", "views", "frames", "out_dir", "cache_dir"})
# install-level options: the preferences hold them, every run and the batch use them
MODEL_GROUP = "model"
# an optional choice turned off (the engine's options.OFF): null or no key means the default
OFF = "none"
_SIZE = re.compile(r"^\d+(\.\d+)?b$")


class OptionError(ValueError):
    """A value the engine would refuse, or a key that is no option: the message names it."""


@dataclass(frozen=True)
class OptionSpec:
    name: str
    kind: str  # bool int float choice choices string path paths box sizes bytes
    label: str
    help: str
    jobs: tuple[str, ...]
    group: str
    default: object = None
    optional: bool = True  # None (not given) is a valid value
    cli: str = ""
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    aliases: tuple[str, ...] = ()
    default_by_job: dict = field(default_factory=dict)

    def default_for(self, job: str):
        return self.default_by_job.get(job, self.default)


@lru_cache(maxsize=4)
def load_table(path: Path = TABLE_PATH) -> dict[str, OptionSpec]:
    """name -> OptionSpec, in the table's order."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    table = {}
    for entry in data["options"]:
        table[entry["name"]] = OptionSpec(
            name=entry["name"], kind=entry["kind"], label=entry.get("label") or entry["name"],
            help=entry.get("help", ""), jobs=tuple(entry.get("jobs", ())), group=entry.get("group", ""),
            default=entry.get("default"), optional=bool(entry.get("optional", True)), cli=entry.get("cli", ""),
            choices=tuple(entry.get("choices") or ()), min=entry.get("min"), max=entry.get("max"),
            aliases=tuple(entry.get("aliases") or ()), default_by_job=dict(entry.get("default_by_job") or {}),
        )
    return table


def job_options(job: str, *, groups: tuple[str, ...] | None = None, exclude_groups: tuple[str, ...] = ()) -> list[OptionSpec]:
    """The options `job` takes that a user sets (not the add-on-filled paths), in table order."""
    return [
        spec for spec in load_table().values()
        if job in spec.jobs and spec.name not in ADDON_FILLED
        and (groups is None or spec.group in groups) and spec.group not in exclude_groups
    ]


def find(key: str, specs: list[OptionSpec]) -> OptionSpec | None:
    """The option a key names (its name or an alias), among `specs`."""
    for spec in specs:
        if key == spec.name or key in spec.aliases:
            return spec
    return None


def check_value(spec: OptionSpec, value, where: str = ""):
    """`value` as the engine takes it, or OptionError naming the option and what is wrong."""
    name = f"{where}{spec.name}"
    if value is None:
        if spec.optional:
            return None
        raise OptionError(f"{name}: a value is required")

    def bad(expected: str):
        return OptionError(f"{name}: expected {expected}, got {value!r}")

    kind = spec.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
    elif kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "int" and value != int(value)):
            raise bad("an integer" if kind == "int" else "a number")
        value = int(value) if kind == "int" else float(value)
        if spec.min is not None and value < spec.min:
            raise OptionError(f"{name}: {value} is below its minimum {spec.min:g}")
        if spec.max is not None and value > spec.max:
            raise OptionError(f"{name}: {value} is above its maximum {spec.max:g}")
    elif kind == "choice":
        if value not in spec.choices and not (value == OFF and spec.optional):  # OFF: see option_props
            raise bad(f"one of {', '.join(spec.choices)}" + (" or none" if spec.optional else ""))
    elif kind == "choices":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or any(v not in spec.choices for v in items):
            raise bad(f"a list of {', '.join(spec.choices)}")
        value = list(items)
    elif kind in ("string", "path", "bytes"):
        if isinstance(value, bool) or not isinstance(value, (str, int)) or (kind != "bytes" and not isinstance(value, str)):
            raise bad("text")
    elif kind == "paths":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of paths")
    elif kind == "box":
        if not isinstance(value, (list, tuple)) or len(value) != 4 or not all(isinstance(v, (int, float)) for v in value):
            raise bad("four numbers X1, Y1, X2, Y2")
        value = list(value)
    elif kind == "sizes":
        value = parse_sizes(value, name)
    return value


def parse_sizes(value, name: str = "size"):
    """A model size for every task ("0.4b") or per task ({"pose": "1b"} or "pose=1b,seg=0.4b")."""
    if isinstance(value, str) and "=" in value:
        pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
        value = {task.strip(): size.strip() for task, size in pairs}
    if isinstance(value, str) and _SIZE.match(value):
        return value
    if isinstance(value, dict) and value and all(isinstance(s, str) and _SIZE.match(s) for s in value.values()):
        return value
    raise OptionError(f"{name}: expected a model size like 0.4b, or task=size pairs, got {value!r}")
