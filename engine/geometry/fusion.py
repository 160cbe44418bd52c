"""Several photos of one person (front and back, sides) fused into one closed solid.

Each view's front is prepared as for a single-photo solid (watertight.solid_front: trusted
pixels, refined, refilled). The views are then registered into the first view's camera frame:

1. from the joints: the joint centres each view's keypoints lift to (engine.rig.lift, done by
   the caller: geometry does not import the rig) are matched by name and a rigid transform is
   fitted (Kabsch, confidence-weighted). A back view's left and right are recognised: the fit is
   also tried with the view's left and right names swapped (a pose model that names sides by
   the image, not the body) and the labelling with the smaller residual wins;
2. a view seen from the opposite side (a back photo) has its rotation and its place sideways
   refined on the outlines, which both photos see along about the same curve
   round the body (refine_on_outline); its depth along the reference's view, which the outlines
   cannot give (each photo's outline band lies on its own side of the body), is then taken from
   the cross-sections the two photos share: near its outline each photo sees a limb or the
   trunk turn away, and the centre of that curve (a circle through the pixel's point with the
   pixel's normal, reaching the outline) is the same point seen from either side
   (refine_depth_on_contours). Between the two, its turn about the vertical and its place
   across the reference's view are settled on the silhouettes, which a depth map's smooth error
   does not move: each photo's contour points must land on the other photo's outline
   (refine_on_silhouettes);
3. a view that is not opposite (a side photo, which overlaps the front over half its surface)
   is refined by the ICP below on the fronts registered so far (side_icp; measured on an
   engine.synthetic front + side pair: its points 1.43 -> 0.17 cm from the true pose);
   optionally (icp=True) every view is, opposite ones included: point-to-plane ICP of the view's front onto
   the fronts registered so far, starting from the joint fit, with a shrinking correspondence
   distance; only pairs whose normals agree are matched (a limb's front and back do not).

The union of the registered fronts (each oriented toward its own camera, so outward), with the
contour points of the circles of step 2 where a view from behind meets the reference (each
front stops short of the contour, and Poisson bulged across that gap), goes to the same
screened Poisson solve as a single view (watertight.poisson_solid); no back is invented where
another view saw it. Without any view from behind (front and sides only) the
reference's back is made as for one photo (watertight.back_surface) and joins the union.
Poisson's surface then bulges past the outlines where the fronts leave a gap (hands and shoes
seen edge-on, the seams); its vertices outside a view's silhouette are moved onto that outline
(carve_to_outlines). A hand's or an arm's vertices that no view saw (between two photos' outlines
the cut left a prism) are then pulled onto capsules round the reference view's bones
(round_parts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.errors import BundleError
from engine.geometry.watertight import POISSON_DEPTH, poisson_solid, solid_front

MIN_JOINTS = 4  # common confident joints needed for the first fit
# trimmed joint fit: pairs further than TRIM_FACTOR x the median error (between the floor and
# the ceiling) from the fit are dropped, refitted, TRIM_ROUNDS times at most
TRIM_ROUNDS, TRIM_FLOOR_M, TRIM_CEILING_M, TRIM_FACTOR = 8, 0.03, 0.08, 2.5
# the joints a view from any side lifts to about the same place: the trunk and the big limb
# joints (fingers, toes and the face are lifted onto whatever hides them from behind)
CORE_JOINTS = ("neck", "shoulder_L", "shoulder_R", "elbow_L", "elbow_R", "wrist_L", "wrist_R",
               "hip_L", "hip_R", "knee_L", "knee_R", "ankle_L", "ankle_R")
# the views must agree on one rigid placement: at least this share of the joints both see
# within TRIM_CEILING_M of the fit, and a residual at most MAX_JOINT_RESIDUAL_M (measured on
# engine.synthetic front/back pairs: 12-13 of 13 joints, 0.9-3.4 cm rms, degraded maps
# included; another person or another pose: 1-7 of 13)
MIN_AGREEING_SHARE, MAX_JOINT_RESIDUAL_M = 0.7, 0.05
# outline refinement of an opposite view (its camera axis at least OPPOSITE_DEG from the
# reference's): the trusted points within OUTLINE_BAND_PX photo pixels of each view's outline
OPPOSITE_DEG, OUTLINE_BAND_PX, OUTLINE_ROUNDS = 150.0, 4.0, 30
ICP_DISTANCES_M = (0.05, 0.02, 0.01)
ICP_ITERATIONS = 15  # per distance
ICP_NORMAL_COS = 0.5
VOXEL_M = 0.008  # clouds thinned to this spacing for ICP
# contour centres (refine_depth_on_contours): trusted pixels within CONTOUR_BAND_PX of the
# person's outline whose normal's cos to the line of sight lies in CONTOUR_COS, on circles of
# radius CONTOUR_RADIUS_M; pairs matched across the reference's view within CONTOUR_PAIR_M.
# Measured from the true pose on six engine.synthetic front/back pairs at 768 x 1024 (level
# points, bench_fusion.py's degraded maps): a band of 12 px and cos 0.15-0.5 (until 2026-12-03)
# put the back 0.05-0.42 cm too far on degraded maps (mean +0.27; exact maps -0.11..+0.06):
# a window on the predicted normal's cos selects by the normal's own noise, and a pixel whose
# noise pulls its cos under the upper bound has its radius, so its centre's depth, overgrown;
# the wide window over the outermost 6 px gives -0.03..+0.11 (mean +0.02) degraded, -0.16..+0.05
# (mean -0.09) exact. A band of 12 px with the wide window: degraded mean -0.08, exact -0.14
# (the cross-sections are not circles far from the outline)
CONTOUR_BAND_PX, CONTOUR_COS, CONTOUR_RADIUS_M, CONTOUR_PAIR_M = 6.0, (0.05, 0.9), (0.01, 0.25), 0.01
MIN_CONTOUR_PAIRS = 200
# a depth the centres put further than this from the joints' is not believed (the joints of views
# that agree are at most MAX_JOINT_RESIDUAL_M apart; measured shifts 0.1-2.4 cm)
CONTOUR_MAX_SHIFT_M = 0.05
# refine_on_silhouettes: the turn about the reference's vertical axis and the shifts across its
# view searched within these bounds (a coarse grid, then a fine one round its best), each
# contour point's distance to the other photo's outline counted up to SILHOUETTE_CLIP_PX (a
# point off a limb the other photo sees differently, or a rim pixel, weighs no more than that),
# SILHOUETTE_POINTS of each view's contour points used
SILHOUETTE_TURN_DEG, SILHOUETTE_SHIFT_M, SILHOUETTE_CLIP_PX, SILHOUETTE_POINTS = 3.0, 0.04, 3.0, 3000
# a move that brings the contour points less than this much nearer the outlines (mean photo
# pixels) is not made: the grid's best is then the pixels' noise (engine.synthetic person 2 at
# 288 x 384, exact maps: 0.467 -> 0.467 px for a 0.25 mm move, which then left the avatar with its
# crops open; the cause was the solid's micrometre edges folding in float32, now welded:
# engine.geometry.cleanup.weld_short_edges)
SILHOUETTE_MIN_GAIN_PX = 0.01
# each view's samples that face its camera less than this (cos of the angle to the line of
# sight) stay out of the union: on the sides, where the views overlap, the grazing depths of
# both views disagree and Poisson bulged between them (measured on engine.synthetic front/back
# pairs at 768 x 1024: chamfer 0.317 -> 0.309, 0.447 -> 0.419, 0.355 -> 0.356 cm; degraded
# 0.878 -> 0.860, 1.585 -> 1.581)
GRAZING_COS = 0.1
# carve_to_outlines: the outline's signed distance smoothed over this many photo pixels (its zero
# level a smooth curve, not the mask's pixel staircase), reached in this many Newton steps
OUTLINE_SMOOTH_PX, CARVE_STEPS = 1.0, 4
# seam samples: only circles whose contour point lands within this many photo pixels of the
# view's outline (the circle's premise). Near a concave bend of the outline (the neck meeting the
# head) a pixel's nearest outline is not the way its normal turns: its circle's contour point
# lands inside the silhouette, on the wrong cross-section, and Poisson dented the surface there.
# Since the 6 px band with the wide cos window (8dce8d8) engine.synthetic person 2 (open hands,
# front + back, 384 x 512) had a pit at the neck's sides, seen in Cycles: the solid 0.66 cm inside
# the true body there, 0.34 cm with these circles left out (~4 % of them; at 768 x 1024 no pit
# either way, 0.33 cm). 2 px left half the pit (0.51 cm); 1.5 px left random-103's exact solid
# open (Poisson's repair, given that sample set, kept 12 open edges); 1 px closes all six of
# bench_fusion.py's people
SEAM_REACH_PX = 1.0
# round_parts: a hand's unseen vertices are kept within these shares of its palm's length (wrist to
# the middle finger's base) from its palm's and fingers' bones (widened to the LIMB_SEEN_PERCENTILE
# of the seen hand vertices' distances where a bone has HAND_MIN_SEEN of them); an arm's within
# LIMB_SLACK x that percentile of its seen vertices' distances to its bone (LIMB_MIN_SEEN needed);
# a vertex within SEEN_M of a view's surface at its pixel was seen and stays; HAND_RELAX_ROUNDS of
# umbrella smoothing on the moved ones and their ring. Measured with bench_fusion.py (768 x 1024,
# three people, hands' Chamfer): exact 5.33 -> 3.57 mm (bent-101 7.00 -> 4.01), degraded 6.32 ->
# 4.94 mm; whole-body Chamfer 0.175 -> 0.162 / 0.287 -> 0.277 cm, volume 1.019 -> 1.007 / 1.035 ->
# 1.027. The palm's 0.2 (0.15, 0.25 tried: bent-101 4.27, 4.28 mm against 3.99); without the
# widening, random-103's degraded hands got worse (3.68 -> 4.46 mm; with it 3.70)
PALM_RADIUS, FINGER_RADIUS, SEEN_M, HAND_RELAX_ROUNDS = 0.2, 0.1, 0.005, 4
LIMB_MIN_SEEN, LIMB_SEEN_PERCENTILE, LIMB_SLACK, HAND_MIN_SEEN = 50, 90.0, 1.15, 10



@dataclass
class View:
    """One photo's maps and its lifted joints (camera frame of that photo)."""

    points: np.ndarray  # H x W x 3
    mask: np.ndarray
    K: np.ndarray
    normal: np.ndarray | None = None
    seg: np.ndarray | None = None
    joints: dict = field(default_factory=dict)  # name -> (xyz, confidence)
    name: str = ""  # how messages name the view (its photo or bundle)


