"""The CLI (engine/cli.py, engine/commands/): options from engine/options.py, outputs and
options checked before any work, in words, without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_every_job_command_takes_its_options_from_the_table(capsys):
    from engine.options import options_for

    for command, job in (("predict", "predict"), ("build", "build"), ("avatar", "avatar"), ("animate", "animate")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        for option in options_for(job):
            if option.flag:
                assert option.flag in text, (command, option.flag)
            for alias in option.cli_aliases:
                assert alias not in text  # old spellings work but are not advertised


@pytest.mark.parametrize("argv,flag", [
    (["predict", "a.jpg", "--out", "o", "--batch-size", "-3"], "--batch-size"),
    (["predict", "a.jpg", "--out", "o", "--batch-size", "four"], "--batch-size"),
    (["predict", "a.jpg", "--out", "o", "--bbox", "0,0,-1,-1"], "--bbox"),
    (["predict", "a.jpg", "--out", "o", "--max-memory", "lots"], "--max-memory"),
    (["predict", "a.jpg", "--out", "o", "--size", "2b"], "--size"),
    (["avatar", "a.jpg", "--out", "o", "--rig", "../keypoints308"], "--rig"),
    (["build", "b", "--out", "o", "--rig", "/etc/hostname"], "--rig"),
    (["build", "b", "--out", "o", "--faces", "10"], "--faces"),
    (["animate", "f", "--out", "o", "--fps", "0"], "--fps"),
])
def test_bad_option_values_are_refused_by_argparse(argv, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def _user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("the user's own file")
    return folder


def test_writers_refuse_a_folder_that_is_not_their_output(tmp_path, capsys):
    """Every writer with an existing non-output folder as --out: refused, the user's file untouched."""
    from engine.paths import asset

    sample = asset("sample")
    folder = _user_folder(tmp_path)
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"not really a png")
    runs = [
        ["build", str(sample), "--out", str(folder)],
        ["demo", "--out", str(folder)],
        ["animate", str(tmp_path), "--out", str(folder)],
        ["avatar", str(photo), "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")],
    ]
    (tmp_path / "photo").mkdir()
    (tmp_path / "photo" / "notes.txt").write_text("not an avatar")
    for argv in runs:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err, (argv, err)
        assert "not an avatar" in err or "not an animation" in err, (argv, err)
    assert (folder / "thesis.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.txt"]
    assert (tmp_path / "photo" / "notes.txt").read_text() == "not an avatar"


def test_cli_help_lists_the_avatar_command():
    proc = subprocess.run([sys.executable, "-m", "engine", "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "avatar" in proc.stdout
