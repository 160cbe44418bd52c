"""The closed (watertight) surface on predictions with the errors dense networks make.

One engine.synthetic person (seed 5, pose "bent": forearms in front of the body) at 384 x 512,
built closed from exact maps and from degraded ones: degrade() (1 cm smooth depth error, 0.5 cm
noise, 1.5 px blur, 3 deg normal error) plus a 2 px rim of silhouette pixels strewn up to 40 %
of their depth toward the camera (flying pixels), holes in the pointmap, no normal map. Before
the trust step, the degraded person's closed surface reached 1.2-1.5 m toward the camera with
64-72 % of its area facing inward (bench/bench_closed.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from engine.errors import BundleError
from engine.geometry import build_surface
from engine.geometry.degrade import fly_rim
from engine.geometry.trust import trusted_front
from engine.geometry.grid_mesh import valid_pixels
from engine.synthetic import degrade, make_person

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_closed import closed_metrics, truth_of  # noqa: E402


@pytest.fixture(scope="module")
def person():
    render = make_person(5, pose="bent", width=384, height=512)
    return render, truth_of(render, n_volume=200_000)


def _closed(render, **options):
    options.setdefault("detail", "normals")
    return build_surface(render.pointmap, render.normal, render.mask, render.seg, render.K, watertight=True, **options)


def _check_solid(surface, truth, *, chamfer_cm, volume_tolerance):
    mesh = trimesh.Trimesh(surface.vertices, surface.faces, process=False)
    assert mesh.is_watertight and mesh.volume > 0
    m = closed_metrics(truth, surface.vertices, surface.faces)
    assert m["chamfer_cm"] < chamfer_cm, m
    # no sheet toward the camera: every vertex within 12 cm of the body (measured 4.8-6.4 cm,
    # between the legs and at grazing silhouettes; 120-150 cm before)
    assert m["to_truth_max_cm"] < 12.0, m
    # faces turned against the outward normal at the closest point of the true skin: measured
    # 1.1-1.5 % (hidden surfaces shaped unlike the truth, e.g. the back of a forearm that points
    # at the camera); before the trust step 64-72 %
    assert m["inward"] < 0.03, m
    # no face is wound into the solid it bounds (the snap onto the front folded 0.03 % of the
    # area near the silhouette until folds were kept from it); measured 0.0000 (rounded)
    assert m["facing_into_itself"] < 1e-4, m
    assert abs(m["volume_ratio"] - 1.0) < volume_tolerance, m
    return m


def test_closed_from_exact_maps(person):
    render, truth = person
    surface = _closed(render)
    # measured: chamfer 0.43 cm, volume 0.97
    _check_solid(surface, truth, chamfer_cm=0.6, volume_tolerance=0.05)
    assert surface.stats["watertight"]["trust"]["trusted_fraction"] > 0.99


def test_closed_from_degraded_maps_with_flying_rim(person):
    render, truth = person
    noisy = degrade(render, seed=7, flying_rim_px=2.0)
    surface = _closed(noisy)
    # measured: chamfer 0.64 cm, volume 0.97 (issue 13's targets: under 1 cm, within 5 %)
    _check_solid(surface, truth, chamfer_cm=1.0, volume_tolerance=0.05)
    trust = surface.stats["watertight"]["trust"]
    # the flying rim is what the trust step drops (measured 2226 unsupported pixels of 25.6k)
    assert trust["unsupported_pixels"] > 1000 and trust["trusted_fraction"] > 0.85


def test_closed_with_holes_and_without_normals(person):
    render, truth = person
    noisy = degrade(render, seed=3, flying_rim_px=2.0)
    rows, cols = np.nonzero(render.mask)
    centre_r, centre_c = int(rows.mean()), int(cols.mean())
    pointmap = noisy.pointmap.copy()
    pointmap[centre_r - 12 : centre_r + 12, centre_c - 10 : centre_c + 10] = np.nan  # a hole in the belly
    surface = build_surface(pointmap, None, render.mask, render.seg, render.K, detail="none", watertight=True)
    # measured: chamfer 0.75 cm, volume 0.95 (the hole is refilled from around it, the membrane
    # runs over it instead of pinning the back to its rim)
    _check_solid(surface, truth, chamfer_cm=1.2, volume_tolerance=0.1)


def test_pixel_noise_alone_is_trusted(person):
    """Per-pixel depth noise moves points along their rays but none off the surface: the normal
    agreement compares with the normals of the depth smoothed over a few pixels, not of the raw
    finite differences (those left 25 % of this person untrusted with 3 cm of noise, and refused
    the 768 x 1024 one)."""
    from engine.geometry.degrade import degrade_pointmap
    from engine.geometry.trust import trust_pixels

    render, _ = person
    noisy = degrade_pointmap(render.pointmap, render.mask, smooth_m=0.0, noise_m=0.03, blur_px=0.0, seed=1)
    _, _, stats = trust_pixels(noisy, render.mask, render.normal, render.K)
    # measured 0.944 (0.754 before), 343 pixels disagreeing with their normal (5211 before)
    assert stats["trusted_fraction"] > 0.9
    assert stats["normal_disagreement_pixels"] < 0.03 * stats["person_pixels"]


def test_trust_drops_flying_pixels_and_keeps_the_rest(person):
    render, _ = person
    strewn = fly_rim(render.pointmap, render.mask, width_px=2.0, fraction=0.6, seed=4)
    moved = valid_pixels(render.pointmap, render.mask) & (np.abs(strewn[..., 2] - render.pointmap[..., 2]) > 0.05)
    front = trusted_front(strewn, render.mask, render.normal, render.K)
    assert moved.sum() > 500
    assert (front.trusted & moved).sum() < 0.05 * moved.sum()
    assert front.trusted[~moved & render.mask].mean() > 0.95
    # refilled pixels are back near the true depth (measured mean 1.0 cm off, the rim's slope)
    error = np.abs(front.points[..., 2] - render.pointmap[..., 2])[moved]
    assert np.mean(error) < 0.03


@pytest.mark.parametrize("with_normals", [True, False], ids=["normals", "no normal map"])
def test_refuses_a_pointmap_of_scattered_depths(person, with_normals):
    render, _ = person
    rng = np.random.default_rng(0)
    scattered = render.pointmap * rng.uniform(0.5, 1.5, render.mask.shape)[..., None].astype(np.float32)
    normal = render.normal if with_normals else None
    with pytest.raises(BundleError, match="cannot close the surface: only .* agrees with their neighbours"):
        build_surface(scattered, normal, render.mask, render.seg, render.K, detail="none", watertight=True)


def test_closed_surface_is_the_same_run_to_run(person):
    """Screened Poisson runs single-threaded (watertight.POISSON_THREADS): multi-threaded, Open3D
    ordered the vertices differently on each run and moved them by ~1e-6 m (measured on this
    person: three runs, three different meshes), so avatars and the tests' figures varied."""
    render, _ = person
    noisy = degrade(render, seed=7, flying_rim_px=2.0)
    first, second = _closed(noisy), _closed(noisy)
    assert np.array_equal(first.vertices, second.vertices)
    assert np.array_equal(first.faces, second.faces)
    assert np.array_equal(first.vertex_labels, second.vertex_labels)


