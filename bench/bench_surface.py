"""Surface build: seconds and peak memory at 1024 x 768 with ~300k person pixels.

Usage: .venv/bin/python bench/bench_surface.py [--source shared|generated] [--samples ../shared/samples]
                                              [--no-reference]

The bundle is made by ray casting the true mesh of a person from a closer camera (so ~300k of
the 786k pixels are person), giving exact maps: with --source shared (default) a shared
synthetic person, with --source generated the project's own generator (engine.synthetic, pose
"bent", zoomed until ~300k person pixels; needs no ../shared). The pointmap and normals
are then degraded (2 cm smooth error, 1 cm noise, 2 px blur; 3 deg normal noise) so that the
refinement and the reference BiNI have something to fix. Every case runs in its own process and
reports its peak resident memory (ru_maxrss), which counts numpy/scipy/Open3D allocations.
Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
H, W = 1024, 768


def make_bundle(samples: Path, out: Path, name: str = "person_101", zoom: float = 1.8) -> dict:
    import open3d as o3d

    sys.path.insert(0, str(REPO))
    from engine.geometry.degrade import degrade_normals, degrade_pointmap
    from engine.geometry.normal_integration import pixel_rays

    with np.load(samples / name / "gt_maps.npz") as data:
        K0, seg0, mask0 = data["K"], data["seg"], data["mask"]
    rows, cols = np.nonzero(mask0)
    K = K0.copy()
    K[0, 0] *= zoom
    K[1, 1] *= zoom
    # Keep the head near the top edge; the legs run out of the frame (a three-quarter shot).
    K[1, 2] = 30 - (rows.min() + 0.5 - K0[1, 2]) * zoom
    K[0, 2] = W / 2 - ((cols.min() + cols.max()) / 2 + 0.5 - K0[0, 2]) * zoom
    mesh = o3d.io.read_triangle_mesh(str(samples / name / "gt_mesh.ply"))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    rays = pixel_rays(K, (H, W))
    directions = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    query = np.concatenate([np.zeros((H, W, 3)), directions], -1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(query))
    t = hit["t_hit"].numpy()
    mask = np.isfinite(t)
    points = (directions * np.where(mask, t, np.nan)[..., None]).astype(np.float32)
    normal = hit["primitive_normals"].numpy().astype(np.float32)
    normal *= np.where((normal * directions).sum(-1, keepdims=True) > 0, -1.0, 1.0)
    normal[~mask] = np.nan
    # Same camera centre: a pixel's ray meets the original image where K0 sends it.
    x0 = np.clip((K0[0, 0] * rays[..., 0] + K0[0, 2]).astype(int), 0, seg0.shape[1] - 1)
    y0 = np.clip((K0[1, 1] * rays[..., 1] + K0[1, 2]).astype(int), 0, seg0.shape[0] - 1)
    seg = np.where(mask, seg0[y0, x0], 0).astype(np.uint8)
    np.savez(
        out,
        true_pointmap=points,
        pointmap=degrade_pointmap(points, mask, seed=5),
        normal=degrade_normals(normal, mask, seed=5),
        mask=mask,
        seg=seg,
        K=K,
    )
    return {"person_pixels": int(mask.sum()), "size": [H, W]}


def generated_person(target_pixels: int = 300_000, pose: str = "bent", seed: int = 0):
    """An engine.synthetic Render at H x W whose camera is zoomed (three-quarter shot, head near
    the top edge, legs out of the frame) until about `target_pixels` pixels are person."""
    sys.path.insert(0, str(REPO))
    from engine.synthetic import render
    from engine.synthetic.render import Camera, frame_camera
    from engine.synthetic.skeleton import Skeleton, named_pose

    posed = Skeleton.for_height(1.75).pose(named_pose(pose))
    framed = frame_camera(posed, W, H)
    full = render(posed, W, H, camera=framed)
    top = np.nonzero(full.mask)[0].min()
    zoom, person = 1.0, full
    for _ in range(4):  # the cropped legs make the count sub-quadratic in the zoom: iterate
        zoom *= np.sqrt(target_pixels / person.mask.sum())
        K = framed.K.copy()
        K[0, 0] *= zoom
        K[1, 1] *= zoom
        K[1, 2] = 30 - (top - framed.K[1, 2]) * zoom
        person = render(posed, W, H, camera=Camera(K, W, H, framed.body_to_camera))
        if abs(person.mask.sum() / target_pixels - 1) < 0.02:
            break
    person.meta.update(pose=pose, seed=seed, zoom=round(float(zoom), 3))
    return person


def make_generated_bundle(out: Path, person=None) -> dict:
    """As make_bundle, from the project's generator instead of a shared sample."""
    from engine.geometry.degrade import degrade_normals, degrade_pointmap

    person = person if person is not None else generated_person()
    np.savez(
        out,
        true_pointmap=person.pointmap,
        pointmap=degrade_pointmap(person.pointmap, person.mask, seed=5),
        normal=degrade_normals(person.normal, person.mask, seed=5),
        mask=person.mask,
        seg=person.seg,
        K=person.K,
    )
    return {"person_pixels": int(person.mask.sum()), "size": [H, W], "zoom": person.meta.get("zoom")}


