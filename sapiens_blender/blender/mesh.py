"""Mesh data of an avatar: vertices, faces, UVs, custom normals, body-part labels.

All bulk data goes through numpy and `foreach_set` on the generic attribute arrays; the only
Python loop is over the label values (one vertex group per body part).
"""

from __future__ import annotations

import bpy
import numpy as np

from ..io.avatar import Avatar
from .axes import to_blender_axes
from .created import CreatedData
from .material import add_materials

LABEL_ATTRIBUTE = "sapiens_label"


def build_mesh(avatar: Avatar, name: str, created: CreatedData) -> bpy.types.Mesh:
    """Mesh data through the generic attribute arrays (position, .corner_vert, UVMap, ...):
    their foreach_set copies straight into Blender's arrays, several times faster than the
    MeshVertex / MeshLoop wrappers on large meshes."""
    data = avatar.mesh
    mesh = created.add("meshes", bpy.data.meshes.new(name))
    n_verts, n_faces = len(data.positions), len(data.faces)
    corners = np.ascontiguousarray(data.faces, dtype=np.int32).ravel()
    mesh.vertices.add(n_verts)
    mesh.loops.add(len(corners))
    mesh.polygons.add(n_faces)
    attributes = mesh.attributes
    attributes["position"].data.foreach_set("vector", to_blender_axes(data.positions).ravel())
    attributes[".corner_vert"].data.foreach_set("value", corners)
    mesh.polygons.foreach_set("loop_start", np.arange(0, len(corners), 3, dtype=np.int32))
    mesh.update(calc_edges=True)

    if data.uvs is not None:
        uv = np.empty((len(corners), 2), np.float32)
        uv[:, 0] = data.uvs[corners, 0]
        uv[:, 1] = 1.0 - data.uvs[corners, 1]  # glTF v runs down, Blender's up
        layer = mesh.uv_layers.new(name="UVMap")
        attributes[layer.name].data.foreach_set("vector", uv.ravel())

    add_materials(mesh, avatar, created)

    if hasattr(mesh, "shade_smooth"):
        mesh.shade_smooth()
    else:  # Blender < 4.1
        mesh.polygons.foreach_set("use_smooth", np.ones(n_faces, bool))
    if data.normals is not None:
        set_custom_normals(mesh, to_blender_axes(data.normals))

    if data.labels is not None:
        attr = attributes.new(LABEL_ATTRIBUTE, "INT", "POINT")
        attr.data.foreach_set("value", np.ascontiguousarray(data.labels, np.int32))
    # No mesh.validate(): the reader has checked every index (it would cost a second per 300k verts).
    return mesh


def set_custom_normals(mesh: bpy.types.Mesh, normals: np.ndarray) -> None:
    if bpy.app.version >= (4, 5, 0):  # custom normals are a plain "custom_normal" attribute
        attr = mesh.attributes.new("custom_normal", "FLOAT_VECTOR", "POINT")
        attr.data.foreach_set("vector", np.ascontiguousarray(normals, np.float32).ravel())
        return
    if hasattr(mesh, "use_auto_smooth"):  # Blender < 4.1 needs it for custom normals
        mesh.use_auto_smooth = True
    mesh.normals_split_custom_set_from_vertices(normals)


def add_label_groups(obj: bpy.types.Object, avatar: Avatar) -> None:
    """One vertex group per body part present (background excluded), named from avatar.json."""
    labels = avatar.mesh.labels
    if labels is None or not len(labels):
        return
    order = np.argsort(labels, kind="stable")
    values, starts = np.unique(labels[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    for value, start, end in zip(values.tolist(), starts.tolist(), ends.tolist()):
        if value == 0:  # background never becomes a part
            continue
        group = obj.vertex_groups.new(name=avatar.label_names.get(value, f"label_{value}"))
        group.add(order[start:end].tolist(), 1.0, "REPLACE")
