"""Hands in detail on the closed solid: each hand solved again from its crop, finer, and put in
place of the body's.

The closed solid (watertight.py) is one screened Poisson solve over the whole person, with cells
of 8-16 mm, from samples one per 2 x 2 photo pixels or coarser: the gaps between spread fingers,
a few millimetres wide, fall inside its cells and between its samples, and the hand comes out a
mitten. A hand crop (engine.geometry.detail.AlignedCrop) sees the same hand on a grid 4x finer
than the photo: its mask has the gaps, its points and normals the fingers' fronts.

1. `hand_solid_samples`: each aligned hand crop with a segmentation and a normal map becomes
   oriented samples, at the crop's own grid (region grid points at most MAX_SAMPLES_PER_CROP,
   block averaged when more):
   - front: the crop's aligned points, normals turned toward the camera;
   - back: the per-part thickness the solid gives the body (watertight.back_surface, on the
     crop's grid: the front's bulge over a membrane pinned on the crop's outlines, mirrored and
     scaled, at least the part's minimum thickness away from the silhouette; at most
     HAND_MAX_THICKNESS_M behind the front smoothed over CAP_SMOOTH_M, with the capped back's own
     normals; none within WRIST_CLEAR_M of a forearm behind the hand), so every finger has its
     own back and the gaps stay open behind as in front.
   Only the crop's pixels labelled as a hand inside its region (the part of its box the build
   replaces, detail.inner_region) are used.
2. `replace_hands` (SolidSamples.apply), once the body's solid is made: per hand, a Poisson
   solve over a box around the hand alone (cells of about LOCAL_CELL_M) from those samples and
   the body's own vertices near it that are not the hand being replaced (the forearm, a torso
   behind the hand); then the body less the hand's box, united with the new solid inside that
   box (manifold3d's booleans, on the body's faces near the boxes only: near_boolean; the result
   stays a closed 2-manifold), each new hand simplified within SIMPLIFY_M first.
3. `HandSolve`, what the build runs: the same steps, split with the geometry worker process
   (engine.geometry.solve_worker) on the machine's other core, since open3d's Poisson holds the
   GIL: the crops' samples made there while the build makes the body's front; each hand's
   context is then the body's Poisson samples near it (watertight.close_surface hands them over
   before its solve to its on_samples argument: HandSolve.body_samples), not the body's
   vertices, so both hands are solved
   there, one after the other, while the build solves the body; then the build cuts the boxes
   and joins. The same bytes come out wherever a step ran; a lost worker means the step runs in
   the build's process, with a note. Without the body's samples (a fused solid, replace_hands)
   the context is the body's vertices.

Measured by bench/bench_detail.py ("gap free": the share of the true gaps between the fingers
that no triangle covers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

HAND_CLASSES = ("Left_Hand", "Right_Hand")
HAND_CROPS = ("left_hand", "right_hand")
# grid points of a hand crop's region used at most (block averaged to a coarser step of the
# crop's grid when more): a hand's region is 5-10k photo pixels, so its 4x grid is averaged to
# 2 points per photo pixel. Measured on bench_detail's open-hands person (samples at 2 / at 4
# per photo pixel): the true gaps between the fingers left free 80-84 % / 92 % on exact maps,
# but on degraded ones (3 mm noise per crop pixel) the 4x samples fold the hand's own solve
# (non-manifold, refused) where the averaged ones close; and 4x costs about 3x the sample time.
MAX_SAMPLES_PER_CROP = 40_000
# the hand's own solid: cells of about 2.2 mm (Poisson depth 7 over a hand's box), where the
# body's are 8-16 mm; on the same person the gaps left free were 62-66 % with cells of 4.3 mm
# (depth 6, 0.3 s a hand) and 80-84 % with 2.2 mm (depth 7, 0.8-1.2 s a hand, shared CPU)
LOCAL_CELL_M = 0.0022
LOCAL_MAX_DEPTH = 8
CUT_MARGIN_M = 0.01  # the box the new hand replaces the body in: the hand's samples + this
CONTEXT_M = 0.02  # the body's vertices this far around that box are solved with the hand
# the crop's depth smoothed over about this much (a Gaussian over the crop's person pixels, along
# the rays) before it is solved: cells of 2 mm follow a network's per-pixel noise (bench_detail's
# degraded crops, 3 mm per pixel, gave a hand as rough as sandpaper); fingers are 15-20 mm wide
SMOOTH_M = 0.0015
# a hand's back at most this far behind its front, along the ray: back_surface's per-part rule
# (the front's bulge over the membrane mirrored and scaled 1.3 x 1.24, calibrated on whole photos,
# where a hand is a blob of a few hundred pixels) gave the crops' hands a median 64 mm where a ray
# crosses the true hand over 13-37 mm (bench_detail's rest, bent people); measured on bench_detail's
# open-hands, bent and arms-forward people (exact and degraded, the same tree), 40 mm against none:
# mesh -> truth 5.37 -> 3.70 (exact) / 4.96 -> 3.79 mm (degraded) on the bent right hand,
# 4.72-4.90 -> 4.32-4.79 on the arms-forward hands, the open hands unchanged, the bent left +0.05-0.1; truth -> mesh within
# 0.1 mm; gaps free up on the foreshortened hands (arms-forward 19-38 -> 30-57 %). 30 mm thinned
# the open hands too (mesh -> truth 1.38 -> 1.07) but closed the bent left hand's gaps (40 -> 7 %).
# That was 40 mm behind each pixel's own front; behind the smoothed front below, 60 mm against 40
# (same tree): bench_closed --crops with, inward max 0.97 -> 0.75 % exact, 1.03 -> 0.66 % degraded
# (its held-out people's hands are seen side-on or foreshortened: a ray crosses them over a
# median 41-72 mm), Chamfer unchanged; bench_detail closed, exact / degraded: mesh -> truth
# 2.73 -> 2.66 / 2.68 -> 2.62 mm (the bent right hand 2.27 -> 1.92 exact), truth -> mesh 0.57 ->
# 0.56 / 0.71 -> 0.70, gaps free 87.3 -> 87.8 / 88.3 -> 88.8 %
HAND_MAX_THICKNESS_M = 0.06
# that cap is measured from the crop's front smoothed over about this much (a Gaussian over its
# person pixels, along the rays), and the capped back gets its own normals (_hand_back_normals).
# Capped behind each pixel's own front and keeping back_surface's normals (those of the uncapped
# bulge), the back ran parallel to the fingers' relief, dented behind every bulge, with normals
# that disagreed with its shape, and the hand's solve folded there: on bench_closed's four
# held-out people the crop hands' inward area was 0.76 / 0.78 % of the body's (exact / degraded,
# means), 0.53 / 0.57 % with both; the smoothed front alone 0.87 / 0.91, own normals alone 0.89 / 0.92
CAP_SMOOTH_M = 0.015
# no back samples closer than this (across the image, at their depth) to the crop's person pixels
# that are not hand (the forearm, a sleeve) and lie more than WRIST_STEP_M behind the hand's
# nearest pixel (a forearm pointing at the camera, seen around the hand): there the crop's capped
# back and the body's own samples of the forearm, which the hand is solved with, lie centimetres
# apart, and the hand's solve joined them with a ledge (a shelf along degraded-102's forearms)
# and creases that faced inward. Measured on bench_closed's held-out people (captured inputs, the
# hands solved again; inward area of the whole body, max over the four, exact / degraded): none
# 0.74 / 0.66 %; 30 mm from any forearm pixel 0.38 / 0.44 (15 mm 0.57 / 0.54, 45 mm 0.35 / 0.42,
# 60 mm 0.22 / 0.29, no back at all 0.16 / 0.26), but bench_detail's open hands, whose forearm
# continues the hand at its depth, lost their back at the wrist (closed mesh -> truth 1.38-1.47
# -> 1.82-2.04 mm) and from 45 mm on the hands spilled past their outline (spill 2.8 -> 6.6 %,
# 60 mm 16.9 %, exact); only from forearm pixels 2 cm behind the hand: 0.43 / 0.47 %, the open
# hands unchanged (45 mm so: spill 5.4 %)
WRIST_CLEAR_M = 0.03
WRIST_STEP_M = 0.02
# the hand's solid simplified within this distance of the solve's surface (manifold3d's simplify:
# edges collapsed where the surface moves less; it stays a closed 2-manifold)
SIMPLIFY_M = 0.0002
OLD_HAND_REACH_M = 0.015  # the body's hand vertices this near the crop's hand samples are replaced
OVERLAP_M = 0.003  # the new hand reaches this far past the box, into the body left outside it
# the band beyond each cut box's faces that the body's near part (near_boolean.cut) and the box's
# bulge test (_body_cut_box: over each face's rectangle grown by this) reach past OVERLAP_M
SEAM_BAND_M = 0.004
# the new hand's surface within BLEND_M inside its cut box (and in the overlap past it) is drawn
# onto the body's surface there before the union (_blend_to_body), fully at the box's faces and
# not at all BLEND_M in, so the two meet without a step: the hand's fine solve follows its samples
# where the body's coarse one smooths them, and its surface at the box lay 1-5 mm off the body's
# (16 mm, not 8: with the hand's triangles split there, BLEND_EDGE_M, a 1-3 mm rise over 8 mm shaded
# as a ring round the wrist in Cycles close-ups)
BLEND_M = 0.016
BLEND_REACH_M = (0.008, 0.012)  # only hand vertices this near the body: fully up to the first, none past the second
BLEND_EPS_M = 0.0005  # at the box's faces the hand lies this far outside the body, at its own cap this far inside
# solve_hand cuts its solid this much past the overlap, so that the blend moves an open surface
# (not the cut's cap); join_hands cuts it to the overlap after the blend
BLEND_PAST_M = 0.003
# a face of the cut box that a part of the body crosses and ends beyond, within BULGE_M of it, is
# moved out past that part by BULGE_EPS_M for the body's cut (_body_cut_box), so that the body less
# the box keeps no piece of it with a flat cut face: a box face nearly tangent to the forearm's side
# (a wafer up to a few mm thick and centimetres wide, its cut face a slit beside the new hand), or
# the old coarse mitten bulging 1-3 cm past the hand's outline beside fingers that point at the
# camera (its flat cap, crossing the new hand's side, faced inward: bent-101's left hand, 0.22 /
# 0.27 % of the area). A face the body crosses and goes on past, to BULGE_REACH_M (the forearm
# leaving the box), stays: the body is cut there
BULGE_M = 0.03
BULGE_EPS_M = 0.0005
# how far past a face the body's vertices are looked at: 2 cm more than BULGE_M, more than the
# body's 8-16 mm triangles, so a surface going on past BULGE_M has a vertex beyond it
BULGE_REACH_M = 0.05
# the hand's triangles from SPLIT_DEPTH_M inside its box to the overlap's end, near the seam, are
# split until no edge there is longer than BLEND_EDGE_M (the solve's cut and its simplification
# leave 5-16 mm triangles, some 6 cm long, on the forearm: the blend's profile, 0.5 mm over 3 mm,
# cannot be drawn on those, and the hand lay inside the body at the box's face, a ledge of the
# body's cut face round the wrist; 4 mm: about 1.2-1.6k vertices more per build, cut faces left
# showing 0.02-0.08 cm2 per hand at 6 mm, under 0.02 at 4 mm)
BLEND_EDGE_M = 0.004
SPLIT_DEPTH_M = 0.008
SEAM_SAMPLES = 8  # points along each body triangle's crossing of the box's faces (_blend_to_body's seam)
# the new vertices' labels are looked up among the labelled points within this of them (_nearest_labels)
LABEL_MARGIN_M = 0.03
MIN_PIECE_FACES = 200  # smaller pieces left after the cut (the body's mitten outside the box) go
WAIT_POLL_S = 0.1  # a wait for the worker polls the build's progress (its cancel) this often
WORKER_TIMEOUT_S = 300.0  # a worker silent this long is stopped, the step done in the build's process


@dataclass
class SolidSamples:
    """Oriented samples from the hand crops, camera frame, and where they replace the body's."""

    front: tuple  # (points N x 3, normals N x 3, labels N uint8)
    back: tuple
    regions: list  # (x0, y0, x1, y1) photo pixels, one per crop used
    K: np.ndarray  # the photo's camera matrix: samples project into `regions` through it
    class_ids: np.ndarray  # the label ids replaced (the hand classes)
    stats: list = field(default_factory=list)

    def replaced(self, points: np.ndarray, labels: np.ndarray, region) -> np.ndarray:
        """Which of the body's points (N x 3, labels N) the crop of `region` replaces: labelled
        as a hand and projecting into the region."""
        return self.in_region(points, region) & np.isin(labels, self.class_ids)

    def in_region(self, points: np.ndarray, region) -> np.ndarray:
        """Which points (N x 3, camera frame) project into `region` (photo pixels)."""
        uvw = np.asarray(points, np.float64) @ np.asarray(self.K, np.float64).T
        with np.errstate(invalid="ignore", divide="ignore"):
            x, y = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
        x0, y0, x1, y1 = region
        return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)

    def apply(self, vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray | None):
        """The closed body (vertices, faces, labels) with each hand solved again from the crop's
        samples and put in its place: (vertices, faces, labels, stats). See `replace_hands`."""
        return replace_hands(vertices, faces, labels, self)


