"""The retargeted motion as a GLB: the target character's own file with one animation added
(mesh, materials, textures and skin untouched), or, for a skeleton.json target, its joints and
skin with that animation.

The engine.formats glb writer builds documents from a Scene; it cannot carry an arbitrary
character's meshes and materials through, and it moves only the first root (a target whose
hips hang under a root bone must move its hips). So the animation is appended here, with
pygltflib, to the character's own document.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from engine.errors import EngineError
from engine.formats.scene import continuous_quaternions, matrix_to_quaternion
from engine.motion.retarget import RestSkeleton, RetargetResult
from engine.motion.retarget_sources import GltfCharacter

FLOAT, SCALAR, VEC3, VEC4, MAT4 = 5126, "SCALAR", "VEC3", "VEC4", "MAT4"


def _append_many(gltf, arrays: list[tuple[np.ndarray, str, bool]]) -> list[int]:
    """Append float32 arrays (data, accessor type, with min/max) to the GLB's binary chunk in one
    copy, one buffer view and accessor each; their accessor indices."""
    import pygltflib

    blob = gltf.binary_blob() or b""
    if not gltf.buffers:
        gltf.buffers.append(pygltflib.Buffer(byteLength=0))
    chunks, offset, out = [blob], len(blob), []
    for data, kind, minmax in arrays:
        pad = (-offset) % 4
        payload = np.ascontiguousarray(data, np.float32).tobytes()
        chunks += [b"\0" * pad, payload]
        offset += pad
        gltf.bufferViews.append(pygltflib.BufferView(buffer=0, byteOffset=offset, byteLength=len(payload)))
        offset += len(payload)
        acc = pygltflib.Accessor(bufferView=len(gltf.bufferViews) - 1, componentType=FLOAT, count=len(data), type=kind)
        if minmax:
            flat = np.asarray(data, np.float32).reshape(len(data), -1)
            acc.min, acc.max = flat.min(0).tolist(), flat.max(0).tolist()
        gltf.accessors.append(acc)
        out.append(len(gltf.accessors) - 1)
    gltf.set_binary_blob(b"".join(chunks))
    gltf.buffers[0].byteLength = offset
    return out


def _append(gltf, data: np.ndarray, kind: str, *, minmax: bool = False) -> int:
    """Append one float32 array as a new accessor; its index."""
    return _append_many(gltf, [(data, kind, minmax)])[0]


def skeleton_document(skeleton: RestSkeleton) -> tuple[object, GltfCharacter]:
    """A glTF document with one node per bone (parented like the bones) and a skin over them."""
    import pygltflib

    gltf = pygltflib.GLTF2(asset=pygltflib.Asset(version="2.0", generator="sapiens-engine retarget"))
    local = skeleton.rest_local()
    quats = matrix_to_quaternion(local[:, :3, :3])
    for b, name in enumerate(skeleton.names):
        gltf.nodes.append(pygltflib.Node(name=name, translation=local[b, :3, 3].tolist(), rotation=quats[b].tolist(),
                                         children=[]))
        if skeleton.parents[b] >= 0:
            gltf.nodes[skeleton.parents[b]].children.append(b)
    for node in gltf.nodes:
        node.children = node.children or None
    roots = [b for b in range(len(skeleton.names)) if skeleton.parents[b] < 0]
    gltf.scenes = [pygltflib.Scene(nodes=roots)]
    gltf.scene = 0
    ibm = np.linalg.inv(skeleton.rest)
    gltf.skins = [pygltflib.Skin(name="skeleton", joints=list(range(len(skeleton.names))), skeleton=roots[0],
                                 inverseBindMatrices=_append(gltf, np.swapaxes(ibm, 1, 2), MAT4))]
    parents = np.asarray(skeleton.parents)
    character = GltfCharacter(Path("skeleton.json"), gltf, skeleton, list(range(len(skeleton.names))),
                              skeleton.rest.copy(), parents, np.ones(len(skeleton.names)))
    return gltf, character


def _inverse_similarity(m: np.ndarray) -> np.ndarray:
    """Inverse of ... x 4 x 4 rotation x uniform scale + translation matrices (closed form)."""
    a = m[..., :3, :3]
    at = np.swapaxes(a, -1, -2) / (a[..., :, 0] ** 2).sum(-1)[..., None, None]
    out = np.zeros_like(m)
    out[..., :3, :3] = at
    out[..., :3, 3] = -(at @ m[..., :3, 3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def add_animation(character: GltfCharacter, result: RetargetResult, name: str = "retargeted") -> int:
    """One animation on the character's joint nodes: every joint's rotation, and the translation
    of the bones that travel (the hips, and any root). Node transforms are relative to the node's
    own parent (joint or not, scale included)."""
    import pygltflib

    gltf, plan = character.gltf, result.plan
    skeleton = character.skeleton
    T = len(result.world)
    bone_of_node = {n: b for b, n in enumerate(character.nodes)}
    full = result.world.copy()                                   # T x B x 4 x 4 with each node's scale
    full[..., :3, :3] *= character.scales[None, :, None, None]
    times = np.arange(T) / result.fps
    travelling = {plan.hips} | {b for b in range(len(skeleton.names)) if skeleton.parents[b] < 0}
    tracks = []                                                   # (node, path, values, type)
    for b, node in enumerate(character.nodes):
        parent_node = int(character.node_parent[node])
        if parent_node < 0:
            local = full[:, b]
        elif parent_node in bone_of_node:
            local = _inverse_similarity(full[:, bone_of_node[parent_node]]) @ full[:, b]
        else:                                                     # a non-joint parent stays put
            local = np.linalg.inv(character.node_world[parent_node])[None] @ full[:, b]
        a = local[:, :3, :3]                                       # rotation x (uniform) scale
        rotation = continuous_quaternions(matrix_to_quaternion(a / np.linalg.norm(a[:, :, :1], axis=1, keepdims=True)))
        tracks.append((node, "rotation", rotation, VEC4))
        if b in travelling:
            tracks.append((node, "translation", local[:, :3, 3], VEC3))
    accessors = _append_many(gltf, [(times, SCALAR, True)] + [(v, kind, False) for _, _, v, kind in tracks])
    anim = pygltflib.Animation(name=name, samplers=[], channels=[])
    for (node, path, _, _), output in zip(tracks, accessors[1:]):
        anim.samplers.append(pygltflib.AnimationSampler(input=accessors[0], output=output, interpolation="LINEAR"))
        anim.channels.append(pygltflib.AnimationChannel(
            sampler=len(anim.samplers) - 1, target=pygltflib.AnimationChannelTarget(node=node, path=path)))
    gltf.animations = [anim]          # the character's own clips would fight this one
    return 0


def write_glb(path: Path, result: RetargetResult, character: GltfCharacter | None = None) -> None:
    """animation.glb: the character with the retargeted animation (or its bare skeleton)."""
    if character is None:
        _, character = skeleton_document(result.plan.target)
    if [character.skeleton.names[b] for b in range(len(character.nodes))] != result.plan.target.names:
        raise EngineError("the retargeted skeleton is not the character's")
    add_animation(character, result)
    extras = character.gltf.asset.extras if isinstance(character.gltf.asset.extras, dict) else {}
    extras["sapiens"] = {"format": "sapiens-retarget", "version": "1.0"}
    character.gltf.asset.extras = extras
    try:
        character.gltf.save_binary(str(path))
    except (OSError, struct.error) as exc:
        raise EngineError(f"{path}: could not write the GLB ({exc})") from None