@dataclass
class FusedSolid:
    vertices: np.ndarray  # V x 3 float32, the first view's camera frame
    faces: np.ndarray  # F x 3 int32
    labels: np.ndarray | None
    transforms: list  # per view: 4 x 4, its camera frame -> the first view's
    stats: dict


def swap_sides(name: str) -> str:
    """A joint's name on the other side of the body (shoulder_L <-> shoulder_R)."""
    if name.endswith("_L"):
        return name[:-2] + "_R"
    if name.endswith("_R"):
        return name[:-2] + "_L"
    return name


def kabsch(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Rigid 4 x 4 transform taking `source` points (N x 3) closest to `target` (least squares)."""
    w = np.ones(len(source)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    cs, ct = w @ source, w @ target
    H = ((source - cs) * w[:, None]).T @ (target - ct)
    U, _, Vt = np.linalg.svd(H)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, ct - R @ cs
    return T


def _apply(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ T[:3, :3].T + T[:3, 3]


def joint_fit(reference: dict, view: dict, *, min_confidence: float = 0.5):
    """Rigid transform view -> reference from the joints both name; tries the view's sides
    swapped too. Returns (T, info) or raises BundleError when too few joints are shared."""
    best = None
    for swapped in (False, True):
        names = [n for n in view if n in CORE_JOINTS and (swap_sides(n) if swapped else n) in reference]
        pairs = [
            (np.asarray(view[n][0], float), np.asarray(reference[swap_sides(n) if swapped else n][0], float),
             min(view[n][1], reference[swap_sides(n) if swapped else n][1]))
            for n in names
        ]
        pairs = [p for p in pairs if p[2] >= min_confidence and np.isfinite(p[0]).all() and np.isfinite(p[1]).all()]
        if len(pairs) < MIN_JOINTS:
            continue
        source, target, weight = (np.array(x) for x in zip(*pairs))
        # trimmed fit: a joint the other view cannot see (a hand behind the back) is lifted
        # confidently to the wrong depth; pairs far off the current fit are dropped
        keep = np.ones(len(source), bool)
        for _ in range(TRIM_ROUNDS):
            T = kabsch(source[keep], target[keep], weight[keep])
            error = np.linalg.norm(_apply(T, source) - target, axis=1)
            new_keep = error <= np.clip(TRIM_FACTOR * np.median(error[keep]), TRIM_FLOOR_M, TRIM_CEILING_M)
            if new_keep.sum() < MIN_JOINTS or (new_keep == keep).all():
                break
            keep = new_keep
        residual = float(np.sqrt(np.average(error[keep] ** 2, weights=weight[keep])))
        inliers = int((error <= TRIM_CEILING_M).sum())
        # the labelling that puts more joints within the ceiling of one rigid fit wins; then the
        # smaller residual
        if best is None or (inliers, -residual) > (best[1]["joints_within_ceiling"], -best[1]["joint_residual_m"]):
            best = (T, {"joint_residual_m": round(residual, 4), "joints": int(keep.sum()), "joints_dropped": int((~keep).sum()),
                        "joints_within_ceiling": inliers, "sides_swapped": swapped})
    if best is None:
        raise BundleError(
            f"cannot register the views: fewer than {MIN_JOINTS} confident joints are seen in both photos "
            f"(each view needs keypoints of the same body parts)"
        )
    return best


def _thin(points, normals, voxel):
    """One point (and normal) per voxel: the first one met."""
    key = np.floor(points / voxel).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    return points[first], normals[first]


def outline_points(front) -> np.ndarray:
    """A SolidFront's trusted points within OUTLINE_BAND_PX photo pixels of its person's outline."""
    from scipy import ndimage

    band = max(1, int(round(OUTLINE_BAND_PX / front.factor)))
    edge = front.valid & ~ndimage.binary_erosion(front.valid, iterations=band)
    edge &= front.trusted & np.isfinite(front.points).all(-1)
    return front.points[edge].astype(np.float64)


def refine_on_outline(T, view_outline, ref_outline, view_centre):
    """The rotation of a view seen from the opposite side, and its place sideways, refined on
    the outlines; (T, info).

    Seen from opposite sides, the two photos' outlines run along about the same curve round the
    body (where the surface turns away from both cameras): their points are matched (nearest
    neighbour, pairs past 2.5 x the median distance dropped, rigid fit, repeated). That settles
    the rotation far better than the joints do (measured on engine.synthetic front/back pairs:
    1-1.6 deg of pitch and yaw off from the joints, 0.1-0.5 deg after), and the view's place
    sideways (the reference camera's x: the body's long outlines run up and down; measured at
    384 x 512: 0.01-0.06 cm off, the joints 0.1-1.9 cm), but not its height (an up-and-down
    outline lets the pairs slide along it, and the few across it, the top of the head, the
    shoulders, the soles, are not the same curve seen from above one side and the other: 0.5-0.7
    cm low, the joints 0.0-0.6 cm) nor its depth: each photo's band of outline pixels lies on
    its own side of the body, and the matching pulls the two bands together (5-6 cm too thin).
    So the view's centre keeps the joint fit's height and depth (refine_depth_on_contours then
    settles the depth)."""
    from scipy.spatial import cKDTree

    if len(view_outline) < 50 or len(ref_outline) < 50:
        return T, {"outline_pairs": 0}
    tree = cKDTree(ref_outline)
    refined = T.copy()
    pairs = 0
    for _ in range(OUTLINE_ROUNDS):
        moved = _apply(refined, view_outline)
        gap, index = tree.query(moved)
        keep = gap <= max(TRIM_FACTOR * np.median(gap), 0.005)
        pairs = int(keep.sum())
        if pairs < 50:
            return T, {"outline_pairs": pairs}
        step = kabsch(moved[keep], ref_outline[index[keep]])
        refined = step @ refined
        if np.allclose(step, np.eye(4), atol=1e-7):
            break
    out = refined.copy()
    centre = _apply(T, view_centre[None])[0]
    centre[0] = _apply(refined, view_centre[None])[0][0]
    out[:3, 3] = centre - refined[:3, :3] @ view_centre
    turn = np.degrees(np.arccos(np.clip((np.trace(out[:3, :3].T @ T[:3, :3]) - 1) / 2, -1, 1)))
    return out, {"outline_pairs": pairs, "outline_turn_deg": round(float(turn), 3)}


@dataclass
class ContourCircles:
    """A view's near-outline pixels seen as circles round the body's cross-sections (its camera
    frame): each circle's centre, where it meets the occluding contour and the outward normal
    there (across the line of sight), and the pixel's body-part label (or None)."""

    centres: np.ndarray  # N x 3
    contour: np.ndarray  # N x 3
    outward: np.ndarray  # N x 3 unit
    labels: np.ndarray | None


def contour_circles(points, mask, normal, K, trusted, seg=None) -> ContourCircles:
    """The circles of a view's trusted pixels within CONTOUR_BAND_PX of the person's outline.

    Such a pixel lies a lateral d (its distance to the outline, in metres at its depth) short of
    the occluding contour, where the surface turns away from the camera; with its normal at
    angle phi to the line of sight, a circle through its point with that normal reaches the
    contour after d = r (1 - sin phi): r = d / (1 - sin phi), centre = point - r normal, and the
    contour point is the centre moved r along the normal's part across the line of sight.
    Pixels almost facing the camera or grazing it (normal outside CONTOUR_COS) and implausible
    radii are left out."""
    from scipy import ndimage

    from engine.geometry.normal_integration import pixel_rays

    person = np.asarray(mask, bool)
    rays = pixel_rays(K, person.shape)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    to_outline = ndimage.distance_transform_edt(np.pad(person, 1))[1:-1, 1:-1] - 0.5
    band = person & np.asarray(trusted, bool) & (to_outline <= CONTOUR_BAND_PX)
    p = np.asarray(points, np.float64)[band]
    n = np.asarray(normal, np.float64)[band]
    sight = rays[band]
    cos = -np.einsum("ij,ij->i", n, sight)
    lateral = to_outline[band] * p[:, 2] / np.sqrt(K[0, 0] * K[1, 1])
    with np.errstate(invalid="ignore"):
        radius = lateral / np.maximum(1.0 - np.sqrt(np.clip(1.0 - cos**2, 0.0, 1.0)), 1e-6)
        keep = (np.isfinite(p).all(1) & (cos > CONTOUR_COS[0]) & (cos < CONTOUR_COS[1])
                & (radius > CONTOUR_RADIUS_M[0]) & (radius < CONTOUR_RADIUS_M[1]))
    p, n, sight, radius = p[keep], n[keep], sight[keep], radius[keep]
    centres = p - radius[:, None] * n
    outward = n + cos[keep, None] * sight  # the normal less its part along the line of sight
    outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-12)
    labels = None if seg is None else np.asarray(seg)[band][keep].astype(np.uint8)
    return ContourCircles(centres, centres + radius[:, None] * outward, outward, labels)


