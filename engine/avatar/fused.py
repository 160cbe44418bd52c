"""Several predictions bundles of one person (front, back, sides) -> one avatar directory.

The stages of engine.avatar.build, with the surface and the textures made from every view:
read and check each bundle -> each view's hand and face crops fused into its maps (engine.avatar
.detail, as for one photo) -> lift each view's joints (engine.rig.lift) -> fuse (engine.geometry
.fusion: views registered into the first view's camera from their joints, refused in words when
they disagree, the union of their trusted fronts closed by Poisson) -> each view's crops carried
onto the solid through its registration (a hand solved again from the first view's crop that
shows it, the other crops' finer depth snapped on along that view's rays) -> UV islands, one per view
(engine.avatar.views) -> avatar frame -> textures blended from the views -> rig from the first
(reference) view's keypoints -> the formats and avatar.json (with its "views" table), all
written atomically as a one-photo avatar is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from engine import fileio
from engine.avatar import stages, views as mv
from engine.avatar.build import _avatar_name, _check_options, _check_output, _engine_version, _writer_pool
from engine.avatar.detail import fuse_crop_maps
from engine.avatar.heap import reuse_freed_arrays
from engine.avatar.labels import groups_table, labels_table
from engine.avatar.manifest import (
    FORMAT_NAME, FORMAT_VERSION, avatar_manifest, mesh_summary, provenance, rig_summary, textures_summary,
)
from engine.avatar.parting import part_solid
from engine.errors import BundleError, EngineError
from engine.formats import writers_for
from engine.formats.textures import avatar_textures
from engine.geometry.refine_border import Photo

# grid size of each view's front for the solid, per resolution option (watertight.CLOSED_MAX_PIXELS
# at full resolution)
FUSION_MAX_PIXELS = {"full": None, "half": 40_000, "quarter": 20_000}


def _view_joints(inputs: stages.Inputs, lift_joints) -> dict:
    bundle = inputs.bundle
    joints = lift_joints(bundle.keypoints, bundle.pointmap, bundle.seg, inputs.K, mask=bundle.mask)
    return {n: (joints.positions[i], float(joints.confidence[i])) for i, n in enumerate(joints.names)}


def _read_views(bundle_dirs, *, detail, rig) -> list[stages.Inputs]:
    views = []
    for i, bundle_dir in enumerate(bundle_dirs):
        inputs = stages.read(bundle_dir, detail=detail, rig=rig if i == 0 else None)
        missing = [name for name in ("keypoints", "pointmap") if getattr(inputs.bundle, name) is None]
        if missing:
            raise BundleError(f"{bundle_dir}: fusing views needs each view's predicted {' and '.join(missing)} "
                              "(the views are registered from their keypoints), which this bundle lacks")
        views.append(inputs)
    return views


def build_fused_avatar(
    bundle_dirs,
    out_dir,
    *,
    detail: str = "normals",
    resolution: str = "full",
    watertight: bool = True,
    target_faces: int | None = None,
    texture_size: int = 2048,
    rig: str | None = None,
    rest_pose: str = "photo",
    formats=None,
    detail_crops: bool = True,
    progress=None,
) -> Path:
    """One avatar at `out_dir` from the bundles of several photos of one person (the first is the
    reference: its camera, its keypoints for the rig). Raises BundleError when a bundle cannot
    be fused or the views disagree (different people, another pose), EngineError for bad
    options; nothing is left at `out_dir` then. detail_crops: each bundle's hand and face crops
    are fused (a crop that cannot be used is a note in avatar.json, never a failure)."""
    bundle_dirs = [Path(b) for b in bundle_dirs]
    if len(bundle_dirs) < 2:
        raise EngineError("fusing views needs at least two predictions bundles of the same person")
    resolved = [b.resolve() for b in bundle_dirs]
    repeated = [str(b) for i, b in enumerate(bundle_dirs) if resolved[i] in resolved[:i]]
    if repeated:
        raise EngineError(f"{repeated[0]}: given twice; each view once (several views are several photos)")
    if not watertight:
        raise EngineError("several views are fused into a closed solid; the open relief (watertight off) "
                          "is made from one photo only")
    with reuse_freed_arrays():
        return _build(bundle_dirs, Path(out_dir), detail=detail, resolution=resolution, target_faces=target_faces,
                      texture_size=texture_size, rig=rig, rest_pose=rest_pose, formats=formats, detail_crops=detail_crops,
                      progress=progress)


def _build(bundle_dirs, out_dir, *, detail, resolution, target_faces, texture_size, rig, rest_pose, formats, detail_crops,
           progress) -> Path:
    from engine.geometry.cleanup import weld_short_edges
    from engine.geometry.fusion import View, fuse_views

    _check_options(detail, resolution, target_faces, texture_size)
    if rest_pose != "photo" and not rig:
        raise EngineError(f"a rest pose ({rest_pose}) applies to a rig: ask for one with rig=NAME (--rig)")
    selected = writers_for(formats, "avatar")
    rigging = stages.load_rigging()  # the joints register the views, with or without a rig
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def report(stage, fraction, message):
        if progress is not None:
            progress(stage, fraction, message)

    def lap(stage):
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now

    report("read", 0.0, f"reading {len(bundle_dirs)} views")
    inputs = _read_views(bundle_dirs, detail=detail, rig=rig)
    names = [_avatar_name(v.bundle, d) for v, d in zip(inputs, bundle_dirs)]
    # each view's crops fused into its maps first: the solid, the joints and the textures read them
    crops = [fuse_crop_maps(v, enabled=detail_crops, resolution=resolution) for v in inputs]
    geometry_views = [
        View(v.bundle.pointmap, v.bundle.mask, v.K, v.bundle.normal, v.bundle.seg, _view_joints(v, rigging[0]), name)
        for v, name in zip(inputs, names)
    ]
    lap("read")
    _check_output(out_dir)

    with fileio.atomic_directory(out_dir) as tmp, _writer_pool() as writers:
        report("surface", 0.0, f"fusing {len(inputs)} views")
        fused = fuse_views(geometry_views, refine=detail == "normals", max_pixels=FUSION_MAX_PIXELS[resolution],
                           progress=progress)
        vertices, faces, labels = np.asarray(fused.vertices, np.float64), fused.faces, fused.labels
        if labels is None:
            labels = np.zeros(len(vertices), np.uint8)
        if any(c is not None for c in crops):
            report("surface", 0.8, "hand and face crops carried onto the solid")
            vertices, faces, labels, record = crops_on_solid(inputs, crops, fused.transforms, names, vertices, faces, labels)
            fused.stats["detail_crops"] = record
        # micrometre edges (marching cubes beside a grid corner) would fold the closed mesh open once
        # its positions are float32 or merged by distance
        vertices, faces, labels, fused.stats["welded_short_edges"] = weld_short_edges(vertices, faces, labels)
        if target_faces is not None and len(faces) > int(target_faces):
            from engine.geometry.cleanup import decimate

            report("surface", 0.9, f"decimating {len(faces)} -> {int(target_faces)} faces")
            reduced = decimate(vertices, faces, int(target_faces), {"labels": labels})
            vertices, faces, labels = np.asarray(reduced.vertices, np.float64), reduced.faces, reduced.attributes["labels"]
        # a rig raises the arms: part them from what they touch (the reference view's frame and
        # keypoints; the fused solid is seen all round, so its arms are fitted to all of it)
        arm_tubes = []
        if rig:
            report("surface", 0.95, "parting the arms from the trunk")
            vertices, faces, labels, _, arm_tubes, fused.stats["arm_parting"] = part_solid(inputs[0], vertices, faces, labels)
            vertices = np.asarray(vertices, np.float64)
        lap("surface")

        report("frame", 0.0, "UV islands per view and avatar frame")
        # the head's face/hair border split fine before the islands, as for one photo (each new
        # vertex reads the first view that sees it)
        photos = [Photo(v.bundle.seg, v.bundle.pointmap, v.K, T) for v, T in zip(inputs, fused.transforms)
                  if v.bundle.seg is not None]
        vertices, faces, labels = stages.refine_head(vertices, faces, labels, photos, max_faces=target_faces)
        maps = [mv.view_maps(v.bundle, v.K, T, name, crops=None if c is None else c.aligned)
                for v, T, name, c in zip(inputs, fused.transforms, names, crops)]
        islands = mv.assign_views(vertices, np.asarray(faces, np.int64), maps)
        solid_normals = mv.smooth_normals(vertices, faces)
        # the one-photo build's last frame step: the back of the head's hair (decided by the
        # photo each hidden vertex turns away from), the avatar frame, one normal per position
        bundles = [v.bundle for v in inputs]
        split_labels = mv.head_labels_seen(np.asarray(labels, np.uint8)[islands.source_vertex], vertices, islands, maps, bundles)
        framed = stages.place(vertices[islands.source_vertex], islands.faces, split_labels, islands.face_island,
                              islands.vertex_island, hair_views=mv.hair_views(vertices, solid_normals, islands, maps, bundles),
                              walls=stages.parted_walls(vertices[islands.source_vertex], islands.faces, arm_tubes))
        vertices_camera, vertices_avatar, normals_avatar = framed.vertices_camera, framed.vertices_avatar, framed.normals_avatar
        to_avatar = framed.camera_to_avatar
        from engine.avatar import textures as tx

        layout, texel_xy = mv.plan_uvs(vertices_camera, islands, maps, int(texture_size))
        uv = layout.texel_to_uv(texel_xy).astype(np.float32)
        tangents = tx.vertex_tangents(vertices_avatar, normals_avatar, uv, islands.faces)
        plan = _Plan(uv, tangents)
        mesh = stages.final_mesh(framed, plan)
        textures = avatar_textures(normal_map=any(m.normal is not None for m in maps))
        metadata = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "description": "avatar.json"}
        lap("frame")

        started = {} if rig else stages.start_untextured(selected, stages.avatar_scene(mesh, textures, metadata=metadata), tmp, writers)
        appearance = mv.bake_views(
            maps, vertices_ref=vertices, solid_normals=solid_normals, islands=islands, layout=layout,
            texel_xy=texel_xy, uv=uv, tangents=tangents, normals_avatar=normals_avatar, camera_to_avatar=to_avatar,
            bundles=bundles, progress=progress,
        )
        appearance, crop_normal_texels = crop_normals(appearance, inputs, crops, framed, fused.transforms)
        lap("textures")

        rigged = None
        if rig:
            report("rig", 0.0, f"rigging ({rig}) from the first view's keypoints")
            rigged = stages.rig(inputs[0], framed, mesh, rigging, convention=rig, rest_pose=rest_pose, progress=progress,
                                arm_tubes=arm_tubes)
            lap("rig")

        report("write", 0.0, f"writing {out_dir}")
        scene, files = stages.write_avatar(selected, mesh, textures, appearance, rigged, metadata=metadata, out_dir=tmp,
                                    started=started, pool=writers)
        lap("write")

        reference = inputs[0]
        texture_info = textures_summary(appearance)
        texture_info["layout"]["islands"] = islands.names
        texture_info["layout"]["gutter"] = layout.gutter
        texture_info["texels_led_by_view"] = appearance.stats["texels_led_by_view"]
        if any(c is not None for c in crops):
            texture_info["detail_crop_normal_texels"] = crop_normal_texels
        mesh_info = mesh_summary(mesh, framed, fused, closed=True)
        mesh_info["hidden_faces"] = int((islands.face_island >= len(maps)).sum())
        manifest = avatar_manifest(
            name=names[0],
            camera_to_avatar=to_avatar,
            origin=framed.origin,
            K=reference.K,
            K_source=reference.K_source,
            photo_size=reference.bundle.size,
            mesh=mesh_info,
            textures=texture_info,
            labels=labels_table(mesh.labels),
            label_groups=groups_table(),
            material_slots=[m.name for m in scene.materials],
            files=dict(sorted(files.items())),
            options={
                "detail": detail,
                "resolution": resolution,
                "watertight": True,
                "target_faces": None if target_faces is None else int(target_faces),
                "texture_size": int(texture_size),
                "rig": rig,
                "rest_pose": rest_pose if rig else None,
                "formats": [w.name for w in selected],
                "detail_crops": bool(detail_crops),
            },
            rig=None if rigged is None else rig_summary(rigged.rig, rig),
            provenance=provenance(reference.bundle, bundle_dirs[0], _engine_version()),
            timings=timings,
        )
        manifest["views"] = views_table(inputs, bundle_dirs, names, fused, islands)
        (tmp / "avatar.json").write_text(json.dumps(manifest, indent=1))
        report("write", 0.9, "publishing")
    report("write", 1.0, f"avatar written to {out_dir} from {len(inputs)} views")
    return out_dir


def crops_on_solid(inputs, crops, transforms, names, vertices, faces, labels):
    """Each view's aligned crops (engine.avatar.detail.fuse_crop_maps) on the fused solid, in
    that view's camera frame (the solid moved there through the view's registration and back):
    a hand is solved again from the crop of the first view that shows it (engine.avatar.detail
    .closed_hands, as for one photo), the other crops snap the solid's front as that view sees
    it onto their finer depth (engine.geometry.detail.snap_to_crops). Returns (vertices, faces,
    labels, the record for avatar.json's mesh.surface.detail_crops: one row per view)."""
    from engine.avatar.detail import Detail, closed_hands
    from engine.geometry.detail import snap_to_crops

    rows, solved_by = [], {}
    for view, detail, T, name in zip(inputs, crops, transforms, names):
        if detail is None:
            continue
        row = {"view": name, "used": [a.summary() for a in detail.aligned], "notes": list(detail.notes)}
        rows.append(row)
        if not detail.aligned:
            continue
        T = np.asarray(T, np.float64)
        own = (np.asarray(vertices, np.float64) - T[:3, 3]) @ T[:3, :3]  # reference frame -> this view's
        hands = [a for a in detail.aligned if a.crop.name not in solved_by]
        solid = _Solid(own, faces, labels)
        own, faces, labels, hand_record = closed_hands(view, solid, Detail(hands, []))
        now_solved = {c["name"] for c in hand_record.get("crops", []) if "poisson_depth" in c}
        if hand_record.get("crops") or hand_record.get("notes"):
            row["closed_hands"] = hand_record
        solved_by.update({crop: name for crop in now_solved})
        # a hand solved again (from this view's crop or an earlier one's) is not snapped: its
        # solve is the crop's surface already, smoothed
        own, snapped = snap_to_crops(own, faces, [a for a in detail.aligned if a.crop.name not in solved_by], view.K)
        by_name = {st["name"]: st for st in snapped}
        row["used"] = [by_name.get(a.crop.name) or {**a.summary(), "snapped_vertices": 0,
                                                   "solved_again_from": solved_by[a.crop.name]}
                       for a in detail.aligned]
        vertices = np.asarray(own, np.float64) @ T[:3, :3].T + T[:3, 3]
    return np.asarray(vertices, np.float64), np.asarray(faces), np.asarray(labels, np.uint8), {"views": rows}


def crop_normals(appearance, inputs, crops, framed, transforms):
    """The normal map at each view's crops' resolution in that view's island (engine.avatar
    .detail.fuse_crop_normals, as for one photo): the mesh moved into the view's camera frame
    through its registration, the crop's normals turned from that frame to the avatar's.
    Returns (appearance, texels changed per view)."""
    from dataclasses import replace

    from engine.avatar.detail import fuse_crop_normals

    changed = []
    for island, (view, detail, T) in enumerate(zip(inputs, crops, transforms)):
        if detail is None or not detail.aligned or appearance.normal_rgb8 is None:
            changed.append(0)
            continue
        T = np.asarray(T, np.float64)
        own = replace(framed, vertices_camera=(framed.vertices_camera - T[:3, 3]) @ T[:3, :3])  # reference -> this view
        appearance.stats.pop("detail_crop_normal_texels", None)
        appearance = fuse_crop_normals(appearance, detail, own, view.K, view.bundle.mask, island=island,
                                       to_avatar=framed.camera_to_avatar[:3, :3] @ T[:3, :3])
        changed.append(int(appearance.stats.pop("detail_crop_normal_texels", 0)))
    return appearance, changed


class _Solid:
    """What engine.avatar.detail.closed_hands reads of a built surface."""

    def __init__(self, vertices, faces, labels):
        self.vertices, self.faces, self.vertex_labels = vertices, faces, labels


class _Plan:
    """What stages.final_mesh reads of a UV plan."""

    def __init__(self, uv, tangents):
        self.uv, self.tangents = uv, tangents


def views_table(inputs, bundle_dirs, names, fused, islands) -> list[dict]:
    """avatar.json's "views": each photo, where its camera sits in the reference camera's frame,
    how well its joints fitted that placement, and how much of the surface it coloured."""
    rows = []
    for i, (v, bundle_dir, name) in enumerate(zip(inputs, bundle_dirs, names)):
        fit = fused.stats["views"][i]
        row = {
            "name": name,
            "bundle": str(bundle_dir),
            "photo_size": list(v.bundle.size),
            "K": np.asarray(v.K, np.float64).round(9).tolist(),
            "camera_to_reference": np.asarray(fused.transforms[i], np.float64).round(9).tolist(),
            "reference": i == 0,
            "face_share": islands.face_share[i],
            "trusted_fraction": (fit.get("trust") or {}).get("trusted_fraction"),
        }
        if i > 0:
            row.update({k: fit[k] for k in ("joint_residual_m", "joints", "joints_dropped", "joints_within_ceiling", "sides_swapped",
                                            "outline_pairs", "outline_turn_deg", "icp_pairs", "icp_rmse_m") if k in fit})
        rows.append(row)
    return rows
