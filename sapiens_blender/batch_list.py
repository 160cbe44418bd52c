"""Read a batch list (YAML or JSON) without requiring PyYAML. No bpy.

Blender's bundled Python does not ship PyYAML. When `yaml` imports, it parses the file; when it
does not, JSON is read as JSON and YAML is read with a small parser for the subset documented
in docs/blender.md: `key: value` mappings nested by indentation, `- ` lists (of scalars or of
mappings), `#` comments, plain, quoted, number, true/false and null scalars, and one-line flow
lists and mappings of scalars (`[glb, usd]`, `{size: 0.4b, device: cpu}`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path


class BatchListError(ValueError):
    """The list file cannot be read; the message names the file and the line."""


def read_batch_list(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BatchListError(f"{path}: cannot read ({exc.strerror})") from exc
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BatchListError(f"{path}: line {exc.lineno}: {exc.msg}") from exc
    else:
        try:
            import yaml
        except ImportError:
            data = parse_simple_yaml(text, str(path))
        else:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise BatchListError(f"{path}: {exc}") from exc
    if isinstance(data, list):
        data = {"items": data}
    if not isinstance(data, dict) or not isinstance(data.get("items"), list) or not data["items"]:
        raise BatchListError(f"{path}: expected a mapping with a non-empty 'items' list (or a list of items)")
    return data


_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def _scalar(text: str):
    text = text.strip()
    if len(text) >= 2 and text[0] + text[-1] == "[]":  # a flow list of scalars: [glb, usd]
        return [_scalar(part) for part in text[1:-1].split(",")] if text[1:-1].strip() else []
    if len(text) >= 2 and text[0] + text[-1] == "{}":  # a flow mapping of scalars: {size: 0.4b}
        pairs = [part.split(":", 1) for part in text[1:-1].split(",") if part.strip()]
        if all(len(pair) == 2 for pair in pairs):
            return {key.strip(): _scalar(value) for key, value in pairs}
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("null", "~", ""):
        return None
    if _NUMBER.match(text):
        return float(text) if any(c in text for c in ".eE") else int(text)
    return text


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def parse_simple_yaml(text: str, name: str = "<list>"):
    """The documented YAML subset -> Python data (see the module docstring)."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if line.strip() and line.strip() != "---":
            if "\t" in line[: len(line) - len(line.lstrip())]:
                raise BatchListError(f"{name}: line {number}: tabs are not allowed for indentation")
            lines.append((number, len(line) - len(line.lstrip()), line.strip()))
    value, rest = _block(lines, 0, name)
    if rest < len(lines):
        raise BatchListError(f"{name}: line {lines[rest][0]}: unexpected indentation")
    return value


def _block(lines, start: int, name: str):
    if start >= len(lines):
        return None, start
    indent = lines[start][1]
    if lines[start][2].startswith("- ") or lines[start][2] == "-":
        items, i = [], start
        while i < len(lines) and lines[i][1] == indent and lines[i][2].startswith("-"):
            number, _, content = lines[i]
            content = content[1:].strip()
            if not content:
                value, i = _block(lines, i + 1, name)
            elif _is_key(content):
                # "- key: value" opens a mapping whose other keys sit two columns in
                sub = [(number, indent + 2, content)]
                j = i + 1
                while j < len(lines) and lines[j][1] > indent:
                    sub.append(lines[j])
                    j += 1
                value, used = _block(sub, 0, name)
                if used < len(sub):
                    raise BatchListError(f"{name}: line {sub[used][0]}: unexpected indentation")
                i = j
            else:
                value, i = _scalar(content), i + 1
            items.append(value)
        return items, i
    mapping, i = {}, start
    while i < len(lines) and lines[i][1] == indent:
        number, _, content = lines[i]
        if not _is_key(content):
            raise BatchListError(f"{name}: line {number}: expected 'key: value'")
        key, _, value = content.partition(":")
        if value.strip():
            mapping[key.strip()] = _scalar(value)
            i += 1
        elif i + 1 < len(lines) and lines[i + 1][1] > indent:
            mapping[key.strip()], i = _block(lines, i + 1, name)
        elif i + 1 < len(lines) and lines[i + 1][1] == indent and lines[i + 1][2].startswith("- "):
            mapping[key.strip()], i = _block(lines, i + 1, name)  # a list at the key's own indent
        else:
            mapping[key.strip()], i = None, i + 1
    return mapping, i


def _is_key(content: str) -> bool:
    return bool(re.match(r"^[A-Za-z_][\w .-]*:(\s|$)", content))
