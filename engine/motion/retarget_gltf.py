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
from engine.motion.retarget import RestSkeleton, RetargetResult, orthonormal
from engine.motion.retarget_sources import GltfCharacter

FLOAT, SCALAR, VEC3, VEC4, MAT4 = 5126, "SCALAR", "VEC3", "VEC4", "MAT4"


def _append(gltf, data: np.ndarray, kind: str, *, minmax: bool = False) -> int:
    """Append a float32 array to the GLB's binary chunk as a new accessor; its index."""
    import pygltflib

    blob = gltf.binary_blob() or b""
    pad = (-len(blob)) % 4
    payload = np.ascontiguousarray(data, np.float32).tobytes()
    if not gltf.buffers:
        gltf.buffers.append(pygltflib.Buffer(byteLength=0))
    gltf.bufferViews.append(pygltflib.BufferView(buffer=0, byteOffset=len(blob) + pad, byteLength=len(payload)))
    gltf.set_binary_blob(blob + b"\0" * pad + payload)
    gltf.buffers[0].byteLength = len(blob) + pad + len(payload)
    flat = np.asarray(data, np.float32).reshape(len(data), -1)
    acc = pygltflib.Accessor(bufferView=len(gltf.bufferViews) - 1, componentType=FLOAT, count=len(data), type=kind)
    if minmax:
        acc.min, acc.max = flat.min(0).tolist(), flat.max(0).tolist()
    gltf.accessors.append(acc)
    return len(gltf.accessors) - 1


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
    anim = pygltflib.Animation(name=name, samplers=[], channels=[])
    times = _append(gltf, np.arange(T) / result.fps, SCALAR, minmax=True)
    travelling = {plan.hips} | {b for b in range(len(skeleton.names)) if skeleton.parents[b] < 0}
    for b, node in enumerate(character.nodes):
        parent_node = int(character.node_parent[node])
        if parent_node < 0:
            local = full[:, b]
        elif parent_node in bone_of_node:
            local = np.linalg.inv(full[:, bone_of_node[parent_node]]) @ full[:, b]
        else:                                                     # a non-joint parent stays put
            local = np.linalg.inv(character.node_world[parent_node])[None] @ full[:, b]
        rotation = continuous_quaternions(matrix_to_quaternion(orthonormal(local[:, :3, :3])))
        channels = [("rotation", rotation, VEC4)]
        if b in travelling:
            channels.append(("translation", local[:, :3, 3], VEC3))
        for path, values, kind in channels:
            anim.samplers.append(pygltflib.AnimationSampler(input=times, output=_append(gltf, values, kind),
                                                            interpolation="LINEAR"))
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
