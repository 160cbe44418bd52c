"""Build the Blender extension zip from this repository.

Blender's extension builder wants `blender_manifest.toml` and `__init__.py` side by side at the
root of its source directory, while this repository keeps the manifest at the top level and the
add-on in `sapiens_blender/`. So: copy both into a staging directory (only the add-on package,
without caches) and run the builder there, then validate the zip it wrote.

    python scripts/build_extension.py [--output-dir dist] [--blender /path/to/blender]

With `--blender` the builder is `blender --command extension build`; without it, the copy of
Blender's `blender_ext.py` that ships inside the `bpy` wheel is used.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST = REPO_ROOT / "blender_manifest.toml"
PACKAGE_DIR = REPO_ROOT / "sapiens_blender"


def blender_ext_script() -> Path:
    """Blender's extension command-line tool as shipped in the bpy module."""
    try:
        import bpy
    except ImportError as exc:
        raise SystemExit("build_extension: neither --blender nor the bpy module is available") from exc
    script = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    if not script.exists():
        raise SystemExit(f"build_extension: {script} not found")
    return script


def stage(staging: Path) -> Path:
    """Copy the manifest and the add-on package into `staging`; return the source dir."""
    source = staging / "sapiens_blender"
    shutil.copytree(PACKAGE_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    shutil.copy2(MANIFEST, source / "blender_manifest.toml")
    return source


def builder_command(blender: str | None, *args: str) -> list[str]:
    if blender:
        return [blender, "--factory-startup", "--background", "--command", "extension", *args]
    return [sys.executable, str(blender_ext_script()), *args]


def build(output_dir: Path, blender: str | None = None) -> Path:
    """Build the zip into `output_dir`; return its path. Raises CalledProcessError on failure."""
    output_dir = output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sapiens_blender_build_") as tmp:
        source = stage(Path(tmp))
        version = _manifest_version()
        zip_path = output_dir / f"sapiens_blender-{version}.zip"
        subprocess.run(
            builder_command(blender, "build", "--source-dir", str(source), "--output-filepath", str(zip_path)),
            check=True,
        )
    subprocess.run(builder_command(blender, "validate", str(zip_path)), check=True)
    return zip_path


def _manifest_version() -> str:
    import tomllib

    with open(MANIFEST, "rb") as fh:
        return tomllib.load(fh)["version"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "dist")
    parser.add_argument("--blender", help="path to a Blender executable (default: bpy's blender_ext.py)")
    args = parser.parse_args(argv)
    try:
        zip_path = build(args.output_dir, args.blender)
    except subprocess.CalledProcessError as exc:
        print(f"build_extension: the extension builder failed (exit {exc.returncode})", file=sys.stderr)
        return 1
    print(zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
