"""The builds' arm parting: a rigged closed avatar's arms cut from what they touch
(engine.geometry.arm_parting), and the rig told where the cut runs (engine.rig.weights
.PartedArms). Taken after the surface (the crop hands joined) and before the UV islands, only for
a closed surface with a rig: an unrigged avatar never raises its arms, and an open relief has no
solid to part. The one-photo build parts its Surface (part_arms), the fused one its solid
(part_solid, in the reference view's frame)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np


def part_arms(inputs, built, *, progress=None):
    """(the surface with its arms parted, the parted arms' tubes in the camera frame). The surface
    is returned as it was, with avatar.json's `arm_parting` record saying why, when no arm could
    be parted."""
    from engine.avatar.detail import front_vertices
    from engine.geometry.surface import project_uv, vertex_normals

    bundle = inputs.bundle
    if built.vertex_labels is None:
        return replace(built, stats={**built.stats, "arm_parting": {"arms": [], "note": "no labels"}}), []
    if progress is not None:
        progress("surface", 0.95, "parting the arms from the trunk")
    vertices, faces, labels, source, tubes, record = part_solid(inputs, built.vertices, built.faces, built.vertex_labels,
                                                                seen=built.front)
    if not tubes:
        return replace(built, stats={**built.stats, "arm_parting": record}), []
    kept = source >= 0
    front = np.zeros(len(vertices), bool)
    front[kept] = built.front[source[kept]]
    # the cut's own vertices where it meets the seen front lie at their pixel's depth
    front[~kept] = front_vertices(vertices[~kept], inputs)
    pixel = np.full((len(vertices), 2), -1, np.int32)
    pixel[kept] = built.vertex_pixel[source[kept]]
    return replace(built, vertices=vertices, faces=faces, vertex_normals=vertex_normals(vertices, faces),
                   uv=project_uv(vertices, inputs.K, bundle.mask.shape), vertex_labels=labels, vertex_pixel=pixel,
                   front=front, stats={**built.stats, "vertices": int(len(vertices)), "faces": int(len(faces)),
                                       "arm_parting": record}), tubes


def part_solid(inputs, vertices, faces, labels, *, seen=None):
    """A closed solid (the camera frame of `inputs`, the view whose keypoints lift the joints)
    with its arms parted: (vertices, faces, labels, source: each vertex's old index or -1, the
    parted arms' tubes, avatar.json's record). Unchanged, with the record saying why, when no
    arm is parted. seen: the vertices its photo saw (None: all, a solid fused from several
    views), the arms' tubes are fitted to them."""
    from engine.geometry.arm_parting import arm_tubes, part_arms as cut_arms, relabel_parted
    from engine.rig.lift import lift_joints

    bundle = inputs.bundle
    unchanged = (vertices, faces, labels, np.arange(len(vertices)), [])
    if bundle.keypoints is None or bundle.pointmap is None:
        return (*unchanged, {"arms": [], "note": "no keypoints or pointmap"})
    joints = lift_joints(bundle.keypoints, bundle.pointmap, bundle.seg, inputs.K, mask=bundle.mask).as_dict()
    try:
        tubes, notes = arm_tubes(vertices, labels, joints, seen=seen)
        new_vertices, new_faces, source, parted, record = cut_arms(vertices, faces, tubes)
    except (ValueError, RuntimeError, ArithmeticError) as exc:
        # the parting only helps a rig: an arm the geometry cannot part (a degenerate hull, a
        # boolean manifold3d refuses) leaves the avatar as the surface made it, and says why
        return (*unchanged, {"arms": [], "note": f"not parted: {type(exc).__name__}: {exc}"})
    if notes:
        record["notes"] = notes
    if not parted:
        return (*unchanged, record)
    new_labels = relabel_parted(new_vertices, new_faces, source, vertices, labels, parted)
    return new_vertices, new_faces, new_labels, source, parted, record


def parted_sides(vertices_camera: np.ndarray, faces: np.ndarray, tubes: list):
    """engine.rig.weights.PartedArms of a mesh (camera frame) built from a parted surface, None
    when no arm was parted."""
    from engine.geometry.arm_parting import BLEND_M, arm_sides
    from engine.rig.weights import PartedArms

    if not tubes:
        return None
    inside, barred = arm_sides(vertices_camera, faces, tubes, beyond=BLEND_M)
    return PartedArms(inside, barred, [tube.side for tube in tubes])
