"""Materials of an avatar: a Principled BSDF per glb material with its albedo and normal map."""

from __future__ import annotations

import os
import tempfile

import bpy
import numpy as np

from ..io.avatar import Avatar
from .created import CreatedData


def add_materials(mesh: bpy.types.Mesh, avatar: Avatar, created: CreatedData) -> None:
    """One material slot per glb material (images loaded once each) and the per-face indices."""
    images: dict[int, bpy.types.Image] = {}

    def image(index: int | None, non_color: bool) -> bpy.types.Image | None:
        if index is None:
            return None
        if index not in images:
            images[index] = load_image(avatar.images[index], f"{mesh.name}_{avatar.images[index].name}", created)
            if non_color:
                images[index].colorspace_settings.name = "Non-Color"
        return images[index]

    for spec in avatar.materials:
        mat = created.add("materials", bpy.data.materials.new(f"{mesh.name}_{spec.name}"))
        build_material(mat, spec, image(spec.albedo_image, False), image(spec.normal_image, True))
        mesh.materials.append(mat)
    if avatar.materials:
        index = np.clip(avatar.mesh.face_materials, 0, len(avatar.materials) - 1).astype(np.int32)
        attr = mesh.attributes.get("material_index") or mesh.attributes.new("material_index", "INT", "FACE")
        attr.data.foreach_set("value", index)


def load_image(spec, name: str, created: CreatedData) -> bpy.types.Image:
    """Load encoded image bytes through a temporary file, then pack them into the .blend."""
    suffix = ".jpg" if "jpeg" in spec.mime_type else ".png"
    fd, path = tempfile.mkstemp(prefix="sapiens_", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(spec.data)
        img = created.add("images", bpy.data.images.load(path, check_existing=False))
        img.name = name
        img.pack()
        img.filepath_raw = f"//{name}{suffix}"  # a stable name if the user unpacks
    finally:
        os.unlink(path)
    return img


def build_material(mat, spec, albedo, normal) -> None:
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    tree = mat.node_tree
    nodes, links = tree.nodes, tree.links
    nodes.clear()
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (400, 0)
    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    bsdf.inputs["Base Color"].default_value = spec.base_color
    bsdf.inputs["Metallic"].default_value = spec.metallic
    bsdf.inputs["Roughness"].default_value = spec.roughness
    mat.use_backface_culling = not spec.double_sided
    if albedo is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.name = tex.label = "Albedo"
        tex.image = albedo
        tex.location = (-400, 200)
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    if normal is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.name = tex.label = "Normal"
        tex.image = normal
        tex.location = (-600, -250)
        normal_map = nodes.new("ShaderNodeNormalMap")
        normal_map.location = (-250, -250)
        normal_map.inputs["Strength"].default_value = spec.normal_scale
        links.new(tex.outputs["Color"], normal_map.inputs["Color"])
        links.new(normal_map.outputs["Normal"], bsdf.inputs["Normal"])
