"""Where skeletons and motions for retargeting come from: an `animate` output directory, a
skeleton.json, a skinned glTF/GLB character, or bones sent by a DCC client over the protocol."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import EngineError
from engine.motion.retarget import RestSkeleton, orthonormal, reordered
from engine.rig.skeleton import bone_matrices

VRM_HUMANOID_EXTENSIONS = ("VRMC_vrm", "VRM")


# --- skeleton.json ------------------------------------------------------------------------------
def skeleton_from_json(doc: dict, where: str = "skeleton.json") -> RestSkeleton:
    """A `sapiens-skeleton` document (docs/rig.md) -> RestSkeleton (bone frames: x, y = head ->
    tail, z = z_axis)."""
    bones = doc.get("bones") if isinstance(doc, dict) else None
    if not isinstance(bones, list) or not bones:
        raise EngineError(f"{where}: no 'bones' list (expected a sapiens-skeleton document, docs/rig.md)")
    try:
        names = [str(b["name"]) for b in bones]
        idx = {n: i for i, n in enumerate(names)}
        parents = [idx[b["parent"]] if b.get("parent") else -1 for b in bones]
        heads = np.array([b["head"] for b in bones], np.float64)
        tails = np.array([b["tail"] for b in bones], np.float64)
        zs = np.array([b["z_axis"] for b in bones], np.float64)
    except KeyError as exc:
        raise EngineError(f"{where}: a bone lacks {exc} or names an unknown parent") from None
    except (TypeError, ValueError) as exc:
        raise EngineError(f"{where}: bone heads, tails and z axes must be [x, y, z] numbers ({exc})") from None
    if heads.shape != (len(bones), 3) or tails.shape != heads.shape or zs.shape != heads.shape:
        raise EngineError(f"{where}: bone heads, tails and z axes must be [x, y, z] numbers")
    sk, _ = reordered(names, parents, bone_matrices(heads, tails, zs), tails)
    return sk


def skeleton_from_bones(bones: list, where: str = "bones") -> RestSkeleton:
    """Bones sent by a client: [{name, parent, matrix (4 x 4 rows: rest axes as columns, head as
    translation, in the armature's space), tail (optional)}] or skeleton.json-style bones
    (head, tail, z_axis)."""
    if not isinstance(bones, list) or not bones:
        raise EngineError(f"{where}: a non-empty list of bones is needed")
    if all(isinstance(b, dict) and "z_axis" in b for b in bones):
        return skeleton_from_json({"bones": bones}, where)
    try:
        names = [str(b["name"]) for b in bones]
        idx = {n: i for i, n in enumerate(names)}
        parents = [idx[b["parent"]] if b.get("parent") else -1 for b in bones]
        mats = np.array([b["matrix"] for b in bones], np.float64)
        tails = np.array([b["tail"] for b in bones], np.float64) if all("tail" in b for b in bones) else None
    except KeyError as exc:
        raise EngineError(f"{where}: a bone lacks {exc} (name, parent, matrix) or names an unknown parent") from None
    except (TypeError, ValueError) as exc:
        raise EngineError(f"{where}: bone matrices must be 4 x 4 numbers ({exc})") from None
    if mats.shape != (len(bones), 4, 4) or (tails is not None and tails.shape != (len(bones), 3)):
        raise EngineError(f"{where}: each bone needs a 4 x 4 'matrix' (and an [x, y, z] 'tail' if any has one)")
    rest = mats.copy()
    rest[:, :3, :3] = orthonormal(mats[:, :3, :3])
    rest[:, 3] = [0, 0, 0, 1]
    sk, _ = reordered(names, parents, rest, tails)
    return sk


# --- glTF / GLB ---------------------------------------------------------------------------------
@dataclass
class GltfCharacter:
    """A skinned glTF character: its skeleton and what writing an animation into it needs."""

    path: Path
    gltf: object                    # pygltflib.GLTF2
    skeleton: RestSkeleton
    nodes: list[int]                # skeleton bone -> glTF node index
    node_world: np.ndarray          # N x 4 x 4 every node's rest world matrix (scale included)
    node_parent: np.ndarray         # N parent node index or -1
    scales: np.ndarray              # B uniform world scale of each bone's node


def _node_local(node) -> np.ndarray:
    if node.matrix is not None and len(node.matrix) == 16:
        return np.array(node.matrix, np.float64).reshape(4, 4).T       # glTF stores columns
    from scipy.spatial.transform import Rotation

    m = np.eye(4)
    if node.rotation is not None:
        m[:3, :3] = Rotation.from_quat(node.rotation).as_matrix()
    if node.scale is not None:
        m[:3, :3] = m[:3, :3] * np.array(node.scale, np.float64)[None]
    if node.translation is not None:
        m[:3, 3] = node.translation
    return m


def load_gltf(path: str | Path) -> GltfCharacter:
    """The first skin's joints of a .glb/.gltf as a RestSkeleton (rest = the nodes' own transforms,
    metres as the file has them); VRM humanoid labels become the bones' parts."""
    try:
        import pygltflib
    except ImportError as exc:
        raise EngineError(f"reading glTF characters needs pygltflib ({exc})") from None
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"{path}: character file not found")
    try:
        with open(path, "rb") as f:
            binary = f.read(4) == b"glTF"       # .glb and .vrm are binary glTF; .gltf is JSON
        gltf = pygltflib.GLTF2().load_binary(str(path)) if binary else pygltflib.GLTF2().load_json(str(path))
    except Exception as exc:          # pygltflib raises bare Exceptions/struct errors on bad bytes
        raise EngineError(f"{path}: not a readable glTF/GLB file ({type(exc).__name__}: {exc})") from None
    if gltf is None or not gltf.nodes:
        raise EngineError(f"{path}: the glTF file has no nodes")
    if not gltf.skins:
        raise EngineError(f"{path}: the character has no skin (no skeleton to retarget onto); "
                          f"give its skeleton.json or export it with its armature")
    if not binary:
        gltf.convert_buffers(pygltflib.BufferFormat.BINARYBLOB)
    N = len(gltf.nodes)
    node_parent = np.full(N, -1, np.int64)
    for i, node in enumerate(gltf.nodes):
        for c in node.children or []:
            node_parent[c] = i
    local = np.stack([_node_local(n) for n in gltf.nodes])
    world = np.zeros_like(local)
    done = np.zeros(N, bool)
    for i in range(N):
        chain, p = [], i
        while p >= 0 and not done[p]:
            chain.append(p)
            p = node_parent[p]
        for q in reversed(chain):
            world[q] = local[q] if node_parent[q] < 0 else world[node_parent[q]] @ local[q]
            done[q] = True
    skin = max(gltf.skins, key=lambda s: len(s.joints or []))
    joints = list(skin.joints or [])
    if not joints:
        raise EngineError(f"{path}: the character's skin lists no joints")
    joint_set = set(joints)
    parents = []
    for j in joints:
        p = node_parent[j]
        while p >= 0 and p not in joint_set:
            p = node_parent[p]
        parents.append(joints.index(p) if p >= 0 else -1)
    names = [gltf.nodes[j].name or f"joint{k}" for k, j in enumerate(joints)]
    if len(set(names)) != len(names):
        raise EngineError(f"{path}: the skin's joint names repeat; name every bone once")
    mats = world[joints]
    scales = np.cbrt(np.abs(np.linalg.det(mats[:, :3, :3])))
    rest = mats.copy()
    rest[:, :3, :3] = orthonormal(mats[:, :3, :3])
    parts = _vrm_parts(gltf, joints, names)
    sk, order = reordered(names, parents, rest, None, parts)
    return GltfCharacter(path, gltf, sk, [joints[o] for o in order], world, node_parent, scales[order])


def _vrm_parts(gltf, joints: list[int], names: list[str]) -> dict[str, str]:
    """VRM files say which node plays which humanoid part: bone name -> part."""
    ext = gltf.extensions or {}
    by_node = {j: n for j, n in zip(joints, names)}
    out = {}
    if isinstance(ext.get("VRMC_vrm"), dict):            # VRM 1.0: humanBones {part: {node}}
        bones = ext["VRMC_vrm"].get("humanoid", {}).get("humanBones", {})
        for part, spec in bones.items():
            if isinstance(spec, dict) and spec.get("node") in by_node:
                out[by_node[spec["node"]]] = _vrm1_part(part)
    elif isinstance(ext.get("VRM"), dict):               # VRM 0.x: humanBones [{bone, node}]
        for spec in ext["VRM"].get("humanoid", {}).get("humanBones", []):
            if isinstance(spec, dict) and spec.get("node") in by_node:
                out[by_node[spec["node"]]] = spec.get("bone", "")
    return out


def _vrm1_part(part: str) -> str:
    # VRM 1.0's thumb runs metacarpal, proximal, distal; the 0.x names (ours) proximal, intermediate, distal
    for side in ("left", "right"):
        if part == f"{side}ThumbMetacarpal":
            return f"{side}ThumbProximal"
        if part == f"{side}ThumbProximal":
            return f"{side}ThumbIntermediate"
    return part


def load_target(path: str | Path) -> tuple[RestSkeleton, GltfCharacter | None]:
    """A character file -> (skeleton, the glTF it came from or None for skeleton.json)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".glb", ".gltf", ".vrm"):
        character = load_gltf(path)
        return character.skeleton, character
    if suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise EngineError(f"{path}: skeleton file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EngineError(f"{path}: not a readable skeleton.json ({exc})") from None
        return skeleton_from_json(doc, str(path)), None
    if path.is_dir() and (path / "skeleton.json").is_file():
        return load_target(path / "skeleton.json")
    raise EngineError(f"{path}: a target character is a .glb/.gltf/.vrm with a skin or a skeleton.json")


# --- the motion (animate's output) --------------------------------------------------------------
@dataclass
class SourceMotion:
    skeleton: RestSkeleton
    world: np.ndarray               # T x B x 4 x 4 bone frames per frame (avatar frame)
    fps: float
    filled: np.ndarray              # T bool
    contact: np.ndarray | None = None   # T x 2 bool [left, right]: the foot stands (animate --feet lock)


def motion_from_local(skeleton: RestSkeleton, rotations: np.ndarray, root_positions: np.ndarray,
                      fps: float, filled: np.ndarray | None = None, contact: np.ndarray | None = None) -> SourceMotion:
    """Bone rotations relative to the parent (T x B x 3 x 3) and the root's positions (T x 3)
    with the rest skeleton's bone offsets -> world bone frames."""
    T, B = rotations.shape[:2]
    offsets = skeleton.rest_local()[:, :3, 3]
    world = np.zeros((T, B, 4, 4))
    world[..., 3, 3] = 1.0
    for b, p in enumerate(skeleton.parents):     # one step per bone, vectorised over frames
        if p < 0:
            world[:, b, :3, :3] = rotations[:, b]
            world[:, b, :3, 3] = root_positions if b == 0 else skeleton.heads[b]
        else:
            world[:, b, :3, :3] = world[:, p, :3, :3] @ rotations[:, b]
            world[:, b, :3, 3] = world[:, p, :3, 3] + world[:, p, :3, :3] @ offsets[b]
    return SourceMotion(skeleton, world, float(fps), np.zeros(T, bool) if filled is None else np.asarray(filled, bool),
                        None if contact is None else np.asarray(contact, bool))


def read_motion(motion_dir: str | Path) -> SourceMotion:
    """An `animate` output directory (docs/rig.md): skeleton.json (rest) + frames/NNNNNN.json;
    animation.json, when there, gives the frame rate. Every bad file is refused naming the file
    and the field."""
    from scipy.spatial.transform import Rotation

    motion_dir = Path(motion_dir)
    if not motion_dir.is_dir():
        raise EngineError(f"{motion_dir}: not a motion directory (the output of `sapiens-engine animate`)")
    sk_path, frames_dir, summary_path = motion_dir / "skeleton.json", motion_dir / "frames", motion_dir / "animation.json"
    if not sk_path.is_file() or not frames_dir.is_dir():
        raise EngineError(f"{motion_dir}: a motion directory holds skeleton.json and frames/ "
                          f"(the output of `sapiens-engine animate`)")
    skeleton_doc = _json_object(sk_path, "a sapiens-skeleton document (docs/rig.md)")
    summary = _json_object(summary_path, "a sapiens-animation document (docs/rig.md)") if summary_path.is_file() else {}
    if skeleton_doc.get("format", "sapiens-skeleton") != "sapiens-skeleton":
        raise EngineError(f"{sk_path}: format is {skeleton_doc.get('format')!r}, not a sapiens-skeleton")
    skeleton = skeleton_from_json(skeleton_doc, str(sk_path))
    fps = _frame_rate(summary, summary_path)
    files = sorted(frames_dir.glob("*.json"))
    if not files:
        raise EngineError(f"{frames_dir}: no frames in the motion")
    quats = np.zeros((len(files), len(skeleton.names), 4))
    root = np.zeros((len(files), 3))
    filled = np.zeros(len(files), bool)
    contact = np.zeros((len(files), 2), bool)
    has_contacts = False
    for t, f in enumerate(files):
        try:
            doc = json.loads(f.read_text())
            bones = doc["bones"]
            quats[t] = [bones[n]["rotation"] for n in skeleton.names]
            root[t] = doc["root_position"]
            filled[t] = bool(doc.get("filled", False))
            if "contacts" in doc:      # animate --feet lock: which foot stands in this frame
                if not isinstance(doc["contacts"], dict):
                    raise TypeError(f"'contacts' is {doc['contacts']!r}, not {{\"L\": bool, \"R\": bool}}")
                contact[t] = [bool(doc["contacts"].get(side, False)) for side in ("L", "R")]
                has_contacts = True
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"{f}: not a motion frame of this skeleton ({type(exc).__name__}: {exc})") from None
    _check_frames(files, skeleton.names, quats, root)
    rotations = Rotation.from_quat(quats.reshape(-1, 4)).as_matrix().reshape(len(files), -1, 3, 3)
    return motion_from_local(skeleton, rotations, root, fps, filled, contact if has_contacts else None)


