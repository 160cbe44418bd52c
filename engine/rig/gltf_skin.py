"""Put a Rig into a glTF document: joint nodes, a skin over the mesh node, JOINTS_0/WEIGHTS_0,
and (for animation) per-joint rotation channels. Uses engine.avatar.gltf.GltfBuilder.

Every bone becomes a node whose world matrix is the bone's frame (x, y = head->tail, z =
skeleton.json's z_axis, origin at the head), so the glTF joints carry the same orientations as
skeleton.json. The skin lists every bone (so importers make one armature, with no stray empties
for bones such as heel or eye markers); JOINTS_0 only ever names deforming bones.
"""

from __future__ import annotations

import numpy as np

from engine.rig.skeleton import bone_matrices, skeleton_arrays


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


def local_matrices(skeleton: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(bone names, parent indices, B x 4 x 4 bone matrices relative to their parent bone)."""
    names, parents, heads, tails, zs = skeleton_arrays(skeleton)
    world = bone_matrices(heads, tails, zs)
    local = world.copy()
    has = parents >= 0
    local[has] = np.linalg.inv(world[parents[has]]) @ world[has]
    return names, parents, local


def add_joint_nodes(builder, skeleton: dict) -> dict[str, int]:
    """One node per bone, parented like the bones; roots go into the scene. name -> node index."""
    names, parents, local = local_matrices(skeleton)
    nodes: dict[str, int] = {}
    for i, name in enumerate(names):
        q = matrix_to_quaternion(local[i, :3, :3])
        nodes[name] = builder.add_node(name, translation=local[i, :3, 3].tolist(), rotation=q.tolist(),
                                       root=parents[i] < 0)
        if parents[i] >= 0:
            builder.add_child(nodes[names[parents[i]]], nodes[name])
    return nodes


def add_skin(builder, mesh_node: int, rig, *, joint_nodes: dict[str, int] | None = None) -> int:
    """Skin the mesh of `mesh_node` (at the avatar origin) with `rig`; returns the skin index."""
    skeleton = rig.skeleton
    if joint_nodes is None:
        joint_nodes = add_joint_nodes(builder, skeleton)
    names, _, heads, tails, zs = skeleton_arrays(skeleton)
    world = bone_matrices(heads, tails, zs)
    index = {n: i for i, n in enumerate(names)}
    deform = np.array([index[n] for n in rig.joint_names])
    inverse_bind = np.linalg.inv(world)
    skin = builder.add_skin([joint_nodes[n] for n in names], inverse_bind,
                            skeleton=joint_nodes[names[0]], name=f"{skeleton.get('convention', 'rig')} skin")
    mesh = builder.gltf.nodes[mesh_node].mesh
    joints = deform[np.asarray(rig.weights_joints, np.int64)].astype(np.uint16)
    builder.add_primitive_attribute(mesh, "JOINTS_0", joints)
    builder.add_primitive_attribute(mesh, "WEIGHTS_0", np.asarray(rig.weights, np.float32))
    builder.set_node_skin(mesh_node, skin)
    return skin


def add_animation(builder, joint_nodes: dict[str, int], names: list[str], times: np.ndarray,
                  local_rotations: np.ndarray, root_translations: np.ndarray, *, name: str = "motion") -> int:
    """Rotation channels (T x B quaternions, x y z w, relative to each node's parent) for every
    bone and a translation channel for the root bone (T x 3)."""
    anim = builder.add_animation(name)
    t = builder.add_times(times)
    for b, n in enumerate(names):
        builder.add_animation_channel(anim, joint_nodes[n], "rotation", t, local_rotations[:, b])
    builder.add_animation_channel(anim, joint_nodes[names[0]], "translation", t, root_translations)
    return anim
