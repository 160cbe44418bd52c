"""The avatar as an engine.formats.scene.Scene: the final mesh, one material per label group
(material slots), the textures, and the skeleton and skin when rigged. The writers in
engine.formats turn it into files."""

from __future__ import annotations

import numpy as np

from engine.avatar.labels import class_names, face_labels, group_names, group_of_class
from engine.formats.scene import Material, Mesh, Scene, Texture

# PBR roughness per material slot: skin has some sheen, fabric and hair are matte
SLOT_ROUGHNESS = {"skin": 0.55, "hair": 0.7, "clothing": 0.85, "shoes": 0.6}
DEFAULT_ROUGHNESS = 0.7


def avatar_mesh(vertices, normals, faces, uv, tangents, labels) -> Mesh:
    return Mesh(vertices=vertices, normals=normals, faces=faces, uv=uv, tangents=tangents, labels=labels,
                label_names=list(class_names()), name="avatar")


def material_slots(mesh: Mesh) -> tuple[list[str], list[np.ndarray]]:
    """Label groups with faces, and the indices of their faces in mesh.faces (in
    assets/label_groups.json order)."""
    group = group_of_class()[face_labels(mesh.labels, mesh.faces)]
    names, face_sets = [], []
    for g, name in enumerate(group_names()):
        chosen = np.flatnonzero(group == g)
        if len(chosen):
            names.append(name)
            face_sets.append(chosen)
    return names, face_sets


def avatar_scene(mesh: Mesh, textures: list[Texture], *, metadata: dict, skeleton=None, skin=None) -> Scene:
    """Every slot reads the albedo and (when there is one) the normal map."""
    has_normal = any(t.name == "normal" for t in textures)
    materials = [
        Material(name, mesh.faces[indices], face_indices=indices, base_color="albedo", normal="normal" if has_normal else None,
                 roughness=SLOT_ROUGHNESS.get(name, DEFAULT_ROUGHNESS), extras={"label_group": name})
        for name, indices in zip(*material_slots(mesh))
    ]
    return Scene("avatar", mesh=mesh, materials=materials, textures=textures, skeleton=skeleton, skin=skin, metadata=metadata)
