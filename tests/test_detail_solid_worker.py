"""The closed hands solved partly in the geometry worker process (engine.geometry.detail_solid.
HandSolve, engine.geometry.solve_worker): the same bytes as solved all in the build's process,
run to run; a killed or failing worker falls back with a note; a cancel reaches a build that
waits for it; the worker ends with the engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("open3d")
pytest.importorskip("manifold3d")

GUESS = {"scale": 1.3, "shift": (0.1, -0.05, 0.6)}


@pytest.fixture(scope="module")
def person():
    from engine.synthetic import make_person
    from engine.synthetic.crops import open_hands_pose

    return make_person(seed=2, pose=open_hands_pose())


@pytest.fixture(scope="module")
def crops(person):
    from engine.synthetic.crops import render_crops

    return render_crops(person, **GUESS)


@pytest.fixture(scope="module")
def worker():
    from engine.geometry import solve_worker

    started = solve_worker.shared()
    assert started is not None and started.wait_ready() > 0
    yield started
    solve_worker.shutdown()


def _aligned(person, crops):
    from engine.avatar import detail as stage
    from engine.avatar.stages import Inputs
    from engine.synthetic import to_bundle

    bundle = to_bundle(person)
    bundle.crops = crops[:2]
    inputs = Inputs(bundle, "test", bundle.K, "bundle")
    detail = stage.fuse_crop_maps(inputs, enabled=True, resolution="full")
    return inputs, detail


def _closed(inputs, detail, *, use_worker: bool, progress=None, kill_after: str | None = None, solved_first: bool = False,
            solves: list | None = None):
    """The closed surface with its hands solved by a HandSolve started as the build starts it;
    kill_after "start" or "hand": the worker killed right after it was sent the crops' samples
    to make, or the hands to solve (sent while the body is solved). solved_first: the worker's
    hands solved before the body's surface is applied (then the worker blends them too);
    solves: the HandSolve appended to it."""
    from engine.geometry import build_surface
    from engine.geometry.detail_solid import HandSolve

    solve = HandSolve.start(detail.aligned, inputs.K, progress=progress, use_worker=use_worker)
    if kill_after == "start":
        _kill(solve.worker)
    if kill_after == "hand":
        submit = solve.worker.submit
        killed = []

        def submit_then_kill(function, *args):
            future = submit(function, *args)
            if function.__name__ == "solve_hands" and not killed:
                killed.append(True)
                _kill(solve.worker)
            return future

        solve.worker.submit = submit_then_kill
    built = build_surface(inputs.bundle, detail="normals", watertight=True, on_samples=solve.body_samples)
    if solved_first:
        solve._planned[2].result()
    if solves is not None:
        solves.append(solve)
    return solve.apply(built.vertices, built.faces, built.vertex_labels)


def _kill(worker) -> None:
    os.kill(worker.process.pid, signal.SIGKILL)


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a[:3], b[:3]))


def test_hands_solved_in_the_worker_are_the_bytes_solved_here(person, crops, worker):
    inputs, detail = _aligned(person, crops)
    in_worker = _closed(inputs, detail, use_worker=True)
    again = _closed(inputs, detail, use_worker=True)
    here = _closed(inputs, detail, use_worker=False)
    stats = in_worker[3]
    assert stats["hands_solved_in_worker"] == 2 and "notes" not in stats, stats
    assert here[3]["hands_solved_in_worker"] == 0
    assert stats["near_boolean"], "the hands were joined on the whole body, not its part near them"
    assert [c.get("poisson_depth") for c in stats["crops"]] == [7, 7], stats["crops"]
    assert len(in_worker[0]) > 1.05 * stats["vertices_before"]   # the hands' finer solids are in
    assert _same(in_worker, again), "the worker's hands differ run to run"
    assert _same(in_worker, here), "the worker's hands differ from the build process's"
    # a closed 2-manifold: every directed edge once, and its reverse once
    faces = np.asarray(in_worker[1], np.int64)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = directed[:, 0] * len(in_worker[0]) + directed[:, 1]
    assert len(np.unique(key)) == len(key)
    assert np.isin(directed[:, 1] * len(in_worker[0]) + directed[:, 0], key).all()


def test_the_hands_go_to_the_worker_in_one_request(person, crops, worker):
    """The crops' samples, then every hand's solve in one request, sent when the worker is idle:
    a second request sent while it solved the first hand would hold the build's process in the
    send (a request of megabytes, more than the pipe holds) instead of solving the body."""
    inputs, detail = _aligned(person, crops)
    sent = []
    submit = worker.submit

    def recorded(function, *args):
        sent.append(function.__name__)
        return submit(function, *args)

    worker.submit = recorded
    try:
        stats = _closed(inputs, detail, use_worker=True)[3]
    finally:
        del worker.submit
    # and, when the hands were solved before the body (a worker that kept up), their blends
    # onto the body, sent once the worker is idle again
    assert sent in (["hand_solid_samples", "solve_hands"], ["hand_solid_samples", "solve_hands", "blend_hands"]), sent
    assert stats["hands_solved_in_worker"] == 2


def test_hands_blended_in_the_worker_are_the_bytes_blended_here(person, crops, worker):
    """Hands the worker solved before the body's surface was ready are drawn onto the body there
    (blend_hands) while the build cuts the body's boxes: the same bytes and statistics as
    blended in the build's process, and as all made here."""
    inputs, detail = _aligned(person, crops)
    solves = []
    first = _closed(inputs, detail, use_worker=True, solved_first=True, solves=solves)
    assert solves[0].blended_in_worker == 2 and solves[0].solved_in_worker == 2
    here = _closed(inputs, detail, use_worker=False, solves=solves)
    assert solves[1].blended_in_worker == 0
    assert _same(first, here), "the hands blended in the worker differ from those blended here"
    stats, expected = dict(first[3]), dict(here[3])
    assert stats.pop("hands_solved_in_worker") == 2 and expected.pop("hands_solved_in_worker") == 0
    assert stats == expected and stats["blend_vertices_moved"] > 0


