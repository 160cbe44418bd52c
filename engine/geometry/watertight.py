"""Close the front surface into a solid: a plausible back, joined at the silhouette, then Poisson.

The camera sees only the front. The back is made per pixel along the pixel's ray, at
`depth + thickness`, with the thickness taken from the front itself: a limb or torso seen from
the front bulges toward the camera by about half its depth, so we measure that bulge against a
membrane stretched over the silhouette and mirror it (exact for any cross-section that is an
ellipse aligned with the view). Concretely:

0. trust (trust.py): front pixels whose depth has no support among their neighbours (flying
   pixels, noise clumps) or disagrees with their normal are refilled from the trusted ones,
   holes in the pointmap too; too few trusted pixels and the solid is refused (BundleError);
1. silhouette pixels: valid pixels on the mask's outline, and the near side of every depth jump
   (an arm's outline in front of the torso); the far side of a jump is not an outline (the torso
   goes on behind the arm);
2. membrane depth: harmonic interpolation of the silhouette depths over each connected surface
   region (a sparse Laplace solve, regions separated at depth jumps);
3. thickness = clip(2 * (membrane - depth) * scale, min_thickness * ramp, max_thickness) per
   body part (table below), where `ramp` grows from 0 at the silhouette to 1 at `min_thickness`
   inside, so front and back meet on the silhouette;
4. screened Poisson reconstruction (Open3D) of the front and back points with their normals,
   then low-density trimming: whole components of mostly unsupported surface are dropped, never
   parts of the main one, so the solid stays closed; the few holes left where marching cubes
   folded (duplicate or non-manifold faces removed) are closed by fans (cleanup.fill_holes);
5. the one-photo solid is solved at depth 7 (~15 mm cells, a quarter of depth 8's time), each
   triangle is split in four (cleanup.subdivide) and the vertices on the seen front are moved
   along their rays onto the front's depth (snap_to_front), which a depth-8 solve only
   approximates; the front's detail then lives at the front grid's ~8 mm, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.sparse.linalg import spsolve

from engine.geometry.cleanup import (clean_mesh, edge_census, face_components, face_cross, fill_holes, row_dots,
                                     row_lengths, subdivide)
from engine.geometry.arm_pose import arms_beside_the_torso
from engine.geometry.grid_mesh import RTOL_HARD, downsample_maps, valid_pixels
from engine.geometry.labels import TRUNK_CLASSES, class_ids, class_names
from engine.geometry.limb_depth import limb_pixels, view_stretch
from engine.geometry.normal_integration import pixel_rays

# Per body part: (scale of the mirrored bulge, minimum thickness m, maximum thickness m).
# Scales: true / built thickness along the pixel rays, measured per part on exact maps of four
# engine.synthetic calibration people (seeds 201-204; bench/bench_closed.py measures on others):
# a body's back is rounder than the mirrored front (the back of the head, hands, forearms), and
# a foot seen from the front is longer than its bulge (shoes 1.6).
# Minimums: a flat hand is ~2.5 cm thick, a foot ~6 cm, a head ~15 cm, a torso ~18 cm, a limb
# about as thick as it is wide (the mirror already gives that). Maximums stop a wrong depth
# from growing a slab: an adult torso is < 35 cm front to back.
THICKNESS = {
    "Background": (1.0, 0.03, 0.30),
    "Apparel": (1.06, 0.03, 0.35),
    "Eyeglass": (1.0, 0.01, 0.20),
    "Face_Neck": (1.12, 0.12, 0.25),
    "Hair": (1.12, 0.10, 0.25),
    "Left_Foot": (1.6, 0.05, 0.25),
    "Left_Hand": (1.3, 0.025, 0.10),
    "Left_Lower_Arm": (1.15, 0.05, 0.12),
    "Left_Lower_Leg": (1.1, 0.08, 0.16),
    "Left_Shoe": (1.6, 0.06, 0.25),
    "Left_Sock": (1.0, 0.06, 0.16),
    "Left_Upper_Arm": (1.07, 0.06, 0.15),
    "Left_Upper_Leg": (1.1, 0.10, 0.22),
    "Lower_Clothing": (1.1, 0.10, 0.35),
    "Right_Foot": (1.6, 0.05, 0.25),
    "Right_Hand": (1.3, 0.025, 0.10),
    "Right_Lower_Arm": (1.15, 0.05, 0.12),
    "Right_Lower_Leg": (1.1, 0.08, 0.16),
    "Right_Shoe": (1.6, 0.06, 0.25),
    "Right_Sock": (1.0, 0.06, 0.16),
    "Right_Upper_Arm": (1.07, 0.06, 0.15),
    "Right_Upper_Leg": (1.1, 0.10, 0.22),
    "Torso": (1.05, 0.15, 0.35),
    "Upper_Clothing": (1.05, 0.15, 0.35),
    "Lower_Lip": (1.12, 0.12, 0.25),
    "Upper_Lip": (1.12, 0.12, 0.25),
    "Lower_Teeth": (1.12, 0.12, 0.25),
    "Upper_Teeth": (1.12, 0.12, 0.25),
    "Tongue": (1.12, 0.12, 0.25),
}
# One scale over the per-part ones: with the contour offset capped at twice the lateral
# distance (see _contour_offset) the mirrored bulge alone gives 0.84-0.87 of the true volume on
# the four calibration people (exact and degraded maps, 384 x 512). Since the mirrored relief is
# smoothed and the cap bends it (back_surface), 1.2 gave them 0.93-1.02 (exact) and 0.91-0.98
# (degraded) and 1.24 gives 0.96-1.05 and 0.95-1.02; the held-out people of
# bench/bench_closed.py (768 x 1024): 1.020-1.051 exact, 0.966-0.983 degraded (input depth
# offset removed).
PREDICTION_SCALE = 1.24
# Since the twelfth session the one-photo solid's front is refined with the cut at its prior's
# noise (SOLID_JUMP_RTOL "auto", solid_front; it was RTOL_HARD, 2 %). On exact maps (noise about
# 2e-5 in log depth on the solid's grid: cut at the 0.3 % floor) the outline keeps its measured
# depth, which the 2 % cut's coarse levels drew 2-3 mm toward the camera, so the membrane lies
# ~2 mm deeper and the mirrored bulge grows with it: at PREDICTION_SCALE the trunk's back came out
# 5-11 mm too deep and the exact solids 1.07-1.11 of the true volume (bench_closed). back_scale:
# the CLEAN_PARTS (trunk, clothing, legs: the backs that came out too deep; the arms, hands,
# hair and shoes were as deep as the truth or shallower, and keep PREDICTION_SCALE; the face and
# neck too since the head keeps the fixed cut, HEAD_HARD_CUT_PARTS)
# take CLEAN_PREDICTION_SCALE on a clean front, PREDICTION_SCALE from NOISY_NOISE on, linear in
# the noise between (no case measured there). Calibrated on the calibration people (seeds 201-204,
# 768 x 1024, exact): CLEAN_PARTS at 1.10 / 1.14 / 1.16 / 1.18: Chamfer 0.334 / 0.316 / 0.326 /
# 0.345 cm, volume 0.952-1.000 / 0.983-1.032 / 0.999-1.048 / 1.014-1.063 (every part at 1.14:
# 0.322 cm). Their degraded maps (noise 6.8-7.6e-4, cut about 1 %) want 1.24 or more: every part
# at 1.18 / 1.24 / 1.30: 0.510 / 0.467 / 0.494 cm, volume 0.907-0.947 / 0.955-0.997 / 1.003-1.047.
CLEAN_PREDICTION_SCALE = 1.14
CLEAN_NOISE = 1e-4
NOISY_NOISE = 6e-4
CLEAN_PARTS = ("Torso", "Upper_Clothing", "Lower_Clothing", "Apparel", "Left_Upper_Leg", "Right_Upper_Leg",
               "Left_Lower_Leg", "Right_Lower_Leg")
CONTOUR_OFFSET_CAP = 2.0  # see _contour_offset
BACK_SMOOTH_M = 0.025  # the scale below which the front's relief is not mirrored onto the back
CAP_KNEE = 0.3  # the thickness cap bends the back's bulge over this share of what it allows
# side-wall samples at a shoe's outline (_outline_walls): the parts, the thickness from which a
# wall is sampled, and where along it. bench_closed (four people, exact / degraded maps): Chamfer
# 0.443 -> 0.435 / 0.506 -> 0.497 cm, every person lower, inward area unchanged
WALL_PARTS = ("Left_Shoe", "Right_Shoe", "Left_Foot", "Right_Foot")
WALL_MIN_THICKNESS_M = 0.03
WALL_FRACTIONS = (0.25, 0.5, 0.75)
# the leg above a shoe (_heel_floor): within HEEL_REACH_M of a shoe in the image its back reaches
# the deepest shoe back within HEEL_WINDOW_M. bench_closed (four people, no crops, exact / degraded):
# the shoes' and hems' inward area max 0.08 / 0.07 -> 0.02 / 0.02 %, Chamfer 0.421 -> 0.420 /
# 0.481 -> 0.479 cm; reach 0.08 m with the nearest shoe pixel's back: 0.02 / 0.03 %, 0.422 / 0.480 cm
HEEL_PARTS = ("Lower_Clothing", "Left_Lower_Leg", "Right_Lower_Leg", "Left_Sock", "Right_Sock")
HEEL_REACH_M = 0.05
HEEL_WINDOW_M = 0.05
BACK_MAX_PIXELS = 60_000  # the back is smooth: build it on a grid of at most this many pixels
# the solid's front samples: Poisson's depth-8 grid spans the person's extent in ~2^8 / 1.1 cells,
# so a person's front covers some 20-30k cells whatever the photo's size; a grid of 20-40k person
# pixels gives every cell a sample or two, a finer one costs refinement and Poisson time but adds
# no detail the cells keep. Measured on the 300k-pixel bench person (bench_surface
# .generated_person), closed on its quarter-size grid (18.6k pixels) instead of its half-size
# one (74k): mean distance to the true body 0.43 vs 0.55 cm (exact maps), 0.49 vs 0.58 cm
# (degraded), true body -> solid 0.56 vs 0.60 and 0.63 vs 0.64 cm, surface CPU time 3.1-4.5 vs
# 4.3-7.5 s (shared machine).
CLOSED_MAX_PIXELS = 40_000
POISSON_DEPTH = 8  # ~8 mm cells for a 2 m person: 2-4 s here; depth 9 costs ~4x (the fused solid's)
# one thread: Open3D's multi-threaded Poisson orders its vertices differently on every run and
# moves them by up to 1e-6 m (summation order), and a different count of iso-vertices it cannot
# place ("bad average roots") leaves different folds for the cleanup, so the solid's vertex count
# varied between runs; single-threaded it is the same to the bit. Its CPU time is the same
# either way (3.6-4.1 s on the 1024 x 768 bench person, measured both ways).
POISSON_THREADS = 1
# Open3D's full_depth: the octree is complete (every cell, near samples or not) down to this depth.
# Its default 5 (32^3 cells over the cube) is what the fused solid uses; the closed build's solves
# (the body at CLOSED_POISSON_DEPTH, each hand in detail_solid.solve_hand) take
# CLOSED_POISSON_FULL_DEPTH: 3 (no lower: 2 gave the same vertex counts and distances as 3 on the
# same inputs). On a real build's three calls (bench/bench_poisson_cpu.py, medians of 7 interleaved runs,
# loaded 2-core machine) the Poisson CPU went 0.85 -> 0.68 s (body), 0.61 -> 0.45 and 0.72 -> 0.47 s
# (hands), the surfaces 0.004-0.013 mm apart on average; bench_closed and bench_detail unchanged
# (docs/avatar.md, "Eighth session, Poisson's full depth").
POISSON_FULL_DEPTH = 5
# the one-photo solid: Poisson at depth 7 (~15 mm cells), each triangle then split in four and
# the seen front snapped onto the front's depth (snap_to_front). On the 1024 x 768 bench person
# (bench_avatar.py, 281k person pixels) the Poisson solve took 2.3-2.9 s CPU at depth 8 and
# 0.6-0.8 s at depth 7 (its octree has ~4x fewer nodes; fewer samples would not help: ~34k
# samples already give about one per depth-8 cell); the closed surface 3.7 -> 1.7 s CPU. Measured
# on bench_closed.py's four held-out people against depth 8 without snapping: Chamfer (exact maps)
# mean 0.432 -> 0.448 cm, worst 0.466 -> 0.486; degraded with the input offset removed
# 0.494 -> 0.508, worst 0.526 -> 0.539; volume within 1 % of depth 8's.
CLOSED_POISSON_DEPTH = 7
SOLID_JUMP_RTOL = "auto"  # solid_front's cut in close_surface: see PREDICTION_SCALE
# with the hands solved again from their crops (close_surface's on_samples), the hands and the
# forearms within HARD_CUT_REACH_M of a hand in the image keep the fixed cut (RTOL_HARD): the
# body's samples there are the crop hands' context, and cut at the noise the crop hands came out
# further from the truth. bench_detail --people 3 (closed with crops, mesh->truth exact /
# degraded): 2.16 / 2.20 mm with the fixed cut everywhere, 2.23 / 2.31 with none kept, 2.14 /
# 2.29 the hands only, 2.12 / 2.16 hands and whole forearms (but bench_closed arms_forward-102
# degraded+crops 0.461 -> 0.500 cm, its sleeve facing inward), 2.12 / 2.14 within 5 cm
# the head keeps the fixed cut everywhere: cut at the noise, a hair cap's overhang (crops-102's
# 1 cm lip) stayed on the coarse solid as a ragged step with notches across the forehead where
# the face crop's snap met it, and the back, mirrored from that front, a ledge across the back of
# the head (look_avatars demo, person_101, crops-102)
HEAD_HARD_CUT_PARTS = ("Hair", "Face_Neck", "Eyeglass", "Lower_Lip", "Upper_Lip", "Lower_Teeth", "Upper_Teeth", "Tongue")
CONTEXT_HARD_CUT_PARTS = ("Left_Hand", "Right_Hand", "Left_Lower_Arm", "Right_Lower_Arm")
HARD_CUT_REACH_M = 0.05
CLOSED_POISSON_FULL_DEPTH = 3  # see POISSON_FULL_DEPTH
CLOSED_SUBDIVISIONS = 1
SNAP_COS = (0.2, 0.5)  # |n . view| over which a vertex's snap fades in
SNAP_REACH_M = (0.015, 0.03)  # distance to the front over which it fades out
SNAP_MAX_TURN_COS = 0.5  # a face the snap would turn by more than 60 deg keeps its corners
DENSITY_QUANTILE = 0.02
REPAIR_ROUNDS = 3  # rounds of hole filling and removal of faces that no solid can have (poisson_solid)
# a trusted pixel this close to the mask's outline (grid pixels) pins the membrane at the
# contour; further in, the edge of untrusted pixels is a hole, not a silhouette
OUTLINE_REACH_PX = 4.0
# the one-photo solid's hands refined no further than this many times the front's median refinement
# departure from the measured depth (solid_front). bench_closed (four people, no crops, exact /
# degraded): inward max 0.36 -> 0.16 / 0.54 -> 0.41 %, Chamfer 0.4195 -> 0.4190 / 0.4788 -> 0.4778
# cm; 2x: 0.18 / 0.39 %, 0.4193 / 0.4775 cm; 4x: 0.16 / 0.48 %, 0.4190 / 0.4785 cm; a fixed 1 cm
# instead: 0.26 / 0.38 %, but 0.417 / 0.507 cm (the blurred outline's pixels kept off the hand)
HANDS_NEAR_MEASURED = True
HAND_REFINE_REACH = 3.0
HEELS = True  # the one-photo solid's leg above a shoe as deep as the shoe's back (_heel_floor)
ARM_CONTACTS = True  # the one-photo solid cuts an arm from the torso it lies against (limb_contacts.py)
# the one-photo solid's back behind an upper arm, deeper than BEHIND_LIMB_REACH times the arm's width
# (times its view stretch) plus BEHIND_LIMB_MARGIN_M, with a trunk pixel within the arm's width, takes
# that pixel's class (_behind_the_limbs). bench_closed's labels (four people, exact / degraded, no
# crops): the trunk labelled an arm 0.66 -> 0.30 / 0.49 -> 0.24 % of the area, all labels wrong 7.51
# -> 7.18 / 7.05 -> 6.84 %. 1.0 + 1 cm without the stretch: exact 0.18 %, but the upper arms labelled
# trunk 0.24 -> 0.41 % (mean of all cases); 0.8 + 1 cm with forearms and hands: 0.08 %, all wrong 7.71 %
BEHIND_LIMBS = True
BEHIND_LIMB_PARTS = ("Left_Upper_Arm", "Right_Upper_Arm")
BEHIND_LIMB_REACH = 1.0
BEHIND_LIMB_MARGIN_M = 0.02
# given the keypoints, an upper arm hanging beside the torso (arm_pose.arms_beside_the_torso) keeps its
# class behind it unless its outline nearest that trunk pixel lies more than BEHIND_LIMB_STEP_M in front
# of it (a depth step parts them: the arm lies over the torso; _over_the_trunk). Shared people
# (bench_shared_labels), the arm's own back labelled trunk: 451 / 620 / 187 vertices without the pose,
# 13 / 55 / 3 asking the deep pixel's own front (1 cm: the arm's middle lies in front of its outline by
# its roundness, specks of shirt on person_101's and 102's upper arms' backs), 4 / 11 / 3 asking the
# outline's (docs/avatar.md, fifteenth session); bench_closed, bench_hands_before_trunk the same
BEHIND_LIMB_POSE = True
BEHIND_LIMB_STEP_M = 0.04
# the one-photo solid's back behind a forearm or a hand held in front of the trunk (not toward the camera:
# its view stretch at most BEHIND_HAND_MAX_STRETCH), deeper than the upper arms' rule asks (BEHIND_LIMB_REACH
# times its width times its stretch, plus BEHIND_LIMB_MARGIN_M) and more than BEHIND_HAND_MARGIN_M behind the
# front of the nearest trunk pixel lying BEHIND_HAND_EDGE_M or more off the forearms and hands (within the
# limb's width plus that edge in the image), takes that pixel's class (_behind_the_hands). On engine.synthetic
# people with a forearm hanging in front of the torso's side (bench_hands_before_trunk, 768 x 1024, no crops,
# exact / degraded): labels wrong 7.65 -> 6.45 / 8.37 -> 7.18 %, the trunk or a thigh labelled a forearm or a
# hand 2.21 -> 0.66 / 2.64 -> 1.20 %; bench_closed's people unchanged (no back sample of 8 people at 768 x 1024
# or 384 x 512 changes). Back samples changed on those posed people (true class the trunk's or a thigh's / not)
# 5494 / 181; without the edge 6376 / 762 (a forearm's own back behind the refined front's ramp of blended
# depth), without the stretch bound 80 samples of bench_closed's people, 77 not the trunk's (forearms held
# toward the camera); without the depth test (the limb's width) 5859 / 533, and the posed people's back colour
# (bench_hands_before_trunk --colour, exact) 0.18 worse than without the rule, where with it 0.10 better
BEHIND_HANDS = True
BEHIND_HAND_PARTS = ("Left_Lower_Arm", "Right_Lower_Arm", "Left_Hand", "Right_Hand")
BEHIND_HAND_EDGE_M = 0.015
BEHIND_HAND_MARGIN_M = 0.02
BEHIND_HAND_MAX_STRETCH = 1.6
# the one-photo solid's back behind the face, with a hair pixel on its row within BEHIND_FACE_REACH_M or
# above it in its column within BEHIND_FACE_ABOVE_M, more than BEHIND_FACE_DEPTH_M behind that pixel's
# front, is the back of the head's hair, and takes Hair (_behind_the_face). bench_closed's labels (four
# people, no crops, exact / degraded): wrong 7.18 -> 6.12 / 6.84 -> 5.98 %, Hair labelled Face_Neck 2.73
# -> 1.67 / 2.44 -> 1.50 %; bench_back_colour back 5.14 -> 5.08 / 5.07 -> 5.01. 12 cm above: labels 5.71
# / 5.68 %, back 5.11 / 5.14 (random-103 degraded 6.14 -> 6.44); any hair pixel within 12 cm (the nape
# below the hair's rows too), 10 cm behind: labels 5.42 / 5.52 %, back 5.52 / 5.58
BEHIND_FACE = True
BEHIND_FACE_PARTS = ("Face_Neck", "Upper_Lip", "Lower_Lip", "Upper_Teeth", "Lower_Teeth", "Tongue")
BEHIND_FACE_REACH_M = 0.12
BEHIND_FACE_ABOVE_M = 0.08
BEHIND_FACE_DEPTH_M = 0.12
# the one-photo solid's vertices outside the mask squeezed to within this many pixels of its outline
# (into_silhouette). bench_closed (four people, no crops, exact / degraded): Chamfer 0.419 -> 0.411 /
# 0.478 -> 0.467 cm, inward max 0.16 -> 0.16 / 0.41 -> 0.38 %; 0.5 px: 0.409 / 0.464 cm, 0.16 / 0.38 %,
# degraded volume 0.969-0.994 (1 px: 0.970-0.995); 2 px: 0.413 / 0.471 cm, 0.15 / 0.39 %
SILHOUETTE_REACH_PX = 1.0
INTO_SILHOUETTE = True
# before that squeeze, the solid's parts more than SILHOUETTE_CARVE_PX beyond the outline, over background held
# between parts of the person (the mask closed by a disc of SILHOUETTE_CARVE_GAP_M), are cut away along the rays
# (off_the_background): the coarse solve spans a web across such a gap (a hand hanging 4 cm beside the hip),
# which no squeeze can part, and the squeeze laid its sheets into crevices at the hip's outline. bench_slits'
# slit cm2 of rest-pose people's solids (768 x 1024, seeds 101-103) exact 5.12 / 2.53 / 3.95 -> 5.34 / 2.58 /
# 3.98, degraded 10.19 / 3.12 / 9.58 -> 1.27 / 1.08 / 3.81; bench_closed unchanged. 1-2 px: 63-100 creases
# (20-38 before); 4 px: rest-103 degraded 6.62; the whole background (not only gaps): inward 0.11 -> 0.13 %
SILHOUETTE_CARVE_PX = 3.0
SILHOUETTE_CARVE_SMOOTH_PX = 0.8  # the cut's pixel stairs straightened within this (cv2.approxPolyDP)
SILHOUETTE_CARVE_GAP_M = 0.035


@dataclass
class Solid:
    vertices: np.ndarray  # V x 3 float32, camera frame
    faces: np.ndarray  # F x 3 int32, outward
    labels: np.ndarray | None  # V uint8
    back_points: np.ndarray  # the back samples given to Poisson (for inspection / tests)
    front_points: np.ndarray  # H x W x 3 the trusted front, refilled where untrusted (NaN off the person)
    stats: dict


def _thickness_table(prediction_scale=PREDICTION_SCALE) -> np.ndarray:
    """Per class id: (scale, minimum, maximum) of THICKNESS, the scales times `prediction_scale`
    (one number, or one per class id: back_scale)."""
    names = class_names()
    table = np.array([THICKNESS.get(name, THICKNESS["Background"]) for name in names], np.float64)
    table[:, 0] *= prediction_scale
    return table


def back_scale(noise: float | None):
    """The one-photo solid's PREDICTION_SCALE for a front refined with the cut at its prior's
    noise (solid_front's noise; None: not so refined, PREDICTION_SCALE): per class id, the
    CLEAN_PARTS' CLEAN_PREDICTION_SCALE up to CLEAN_NOISE, PREDICTION_SCALE from NOISY_NOISE on,
    linear in the noise between; the other parts PREDICTION_SCALE."""
    if noise is None:
        return PREDICTION_SCALE
    share = float(np.clip((noise - CLEAN_NOISE) / (NOISY_NOISE - CLEAN_NOISE), 0.0, 1.0))
    if share >= 1.0:
        return PREDICTION_SCALE
    out = np.full(len(class_names()), PREDICTION_SCALE)
    out[class_ids(CLEAN_PARTS)] = CLEAN_PREDICTION_SCALE + share * (PREDICTION_SCALE - CLEAN_PREDICTION_SCALE)
    return out


def _jumps(depth: np.ndarray, valid: np.ndarray, rtol: float, contacts=None):
    """Per axis (right, down): pairs of valid neighbours across a depth jump, and the near side.
    contacts (limb_contacts.arm_contacts, optional): pairs cut as well, the arm the near side."""
    out = []
    H, W = valid.shape
    for di, dj in ((0, 1), (1, 0)):
        a, b = depth[: H - di, : W - dj], depth[di:, dj:]
        both = valid[: H - di, : W - dj] & valid[di:, dj:]
        with np.errstate(invalid="ignore"):
            jump = both & (np.abs(a - b) > rtol * np.minimum(a, b))
        near_first, near_second = jump & (a < b), jump & ~(a < b)
        if contacts is not None:
            contact, first_is_arm = contacts[len(out)]
            contact = both & contact
            jump |= contact
            near_first = np.where(contact, first_is_arm, near_first)
            near_second = np.where(contact, ~first_is_arm, near_second)
        out.append((both, jump, near_first, near_second))
    return out


def _surface_laplacian(depth: np.ndarray, valid: np.ndarray, rtol: float, contacts=None):
    """The graph Laplacian (n x n over the valid pixels, row-major) of the 4-neighbour grid less
    the links across depth jumps, and the near side of every jump (H x W bool)."""
    H, W = valid.shape
    n = int(valid.sum())
    index = np.full((H, W), -1, np.int64)
    index[valid] = np.arange(n)
    near_side = np.zeros((H, W), bool)
    rows, cols = [], []
    for axis, (both, jump, near_first, near_second) in enumerate(_jumps(depth, valid, rtol, contacts)):
        di, dj = (0, 1) if axis == 0 else (1, 0)
        near_side[: H - di, : W - dj] |= near_first
        near_side[di:, dj:] |= near_second
        keep = both & ~jump
        rows.append(index[: H - di, : W - dj][keep])
        cols.append(index[di:, dj:][keep])
    i, j = np.concatenate(rows), np.concatenate(cols)
    laplacian = sp.coo_matrix((np.ones(i.size), (i, j)), shape=(n, n))
    laplacian = laplacian + laplacian.T
    degree = np.asarray(laplacian.sum(axis=1)).ravel()
    return sp.diags(degree) - laplacian, near_side


def smoothed_over_surface(values: np.ndarray, depth: np.ndarray, valid: np.ndarray, sigma_px: float,
                          rtol: float = RTOL_HARD, contacts=None) -> np.ndarray:
    """`values` (H x W, or H x W x k: k maps through one factorisation) smoothed over the valid
    pixels by ~sigma_px without crossing a depth jump (an arm's values do not leak into the torso
    behind it): the screened solve (I + sigma^2 L) x = values on the jump-cut grid. NaN outside
    `valid`."""
    laplacian, _ = _surface_laplacian(depth, valid, rtol, contacts)
    system = (sp.identity(laplacian.shape[0], format="csr") + sigma_px**2 * laplacian).tocsc()
    out = np.full(values.shape, np.nan)
    rhs = values[valid].astype(np.float64)
    out[valid] = spsolve(system, rhs).reshape(rhs.shape)
    return out


def membrane_depth(depth: np.ndarray, valid: np.ndarray, rtol: float = RTOL_HARD, contour_offset=None,
                   outline_allowed=None, contacts=None) -> np.ndarray:
    """Harmonic interpolation of the silhouette depths over the valid pixels (H x W, NaN outside).

    contour_offset (H x W, optional) is added to the depth at silhouette pixels: the outermost
    pixel centre is still on the front, short of the true occluding contour. outline_allowed
    (H x W bool, optional): outline pixels outside it are not silhouette (the rim of a hole or
    of dropped pixels inside the person), the membrane runs over them.
    """
    H, W = valid.shape
    interior = np.zeros((H, W), bool)
    interior[1:-1, 1:-1] = (
        valid[1:-1, 1:-1] & valid[:-2, 1:-1] & valid[2:, 1:-1] & valid[1:-1, :-2] & valid[1:-1, 2:]
    )
    silhouette = valid & ~interior
    if outline_allowed is not None:
        silhouette &= outline_allowed
    laplacian, near_side = _surface_laplacian(depth, valid, rtol, contacts)
    silhouette |= near_side
    fixed = silhouette[valid]
    z = depth[valid].astype(np.float64)
    if contour_offset is not None:
        z = z + np.where(fixed, contour_offset[valid], 0.0)
    # A tiny pull toward the front depth keeps regions without silhouette pixels well posed.
    system = (laplacian + sp.diags(np.where(fixed, 1e6, 1e-6))).tocsc()
    rhs = np.where(fixed, 1e6, 1e-6) * z
    solution = spsolve(system, rhs)
    out = np.full((H, W), np.nan)
    out[valid] = solution
    return out


def _contour_offset(normal, rays, footprint, lateral_px=None, max_radius=None):
    """Depth from an outline pixel's centre to the occluding contour `lateral_px` further out.

    For a round cross-section seen at angle phi between the normal and the view, the surface
    reaches the contour (phi = 90 deg) after a lateral d = r (1 - sin phi) and a depth
    r cos phi, so the depth left is d cos phi / (1 - sin phi); d is half a pixel for a pixel on
    the mask's outline, more for a trusted pixel whose outer neighbours were not trusted
    (lateral_px, H x W). Near grazing that ratio is unstable, so it is capped by what a circle
    of the part's largest radius allows, sqrt(2 r d - d^2) (max_radius, metres, H x W), and by
    CONTOUR_OFFSET_CAP x d: measured on exact maps of one person meshed on 1x, 2x and 4x coarser
    grids, the mean thickness then stays within 4 % (13.2 / 13.1 / 12.7 cm), where a cap of
    d + 3.5 footprints grew it with the grid (15.0 / 16.2 / 17.3 cm).
    """
    view = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    cos_phi = np.clip(-(normal * view).sum(-1), 0.0, 1.0)
    sin_phi = np.sqrt(1.0 - cos_phi**2)
    lateral = 0.5 if lateral_px is None else lateral_px
    d = lateral * footprint
    offset = np.minimum(d * cos_phi / np.maximum(1.0 - sin_phi, 1e-3), CONTOUR_OFFSET_CAP * d)
    if max_radius is not None:
        r = np.maximum(max_radius, d)
        offset = np.minimum(offset, np.sqrt(np.maximum(2.0 * r * d - d * d, 0.0)))
    return np.nan_to_num(offset)


def back_surface(pointmap, mask, seg, K, normal=None, *, trusted=None, max_pixels=BACK_MAX_PIXELS,
                 along_rays=False, arm_contacts=False, heels=False, behind_limbs=False, behind_face=False,
                 arm_axes=None, prediction_scale=PREDICTION_SCALE):
    """Back points and outward normals (N x 3 each) plus their labels, on a coarse grid.

    trusted (H x W bool, optional): the pixels whose depth was measured rather than refilled;
    the membrane is pinned on the outline of those only, each pin carried out to the mask's
    outline (a refilled rim has the interior's depth, short of the contour, and would thin
    the solid).
    along_rays: the normals point away from the camera along each pixel's ray (the one-photo
    solid, close_surface), else along the optical axis (what the crop hands' solves and the
    fused reference's back were measured with; see _facing).
    arm_contacts: an arm lying against the torso is cut from it as at a depth jump (the
    one-photo solid; limb_contacts.py), given labels.
    heels: the back of the leg just above a shoe reaches at least as deep as the shoe's back
    (the one-photo solid; _heel_floor), given labels.
    behind_limbs: the back behind an arm that is thicker than the arm takes the class of the
    trunk behind it (the one-photo solid; _behind_the_limbs), given labels; the returned labels
    only, the points and normals are the same.
    behind_face: the back behind the face, beside or below the hair the photo shows, takes Hair
    (the one-photo solid; _behind_the_face), given labels; the labels only, as behind_limbs.
    arm_axes: the upper arms' shoulders and elbows from the keypoints (arm_pose.upper_arm_axes):
    with behind_limbs, an arm they pose beside the torso keeps its own back's class.
    """
    valid_full = valid_pixels(pointmap, mask)
    if trusted is not None:
        trusted_full = valid_full & trusted
        # lateral distance from each pixel centre to the occluding contour (pixels)
        to_contour = ndimage.distance_transform_edt(np.pad(valid_full, 1))[1:-1, 1:-1] - 0.5
    factor = 1
    while valid_full.sum() / factor**2 > max_pixels:
        factor *= 2
    points, m, normal_l, labels, K_l = downsample_maps(factor, pointmap, mask, normal, seg, K)
    valid = valid_pixels(points, m)
    depth = np.where(valid, points[..., 2], np.nan)
    footprint = depth / np.sqrt(K_l[0, 0] * K_l[1, 1])
    rays = pixel_rays(K_l, valid.shape)
    pinned, lateral = valid, None
    if trusted is not None:
        _, t_mask, _, _, _ = downsample_maps(factor, pointmap, trusted_full)
        pinned = valid & t_mask
        lateral = np.full(valid.shape, 0.5)
        if factor > 1:
            h, w = valid.shape
            pad = ((0, h * factor - to_contour.shape[0]), (0, w * factor - to_contour.shape[1]))
            blocks = np.pad(to_contour, pad).reshape(h, factor, w, factor)
            lateral = blocks.mean(axis=(1, 3)) / factor
        else:
            lateral = to_contour
        lateral = np.maximum(lateral, 0.5)
    table = _thickness_table(prediction_scale)
    cls = np.zeros(valid.shape, np.int64) if labels is None else labels.astype(np.int64)
    scale, minimum, maximum = table[cls, 0], table[cls, 1], table[cls, 2]
    offset = None if normal_l is None else _contour_offset(normal_l, rays, footprint, lateral, 0.5 * maximum)
    contacts = None
    if arm_contacts and labels is not None and normal_l is not None:
        from engine.geometry.limb_contacts import arm_contacts as find_contacts

        contacts = find_contacts(cls, valid, normal_l, depth)
    membrane = np.full(valid.shape, np.nan)
    outline_allowed = None if lateral is None else lateral <= OUTLINE_REACH_PX
    membrane[pinned] = membrane_depth(depth, pinned, contour_offset=offset, outline_allowed=outline_allowed,
                                      contacts=contacts)[pinned]
    if (valid & ~pinned).any():
        _, (near_r, near_c) = ndimage.distance_transform_edt(~pinned, return_indices=True)
        membrane = np.where(pinned, membrane, membrane[near_r, near_c])
    relief = np.clip(membrane - depth, 0.0, None)

    # Distance to the outline in metres (pixels times the pixel footprint at that depth).
    inside_px = ndimage.distance_transform_edt(np.pad(valid, 1))[1:-1, 1:-1] - 0.5
    ramp = np.clip(inside_px * footprint / np.maximum(minimum, 1e-6), 0.0, 1.0)
    # The back is the front's bulge mirrored about the membrane and scaled, (2 scale - 1) x relief
    # behind it, with the solid at most `maximum` thick. Mirrored as measured and capped per
    # pixel, the face came out on the back of the head: a nose bump in a ring where the cap bit
    # (behind the cap the back was the front itself pushed back, its dome turned into a dent).
    # So the mirrored relief is smoothed over BACK_SMOOTH_M along the surface (blended in from
    # the outline inward, where the relief rises steeply and a smoothed one would thicken the
    # silhouette), and the cap bends the bulge smoothly instead of cutting it.
    # A limb tilted out of the image plane is crossed obliquely, deeper than its cross-section:
    # its cap grows with the membrane's slope (limb_depth), smoothed in the same solve as the
    # relief (the slope is noisy per pixel).
    limbs = valid & limb_pixels(cls)
    maps = [relief] + ([view_stretch(membrane, valid, footprint)] if limbs.any() else [])
    smoothed = smoothed_over_surface(np.stack(maps, axis=-1), depth, valid,
                                     BACK_SMOOTH_M / np.nanmedian(footprint[valid]), contacts=contacts)
    smooth = smoothed[..., 0]
    stretch = np.ones(valid.shape)
    if limbs.any():
        stretch = np.where(limbs, np.clip(smoothed[..., 1], 1.0, None), 1.0)
        maximum = np.where(limbs, maximum * stretch, maximum)
    inward = np.clip(inside_px * footprint / (2.0 * BACK_SMOOTH_M), 0.0, 1.0)
    mirrored = np.where(valid, inward * smooth + (1.0 - inward) * relief, 0.0)
    allowed = np.maximum(maximum - mirrored, 0.0)
    bulge = _smooth_min((2.0 * scale - 1.0) * mirrored, allowed, CAP_KNEE * allowed)
    thickness = np.maximum(membrane + bulge - depth, minimum * ramp)
    if heels and labels is not None:
        thickness = _heel_floor(depth, thickness, footprint, valid, cls)

    # along the ray of the (block-averaged) front point, not of the grid pixel's centre: an
    # outline block's points lie inside its centre, and its centre's ray would widen the solid
    with np.errstate(invalid="ignore", divide="ignore"):
        back = points * ((depth + thickness) / depth)[..., None]
    # Normals of the back grid by finite differences, pointing away from the camera (along_rays:
    # see the docstring and _facing).
    du = np.gradient(back, axis=1)
    dv = np.gradient(back, axis=0)
    normals = np.cross(du, dv)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    normals *= np.where(_facing(normals, points, along_rays)[..., None] < 0, -1.0, 1.0)
    ok = valid & np.isfinite(back).all(-1) & np.isfinite(normals).all(-1) & (thickness > 1e-4)
    wall, wall_normals, wall_labels = _outline_walls(points, depth, thickness, inside_px, valid & ok, cls)
    back_cls = cls
    if behind_limbs and labels is not None:
        beside = None if arm_axes is None else arms_beside_the_torso(arm_axes, depth, valid & ok, K_l)
        back_cls = _behind_the_limbs(cls, valid & ok, depth, thickness, footprint, stretch, beside=beside)
        if BEHIND_HANDS:
            back_cls = _behind_the_hands(back_cls, cls, valid & ok, depth, thickness, footprint, stretch)
    if behind_face and labels is not None:
        back_cls = _behind_the_face(back_cls, cls, valid & ok, depth, thickness, footprint)
    return (np.concatenate([back[ok], wall]), np.concatenate([normals[ok], wall_normals]),
            np.concatenate([back_cls[ok], wall_labels]).astype(np.uint8),
            {"back_factor": factor, "back_points": int(ok.sum()), "wall_points": int(len(wall))})


def _limb_width_px(cls, valid, limb) -> np.ndarray:
    """H x W: on each `limb` pixel its class's width there, the smaller of that class's pixel
    counts on its row and in its column (inf elsewhere)."""
    width_px = np.full(cls.shape, np.inf)
    for part in np.unique(cls[limb]):
        own = valid & (cls == part)
        width_px = np.where(own, np.minimum(own.sum(axis=1)[:, None], own.sum(axis=0)[None, :]), width_px)
    return width_px


def _behind_the_limbs(cls, valid, depth, thickness, footprint, stretch, limbs=BEHIND_LIMB_PARTS,
                      onto=TRUNK_CLASSES, beside=None):
    """The back samples' classes (H x W, of `cls`): an arm's pixel (`limbs`) whose back lies
    farther behind it than BEHIND_LIMB_REACH times the arm's width there, times its view stretch
    (limb_depth.view_stretch, `stretch`), plus BEHIND_LIMB_MARGIN_M, with a pixel of `onto` (the
    trunk and its clothes) within that width in the image, is not the arm's back but what lies
    behind the arm: it takes the class of the nearest pixel of `onto` when its back lies behind
    that pixel's front.

    An upper arm lying against the shoulder or the torso's side is one region with the torso (no
    depth jump, or a contact limb_contacts does not take), and its back is the torso's: the
    shirt's back behind it, up to 16 cm behind an arm 8 cm wide (shared person_101 / 102).
    Labelled by the arm's pixel, the shirt's back was the arm in the mesh's labels, its material
    slots and skin weights (docs/avatar.md, thirteenth session). The arm's width is its class's
    count of pixels on the pixel's row or column, the smaller, in metres at the pixel's
    footprint (across a hanging arm or a raised one); an arm held toward the camera is crossed
    obliquely, as deep as its stretch says. An arm held apart from the torso, or in front of it
    beyond a depth jump, has its own region and an arm's thickness, and keeps its class.
    Measured against the true outer skin nearest each back sample (engine.synthetic people
    101-104, exact maps, 768 x 1024): behind the upper arms the truth is the trunk for about half
    the samples deeper than 1.2 widths, 1-26 % below; behind the forearms and hands never (their
    deep backs are their own, foreshortened, or a hand beside the thigh), so they keep their class.

    beside (optional: class ids of `limbs`, the arms the keypoints pose beside the torso,
    arm_pose.arms_beside_the_torso): those keep their class unless a depth step parts the arm's
    outline from the trunk pixel (_over_the_trunk). An arm hanging beside the torso with
    no depth step between them has the torso's depth behind it on the solid, yet nothing of the
    trunk: the truth there is the arm's own back, 7-11 cm behind its front (shared people,
    docs/avatar.md, fourteenth and fifteenth sessions). Those synthetic people's deep backs are
    the trunk's for arms over the torso's side or with the elbow toward the camera (the sleeve
    behind the arm's near end), which arms_beside_the_torso leaves out."""
    limb_ids, onto_ids = class_ids(limbs), class_ids(onto)
    arm = valid & np.isin(cls, limb_ids)
    trunk = valid & np.isin(cls, onto_ids)
    if not arm.any() or not trunk.any():
        return cls
    width_px = _limb_width_px(cls, valid, arm)
    with np.errstate(invalid="ignore"):
        thick = arm & (thickness > BEHIND_LIMB_REACH * width_px * footprint * stretch + BEHIND_LIMB_MARGIN_M)
    if not thick.any():
        return cls
    rows, cols = np.nonzero(thick)
    # the nearest trunk pixel of each, looked for in the deep pixels' box grown by their largest width
    grow = int(np.ceil(width_px[rows, cols].max())) + 1
    box = (slice(max(rows.min() - grow, 0), rows.max() + grow + 1),
           slice(max(cols.min() - grow, 0), cols.max() + grow + 1))
    trunk_box = trunk[box]
    if not trunk_box.any():
        return cls
    distance, (near_r, near_c) = ndimage.distance_transform_edt(~trunk_box, return_indices=True)
    tr, tc = rows - box[0].start, cols - box[1].start
    nr, nc = near_r[tr, tc], near_c[tr, tc]
    with np.errstate(invalid="ignore"):
        behind = ((distance[tr, tc] <= width_px[rows, cols])
                  & (depth[rows, cols] + thickness[rows, cols] > depth[box][nr, nc]))
    if beside:
        behind &= _over_the_trunk(arm[box], depth[box], nr, nc) | ~np.isin(cls[rows, cols], list(beside))
    out = cls.copy()
    out[rows[behind], cols[behind]] = cls[box][nr[behind], nc[behind]]
    return out


def _over_the_trunk(arm, depth, trunk_rows, trunk_cols, step=BEHIND_LIMB_STEP_M) -> np.ndarray:
    """Whether an arm lies over the trunk at each of its deep pixels, given the (row, column) of
    the trunk pixel nearest each (`arm`, `depth`: H x W of one box): the arm's pixel nearest that
    trunk pixel, on the arm's outline, lies more than `step` in front of it, a depth step between
    the two. The deep pixel's own front is not asked: an arm's middle lies in front of its outline
    by its own roundness, up to its radius (shared person_102's right arm hanging against the
    torso: its middle 1-5 cm in front of the shirt beside it, its outline 0-0.4 cm; person_101's
    7.6 cm, whose true back is the arm's own 11.5 cm behind its front; docs/avatar.md)."""
    _, (outline_r, outline_c) = ndimage.distance_transform_edt(~arm, return_indices=True)
    on_outline = outline_r[trunk_rows, trunk_cols], outline_c[trunk_rows, trunk_cols]
    with np.errstate(invalid="ignore"):
        return depth[trunk_rows, trunk_cols] - depth[on_outline] > step


def _behind_the_hands(back_cls, cls, valid, depth, thickness, footprint, stretch, limbs=BEHIND_HAND_PARTS,
                      onto=TRUNK_CLASSES):
    """The back samples' classes (H x W, `back_cls` with the forearms' and hands' pixels as in `cls`):
    a pixel of `limbs` whose back lies deeper than _behind_the_limbs asks of an upper arm (its
    width, the smaller of its class's row and column counts, times its view stretch, plus
    BEHIND_LIMB_MARGIN_M), in front of the nearest pixel of `onto` (the trunk and its clothes)
    that lies BEHIND_HAND_EDGE_M or more off the limbs, that pixel within the limb's width plus
    that edge in the image, and whose back lies more than BEHIND_HAND_MARGIN_M behind that
    pixel's front, is the trunk behind the limb: it takes that pixel's class.

    A forearm hanging in front of the torso's side (shared person_102's right forearm, 11 cm in
    front of the shirt beside it) hides the trunk's side, which goes on behind it at about the
    depth of the trunk's seen edge or deeper: the solid's back behind the forearm, deeper than
    the forearm is thick and behind that edge's front, lies in the trunk's side, not on the
    forearm's back (the true outer skin nearest is the shirt's or the trousers'), and labelled by
    the forearm's pixel it was the forearm in the mesh's labels, its material slots and skin
    weights, and read the forearm's skin. The trunk's depth is read off the limb's outline: next
    to it the refined front blends the two depths (a ramp of a few pixels across the step), and a
    forearm's own back measured against that ramp lay behind it. A limb behind the trunk's pixel
    (an arm hanging behind the hip, person_102's left) is not in front of the trunk, and a
    forearm held toward the camera (its view stretch over BEHIND_HAND_MAX_STRETCH) is crossed
    obliquely, its deep back its own elbow and upper arm: both keep their class."""
    limb_ids, onto_ids = class_ids(limbs), class_ids(onto)
    limb = valid & np.isin(cls, limb_ids)
    trunk = valid & np.isin(cls, onto_ids)
    if not limb.any() or not trunk.any():
        return back_cls
    with np.errstate(invalid="ignore"):
        trunk &= ndimage.distance_transform_edt(~limb) * footprint >= BEHIND_HAND_EDGE_M
    if not trunk.any():
        return back_cls
    width_px = _limb_width_px(cls, valid, limb)
    with np.errstate(invalid="ignore"):
        deep = limb & (stretch <= BEHIND_HAND_MAX_STRETCH) & (
            thickness > BEHIND_LIMB_REACH * width_px * footprint * stretch + BEHIND_LIMB_MARGIN_M)
    if not deep.any():
        return back_cls
    distance, (near_r, near_c) = ndimage.distance_transform_edt(~trunk, return_indices=True)
    trunk_front = depth[near_r, near_c]
    with np.errstate(invalid="ignore", divide="ignore"):
        behind = (deep & (distance <= width_px + BEHIND_HAND_EDGE_M / footprint) & (depth < trunk_front)
                  & (depth + thickness > trunk_front + BEHIND_HAND_MARGIN_M))
    if not behind.any():
        return back_cls
    out = back_cls.copy()
    out[behind] = cls[near_r[behind], near_c[behind]]
    return out


def _behind_the_face(back_cls, cls, valid, depth, thickness, footprint, face=BEHIND_FACE_PARTS, hair="Hair"):
    """The back samples' classes (H x W, `back_cls` with the face's pixels' as in `cls`): a face's
    pixel (`face`) with a hair pixel on its row within BEHIND_FACE_REACH_M or above it in its
    column within BEHIND_FACE_ABOVE_M (at its footprint), whose back lies more than
    BEHIND_FACE_DEPTH_M behind that hair pixel's front, is the back of the head and takes `hair`.

    Made from the front pixel it lies behind, the back of the head behind the face took the face's
    class: on engine.synthetic people 101-104 the largest label confusion of the closed solid
    (the true hair labelled Face_Neck, 2.7 % of the area), the skin's class on the hidden hair's
    material slot and skin weights. The hair the photo shows frames the face above and at its
    sides and goes on over the back of the head; the neck's back, below the hair's rows and
    farther from it than the reach, or not as deep behind it, keeps the face's class (a person
    with no hair pixel keeps it everywhere). Measured against the true outer skin nearest each
    back sample (exact and degraded maps): the face's samples within 10 cm of a hair pixel are
    the hair's for 73-100 % of them on three people (17-93 % on random-103, degraded), those 15 cm
    or farther for 0-24 %. Any hair pixel within 12 cm (below the face's rows too) labelled the
    nape hair, and 12 cm above the face random-103's far cheek (its head turned): bench_closed's
    labels better still, but bench_back_colour's back worse (the hair's colour on skin seen from
    behind; see BEHIND_FACE_ABOVE_M)."""
    face_px = valid & np.isin(cls, class_ids(face))
    hair_id = class_ids((hair,))[0]
    hair_px = valid & (cls == hair_id)
    if not face_px.any() or not hair_px.any():
        return back_cls
    h, w = hair_px.shape
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    # the nearest hair pixel on the row (left or right) and the lowest one above in the column
    left = np.maximum.accumulate(np.where(hair_px, cols, -1), axis=1)
    right = np.minimum.accumulate(np.where(hair_px, cols, w)[:, ::-1], axis=1)[:, ::-1]
    on_row = np.where(cols - left <= right - cols, left, right)
    row_gap = np.where((left >= 0) | (right < w), np.abs(cols - on_row), np.inf)
    above = np.maximum.accumulate(np.where(hair_px, rows, -1), axis=0)
    column_gap = np.where(above >= 0, rows - above, np.inf)
    on_row, above = np.clip(on_row, 0, w - 1), np.clip(above, 0, h - 1)
    rows, cols = np.broadcast_to(rows, (h, w)), np.broadcast_to(cols, (h, w))
    back = depth + thickness
    with np.errstate(invalid="ignore"):
        beside = (row_gap * footprint <= BEHIND_FACE_REACH_M) & (back - depth[rows, on_row] > BEHIND_FACE_DEPTH_M)
        below = (column_gap * footprint <= BEHIND_FACE_ABOVE_M) & (back - depth[above, cols] > BEHIND_FACE_DEPTH_M)
    behind = face_px & (beside | below)
    if not behind.any():
        return back_cls
    out = back_cls.copy()
    out[behind] = hair_id
    return out


def _heel_floor(depth, thickness, footprint, valid, cls):
    """`thickness` with the leg above each shoe (HEEL_PARTS, within HEEL_REACH_M of the shoe in
    the image) made at least as deep as the deepest shoe back within HEEL_WINDOW_M of the shoe
    pixel nearest to it, fading out over that reach (a leg on the other side of a depth jump,
    more than the reach in front of or behind that shoe pixel, is left alone).

    A shoe pointing at the camera reaches back to its heel, which rises behind the trouser's hem;
    the leg's own mirrored bulge stops at the leg's back, centimetres in front of the heel, and
    the solid's back there ran inside the true heel, facing away from the top of the shoe (the
    shoes' inward area on bench_closed: cross-sections through bent-101, photo column 418, and
    random-103, column 498)."""
    shoe = valid & np.isin(cls, class_ids(WALL_PARTS))
    leg = valid & np.isin(cls, class_ids(HEEL_PARTS))
    if not shoe.any() or not leg.any():
        return thickness
    # only the shoes' surroundings: their bounding box grown by the reach (in the nearest pixels'
    # footprint, the smallest of the shoes') and the window
    pixel = float(np.nanmin(footprint[shoe]))
    size = max(int(round(HEEL_WINDOW_M / float(np.nanmedian(footprint[shoe])))), 1)
    grow = int(np.ceil(HEEL_REACH_M / pixel)) + size + 1
    rows, cols = np.flatnonzero(shoe.any(1)), np.flatnonzero(shoe.any(0))
    box = (slice(max(rows[0] - grow, 0), rows[-1] + grow + 1), slice(max(cols[0] - grow, 0), cols[-1] + grow + 1))
    shoe, leg, z, th, foot = shoe[box], leg[box], depth[box], thickness[box], footprint[box]
    distance, (near_r, near_c) = ndimage.distance_transform_edt(~shoe, return_indices=True)
    # the deepest shoe back within the window of each shoe pixel: the heel, not the ankle's front
    deepest = ndimage.maximum_filter(np.where(shoe, z + th, -np.inf), size=2 * size + 1)
    shoe_back = deepest[near_r, near_c]
    with np.errstate(invalid="ignore"):
        reach = distance * foot
        same_surface = np.abs(z[near_r, near_c] - z) <= HEEL_REACH_M
        weight = np.where(leg & same_surface, np.clip(1.0 - reach / HEEL_REACH_M, 0.0, 1.0), 0.0)
        lift = np.clip(shoe_back - (z + th), 0.0, None)
    out = thickness.copy()
    out[box] = th + np.nan_to_num(weight * lift)
    return out


def _outline_walls(points, depth, thickness, inside_px, usable, cls):
    """Samples on the side wall of a shoe between its front and back at the outline (WALL_*).

    A shoe's sole (and a foot's) runs along the rays: the camera sees its front edge, the back
    ends rows above it centimetres deeper, and no sample lies on the underside in between;
    Poisson bridged that gap with a curl (a pocket inside step-104's shoe, bench_closed). Here
    each outermost shoe pixel whose solid is over WALL_MIN_THICKNESS_M thick gets points along
    its ray at WALL_FRACTIONS of its thickness, with the outline's outward direction in the
    image turned perpendicular to the ray as their normal."""
    names = class_names()
    ids = [names.index(n) for n in WALL_PARTS if n in names]
    rim = usable & np.isin(cls, ids) & (inside_px < 1.0) & (thickness > WALL_MIN_THICKNESS_M)
    empty = (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, np.int64))
    if not rim.any():
        return empty
    gy, gx = np.gradient(inside_px)   # -0.5 outside the person: its gradient points inward
    out = np.stack([-gx, -gy, np.zeros_like(gx)], -1)[rim]   # camera frame: x right, y down
    ray = points[rim] / np.linalg.norm(points[rim], axis=-1, keepdims=True)
    out -= (out * ray).sum(-1, keepdims=True) * ray
    length = np.linalg.norm(out, axis=-1)
    keep = np.isfinite(length) & (length > 1e-6)
    if not keep.any():
        return empty
    out = out[keep] / length[keep, None]
    front, z, th = points[rim][keep], depth[rim][keep], thickness[rim][keep]
    walls = [front * ((z + t * th) / z)[:, None] for t in WALL_FRACTIONS]
    n = len(WALL_FRACTIONS)
    return np.concatenate(walls), np.tile(out, (n, 1)), np.tile(cls[rim][keep], n)