def test_the_back_of_the_head_is_not_the_face_pushed_back(person):
    """The back mirrors a smoothed front and the thickness cap bends it: mirrored as measured and
    cut at the cap per pixel, the face came out on the back of the head (a nose bump in a ring,
    the face's dome turned into a dent behind the cap)."""
    import open3d as o3d

    from engine.geometry.labels import class_names

    render, truth = person
    surface = _closed(render)
    names = class_names()
    head = surface.vertices[np.isin(surface.vertex_labels, [names.index("Face_Neck"), names.index("Hair")])]
    back = head[head[:, 2] > np.median(head[:, 2])]
    distance = truth["scene"].compute_distance(o3d.core.Tensor(back.astype(np.float32))).numpy()
    # measured: mean 0.26 cm, 95th percentile 0.62 cm (before: 0.54 and 1.53 cm)
    assert len(back) > 1000
    assert distance.mean() < 0.004 and np.quantile(distance, 0.95) < 0.01


def test_subdivide_keeps_a_closed_mesh_closed_and_outward():
    from engine.geometry.cleanup import subdivide

    sphere = trimesh.creation.icosphere(subdivisions=2)
    vertices, faces, ends = subdivide(sphere.vertices, sphere.faces)
    finer = trimesh.Trimesh(vertices, faces, process=False)
    assert len(faces) == 4 * len(sphere.faces)
    assert len(vertices) == len(sphere.vertices) + len(sphere.edges_unique)  # one midpoint per edge
    assert finer.is_watertight and finer.is_winding_consistent
    assert finer.volume == pytest.approx(sphere.volume, rel=1e-9)  # flat split: the same solid, outward
    assert np.allclose(vertices[len(sphere.vertices):], sphere.vertices[ends].mean(axis=1))


