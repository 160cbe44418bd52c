"""Two photos of one person (front and back) fused into one closed solid, against the truth.

Usage: .venv/bin/python bench/bench_fusion.py [--size 768x1024] [--people 3] [--swap-sides]
                                              [--depth 8] [--no-colour]
                                              [--cases exact,degraded,offset] [--no-carve] [--parts]
                                              [--no-silhouettes]

Held-out engine.synthetic people (seeds 101..) are rendered from the front and, with the same
pose, from behind (yaw 180 deg, its own camera). Each view's joints are lifted from its
keypoints (engine.rig.lift); geometry.fusion registers the back view into the front camera
(joint fit, then ICP) and closes the union. --swap-sides names the back view's keypoints by
image side (left <-> right swapped), as a pose model that does not see the person's back may.
Printed per person and case: Chamfer to the whole true body (as bench_closed.py), the one-photo
closed solid's of the same front for comparison, the hands' Chamfer (part_metrics: the true
hands' skin and the built vertices nearest it, mm), the registration error (the angle between
the back camera's true rotation and the found one; the back view's points' mean distance from
where the true pose puts them, and its part across the back camera's view, which moves the
back's colour on the body) and seconds (and refine_on_silhouettes' own, CPU and wall). Cases (as bench_closed.py's): exact maps; "degraded", the
issue's degradation (engine.synthetic.degrade(centred=True): 1 cm smooth depth error with zero
mean over each view's person, pixel noise, blur, 3 deg normal error, 2 px flying rim; seeded per
view); "offset", the same with the smooth error's mean left in (what this bench called
"degraded" until 2026-12-03): each photo then sits centimetres off along its own view, which
no photo reveals, so its Chamfer is also printed with the reference's offset removed (the
solid scaled about the front camera by the median true / given depth, bench_closed's
depth_offset_ratio).
Then the fused avatar (engine.avatar.fused, texture 1024) from the same two bundles: its texture
colour at the vertices the true front / back camera sees against the true albedo there (sRGB
levels, mean |difference|, as bench_back_colour.py measures the one-photo back), the same where
the two views meet (side_band_colour_error: the vertices side cameras at yaw 90 and 270 see whose
true normal is nearly perpendicular to the front camera's axis), the same per true body part at the
vertices side cameras at yaw 45, 90, 135, 225, 270 and 315 see (side_part_colour_error: where the
error side views show lies; the parts holding at least 5 % of it, Face_Neck and Hair always),
and its build time. --depth sets
the Poisson depth of the fused solid (default watertight.POISSON_DEPTH);
--no-carve leaves the solid's bulges past the views' outlines (geometry.fusion.carve_to_outlines)
as Poisson made them (the fused avatar is built as always). --parts also prints, per person and
case, where the fused solid's depth and volume go wrong (parts_report): from the true pose,
how far the contour circles would move the back view (their level points, as fuse_views pairs
them, and their centres) and, per body part, the median depth difference of the circles paired
there; and the solid's excess volume outside a photo's silhouette and inside both but in
front of neither seen true surface (seen by neither photo), in litres.
Nothing is asserted; the machine is shared, times are indicative.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def view_of(render, *, swap_sides: bool = False):
    from engine.geometry.fusion import View, swap_sides as swap
    from engine.rig.lift import lift_joints

    joints = lift_joints(render.keypoints, render.pointmap, render.seg, render.K, mask=render.mask)
    named = {n: (joints.positions[i], float(joints.confidence[i])) for i, n in enumerate(joints.names)}
    if swap_sides:
        named = {swap(n): v for n, v in named.items()}
    return View(render.pointmap, render.mask, render.K, render.normal, render.seg, named)


def true_back_to_front(front, back) -> np.ndarray:
    """4 x 4: the back camera's frame -> the front camera's (both from the body frame)."""
    return front.camera.body_to_camera @ np.linalg.inv(back.camera.body_to_camera)


def main() -> None:
    from bench_closed import build_closed, closed_metrics, depth_offset_ratio, truth_of

    from engine.geometry.fusion import fuse_views
    from engine.synthetic import degrade, make_person, render

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="768x1024")
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--swap-sides", action="store_true")
    parser.add_argument("--depth", type=int, default=None, help="Poisson depth of the fused solid")
    parser.add_argument("--no-colour", action="store_true", help="skip the fused avatar (colour errors)")
    parser.add_argument("--no-carve", action="store_true", help="the fused solid not carved to the outlines")
    parser.add_argument("--parts", action="store_true", help="per body part: where depth and volume go wrong")
    parser.add_argument("--no-silhouettes", action="store_true",
                        help="a back view registered without geometry.fusion.refine_on_silhouettes (for comparison)")
    parser.add_argument("--cases", default="exact,degraded,offset", help="comma-separated: exact, degraded, offset")
    args = parser.parse_args()
    cases = args.cases.split(",")
    from engine.geometry import fusion

    silhouette_seconds: list = []  # refine_on_silhouettes' (CPU, wall) seconds in the fused solid, per person and case
    if args.no_silhouettes:  # fused solid and fused avatar alike: both reach it through fuse_views
        fusion.refine_on_silhouettes = lambda T, *_, **__: (T, {})
    else:
        refine = fusion.refine_on_silhouettes

        def timed(*a, **kw):
            cpu, wall = time.process_time(), time.perf_counter()
            out = refine(*a, **kw)
            silhouette_seconds.append((time.process_time() - cpu, time.perf_counter() - wall))
            return out

        fusion.refine_on_silhouettes = timed
    unknown = sorted(set(cases) - {"exact", "degraded", "offset"})
    if unknown:
        parser.error(f"unknown case {unknown[0]}: exact, degraded or offset")
    depth = {} if args.depth is None else {"depth": args.depth}
    depth["carve"] = not args.no_carve
    totals: dict = {}
    width, height = (int(v) for v in args.size.split("x"))
    poses = ["bent", "arms_forward", None, "step", None, "apose"]
    print(f"two views fused, {width} x {height}, back view sides swapped: {args.swap_sides}, "
          f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())} (a shared machine: times are indicative)")
    for i in range(args.people):
        seed, pose = 101 + i, poses[i % len(poses)]
        front = make_person(seed, pose=pose, width=width, height=height)
        back = render(front.posed, width, height, yaw_deg=180.0)
        truth = truth_of(front)
        truth_T = true_back_to_front(front, back)
        for case in cases:
            centred = case == "degraded"
            f, b = (front, back) if case == "exact" else (
                degrade(front, seed=seed, flying_rim_px=2.0, centred=centred),
                degrade(back, seed=seed + 1000, flying_rim_px=2.0, centred=centred))
            silhouette_seconds.clear()
            start = time.perf_counter()
            fused = fuse_views([view_of(f), view_of(b, swap_sides=args.swap_sides)], **depth)
            seconds = time.perf_counter() - start
            m = closed_metrics(truth, fused.vertices, fused.faces)
            single, _ = build_closed(f, detail="normals", resolution="full")
            one = closed_metrics(truth, single.vertices, single.faces)
            T = fused.transforms[1]
            angle = np.degrees(np.arccos(np.clip((np.trace(T[:3, :3].T @ truth_T[:3, :3]) - 1) / 2, -1, 1)))
            seen = b.pointmap[b.mask]  # the back view's points: how far the found pose moves them from the true one
            offset = (seen @ T[:3, :3].T + T[:3, 3]) - (seen @ truth_T[:3, :3].T + truth_T[:3, 3])
            shift = np.linalg.norm(offset, axis=1).mean()
            # across the back camera's view: where its colour lands on the body (its pixels' offset)
            across = np.linalg.norm(offset @ truth_T[:3, :3][:, :2], axis=1).mean()
            reg = fused.stats["views"][1]
            contour = ""
            if "contour_depth_shift_m" in reg:
                contour = f", contour pairs {reg['contour_pairs']}, depth moved {reg['contour_depth_shift_m'] * 100:+.2f} cm"
            elif "contour_pairs" in reg:  # too few pairs, or a depth too far from the joints': kept
                contour = f", contour pairs {reg['contour_pairs']}, depth kept ({reg.get('contour_depth_refused_m')})"
            ratio = depth_offset_ratio(front, f)
            removed = ""
            if case == "offset":
                fused_removed = closed_metrics(truth, fused.vertices * ratio, fused.faces)["chamfer_cm"]
                one_removed = closed_metrics(truth, single.vertices * ratio, single.faces)["chamfer_cm"]
                removed = f"  offset removed: fused {fused_removed:.3f}, one photo {one_removed:.3f} cm"
            print(f"{pose or 'random'}-{seed:<4d} {case:9s} fused chamfer {m['chamfer_cm']:.3f} cm (volume {m['volume_ratio']:.3f}, "
                  f"watertight {m['watertight']}, inward {m['inward']:.4f})  one photo {one['chamfer_cm']:.3f} cm  "
                  f"registration {angle:.2f} deg, back points moved {shift * 1000:.1f} mm from the truth ({across * 1000:.1f} mm "
                  f"across the back camera's view; joints "
                  f"{reg['joint_residual_m'] * 100:.1f} cm rms, sides swapped {reg['sides_swapped']}{contour})  "
                  f"{seconds:.1f} s{removed}", flush=True)
            if silhouette_seconds:
                cpu, wall = np.sum(silhouette_seconds, axis=0)
                print(f"{'':14s} refine_on_silhouettes: {cpu:.2f} CPU s, {wall:.2f} wall s", flush=True)
            hands = part_metrics(truth, fused.vertices, fused.faces, HAND_PARTS)
            print(f"{'':14s} hands: fused {hands['chamfer_mm']:.2f} mm (built -> truth {hands['built_to_truth_mm']:.2f}, "
                  f"truth -> built {hands['truth_to_built_mm']:.2f}, built -> truth 90th percentile "
                  f"{hands['built_to_truth_p90_mm']:.2f})", flush=True)
            row = [m["chamfer_cm"], one["chamfer_cm"], m["volume_ratio"], hands["chamfer_mm"]]
            if not args.no_colour:
                front_error, back_error, side_error, parts, avatar_seconds = fused_avatar_colour(f, b, front, back)
                row += [front_error, back_error, side_error, parts["all"][0], parts["Face_Neck"][0], parts["Hair"][0]]
                print(f"{'':14s} fused avatar: colour error front {front_error:.2f}, back {back_error:.2f} sRGB levels "
                      f"(back/front {back_error / max(front_error, 1e-9):.2f}), where the views meet {side_error:.2f}  "
                      f"build {avatar_seconds:.1f} s", flush=True)
                total = parts["all"][0] * parts["all"][1]
                shown = [name for name, (mean, n) in parts.items() if name != "all"
                         and (name in ("Face_Neck", "Hair") or mean * n >= 0.05 * total)]
                print(f"{'':14s} side cameras: colour error {parts['all'][0]:.2f} over {parts['all'][1]} vertex-views; per true part "
                      + ", ".join(f"{name} {parts[name][0]:.2f} ({parts[name][1]})" for name in shown), flush=True)
            totals.setdefault(case, []).append(row)
            if args.parts:
                parts_report(f, b, front, truth_T, fused)
    for case, rows in totals.items():
        mean = np.mean(rows, axis=0)
        colour = (f", colour error front {mean[4]:.2f} back {mean[5]:.2f} where the views meet {mean[6]:.2f}, side cameras "
                  f"{mean[7]:.2f} (Face_Neck {mean[8]:.2f}, Hair {mean[9]:.2f})" if len(mean) > 4 else "")
        print(f"mean {case:9s} fused chamfer {mean[0]:.3f} cm (one photo {mean[1]:.3f}), volume {mean[2]:.3f}, "
              f"hands {mean[3]:.2f} mm{colour}")


HAND_PARTS = ("Left_Hand", "Right_Hand")


def part_metrics(truth: dict, vertices, faces, parts) -> dict:
    """Chamfer over some body parts (mm): the true outer skin's samples of those parts to the
    built surface, and the built vertices whose nearest true skin is of those parts to the true
    body (bench_closed.truth_of's skin samples and part names)."""
    import open3d as o3d
    from bench_closed import _scene

    part_of_face = np.isin(np.asarray(truth["skin_part"], object), parts)
    skin = np.asarray(truth["skin_tree"].data, np.float32)
    skin_in = part_of_face[truth["skin_scene"].compute_closest_points(o3d.core.Tensor(skin))["primitive_ids"].numpy()]
    built = np.asarray(vertices, np.float32)
    built_in = part_of_face[truth["skin_scene"].compute_closest_points(o3d.core.Tensor(built))["primitive_ids"].numpy()]
    to_built = _scene(vertices, faces).compute_distance(o3d.core.Tensor(skin[skin_in])).numpy()
    to_truth = truth["scene"].compute_distance(o3d.core.Tensor(built[built_in])).numpy()
    return {"chamfer_mm": 1000 * 0.5 * (to_truth.mean() + to_built.mean()),
            "built_to_truth_mm": 1000 * float(to_truth.mean()), "truth_to_built_mm": 1000 * float(to_built.mean()),
            "built_to_truth_p90_mm": 1000 * float(np.percentile(to_truth, 90))}


def parts_report(front_maps, back_maps, front_truth, truth_T, fused) -> None:
    """Print where the back view's depth and the solid's volume go wrong (--parts)."""
    import open3d as o3d
    from bench_closed import _scene
    from scipy.spatial import cKDTree

    from engine.geometry import fusion
    from engine.geometry.labels import class_names

    names = class_names()
    ref, view = fusion._view_circles(view_of(front_maps)), fusion._view_circles(view_of(back_maps))
    _, level = fusion.refine_depth_on_contours(truth_T, fusion.level_points(view, truth_T[:3, :3]), fusion.level_points(ref))
    _, centres = fusion.refine_depth_on_contours(truth_T, view.centres, ref.centres)
    moved = view.centres @ truth_T[:3, :3].T + truth_T[:3, 3]
    placed = fusion.level_points(view, truth_T[:3, :3]) @ truth_T[:3, :3].T + truth_T[:3, 3]
    ref_level = fusion.level_points(ref)
    gap, index = cKDTree(ref_level[:, :2] / ref_level[:, 2:3]).query(placed[:, :2] / placed[:, 2:3])
    paired = gap * placed[:, 2] <= fusion.CONTOUR_PAIR_M
    difference = ref.centres[index[paired], 2] - moved[paired, 2]
    label = ref.labels[index[paired]]
    per_part = []
    for part in np.unique(label):
        chosen = label == part
        if chosen.sum() >= 100:
            per_part.append(f"{names[part]} {np.median(difference[chosen]) * 100:+.2f} ({int(chosen.sum())})")
    print(f"{'':14s} from the true pose the circles move the back {level.get('contour_depth_shift_m', float('nan')) * 100:+.2f} cm "
          f"(their centres: {centres.get('contour_depth_shift_m', float('nan')) * 100:+.2f}); per body part, cm (pairs): "
          + ", ".join(per_part), flush=True)
    # excess volume: Monte Carlo over the true body's box
    mesh = front_truth.mesh
    rng = np.random.default_rng(0)
    low, high = mesh.bounds[0] - 0.05, mesh.bounds[1] + 0.05
    box = rng.uniform(low, high, (400_000, 3))
    cell = float(np.prod(high - low)) / len(box)
    query = o3d.core.Tensor(box.astype(np.float32))
    in_truth = np.zeros(len(box), bool)
    for part in mesh.split(only_watertight=True):
        in_truth |= _scene(part.vertices, part.faces).compute_occupancy(query).numpy() > 0.5
    in_fused = _scene(fused.vertices, fused.faces).compute_occupancy(query).numpy() > 0.5
    excess = in_fused & ~in_truth
    seen_by = []
    for render, T in ((front_truth, np.eye(4)), (None, truth_T)):
        maps = render if render is not None else back_maps
        q = box @ np.linalg.inv(T)[:3, :3].T + np.linalg.inv(T)[:3, 3]
        u = (maps.K[0, 0] * q[:, 0] / q[:, 2] + maps.K[0, 2]).astype(int)
        v = (maps.K[1, 1] * q[:, 1] / q[:, 2] + maps.K[1, 2]).astype(int)
        H, W = maps.mask.shape
        inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
        inside[inside] = maps.mask[v[inside], u[inside]]
        seen_by.append(inside)
    outside = excess & ~(seen_by[0] & seen_by[1])
    print(f"{'':14s} volume: truth {in_truth.sum() * cell * 1e3:.1f} L, excess {excess.sum() * cell * 1e3:.2f} L "
          f"(outside a silhouette {outside.sum() * cell * 1e3:.2f}), missing {(in_truth & ~in_fused).sum() * cell * 1e3:.2f} L", flush=True)


# the sides, where a front and a back photo meet: vertices a side camera (yaw 90 / 270) sees whose true
# normal's cos to the front camera's axis is under this (within ~17 deg of perpendicular to it)
SIDE_BAND_COS = 0.3


def _seen_by(view, points_body):
    """(row, col) of each body-frame point in a rendered view (clamped) and whether the view sees
    it there: inside the frame, on the person, its depth within 1.5 cm of the view's pointmap."""
    H, W = view.mask.shape
    cam = view.camera.to_camera(points_body)
    xy = view.camera.project(cam)
    col, row = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H)
    col, row = np.clip(col, 0, W - 1), np.clip(row, 0, H - 1)
    seen = inside & view.mask[row, col] & (np.abs(view.pointmap[row, col, 2] - cam[:, 2]) < 0.015)
    return row, col, seen


