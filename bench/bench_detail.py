"""Hands in detail: surface error on the hand regions with and without the detail crops, and the
model time the crops add.

Usage: .venv/bin/python bench/bench_detail.py [--people N (0: none)] [--no-models] [--builds N]

No real model can run here, so the predictions are faked the way the other synthetic benches do:
engine.synthetic people (exact ground truth) rendered at 768 x 1024 (the model's own input size,
so a photo pixel is a model pixel), their maps degraded as a network's output is (depth blurred
over 1.5 px with 3 mm noise, normals blurred over 1 px with 3 degrees of noise) for the whole-body
pass; the "crop predictions" are the same person rendered through the same camera zoomed onto
each hand and face box at the crop's grid (engine.synthetic.crops), degraded the same way in
their own pixels, and their pointmaps given a wrong metric scale (x 1/1.3) and position (shifted
by 0.1, -0.05, 0.6 m) as a model shown a hand alone would guess, which the build's alignment must
undo. An "exact" case runs with exact maps everywhere.

Measured per hand region (the region each crop replaces, photo pixels), on the open surface:
- mesh -> truth: points sampled uniformly on the mesh's triangles there, distance to the true
  surface (mean, 90th percentile, share over 5 mm: webbing between fingers shows here);
- truth -> mesh: the true visible surface there (the exact render at the crop's grid), distance to
  the mesh (mean, 90th percentile): missing fingertips and merged fingers show here;
- spill / miss: rays through the crop's pixels, the share of background pixels the mesh covers
  and of person pixels it misses;
- gap free: fingers separable. The true gaps between the fingers (background pixels that a
  closing of the true mask by a 1 cm disc fills: enclosed by the hand within about two finger
  widths) and the share of them that no triangle covers: 100 % when every gap the photo shows is
  open on the mesh, 0 % for a mitten. Averaged over the hands that have gaps, weighted by pixels.
And the closed surface (the default: built from the fused maps, its hands re-solved from the hand
crops, engine.geometry.detail_solid) the same way, with "closed/snap": the closed surface only
snapped onto the crops as before that (its hands the body's solve); and "open+ref": the open
surface with the crops' depth also refined with their normals on their grid (not what the build
does: it triples the build's time). CPU s: the surface stage's CPU seconds (the build's process
and the geometry worker process's that solves a hand beside it), without the crops (fused maps,
closed hands) against with them.
The face region (open and closed, without -> with the crops): mesh -> truth and truth -> mesh as
for the hands, and the forehead where the hair meets it (forehead_errors: the depth error along
the region's columns against the true face crop, skin and hair, and how much it jumps between
neighbouring photo rows: a slot or a ledge across the forehead shows there).

Model time: the crops' second pass runs through the real predict code (engine.predict.crops.
run_crops) against the whole-photo dense pass of the same tasks, on the bundled sample's photo with
its true keypoints: by default the tiny random test checkpoints on the CPU (what the crops cost
relative to the photo's pass), or random checkpoints at a released size on a GPU
(`--people 0 --models-size 0.4b --models-device cuda --models-dtype auto`: the model time the crops
add on the GPU path; measured figures in docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PEOPLE = [(2, "open_hands"), (3, "bent"), (7, "arms_forward"), (1, "apose"), (11, None)]
GUESS_SCALE, GUESS_SHIFT = 1.3, (0.1, -0.05, 0.6)
GAP_CLOSING_M = 0.01   # finger_gaps: gaps narrower than about 2 cm between fingers


def degraded_bundle(person, seed: int):
    from engine.geometry.degrade import degrade_normals, degrade_pointmap
    from engine.synthetic import to_bundle

    bundle = to_bundle(person)
    bundle.pointmap = degrade_pointmap(person.pointmap, person.mask, smooth_m=0.0, noise_m=0.003, blur_px=1.5, seed=seed)
    bundle.normal = degrade_normals(person.normal, person.mask, noise_deg=3.0, blur_px=1.0, seed=seed + 1)
    return bundle


def degraded_crops(crops, seed: int):
    from engine.geometry.degrade import degrade_normals, degrade_pointmap

    for i, c in enumerate(crops):
        truth = c.pointmap * np.float32(GUESS_SCALE) + np.float32(GUESS_SHIFT)
        noisy = degrade_pointmap(truth, c.mask, smooth_m=0.0, noise_m=0.003, blur_px=1.5, seed=seed + 10 + i)
        c.pointmap = ((noisy - np.float32(GUESS_SHIFT)) / np.float32(GUESS_SCALE)).astype(np.float32)
        c.normal = degrade_normals(c.normal, c.mask, noise_deg=3.0, blur_px=1.0, seed=seed + 20 + i)
    return crops


def build(bundle, *, crops: bool, watertight: bool, refine: bool = False, closed_hands: bool = True):
    """The build's surface stage with its detail hooks (engine.avatar.build's order, the hands'
    solve started as the build starts it: partly in the geometry worker process); its CPU seconds,
    the build's process's and the worker's together (the machine is shared: wall time would
    measure the others). closed_hands=False: the closed surface only snapped onto the crops, as
    before its hands were re-solved from them."""
    import engine.avatar.detail as stage
    from engine.avatar.stages import Inputs
    from engine.geometry import build_surface

    inputs = Inputs(bundle, "bench", bundle.K, "bundle")
    t0 = time.process_time() + worker_cpu_seconds()
    detail = stage.fuse_crop_maps(inputs, enabled=crops, resolution="full")
    hands = stage.start_closed_hands(inputs, detail, watertight=watertight and closed_hands, target_faces=None)
    surface = build_surface(inputs.bundle, detail="normals", resolution="full", watertight=watertight,
                            on_samples=None if hands is None else hands.body_samples)
    solve_hands = stage.closed_hands
    if not closed_hands:
        stage.closed_hands = lambda inputs, built, detail: (built.vertices, built.faces, built.vertex_labels, {})
    try:
        surface = stage.fuse_crop_surface(inputs, surface, detail, watertight=watertight, target_faces=None, refine=refine)
    finally:
        stage.closed_hands = solve_hands
    return surface, time.process_time() + worker_cpu_seconds() - t0, detail


def worker_cpu_seconds() -> float:
    """CPU seconds the engine's geometry worker process has used (engine.geometry.solve_worker;
    Linux /proc), 0 when none runs."""
    from engine.geometry import solve_worker

    worker = solve_worker.shared(start=False)
    if worker is None:
        return 0.0
    try:
        with open(f"/proc/{worker.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample_triangles(vertices, faces, n: int, rng) -> np.ndarray:
    a, b, c = (vertices[faces[:, k]].astype(np.float64) for k in range(3))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    pick = rng.choice(len(faces), n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    return a[pick] + u[:, None] * (b[pick] - a[pick]) + v[:, None] * (c[pick] - a[pick])


def coverage(surface, truth) -> tuple[float, float, float]:
    """Rays through the crop grid's pixel centres (the truth's camera): the share of pixels with no
    true surface that the mesh covers (webbing between fingers, a halo), of pixels with one that
    it misses, and of the true gaps between the fingers (truth.meta["gap"]) that no triangle covers."""
    import open3d as o3d

    from engine.synthetic.render import pixel_rays

    h, w = truth.mask.shape
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(surface.vertices.astype(np.float32)), o3d.core.Tensor(surface.faces.astype(np.uint32)))
    hit = np.isfinite(scene.cast_rays(o3d.core.Tensor(pixel_rays(truth.meta["K"], w, h)))["t_hit"].numpy()).reshape(h, w)
    empty, full, gap = ~truth.mask, truth.mask, truth.meta["gap"]
    return (float((hit & empty).sum() / max(empty.sum(), 1)), float((~hit & full).sum() / max(full.sum(), 1)),
            float((~hit & gap).sum() / gap.sum()) if gap.sum() else np.nan)


def finger_gaps(truth) -> np.ndarray:
    """The true gaps between the fingers on a crop's grid: background pixels that a closing of the
    true mask by a disc of GAP_CLOSING_M (at the hand's depth) fills, i.e. background enclosed by
    the hand within a finger's width: webbing there is what makes a mitten."""
    from scipy import ndimage

    depth = float(np.nanmedian(truth.pointmap[..., 2]))
    radius = max(1, int(round(GAP_CLOSING_M * truth.meta["K"][0, 0] / depth)))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = xx**2 + yy**2 <= radius**2
    closed = ndimage.binary_closing(np.pad(truth.mask, radius), structure=disc)[radius:-radius, radius:-radius]
    return closed & ~truth.mask


def region_errors(surface, K, region, truth_scene, truth_points, rng, truth=None) -> dict:
    import open3d as o3d

    x0, y0, x1, y1 = region
    v = surface.vertices.astype(np.float64)
    uv = v @ K.T
    xy = uv[:, :2] / uv[:, 2:3]
    inside = (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)
    faces = surface.faces[inside[surface.faces].all(1)]
    if len(faces) == 0:
        return {}
    samples = sample_triangles(surface.vertices, faces, 20000, rng).astype(np.float32)
    to_truth = truth_scene.compute_distance(o3d.core.Tensor(samples)).numpy()
    mesh_scene = o3d.t.geometry.RaycastingScene()
    mesh_scene.add_triangles(o3d.core.Tensor(surface.vertices.astype(np.float32)), o3d.core.Tensor(surface.faces.astype(np.uint32)))
    to_mesh = mesh_scene.compute_distance(o3d.core.Tensor(truth_points.astype(np.float32))).numpy()
    spill, miss, gap_free = coverage(surface, truth) if truth is not None else (np.nan, np.nan, np.nan)
    return {"spill": spill, "miss": miss, "gap_free": gap_free, "gap_px": int(truth.meta["gap"].sum()) if truth is not None else 0, "mesh_mean_mm": 1e3 * to_truth.mean(), "mesh_p90_mm": 1e3 * np.percentile(to_truth, 90),
            "mesh_over5mm": (to_truth > 0.005).mean(), "truth_mean_mm": 1e3 * to_mesh.mean(),
            "truth_p90_mm": 1e3 * np.percentile(to_mesh, 90), "faces": len(faces)}


def surface_figures(people: int) -> None:
    import open3d as o3d

    from engine.synthetic import make_person, to_bundle
    from engine.synthetic.crops import crop_camera, open_hands_pose, render_crops

    rows, face_rows = [], []
    for seed, pose in PEOPLE[:people]:
        person = make_person(seed=seed, pose=open_hands_pose() if pose == "open_hands" else pose)
        truth_scene = o3d.t.geometry.RaycastingScene()
        truth_scene.add_triangles(o3d.core.Tensor(person.mesh.vertices.astype(np.float32)),
                                  o3d.core.Tensor(person.mesh.faces.astype(np.uint32)))
        exact_crops = render_crops(person)
        truth_of = {c.name: c for c in render_crops(person)}
        for c in truth_of.values():
            c.meta["K"] = crop_camera(person.camera, c.box, c.factor).K
            c.meta["gap"] = finger_gaps(c)
        for case in ("exact", "degraded"):
            if case == "exact":
                bundle = to_bundle(person)
                crops = render_crops(person, scale=GUESS_SCALE, shift=GUESS_SHIFT)
            else:
                bundle = degraded_bundle(person, seed)
                crops = degraded_crops(render_crops(person, scale=GUESS_SCALE, shift=GUESS_SHIFT), seed)
            for watertight in (False, True):
                plain, t_plain, _ = build(bundle, crops=False, watertight=watertight)
                bundle.crops = crops
                fused, t_fused, detail = build(bundle, crops=True, watertight=watertight)
                refined, t_refined = None, None
                if not watertight:
                    refined, t_refined, _ = build(bundle, crops=True, watertight=False, refine=True)
                else:   # the closed surface as the crops left it before its hands were re-solved
                    refined, t_refined, _ = build(bundle, crops=True, watertight=True, closed_hands=False)
                bundle.crops = []
                for aligned in detail.aligned:
                    if aligned.crop.name == "face":
                        truth = truth_of["face"]
                        face_rows.append((f"seed {seed} {pose or 'random'}", case, "closed" if watertight else "open",
                                          *(face_errors(built, person.K, aligned.region, truth_scene, truth)
                                            for built in (plain, fused))))
                        continue
                    x0, y0, x1, y1 = aligned.region
                    truth = truth_of[aligned.crop.name]
                    f = truth.factor
                    bx0, by0 = truth.box[:2]
                    window = truth.pointmap[(y0 - by0) * f:(y1 - by0) * f, (x0 - bx0) * f:(x1 - bx0) * f]
                    points = window[np.isfinite(window).all(-1)]
                    rng = np.random.default_rng(0)
                    window_truth = _window(truth, aligned.region)
                    before = region_errors(plain, person.K, aligned.region, truth_scene, points, rng, window_truth)
                    after = region_errors(fused, person.K, aligned.region, truth_scene, points, rng, window_truth)
                    rows.append((f"seed {seed} {pose or 'random'}", case, "closed" if watertight else "open",
                                 aligned.crop.name, before, after, t_plain, t_fused))
                    if refined is not None:
                        again = region_errors(refined, person.K, aligned.region, truth_scene, points, rng, window_truth)
                        rows.append((f"seed {seed} {pose or 'random'}", case, "closed/snap" if watertight else "open+ref",
                                     aligned.crop.name, before, again, t_plain, t_refined))
                for note in detail.notes:
                    print(f"  seed {seed} {case}: {note}")
        del exact_crops
    print("\nsurface error on the hand regions (mm); mesh->truth over points on the mesh's triangles, "
          "truth->mesh over the true visible surface at the crop's grid")
    head = (f"{'person':22} {'maps':9} {'surface':11} {'hand':10} | {'mesh->truth mean/p90/>5mm':>27} | "
            f"{'truth->mesh mean/p90':>13} | spill  miss  gap free (px) | CPU s")
    print(head)
    print("-" * len(head))
    for who, case, kind, hand, b, a, tp, tf in rows:
        if not b or not a:
            print(f"{who:22} {case:9} {kind:11} {hand:10} | (no triangles in the region)")
            continue
        print(f"{who:22} {case:9} {kind:11} {hand:10} | without {b['mesh_mean_mm']:5.2f}/{b['mesh_p90_mm']:5.2f}/{100 * b['mesh_over5mm']:4.1f}% "
              f"| {b['truth_mean_mm']:5.2f}/{b['truth_p90_mm']:6.2f} | {100 * b['spill']:4.1f}% {100 * b['miss']:4.1f}% "
              f"{100 * b['gap_free']:5.1f}% ({b['gap_px']:5d}) | {tp:5.2f}")
        print(f"{'':22} {'':9} {'':11} {'':10} | with    {a['mesh_mean_mm']:5.2f}/{a['mesh_p90_mm']:5.2f}/{100 * a['mesh_over5mm']:4.1f}% "
              f"| {a['truth_mean_mm']:5.2f}/{a['truth_p90_mm']:6.2f} | {100 * a['spill']:4.1f}% {100 * a['miss']:4.1f}% "
              f"{100 * a['gap_free']:5.1f}% ({a['gap_px']:5d}) | {tf:5.2f}")
    for case in ("exact", "degraded"):
        for kind in ("open", "open+ref", "closed/snap", "closed"):
            sel = [(b, a) for _, c, k, _, b, a, _, _ in rows if c == case and k == kind and b and a]
            if sel:
                mb = np.mean([b["truth_mean_mm"] for b, _ in sel])
                ma = np.mean([a["truth_mean_mm"] for _, a in sel])
                eb = np.mean([b["mesh_mean_mm"] for b, _ in sel])
                ea = np.mean([a["mesh_mean_mm"] for _, a in sel])
                sb = np.mean([b["spill"] for b, _ in sel])
                sa = np.mean([a["spill"] for _, a in sel])
                # gap free over the hands that show gaps (px-weighted: a hand with fingers together has none)
                gaps = [(b, a) for b, a in sel if a["gap_px"] > 0]
                gb = sum(b["gap_free"] * b["gap_px"] for b, _ in gaps) / max(sum(b["gap_px"] for b, _ in gaps), 1)
                ga = sum(a["gap_free"] * a["gap_px"] for _, a in gaps) / max(sum(a["gap_px"] for _, a in gaps), 1)
                tb = np.mean([r[6] for r in rows if r[1] == case and r[2] == kind])
                ta = np.mean([r[7] for r in rows if r[1] == case and r[2] == kind])
                print(f"mean over {len(sel)} hands, {case} maps, {kind} surface: truth->mesh {mb:.2f} -> {ma:.2f} mm, "
                      f"mesh->truth {eb:.2f} -> {ea:.2f} mm, spill {100 * sb:.1f} -> {100 * sa:.1f}%, "
                      f"finger gaps free {100 * gb:.1f} -> {100 * ga:.1f}% ({len(gaps)} hands with gaps), "
                      f"surface stage {tb:.2f} -> {ta:.2f} s (without -> with crops)")
    print_face(face_rows)


def print_face(face_rows) -> None:
    """The face region's table: mesh->truth and truth->mesh as for the hands, and the forehead
    (forehead_errors) without -> with the crops."""
    print("\nthe face region (mm): mesh->truth mean/p90, truth->mesh mean/p90; forehead along the region's "
          "columns: skin / hair depth error mean (max), error jump between photo rows mean / p99 / max")
    for who, case, kind, b, a in face_rows:
        for label, r in (("without", b), ("with", a)):
            print(f"{who if label == 'without' else '':22} {case if label == 'without' else '':9} "
                  f"{kind if label == 'without' else '':7} {label:7} | {r['mesh_mean_mm']:5.2f}/{r['mesh_p90_mm']:5.2f} "
                  f"| {r['truth_mean_mm']:5.2f}/{r['truth_p90_mm']:5.2f} | skin {r['skin_mean_mm']:5.2f} ({r['skin_max_mm']:5.2f}) "
                  f"hair {r['hair_mean_mm']:5.2f} ({r['hair_max_mm']:5.2f}) jump {r['jump_mean_mm']:4.2f} / "
                  f"{r['jump_p99_mm']:4.2f} / {r['jump_max_mm']:5.2f}")
    for case in ("exact", "degraded"):
        for kind in ("open", "closed"):
            sel = [(b, a) for _, c, k, b, a in face_rows if c == case and k == kind]
            if sel:
                fig = {key: [np.mean([r[key] for r in side]) for side in zip(*sel)]
                       for key in ("mesh_mean_mm", "truth_mean_mm", "skin_mean_mm", "hair_mean_mm", "jump_mean_mm")}
                jump_max = [max(r["jump_max_mm"] for r in side) for side in zip(*sel)]
                print(f"mean over {len(sel)} faces, {case} maps, {kind} surface (without -> with crops): "
                      + ", ".join(f"{key[:-3].replace('_', ' ')} {b:.2f} -> {a:.2f}" for key, (b, a) in fig.items())
                      + f", jump max {jump_max[0]:.2f} -> {jump_max[1]:.2f} mm")


def face_errors(surface, K, region, truth_scene, truth) -> dict:
    """region_errors on the face region (the true visible surface there at the crop's grid) and
    forehead_errors."""
    x0, y0, x1, y1 = region
    f = truth.factor
    bx0, by0 = truth.box[:2]
    window = truth.pointmap[(y0 - by0) * f:(y1 - by0) * f, (x0 - bx0) * f:(x1 - bx0) * f]
    out = region_errors(surface, K, region, truth_scene, window[np.isfinite(window).all(-1)], np.random.default_rng(0))
    return {**out, **forehead_errors(surface, truth, region)}


def forehead_errors(surface, truth, region, band_px: int = 8) -> dict:
    """Where the hair meets the forehead: the surface's depth along the rays through the true face
    crop's pixels (its camera, its grid) against the truth's, down the region's columns (its
    middle 60 %: the forehead, not the temples) whose lowest hair pixel has skin below it; over the
    band_px photo pixels of skin below that pixel and of hair above it: the skin's and the hair's
    depth error (mean, max of |error|), and how much the error changes between pixels one photo
    pixel apart down the column (mean, 99th percentile, max), the pairs across the true hairline
    left out (the hair's own overhang): a slot or a ledge the surface has and the truth has not
    shows there. In mm."""
    import open3d as o3d

    from engine.geometry.labels import class_ids
    from engine.synthetic.render import pixel_rays

    f = truth.factor
    bx0, by0 = truth.box[:2]
    x0, y0, x1, y1 = region
    h, w = truth.mask.shape
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(surface.vertices.astype(np.float32)), o3d.core.Tensor(surface.faces.astype(np.uint32)))
    rays = pixel_rays(truth.meta["K"], w, h)
    depth = (scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy() * rays[:, 5]).reshape(h, w)
    rows, cols = slice((y0 - by0) * f, (y1 - by0) * f), slice((x0 - bx0) * f, (x1 - bx0) * f)
    with np.errstate(invalid="ignore"):
        error = (depth - truth.pointmap[..., 2])[rows, cols]
    hair_id, skin_id = (int(i) for i in class_ids(("Hair", "Face_Neck")))
    seg = truth.seg[rows, cols]
    band = band_px * f
    skin, hair, jumps = [], [], []
    width = error.shape[1]
    for j in range(int(0.2 * width), int(0.8 * width)):
        on_hair = np.nonzero(seg[:, j] == hair_id)[0]
        if not len(on_hair):
            continue
        line = int(on_hair.max())
        if line < band or not (seg[line + 1:line + 1 + band, j] == skin_id).all():
            continue
        column = error[line + 1 - band:line + 1 + band, j]
        if not np.isfinite(column).all():
            continue
        hair.append(column[:band])
        skin.append(column[band:])
        step = np.abs(column[f:] - column[:-f])
        first = np.arange(len(step))            # the pair (k, k + f) straddles the hairline when k < band <= k + f
        jumps.append(step[(first + f < band) | (first >= band)])
    if not skin:
        return {key: np.nan for key in ("skin_mean_mm", "skin_max_mm", "hair_mean_mm", "hair_max_mm",
                                         "jump_mean_mm", "jump_p99_mm", "jump_max_mm")}
    skin, hair, jumps = (1e3 * np.abs(np.concatenate(x)) for x in (skin, hair, jumps))
    return {"skin_mean_mm": skin.mean(), "skin_max_mm": skin.max(), "hair_mean_mm": hair.mean(),
            "hair_max_mm": hair.max(), "jump_mean_mm": jumps.mean(), "jump_p99_mm": np.percentile(jumps, 99),
            "jump_max_mm": jumps.max()}


