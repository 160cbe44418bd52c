"""The modal/timer path without an event loop: bpy as a module never fires timers, so these tests
call the function the timer calls (`operators.poll_run`) themselves, as Blender would every 0.1 s,
and the modal operator's own `modal()` with timer and Esc events. A real engine subprocess runs
the jobs (its `debug.sleep` method reports progress, stage "sleep", without models)."""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import pytest

bpy = pytest.importorskip("bpy")

from blender_support import addon, scene_snapshot  # noqa: E402,F401

from sapiens_blender import operators  # noqa: E402
from sapiens_blender.engine_session import SESSION  # noqa: E402
from sapiens_blender.panel import draw_status_bar  # noqa: E402

pytestmark = pytest.mark.blender
TICK_S = 0.05


class Reports(list):
    """Collects what an operator's `report` would show: [(type, message)]."""

    def __call__(self, types, message):
        self.append((next(iter(types)), message))


class StatusBarLayout:
    """A stand-in for the status bar's layout: records what draw_status_bar draws."""

    def __init__(self):
        self.drawn = []

    def row(self, **_):
        return self

    def progress(self, factor, type, text):  # noqa: A002
        self.drawn.append(("progress", round(factor, 3), text))

    def label(self, text):
        self.drawn.append(("label", text))

    def operator(self, idname, **_):
        self.drawn.append(("operator", idname))


def tick_until_done(report, on_tick=None, timeout=60.0):
    """Call the timer function until the run is over; returns (outcome, samples of the status)."""
    status = bpy.context.window_manager.sapiens_status
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(TICK_S)
        outcome = operators.poll_run(bpy.context, report)
        samples.append((status.stage, status.fraction, status.running))
        if outcome is not None:
            return outcome, samples
        if on_tick:
            on_tick(samples)
    raise AssertionError(f"the run did not end within {timeout} s: {samples[-3:]}")


def test_timer_ticks_show_progress_then_report_the_end(addon):
    report = Reports()
    status = bpy.context.window_manager.sapiens_status
    assert operators.start_run(bpy.context, report, debug_sleep_steps=30)
    assert status.running and operators.ACTIVE is not None
    assert not bpy.ops.sapiens.run.poll(), "one run at a time"
    drawn = []

    def draw_status(samples):
        layout = StatusBarLayout()
        draw_status_bar(SimpleNamespace(layout=layout), bpy.context)
        drawn.append(layout.drawn)

    outcome, samples = tick_until_done(report, draw_status)
    sleep = [fraction for stage, fraction, running in samples if stage == "sleep" and running]
    assert len(sleep) >= 3 and sleep == sorted(sleep), "progress only goes forward"
    assert any(0.0 < f < 1.0 for f in sleep)
    assert all(running for _, _, running in samples[:-1]) and not samples[-1][2]
    # the status bar showed the stage and a cancel button while the job ran, and nothing after
    shown = [d for d in drawn if d]
    assert shown and all(("operator", "sapiens.cancel") in d for d in shown)
    assert any(d[0][0] == "progress" and "sleep" in d[0][-1] for d in shown)
    layout = StatusBarLayout()
    draw_status_bar(SimpleNamespace(layout=layout), bpy.context)
    assert layout.drawn == []
    # after the debug job the run goes on to predict, which has no checkpoints here: reported in words
    assert outcome == {"CANCELLED"} and report[-1][0] == "ERROR" and "checkpoint" in report[-1][1]
    assert operators.ACTIVE is None and status.error == report[-1][1]


def test_esc_in_the_modal_operator_cancels_and_the_timer_is_removed(addon):
    report = Reports()
    wm = bpy.context.window_manager
    before = scene_snapshot()
    assert operators.start_run(bpy.context, report, debug_sleep_steps=400)
    # the operator's modal() as Blender calls it: with its timer, on timer and key events
    op = SimpleNamespace(report=report, _timer=wm.event_timer_add(0.1, window=bpy.context.window))
    modal = operators.SAPIENS_OT_run.modal
    outcome = None
    deadline = time.monotonic() + 60
    while outcome is None and time.monotonic() < deadline:
        time.sleep(TICK_S)
        result = modal(op, bpy.context, SimpleNamespace(type="TIMER"))
        if result != {"PASS_THROUGH"}:
            outcome = result
        elif wm.sapiens_status.stage == "sleep" and wm.sapiens_status.fraction > 0:
            assert modal(op, bpy.context, SimpleNamespace(type="ESC")) == {"PASS_THROUGH"}
    assert outcome == {"CANCELLED"} and op._timer is None, "the timer is removed when the run ends"
    assert report[-1][0] == "WARNING" and "scene is unchanged" in report[-1][1]
    assert wm.sapiens_status.message == "cancelled" and not wm.sapiens_status.running
    assert scene_snapshot() == before
    assert SESSION.current.alive, "cancel keeps the engine"


def test_cancel_button_while_the_timer_polls(addon):
    report = Reports()
    assert operators.start_run(bpy.context, report, debug_sleep_steps=400)
    pressed = []

    def press_cancel(samples):
        if not pressed and samples[-1][0] == "sleep" and samples[-1][1] > 0:
            pressed.append(bpy.ops.sapiens.cancel())

    outcome, samples = tick_until_done(report, press_cancel)
    assert pressed == [{"FINISHED"}] and outcome == {"CANCELLED"}
    assert max(f for _, f, _ in samples) < 0.5, "stopped early, not at the end of the job"
    assert bpy.context.window_manager.sapiens_status.message == "cancelled"


def test_killed_engine_is_reported_by_the_timer_and_restarted_next_time(addon):
    report = Reports()
    before = scene_snapshot()
    assert operators.start_run(bpy.context, report, debug_sleep_steps=400)
    killed = []

    def kill_engine(samples):
        if not killed and samples[-1][0] == "sleep" and samples[-1][1] > 0:
            killed.append(SESSION.current)
            os.kill(SESSION.current.pid, signal.SIGKILL)

    outcome, _ = tick_until_done(report, kill_engine)
    assert killed and outcome == {"CANCELLED"}
    assert report[-1][0] == "ERROR" and "stopped unexpectedly" in report[-1][1]
    assert "restarted on the next run" in bpy.context.window_manager.sapiens_status.error
    assert scene_snapshot() == before and not bpy.context.window_manager.sapiens_status.running
    # the next run gets a new engine, whose debug job runs to its end
    report.clear()
    assert operators.start_run(bpy.context, report, debug_sleep_steps=3)
    _, samples = tick_until_done(report)
    assert SESSION.current is not killed[0] and SESSION.current.alive
    assert "stopped unexpectedly" not in report[-1][1]