def _facing(normals: np.ndarray, points: np.ndarray, along_rays: bool) -> np.ndarray:
    """How far each back normal points away from the camera: along its point's ray, or along
    the optical axis.

    Where the back runs nearly along the rays (a shoe's sole seen from above, rays 15-20 deg
    below the axis) its outward normal lies across the axis and may lean toward the camera:
    "away along the axis" turned it into the shoe, and Poisson hung a lobe under step-104's sole
    with a pocket above it (bench_closed: 0.17 % of that solid facing inward). A surface given
    as a depth along each pixel's ray has its grid normal du x dv on one side of the ray
    where the depth is smooth, so the ray's side is the outward one. The crop hands' solves
    (detail_solid) keep the axis: their back's inner samples get their own normals along the
    rays (detail_solid._hand_back_normals), so the rule only reaches their outline samples,
    where the rays measured no gain on bench_closed (see docs/avatar.md)."""
    if along_rays:
        return np.einsum("...k,...k->...", normals, points)
    return normals[..., 2]


def _smooth_min(a: np.ndarray, b: np.ndarray, width: np.ndarray) -> np.ndarray:
    """min(a, b), rounded where they are within `width` of each other (quadratic blend)."""
    width = np.maximum(width, 1e-9)
    h = np.clip(0.5 + 0.5 * (b - a) / width, 0.0, 1.0)
    return b + (a - b) * h - width * h * (1.0 - h)