def run_case(case: str, bundle: str) -> dict:
    """Runs in a child process: one case, its seconds, peak memory and depth error."""
    import resource
    import time

    sys.path.insert(0, str(REPO))
    from engine.geometry import build_surface
    from engine.geometry.grid_mesh import valid_pixels

    with np.load(bundle) as data:
        d = {k: data[k] for k in data.files}
    truth = d.pop("true_pointmap")
    valid = valid_pixels(truth, d["mask"])
    result: dict = {"case": case}
    start = time.perf_counter()
    if case == "reference_bini":
        from engine.geometry.bini_reference import bini_reference
        from engine.geometry.normal_integration import PRIOR_WEIGHT

        refined, info = bini_reference(d["pointmap"], d["normal"], d["mask"], d["K"], prior_weight=PRIOR_WEIGHT)
        result["iterations"] = info["iterations"]
    elif case == "fast_integration":
        from engine.geometry.normal_integration import refine_depth

        refined, info = refine_depth(d["pointmap"], d["normal"], d["mask"], d["K"])
        result["levels"] = info.levels
    else:
        options = {
            "mesh_only": dict(detail="none"),
            "with_refinement": dict(detail="normals"),
            "watertight": dict(detail="normals", watertight=True),
            "watertight_decimated": dict(detail="normals", watertight=True, target_faces=100_000),
        }[case]
        surface = build_surface(d["pointmap"], d["normal"], d["mask"], d["seg"], d["K"], **options)
        result.update(faces=int(len(surface.faces)), stages=surface.stats["seconds"])
        refined = None
    result["seconds"] = round(time.perf_counter() - start, 2)
    if refined is not None:
        ok = valid & np.isfinite(refined).all(-1)
        result["depth_error_mm"] = round(float(np.abs(refined[..., 2] - truth[..., 2])[ok].mean() * 1000), 2)
        result["raw_depth_error_mm"] = round(float(np.abs(d["pointmap"][..., 2] - truth[..., 2])[ok].mean() * 1000), 2)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=Path(os.environ.get("SAPIENS_SHARED", REPO.parent / "shared")) / "samples")
    parser.add_argument("--source", choices=("shared", "generated"), default="shared",
                        help="a shared sample re-rendered, or the project's generator (engine.synthetic)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference BiNI (~100 s)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.bundle)))
        return
    cases = ["mesh_only", "with_refinement", "watertight", "watertight_decimated", "fast_integration"]
    if not args.no_reference:
        cases.append("reference_bini")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle.npz"
        info = make_bundle(args.samples, bundle) if args.source == "shared" else make_generated_bundle(bundle)
        print(f"bundle ({args.source}): {info['size'][0]} x {info['size'][1]}, {info['person_pixels']} person pixels, "
              f"{os.cpu_count()} CPUs")
        results = []
        for case in cases:
            out = subprocess.run(
                [sys.executable, __file__, "--case", case, "--bundle", str(bundle)], capture_output=True, text=True, check=True
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(result)
            extra = ""
            if "depth_error_mm" in result:
                extra = f"  depth error {result['depth_error_mm']} mm (raw {result['raw_depth_error_mm']} mm)"
            if "faces" in result:
                extra += f"  {result['faces']} faces  stages {result['stages']}"
            print(f"{case:22s} {result['seconds']:7.2f} s  peak {result['peak_rss_mb']:7.1f} MB{extra}", flush=True)
        by_case = {r["case"]: r for r in results}
        if "reference_bini" in by_case:
            ref, fast = by_case["reference_bini"], by_case["fast_integration"]
            print(
                f"speed-up of the integration vs reference BiNI: {ref['seconds'] / fast['seconds']:.1f}x "
                f"(depth error {fast['depth_error_mm']} vs {ref['depth_error_mm']} mm)"
            )


if __name__ == "__main__":
    main()