def _window(truth, region):
    """The truth crop cut to `region` (photo pixels), with its camera."""
    from dataclasses import replace

    x0, y0, x1, y1 = region
    f = truth.factor
    bx0, by0 = truth.box[:2]
    rows, cols = slice((y0 - by0) * f, (y1 - by0) * f), slice((x0 - bx0) * f, (x1 - bx0) * f)
    K = truth.meta["K"].copy()
    K[0, 2] -= (x0 - bx0) * f
    K[1, 2] -= (y0 - by0) * f
    return replace(truth, box=tuple(region), mask=truth.mask[rows, cols], pointmap=truth.pointmap[rows, cols],
                   normal=None, albedo=None, seg=None, meta={**truth.meta, "K": K, "gap": truth.meta["gap"][rows, cols]})


def model_figures(size: str = "tiny", device: str = "cpu", dtype: str = "fp32", repeats: int = 3) -> None:
    """The crops' second pass against the whole-photo dense pass: the bundled sample's photo and
    its true keypoints (two hands and a face), random checkpoints in the released layout at
    `size` (tiny: the test models), on `device` in `dtype`. No renderer: runs where open3d is not."""
    from engine.bundle import read_bundle
    from engine.models.loading import save_checkpoint
    from engine.models.sapiens2 import build_model
    from engine.models.testing import randomize_, write_tiny_checkpoint
    from engine.paths import asset
    from engine.predict import Predictor
    from engine.predict.crops import run_crops
    from engine.predict.photos import PhotoWork, load_work
    from engine.predict.tasks import TaskRun

    keypoints = read_bundle(asset("sample")).keypoints
    tasks = ("seg", "pointmap", "normal", "albedo")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        for task in tasks:
            path = root / task / f"sapiens2_0.4b_{task}.safetensors"
            if size == "tiny":
                write_tiny_checkpoint(path, task, seed=1)
            else:
                save_checkpoint(randomize_(build_model(f"sapiens2_{size}", task)), path)
        print(f"{size} checkpoints written in {time.perf_counter() - t0:.1f} s (not in the figures)")
        with Predictor(tasks=list(tasks), checkpoints=root, device=device, dtype=dtype) as predictor:
            run = TaskRun(cache=predictor.cache, ops=predictor.ops, bbox=None, all_people=False, seg_probs=False)
            for repeat in range(repeats):
                work = PhotoWork(path=asset("sample") / "image.png", out_name="photo")
                load_work(work)
                for task in tasks:
                    run(task, [work])
                work.keypoints = [keypoints.copy()]   # the true keypoints: a random pose model's are noise
                t0 = time.perf_counter()
                run_crops(run, [work], tasks)
                crops_s = time.perf_counter() - t0
                run.finish(work)
                whole = sum(work.timings[f"forward_{t}"] for t in tasks)
                post = sum(work.timings[f"post_{t}"] + work.timings[f"prep_{t}"] for t in tasks)
                per_task = {t: round(work.timings[f"crops_{t}"], 3) for t in tasks}
                print(f"run {repeat}{' (first: loads, autotuning)' if repeat == 0 else ''}: whole-photo pass "
                      f"{whole:.3f} s forward + {post:.3f} s prep/post; {len(work.crops[0])} crops, second pass "
                      f"{crops_s:.3f} s in all ({per_task})")