@dataclass
class SolidFront:
    """A view's front prepared for a solid: on a grid of at most `max_pixels` person pixels."""

    points: np.ndarray  # h x w x 3, trusted (refined) points, refilled elsewhere on `valid`
    normals: np.ndarray  # h x w x 3 unit, facing the camera
    valid: np.ndarray  # h x w bool: the person on this grid
    trusted: np.ndarray  # h x w bool
    seg: np.ndarray | None
    K: np.ndarray
    factor: int  # this grid = the grid given / factor
    stats: dict
    noise: float | None = None  # the refined prior's prior_noise (back_scale), None when not refined

    def samples(self):
        """Oriented points (N x 3 each) and labels (N, or None) for a Poisson solve."""
        valid = valid_pixels(self.points, self.valid) & np.isfinite(self.normals).all(-1)
        labels = None if self.seg is None else self.seg[valid].astype(np.uint8)
        return self.points[valid].astype(np.float64), self.normals[valid].astype(np.float64), labels


def solid_front(points, mask, seg, K, normal=None, *, refine=False, max_pixels=CLOSED_MAX_PIXELS, progress=None,
                hands_near_measured=False, jump_rtol=RTOL_HARD, hard_cut_parts=()) -> SolidFront:
    """Trust decided on the grid given (flying pixels are single pixels; BundleError when too few
    survive), then a grid of at most `max_pixels` person pixels (Poisson's cells are coarser),
    refined there with the normals over trusted pixels (refine=True), then refilled.

    jump_rtol: refine_depth's cut ("auto": at the prior's noise, which the SolidFront keeps for
    back_scale); hard_cut_parts: those parts' pixels within HARD_CUT_REACH_M of a hand keep
    RTOL_HARD (close_surface's, when the hands are solved again from their crops).
    hands_near_measured (the one-photo solid's, close_surface): a hand's refined depth stays
    within HAND_REFINE_REACH x the median departure of the refinement from the measured depth
    over the whole person. Fingers pointing at the camera are small islands of nearer depth whose
    sides the camera sees at grazing angles; integrating the normals flattened them into the hand
    behind (bent-101's left fingertips, exact maps: measured 3.263 m, refined 3.291 m), and the
    solid's front there lay 2-3 cm behind the true fingertips, between true finger sides that face
    across it (the hands' inward area, bench_closed). The median departure tells a clean front
    (exact maps: 1.1-1.2 mm, the reach 3.5 mm) from a noisy one (degraded: 5-7 mm, the reach
    1.5-2.1 cm, which the blur's mixed outline pixels need refined)."""
    from engine.geometry.trust import refill_front, trust_pixels

    person = np.asarray(mask, bool)
    trusted, _, trust_stats = trust_pixels(points, person, normal, K)
    if progress is not None:
        progress("watertight", 0.1, f"{trust_stats['trusted_fraction']:.1%} of the front trusted")
    factor = 1
    while person.sum() / factor**2 > max_pixels:
        factor *= 2
    H, W = person.shape
    if factor == 1 or np.asarray(points).dtype != np.float32:
        measured = np.where(trusted[..., None], points, np.nan).astype(np.float32)
    else:  # a coarser grid's blocks average their trusted pixels' points only: no copy without the others
        measured = points
    grid_points, grid_trusted, grid_normal, grid_seg, grid_K = downsample_maps(factor, measured, trusted, normal, seg, K)
    grid_person = _half_of_block(person, factor)  # downsample_maps' rule for a block's mask
    grid_trusted = valid_pixels(grid_points, grid_trusted)
    stats = {"trust": trust_stats, "solid_grid_factor": factor}
    noise = None
    if refine and normal is not None:
        from engine.geometry.normal_integration import jump_rtol_of_noise, prior_noise, refine_depth

        # the prior's noise (back_scale), and from it the cut of "auto" as refine_depth decides it
        noise = prior_noise(grid_points, valid_pixels(grid_points, grid_trusted, grid_normal))
        if isinstance(jump_rtol, str):
            jump_rtol = jump_rtol_of_noise(noise)
        stats["prior_noise"] = float(f"{noise:.4g}")
        if jump_rtol is not None:
            stats["refine_jump_rtol"] = round(jump_rtol, 5)
        if grid_seg is not None and jump_rtol is not None and jump_rtol < RTOL_HARD:
            hard = np.isin(grid_seg, class_ids(HEAD_HARD_CUT_PARTS))
            if hard_cut_parts:
                hard |= _near_hands(grid_points, grid_seg, grid_K, hard_cut_parts)
            if hard.any():
                jump_rtol = np.where(hard, RTOL_HARD, jump_rtol)
        refined, info = refine_depth(grid_points, grid_normal, grid_trusted, grid_K, jump_rtol=jump_rtol)
        if hands_near_measured and grid_seg is not None:
            refined, reach = _hands_near_measured(refined, grid_points, grid_seg)
            stats["hand_refine_reach_m"] = round(reach, 5)
        grid_points = np.where(np.isfinite(refined), refined, grid_points)
        stats["refine_levels"] = info.levels
        if progress is not None:
            progress("watertight", 0.15, "depth refined with the normals")
    grid_points, grid_normals = refill_front(grid_points, grid_person, grid_trusted, grid_normal, grid_K)
    return SolidFront(grid_points, grid_normals, grid_person, grid_trusted, grid_seg, grid_K, factor, stats, noise)


