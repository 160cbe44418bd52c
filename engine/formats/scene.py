"""One DCC-agnostic description of what the engine writes: mesh, materials and textures,
skeleton, skin and animation. Every writer in engine.formats reads this and nothing else.

Conventions (docs/avatar.md, docs/rig.md):
- Units are metres, the frame is the avatar frame (glTF's: +Y up, the person faces +Z).
- UVs are glTF's (origin at the image's top left, v down); `uv_opengl` gives OBJ/PLY/USD's (v up).
- Matrices are 4 x 4 in the math layout (`M @ p`); rotations are 3 x 3 matrices, turned into
  quaternions by the writers that need them (`matrix_to_quaternion`).
- A skeleton lists parents before children; `rest_local` is each joint relative to its parent
  (the root relative to the avatar origin), `bind_world` each joint in the avatar frame at bind
  time (the mesh is skinned at the avatar origin).

This module is a leaf: numpy only, so the rig, the motion pipeline and the avatar build can all
describe what they made without knowing any file format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.errors import EngineError


# camera axes (OpenCV: x right, y down, z forward) -> avatar axes (+Y up, the person facing +Z,
# toward where the camera was): a rotation by 180 degrees about x, so windings and handedness survive
CAMERA_TO_AVATAR_AXES = np.diag([1.0, -1.0, -1.0])


def camera_to_avatar_axes(points: np.ndarray) -> np.ndarray:
    """... x 3 camera-frame points or directions with the avatar frame's axes (no translation);
    the same turn maps avatar axes back to camera axes (it is its own inverse)."""
    return np.asarray(points) * np.diag(CAMERA_TO_AVATAR_AXES)


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """... x 3 x 3 rotation matrices -> ... x 4 quaternions (x, y, z, w), w >= 0."""
    m = np.asarray(m, np.float64)
    w = np.sqrt(np.maximum(0.0, 1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2])) / 2
    x = np.sqrt(np.maximum(0.0, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2])) / 2
    y = np.sqrt(np.maximum(0.0, 1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2])) / 2
    z = np.sqrt(np.maximum(0.0, 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2])) / 2
    x = np.copysign(x, m[..., 2, 1] - m[..., 1, 2])
    y = np.copysign(y, m[..., 0, 2] - m[..., 2, 0])
    z = np.copysign(z, m[..., 1, 0] - m[..., 0, 1])
    q = np.stack([x, y, z, w], -1)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def continuous_quaternions(quats: np.ndarray) -> np.ndarray:
    """T x ... x 4 quaternion tracks with each step on the previous one's hemisphere, so that
    interpolating between keys takes the short way."""
    quats = np.array(quats, np.float64, copy=True)
    flip = np.cumsum(((quats[1:] * quats[:-1]).sum(-1) < 0), axis=0) % 2
    quats[1:] *= np.where(flip[..., None] == 1, -1.0, 1.0)
    return quats


def uv_opengl(uv: np.ndarray) -> np.ndarray:
    """glTF UVs (v down) -> OpenGL / OBJ / PLY / USD UVs (v up)."""
    out = np.array(uv, np.float32, copy=True)
    out[:, 1] = 1.0 - out[:, 1]
    return out


@dataclass
class Mesh:
    """A triangle mesh in the avatar frame, one row per vertex."""

    vertices: np.ndarray  # V x 3 float32
    normals: np.ndarray  # V x 3 float32, unit
    faces: np.ndarray  # F x 3
    uv: np.ndarray  # V x 2, glTF convention
    tangents: np.ndarray  # V x 4 (xyz, handedness w = +-1)
    labels: np.ndarray  # V uint8 class ids
    label_names: list[str] = field(default_factory=list)  # class id -> name
    name: str = "avatar"


@dataclass
class Texture:
    """An image the materials read; `encoded` (PNG bytes) is filled in by the texture writer."""

    name: str  # "albedo", "normal"
    path: str  # relative to the output directory, e.g. "textures/albedo.png"
    colour_space: str  # "sRGB" (colour) or "raw" (data: normal maps)
    pixels: np.ndarray | None = None  # H x W x 3 uint8
    encoded: bytes | None = None


@dataclass
class Material:
    """A material slot: the triangles it covers and the textures it reads (names in Scene.textures)."""

    name: str
    faces: np.ndarray  # F_i x 3 triangles of Mesh.faces
    face_indices: np.ndarray | None = None  # F_i: which rows of Mesh.faces they are (USD face subsets)
    base_color: str | None = None
    normal: str | None = None
    roughness: float = 0.7
    metallic: float = 0.0
    extras: dict = field(default_factory=dict)


@dataclass
class Skeleton:
    names: list[str]  # joint names as the convention spells them (e.g. Rigify's "upper_arm.L")
    parents: np.ndarray  # B, parent index or -1; parents come before children
    rest_local: np.ndarray  # B x 4 x 4, relative to the parent
    bind_world: np.ndarray  # B x 4 x 4, avatar frame
    tails: np.ndarray | None = None  # B x 3 bone tails (avatar frame), for formats that store bone ends
    name: str = "rig"

    def __post_init__(self) -> None:
        self.parents = np.asarray(self.parents, np.int64)
        order = np.arange(len(self.parents))
        if len(self.names) != len(self.parents) or np.any(self.parents >= order):
            raise EngineError(f"skeleton {self.name!r}: every joint's parent must come before it")

    @property
    def heads(self) -> np.ndarray:
        return self.bind_world[:, :3, 3]


@dataclass
class Skin:
    """Up to four joints per vertex (indices into Skeleton.names) with weights that sum to 1."""

    joints: np.ndarray  # V x K uint16
    weights: np.ndarray  # V x K float32


@dataclass
class Animation:
    """Per-joint local transforms over time, relative to the parent as Skeleton.rest_local is."""

    fps: float
    rotations: np.ndarray  # T x B x 3 x 3
    translations: np.ndarray  # T x B x 3
    scales: np.ndarray | None = None  # T x B x 3; None means 1
    # per-frame data of any kind (T rows each), e.g. "filled" (bool), "confidence" (float)
    frame_data: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = "motion"

    @property
    def frames(self) -> int:
        return len(self.rotations)

    def local_matrices(self) -> np.ndarray:
        """T x B x 4 x 4 local transforms (scale ignored: the engine's rigs do not scale)."""
        T, B = self.rotations.shape[:2]
        local = np.zeros((T, B, 4, 4))
        local[..., :3, :3] = self.rotations
        local[..., :3, 3] = self.translations
        local[..., 3, 3] = 1.0
        return local

    def world(self, parents: np.ndarray) -> np.ndarray:
        """T x B x 4 x 4 joint frames in the avatar frame (parents before children)."""
        local = self.local_matrices()
        out = np.zeros_like(local)
        for b, parent in enumerate(parents):  # one step per joint, vectorised over frames
            out[:, b] = local[:, b] if parent < 0 else out[:, parent] @ local[:, b]
        return out


@dataclass
class Scene:
    """What one output holds: an avatar (mesh, materials, textures, maybe skeleton and skin) or
    a motion (skeleton and animation). `metadata` goes into each format's own header/extras."""

    kind: str  # "avatar" or "motion"
    mesh: Mesh | None = None
    materials: list[Material] = field(default_factory=list)
    textures: list[Texture] = field(default_factory=list)
    skeleton: Skeleton | None = None
    skin: Skin | None = None
    animation: Animation | None = None
    metadata: dict = field(default_factory=dict)

    def texture(self, name: str | None) -> Texture | None:
        return next((t for t in self.textures if t.name == name), None) if name else None
