"""The one check every reader of a versioned engine file makes (bundle.json, avatar.json,
animation.json, skeleton.json): the format name, then the major version (docs/*.md: a reader
reads every minor version of its major; a newer major is refused in words)."""

from __future__ import annotations

from engine.errors import BundleError, EngineError


def check_format_version(doc: dict, *, name: str, version: str, source, what: str,
                         error: type[EngineError] = BundleError) -> str:
    """Raise `error` unless doc["format"] is `name` and doc["version"] has `version`'s major;
    returns the document's version."""
    if not isinstance(doc, dict):  # a JSON list or number where the description belongs
        raise error(f"{source}: not a {name} (a JSON {type(doc).__name__}, not an object)")
    if doc.get("format") != name:
        raise error(f"{source}: not a {name} (format is {doc.get('format')!r})")
    found = str(doc.get("version", ""))
    reads = version.split(".")[0]
    if found.split(".")[0] != reads:
        raise error(f"{source}: {what} version {found} is not readable by this engine (reads {reads}.x); "
                    "use the sapiens-engine release that wrote it or a newer one")
    return found