def _near_hands(points, seg, K, parts):
    """The pixels (h x w bool) of `parts` within HARD_CUT_REACH_M of a hand pixel in the image
    (at the hands' median pixel footprint)."""
    hands = np.isin(seg, class_ids(("Left_Hand", "Right_Hand")))
    if not hands.any():
        return hands
    z = points[..., 2][hands]
    z = z[np.isfinite(z)]
    if not len(z):
        return np.zeros_like(hands)
    reach_px = HARD_CUT_REACH_M / (float(np.median(z)) / np.sqrt(K[0, 0] * K[1, 1]))
    return np.isin(seg, class_ids(parts)) & (ndimage.distance_transform_edt(~hands) <= reach_px)


def _hands_near_measured(refined, measured, seg):
    """`refined` (h x w x 3) with each hand pixel's point moved along its ray to within
    HAND_REFINE_REACH x the median refinement departure (over all pixels with both depths) of
    its `measured` point (see solid_front), and that reach (m)."""
    hands = np.isin(seg, class_ids(("Left_Hand", "Right_Hand")))
    z_ref, z_meas = refined[..., 2].astype(np.float64), measured[..., 2].astype(np.float64)
    both = np.isfinite(z_ref) & np.isfinite(z_meas)
    if not (both & hands).any():
        return refined, 0.0
    reach = HAND_REFINE_REACH * float(np.median(np.abs(z_ref - z_meas)[both]))
    on = both & hands & (z_ref > 0)
    scale = np.ones(z_ref.shape)
    scale[on] = np.clip(z_ref[on], z_meas[on] - reach, z_meas[on] + reach) / z_ref[on]
    return (refined * scale[..., None]).astype(refined.dtype), reach


