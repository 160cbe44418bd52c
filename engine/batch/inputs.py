"""INPUT arguments -> batch items.

An INPUT is a photo, a predictions bundle (a folder with bundle.json), a folder (its photos and
bundles, sorted, not recursive), a glob (`shots/*.jpg`, `**` allowed), or a list file:
`.txt` (one INPUT per line, # comments), `.csv` (a `path` column; other columns are per-item
options), `.yaml`/`.yml` or `.json` (a list of paths, or of {"path": ..., option: value}).
Relative paths in a list file are relative to the list file. Per-item options may be any
per-photo option of the batch job (bbox, and the build options); model options are the run's.
"""

from __future__ import annotations

import csv
import glob
import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import EngineError
from engine.options import OPTIONS

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".exr", ".bmp")
LIST_SUFFIXES = (".txt", ".csv", ".yaml", ".yml", ".json")
# options an item may set for itself: its person box and the build's options that the model
# pass does not take (everything else is the run's: the workers share their models)
ITEM_OPTIONS = ("bbox", *(o.name for o in OPTIONS if "build" in o.jobs and "predict" not in o.jobs
                          and o.name not in ("bundle_dir", "views", "out_dir")))


class BatchInputError(EngineError):
    code = "invalid_params"


@dataclass
class Item:
    path: Path
    kind: str                      # "photo" or "bundle"
    options: dict = field(default_factory=dict)
    name: str = ""                 # distinct within the run: its folder under --out

    def as_row(self) -> dict:
        return {"name": self.name, "path": str(self.path), "kind": self.kind,
                "options": json.dumps(self.options, sort_keys=True, default=str)}


def expand_inputs(inputs: list, *, max_depth: int = 8) -> list[Item]:
    """Every item the INPUT arguments name, in order, each once, with distinct names."""
    items: list[Item] = []
    for entry in inputs:
        items.extend(_expand(entry, {}, Path.cwd(), max_depth))
    seen, unique = set(), []
    for item in items:
        key = (str(item.path.resolve()), json.dumps(item.options, sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            unique.append(item)
    if not unique:
        raise BatchInputError(f"inputs {', '.join(map(str, inputs))}: no photo and no predictions bundle found")
    _name(unique)
    return unique


def _expand(entry, options: dict, base: Path, depth: int) -> list[Item]:
    if depth <= 0:
        raise BatchInputError(f"{entry}: list files nest too deep")
    if isinstance(entry, dict):
        if "path" not in entry:
            raise BatchInputError(f"list entry {json.dumps(entry)[:120]}: has no 'path'")
        extra = {k: v for k, v in entry.items() if k != "path"}   # checked per item: a bad one fails its item
        return _expand(entry["path"], {**options, **extra}, base, depth)
    if not isinstance(entry, (str, Path)):
        raise BatchInputError(f"list entry {entry!r}: expected a path or an object with 'path'")
    text = str(entry)
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = base / path
    if any(ch in text for ch in "*?[") and not path.exists():
        matches = sorted(glob.glob(str(path), recursive=True))
        if not matches:
            raise BatchInputError(f"{text}: the pattern matches nothing")
        return [i for m in matches for i in _expand(Path(m), options, base, depth)]
    if not path.exists():
        raise BatchInputError(f"{text}: no such file or folder")
    if path.is_dir():
        if (path / "bundle.json").is_file():
            return [Item(path, "bundle", dict(options))]
        found = []
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir() and (child / "bundle.json").is_file():
                found.append(Item(child, "bundle", dict(options)))
            elif child.is_file() and child.suffix.lower() in PHOTO_SUFFIXES:
                found.append(Item(child, "photo", dict(options)))
        return found
    suffix = path.suffix.lower()
    if suffix in LIST_SUFFIXES:
        return [i for e in _read_list(path) for i in _expand(e, options, path.parent, depth - 1)]
    # anything else is a photo; a file that is not one becomes that item's failure, in words
    return [Item(path, "photo", dict(options))]


def _read_list(path: Path) -> list:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"{path}: unreadable list file ({exc})") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if suffix == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
            if rows and "path" not in rows[0]:
                raise BatchInputError(f"{path}: the CSV needs a 'path' column (has {', '.join(rows[0])})")
            return [{k: _csv_value(v) for k, v in row.items() if v not in (None, "")} for row in rows]
        if suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (ValueError, ImportError) as exc:
        raise BatchInputError(f"{path}: not a readable {suffix[1:]} list ({exc})") from exc
    except Exception as exc:  # yaml.YAMLError and friends
        raise BatchInputError(f"{path}: not a readable {suffix[1:]} list ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data = data["items"]
    if not isinstance(data, list):
        raise BatchInputError(f"{path}: expected a list of paths or of {{path: ..., options}} objects")
    return data


def _csv_value(text: str):
    """CSV cells are text: numbers, booleans and JSON lists become values the options accept."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.strip().startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _name(items: list[Item]) -> None:
    """Folder names under --out: the file or folder name's stem, made distinct by its parents."""
    from engine.predict import bundle_names

    names = bundle_names([i.path for i in items])
    taken: dict[str, int] = {}
    for item, name in zip(items, names):
        taken[name] = taken.get(name, 0) + 1
        item.name = name if taken[name] == 1 else f"{name}_{taken[name]}"  # one file, other options