def build_figures(repeats: int) -> None:
    """The whole default build (closed, textured, no rig, glb) of the open-hands person from its
    bundle with exact maps, with and without its crops, interleaved: CPU seconds per build (the
    build's process and the geometry worker's) and the stages' wall seconds from avatar.json (the
    machine is shared: CPU time is the figure)."""
    import json

    from engine.avatar.build import build_avatar
    from engine.bundle import write_bundle
    from engine.synthetic import make_person, to_bundle
    from engine.synthetic.crops import open_hands_pose, render_crops

    person = make_person(seed=2, pose=open_hands_pose())
    bundle = to_bundle(person)
    bundle.crops = render_crops(person, scale=GUESS_SCALE, shift=GUESS_SHIFT)
    with tempfile.TemporaryDirectory() as tmp:
        write_bundle(bundle, Path(tmp) / "bundle")
        cpu = {False: [], True: []}
        for repeat in range(repeats):
            for crops in (False, True):
                out = Path(tmp) / f"avatar_{repeat}_{int(crops)}"
                t0 = time.process_time() + worker_cpu_seconds()
                build_avatar(Path(tmp) / "bundle", out, formats=["glb"], rig=None, detail_crops=crops)
                cpu[crops].append(time.process_time() + worker_cpu_seconds() - t0)
                stages = json.loads((out / "avatar.json").read_text())["timings_s"]
                print(f"run {repeat} crops {'on ' if crops else 'off'}: {cpu[crops][-1]:.2f} CPU s; stages (wall s) "
                      + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
        print(f"default closed build, CPU s, median of {repeats}: without crops {np.median(cpu[False]):.2f}, "
              f"with {np.median(cpu[True]):.2f} (+{np.median(cpu[True]) - np.median(cpu[False]):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--no-models", action="store_true")
    parser.add_argument("--builds", type=int, default=0, help="whole default builds with and without the crops, N each")
    parser.add_argument("--models-size", default="tiny", help="the model time's checkpoints: tiny, 0.4b, 1b, ...")
    parser.add_argument("--models-device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--models-dtype", default="fp32", help="fp32, bf16, auto")
    parser.add_argument("--repeats", type=int, default=3, help="model-time runs (the first loads and warms up)")
    args = parser.parse_args()
    print(f"load average at start {os.getloadavg()} (2 cores shared with other work)")
    if args.people > 0 or args.builds > 0:
        # the hands' geometry worker process, warm as in a running engine (its start not timed)
        from engine.geometry import solve_worker

        print(f"geometry worker process started in {solve_worker.shared().wait_ready():.2f} s (not in the figures)")
    if args.people > 0:
        surface_figures(args.people)
    if args.builds > 0:
        print("\nthe whole default build (closed, textured, glb, no rig), open-hands person, exact maps:")
        build_figures(args.builds)
    if not args.no_models:
        from engine.runtime.device import device_name, resolve_device

        dev = resolve_device(args.models_device)
        print(f"\nmodel time ({args.models_size} random checkpoints, {device_name(dev)}, {args.models_dtype}; "
              f"the bundled sample's photo, two hands and a face):")
        model_figures(args.models_size, args.models_device, args.models_dtype, args.repeats)
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