def level_points(circles: ContourCircles, rotation=None) -> np.ndarray:
    """Each circle's point level with its centre along the reference camera's view, on its
    outward side (in the circles' own frame; `rotation` turns that frame into the reference's):
    the centre moved its radius across the reference's line of sight, so the point keeps the
    centre's depth but lies at the outline, where the other photo's circles of the same
    cross-section lie too.

    Paired at their centres (as until 2026-12-03), a view's circles met the other photo's
    centres of other cross-sections: on a cross-section that is not a circle (the trunk's, wider
    than deep) the centres of pixels further from the outline drift inward and away from the
    camera that sees them, each photo's the other way, and on degraded maps, whose blurred and
    noisy normals spread the centres, those mismatched pairs pushed the back view away: measured
    from the true pose on six engine.synthetic front/back pairs at 768 x 1024 (bench_fusion.py's
    degraded maps; circles of the 12 px band and cos window 0.15-0.5 used then), the depth the
    centres gave was 0.23-1.33 cm too far (mean 0.75), these points give 0.05-0.42 (mean 0.27);
    exact maps 0.08 and 0.07 cm mean off either way; at
    384 x 512 (the blur and the flying rim reach twice as far into a limb) they measured alike,
    0.24 and 0.26 cm mean on four people. The contour
    points themselves would not do: each is where its own camera's rays graze the
    cross-section, a little toward that camera (0.3-0.5 cm thin on exact maps)."""
    R = np.eye(3) if rotation is None else np.asarray(rotation, np.float64)
    across = circles.outward @ R.T
    across[:, 2] = 0.0
    length = np.linalg.norm(across, axis=1, keepdims=True)
    radius = np.linalg.norm(circles.contour - circles.centres, axis=1, keepdims=True)
    keep = length[:, 0] > 0.5  # an outward normal mostly across the reference's view
    across = across[keep] / length[keep]
    return circles.centres[keep] + radius[keep] * (across @ R)


