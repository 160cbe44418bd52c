"""Read an engine avatar directory (avatar.glb, avatar.json, skeleton.json) into plain arrays.

Everything stays in the avatar frame (glTF: metres, +Y up); converting to Blender's Z-up is the
Blender glue's job. No bpy here. Format: docs/avatar.md and docs/rig.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .glb import Glb, GlbError

SUPPORTED_MAJOR = 1
TRIANGLES = 4
LABEL_ATTRIBUTE = "_LABEL"


class AvatarError(ValueError):
    """An avatar directory that cannot be imported; the message names the file and the problem."""


@dataclass
class Image:
    name: str
    data: bytes
    mime_type: str


@dataclass
class Material:
    name: str
    base_color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    metallic: float = 0.0
    roughness: float = 1.0
    albedo_image: int | None = None  # index into Avatar.images
    normal_image: int | None = None
    normal_scale: float = 1.0
    double_sided: bool = False


@dataclass
class MeshData:
    positions: np.ndarray  # V x 3 float32, avatar frame
    faces: np.ndarray  # F x 3 int32
    face_materials: np.ndarray  # F int32, index into Avatar.materials (-1: none)
    normals: np.ndarray | None = None  # V x 3 float32
    uvs: np.ndarray | None = None  # V x 2 float32, glTF convention (v down from the top)
    labels: np.ndarray | None = None  # V int32 class ids
    joints: np.ndarray | None = None  # V x 4 int32, indices into joint_names
    weights: np.ndarray | None = None  # V x 4 float32
    joint_names: list[str] = field(default_factory=list)


@dataclass
class Channel:
    node: str  # target node (bone) name
    path: str  # "translation" | "rotation" | "scale"
    times: np.ndarray  # K float32 seconds
    values: np.ndarray  # K x 3 or K x 4 (rotation quaternion x, y, z, w)
    interpolation: str = "LINEAR"


@dataclass
class Animation:
    name: str
    channels: list[Channel]


@dataclass
class NodeRest:
    """A glTF node's rest transform, for turning node-space animation into pose-bone space."""

    names: list[str]
    parents: np.ndarray  # N int (-1: root)
    matrices: np.ndarray  # N x 4 x 4 local rest matrices


@dataclass
class Avatar:
    directory: Path
    name: str
    mesh: MeshData
    materials: list[Material]
    images: list[Image]
    label_names: dict[int, str]  # class id -> name
    label_groups: dict[str, list[int]]  # group -> class ids
    meta: dict
    skeleton: dict | None = None
    animations: list[Animation] = field(default_factory=list)
    nodes: NodeRest | None = None


