"""Read the engine's `animate` output folder (animation.glb, skeleton.json, animation.json). No bpy.

The folder holds no mesh: a rest skeleton (skeleton.json, the same format as an avatar's) and one
glTF animation of its joint nodes (docs/rig.md, "Animation output"). What comes out has the same
`skeleton`, `animations` and `nodes` fields as io.avatar.Avatar, so the Blender glue builds the
armature and the action with the avatar's own code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .avatar import (
    Animation,
    AvatarError,
    NodeRest,
    _check_skeleton,
    _check_version,
    _read_animations,
    _read_json,
    _read_node_rest,
    read_manifest,
)
from .glb import Glb, GlbError


@dataclass
class MotionFolder:
    directory: Path
    name: str
    skeleton: dict
    animations: list[Animation]
    nodes: NodeRest | None
    meta: dict = field(default_factory=dict)  # animation.json: fps, frames, filled_frames, ...

    @property
    def fps(self) -> float | None:
        fps = self.meta.get("fps")
        return float(fps) if isinstance(fps, (int, float)) and fps > 0 else None


def read_motion(directory: str | Path) -> MotionFolder:
    """Read an animate output folder; raises AvatarError naming the file on any problem."""
    directory, meta = read_manifest(directory, "animation.json", "animation")
    files = meta.get("files") or {}
    skeleton_path = directory / (files.get("skeleton") or "skeleton.json")
    skeleton = _read_json(skeleton_path, required=True)
    _check_version(skeleton, skeleton_path)
    _check_skeleton(skeleton, skeleton_path)
    glb_path = directory / (files.get("gltf") or "animation.glb")
    try:
        glb = Glb(glb_path)
        animations = _read_animations(glb)
        nodes = _read_node_rest(glb)
    except GlbError as exc:
        raise AvatarError(str(exc)) from exc
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise AvatarError(f"{glb_path}: malformed glTF ({type(exc).__name__}: {exc})") from exc
    if not animations or not any(a.channels for a in animations):
        raise AvatarError(f"{glb_path}: no bone animation in it")
    return MotionFolder(directory, directory.name, skeleton, animations, nodes, meta)
