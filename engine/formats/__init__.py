"""File formats: one module per format, each writing an engine.formats.scene.Scene.

`WRITERS` is the one table the avatar build and the animate pipeline loop over: a format name
(the values of the `formats` option) -> a Writer with the function for each kind of scene it
can hold. A new format = one module with `write_avatar(scene, out_dir)` and/or
`write_motion(scene, out_dir)` (each returns {avatar.json/animation.json "files" key: file
name}) and one entry here. Writer modules are imported when first used, so a format whose
library is heavy (USD) costs nothing to builds that do not ask for it.

Layering: formats imports only engine.errors, engine.fileio and its own modules; the rig, the
motion pipeline and the avatar build describe what they made with engine.formats.scene.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError

__all__ = ["WRITERS", "Writer", "AVATAR_DEFAULT", "MOTION_DEFAULT", "writers_for", "parse_formats"]

WriteFunction = Callable[["object", Path], dict]


@dataclass(frozen=True)
class Writer:
    name: str
    module: str  # engine.formats.<module>
    kinds: tuple[str, ...]  # "avatar", "motion": the scenes it writes
    label: str
    needs_textures: bool = False  # reads the texture files or bytes (so runs after the texture writer)
    variant: str = ""  # the module's functions are write_<kind><variant> (usdz: write_avatar_package)

    def load(self):
        """The writer's module (imported on first use); a missing library fails here, in words."""
        try:
            return importlib.import_module(f"engine.formats.{self.module}")
        except ImportError as exc:
            raise EngineError(f"the {self.name} format cannot be written by this installation ({exc})") from exc

    def write(self, kind: str, scene, out_dir: Path) -> dict[str, str]:
        if kind not in self.kinds:
            raise EngineError(f"the {self.name} format does not hold {kind}s (it holds: {', '.join(self.kinds)})")
        return getattr(self.load(), f"write_{kind}{self.variant}")(scene, Path(out_dir))

    def avatar(self, scene, out_dir: Path) -> dict[str, str]:
        return self.write("avatar", scene, out_dir)

    def motion(self, scene, out_dir: Path) -> dict[str, str]:
        return self.write("motion", scene, out_dir)


WRITERS: dict[str, Writer] = {
    w.name: w
    for w in (
        Writer("glb", "gltf", ("avatar", "motion"), "binary glTF 2.0 (.glb)", needs_textures=True),
        Writer("obj", "obj", ("avatar",), "Wavefront OBJ + MTL"),
        Writer("ply", "ply", ("avatar",), "binary PLY"),
        Writer("bvh", "bvh", ("motion",), "BioVision BVH"),
        Writer("usd", "usd", ("avatar", "motion"), "USD binary crate (.usdc, UsdSkel)"),
        Writer("usdz", "usd", ("avatar",), "USDZ package (.usdz: the .usdc and its textures)", needs_textures=True,
               variant="_package"),
    )
}

# what a build or an animation writes when nobody chose
AVATAR_DEFAULT = ("glb", "obj", "ply")
MOTION_DEFAULT = ("glb", "bvh")


def parse_formats(formats: str | Iterable[str] | None, kind: str) -> tuple[str, ...]:
    """The chosen format names ("glb,usd", a list, or None for the default), checked against
    WRITERS for this kind of scene; formats that do not hold this kind are skipped only when
    the choice names at least one that does (one `formats` option serves builds and motions)."""
    if formats is None:
        return AVATAR_DEFAULT if kind == "avatar" else MOTION_DEFAULT
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    names = list(dict.fromkeys(n for n in names if n))
    unknown = [n for n in names if n not in WRITERS]
    if unknown:
        raise EngineError(f"unknown format {', '.join(unknown)}: choose from {', '.join(WRITERS)}")
    chosen = tuple(n for n in names if kind in WRITERS[n].kinds)
    if not chosen:
        holding = [n for n, w in WRITERS.items() if kind in w.kinds]
        raise EngineError(f"none of the formats {', '.join(names) or '(none)'} holds {kind}s; choose from {', '.join(holding)}")
    return chosen


def writers_for(formats, kind: str) -> list[Writer]:
    """The chosen writers, their modules loaded: a format this installation cannot write fails
    before any work starts."""
    writers = [WRITERS[name] for name in parse_formats(formats, kind)]
    for writer in writers:
        writer.load()
    return writers