def _half_of_block(flags: np.ndarray, factor: int) -> np.ndarray:
    """Blocks of `factor` x `factor` pixels (padded at the far edges) where at least half are set."""
    if factor == 1:
        return flags.copy()
    H, W = flags.shape
    h, w = -(-H // factor), -(-W // factor)
    blocks = np.pad(flags, ((0, h * factor - H), (0, w * factor - W))).reshape(h, factor, w, factor)
    count = blocks[:, 0, :, 0].astype(np.int32)
    for row in range(factor):
        for col in range(factor):
            if row or col:
                count += blocks[:, row, :, col]  # the block's sum, a row of blocks at a time
    return count * 2 >= factor * factor


def poisson_solid(points, normals, labels=None, *, depth=POISSON_DEPTH, density_quantile=DENSITY_QUANTILE,
                  full_depth=POISSON_FULL_DEPTH):
    """Screened Poisson surface of oriented points, trimmed and closed (module docstring, 4).
    Returns (vertices float32, faces int32, labels uint8 or None, stats)."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(np.asarray(points, np.float64))
    cloud.normals = o3d.utility.Vector3dVector(np.asarray(normals, np.float64))
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
            cloud, depth=depth, scale=1.1, linear_fit=False, n_threads=POISSON_THREADS,
            full_depth=min(full_depth, depth),
        )
    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.triangles, np.int64)
    densities = np.asarray(densities)

    # Density trimming by component: a component whose mean density is in the lowest
    # `density_quantile` of the mesh is surface Poisson invented far from any sample. Parts of
    # the main component are never cut, so the solid stays closed.
    threshold = np.quantile(densities, density_quantile) if densities.size else 0.0
    component = face_components(faces, len(vertices))
    n_components = int(component.max()) + 1 if component.size else 0
    if n_components > 1:
        sizes = np.bincount(component, minlength=n_components)
        mean_density = np.bincount(component, densities[faces].mean(axis=1), n_components) / sizes
        drop_component = (mean_density < threshold) & (np.arange(n_components) != np.argmax(sizes))
        faces = faces[~drop_component[component]]
    # Zero-area faces stay: removing them would open the closed surface.
    # a fold (two faces on the same three corners) encloses nothing: both go, leaving a hole
    # whose rim runs one way round, which fill_holes closes below
    corners = np.sort(faces, axis=1)
    n = np.int64(max(len(vertices), 1))
    _, corner_group, group_size = np.unique((corners[:, 0] * n + corners[:, 1]) * n + corners[:, 2],
                                            return_inverse=True, return_counts=True)
    faces = faces[group_size[corner_group] == 1]
    cleaned = clean_mesh(vertices, faces, min_island_faces=200, min_island_fraction=0.01, area_eps=None)
    cleaned, repairs = _repaired(cleaned)
    out_labels = None
    if labels is not None:
        from engine.geometry.labels import transfer_labels

        out_labels = transfer_labels(np.asarray(points, np.float64), np.asarray(labels, np.uint8), cleaned.vertices)
    stats = {
        "poisson_depth": depth,
        "poisson_vertices": int(len(vertices)),
        "removed": cleaned.removed,
        "trimmed_components": int(n_components - 1),
        **repairs,
        "open_edges": _open_edges(cleaned.faces) + int(_misoriented_faces(cleaned.faces).sum()),
    }
    return cleaned.vertices.astype(np.float32), cleaned.faces.astype(np.int32), out_labels, stats


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (float64)."""
    face_normal = face_cross(vertices, faces)
    out = np.zeros_like(vertices)
    for axis in range(3):
        out[:, axis] = np.bincount(faces.ravel(), np.repeat(face_normal[:, axis], 3), len(vertices))
    return out / np.maximum(row_lengths(out), 1e-20)[:, None]


def snap_to_front(vertices: np.ndarray, faces: np.ndarray, front: "SolidFront") -> tuple[np.ndarray, dict]:
    """Vertices on the seen front moved along their rays onto the front's depth.

    The coarse Poisson solve (CLOSED_POISSON_DEPTH) places the front within about a cell; the
    front itself is known per pixel of the solid's grid. A vertex snaps when it projects
    between four valid front pixels with no depth jump among them, faces the camera, and lies
    within SNAP_REACH_M of the front there (further off it is a surface hidden behind the front,
    say the torso behind an arm). The move fades out toward grazing normals and toward that reach,
    so no crease forms where snapping stops.
    """
    v = np.asarray(vertices, np.float64)
    K = front.K
    h, w = front.valid.shape
    z = v[:, 2]
    ok = z > 1e-6
    zs = np.where(ok, z, 1.0)
    u = K[0, 0] * v[:, 0] / zs + K[0, 1] * v[:, 1] / zs + K[0, 2] - 0.5  # pixel-centre coordinates
    t = K[1, 1] * v[:, 1] / zs + K[1, 2] - 0.5
    c0 = np.floor(u).astype(np.int64)
    r0 = np.floor(t).astype(np.int64)
    ok &= (c0 >= 0) & (c0 < w - 1) & (r0 >= 0) & (r0 < h - 1)
    c0, r0 = np.where(ok, c0, 0), np.where(ok, r0, 0)
    depth = np.where(front.valid, front.points[..., 2], np.nan)
    corners = np.stack([depth[r0, c0], depth[r0, c0 + 1], depth[r0 + 1, c0], depth[r0 + 1, c0 + 1]], axis=1)
    with np.errstate(invalid="ignore"):
        ok &= np.isfinite(corners).all(1)
        ok &= corners.max(1) - corners.min(1) <= RTOL_HARD * corners.min(1)
    fu, ft = u - c0, t - r0
    weights = np.stack([(1 - fu) * (1 - ft), fu * (1 - ft), (1 - fu) * ft, fu * ft], axis=1)
    front_z = (np.nan_to_num(corners) * weights).sum(1)
    normal = _vertex_normals(v, np.asarray(faces, np.int64))
    facing = -row_dots(normal, v) / np.maximum(row_lengths(v), 1e-20)
    gap = np.abs(front_z - z)
    weight = (np.clip((facing - SNAP_COS[0]) / (SNAP_COS[1] - SNAP_COS[0]), 0.0, 1.0)
              * np.clip((SNAP_REACH_M[1] - gap) / (SNAP_REACH_M[1] - SNAP_REACH_M[0]), 0.0, 1.0))
    weight = np.where(ok, weight, 0.0)
    # a vertex near the silhouette can snap past its neighbour and fold a face over; such faces'
    # corners keep their place (a few passes, as a kept corner can fold the next face)
    f = np.asarray(faces, np.int64)
    before = _face_normals(v, f)
    # a face none of whose corners moves (factor exactly 1) keeps `before` as its normal to the bit:
    # its test is this one (a degenerate face's zero normal fails it), only the others are made again
    unmoved_test = row_dots(before, before) < SNAP_MAX_TURN_COS
    for _ in range(4):
        factor = 1.0 + weight * (front_z - z) / zs
        out = v * factor[:, None]
        moves = factor != 1.0
        moving = np.flatnonzero(moves[f[:, 0]] | moves[f[:, 1]] | moves[f[:, 2]])
        folded = unmoved_test.copy()
        folded[moving] = row_dots(before[moving], _face_normals(out, f[moving])) < SNAP_MAX_TURN_COS
        if not folded.any():
            break
        weight[f[folded].ravel()] = 0.0
    else:
        out = v * (1.0 + weight * (front_z - z) / zs)[:, None]
    return out, {"snapped_vertices": int((weight > 0).sum()), "snapped_fully": int((weight >= 1).sum())}


def into_silhouette(vertices: np.ndarray, mask: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, dict]:
    """Vertices that project outside the person's mask moved across their ray, at their depth,
    to within SILHOUETTE_REACH_PX beyond the mask's outline (the nearest mask pixel's edge).

    Nothing of the person lies outside its silhouette's rays, but the coarse solve rounds a thin
    part into a blob about its cells' size: step-104's left hand seen edge-on, 9-10 pixels wide in
    the photo, came out 26 pixels wide across photo row 552 (exact and degraded maps), its sides
    outside the mask facing away from the true fingers (bench_closed's inward area). The distance
    beyond the edge is squeezed, not clipped: d -> R (1 - exp(-d / R)) keeps the vertices' order
    across the outline (a clip laid a flange's front and back onto one line along the ray, its
    faces turned either way) and leaves a vertex just outside where it is."""
    v = np.asarray(vertices, np.float64)
    person = np.asarray(mask, bool)
    H, W = person.shape
    z = v[:, 2]
    zs = np.where(z > 1e-6, z, 1.0)
    u = K[0, 0] * v[:, 0] / zs + K[0, 1] * v[:, 1] / zs + K[0, 2]  # continuous pixel coordinates
    t = K[1, 1] * v[:, 1] / zs + K[1, 2]
    col, row = np.floor(u).astype(np.int64), np.floor(t).astype(np.int64)
    seen = (z > 1e-6) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
    move = np.zeros(len(v), bool)
    move[seen] = ~person[row[seen], col[seen]]
    if not move.any() or not person.any():
        return v, {"silhouette_moved": 0}
    # the nearest mask pixel of each pixel outside it, only over the box of the vertices to move
    r0, r1 = max(int(row[move].min()) - 1, 0), min(int(row[move].max()) + 2, H)
    c0, c1 = max(int(col[move].min()) - 1, 0), min(int(col[move].max()) + 2, W)
    _, (near_r, near_c) = ndimage.distance_transform_edt(~person[r0:r1, c0:c1], return_indices=True)
    at_r, at_c = row[move] - r0, col[move] - c0
    cu, ct = near_c[at_r, at_c] + c0 + 0.5, near_r[at_r, at_c] + r0 + 0.5  # that pixel's centre
    du, dt = u[move] - cu, t[move] - ct
    length = np.maximum(np.hypot(du, dt), 1e-9)
    beyond = np.maximum(length - 0.5, 0.0)
    squeezed = SILHOUETTE_REACH_PX * (1.0 - np.exp(-beyond / SILHOUETTE_REACH_PX))
    scale = (length - (beyond - squeezed)) / length
    nu, nt = cu + du * scale, ct + dt * scale
    out = v.copy()
    zm = zs[move]
    out[move, 1] = (nt - K[1, 2]) * zm / K[1, 1]
    out[move, 0] = (nu - K[0, 2] - K[0, 1] * out[move, 1] / zm) * zm / K[0, 0]
    return out, {"silhouette_moved": int(move.sum())}


def off_the_background(vertices: np.ndarray, faces: np.ndarray, mask: np.ndarray, K: np.ndarray,
                       beyond_px: float = SILHOUETTE_CARVE_PX, gap_m: float = SILHOUETTE_CARVE_GAP_M,
                       ) -> tuple[np.ndarray, np.ndarray, dict]:
    """The closed solid (vertices, faces) less the rays through the background pixels farther than
    `beyond_px` from the person's mask and within `gap_m` of it on two sides (a gap between parts),
    where that background is at least 3 pixels wide: (vertices, faces, stats); the solid as given
    when manifold3d cannot take it or nothing is cut.

    The coarse solve (CLOSED_POISSON_DEPTH, cells of about 1.7 cm) rounds a background gap a few
    cells wide into a web: a rest-pose person's hand hanging 17 pixels (4 cm) beside the hip came
    out joined to it by a sheet 1.7 cm thick. into_silhouette moves vertices across their rays,
    which cannot part a web: it pulled the web's vertices onto either outline, its stretched faces
    meeting the piled-up sheets along the rays at acute corners (bench_slits' crevices at the hip's
    outline). Cut along the rays the web goes; what stays beyond the outline is within `beyond_px`,
    for into_silhouette to squeeze."""
    import cv2
    import manifold3d

    from engine.geometry.near_boolean import mesh_solid

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    nothing = {"background_cut_cm3": 0.0}
    person = np.asarray(mask, bool)
    if not person.any() or not len(f) or (v[:, 2] <= 1e-6).any():
        return v, f, nothing
    # only background held between parts of the person (inside the mask closed by a disc of gap_m):
    # a cut wall along the rays elsewhere on the outline is at best as good as the squeeze (the top
    # of arms_forward-102's fists: the wall faces up, the true hand's side beside it; bench_closed's
    # inward area 0.11 -> 0.13 % with the whole background cut)
    from_person = ndimage.distance_transform_edt(~person)
    gap_px = gap_m * K[0, 0] / float(np.median(v[:, 2]))
    margin = int(np.ceil(gap_px)) + 1  # beyond the grid's frame is background, which holds nothing
    near_person = np.pad(from_person <= gap_px, margin, constant_values=False)
    held = (ndimage.distance_transform_edt(near_person) > gap_px)[margin:-margin, margin:-margin]
    # a run narrower than 3 pixels left by the cut would leave a slit between the walls either side
    background = ndimage.binary_opening((from_person > beyond_px) & held, structure=np.ones((3, 3), bool))
    if not background.any():
        return v, f, nothing
    # the background goes on past the grid's frame as it meets it (a person cut by the frame too), as far
    # as the solid reaches: a piece left beyond the padding would be cut off as an island
    z = v[:, 2]
    u = (K[0, 0] * v[:, 0] + K[0, 1] * v[:, 1]) / z + K[0, 2]
    t = K[1, 1] * v[:, 1] / z + K[1, 2]
    H, W = person.shape
    reach = max(-u.min(), -t.min(), u.max() - W, t.max() - H, 0.0)
    pad = int(np.ceil(min(reach, 2 * max(H, W)))) + 2
    region = np.pad(background, pad, mode="edge").astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    # through the region's outer pixels' centres (continuous coordinates: + 0.5), its pixel stairs
    # straightened within SILHOUETTE_CARVE_SMOOTH_PX
    polygons = [cv2.approxPolyDP(c, SILHOUETTE_CARVE_SMOOTH_PX, True).reshape(-1, 2) for c in contours]
    polygons = [p.astype(np.float64) - pad + 0.5 for p in polygons if len(p) >= 3]
    section = manifold3d.CrossSection(polygons, manifold3d.FillRule.EvenOdd)
    near, far = float(v[:, 2].min()) - 0.05, float(v[:, 2].max()) + 0.05
    fx, skew, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]

    def along_rays(points):  # (column, row, 0..1) -> the camera frame, from `near` to `far`
        p = np.asarray(points, np.float64)
        z = near + p[:, 2] * (far - near)
        y = (p[:, 1] - cy) * z / fy
        return np.stack([(p[:, 0] - cx - skew * y / z) * z / fx, y, z], axis=1)

    rays = manifold3d.Manifold.extrude(section, 1.0).warp_batch(along_rays)
    body = mesh_solid(v, f)
    if body.status().name != "NoError":
        return v, f, nothing
    less = body - rays
    cut = less.to_mesh()
    out_faces = np.asarray(cut.tri_verts, np.int64).reshape(-1, 3)
    if not len(out_faces):
        return v, f, nothing
    return (np.asarray(cut.vert_properties, np.float64)[:, :3], out_faces,
            {"background_cut_cm3": round(float(body.volume() - less.volume()) * 1e6, 2)})