def refine_depth_on_contours(T, view_centres, ref_centres):
    """The depth along the reference camera's view of a view seen from the opposite side,
    from the cross-section centres both photos see (contour_circles; fuse_views passes each
    circle's level_points, which keep their centre's depth); (T, info).

    Each of the view's points, placed by T, is paired with the reference's point nearest to
    it across the reference's line of sight (within CONTOUR_PAIR_M); the median of their depth
    differences moves the view along the reference's z. Too few pairs, or a move further than
    CONTOUR_MAX_SHIFT_M: T is kept."""
    from scipy.spatial import cKDTree

    if len(view_centres) < MIN_CONTOUR_PAIRS or len(ref_centres) < MIN_CONTOUR_PAIRS:
        return T, {"contour_pairs": 0}
    moved = _apply(T, view_centres)
    ok = moved[:, 2] > 0
    moved = moved[ok]
    across = ref_centres[:, :2] / ref_centres[:, 2:3]
    gap, index = cKDTree(across).query(moved[:, :2] / moved[:, 2:3])
    paired = gap * moved[:, 2] <= CONTOUR_PAIR_M
    pairs = int(paired.sum())
    if pairs < MIN_CONTOUR_PAIRS:
        return T, {"contour_pairs": pairs}
    shift = float(np.median(ref_centres[index[paired], 2] - moved[paired, 2]))
    if abs(shift) > CONTOUR_MAX_SHIFT_M:
        return T, {"contour_pairs": pairs, "contour_depth_refused_m": round(shift, 5)}
    out = T.copy()
    out[2, 3] += shift
    return out, {"contour_pairs": pairs, "contour_depth_shift_m": round(shift, 5)}