def read_manifest(directory: str | Path, manifest: str, what: str) -> tuple[Path, dict]:
    """(directory, its manifest JSON) for an output folder; the manifest's version is checked."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AvatarError(f"{directory}: not an {what} directory")
    meta = _read_json(directory / manifest, required=False) or {}
    _check_version(meta, directory / manifest)
    return directory, meta


def read_avatar(directory: str | Path) -> Avatar:
    """Read the avatar in `directory`; raises AvatarError naming the file on any problem."""
    directory, meta = read_manifest(directory, "avatar.json", "avatar")
    glb_path = directory / (meta.get("files", {}).get("glb") or "avatar.glb")
    try:
        glb = Glb(glb_path)
    except GlbError as exc:
        raise AvatarError(str(exc)) from exc
    try:
        mesh = _read_mesh(glb)
        images = [Image(img.get("name") or f"image_{i}", *glb.image_bytes(i)) for i, img in enumerate(glb.list("images"))]
        materials = _read_materials(glb)
        animations = _read_animations(glb)
        nodes = _read_node_rest(glb)
    except GlbError as exc:
        raise AvatarError(str(exc)) from exc
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise AvatarError(f"{glb_path}: malformed glTF ({type(exc).__name__}: {exc})") from exc
    skeleton = _read_json(directory / "skeleton.json", required=False)
    if skeleton is not None:
        _check_version(skeleton, directory / "skeleton.json")
        _check_skeleton(skeleton, directory / "skeleton.json")
    label_names, label_groups = _read_labels(meta)
    return Avatar(
        directory=directory,
        name=meta.get("name") or directory.name,
        mesh=mesh,
        materials=materials,
        images=images,
        label_names=label_names,
        label_groups=label_groups,
        meta=meta,
        skeleton=skeleton,
        animations=animations,
        nodes=nodes,
    )


# --- avatar.json / skeleton.json ------------------------------------------------------------


def _read_json(path: Path, required: bool) -> dict | None:
    if not path.exists():
        if required:
            raise AvatarError(f"{path}: missing")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AvatarError(f"{path}: not readable JSON ({exc})") from exc


def _check_version(doc: dict, path: Path) -> None:
    version = str(doc.get("version", "1.0"))
    try:
        major = int(version.split(".")[0])
    except ValueError as exc:
        raise AvatarError(f"{path}: version {version!r} is not MAJOR.MINOR") from exc
    if major > SUPPORTED_MAJOR:
        raise AvatarError(
            f"{path}: format version {version} is newer than this add-on reads ({SUPPORTED_MAJOR}.x); "
            "update the Sapiens add-on"
        )


def _check_skeleton(skeleton: dict, path: Path) -> None:
    bones = skeleton.get("bones")
    if not isinstance(bones, list) or not bones:
        raise AvatarError(f"{path}: no bones")
    names = {b.get("name") for b in bones}
    for bone in bones:
        if not bone.get("name") or len(bone.get("head", ())) != 3 or len(bone.get("tail", ())) != 3:
            raise AvatarError(f"{path}: bone {bone.get('name')!r} needs a name, a head and a tail")
        if bone.get("parent") not in (None, "") and bone["parent"] not in names:
            raise AvatarError(f"{path}: bone {bone['name']!r} has unknown parent {bone['parent']!r}")


def _read_labels(meta: dict) -> tuple[dict[int, str], dict[str, list[int]]]:
    """Labels table: accepts a list of {id, name[, group]} or a {id: name} mapping."""
    table = meta.get("labels") or {}
    groups: dict[str, list[int]] = {}
    if isinstance(table, dict) and "classes" in table:
        groups_src = table.get("groups") or {}
        table = table["classes"]
    else:
        groups_src = meta.get("label_groups") or meta.get("groups") or {}
    names: dict[int, str] = {}
    if isinstance(table, list):
        for entry in table:
            names[int(entry["id"])] = str(entry["name"])
            if entry.get("group"):
                groups.setdefault(str(entry["group"]), []).append(int(entry["id"]))
    elif isinstance(table, dict):
        names = {int(k): str(v) for k, v in table.items()}
    by_name = {v: k for k, v in names.items()}
    for group, members in (groups_src or {}).items():
        ids = [int(m) if not isinstance(m, str) or m.isdigit() else by_name.get(m, -1) for m in members]
        groups[str(group)] = [i for i in ids if i >= 0]
    return names, groups


# --- glTF -----------------------------------------------------------------------------------


def _mesh_node(glb: Glb) -> tuple[int, dict]:
    for index, node in enumerate(glb.list("nodes")):
        if "mesh" in node:
            return index, node
    raise GlbError(f"{glb.path}: no node with a mesh")


def _read_mesh(glb: Glb) -> MeshData:
    node_index, node = _mesh_node(glb)
    mesh = glb.list("meshes")[node["mesh"]]
    prims = mesh.get("primitives") or []
    if not prims:
        raise GlbError(f"{glb.path}: mesh {node['mesh']} has no primitives")
    for prim in prims:
        if prim.get("mode", TRIANGLES) != TRIANGLES:
            raise GlbError(f"{glb.path}: only triangle primitives are supported (mode {prim['mode']})")
        if "POSITION" not in prim.get("attributes", {}):
            raise GlbError(f"{glb.path}: a primitive has no POSITION")
    shared = len({p["attributes"]["POSITION"] for p in prims}) == 1
    blocks = prims[:1] if shared else prims
    offsets = np.cumsum([0] + [glb.list("accessors")[p["attributes"]["POSITION"]]["count"] for p in blocks])

    def gather(name: str, dtype) -> np.ndarray | None:
        if not all(name in p["attributes"] for p in blocks):
            return None
        return np.concatenate([glb.accessor(p["attributes"][name]) for p in blocks]).astype(dtype, copy=False)

    positions = gather("POSITION", np.float32)
    faces, face_materials = [], []
    for i, prim in enumerate(prims):
        base = 0 if shared else offsets[i]
        count = offsets[1] if shared else offsets[i + 1] - offsets[i]
        if "indices" in prim:
            tri = glb.accessor(prim["indices"]).astype(np.int64)
        else:
            tri = np.arange(count, dtype=np.int64)
        if tri.size % 3:
            raise GlbError(f"{glb.path}: primitive {i} has {tri.size} indices, not a multiple of 3")
        if tri.size and (tri.min() < 0 or tri.max() >= count):
            raise GlbError(f"{glb.path}: primitive {i} indexes past its {count} vertices")
        faces.append((tri + base).reshape(-1, 3))
        face_materials.append(np.full(tri.size // 3, prim.get("material", -1), np.int32))
    faces_all = np.concatenate(faces).astype(np.int32)

    labels = gather(LABEL_ATTRIBUTE, np.float32)
    joints = gather("JOINTS_0", np.int32)
    weights = gather("WEIGHTS_0", np.float32)
    joint_names: list[str] = []
    if joints is not None and "skin" in node:
        skin = glb.list("skins")[node["skin"]]
        nodes = glb.list("nodes")
        joint_names = [nodes[j].get("name") or f"joint_{j}" for j in skin["joints"]]
        if joints.size and joints.max() >= len(joint_names):
            raise GlbError(f"{glb.path}: JOINTS_0 refers to joint {joints.max()} of {len(joint_names)}")
    elif joints is not None:
        joints = weights = None  # weights without a skin cannot be bound to bones

    world = _node_world_matrices(glb)[node_index]
    normals = gather("NORMAL", np.float32)
    if "skin" not in node and not np.allclose(world, np.eye(4)):
        positions = positions @ world[:3, :3].T + world[:3, 3]
        if normals is not None:
            normals = normals @ np.linalg.inv(world[:3, :3])
            normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return MeshData(
        positions=np.ascontiguousarray(positions, dtype=np.float32),
        faces=faces_all,
        face_materials=np.concatenate(face_materials),
        normals=normals,
        uvs=gather("TEXCOORD_0", np.float32),
        labels=None if labels is None else np.rint(labels).astype(np.int32),
        joints=joints,
        weights=weights,
        joint_names=joint_names,
    )


def _texture_image(glb: Glb, info: dict | None) -> int | None:
    if not info:
        return None
    texture = glb.list("textures")[info["index"]]
    return texture.get("source")


def _read_materials(glb: Glb) -> list[Material]:
    out = []
    for i, mat in enumerate(glb.list("materials")):
        pbr = mat.get("pbrMetallicRoughness", {})
        normal = mat.get("normalTexture")
        out.append(
            Material(
                name=mat.get("name") or f"material_{i}",
                base_color=tuple(pbr.get("baseColorFactor", (1.0, 1.0, 1.0, 1.0))),
                metallic=float(pbr.get("metallicFactor", 1.0)),
                roughness=float(pbr.get("roughnessFactor", 1.0)),
                albedo_image=_texture_image(glb, pbr.get("baseColorTexture")),
                normal_image=_texture_image(glb, normal),
                normal_scale=float((normal or {}).get("scale", 1.0)),
                double_sided=bool(mat.get("doubleSided", False)),
            )
        )
    return out


def _trs_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], np.float64).reshape(4, 4).T  # glTF stores column-major
    matrix = np.eye(4)
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    matrix[:3, :3] = quaternion_to_matrix(np.array([[w, x, y, z]]))[0]
    matrix[:3, :3] *= np.asarray(node.get("scale", (1.0, 1.0, 1.0)))
    matrix[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    return matrix


def quaternion_to_matrix(wxyz: np.ndarray) -> np.ndarray:
    """N x 4 (w, x, y, z) quaternions -> N x 3 x 3 rotation matrices (normalizes first)."""
    q = wxyz / np.maximum(np.linalg.norm(wxyz, axis=-1, keepdims=True), 1e-12)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    ).reshape(q.shape[:-1] + (3, 3))


def _node_parents(glb: Glb) -> np.ndarray:
    nodes = glb.list("nodes")
    parents = np.full(len(nodes), -1, np.int64)
    for index, node in enumerate(nodes):
        for child in node.get("children", ()):
            parents[child] = index
    return parents


def _node_world_matrices(glb: Glb) -> np.ndarray:
    nodes = glb.list("nodes")
    parents = _node_parents(glb)
    local = np.stack([_trs_matrix(n) for n in nodes]) if nodes else np.zeros((0, 4, 4))
    world = np.array(local)
    done = parents < 0
    while not done.all():  # depth passes over the hierarchy, vectorised per level
        ready = ~done & done[np.maximum(parents, 0)] & (parents >= 0)
        if not ready.any():
            raise GlbError(f"{glb.path}: the node hierarchy has a cycle")
        world[ready] = world[parents[ready]] @ local[ready]
        done |= ready
    return world


def _read_node_rest(glb: Glb) -> NodeRest | None:
    nodes = glb.list("nodes")
    if not nodes:
        return None
    return NodeRest(
        names=[n.get("name") or f"node_{i}" for i, n in enumerate(nodes)],
        parents=_node_parents(glb),
        matrices=np.stack([_trs_matrix(n) for n in nodes]),
    )


def _read_animations(glb: Glb) -> list[Animation]:
    nodes = glb.list("nodes")
    out = []
    for a, anim in enumerate(glb.list("animations")):
        channels = []
        for ch in anim.get("channels", []):
            target = ch.get("target", {})
            if target.get("path") not in ("translation", "rotation", "scale") or "node" not in target:
                continue  # morph weights and pointer targets are not imported
            sampler = anim["samplers"][ch["sampler"]]
            times = glb.accessor(sampler["input"]).astype(np.float32).reshape(-1)
            values = glb.accessor(sampler["output"]).astype(np.float32)
            interpolation = sampler.get("interpolation", "LINEAR")
            if interpolation == "CUBICSPLINE":  # keep the values, drop the tangents
                values = values.reshape(len(times), 3, -1)[:, 1]
            channels.append(
                Channel(
                    node=nodes[target["node"]].get("name") or f"node_{target['node']}",
                    path=target["path"],
                    times=times,
                    values=values.reshape(len(times), -1),
                    interpolation=interpolation,
                )
            )
        out.append(Animation(name=anim.get("name") or f"animation_{a}", channels=channels))
    return out