def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    n = face_cross(vertices, faces)
    return n / np.maximum(row_lengths(n), 1e-20)[:, None]


def _misoriented_faces(faces: np.ndarray) -> np.ndarray:
    """Faces (F bool) running an edge in the same direction as another face does."""
    f = np.asarray(faces, np.int64)
    if not len(f):
        return np.zeros(0, bool)
    return edge_census(f).repeated.reshape(3, -1).any(0)


def _repaired(cleaned):
    """`cleaned` (clean_mesh's MeshArrays of a marching-cubes solid) with its holes filled and the
    faces no solid can have removed, over at most REPAIR_ROUNDS rounds: (MeshArrays, counts).

    The folds and non-manifold edges marching cubes leaves, once removed, leave small holes;
    a fan can itself meet another fold, so it cleans and fills again while any edge stays open.
    A rim whose faces disagree in their winding gets a fan wound as most of them run: the
    faces that then run an edge the same way as their neighbour (no solid can have them) go
    too, and the hole they leave is filled again. Foreshortened hands' own solves
    (detail_solid) had 2-11 such edges, which manifold3d refuses: the hand fell back to cells
    twice as large or to the body's mitten (bench_detail's bent and arms-forward right hands).
    A rim that passes twice through one vertex (two holes touching at a corner) is walked as
    one loop with that vertex twice, and its fan is not a manifold: removing the fan's
    misoriented faces gave back the same rim round after round (bent-101's degraded right
    hand kept 10 open edges and fell back to cells twice as large). The faces at such a
    vertex go first, so the hole's rim no longer touches itself there."""
    holes_filled = misoriented = pinched = 0
    for _ in range(REPAIR_ROUNDS):
        at_pinch = _pinched_rim_faces(cleaned.faces)
        if at_pinch.any():
            pinched += int(at_pinch.sum())
            cleaned = _recleaned(cleaned, cleaned.faces[~at_pinch])
        cleaned.vertices, cleaned.faces, filled = fill_holes(cleaned.vertices, cleaned.faces)
        holes_filled += filled
        wrong = _misoriented_faces(cleaned.faces)
        if not _open_edges(cleaned.faces) and not wrong.any():
            break
        misoriented += int(wrong.sum())
        cleaned = _recleaned(cleaned, cleaned.faces[~wrong])
    return cleaned, {"holes_filled": int(holes_filled), "misoriented_faces_removed": int(misoriented),
                     "pinched_rim_faces_removed": int(pinched)}


