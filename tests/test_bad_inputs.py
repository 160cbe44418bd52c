"""Bad inputs across the CLI and the stdio protocol (issue 11): the fast subset of bench/bad_inputs.py.

Each case must be handled: refused in words (or, for odd but valid inputs, done), no traceback shown,
no user file touched, nothing half-written left. The bench runs every case (including the ones with
a model pass or a Ray start) and prints the closing figure; this runs the ones that take seconds.
CLI photo and checkpoint cases (each imports torch and hashes checkpoints in a new process) run here
through the protocol, whose one engine process loads once.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bad_inputs.py"
_spec = importlib.util.spec_from_file_location("bad_inputs", BENCH)
bad_inputs = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bad_inputs", bad_inputs)    # its dataclasses look their module up there
_spec.loader.exec_module(bad_inputs)

SLOW_IN_A_NEW_PROCESS = ("photo:", "checkpoint:")
# bugs in areas other engineers own, reported to the lead; strict: the test says so once they are fixed
KNOWN = {
}
CASES = [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(reason=KNOWN[c.name], strict=True)] if c.name in KNOWN else [])
         for c in bad_inputs.select(fast=True) if c.via == "serve" or not c.name.startswith(SLOW_IN_A_NEW_PROCESS)]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    workspace = bad_inputs.Workspace(tmp_path_factory.mktemp("bad_inputs"))
    yield workspace
    workspace.close()


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_handled(ws, case):
    result = bad_inputs.run_case(ws, case)
    assert bad_inputs.DATA_LOST not in result.problems, result.detail
    assert bad_inputs.TRACEBACK not in result.problems, result.detail
    assert result.verdict == bad_inputs.HANDLED, (f"{result.verdict}: {result.detail} | message: {result.message!r}"
                                                  f" | owner: {case.owner}")


# ------------------------------------------------------------------ the classification can fail


def test_a_good_request_sent_as_a_bad_one_counts_as_accepted(ws):
    ping = bad_inputs.Case("ping taken for a bad input", "serve", lambda w, out: {"id": "p", "method": "ping"})
    assert bad_inputs.run_case(ws, ping).verdict == bad_inputs.ACCEPTED


def test_a_touched_user_file_counts_as_data_lost_even_when_refused(ws):
    def make(w, out):
        (w.user / "notes.txt").write_text("overwritten")
        return bad_inputs.Outcome(True, "refused, but after the damage", False)
    try:
        result = bad_inputs.run_case(ws, bad_inputs.Case("clobber", "cli", make))
    finally:
        (ws.user / "notes.txt").write_text(bad_inputs.USER_TEXT)
    assert result.verdict == bad_inputs.DATA_LOST and "user/notes.txt" in result.detail


def test_a_refusal_that_leaves_output_or_a_temporary_counts_as_half_written(ws):
    def make(w, out):
        (out / "mesh.ply").parent.mkdir(parents=True)
        (out / "mesh.ply").write_text("half")
        (w.out / ".avatar.tmp").mkdir()
        return bad_inputs.Outcome(True, "could not finish the avatar", False)
    try:
        result = bad_inputs.run_case(ws, bad_inputs.Case("half", "cli", make))
    finally:
        shutil.rmtree(ws.out / ".avatar.tmp", ignore_errors=True)
    assert result.verdict == bad_inputs.HALF_WRITTEN


def test_a_refusal_without_words_and_a_traceback_are_told_apart(ws):
    bare = bad_inputs.run_case(ws, bad_inputs.Case("bare", "cli", lambda w, out: bad_inputs.Outcome(True, "^)", False)))
    assert bare.verdict == bad_inputs.NO_WORDS
    trace = bad_inputs.run_case(ws, bad_inputs.Case("trace", "cli", lambda w, out: ["build", "--out"]))
    assert trace.verdict == bad_inputs.HANDLED        # argparse's refusal: words, no traceback
    crash = bad_inputs.Outcome(True, "ValueError: x must be finite", True)
    assert bad_inputs.run_case(ws, bad_inputs.Case("crash", "cli", lambda w, out: crash)).verdict == bad_inputs.TRACEBACK


def test_bundle_names_are_single_visible_distinct_folder_names():
    """Photos named `..png`, `...png`, `.hidden.png`, with a backslash or a 300-byte stem: each bundle
    is one visible folder inside --out, none shares a name, and the same list names them the same."""
    import os

    from engine.predict import bundle_names

    photos = ["x/..png", "x/...png", "x/_.png", "x/.hidden.png", "x/_hidden.png", "x/a\\b.png",
              "x/" + "\u00e9" * 150 + ".png", "x/" + "\u00e9" * 150 + ".jpg", "y/..png", "photo.png"]
    names = bundle_names(photos)
    assert len(set(names)) == len(photos)
    for name in names:
        assert not name.startswith(".") and "/" not in name and "\\" not in name, name
        assert len(os.fsencode(name)) <= 180, name
    assert names[1] == "__" and names[-1] == "photo"
    assert bundle_names(photos) == names


def test_a_legacy_pth_loads_and_one_holding_code_is_refused_in_the_engines_words(tmp_path):
    """torch maps only its zip format into memory: a legacy .pth is read whole, still weights-only."""
    import os

    import torch

    from engine.errors import CheckpointError
    from engine.models.loading import read_state_dict

    weights = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    torch.save(weights, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    loaded = read_state_dict(tmp_path / "legacy.pth")
    assert loaded.keys() == weights.keys() and all(torch.equal(loaded[k], weights[k]) for k in weights)

    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    for zipped in (False, True):
        torch.save({"x": Evil()}, tmp_path / "code.pth", _use_new_zipfile_serialization=zipped)
        with pytest.raises(CheckpointError, match="run code stored in the file .it calls posix.system") as err:
            read_state_dict(tmp_path / "code.pth")
        assert "weights_only" not in str(err.value) and "mmap" not in str(err.value)
    (tmp_path / "noise.pth").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint of plain tensors"):
        read_state_dict(tmp_path / "noise.pth")
    assert not marker.exists()


def test_ctrl_c_that_surfaces_as_an_import_error_is_said_as_an_interrupt(monkeypatch, capsys):
    """Ctrl-C while a C extension initialises (open3d, imported when the surface is closed) comes
    out as that import's ImportError: still the user's interrupt, said in words, exit 130."""
    import os
    import signal
    import time

    from engine import cli

    class Command:
        @staticmethod
        def add_arguments(parser):
            pass

        @staticmethod
        def run(args):
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            except KeyboardInterrupt as exc:
                raise ImportError("initialization failed") from exc

    monkeypatch.setattr(cli, "_load", lambda name: Command)
    assert cli.main(["build"]) == 130
    assert capsys.readouterr().err.strip().endswith("sapiens-engine build: interrupted")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler      # the handler is put back


def _line_of(frame: str) -> int:
    """The line number of a traceback's `File "...", line N, in ...`."""
    return int(frame.split(", line ")[1].split(",")[0])


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_early_in_start_up_exits_130_with_one_line():
    """Ctrl-C at any moment of `sapiens-engine serve`'s start-up: exit 130 and one line saying
    "interrupted", never Python's traceback (it used to come while the CLI module imported).

    What comes before the engine's CLI module runs is outside its reach, and allowed: a signal
    before Python installs its own handler ends the process by SIGINT, silently (a shell shows
    130); one while the interpreter sets itself up (its streams, site) or finds and loads the
    `engine` package gets Python's traceback with no frame of the CLI. The console script runs with `python -S` and the engine on
    PYTHONPATH, which leaves out the site module's .pth files (setuptools' editable-install finder
    imports pathlib there for 25 ms, before any engine code)."""
    import os
    import signal
    import subprocess
    import sysconfig
    import time

    script = Path(sys.executable).with_name("sapiens-engine")
    if not script.is_file():
        pytest.skip("the console script is not installed beside this Python")
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), sysconfig.get_paths()["purelib"]])}
    command = [sys.executable, "-S", str(script), "serve"]
    started = time.monotonic()   # the delays follow this machine's start-up time (load changes it)
    ready = subprocess.run(command, cwd=repo, env=env, input=b"", capture_output=True, timeout=60)
    start_up = time.monotonic() - started
    assert ready.returncode == 0 and b'"event":"ready"' in ready.stdout, ready
    cli_source = (repo / "engine" / "cli.py").read_text().splitlines()
    handler_line = next((n for n, text in enumerate(cli_source, 1) if "SIGINT, _interrupted_outside_main)" in text), 0)
    outcomes = []
    for delay in [start_up * f for f in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)] * 2:
        proc = subprocess.Popen(command, cwd=repo, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)    # stdin stays open: only the interrupt ends serve
        lines = err.decode(errors="replace").strip().splitlines()
        outcomes.append((delay, proc.returncode, lines))
        if proc.returncode == -signal.SIGINT and not lines:
            continue                             # before Python's own handler: nothing ran
        # "KeyboardInterrupt:" when it came while the interpreter set up __main__'s loader ("python:
        # failed to set __main__.__loader__", exit 1; seen once in CI's run, 2026-12-04)
        if proc.returncode != 130 and lines and lines[-1] in ("KeyboardInterrupt", "KeyboardInterrupt:"):
            # Python's start-up (its streams, site) or the import of the `engine` package: allowed
            # only before the CLI's handler is in place (a signal that came while the interpreter
            # loaded engine/cli.py is raised at its first line), so no frame of another engine file
            frames = [line for line in lines if line.lstrip().startswith("File ")]
            assert not [f for f in frames if str(repo / "engine") in f and "__init__.py" not in f
                        and not (str(repo / "engine" / "cli.py") in f and _line_of(f) < handler_line)], (delay, lines)
            continue
        assert proc.returncode == 130 and not any("Traceback" in line for line in lines), (delay, proc.returncode, lines)
        assert [line for line in lines if "interrupted" in line] == ["sapiens-engine serve: interrupted"], (delay, lines)
        assert lines[-1] == "sapiens-engine serve: interrupted", (delay, lines)
    assert sum(code == 130 for _, code, _ in outcomes) >= 6, outcomes   # most came once the engine's code ran


def test_the_compile_option_accepts_exactly_the_runtime_modes():
    """The option table cannot import torch; its pattern must still name exactly the modes the runtime takes."""
    from engine.options import BY_NAME
    from engine.runtime.torch_backend import COMPILE_MODES

    assert sorted(BY_NAME["compile"].pattern.split("|")) == sorted(COMPILE_MODES)