def test_the_hands_joined_on_the_near_part_are_the_whole_bodys_join(person, crops):
    """join_hands on the body's part near the hands' boxes (near_boolean) against the whole
    body's booleans: the same solid (volume, every vertex on the other's), the same labels."""
    from scipy.spatial import cKDTree

    from engine.geometry import build_surface, detail_solid
    from engine.geometry.near_boolean import NearCut

    inputs, detail = _aligned(person, crops)
    fine, _ = detail_solid.hand_solid_samples(detail.aligned, inputs.K)
    built = build_surface(inputs.bundle, detail="normals", watertight=True)
    v, f, l = built.vertices, built.faces, built.vertex_labels
    context = detail_solid._body_context(v, f, l)
    zones = detail_solid.hand_zones(fine, context[0], context[2])
    solved = [detail_solid.solve_hand(*detail_solid.hand_inputs(fine, context, zone)) for zone in zones]
    joined = []
    for cut, _ in (detail_solid.cut_hand_boxes(v, f, zones), detail_solid._whole_body_cut(v, f, zones)):
        joined.append(detail_solid.join_hands(v, f, l, fine, zones, solved, {"crops": [dict(c) for c in fine.stats]}, cut=cut))
        assert joined[-1][3]["near_boolean"] == isinstance(cut, NearCut)
    (near_v, near_f, near_l, near_stats), (whole_v, whole_f, whole_l, _) = joined
    assert near_stats["near_boolean"]

    def volume(vertices, faces):
        t = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
        return np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0

    assert volume(near_v, near_f) == pytest.approx(volume(whole_v, whole_f), rel=1e-5)
    distance, nearest = cKDTree(whole_v).query(near_v)
    assert distance.max() < 5e-4 and cKDTree(near_v).query(whole_v)[0].max() < 5e-4
    assert (near_l[distance < 1e-6] == whole_l[nearest[distance < 1e-6]]).mean() > 0.999
    # a near part whose union cannot stand for the body's falls back to the whole body's join
    from engine.geometry import near_boolean

    union, near_boolean.union = near_boolean.union, lambda near, solids: None
    try:
        fallback = detail_solid.join_hands(v, f, l, fine, zones, solved, {"crops": [dict(c) for c in fine.stats]},
                                           cut=detail_solid.cut_hand_boxes(v, f, zones)[0])
    finally:
        near_boolean.union = union
    assert not fallback[3]["near_boolean"] and _same(fallback, joined[1])


@pytest.mark.parametrize("kill_after", ["start", "hand"])
def test_a_killed_worker_falls_back_to_the_build_process_with_a_note(person, crops, worker, kill_after):
    """Killed while it makes the crops' samples, or while it solves a hand: the build makes them
    itself, the same bytes, and says so; the next build starts a fresh worker."""
    from engine.geometry import solve_worker

    inputs, detail = _aligned(person, crops)
    here = _closed(inputs, detail, use_worker=False)
    solve_worker.shared().wait_ready()
    began = time.monotonic()
    lost = _closed(inputs, detail, use_worker=True, kill_after=kill_after)
    assert time.monotonic() - began < 120
    assert _same(lost, here), "the fallback's hands differ from the build process's own"
    assert lost[3]["hands_solved_in_worker"] == 0
    assert any("solve process failed" in note and "solved in the build's process" in note for note in lost[3]["notes"]), lost[3]
    fresh = solve_worker.shared()
    assert fresh is not None and fresh.alive and fresh.wait_ready() > 0
    assert _closed(inputs, detail, use_worker=True)[3]["hands_solved_in_worker"] == 2