def _recleaned(cleaned, faces: np.ndarray):
    """clean_mesh of `cleaned`'s vertices with `faces`, its removal counts added to `cleaned`'s."""
    removed = cleaned.removed
    out = clean_mesh(cleaned.vertices, faces, min_island_faces=200, min_island_fraction=0.01, area_eps=None)
    out.removed = {k: removed.get(k, 0) + v for k, v in out.removed.items()}
    return out


def _pinched_rim_faces(faces: np.ndarray) -> np.ndarray:
    """Faces (F bool) at a vertex that more than two open edges meet (a hole's rim touching
    itself, or two holes sharing a corner)."""
    f = np.asarray(faces, np.int64)
    if not len(f):
        return np.zeros(0, bool)
    census = edge_census(f)
    rim = census.counts[census.edge] == 1
    on_rim = np.bincount(np.concatenate([census.a[rim], census.b[rim]]), minlength=int(f.max()) + 1)
    return (on_rim[f] > 2).any(1)


def _open_edges(faces: np.ndarray) -> int:
    """Edges used by other than two faces."""
    return int((edge_census(faces).counts != 2).sum())


def close_surface(
    points: np.ndarray,
    mask: np.ndarray,
    seg: np.ndarray | None,
    K: np.ndarray,
    normal: np.ndarray | None = None,
    *,
    depth: int = CLOSED_POISSON_DEPTH,
    density_quantile: float = DENSITY_QUANTILE,
    refine: bool = False,
    max_pixels: int = CLOSED_MAX_PIXELS,
    progress=None,
    on_samples=None,
    arm_axes=None,
) -> Solid:
    """Watertight solid from the front's maps on the processing grid (points H x W x 3, mask,
    seg, K, predicted normals). Only trusted front pixels (engine/geometry/trust.py) are used as
    measured; the others are refilled from them. Raises BundleError when too few are trusted.
    The solid is made on a grid of at most `max_pixels` person pixels (solid_front).
    on_samples(points, normals, labels): called with the oriented samples the Poisson solve is
    given, before it runs, when there are labels (the hands' second solve, engine.geometry
    .detail_solid.HandSolve.body_samples, takes its context from them so that it can run in the
    geometry worker beside this solve); with it, the hands are not held near their measured
    depth (solid_front's hands_near_measured).
    arm_axes: the upper arms' shoulders and elbows from the photo's keypoints
    (arm_pose.upper_arm_axes), for the labels behind the arms (back_surface)."""
    # the hands held near their measured depth only where they stay the body's: with on_samples
    # (engine.geometry.detail_solid.HandSolve) the hands are solved again from their crops, and with
    # the hold those came out further from the truth (bench_detail --people 3, closed with crops,
    # mesh->truth exact / degraded 2.18 / 2.21 mm without it, 2.30 / 2.34 mm with it)
    front = solid_front(points, mask, seg, K, normal, refine=refine, max_pixels=max_pixels, progress=progress,
                        hands_near_measured=HANDS_NEAR_MEASURED and on_samples is None, jump_rtol=SOLID_JUMP_RTOL,
                        hard_cut_parts=() if on_samples is None else CONTEXT_HARD_CUT_PARTS)
    back, back_normals, back_labels, stats = back_surface(
        front.points, front.valid, front.seg, front.K, front.normals, trusted=front.trusted, along_rays=True,
        arm_contacts=ARM_CONTACTS, heels=HEELS, behind_limbs=BEHIND_LIMBS, behind_face=BEHIND_FACE,
        arm_axes=arm_axes if BEHIND_LIMB_POSE else None, prediction_scale=back_scale(front.noise),
    )
    stats.update(front.stats)
    if progress is not None:
        progress("watertight", 0.2, f"back surface from {stats['back_points']} samples")
    samples, sample_normals, sample_labels = front.samples()
    labels = None if sample_labels is None else np.concatenate([sample_labels, back_labels])
    all_points = np.concatenate([samples, back])
    all_normals = np.concatenate([sample_normals, back_normals])
    if on_samples is not None and labels is not None:
        on_samples(all_points, all_normals, labels)
    vertices, faces, _, solid_stats = poisson_solid(
        all_points, all_normals, None,
        depth=depth, density_quantile=density_quantile, full_depth=CLOSED_POISSON_FULL_DEPTH,
    )
    if progress is not None:
        progress("watertight", 0.85, "screened Poisson done")
    stats.update(solid_stats)
    for _ in range(CLOSED_SUBDIVISIONS):
        vertices, faces, _ = subdivide(vertices, faces)
    vertices, snap_stats = snap_to_front(vertices, faces, front)
    if INTO_SILHOUETTE:
        if SILHOUETTE_CARVE_PX is not None:
            vertices, faces, carve_stats = off_the_background(vertices, faces, mask, K, SILHOUETTE_CARVE_PX)
            snap_stats.update(carve_stats)
        vertices, silhouette_stats = into_silhouette(vertices, mask, K)
        snap_stats.update(silhouette_stats)
    vertices, faces = vertices.astype(np.float32), faces.astype(np.int32)
    stats.update(snap_stats, subdivisions=CLOSED_SUBDIVISIONS)
    vertex_labels = None
    if labels is not None:
        from engine.geometry.labels import transfer_labels

        vertex_labels = transfer_labels(all_points, labels, vertices)
    # the front depth on the grid given, for telling seen vertices (nearest coarse pixel)
    H, W = np.asarray(mask).shape
    f = front.factor
    front_points = np.repeat(np.repeat(front.points, f, axis=0), f, axis=1)[:H, :W]
    front_points = np.where(np.asarray(mask, bool)[..., None], front_points, np.nan)
    return Solid(
        vertices=vertices,
        faces=faces,
        labels=vertex_labels,
        back_points=back.astype(np.float32),
        front_points=front_points.astype(np.float32),
        stats=stats,
    )
