"""Nothing lost, nothing half-made (issue 11): the shared publish step and every writer.

- The publish step (engine.fileio.atomic_directory) never replaces a folder that is not an earlier
  output of the same kind; it replaces an earlier one; a process that dies between its two renames
  leaves a backup the next writer renames back; temporaries of killed processes are cleaned.
- A full disk while writing an EXR (OpenEXR raises RuntimeError) says "no space left on device".
- Every writer, given an existing folder of the user's things as its output, fails in words and
  leaves the user's file as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine import fileio
from engine.errors import BundleError

REPO_ROOT = Path(__file__).resolve().parent.parent
USER_TEXT = "my notes, not an engine output\n"


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text(USER_TEXT)
    return path


def _untouched(path: Path) -> None:
    assert (path / "notes.txt").read_text() == USER_TEXT
    assert sorted(p.name for p in path.iterdir()) == ["notes.txt"]


def _hidden_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture(autouse=True)
def _fresh_sweep(monkeypatch):
    """Each test is a 'next run': the once-per-folder sweep starts afresh."""
    monkeypatch.setattr(fileio, "_swept", {})


def _publish(out: Path, manifest: str, text: str = "new") -> None:
    with fileio.atomic_directory(out, BundleError) as tmp:
        (tmp / manifest).write_text("{}")
        (tmp / "data.txt").write_text(text)


# --------------------------------------------------------------------------- the publish step


def test_publish_refuses_a_folder_that_is_not_an_output_of_its_kind(tmp_path):
    user = _user_folder(tmp_path / "photo")
    with pytest.raises(BundleError, match=r"exists and is not a predictions bundle \(no bundle.json\)"):
        _publish(user, "bundle.json")
    _untouched(user)
    assert _hidden_leftovers(tmp_path) == []
    # an avatar is not a bundle either
    _publish(tmp_path / "avatar", "avatar.json")
    with pytest.raises(BundleError, match="is not a predictions bundle"):
        _publish(tmp_path / "avatar", "bundle.json")
    assert (tmp_path / "avatar" / "avatar.json").is_file()
    # a file in the way is refused too
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="exists and is not a folder"):
        _publish(tmp_path / "file", "bundle.json")
    assert (tmp_path / "file").read_text() == "x"


def test_publish_replaces_an_earlier_output_and_fills_an_empty_folder(tmp_path):
    out = tmp_path / "photo"
    _publish(out, "bundle.json", "first")
    _publish(out, "bundle.json", "second")
    assert (out / "data.txt").read_text() == "second"
    empty = tmp_path / "empty"
    empty.mkdir()
    _publish(empty, "avatar.json")
    assert (empty / "avatar.json").is_file()
    assert _hidden_leftovers(tmp_path) == []


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_a_death_between_the_two_renames_is_recovered_by_the_next_run(tmp_path):
    out = tmp_path / "photo"
    _publish(out, "bundle.json", "earlier")
    # a writer that dies right after moving the earlier output aside, before renaming the new one in
    proc = _run_python(f"""
        import os
        from engine import fileio
        real = os.replace
        def dying_replace(src, dst):
            real(src, dst)
            if str(dst).endswith(".old"):
                os._exit(9)
        os.replace = dying_replace
        with fileio.atomic_directory({str(out)!r}) as tmp:
            (tmp / "bundle.json").write_text("{{}}")
            (tmp / "data.txt").write_text("never published")
    """, tmp_path)
    assert proc.returncode == 9, proc.stderr
    assert not out.exists()                                       # only the hidden backup is left
    assert any(name.endswith(".old") for name in _hidden_leftovers(tmp_path))
    # the next run into this folder renames the backup back, then publishes normally
    fileio._swept.clear()
    _publish(tmp_path / "other", "bundle.json")
    assert (out / "data.txt").read_text() == "earlier"
    assert _hidden_leftovers(tmp_path) == []
    _publish(out, "bundle.json", "next")
    assert (out / "data.txt").read_text() == "next"


def test_temporaries_of_killed_writers_are_cleaned_and_live_ones_kept(tmp_path):
    proc = _run_python(f"""
        import os
        from engine import fileio
        with fileio.atomic_directory({str(tmp_path / "photo")!r}) as tmp:
            (tmp / "half.exr").write_bytes(b"half written")
            os._exit(9)
    """, tmp_path)
    assert proc.returncode == 9, proc.stderr
    stale = _hidden_leftovers(tmp_path)
    assert len(stale) == 1 and stale[0].startswith(".photo.") and stale[0].endswith(".tmp")
    # a temporary of a live writer (another process) is not touched
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_tmp = tmp_path / f".other.{fileio._HOST}-{live.pid}.abcd.tmp"
        live_tmp.mkdir()
        fileio._swept.clear()
        _publish(tmp_path / "photo", "bundle.json")
        assert _hidden_leftovers(tmp_path) == [live_tmp.name]
    finally:
        live.kill()
        live.wait()
    assert (tmp_path / "photo" / "bundle.json").is_file()


def _sample_bundle():
    from engine.bundle import read_bundle
    from engine.paths import asset

    return read_bundle(asset("sample"))


def test_a_full_disk_while_writing_an_exr_says_so(tmp_path, monkeypatch):
    """OpenEXR raises RuntimeError('... No space left on device.'), not OSError."""
    import OpenEXR

    from engine.bundle import write_bundle

    real_file = OpenEXR.File

    class FullDisk:
        def __init__(self, *args, **kwargs):
            real_file(*args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, path):
            raise RuntimeError(f'Failed to write pixel data to image file "{path}". No space left on device.')

    bundle = _sample_bundle()
    monkeypatch.setattr(OpenEXR, "File", FullDisk)
    with pytest.raises(BundleError, match="cannot write \\(no space left on device\\)"):
        write_bundle(bundle, tmp_path / "photo")
    assert not (tmp_path / "photo").exists() and _hidden_leftovers(tmp_path) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here: " + done.stderr.decode(errors="replace").strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_really_full_disk_while_writing_a_bundle(tiny_disk):
    from engine.bundle import write_bundle

    with pytest.raises(BundleError, match="no space left on device"):
        write_bundle(_sample_bundle(), tiny_disk / "photo")
    assert list(tiny_disk.iterdir()) == []


# --------------------------------------------------------------------------- every writer, from the CLI


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """Tiny random models in the released layout and names, for the commands that run models."""
    from engine.checkpoints import checkpoint_path
    from engine.models.testing import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    for task in ("pose", "seg", "normal", "pointmap", "albedo"):
        path = checkpoint_path(root, task, "0.4b")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tiny_checkpoint(path, task, num_layers=2, num_kv_heads=(4, 4))
    return root


@pytest.fixture
def photo(tmp_path):
    import shutil

    from engine.paths import asset

    path = tmp_path / "inputs" / "photo.png"
    path.parent.mkdir()
    shutil.copy(asset("sample", "image.png"), path)
    return path


def _cli_fails_in_words(argv: list, capsys, *words: str) -> str:
    from engine.cli import main

    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code != 0, f"{argv[0]} succeeded; stderr: {err}"
    assert "error:" in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def test_predict_refuses_a_user_folder_where_a_bundle_would_go(tmp_path, photo, tiny_checkpoints, capsys):
    out = tmp_path / "out"
    user = _user_folder(out / "photo")
    _cli_fails_in_words(["predict", photo, "--out", out, "--checkpoints", tiny_checkpoints], capsys,
                        str(user), "not a predictions bundle")
    _untouched(user)


def test_build_and_demo_refuse_a_user_folder(tmp_path, capsys):
    from engine.paths import asset

    user = _user_folder(tmp_path / "mine")
    _cli_fails_in_words(["build", asset("sample"), "--out", user], capsys, str(user), "not an avatar")
    _untouched(user)
    _cli_fails_in_words(["demo", "--out", user], capsys, str(user), "not an avatar")
    _untouched(user)


def test_avatar_refuses_a_user_folder(tmp_path, photo, tiny_checkpoints, capsys):
    out = tmp_path / "out"
    user = _user_folder(out / "photo")
    _cli_fails_in_words(["avatar", photo, "--out", out, "--checkpoints", tiny_checkpoints,
                         "--cache-dir", tmp_path / "cache"], capsys, str(user))
    _untouched(user)


def test_animate_refuses_a_user_folder(tmp_path, capsys):
    from engine.paths import asset

    import shutil

    frames = tmp_path / "frames"
    for name in ("000", "001"):
        shutil.copytree(asset("sample"), frames / name)
    user = _user_folder(tmp_path / "mine")
    _cli_fails_in_words(["animate", frames, "--out", user], capsys,
                        str(user), "not an animation")
    _untouched(user)


def test_retarget_refuses_a_user_folder(tmp_path, capsys):
    user = _user_folder(tmp_path / "mine")
    motion = tmp_path / "motion"
    motion.mkdir()
    _cli_fails_in_words(["retarget", motion, "--target", tmp_path / "character.glb", "--out", user], capsys,
                        str(user), "not an animation")
    _untouched(user)


def test_export_onnx_refuses_an_existing_file_as_out_before_tracing(tmp_path, tiny_checkpoints, capsys, monkeypatch):
    import engine.runtime.onnx_export as onnx_export

    def no_tracing(*args, **kwargs):
        raise AssertionError("the export started before --out was checked")

    monkeypatch.setattr(onnx_export, "export_checkpoint", no_tracing)
    out = tmp_path / "model.onnx"
    out.write_text(USER_TEXT)
    checkpoint = next((tiny_checkpoints / "normal").glob("*.safetensors"))
    _cli_fails_in_words(["export-onnx", checkpoint, "--out", out], capsys, str(out), "is a file, not a folder")
    assert out.read_text() == USER_TEXT
    missing = tmp_path / "nope.safetensors"
    _cli_fails_in_words(["export-onnx", checkpoint, missing, "--out", tmp_path / "onnx"], capsys,
                        str(missing), "not found")
    assert not (tmp_path / "onnx").exists()


@pytest.mark.slow
def test_predict_keeps_going_when_the_disk_fills_on_one_photo(tmp_path, photo, tiny_checkpoints, capsys, monkeypatch):
    """The full disk is said in words for that photo; the other photos' bundles are written."""
    import shutil

    import OpenEXR

    from engine.bundle import read_bundle
    from engine.cli import main

    first, second = photo.parent / "first.png", photo.parent / "second.png"
    shutil.copy(photo, first)
    shutil.copy(photo, second)
    real_file = OpenEXR.File

    class FullForFirst:
        def __init__(self, *args, **kwargs):
            self._exr = real_file(*args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, path):
            if "/.first." in str(path):
                raise RuntimeError(f'Failed to write pixel data to image file "{path}". No space left on device.')
            self._exr.write(path)

    monkeypatch.setattr(OpenEXR, "File", FullForFirst)
    out = tmp_path / "out"
    main([str(a) for a in ["predict", first, second, "--out", out, "--checkpoints", tiny_checkpoints]])
    monkeypatch.undo()
    captured = capsys.readouterr()
    assert "no space left on device" in captured.err + captured.out
    assert "Traceback" not in captured.err
    assert not (out / "first").exists()
    assert read_bundle(out / "second").normal is not None
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_batch_refuses_a_user_folder_where_an_item_goes(tmp_path, capsys):
    from engine.cli import main
    from engine.paths import asset

    out = tmp_path / "out"
    user = _user_folder(out / "sample")
    code = main(["batch", str(asset("sample")), "--steps", "build", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert "0 done, 0 skipped, 1 failed" in captured.out
    assert f"{user} exists and is not a batch item's folder" in captured.err
    _untouched(user)


@pytest.mark.slow
def test_export_onnx_into_a_user_folder_adds_its_file_beside_the_users(tmp_path, capsys):
    """export-onnx's --out is a folder of .onnx files: a folder of the user's is written into, not
    replaced; the user's file stays as it was and nothing hidden is left."""
    pytest.importorskip("onnx")
    from engine.cli import main
    from engine.models.testing import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "sapiens2_tiny_seg.safetensors", "seg", img_size=(128, 96),
                                       num_layers=2, num_kv_heads=(4, 2))
    user = _user_folder(tmp_path / "mine")
    assert main(["export-onnx", str(checkpoint), "--out", str(user), "--input-size", "128x96"]) == 0, \
        capsys.readouterr().err
    assert (user / "notes.txt").read_text() == USER_TEXT
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt", "sapiens2_tiny_seg.fp32.onnx"]


# every command that takes --out, and the test above that gives it a folder of the user's
SWEPT = {
    "demo": test_build_and_demo_refuse_a_user_folder,
    "predict": test_predict_refuses_a_user_folder_where_a_bundle_would_go,
    "build": test_build_and_demo_refuse_a_user_folder,
    "avatar": test_avatar_refuses_a_user_folder,
    "animate": test_animate_refuses_a_user_folder,
    "retarget": test_retarget_refuses_a_user_folder,
    "batch": test_batch_refuses_a_user_folder_where_an_item_goes,
    "export-onnx": test_export_onnx_into_a_user_folder_adds_its_file_beside_the_users,
}


def test_every_command_that_writes_an_out_is_swept():
    """A new command with --out (a new writer) must get its user-folder test here."""
    from engine.cli import COMMANDS, make_parser

    writers = set()
    for name in COMMANDS:
        parser, _ = make_parser([name])
        sub = next(a for a in parser._actions if a.dest == "command").choices[name]
        if any("--out" in action.option_strings for action in sub._actions):
            writers.add(name)
    assert "predict" in writers and "models" not in writers      # the scan itself sees options
    assert writers == set(SWEPT), f"writers without a user-folder test: {sorted(writers - set(SWEPT))}"


def test_a_file_the_job_reads_that_fails_is_named_not_the_output(tmp_path):
    missing = tmp_path / "assets" / "seg_classes.json"
    out = tmp_path / "avatar"
    with pytest.raises(BundleError) as raised:
        with fileio.atomic_directory(out, BundleError) as tmp:
            (tmp / "mesh.ply").write_bytes(b"x")
            missing.read_text()
    message = str(raised.value)
    assert message.startswith(f"{missing}: cannot read (No such file or directory)"), message
    assert f"{out} was not written" in message and "cannot write" not in message
    assert not out.exists() and _hidden_leftovers(tmp_path) == []
    # a failure inside the output being written still names the output
    with pytest.raises(BundleError, match=f"{out}: cannot write"):
        with fileio.atomic_directory(out, BundleError) as tmp:
            (tmp / "no_such_folder" / "mesh.ply").write_bytes(b"x")