def hand_solid_samples(aligned: list, K: np.ndarray) -> tuple[SolidSamples | None, list[str]]:
    """SolidSamples from the aligned hand crops that have a segmentation (the hand's pixels must
    be told from the forearm's and the background's), and notes for those that cannot give any."""
    from engine.geometry.detail import block_mean, fine_K
    from engine.geometry.labels import class_names
    from engine.geometry.watertight import back_surface

    names = class_names()
    class_ids = np.array([names.index(n) for n in HAND_CLASSES if n in names], np.uint8)
    fronts, backs, regions, stats, notes = [], [], [], [], []
    for a in aligned:
        c = a.crop
        if c.name not in HAND_CROPS:
            continue
        words = f"detail crop {c.name.replace('_', ' ')}"
        if c.seg is None or c.normal is None:
            notes.append(f"{words}: the closed surface keeps the body's samples there (the crop has no "
                         f"{'segmentation' if c.seg is None else 'normal map'})")
            continue
        f = int(c.factor)
        x0, y0, x1, y1 = c.box
        rx0, ry0, rx1, ry1 = a.region
        step = 1
        while f % (step * 2) == 0 and (rx1 - rx0) * (ry1 - ry0) * (f // step) ** 2 > MAX_SAMPLES_PER_CROP:
            step *= 2
        q = f // step                                   # crop grid points per photo pixel used
        valid = np.isfinite(a.points).all(-1) & (a.points[..., 2] > 0) & c.mask
        normal_ok = valid & np.isfinite(c.normal).all(-1)
        points, fraction = block_mean(a.points, valid, step)
        normals, _ = block_mean(c.normal, normal_ok, step)
        seg = c.seg[step // 2::step, step // 2::step]
        on = (fraction >= 0.5) & np.isfinite(points).all(-1) & np.isfinite(normals).all(-1)
        normals = normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-8)
        points = _smoothed_along_rays(points, on, SMOOTH_M * q * np.sqrt(K[0, 0] * K[1, 1]) / np.nanmedian(points[on][:, 2]))
        # outward on the front is toward the camera: against the point's ray
        normals *= np.where((normals * points).sum(-1, keepdims=True) > 0, -1.0, 1.0)
        Kq = fine_K(K, (x0, y0), q)
        grid_points = np.where(on[..., None], points, np.nan).astype(np.float32)
        # the back over the whole crop box (its outline pins the membrane; the region is 12 % in)
        back, back_normals, back_labels, info = back_surface(grid_points, on, seg, Kq, normals)
        # capped behind a smoothed front (not the front pixel's own depth: a back parallel to the
        # fingers' relief is dented where the front bulges), with the normals of the capped back
        smooth_front = _smoothed_along_rays(grid_points, on, CAP_SMOOTH_M * q * np.sqrt(K[0, 0] * K[1, 1])
                                            / np.nanmedian(points[on][:, 2]))
        back = _thinned_hand_back(back, back_labels, smooth_front, Kq, class_ids)
        back_normals = _hand_back_normals(back, back_normals, Kq, int(info["back_factor"]), on.shape)
        # none near a forearm behind the hand: there the body's own samples (the hand's context)
        # give the back
        keep = _back_clear_of_the_arm(back, grid_points, on, seg, Kq, class_ids)
        back, back_normals, back_labels = back[keep], back_normals[keep], back_labels[keep]
        h, w = on.shape
        rows, cols = np.mgrid[0:h, 0:w]
        px, py = x0 + (cols + 0.5) / q, y0 + (rows + 0.5) / q
        use = on & (px >= rx0) & (px < rx1) & (py >= ry0) & (py < ry1) & np.isin(seg, class_ids)
        front = (points[use].astype(np.float64), normals[use].astype(np.float64), seg[use].astype(np.uint8))
        if not len(front[0]):
            notes.append(f"{words}: the closed surface keeps the body's samples there (no hand pixels in the crop's region)")
            continue
        uvw = back.astype(np.float64) @ np.asarray(K, np.float64).T
        bx, by = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
        in_back = (bx >= rx0) & (bx < rx1) & (by >= ry0) & (by < ry1) & np.isin(back_labels, class_ids)
        fronts.append(front)
        backs.append((back[in_back].astype(np.float64), back_normals[in_back].astype(np.float64),
                      back_labels[in_back].astype(np.uint8)))
        regions.append(tuple(int(v) for v in a.region))
        stats.append({"name": c.name, "samples_per_px": int(q), "front_samples": int(len(front[0])),
                      "back_samples": int(in_back.sum()), "back_factor": int(info["back_factor"])})
    if not fronts:
        return None, notes

    def joined(parts):
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

    return SolidSamples(joined(fronts), joined(backs), regions, np.asarray(K, np.float64), class_ids, stats), notes


class HandSolve:
    """The hands' second solve, split between the build's process and the geometry worker process
    (engine.geometry.solve_worker), which holds the machine's other core.

    The closed build starts it as soon as the crops are aligned (`start`): the hand crops' samples
    (hand_solid_samples) are made in the worker while this process makes the body's front. When
    close_surface has the body's samples (`body_samples`, before its Poisson solve) each hand's
    zone and inputs are taken from them and every hand's solve goes to the worker; once the
    body's solid is made (`apply`) this process cuts the hands' boxes from it and joins (the
    same steps on the same samples, so the result is the same bytes wherever each step ran).
    Applied without the body's samples, the context is the body's vertices, the first hand is
    solved in the worker and the others here. Without a worker (none could be started, it died, it failed)
    the step runs here instead, with a note saying why; nothing waits forever: a wait polls
    `progress` (which raises Cancelled when the build is cancelled) and gives up on a worker
    silent for WORKER_TIMEOUT_S.
    """

    def __init__(self, aligned: list, K: np.ndarray, *, progress=None, worker=None):
        from dataclasses import replace

        # what the worker needs of each hand crop (its albedo and raw pointmap stay here)
        self.aligned = [replace(a, crop=replace(a.crop, albedo=None, pointmap=None))
                        for a in aligned if a.crop.name in HAND_CROPS]
        self.K = np.asarray(K, np.float64)
        self.progress = progress
        self.worker = worker if self.aligned else None
        self.notes: list[str] = []
        self._samples = None       # (SolidSamples or None, notes) once known
        self._samples_future = None
        self.solved_in_worker = 0  # hands whose Poisson solve the worker made
        self.blended_in_worker = 0  # hands the worker drew onto the body (blend_hands; not in the stats: it
                                    # depends on whether the worker was done when the body was)
        self._planned = None       # (zones, inputs, the worker's future) once the body's samples were given
        if self.worker is not None:
            self._samples_future = self.worker.submit(hand_solid_samples, self.aligned, self.K)

    @classmethod
    def start(cls, aligned: list, K: np.ndarray, *, progress=None, use_worker: bool = True) -> "HandSolve":
        """The solve started: in the engine's shared worker process (started now if none runs)
        when `use_worker`, else everything here when it is applied."""
        worker = None
        if use_worker and any(a.crop.name in HAND_CROPS for a in aligned):
            from engine.geometry import solve_worker

            worker = solve_worker.shared()
        job = cls(aligned, K, progress=progress, worker=worker)
        if use_worker and worker is None and job.aligned:
            job.notes.append("the hands' solve process could not be started: the hands were solved in the build's process")
        return job

    def samples(self) -> tuple[SolidSamples | None, list[str]]:
        """The hand crops' samples and notes (hand_solid_samples), from the worker or made here."""
        if self._samples is None:
            result = self._wait(self._samples_future, "the hand crops' samples")
            self._samples = result if result is not None else hand_solid_samples(self.aligned, self.K)
        return self._samples

    def body_samples(self, points: np.ndarray, normals: np.ndarray, labels: np.ndarray) -> None:
        """Given to watertight.close_surface as its `on_samples` (through build_surface), which
        calls it with the body's oriented samples before its Poisson solve: each hand's context
        (the body's samples near it) is taken from them, and every hand's solve goes to the worker
        (one after the other there) while this process solves the body; without a worker they
        are solved in `apply`."""
        if not self.aligned or self._planned is not None:
            return
        fine, _ = self.samples()
        if fine is None:
            return
        context = (np.asarray(points, np.float64), np.asarray(normals, np.float64), np.asarray(labels, np.uint8))
        zones = hand_zones(fine, context[0], context[2])
        inputs = [hand_inputs(fine, context, zone) for zone in zones]
        # one request for all hands: the worker is idle now (it gave the crops' samples), so it
        # takes the whole request in at once; a second request (megabytes, more than the pipe
        # holds) sent while it solves the first hand would hold this process in the send until
        # that solve ended, when it should be solving the body
        future = None if self.worker is None or not inputs else self.worker.submit(solve_hands, inputs)
        self._planned = (zones, inputs, future)

    def apply(self, vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray | None):
        """The closed body with its hands replaced: (vertices, faces, labels, stats) as
        replace_hands (the hands' context the body's samples, when close_surface gave them:
        `body_samples`; else its vertices); the body as it was, with notes, when no hand crop
        can be used."""
        fine, notes = self.samples()
        if fine is None:
            return vertices, faces, labels, {"notes": notes + self.notes}
        stats = {"crops": [dict(c) for c in fine.stats]}
        note = _cannot_join(vertices, faces, labels)
        if note:
            stats["note"] = note
        elif self._planned is not None:
            # every hand's solve sent to the worker beside the body's: only the cut waits here
            zones, inputs, future = self._planned
            # hands the worker has solved already (it kept up with the body's solve) are drawn
            # onto the body there (blend_hands) while this process cuts the body's boxes
            solved, blending = None, None
            if self.worker is not None and future is not None and future.done():
                solved = self._wait(future, "the hands' solves")
                if solved is not None:
                    self.solved_in_worker = len(solved)
                    blending = self._start_blends(vertices, faces, zones, solved)
            cut, note = cut_hand_boxes(vertices, faces, zones)
            if solved is None:
                solved = self._wait(future, "the hands' solves") if self.worker is not None else None
                if solved is None:
                    solved = solve_hands(inputs)
                else:
                    self.solved_in_worker = len(solved)
            blended = self._wait(blending, "the hands' blends") if blending is not None else None
            self.blended_in_worker = 0 if blended is None else len(blended)
            if cut is None:
                stats["note"] = note
            else:
                vertices, faces, labels, stats = join_hands(vertices, faces, labels, fine, zones, solved, stats, cut=cut,
                                                            blended=blended)
        else:
            context = _body_context(vertices, faces, labels)
            zones = hand_zones(fine, context[0], context[2])
            inputs = [hand_inputs(fine, context, zone) for zone in zones]
            # the first hand to the worker; the others, and the body's cut, here meanwhile
            first = None if self.worker is None else self.worker.submit(solve_hand, *inputs[0])
            solved = [None] + [solve_hand(*hand) for hand in inputs[1:]]
            cut, note = cut_hand_boxes(vertices, faces, zones)
            solved[0] = self._wait(first, "the first hand's solve")
            if solved[0] is None:
                solved[0] = solve_hand(*inputs[0])
            else:
                self.solved_in_worker = 1
            if cut is None:
                stats["note"] = note
            else:
                vertices, faces, labels, stats = join_hands(vertices, faces, labels, fine, zones, solved, stats, cut=cut)
        stats["hands_solved_in_worker"] = self.solved_in_worker
        if notes or self.notes:
            stats["notes"] = notes + self.notes
        return vertices, faces, labels, stats

    def _start_blends(self, vertices, faces, zones: list, solved: list):
        """The solved hands' blends onto the body (blend_hands) sent to the worker: its future, or
        None when no hand was solved."""
        hands = [(s["vertices"], s["faces"], zone.body_cut_in(vertices), zone.cut)
                 for zone, s in zip(zones, solved) if "note" not in s]
        return self.worker.submit(blend_hands, vertices, faces, hands) if hands else None

    def _wait(self, future, what: str):
        """The future's result, polling `progress` (a cancel raises from it); None, with a note,
        when the worker was lost, failed or stayed silent over WORKER_TIMEOUT_S (the caller then
        does the step here)."""
        if future is None:
            return None
        from concurrent.futures import TimeoutError as FutureTimeout

        from engine.geometry import solve_worker

        began = time.monotonic()
        while True:
            try:
                return future.result(timeout=WAIT_POLL_S)
            except FutureTimeout:
                if self.progress is not None:
                    self.progress("surface", 0.95, "hands solved again from their crops")
                if time.monotonic() - began > WORKER_TIMEOUT_S:
                    solve_worker.shutdown()
                    why = f"silent for {WORKER_TIMEOUT_S:.0f} s, stopped"
                    break
            except Exception as exc:  # noqa: BLE001: a lost or failing worker: the step runs here
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                break
        self.notes.append(f"the hands' solve process failed on {what} ({why}): solved in the build's process")
        self.worker = None
        return None


def _thinned_hand_back(back: np.ndarray, labels: np.ndarray, front: np.ndarray, K: np.ndarray, class_ids) -> np.ndarray:
    """Hand back samples at most HAND_MAX_THICKNESS_M deeper than the front of their own grid pixel
    (front: h x w x 3 on the grid of K), moved along their rays."""
    h, w = front.shape[:2]
    uvw = np.asarray(back, np.float64) @ np.asarray(K, np.float64).T
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = np.clip(np.nan_to_num(uvw[:, 0] / uvw[:, 2]).astype(np.int64), 0, w - 1)
        rows = np.clip(np.nan_to_num(uvw[:, 1] / uvw[:, 2]).astype(np.int64), 0, h - 1)
    front_z = front[rows, cols, 2].astype(np.float64)
    z = np.asarray(back, np.float64)[:, 2]
    hand = np.isin(labels, class_ids) & np.isfinite(front_z) & (front_z > 0)
    limit = np.where(hand, np.minimum(z, front_z + HAND_MAX_THICKNESS_M), z)
    return (back * (limit / z)[:, None]).astype(back.dtype)


def _back_clear_of_the_arm(back: np.ndarray, front: np.ndarray, on: np.ndarray, seg: np.ndarray, K: np.ndarray,
                           class_ids) -> np.ndarray:
    """Which back samples (N x 3) lie farther than WRIST_CLEAR_M, across the image at their own
    depth, from the crop's person pixels (`on`, labels `seg`, points `front`, the grid of K) that
    are neither hand (`class_ids`) nor background and lie more than WRIST_STEP_M behind the
    nearest hand pixel."""
    from scipy import ndimage

    h, w = on.shape
    hand = on & np.isin(seg, class_ids)
    other = on & ~hand & (seg != 0)
    if not other.any() or not hand.any():
        return np.ones(len(back), bool)
    _, (hand_row, hand_col) = ndimage.distance_transform_edt(~hand, return_indices=True)
    with np.errstate(invalid="ignore"):
        other &= np.nan_to_num(front[..., 2] - front[hand_row, hand_col, 2], nan=0.0) > WRIST_STEP_M
    if not other.any():
        return np.ones(len(back), bool)
    distance_px = ndimage.distance_transform_edt(~other)
    uvw = np.asarray(back, np.float64) @ np.asarray(K, np.float64).T
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = np.clip(np.nan_to_num(uvw[:, 0] / uvw[:, 2]).astype(np.int64), 0, w - 1)
        rows = np.clip(np.nan_to_num(uvw[:, 1] / uvw[:, 2]).astype(np.int64), 0, h - 1)
    metres = distance_px[rows, cols] * np.asarray(back, np.float64)[:, 2] / np.sqrt(K[0, 0] * K[1, 1])
    return metres > WRIST_CLEAR_M


def _hand_back_normals(back: np.ndarray, normals: np.ndarray, K: np.ndarray, factor: int, shape) -> np.ndarray:
    """Outward normals (N x 3) of back samples (N x 3) that lie one per pixel of back_surface's
    grid (the crop grid of K, `shape`, coarsened `factor` times), by finite differences on that
    grid, turned away from the camera along each sample's ray; a sample without both neighbours'
    differences keeps its normal from `normals`."""
    h, w = -(-shape[0] // factor), -(-shape[1] // factor)
    uvw = np.asarray(back, np.float64) @ np.asarray(K, np.float64).T
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = np.floor(np.nan_to_num(uvw[:, 0] / uvw[:, 2], nan=-1.0) / factor).astype(np.int64)
        rows = np.floor(np.nan_to_num(uvw[:, 1] / uvw[:, 2], nan=-1.0) / factor).astype(np.int64)
    inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    grid = np.full((h, w, 3), np.nan)
    grid[rows[inside], cols[inside]] = back[inside]
    own = np.cross(np.gradient(grid, axis=1), np.gradient(grid, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        own /= np.linalg.norm(own, axis=-1, keepdims=True)
    own *= np.where((own * grid).sum(-1, keepdims=True) < 0, -1.0, 1.0)
    out = np.array(normals, np.float64)
    found = np.full((len(back), 3), np.nan)
    found[inside] = own[rows[inside], cols[inside]]
    good = np.isfinite(found).all(1)
    out[good] = found[good]
    return out.astype(np.asarray(normals).dtype)


def _smoothed_along_rays(points: np.ndarray, valid: np.ndarray, sigma_px: float) -> np.ndarray:
    """Each valid point moved along its ray to the Gaussian-weighted mean depth of the valid
    points around it (normalised convolution: the gaps between fingers do not pull it)."""
    from scipy import ndimage

    depth = np.where(valid, points[..., 2], 0.0).astype(np.float64)
    weight = ndimage.gaussian_filter(valid.astype(np.float64), sigma_px)
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = ndimage.gaussian_filter(depth, sigma_px) / weight
        scale = np.where(valid, smooth / points[..., 2], 1.0)
    return (points * scale[..., None]).astype(np.float32)


def _zone_boxes(points: np.ndarray):
    """(hand box lo, hi), (box the hand replaces the body in), (box of the samples solved)."""
    lo, hi = points.min(0), points.max(0)
    return (lo - CUT_MARGIN_M, hi + CUT_MARGIN_M), (lo - CUT_MARGIN_M - CONTEXT_M, hi + CUT_MARGIN_M + CONTEXT_M)


def _local_depth(lo: np.ndarray, hi: np.ndarray) -> int:
    """Poisson depth whose cells over this box (Open3D's cube: the largest side x 1.1) are about LOCAL_CELL_M."""
    extent = 1.1 * float((hi - lo).max())
    return int(np.clip(round(np.log2(max(extent, 1e-3) / LOCAL_CELL_M)), 5, LOCAL_MAX_DEPTH))


def _box(lo, hi):
    from engine.geometry.near_boolean import box_solid

    return box_solid(lo, hi)


def _manifold(vertices, faces):
    from engine.geometry.near_boolean import mesh_solid

    return mesh_solid(vertices, faces)


def _box_distance(points: np.ndarray, lo, hi) -> np.ndarray:
    """Signed distance of each point to the box's surface: positive outside, negative inside."""
    d = np.maximum(np.asarray(lo, np.float64) - points, points - np.asarray(hi, np.float64))
    return np.where(d.max(1) > 0, np.sqrt((np.maximum(d, 0.0) ** 2).sum(1)), d.max(1))


def _body_cut_box(body_v: np.ndarray, box) -> tuple:
    """The box the body is cut with for a hand's cut box (lo, hi): each face that the body's surface
    crosses and ends beyond within BULGE_M moved out past that surface by BULGE_EPS_M, so that no
    piece of the body with a flat cut face stays outside it (a wafer off the forearm's side, the
    old mitten's bulge past the hand's outline); a face the body crosses and goes on past (a vertex
    beyond BULGE_M: the forearm leaving the box) and the other faces as they were. The body's
    vertices beyond a face, over its rectangle grown by OVERLAP_M + SEAM_BAND_M and up to
    BULGE_REACH_M out, tell how far the surface crosses it. The same box for the same body,
    wherever it is asked for (the cut, the blend, the hand's overlap and the seam's band)."""
    lo, hi = (np.array(x, np.float64) for x in box)
    v = np.asarray(body_v, np.float64)
    margin = OVERLAP_M + SEAM_BAND_M
    near = ((v >= lo - BULGE_REACH_M) & (v <= hi + BULGE_REACH_M)).all(1)
    v = v[near]
    new_lo, new_hi = lo.copy(), hi.copy()
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        over = ((v[:, others] >= lo[others] - margin) & (v[:, others] <= hi[others] + margin)).all(1)
        for past, grow in ((lo[axis] - v[over, axis], -1.0), (v[over, axis] - hi[axis], 1.0)):
            past = past[(past > 0) & (past <= BULGE_REACH_M)]
            if len(past) and past.max() <= BULGE_M:
                if grow < 0:
                    new_lo[axis] = lo[axis] - past.max() - BULGE_EPS_M
                else:
                    new_hi[axis] = hi[axis] + past.max() + BULGE_EPS_M
    return new_lo, new_hi


def _split_long_edges(v: np.ndarray, f: np.ndarray, where, max_len: float, passes: int = 24):
    """The mesh (v, f: a closed 2-manifold) with its edges longer than max_len split at their
    middle on the faces where(v, f) picks (and the faces split off them), until none is left or
    after `passes` rounds: per round each picked face with a longer edge names its longest; an
    edge is split when it is the longest named edge of both its faces (so a face has at most one
    split edge a round, and the longest named edge of all is always split; a face next to the
    picked ones is split where they are). The surface is not moved: each new vertex lies on the
    edge it splits. Only the picked faces and their neighbours are looked at (the other faces
    come first in the result, as they were)."""
    v = np.asarray(v, np.float64)
    f = np.asarray(f, np.int64)
    chosen = where(v, f)  # the faces split, and the faces split off them
    if not chosen.any():
        return v, f
    ends = np.sort(np.stack([f, np.roll(f, -1, axis=1)], 2), 2)
    code = ends[..., 0] * len(v) + ends[..., 1]
    work = chosen | np.isin(code, code[chosen]).any(1)
    rest, f, chosen = f[~work], f[work], chosen[work]
    for _ in range(passes):
        fe_v = np.stack([f, np.roll(f, -1, axis=1)], 2)  # F x 3 x 2: edge i runs from corner i to i + 1
        lo_v, hi_v = fe_v.min(2), fe_v.max(2)
        edges, fe = np.unique(lo_v * len(v) + hi_v, return_inverse=True)
        fe = fe.reshape(-1, 3)
        ea, eb = edges // len(v), edges % len(v)
        length = np.linalg.norm(v[ea] - v[eb], axis=1)
        fl = length[fe]
        picked = chosen & (fl.max(1) > max_len)
        if not picked.any():
            break
        named = np.zeros(len(edges), bool)
        named[fe[picked, np.argmax(fl[picked], axis=1)]] = True
        rank = np.empty(len(edges), np.int64)
        rank[np.lexsort((np.arange(len(edges)), length))] = np.arange(len(edges))
        ranked = np.where(named[fe], rank[fe], -1)
        best = ranked == ranked.max(1, keepdims=True)
        split = named & (np.bincount(fe[best & named[fe]], minlength=len(edges)) == 2)
        if not split.any():
            break
        mid = np.full(len(edges), -1, np.int64)
        mid[split] = len(v) + np.arange(int(split.sum()))
        v = np.concatenate([v, 0.5 * (v[ea[split]] + v[eb[split]])])
        has = split[fe]
        rows = np.nonzero(has.any(1))[0]
        i = np.argmax(has[rows], axis=1)
        x0, x1, x2 = f[rows, i], f[rows, (i + 1) % 3], f[rows, (i + 2) % 3]
        m = mid[fe[rows, i]]
        keep = np.ones(len(f), bool)
        keep[rows] = False
        f = np.concatenate([f[keep], np.stack([x0, m, x2], 1), np.stack([m, x1, x2], 1)])
        chosen = np.concatenate([chosen[keep], chosen[rows], chosen[rows]])
    return v, np.concatenate([rest, f])


def _blend_to_body(hand_v: np.ndarray, hand_f: np.ndarray, body_v: np.ndarray, body_f: np.ndarray, cut, solved_in=None) -> tuple:
    """The new hand's vertices (solve_hand's solid, cut BLEND_PAST_M past the overlap) drawn onto
    the body's surface near where that surface crosses the cut box's faces (the forearm; a torso
    the hand rests on), so that the hand meets the body there without a step.

    The seam: the body's triangles that cross the box's faces, each crossing sampled every
    millimetre or so. A hand vertex moves toward its closest point on the body's faces that reach
    within BLEND_M of the box or lie outside it (the forearm, not the old mitten deep inside) by
    smoothstep(1 - d / BLEND_M) inside the box, fully outside it, d the distance from that closest
    point to the seam (a box face tangent to the forearm cuts a long sliver off its side, when
    the body goes on past BULGE_M beyond that face (_body_cut_box moves the body's cut past one that
    ends nearer): the seam runs
    round that sliver, and the hand's side under it is drawn onto the body all along), faded out with its distance to that surface over
    BLEND_REACH_M. The target lies BLEND_EPS_M outside the body inside the box and out to its
    faces, as far inside it at the overlap's end (OVERLAP_M past the faces), so the union's crossing
    falls in the overlap (1 mm over 3 mm) and neither the body's cut face nor the hand's
    cap shows. The solve's own cut stays on its planes, every vertex in its grown box. First the
    hand's triangles there are split down to BLEND_EDGE_M edges (_split_long_edges). Returns
    (vertices, faces, how many vertices moved)."""
    import open3d as o3d
    from scipy.spatial import cKDTree

    lo, hi = (np.asarray(x, np.float64) for x in cut)
    v = np.asarray(hand_v, np.float64)
    bv = np.asarray(body_v, np.float64)
    bf = np.asarray(body_f, np.int64)
    grown = OVERLAP_M + BLEND_PAST_M + BLEND_REACH_M[1]
    around = ((bv >= lo - grown) & (bv <= hi + grown)).all(1)
    corner_s = np.zeros(len(bv))
    corner_s[around] = _box_distance(bv[around], lo, hi)
    faces = bf[around[bf].all(1) & (corner_s[bf] > -BLEND_M).any(1)]
    # the seam: where the faces crossing the box's faces cross them (the box distance taken as
    # linear along each edge), each crossing segment sampled SEAM_SAMPLES times
    fs = corner_s[faces]
    crossing = (fs > 0).any(1) & (fs <= 0).any(1)
    tri, ts = bv[faces[crossing]], fs[crossing]
    ends = []
    for i, j in ((0, 1), (1, 2), (2, 0)):
        cross = (ts[:, i] > 0) != (ts[:, j] > 0)
        w = np.clip(ts[:, i] / np.where(cross, ts[:, i] - ts[:, j], 1.0), 0.0, 1.0)[:, None]
        ends.append((np.where(cross[:, None], tri[:, i] + w * (tri[:, j] - tri[:, i]), np.nan)))
    ends = np.stack(ends, 1)  # C x 3 edges x 3, nan where the edge does not cross
    a = np.where(np.isfinite(ends[:, 0]).all(1)[:, None], ends[:, 0], ends[:, 1])
    b = np.where(np.isfinite(ends[:, 2]).all(1)[:, None], ends[:, 2], ends[:, 1])
    along = np.linspace(0.0, 1.0, SEAM_SAMPLES)[None, :, None]
    points = (a[:, None] + along * (b - a)[:, None]).reshape(-1, 3)
    points = points[np.isfinite(points).all(1)]
    if not len(points) or not len(faces):
        return hand_v, hand_f, 0
    seam = cKDTree(points)
    reach = BLEND_M + BLEND_REACH_M[1]

    def blended(vertices, triangles):
        # the faces across the blend's band (BLEND_M inside the box to the overlap's end) near the seam
        at = _box_distance(vertices, lo, hi)[triangles]
        longest = np.linalg.norm(vertices[triangles] - vertices[np.roll(triangles, 1, axis=1)], axis=2).max(1)
        close = seam.query(vertices, k=1, distance_upper_bound=reach + 0.07)[0][triangles].min(1) < reach + longest
        return (at.max(1) > -SPLIT_DEPTH_M) & (at.min(1) < OVERLAP_M) & close

    face_type = np.asarray(hand_f).dtype
    v, hand_f = _split_long_edges(v, hand_f, blended, BLEND_EDGE_M)
    hand_f = hand_f.astype(face_type)
    near = np.nonzero(seam.query(v, k=1, distance_upper_bound=reach)[0] < np.inf)[0]
    if not len(near):
        return v.astype(np.asarray(hand_v).dtype), hand_f, 0
    used, local = np.unique(faces, return_inverse=True)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(bv[used].astype(np.float32)), o3d.core.Tensor(local.reshape(-1, 3).astype(np.uint32)))
    found = scene.compute_closest_points(o3d.core.Tensor(v[near].astype(np.float32)))
    closest = found["points"].numpy().astype(np.float64)
    normal = found["primitive_normals"].numpy().astype(np.float64)
    gap = np.linalg.norm(closest - v[near], axis=1)
    # the distance along the body to the seam, from the vertex's closest point on it (the vertex's
    # own distance would count the step it is to lose); all the way outside the box
    s = _box_distance(v[near], lo, hi)
    t = np.where(s >= 0, 1.0, np.clip(1.0 - seam.query(closest, k=1)[0] / BLEND_M, 0.0, 1.0))
    reach = np.clip((BLEND_REACH_M[1] - gap) / (BLEND_REACH_M[1] - BLEND_REACH_M[0]), 0.0, 1.0)
    weight = t * t * (3 - 2 * t) * reach
    offset = BLEND_EPS_M * (1.0 - 2.0 * np.clip(s, 0.0, OVERLAP_M) / OVERLAP_M)
    step = weight[:, None] * (closest + offset[:, None] * normal - v[near])
    # the solve's own cut stays where it is (`solved_in`: the cut box the hand was solved for, when
    # `cut` is the body's, a face of it moved out past a wafer or bulge: _body_cut_box)
    slo, shi = (np.asarray(x, np.float64) for x in (cut if solved_in is None else solved_in))
    glo, ghi = slo - OVERLAP_M - BLEND_PAST_M, shi + OVERLAP_M + BLEND_PAST_M
    tol = 1e-5
    step[((np.abs(v[near] - glo) < tol) | (np.abs(v[near] - ghi) < tol)).any(1)] = 0.0
    out = v.copy()
    out[near] = np.clip(v[near] + step, glo, ghi)
    return out.astype(np.asarray(hand_v).dtype), hand_f, int((weight > 0).sum())


def blend_hands(vertices, faces, hands: list) -> list:
    """_blend_to_body of each of `hands` ((the hand's vertices, faces, the body's cut box, the cut
    box it was solved for)) onto the body (vertices, faces): what HandSolve sends the geometry
    worker when it has solved the hands before the body was ready, while the build cuts the body."""
    return [_blend_to_body(hand_v, hand_f, vertices, faces, body_cut, cut) for hand_v, hand_f, body_cut, cut in hands]


def _blended_hands(vertices, faces, zones: list, solved: list, stats: dict, blended: list | None = None) -> list:
    """Each solved hand drawn onto the body at its box (_blend_to_body) and cut to its box grown by
    OVERLAP_M: manifold3d solids for the union (the hand unblended where the blend would not make
    a solid). blended: the blends already made (blend_hands), one per hand, or None."""
    hands = []
    stats["blend_vertices_moved"] = 0
    for k, (zone, s) in enumerate(zip(zones, solved)):
        body_cut = zone.body_cut_in(vertices)
        lo, hi = (np.asarray(x, np.float64) for x in body_cut)
        hand_v, hand_f, moved = (_blend_to_body(s["vertices"], s["faces"], vertices, faces, body_cut, zone.cut)
                                 if blended is None else blended[k])
        solid = _manifold(hand_v, hand_f) if moved else None
        if solid is None or solid.status().name != "NoError" or solid.volume() <= 0:
            solid, moved = _manifold(s["vertices"], s["faces"]), 0
        hands.append(solid ^ _box(lo - OVERLAP_M, hi + OVERLAP_M))
        stats["blend_vertices_moved"] += moved
    return hands


def replace_hands(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray | None, fine: SolidSamples):
    """Each hand of the closed body re-solved on its own, finer, and put in place of the body's.

    Per hand crop: a screened Poisson solve over a box around the hand (solve_hand: the crop's
    front and back samples, and the body's own vertices there that are not the replaced hand: the
    forearm, a torso behind), with cells of about LOCAL_CELL_M where the body's solve has 8-16 mm
    ones; then the body without the hand's box, united with the new solid inside that box (grown
    by OVERLAP_M, so the two overlap and join: join_hands). All here, one hand after the other;
    HandSolve runs the same steps with a hand in the worker process. Returns (vertices, faces,
    labels, stats); the body unchanged, with a note in stats, when the crops cannot be used this
    way.
    """
    stats = {"crops": [dict(c) for c in fine.stats]}
    note = _cannot_join(vertices, faces, labels)
    if note:
        stats["note"] = note
        return vertices, faces, labels, stats
    context = _body_context(vertices, faces, labels)
    zones = hand_zones(fine, context[0], context[2])
    solved = [solve_hand(*hand_inputs(fine, context, zone)) for zone in zones]
    return join_hands(vertices, faces, labels, fine, zones, solved, stats)


def _cannot_join(vertices, faces, labels) -> str | None:
    """Why the closed body cannot take new hands (a note), or None."""
    if labels is None:
        return "the closed surface has no part labels: the hands are the body's"
    try:
        import manifold3d  # noqa: F401
    except ImportError:
        return "manifold3d is not installed: the hands are the body's"
    return None


def _body_context(vertices, faces, labels):
    """The closed body's vertices, their normals and labels: the samples a hand is solved with."""
    from engine.geometry.surface import vertex_normals

    body_v = np.asarray(vertices, np.float64)
    return body_v, vertex_normals(body_v, np.asarray(faces, np.int64)).astype(np.float64), np.asarray(labels, np.uint8)


@dataclass
class HandZone:
    """Where one hand crop's hand is solved and cut (hand_zones)."""

    front_in: np.ndarray  # which of the crops' front samples (SolidSamples.front) are this hand's
    back_in: np.ndarray  # which of their back samples
    replaced: np.ndarray  # which of the body's samples are the hand replaced (not solved with)
    cut: tuple  # (lo, hi): the box the new hand replaces the body in, as the hand is solved for it
    solve_box: tuple  # (lo, hi): the box of the samples solved (the cut box and the body's context round it)
    body_cut: tuple | None = None  # `cut` as the body is cut with it (_body_cut_box), once asked for

    def body_cut_in(self, body_vertices: np.ndarray) -> tuple:
        """The box the body (its vertices: the body this zone was made for) is cut with:
        _body_cut_box, made once and kept for the cut, the blend and the union."""
        if self.body_cut is None:
            self.body_cut = _body_cut_box(body_vertices, self.cut)
        return self.body_cut


def hand_zones(fine: SolidSamples, points: np.ndarray, labels: np.ndarray) -> list[HandZone]:
    """Per region of `fine`, where its hand is solved and cut (a HandZone), given the body's
    samples (points N x 3, labels N).

    The body's own hand is its samples labelled hand, in the region, and near the crop's hand (a
    wrist labelled hand but not in the crop's hand pixels stays a sample, or the new solid would
    be dented there); the cut box covers it too, so no piece of the old mitten (its back is often
    thicker than the new hand's) stays outside."""
    from scipy.spatial import cKDTree

    front_p, back_p = fine.front[0], fine.back[0]
    points = np.asarray(points, np.float64)
    zones = []
    for region in fine.regions:
        front_in = fine.in_region(front_p, region)
        back_in = fine.in_region(back_p, region)
        hand = np.concatenate([front_p[front_in], back_p[back_in]])
        old = fine.replaced(points, labels, region)
        if old.any():
            distance, _ = cKDTree(hand).query(points[old], k=1)
            old[np.nonzero(old)[0][distance > OLD_HAND_REACH_M]] = False
        cut, solve_box = _zone_boxes(np.concatenate([hand, points[old]]))
        zones.append(HandZone(front_in, back_in, old, cut, solve_box))
    return zones


def hand_inputs(fine: SolidSamples, context, zone: HandZone) -> tuple:
    """What solve_hand needs for one hand: its oriented samples (the crop's, and the body's
    `context` samples in the zone's solve box that are not the hand replaced), the solve and cut boxes."""
    points_c, normals_c, _ = context
    zone_lo, zone_hi = zone.solve_box
    around = ((points_c >= zone_lo) & (points_c <= zone_hi)).all(1) & ~zone.replaced
    points = np.concatenate([points_c[around], fine.front[0][zone.front_in], fine.back[0][zone.back_in]])
    normals = np.concatenate([normals_c[around], fine.front[1][zone.front_in], fine.back[1][zone.back_in]])
    return points, normals, (zone_lo, zone_hi), zone.cut, int(around.sum())


def solve_hands(hands: list) -> list[dict]:
    """solve_hand on each of `hands` (hand_inputs' tuples), one after the other: what HandSolve
    sends the geometry worker in one request."""
    return [solve_hand(*hand) for hand in hands]


def solve_hand(points: np.ndarray, normals: np.ndarray, zone, cut, body_used: int) -> dict:
    """One hand's own solid: a screened Poisson solve of its samples over the zone's box (cells
    of about LOCAL_CELL_M), cut to the cut box grown by OVERLAP_M + BLEND_PAST_M (join_hands blends
    it onto the body, then cuts it to OVERLAP_M): {"vertices", "faces",
    "stats"}, or {"note"} when it did not close. Runs in the geometry worker process
    (solve_worker) or here."""
    from engine.geometry.watertight import CLOSED_POISSON_FULL_DEPTH, poisson_solid

    (zone_lo, zone_hi), (cut_lo, cut_hi) = zone, cut
    # marching cubes can leave a fold the cleanup cannot close (a hand seen end-on, its thin
    # back close to its front): then once more with cells twice as large
    new_hand = None
    for depth in (_local_depth(zone_lo, zone_hi), _local_depth(zone_lo, zone_hi) - 1):
        hand_v, hand_f, _, local = poisson_solid(points, normals, None, depth=depth, full_depth=CLOSED_POISSON_FULL_DEPTH)
        if not local["open_edges"]:
            new_hand = _manifold(hand_v, hand_f)
            # a solid wound inside out (negative volume) would cut the hand away, not add it
            if new_hand.status().name == "NoError" and new_hand.volume() > 0:
                break
        new_hand = None
    if new_hand is None:
        return {"note": "the hand's own solid did not close: the body's hand stays"}
    clipped = new_hand ^ _box(cut_lo - OVERLAP_M - BLEND_PAST_M, cut_hi + OVERLAP_M + BLEND_PAST_M)
    # marching cubes gives a flat palm as many triangles as a finger: merged where the surface
    # moves less than SIMPLIFY_M (the union, the frame and the textures cost per vertex)
    mesh = (clipped.simplify(SIMPLIFY_M) if SIMPLIFY_M > 0 else clipped).to_mesh()
    return {"vertices": np.asarray(mesh.vert_properties, np.float32)[:, :3].copy(),
            "faces": np.asarray(mesh.tri_verts, np.uint32).copy(),
            "stats": {"poisson_depth": depth, "cell_mm": round(1e3 * 1.1 * float((zone_hi - zone_lo).max()) / 2**depth, 2),
                      "body_vertices_used": body_used, "box_m": np.round(cut_hi - cut_lo, 4).tolist()}}


def cut_hand_boxes(vertices: np.ndarray, faces: np.ndarray, zones: list):
    """The closed body less every hand's cut box: its part near the boxes only (a
    near_boolean.NearCut: manifold3d's cost then follows that part, not the whole body), or,
    where that part cannot stand for the body, the whole body as a manifold3d solid less the
    boxes (one batch operation); None (and why) when the body is not a 2-manifold."""
    from engine.geometry import near_boolean

    near = near_boolean.cut(vertices, faces, [zone.body_cut_in(vertices) for zone in zones], OVERLAP_M + SEAM_BAND_M)
    if near is not None:
        return near, None
    return _whole_body_cut(vertices, faces, zones)


def _whole_body_cut(vertices: np.ndarray, faces: np.ndarray, zones: list):
    import manifold3d

    solid = _manifold(vertices, faces)
    if solid.status().name != "NoError":
        return None, f"the closed surface is not a 2-manifold ({solid.status().name}): the hands are the body's"
    return manifold3d.Manifold.batch_boolean([solid, *(_box(*zone.body_cut_in(vertices)) for zone in zones)],
                                             manifold3d.OpType.Subtract), None


def _nearest_labels(source_points: np.ndarray, source_labels: np.ndarray, points: np.ndarray,
                    margin: float = LABEL_MARGIN_M) -> np.ndarray:
    """labels.transfer_labels (the label of each point's nearest labelled source point) from the
    source points within `margin` of the points' box only (the new hands' vertices: a few
    thousand of the body's 100k+ points), when that provably picks the same source point: every
    point's nearest lies within half the margin (any source point outside the grown box is
    farther) and is the only one that near (a tie could be resolved otherwise by a smaller tree);
    else transfer_labels itself."""
    from scipy.spatial import cKDTree

    from engine.geometry.labels import transfer_labels

    labelled = np.asarray(source_labels) > 0
    points = np.asarray(points, np.float64)
    if len(points) and labelled.any():
        source = np.asarray(source_points, np.float64)[labelled]
        lo, hi = points.min(0) - margin, points.max(0) + margin
        near = np.nonzero(((source >= lo) & (source <= hi)).all(1))[0]
        if len(near) >= 2:
            distance, nearest = cKDTree(source[near]).query(points, k=2, workers=-1)
            if distance[:, 0].max() < 0.5 * margin and (distance[:, 0] < distance[:, 1]).all():
                return np.asarray(source_labels)[labelled][near[nearest[:, 0]]].astype(np.uint8)
    return transfer_labels(source_points, source_labels, points)


def join_hands(vertices, faces, labels, fine: SolidSamples, zones: list, solved: list, stats: dict, cut=None, blended=None):
    """The body less the hands' boxes (`cut`, from cut_hand_boxes; made here when None) united
    with the hands solve_hand made (on the body's part near the boxes when cut_hand_boxes made a
    near_boolean.NearCut, else the whole body's), each hand first drawn onto the body where the
    body leaves its box (_blended_hands); pieces of the body's mitten left
    outside the boxes dropped (under MIN_PIECE_FACES triangles), labels carried over from the
    body and the crops' samples. blended: the solved hands' blends made already (blend_hands,
    one per hand solved), or None. Returns (vertices, faces, labels, stats)."""
    import manifold3d

    from engine.geometry import near_boolean
    from engine.geometry.cleanup import face_components

    zones = [z for z, s in zip(zones, solved) if "note" not in s]
    for k, s in enumerate(solved):
        if "note" in s:
            stats["crops"][k]["note"] = s["note"]
        else:
            stats["crops"][k].update(s["stats"])
    if not zones:
        return vertices, faces, labels, stats
    if cut is None:
        cut, note = cut_hand_boxes(vertices, faces, zones)
        if cut is None:
            stats["note"] = note
            return vertices, faces, labels, stats
    hands = _blended_hands(vertices, faces, zones, [s for s in solved if "note" not in s], stats, blended)
    joined = near_boolean.union(cut, hands) if isinstance(cut, near_boolean.NearCut) else None
    if joined is not None:
        # body_index: the body's vertex a result vertex is, untouched and far from the seams, or -1
        out_v, out_f, body_index = joined
    else:
        if isinstance(cut, near_boolean.NearCut):  # a cap did not come out whole: the whole body's boolean
            cut, note = _whole_body_cut(vertices, faces, zones)
            if cut is None:
                stats["note"] = note
                return vertices, faces, labels, stats
            # imported again after the body, as that join imports them (manifold3d orders its
            # result by the solids' ids: the same bytes as when the near part was never tried)
            hands = _blended_hands(vertices, faces, zones, [s for s in solved if "note" not in s], {}, blended)
        mesh = manifold3d.Manifold.batch_boolean([cut, *hands], manifold3d.OpType.Add).to_mesh()
        out_v = np.asarray(mesh.vert_properties, np.float32)[:, :3]
        out_f = np.asarray(mesh.tri_verts, np.int64).reshape(-1, 3)
        body_index = np.full(len(out_v), -1, np.int64)
    stats["near_boolean"] = joined is not None
    # the pieces counted on the arrays (manifold3d's decompose and compose cost 0.25 s here)
    piece = face_components(out_f, len(out_v))
    sizes = np.bincount(piece)
    small = sizes < MIN_PIECE_FACES
    stats["pieces_dropped"] = int((small & (sizes > 0)).sum()) if not small[piece].all() else 0
    if stats["pieces_dropped"]:
        out_f = out_f[~small[piece]]
    present = np.bincount(out_f.ravel(), minlength=len(out_v)) > 0
    if not present.all():
        # the used vertices renumbered in order (np.unique's result, without its sort: 0.07 s)
        used = np.nonzero(present)[0]
        out_f = (np.cumsum(present) - 1)[out_f]
        out_v, body_index = out_v[used], body_index[used]
    else:  # every vertex used: the renumbering would be the identity
        out_v = np.ascontiguousarray(out_v)
    out_f = out_f.reshape(-1, 3).astype(np.int32)
    label_points, label_values = [np.asarray(vertices, np.float64)], [np.asarray(labels, np.uint8)]
    for zone in zones:
        label_points += [fine.front[0][zone.front_in], fine.back[0][zone.back_in]]
        label_values += [fine.front[2][zone.front_in], fine.back[2][zone.back_in]]
    # the body's own vertices keep their labels (the nearest labelled point is themselves)
    out_l = np.asarray(labels, np.uint8)[np.maximum(body_index, 0)]
    moved = body_index < 0
    out_l[moved] = _nearest_labels(np.concatenate(label_points), np.concatenate(label_values), out_v[moved])
    stats.update(vertices_before=int(len(vertices)), vertices=int(len(out_v)), faces=int(len(out_f)))
    return out_v, out_f, out_l, stats