def test_a_cancel_reaches_a_build_waiting_for_the_worker(person, crops):
    from engine.errors import Cancelled
    from engine.geometry import solve_worker
    from engine.geometry.detail_solid import HandSolve

    inputs, detail = _aligned(person, crops)
    solve_worker.shared().wait_ready()
    calls = []

    def progress(stage, fraction, message):
        calls.append(stage)
        raise Cancelled("cancelled by the test")

    solve = HandSolve.start(detail.aligned, inputs.K, progress=progress)
    pid = solve.worker.process.pid
    os.kill(pid, signal.SIGSTOP)   # the worker cannot answer: the build waits, polling its progress
    try:
        with pytest.raises(Cancelled):
            solve.samples()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert calls == ["surface"]


def test_a_function_failing_in_the_worker_fails_its_future_only():
    from engine.geometry import solve_worker
    from engine.geometry.detail_solid import hand_solid_samples

    worker = solve_worker.shared()

    failed = worker.submit(hand_solid_samples, "not crops", None)
    with pytest.raises(solve_worker.WorkerError, match="Error"):
        failed.result(timeout=60)
    assert worker.alive
    with pytest.raises(ValueError, match="engine.geometry functions only"):
        worker.submit(os.getpid)


def test_the_worker_ends_with_the_engine_process(tmp_path):
    """Killed without a chance to clean up, the engine leaves no worker behind: the worker's
    request pipe reads end-of-file and it exits."""
    script = ("import sys, time\n"
              "from engine.geometry import solve_worker\n"
              "w = solve_worker.shared(); w.wait_ready()\n"
              "print(w.process.pid, flush=True)\n"
              "time.sleep(600)\n")
    engine = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(engine.stdout.readline())
        assert _running(worker_pid)
    finally:
        engine.kill()
        engine.wait()
    deadline = time.monotonic() + 20
    while _running(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(worker_pid), "the worker outlived the engine process"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_hand_back_is_at_most_the_hand_thickness_behind_its_front():
    """A crop's hand back samples deeper than HAND_MAX_THICKNESS_M behind the front of their own
    pixel move along their rays to that depth; shallower ones, and other parts', stay."""
    from engine.geometry.detail_solid import HAND_MAX_THICKNESS_M, _thinned_hand_back

    K = np.array([[100.0, 0, 2.0], [0, 100.0, 2.0], [0, 0, 1]])
    rows, cols = np.mgrid[0:4, 0:4]
    rays = np.stack([(cols + 0.5 - 2.0) / 100.0, (rows + 0.5 - 2.0) / 100.0, np.ones((4, 4))], -1)
    front = (rays * 2.0).astype(np.float32)                       # a flat front 2 m away
    pixels = [(0, 0), (1, 2), (3, 3)]
    depth = np.array([2.0 + 3 * HAND_MAX_THICKNESS_M, 2.0 + 0.5 * HAND_MAX_THICKNESS_M, 2.5])
    back = np.stack([rays[r, c] * d for (r, c), d in zip(pixels, depth)]).astype(np.float32)
    labels = np.array([14, 14, 3], np.uint8)                       # hand, hand, another part
    out = _thinned_hand_back(back, labels, front, K, np.array([14], np.uint8))
    assert out[0, 2] == pytest.approx(2.0 + HAND_MAX_THICKNESS_M, abs=1e-5)
    assert np.allclose(np.cross(out[0], back[0]), 0, atol=1e-6)    # along its own ray
    assert np.array_equal(out[1:], back[1:])


def test_the_hands_take_the_bodys_samples_given_to_build_surface(person, crops):
    """build_surface(on_samples=HandSolve.body_samples) gives the HandSolve the body's Poisson
    samples (its hands' context) before the body's solve, once; a surface built without it
    leaves the HandSolve without them (its hands' context is then the body's vertices)."""
    from engine.geometry import build_surface
    from engine.geometry.detail_solid import HandSolve

    inputs, detail = _aligned(person, crops)
    unused = HandSolve.start(detail.aligned, inputs.K, use_worker=False)
    build_surface(inputs.bundle, detail="normals", watertight=True)
    assert unused._planned is None
    solve = HandSolve.start(detail.aligned, inputs.K, use_worker=False)
    events, sizes = [], []

    def given(points, normals, labels):
        events.append("samples")
        sizes.append(len(points))
        solve.body_samples(points, normals, labels)

    build_surface(inputs.bundle, detail="normals", watertight=True, on_samples=given,
                  progress=lambda stage, fraction, message: events.append(message))
    assert events.count("samples") == 1 and sizes[0] > 10000
    assert events.index("samples") < events.index("screened Poisson done")
    zones, inputs_, future = solve._planned
    assert len(zones) == 2 and future is None
    # the context: body samples near each hand, beside the crop's own
    assert all(hand[4] > 0 for hand in inputs_)