def _turn_about_vertical(theta: float, pivot, shift_x: float, shift_y: float = 0.0) -> np.ndarray:
    """4 x 4: a turn by theta about the vertical (y) axis through pivot, then a shift across the view."""
    c, s = np.cos(theta), np.sin(theta)
    S = np.eye(4)
    S[:3, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
    S[:3, 3] = pivot - S[:3, :3] @ pivot + [shift_x, shift_y, 0.0]
    return S


def refine_on_silhouettes(T, view_contour, ref_contour, view, reference, view_centre):
    """The turn about the reference camera's vertical axis (through the view's centre) and the
    place across its view (sideways and its height) of a view seen from the opposite side, from
    the two silhouettes; (T, info). view_contour / ref_contour: each photo's occluding-contour
    points in its own camera frame (its contour_circles that reach its outline).

    refine_on_outline settles that turn on the depths of the two photos' outline bands, and a
    predicted depth map's smooth error (centimetres over a body's width, one way on one side and
    the other way on the other) turns the view with it: on bench_fusion.py's degraded
    arms_forward-102 it left the back 1.15 deg off even when started from the true pose (0.91
    of it from the smooth error alone), and the back's colour, projected through that pose, went
    onto the wrong part of the body. Where a point lands in the other photo hardly depends on its
    depth (a centimetre moves it about a pixel at the body's sides, outward on one side and inward
    on the other, not sideways), but a turn moves it sideways in proportion to how far it lies in
    front of or behind the turn's axis: each photo's contour points must land on the other's
    outline. The mean distance (clipped at SILHOUETTE_CLIP_PX) of both photos' points to the
    other's outline is minimised over the turn, the sideways shift and the height (which
    refine_on_outline leaves at the joints': 0.6 cm low on that back, and its colour with it; the
    silhouettes' tops and bottoms, the head's, the shoulders', a level arm's, settle it); the depth
    is left to refine_depth_on_contours. Measured with bench_fusion.py (768 x 1024, three people,
    the back's points' mean offset across the back camera's view from where the true pose puts
    them): degraded 4.9, 6.4, 1.8 -> 1.6, 2.7, 0.9 mm, exact 2.6, 0.3, 1.0 -> 0.2, 0.3, 0.2 mm;
    the fused avatar's back colour error with it (degraded back/front 1.52, 2.62, 1.01 -> 1.05,
    1.64, 0.83)."""
    from scipy import ndimage

    view_contour, ref_contour = np.asarray(view_contour, np.float64), np.asarray(ref_contour, np.float64)
    if len(view_contour) < MIN_CONTOUR_PAIRS or len(ref_contour) < MIN_CONTOUR_PAIRS:
        return T, {"silhouette_points": 0}
    rng = np.random.default_rng(0)

    def thin(p):
        return p if len(p) <= SILHOUETTE_POINTS else p[rng.choice(len(p), SILHOUETTE_POINTS, replace=False)]

    view_contour, ref_contour = thin(view_contour), thin(ref_contour)
    pivot = _apply(T, np.asarray(view_centre, np.float64)[None])[0]
    cost = _SilhouetteCost(_apply(T, view_contour), ref_contour, pivot, np.linalg.inv(T),
                           (outline_distance(reference.mask), np.asarray(reference.K, np.float64)),
                           (outline_distance(view.mask), np.asarray(view.K, np.float64)))
    start = float(cost(np.zeros(1), np.zeros(1), np.zeros(1))[0])
    best = (start, 0.0, 0.0, 0.0)
    turn, shift = np.radians(SILHOUETTE_TURN_DEG), SILHOUETTE_SHIFT_M

    def keep_best(best, thetas, shifts_x, shifts_y):
        # the first of the cheapest candidates, and only if it beats the best so far (the order
        # and the strict comparison of a loop over the candidates)
        values = cost(thetas, shifts_x, shifts_y)
        i = int(np.argmin(values))
        return (float(values[i]), float(thetas[i]), float(shifts_x[i]), float(shifts_y[i])) if values[i] < best[0] else best

    # a coarse grid, then a fine one round its best: the turn with the sideways shift (which it
    # trades with), then the height alone
    for turn_step, shift_step in ((np.radians(0.25), 0.005), (np.radians(0.025), 0.0005)):
        thetas, shifts_x = np.meshgrid(best[1] + np.arange(-turn, turn + 1e-12, turn_step),
                                       best[2] + np.arange(-shift, shift + 1e-12, shift_step), indexing="ij")
        best = keep_best(best, thetas.ravel(), shifts_x.ravel(), np.full(thetas.size, best[3]))
        shifts_y = best[3] + np.arange(-shift, shift + 1e-12, shift_step / 2)
        best = keep_best(best, np.full(len(shifts_y), best[1]), np.full(len(shifts_y), best[2]), shifts_y)
        turn, shift = turn_step, shift_step
    info = {"silhouette_points": len(view_contour) + len(ref_contour),
            "silhouette_off_px": [round(start / 2, 3), round(float(best[0]) / 2, 3)]}
    if (start - best[0]) / 2 < SILHOUETTE_MIN_GAIN_PX:
        return T, info
    out = _turn_about_vertical(best[1], pivot, best[2], best[3]) @ T
    return out, {**info,
                 "silhouette_turn_deg": round(float(np.degrees(best[1])), 3),
                 "silhouette_shift_m": [round(float(best[2]), 5), round(float(best[3]), 5)]}


class _SilhouetteCost:
    """refine_on_silhouettes' cost of many candidate placements at once: per candidate (a turn
    theta about the vertical through the pivot, then a shift across the reference's view), the
    mean distance, clipped at SILHOUETTE_CLIP_PX, of the view's contour points (placed in the
    reference frame) to the reference's outline plus that of the reference's contour points
    (moved back into the view's frame) to the view's outline. The outlines are signed distance
    fields (outline_distance), so each point's distance is a bilinear lookup; a turn about the
    vertical mixes only x and z, so each point's coordinates under a candidate are a few products
    of per-point terms with the candidate's cos, sin and shifts: no 4 x 4 matrix per candidate."""

    CHUNK = 1 << 20  # candidates x points looked up at once (a few tens of MB of float64)

    def __init__(self, placed, ref_contour, pivot, to_view, reference, view):
        self.reference, self.view = reference, view
        self.pivot = pivot
        self.d = placed - pivot  # the view's contour points about the pivot, reference frame
        # the reference's contour points p go back to the view's frame through to_view . S^-1:
        # S^-1 p = R(theta)^T (p - pivot - shift) + pivot. With e = p - pivot and R^T e =
        # (c ex - s ez, ey, s ex + c ez), to_view's rotation A gives c (A0 ex + A2 ez) + s (A2 ex
        # - A0 ez) + A1 ey, plus to_view's own shift and A pivot; the shift enters as
        # -(c A0 + s A2) sx - A1 sy
        A, b = to_view[:3, :3], to_view[:3, 3]
        e = ref_contour - pivot
        self.with_cos = np.outer(e[:, 0], A[:, 0]) + np.outer(e[:, 2], A[:, 2])  # N x 3
        self.with_sin = np.outer(e[:, 0], A[:, 2]) - np.outer(e[:, 2], A[:, 0])
        self.fixed = np.outer(e[:, 1], A[:, 1]) + (A @ pivot + b)
        self.A = A

    def __call__(self, thetas, shifts_x, shifts_y) -> np.ndarray:
        """The costs of len(thetas) candidates (turn, sideways shift, height shift)."""
        thetas, shifts_x, shifts_y = (np.asarray(a, np.float64) for a in (thetas, shifts_x, shifts_y))
        out = np.empty(len(thetas))
        step = max(1, self.CHUNK // max(len(self.d), len(self.fixed)))
        for at in range(0, len(thetas), step):
            chosen = slice(at, at + step)
            out[chosen] = self._costs(thetas[chosen, None], shifts_x[chosen, None], shifts_y[chosen, None])
        return out

    def _costs(self, theta, shift_x, shift_y):
        c, s = np.cos(theta), np.sin(theta)
        d, p = self.d, self.pivot
        placed = (c * d[:, 0] + s * d[:, 2] + p[0] + shift_x, d[:, 1] + p[1] + shift_y, -s * d[:, 0] + c * d[:, 2] + p[2])
        A = self.A
        back = tuple(c * self.with_cos[:, k] + s * self.with_sin[:, k] + self.fixed[:, k]
                     - (c * A[k, 0] + s * A[k, 2]) * shift_x - A[k, 1] * shift_y for k in range(3))
        return _mean_off_outline(placed, *self.reference) + _mean_off_outline(back, *self.view)


def _mean_off_outline(xyz, field, K) -> np.ndarray:
    """Per row of the C x N coordinate arrays (x, y, z): the mean |outline distance| of its points'
    projections (bilinear in `field`), each clipped at SILHOUETTE_CLIP_PX (as is a point behind
    the camera)."""
    from scipy import ndimage

    x, y, z = xyz
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * x / z + K[0, 2]
        v = K[1, 1] * y / z + K[1, 2]
    ok = (z > 0) & np.isfinite(u) & np.isfinite(v)
    distance = np.full(ok.shape, SILHOUETTE_CLIP_PX)
    distance[ok] = np.abs(ndimage.map_coordinates(field, [v[ok] - 0.5, u[ok] - 0.5], order=1, mode="nearest"))
    return np.minimum(distance, SILHOUETTE_CLIP_PX).mean(axis=1)


def _opposite(T) -> bool:
    """The view's camera looks at least OPPOSITE_DEG away from the reference's."""
    return float(T[2, 2]) <= np.cos(np.radians(OPPOSITE_DEG))


def refine_registration(T, view_points, view_normals, ref_points, ref_normals):
    """Point-to-plane ICP of the view's front onto the reference fronts, from T; (T, info).

    Only pairs whose normals agree (within ~60 deg) are matched: the front and the back of a
    limb lie a few centimetres apart with opposite normals and must not be pulled together;
    the views overlap where both saw the surface (the sides)."""
    from scipy.spatial import cKDTree

    source, source_normals = _thin(np.asarray(view_points, np.float64), np.asarray(view_normals, np.float64), VOXEL_M)
    target, target_normals = _thin(np.asarray(ref_points, np.float64), np.asarray(ref_normals, np.float64), VOXEL_M)
    tree = cKDTree(target)
    pairs = 0
    rmse = float("nan")
    for distance in ICP_DISTANCES_M:
        for _ in range(ICP_ITERATIONS):
            moved = _apply(T, source)
            moved_normals = source_normals @ T[:3, :3].T
            gap, index = tree.query(moved, distance_upper_bound=distance)
            ok = np.isfinite(gap)
            index = np.where(ok, index, 0)
            ok &= (moved_normals * target_normals[index]).sum(1) > ICP_NORMAL_COS
            pairs = int(ok.sum())
            if pairs < 50:
                break
            p, q, n = moved[ok], target[index[ok]], target_normals[index[ok]]
            # linearised point-to-plane step: small rotation w and shift t minimising
            # sum ((p + w x p + t - q) . n)^2
            A = np.hstack([np.cross(p, n), n])
            b = -((p - q) * n).sum(1)
            x, *_ = np.linalg.lstsq(A, b, rcond=None)
            w, t = x[:3], x[3:]
            angle = np.linalg.norm(w)
            R = np.eye(3)
            if angle > 1e-12:
                k = w / angle
                Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
                R = np.eye(3) + np.sin(angle) * Kx + (1 - np.cos(angle)) * Kx @ Kx
            step = np.eye(4)
            step[:3, :3], step[:3, 3] = R, t
            T = step @ T
            rmse = float(np.sqrt(np.mean(b**2)))
            if angle < 1e-5 and np.linalg.norm(t) < 1e-5:
                break
    return T, {"icp_pairs": pairs, "icp_rmse_m": round(rmse, 5)}


def _facing(samples):
    """A front's samples (points, normals, labels) without those that graze its camera."""
    points, normals, labels = samples
    cos = -np.einsum("ij,ij->i", points, normals) / np.maximum(np.linalg.norm(points, axis=1), 1e-12)
    keep = cos > GRAZING_COS
    return points[keep], normals[keep], None if labels is None else labels[keep]


def _view_circles(view: View) -> ContourCircles:
    """contour_circles of a view's full-resolution maps, over the pixels the trust step keeps
    (a flying rim pixel's point and normal say nothing of the cross-section)."""
    from engine.geometry.trust import trust_pixels

    trusted, _, _ = trust_pixels(view.points, view.mask, view.normal, view.K)
    return contour_circles(view.points, view.mask, view.normal, view.K, trusted, view.seg)


def outline_distance(person: np.ndarray, smooth_px: float = OUTLINE_SMOOTH_PX) -> np.ndarray:
    """Signed distance (photo pixels, positive outside) from each pixel centre to the person's
    outline, half a pixel beyond the outermost person pixel's centre, smoothed over smooth_px:
    its zero level is a smooth curve rather than the mask's staircase of pixel edges."""
    from scipy import ndimage

    person = np.asarray(person, bool)
    signed = np.where(person, 0.5 - ndimage.distance_transform_edt(person), ndimage.distance_transform_edt(~person) - 0.5)
    return ndimage.gaussian_filter(signed, smooth_px) if smooth_px > 0 else signed


def carve_to_outlines(vertices, views, transforms):
    """The solid's vertices that project outside a view's person mask (inside its photo) moved,
    at their depth in that view, onto the outline there (the zero level of outline_distance,
    reached by Newton steps along its gradient); (vertices float32, moved count).

    Every point of the person lies inside every view's silhouette, but Poisson does not know
    that: where the fronts leave a gap (a hand or a shoe seen edge-on, the seam between a view
    and one from behind) its surface bulges out past both outlines. Measured on engine.synthetic
    front/back pairs at 768 x 1024 (bench_fusion.py; the solid's vertices outside a silhouette
    lay a median 2.5-2.8 cm off the true body, over hands, shoes and forearms): exact maps
    chamfer 0.248 -> 0.205, 0.225 -> 0.184 cm, volume 1.06 -> 1.03; degraded 0.552 -> 0.487,
    0.418 -> 0.354 cm, volume 1.17 -> 1.12, 1.13 -> 1.08. Carved onto the mask's own pixel
    edges, a hand seen from the front showed their staircase in a Cycles close-up; the smoothed
    outline does not. Only the vertices move: the solid stays closed. A vertex past a photo's
    border is left alone (the person may go on there)."""
    from scipy import ndimage

    moved_points = np.asarray(vertices, np.float64).copy()
    moved = np.zeros(len(moved_points), bool)
    for view, T in zip(views, transforms):
        person = np.asarray(view.mask, bool)
        H, W = person.shape
        distance = outline_distance(person)
        slope_v, slope_u = np.gradient(distance)
        to_view = np.linalg.inv(T)
        q = _apply(to_view, moved_points)
        K = np.asarray(view.K, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[0, 0] * q[:, 0] / q[:, 2] + K[0, 2]
            v = K[1, 1] * q[:, 1] / q[:, 2] + K[1, 2]
        in_photo = (q[:, 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)

        def sample(field, uu, vv):  # bilinear, pixel centres at (col + 0.5, row + 0.5)
            return ndimage.map_coordinates(field, [vv - 0.5, uu - 0.5], order=1, mode="nearest")

        outside = np.flatnonzero(in_photo)
        outside = outside[sample(distance, u[outside], v[outside]) > 0]
        if not len(outside):
            continue
        uu, vv = u[outside], v[outside]
        for _ in range(CARVE_STEPS):
            d = sample(distance, uu, vv)
            gu, gv = sample(slope_u, uu, vv), sample(slope_v, uu, vv)
            step = np.where(d > 0, d / np.maximum(gu**2 + gv**2, 1e-6), 0.0)
            uu, vv = uu - step * gu, vv - step * gv
        depth = q[outside, 2]
        carved = np.stack([(uu - K[0, 2]) / K[0, 0] * depth, (vv - K[1, 2]) / K[1, 1] * depth, depth], axis=1)
        moved_points[outside] = _apply(T, carved)
        moved[outside] = True
    return moved_points.astype(np.float32), int(moved.sum())


HAND_FINGERS = ("thumb", "index", "middle", "ring", "pinky")


def hand_skeleton(joints: dict, side: str, *, min_confidence: float = 0.5):
    """A hand's bones from a view's lifted joints: (segment starts S x 3, ends S x 3, palm flags
    S bool, palm length m), or None when the wrist or fewer than three finger bases are
    confident. The palm: the wrist to each finger's base and across the bases; the fingers:
    base to tip (Sapiens' four keypoints per finger)."""

    def at(name):
        value = joints.get(f"{name}_{side}")
        if value is None or value[1] < min_confidence or not np.isfinite(value[0]).all():
            return None
        return np.asarray(value[0], np.float64)

    wrist = at("wrist")
    bases = [at(f"{finger}1") for finger in HAND_FINGERS]
    if wrist is None or sum(b is not None for b in bases) < 3:
        return None
    starts, ends, palm = [], [], []
    for b in bases:
        if b is not None:
            starts.append(wrist), ends.append(b), palm.append(True)
    known = [b for b in bases[1:] if b is not None]  # the palm's knuckle line (the thumb's base is apart)
    for a, b in zip(known[:-1], known[1:]):
        starts.append(a), ends.append(b), palm.append(True)
    for finger in HAND_FINGERS:
        chain = [at(f"{finger}{k}") for k in range(1, 5)]
        for a, b in zip(chain[:-1], chain[1:]):
            if a is not None and b is not None:
                starts.append(a), ends.append(b), palm.append(False)
    middle = next((b for b in bases[2:] + bases[1:2] if b is not None), None)
    palm_length = float(np.linalg.norm(middle - wrist)) if middle is not None else 0.0
    return np.array(starts), np.array(ends), np.array(palm), palm_length


def _to_segments(points, starts, ends):
    """Per point: the distance to the nearest segment and the nearest point on it."""
    ab = ends - starts
    t = np.einsum("nsk,sk->ns", points[:, None, :] - starts[None], ab) / np.maximum((ab**2).sum(1), 1e-12)
    closest = starts[None] + np.clip(t, 0.0, 1.0)[..., None] * ab[None]
    distance = np.linalg.norm(points[:, None, :] - closest, axis=2)
    nearest = distance.argmin(1)
    rows = np.arange(len(points))
    return distance[rows, nearest], closest[rows, nearest], nearest


def seen_by_a_view(vertices, views, transforms, tolerance_m: float = SEEN_M) -> np.ndarray:
    """N bool: the point lies within tolerance_m (along that view's ray) of a surface a view saw
    at its pixel (the view's pointmap, on its person)."""
    seen = np.zeros(len(vertices), bool)
    for view, T in zip(views, transforms):
        q = _apply(np.linalg.inv(T), np.asarray(vertices, np.float64))
        K = np.asarray(view.K, np.float64)
        H, W = view.mask.shape
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[0, 0] * q[:, 0] / q[:, 2] + K[0, 2]
            v = K[1, 1] * q[:, 1] / q[:, 2] + K[1, 2]
        inside = (q[:, 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        col, row = np.clip(np.nan_to_num(u).astype(np.int64), 0, W - 1), np.clip(np.nan_to_num(v).astype(np.int64), 0, H - 1)
        depth = np.asarray(view.points, np.float64)[row, col, 2]
        with np.errstate(invalid="ignore"):
            seen |= inside & np.asarray(view.mask, bool)[row, col] & (np.abs(q[:, 2] - depth) <= tolerance_m)
    return seen


def limb_bone(joints: dict, first: str, second: str, *, min_confidence: float = 0.5):
    """(start, end) of a bone between two of a view's lifted joints, or None when either is not
    confident."""
    ends = [joints.get(name) for name in (first, second)]
    if any(e is None or e[1] < min_confidence or not np.isfinite(e[0]).all() for e in ends):
        return None
    return np.asarray(ends[0][0], np.float64)[None], np.asarray(ends[1][0], np.float64)[None]


def round_parts(vertices, labels, views, transforms, faces=None, *, limbs: bool = True):
    """The solid's hand (and forearm, upper arm) vertices that no view saw pulled in onto a
    rounded shape round the reference view's bones: each bone a capsule; (vertices float32,
    moved count per part group).

    Two photos see a hand's outline but not its cross-section: seen edge-on or end-on, Poisson
    filled what lies between the outlines and carve_to_outlines cut it to them, a prism (a slab
    with square edges, the gap between the thumb and the fingers filled, a hand pointing at the
    camera drawn out along its view). A hand's capsules are its palm's and fingers' bones
    (hand_skeleton), PALM_RADIUS and FINGER_RADIUS x its palm's length; an arm's, its bone
    (shoulder-elbow, elbow-wrist) with the radius its seen vertices have (LIMB_SEEN_PERCENTILE of
    their distances to the bone, x LIMB_SLACK): a forearm seen end-on was drawn out along the
    view the same way. A vertex within SEEN_M of a view's surface at its pixel stays where the
    photos put it; the moved ones and the ring round them are relaxed (_relax)."""
    from engine.geometry.labels import class_names

    out = np.asarray(vertices, np.float64).copy()
    counts = {"hands": 0, "arms": 0}
    if labels is None:
        return out.astype(np.float32), counts
    labels = np.asarray(labels)
    names = class_names()
    seen = seen_by_a_view(out, views, transforms)
    moved = np.zeros(len(out), bool)
    joints = views[0].joints
    for side, long_side in (("L", "Left"), ("R", "Right")):
        parts = []
        skeleton = hand_skeleton(joints, side)
        if skeleton is not None and skeleton[3] > 0:
            starts, ends, palm, palm_length = skeleton
            radii = np.where(palm, PALM_RADIUS, FINGER_RADIUS) * palm_length
            # where the photos saw the hand farther out than that (the joints lifted off its
            # middle, a thicker hand), the capsules widen to what they saw
            seen_there = np.flatnonzero((labels == names.index(f"{long_side}_Hand")) & seen)
            if len(seen_there):
                distance, _, nearest = _to_segments(out[seen_there], starts, ends)
                for segment in np.unique(nearest):
                    at = distance[nearest == segment]
                    if len(at) >= HAND_MIN_SEEN:
                        radii[segment] = max(radii[segment], np.percentile(at, LIMB_SEEN_PERCENTILE))
            parts.append(("hands", f"{long_side}_Hand", starts, ends, radii))
        for part, first, second in ((f"{long_side}_Lower_Arm", "elbow", "wrist"), (f"{long_side}_Upper_Arm", "shoulder", "elbow")):
            bone = limb_bone(joints, f"{first}_{side}", f"{second}_{side}") if limbs else None
            if bone is None:
                continue
            of_part = labels == names.index(part)
            seen_there = np.flatnonzero(of_part & seen)
            if len(seen_there) < LIMB_MIN_SEEN:
                continue
            distance, _, _ = _to_segments(out[seen_there], *bone)
            parts.append(("arms", part, *bone, np.array([LIMB_SLACK * np.percentile(distance, LIMB_SEEN_PERCENTILE)])))
        for group, part, starts, ends, radii in parts:
            chosen = np.flatnonzero((labels == names.index(part)) & ~seen)
            if not len(chosen):
                continue
            distance, closest, nearest = _to_segments(out[chosen], starts, ends)
            radius = radii[nearest]
            far = distance > radius
            pick = chosen[far]
            direction = (out[pick] - closest[far]) / distance[far, None]
            out[pick] = closest[far] + radius[far, None] * direction
            moved[pick] = True
            counts[group] += int(far.sum())
    if moved.any() and faces is not None:
        out = _relax(out, faces, moved)
    return out.astype(np.float32), counts


def _relax(vertices, faces, chosen, rounds: int | None = None):
    """The chosen vertices moved halfway to their neighbours' mean, `rounds` times (umbrella
    smoothing): the pulled-in vertices next to ones that stayed folded their faces."""
    from scipy import sparse

    f = np.asarray(faces, np.int64)
    n = len(vertices)
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
    adjacency = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    adjacency.data[:] = 1.0
    degree = np.maximum(np.asarray(adjacency.sum(1)).ravel(), 1.0)
    chosen = chosen | (adjacency @ chosen.astype(float) > 0)  # and the ring round them
    out = vertices.copy()
    for _ in range(HAND_RELAX_ROUNDS if rounds is None else rounds):
        mean = adjacency @ out / degree[:, None]
        out[chosen] += 0.5 * (mean[chosen] - out[chosen])
    return out


def reaching_outline(circles: ContourCircles, view: View) -> np.ndarray:
    """Which circles' contour points project within SEAM_REACH_PX of the view's outline (the
    zero level of outline_distance): those whose cross-section the circle describes."""
    from scipy import ndimage

    if not len(circles.contour):
        return np.zeros(0, bool)
    distance = outline_distance(view.mask)
    K = np.asarray(view.K, np.float64)
    q = circles.contour
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * q[:, 0] / q[:, 2] + K[0, 2]
        v = K[1, 1] * q[:, 1] / q[:, 2] + K[1, 2]
    ok = (q[:, 2] > 0) & np.isfinite(u) & np.isfinite(v)
    off = np.full(len(q), np.inf)
    off[ok] = ndimage.map_coordinates(distance, [v[ok] - 0.5, u[ok] - 0.5], order=1, mode="nearest")
    return np.abs(off) <= SEAM_REACH_PX


def check_agreement(info: dict, name: str, reference: str) -> None:
    """BundleError in words when one rigid placement does not fit the two views' joints."""
    shared = info["joints"] + info["joints_dropped"]
    agreeing = info["joints_within_ceiling"]
    if agreeing < MIN_AGREEING_SHARE * shared or info["joint_residual_m"] > MAX_JOINT_RESIDUAL_M:
        raise BundleError(
            f"the views disagree: {name} cannot be placed on {reference} (only {agreeing} of the {shared} body "
            f"joints both show fit one placement within {TRIM_CEILING_M * 100:.0f} cm, the fitted ones "
            f"{info['joint_residual_m'] * 100:.1f} cm rms apart; at most {MAX_JOINT_RESIDUAL_M * 100:.0f} cm and "
            f"{MIN_AGREEING_SHARE:.0%} of the joints are accepted). Are they photos of the same person in the "
            "same pose? A pose that changed between the shots cannot be fused"
        )


def fuse_views(views: list[View], *, refine: bool = True, icp: bool = False, outline: bool = True,
               contours: bool = True, silhouettes: bool = True, seam: bool = True, side_icp: bool = True, carve: bool = True, hands: bool = True, limbs: bool = True, depth: int = POISSON_DEPTH,
               max_pixels: int | None = None, progress=None) -> FusedSolid:
    """One closed solid from several views of one person (module docstring), in the first
    view's camera frame. icp=True refines each registration on the overlap (off by default:
    measured on a front and back pair it moved a good joint fit, 1.3 cm mean displacement of
    the back's points, to 4.7 cm, and started from the true pose it settles there too: the
    views' grazing sides, where they overlap, are where each view's depth is least sure)."""
    if not views:
        raise BundleError("no views to fuse")
    kw = {} if max_pixels is None else {"max_pixels": int(max_pixels)}
    names = [v.name or f"view {i + 1}" for i, v in enumerate(views)]
    # registration first (cheap): views that disagree are refused before any surface is made
    fits = []
    for i in range(1, len(views)):
        T, info = joint_fit(views[0].joints, views[i].joints)
        check_agreement(info, names[i], names[0])
        fits.append((T, info))
    fronts = [solid_front(v.points, v.mask, v.seg, v.K, v.normal, refine=refine, **kw) for v in views]
    samples = [_facing(f.samples()) for f in fronts]
    transforms = [np.eye(4)]
    stats: dict = {"views": [{"trust": fronts[0].stats["trust"]}]}
    points, normals = [samples[0][0]], [samples[0][1]]
    circles: dict = {}  # per view index, made when an opposite view needs them
    reach: dict = {}  # per view index: which of its circles' contour points reach its outline
    for i in range(1, len(views)):
        T, info = fits[i - 1]
        if outline and _opposite(T):
            T, outline_info = refine_on_outline(T, outline_points(fronts[i]), outline_points(fronts[0]),
                                                samples[i][0].mean(axis=0))
            info.update(outline_info)
        if contours and _opposite(T) and views[i].normal is not None and views[0].normal is not None:
            for k in (0, i):
                if k not in circles:
                    circles[k] = _view_circles(views[k])
                    reach[k] = reaching_outline(circles[k], views[k])
            if silhouettes:
                T, silhouette_info = refine_on_silhouettes(T, circles[i].contour[reach[i]], circles[0].contour[reach[0]],
                                                           views[i], views[0], samples[i][0].mean(axis=0))
                info.update(silhouette_info)
            T, contour_info = refine_depth_on_contours(T, level_points(circles[i], T[:3, :3]), level_points(circles[0]))
            info.update(contour_info)
        if icp or (side_icp and not _opposite(T)):
            T, icp_info = refine_registration(T, samples[i][0], samples[i][1], np.concatenate(points), np.concatenate(normals))
            info.update(icp_info)
        info["trust"] = fronts[i].stats["trust"]
        stats["views"].append(info)
        transforms.append(T)
        points.append(_apply(T, samples[i][0]))
        normals.append(samples[i][1] @ T[:3, :3].T)
        if progress is not None:
            progress("fuse", i / len(views), f"view {i + 1} registered ({info['joints']} joints, {info['joint_residual_m'] * 100:.1f} cm rms)")
    labels = None
    if all(s[2] is not None for s in samples):
        labels = np.concatenate([s[2] for s in samples])
    if seam and circles:
        # where the views turn away from each other, each front stops short of the contour and
        # Poisson bulged across the gap: the contour points the circles reach close it (measured
        # on arms_forward-102 at 768 x 1024: exact maps 0.259 -> 0.225 cm, volume 1.090 ->
        # 1.060; degraded 0.522 -> 0.418 cm, volume 1.20 -> 1.13)
        seam_points = sum(int(r.sum()) for r in reach.values())
        for k, c in sorted(circles.items()):
            points.append(_apply(transforms[k], c.contour[reach[k]]))
            normals.append(c.outward[reach[k]] @ transforms[k][:3, :3].T)
        if labels is not None:
            labels = None if any(c.labels is None for c in circles.values()) else np.concatenate(
                [labels] + [c.labels[reach[k]] for k, c in sorted(circles.items())])
        stats["seam_samples"] = int(seam_points)
        stats["seam_samples_off_outline"] = int(sum(len(r) - r.sum() for r in reach.values()))
    if not any(_opposite(T) for T in transforms[1:]):
        # no photo from behind: the reference's back is made as for one photo (the side views
        # add what they saw); without it the union is open at the back and Poisson balloons
        from engine.geometry.watertight import back_surface

        front = fronts[0]
        back, back_normals, back_labels, back_stats = back_surface(front.points, front.valid, front.seg, front.K,
                                                                   front.normals, trusted=front.trusted)
        points.append(back)
        normals.append(back_normals)
        labels = None if labels is None else np.concatenate([labels, back_labels])
        stats["invented_back"] = back_stats
    vertices, faces, vertex_labels, solid_stats = poisson_solid(np.concatenate(points), np.concatenate(normals), labels, depth=depth)
    stats.update(solid_stats)
    if carve:
        vertices, stats["carved_vertices"] = carve_to_outlines(vertices, views, transforms)
    if hands:
        vertices, stats["rounded_vertices"] = round_parts(vertices, vertex_labels, views, transforms, faces, limbs=limbs)
    return FusedSolid(vertices, faces, vertex_labels, transforms, stats)
