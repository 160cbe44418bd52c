"""watertight.off_the_background: the one-photo solid's web across a background gap between parts of
the person (a hand hanging beside the hip) is cut away along the rays before into_silhouette's
squeeze, which laid the web's sheets into crevices at the hip's outline (bench/bench_slits.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import trimesh

from engine.geometry import build_surface
from engine.geometry.cleanup import face_components
from engine.geometry.watertight import off_the_background
from engine.synthetic import degrade, make_person

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_slits import face_normals_areas, slit_faces  # noqa: E402

K = np.array([[500.0, 0.0, 50.0], [0.0, 500.0, 50.0], [0.0, 0.0, 1.0]])


def _slab_over(mask_cols: slice, gap_cols: slice):
    """A box 2 m from the camera over photo columns 26-74, rows 30-70, and the person's mask: rows
    20-80 of columns `mask_cols`, less the background columns `gap_cols` between two parts."""
    box = trimesh.creation.box(extents=(0.16, 0.16, 0.1))
    box.apply_translation((0.0, 0.0, 2.05))
    mask = np.zeros((100, 100), bool)
    mask[20:80, mask_cols] = True
    mask[:, gap_cols] = False
    return np.asarray(box.vertices, np.float64), np.asarray(box.faces, np.int64), mask


def _columns(vertices):
    return K[0, 0] * vertices[:, 0] / vertices[:, 2] + K[0, 2]


def test_a_web_across_a_background_gap_is_cut_along_the_rays():
    # the box spans photo columns 26-74; the mask's parts are columns 26-44 and 57-74
    vertices, faces, mask = _slab_over(slice(26, 74), slice(44, 57))
    out_v, out_f, stats = off_the_background(vertices, faces, mask, K)
    solid = trimesh.Trimesh(out_v, out_f, process=False)
    assert solid.is_watertight and solid.volume > 0
    assert face_components(out_f, len(out_v)).max() == 1  # two parts, no web between them
    assert stats["background_cut_cm3"] > 0
    # nothing farther into the gap than the cut's margin: the centres of the first background pixels
    # more than 3 px from the mask, 3.5 px past its edges (columns 44 and 57)
    cols = _columns(out_v)
    inside_gap = (cols > 44 + 3.5 + 1e-6) & (cols < 57 - 3.5 - 1e-6)
    assert not inside_gap.any()


def test_a_gap_too_narrow_for_a_channel_is_left_to_the_squeeze():
    # 6 background columns: 3 px either side leaves no run 3 px wide to cut
    vertices, faces, mask = _slab_over(slice(26, 74), slice(47, 53))
    out_v, out_f, stats = off_the_background(vertices, faces, mask, K)
    assert stats["background_cut_cm3"] == 0.0
    assert face_components(out_f, len(out_v)).max() == 0


def test_background_outside_the_person_is_not_cut():
    # the box reaches 10 px past the mask's only part: no gap between parts, the squeeze's business
    vertices, faces, mask = _slab_over(slice(36, 74), slice(0, 0))
    out_v, out_f, stats = off_the_background(vertices, faces, mask, K)
    assert stats["background_cut_cm3"] == 0.0
    assert _columns(out_v).min() < 30


def test_a_hand_hanging_beside_the_hip_leaves_no_crevice_in_the_solid():
    """A rest-pose person's degraded maps at 768 x 1024: the coarse solve spans a web 1.7 cm thick
    across the 4 cm of background between the hanging hand and the hip; into_silhouette pulled it
    into crevices along the rays at the hip's outline: 10.19 cm2 of slit faces without the cut,
    1.27 with it."""
    person = make_person(101, pose="rest", width=768, height=1024)
    render = degrade(person, seed=101, flying_rim_px=2.0, centred=True)
    surface = build_surface(render.pointmap, render.normal, render.mask, render.seg, render.K, detail="normals",
                            resolution="full", watertight=True, keypoints=render.keypoints)
    vertices, faces = surface.vertices.astype(np.float64), surface.faces.astype(np.int64)
    assert trimesh.Trimesh(vertices, faces, process=False).is_watertight
    normals, areas = face_normals_areas(vertices, faces)
    slits = slit_faces(vertices, faces, normals, areas)
    assert areas[slits].sum() * 1e4 < 4.0
