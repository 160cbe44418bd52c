"""The engine as a user installs it: a built wheel (and `pip install .`, not editable) carries its
tables, rigs and the bundled sample, and runs `sapiens-engine demo` from a folder outside the
repository.

Offline and fast: the package is built without build isolation from a copy of the sources, and
installed without dependencies into a fresh virtual environment that sees this environment's
packages through a .pth line (a plain path line: the editable install's finder is not run there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["pyproject.toml", "setup.py", "README.md", "engine", "assets"]


def _run(command: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SAPIENS_ASSETS", "PYTHONHOME")}
    proc = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, command))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _source_copy(tmp: Path) -> Path:
    """The files a source distribution holds, without this checkout's build leftovers."""
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    return src


def _fresh_venv(tmp: Path) -> Path:
    venv = tmp / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip())
    (purelib / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _pip_install(venv: Path, target: Path, cwd: Path) -> None:
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps",
          "--no-index", "--no-build-isolation", target], cwd=cwd)


def _check_installed_engine(venv: Path, outside: Path) -> None:
    """The engine and its assets are the installed copies, not this checkout's."""
    where = json.loads(_run([venv / "bin" / "python", "-c",
                             "import json, engine, engine.paths as p; "
                             "print(json.dumps([engine.__file__, str(p.ASSETS_DIR), p.asset('sample', 'bundle.json').is_file()]))"],
                            cwd=outside).stdout)
    engine_file, assets_dir, has_sample = where
    assert Path(engine_file).resolve().is_relative_to(venv.resolve()), engine_file
    assert Path(assets_dir).resolve().is_relative_to(venv.resolve()), assets_dir
    assert has_sample
    for table in ("keypoints308.json", "seg_classes.json", "label_groups.json", "rigs/rigify.json",
                  "rigs/mixamo.json", "rigs/game.json", "sample/pointmap.exr"):
        assert (Path(assets_dir) / table).is_file(), f"{table} missing from the installed package"


def _run_demo(venv: Path, outside: Path) -> None:
    out = outside / "avatar"
    proc = _run([venv / "bin" / "sapiens-engine", "demo", "--out", out], cwd=outside)
    assert "avatar.glb" in proc.stdout
    avatar = json.loads((out / "avatar.json").read_text())
    assert avatar["files"], avatar
    for name in ("avatar.glb", "mesh.obj", "mesh.ply", "skeleton.json", "textures/albedo.png"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.slow
def test_built_wheel_runs_the_demo_outside_the_repository(tmp_path):
    src = _source_copy(tmp_path)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation",
          "-w", dist, src], cwd=tmp_path)
    wheels = list(dist.glob("sapiens_blender-*.whl"))
    assert len(wheels) == 1, wheels
    venv = _fresh_venv(tmp_path)
    _pip_install(venv, wheels[0], cwd=tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _check_installed_engine(venv, outside)
    _run_demo(venv, outside)


@pytest.mark.slow
def test_pip_install_of_the_source_folder_carries_the_assets(tmp_path):
    """`pip install .` (not editable) from a source folder, then the installed engine's assets."""
    src = _source_copy(tmp_path)
    venv = _fresh_venv(tmp_path)
    _pip_install(venv, src, cwd=src)
    shutil.rmtree(src)  # nothing may still point into the sources
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _check_installed_engine(venv, outside)
    _run_demo(venv, outside)


def test_a_checkout_reads_the_repository_assets():
    from engine import paths

    if os.environ.get("SAPIENS_ASSETS"):
        pytest.skip("SAPIENS_ASSETS points elsewhere")
    assert paths.ASSETS_DIR.resolve() == (REPO_ROOT / "assets").resolve()
    assert paths.asset("keypoints308.json").is_file()