def _json_object(path: Path, what: str) -> dict:
    """A JSON file that must hold one object."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"{path}: unreadable ({exc}); expected {what}") from None
    if not isinstance(doc, dict):
        raise EngineError(f"{path}: holds a JSON {type(doc).__name__}, not an object; expected {what}")
    return doc


def _frame_rate(summary: dict, path: Path) -> float:
    """animation.json's `fps`: a positive, finite number (30 when the file or the field is absent)."""
    fps = summary.get("fps")
    if fps is None:
        return 30.0
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not np.isfinite(fps) or fps <= 0:
        raise EngineError(f"{path}: 'fps' is {fps!r}; the frame rate must be a positive number of frames per second")
    return float(fps)


def _check_frames(files: list[Path], names: list[str], quats: np.ndarray, root: np.ndarray) -> None:
    """Rotations must be finite quaternions of non-zero length, root positions finite."""
    norms = np.linalg.norm(quats, axis=-1)
    bad = ~np.isfinite(norms) | (norms < 1e-6)
    if bad.any():
        t, b = np.argwhere(bad)[0]
        raise EngineError(f"{files[t]}: bone '{names[b]}' has rotation {quats[t, b].tolist()}, not a rotation "
                          f"quaternion [x, y, z, w] (zero length or not finite); {int(bad.sum())} such rotations "
                          f"in {int(bad.any(axis=1).sum())} frames")
    bad_root = ~np.isfinite(root).all(axis=1)
    if bad_root.any():
        t = int(np.flatnonzero(bad_root)[0])
        raise EngineError(f"{files[t]}: 'root_position' is {root[t].tolist()}, not finite")