def side_band_colour_error(points_body, colours, front_truth) -> float:
    """Mean |texture - true albedo| (sRGB levels) over the vertices where the front and back views
    meet (SIDE_BAND_COS), as side cameras at yaw 90 and 270 see them (mean of the two)."""
    from engine.colour import linear_to_srgb
    from engine.synthetic import render

    H, W = front_truth.mask.shape
    front_axis = front_truth.camera.body_to_camera[2, :3]
    errors = []
    for yaw in (90.0, 270.0):
        view = render(front_truth.posed, W, H, yaw_deg=yaw)
        row, col, seen = _seen_by(view, points_body)
        normal_body = view.normal[row, col] @ view.camera.body_to_camera[:3, :3]
        band = seen & (np.abs(normal_body @ front_axis) < SIDE_BAND_COS)
        truth = 255.0 * linear_to_srgb(view.albedo[row[band], col[band]])
        errors.append(float(np.abs(colours[band] - truth).mean()))
    return float(np.mean(errors))


# side cameras' yaws (degrees about the body's vertical; 0 the front camera, 180 the back)
SIDE_YAWS = (45.0, 90.0, 135.0, 225.0, 270.0, 315.0)


def side_part_colour_error(points_body, colours, front_truth) -> dict:
    """Per true body part (the class a side camera's segmentation gives the vertex's pixel), over
    the vertices side cameras at SIDE_YAWS see (within 1.5 cm of their depth): {part name: (mean
    |texture - true albedo| in sRGB levels, vertex-views)}, "all" for every part together."""
    from engine.avatar.labels import class_names
    from engine.colour import linear_to_srgb
    from engine.synthetic import render

    H, W = front_truth.mask.shape
    errors, parts = [], []
    for yaw in SIDE_YAWS:
        view = render(front_truth.posed, W, H, yaw_deg=yaw)
        row, col, seen = _seen_by(view, points_body)
        truth = 255.0 * linear_to_srgb(view.albedo[row[seen], col[seen]])
        errors.append(np.abs(colours[seen] - truth).mean(axis=1))
        parts.append(view.seg[row[seen], col[seen]])
    error, part = np.concatenate(errors), np.concatenate(parts)
    names = class_names()
    out = {"all": (float(error.mean()) if len(error) else float("nan"), int(len(error)))}
    for c in np.unique(part):
        chosen = part == c
        out[names[int(c)]] = (float(error[chosen].mean()), int(chosen.sum()))
    for name in ("Face_Neck", "Hair"):
        out.setdefault(name, (float("nan"), 0))
    return out


def fused_avatar_colour(front_maps, back_maps, front_truth, back_truth):
    """The fused avatar of the two views' bundles; (front error, back error, error where the
    views meet, the side cameras' error per true part (side_part_colour_error), build seconds)."""
    import tempfile

    from bench_back_colour import avatar_vertex_colours, seen_colour_error

    from engine.avatar.fused import build_fused_avatar
    from engine.bundle import write_bundle
    from engine.synthetic import to_bundle

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a = write_bundle(to_bundle(front_maps, name="front"), tmp / "front")
        b = write_bundle(to_bundle(back_maps, name="back"), tmp / "back")
        start = time.perf_counter()
        out = build_fused_avatar([a, b], tmp / "avatar", texture_size=1024)
        seconds = time.perf_counter() - start
        camera, colours, _ = avatar_vertex_colours(out)
    to_body = front_truth.camera.body_to_camera
    body = (camera - to_body[:3, 3]) @ to_body[:3, :3]
    return (seen_colour_error(body, colours, front_truth)[0], seen_colour_error(body, colours, back_truth)[0],
            side_band_colour_error(body, colours, front_truth), side_part_colour_error(body, colours, front_truth), seconds)


if __name__ == "__main__":
    main()