def test_poisson_full_depth_reaches_open3d_and_keeps_the_surface(monkeypatch):
    import open3d as o3d

    from engine.geometry import watertight

    rng = np.random.default_rng(3)
    normals = rng.normal(size=(4000, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    centre = np.array([0.2, -0.1, 3.0])
    points = centre + 0.1 * normals
    original = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson
    asked = []

    def recording(cloud, **kwargs):
        asked.append(kwargs.get("full_depth"))
        return original(cloud, **kwargs)

    monkeypatch.setattr(o3d.geometry.TriangleMesh, "create_from_point_cloud_poisson", staticmethod(recording))
    solids = {}
    for full_depth in (watertight.POISSON_FULL_DEPTH, watertight.CLOSED_POISSON_FULL_DEPTH):
        vertices, faces, _, stats = watertight.poisson_solid(points, normals, depth=7, full_depth=full_depth)
        assert stats["open_edges"] == 0
        solids[full_depth] = trimesh.Trimesh(vertices, faces, process=False)
    watertight.poisson_solid(points, normals, depth=2, full_depth=5)  # never deeper than the solve
    assert asked == [5, 3, 2]
    # a coarser complete octree moves the sphere's surface by far less than a depth-7 cell (1.7 mm)
    coarse, full = solids[3], solids[5]
    assert coarse.is_watertight and coarse.volume == pytest.approx(full.volume, rel=1e-3)
    assert np.abs(np.linalg.norm(coarse.vertices - centre, axis=1) - 0.1).max() < 2e-3
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(full.vertices.astype(np.float32)), o3d.core.Tensor(full.faces.astype(np.uint32)))
    distance = scene.compute_distance(o3d.core.Tensor(coarse.vertices.astype(np.float32))).numpy()
    assert distance.mean() < 1e-4, distance.mean()  # measured 0.0013 mm (max 0.017), volume equal to 1e-5


def test_snap_puts_the_seen_front_on_the_front_depth():
    """A sphere 5 mm behind the front it was solved from: the vertices facing the camera move
    along their rays onto the front's depth, those facing away stay, no face folds over."""
    from engine.geometry.watertight import SolidFront, snap_to_front

    K = np.array([[500.0, 0, 100], [0, 500.0, 100], [0, 0, 1]])
    rays = np.stack(np.meshgrid((np.arange(200) + 0.5 - 100) / 500, (np.arange(200) + 0.5 - 100) / 500) + [np.ones((200, 200))], -1)
    centre, radius = np.array([0.0, 0.0, 2.0]), 0.1
    # the sphere's near side along each ray: |t r - c| = radius
    a, b = (rays**2).sum(-1), (rays * centre).sum(-1)
    near_t = (b - np.sqrt(np.maximum(b**2 - a * (centre @ centre - radius**2), 0.0))) / a
    valid = b**2 - a * (centre @ centre - radius**2) > 0
    front_points = np.where(valid[..., None], rays * (near_t - 0.005)[..., None], np.nan)  # 5 mm nearer
    front = SolidFront(front_points, None, valid, valid, None, K, 1, {})
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    vertices = sphere.vertices + centre
    snapped, stats = snap_to_front(vertices, sphere.faces, front)

    view = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    facing = -(sphere.vertex_normals * view).sum(1)
    pixel = np.floor(vertices[:, :2] / vertices[:, 2:] * 500 + 100).astype(int)
    inner = (facing > 0.6) & valid[pixel[:, 1].clip(0, 199), pixel[:, 0].clip(0, 199)]
    # the front's depth along each snapped vertex's ray: the sphere's, 5 mm nearer
    ray = snapped / snapped[:, 2:]
    a, b = (ray**2).sum(1), ray @ centre
    expected = (b - np.sqrt(b**2 - a * (centre @ centre - radius**2))) / a - 0.005
    assert inner.sum() > 300 and stats["snapped_fully"] >= inner.sum() * 0.9
    assert np.abs(snapped[inner, 2] - expected[inner]).max() < 3e-4  # bilinear on 2 mm pixels
    assert np.array_equal(snapped[facing < 0.1], vertices[facing < 0.1])  # the far side stays
    moved = trimesh.Trimesh(snapped, sphere.faces, process=False)
    assert (moved.face_normals * sphere.face_normals).sum(1).min() > 0.5


def test_centred_degradation_has_no_offset_along_the_view(person):
    """bench_closed's "degraded" case is the issue's degradation: the smooth depth error has no
    mean over the person (centred=True); uncentred, its mean moves the whole person along the
    view, by 2.8 cm for bench_closed's bent-101."""
    render, _ = person
    ok = render.mask & np.isfinite(render.pointmap).all(-1)
    offsets = {}
    for centred in (False, True):
        noisy = degrade(render, seed=101, centred=centred)
        both = ok & np.isfinite(noisy.pointmap).all(-1)
        offsets[centred] = float(np.mean((noisy.pointmap[..., 2] - render.pointmap[..., 2])[both]))
    # measured: uncentred +6.5 mm, centred -0.3 mm (the blur rounds the edges)
    assert abs(offsets[True]) < 0.001
    assert abs(offsets[False]) > 0.003
    assert noisy.meta["degraded"]["centred"] is True


def test_fingers_pointing_at_the_camera_keep_their_measured_depth():
    """bench_closed's bent-101 (exact maps): the left hand's fingers point at the camera, small
    islands of nearer depth with grazing sides. Refined with the normals, they were flattened
    into the hand behind them by up to 3 cm (the solid's front then lay behind the true
    fingertips: the hands' inward area). With hands_near_measured (the one-photo solid's) a
    hand's refined depth stays within HAND_REFINE_REACH x the front's median refinement
    departure of the measured depth; every other trusted pixel is refined as before."""
    from engine.geometry.labels import class_names
    from engine.geometry.watertight import HAND_REFINE_REACH, solid_front

    render = make_person(101, pose="bent", width=768, height=1024)
    args = (render.pointmap, render.mask, render.seg, render.K, render.normal)
    measured = solid_front(*args)
    plain = solid_front(*args, refine=True)
    kept = solid_front(*args, refine=True, hands_near_measured=True)
    names = class_names()
    hands = np.isin(kept.seg, [names.index("Left_Hand"), names.index("Right_Hand")]) & kept.trusted
    assert hands.sum() > 100
    z0, z1, z2 = measured.points[..., 2], plain.points[..., 2], kept.points[..., 2]
    assert np.nanmax(np.abs(z1 - z0)[hands]) > 0.02                      # flattened by 2 cm or more
    reach = kept.stats["hand_refine_reach_m"]
    assert 0 < reach < 0.01 and reach == pytest.approx(HAND_REFINE_REACH * np.nanmedian(np.abs(z1 - z0)[kept.trusted]), rel=0.2)
    assert np.nanmax(np.abs(z2 - z0)[hands]) <= reach + 1e-5
    others = ~np.isin(kept.seg, [names.index("Left_Hand"), names.index("Right_Hand")]) & kept.trusted
    np.testing.assert_array_equal(kept.points[others], plain.points[others])   # (refilled pixels may
    # take a hand neighbour's depth)


def test_hands_solved_again_from_crops_are_not_held_near_their_measured_depth():
    """close_surface holds the hands' refined depth near the measured one (solid_front's
    hands_near_measured) only when the hands stay the body's: given on_samples (the build's
    HandSolve, which solves the hands again from their crops) it refines them as before, since
    the crop hands came out further from the truth with the hold (bench_detail, closed with crops:
    mesh->truth 2.18 -> 2.30 mm)."""
    from engine.geometry.watertight import close_surface

    render = make_person(101, pose="bent", width=288, height=384)
    args = (render.pointmap, render.mask, render.seg, render.K, render.normal)
    seen = []
    held = close_surface(*args, refine=True)
    solved_again = close_surface(*args, refine=True, on_samples=lambda *a: seen.append(len(a[0])))
    assert held.stats["hand_refine_reach_m"] > 0
    assert "hand_refine_reach_m" not in solved_again.stats and seen and seen[0] > 1000


def test_arms_hanging_against_the_trunk_leave_no_slit_in_the_solid():
    """An engine.synthetic person at rest (arms hanging against the trunk): the closed solid's
    surface never faces itself across a crack narrower than 3 mm (bench/bench_slits.py). With the
    arm-trunk walls of 6e801c0's contact_walls wired into close_surface (2.5 mm walls along the
    rays) the fifteenth session's look avatars showed dark zig-zag cracks where the upper arm meets
    the torso: this solid then had 448 cm2 of slit faces; without them 0.34 cm2 (between fingers)."""
    from bench_slits import face_normals_areas, slit_faces

    render = make_person(101, pose="rest", width=384, height=512)
    surface = _closed(render)
    vertices, faces = surface.vertices.astype(np.float64), surface.faces.astype(np.int64)
    normals, areas = face_normals_areas(vertices, faces)
    slits = slit_faces(vertices, faces, normals, areas)
    assert areas.sum() > 1.0  # a whole body, m2
    assert areas[slits].sum() * 1e4 < 5.0
