"""Batch: build avatars for many photos from a list and save one .blend per photo.

    python -m sapiens_blender.batch LIST.yaml [--engine-python PY] [--engine-source DIR]
    blender -b --factory-startup -P /path/to/sapiens_blender/batch.py -- LIST.yaml [...]

The list (docs/blender.md): `engine_python`, `engine_source`, `cache_dir`, `output_dir` and
`defaults` (build options) at the top, and `items`, each with `photo` and optionally `blend` (the
output file; default OUTPUT_DIR/PHOTO_STEM.blend), `reuse_predictions` and build options. Each
photo gets a fresh empty scene; a failed photo is reported and the batch goes on. Exit code 1
when any photo failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script (blender -P): import the package by its folder
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = Path(__file__).resolve().parent.name  # noqa: A001

from . import batch_list  # noqa: E402
from .engine_session import EngineSession, EngineSettings  # noqa: E402
from .pipeline import Pipeline, RunRequest, photo_name  # noqa: E402

BUILD_KEYS = ("detail", "resolution", "watertight", "target_faces", "texture_size", "rig")


def build_options(defaults: dict, item: dict) -> dict:
    merged = {**(defaults or {}), **item}
    options = {k: merged[k] for k in BUILD_KEYS if merged.get(k) is not None}
    if options.get("rig") is True:
        options["rig"] = "rigify"
    elif options.get("rig") is False:
        options.pop("rig")
    return options


def run_batch(spec: dict, *, list_dir: Path, engine_python: str | None = None, engine_source: str | None = None,
              log=print) -> list[dict]:
    """Run every item; returns one record per item ({photo, blend, ok, message, seconds})."""
    import bpy

    from .blender.import_avatar import import_avatar

    from_spec = lambda key: spec.get(key) and str((list_dir / spec[key]).resolve())  # noqa: E731
    python = engine_python or spec.get("engine_python") or os.environ.get("SAPIENS_ENGINE_PYTHON") or sys.executable
    settings = EngineSettings(
        python=str(python),
        engine_source=engine_source or from_spec("engine_source") or "",
        log_path=str(Path(from_spec("cache_dir") or _default_cache()) / "engine.log"),
    )
    cache_root = Path(from_spec("cache_dir") or _default_cache())
    output_dir = Path(from_spec("output_dir") or list_dir)
    session = EngineSession()
    records = []
    try:
        for index, item in enumerate(spec["items"], 1):
            item = item if isinstance(item, dict) else {"photo": item}
            started = time.monotonic()
            photo = (list_dir / str(item.get("photo", ""))).resolve()
            blend = Path(item["blend"]) if item.get("blend") else output_dir / f"{photo_name(photo)}.blend"
            blend = (list_dir / blend).resolve()
            record = {"photo": str(photo), "blend": str(blend), "ok": False, "message": ""}
            try:
                if not photo.is_file():
                    raise FileNotFoundError(f"photo not found: {photo}")
                request = RunRequest(
                    photos=[str(photo)],
                    cache_root=cache_root,
                    predict_options=dict(spec.get("predict") or {}),
                    build_options=build_options(spec.get("defaults") or {}, item),
                    reuse_predictions=bool(item.get("reuse_predictions", spec.get("reuse_predictions", True))),
                )
                run = Pipeline(request, lambda: session.client(settings)).start()
                run.wait()
                if run.state != "ready":
                    raise RuntimeError(run.error or run.message)
                bpy.ops.wm.read_factory_settings(use_empty=True)
                result = import_avatar(run.avatar_dir, name=request.name, scene=bpy.context.scene)
                _save_blend(blend)
                record.update(ok=True, message=f"{result.collection.name}: {len(result.mesh_object.data.vertices)} vertices"
                              + (" (cached predictions)" if run.used_cache else ""))
            except Exception as exc:  # one bad photo must not stop the batch
                record["message"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
            record["seconds"] = round(time.monotonic() - started, 2)
            log(f"[{index}/{len(spec['items'])}] {'ok  ' if record['ok'] else 'FAIL'} {photo.name} -> "
                f"{blend.name if record['ok'] else record['message']} ({record['seconds']} s)")
            records.append(record)
    finally:
        session.stop()
    return records


def _default_cache() -> Path:
    from . import user_data

    return user_data.cache_root()


def _save_blend(path: Path) -> None:
    """Save atomically: a temporary file beside the target, then a rename."""
    import bpy

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.blend")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True, compress=True)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser(prog="sapiens_blender.batch", description=__doc__.splitlines()[0])
    parser.add_argument("list", type=Path, help="YAML or JSON list of photos (docs/blender.md)")
    parser.add_argument("--engine-python", help="the engine environment's python (default: the list's, "
                        "$SAPIENS_ENGINE_PYTHON, or this interpreter)")
    parser.add_argument("--engine-source", help="an engine source checkout to put on PYTHONPATH")
    args = parser.parse_args(argv)
    try:
        spec = batch_list.read_batch_list(args.list)
    except batch_list.BatchListError as exc:
        print(f"sapiens batch: {exc}", file=sys.stderr)
        return 2
    records = run_batch(spec, list_dir=args.list.resolve().parent, engine_python=args.engine_python,
                        engine_source=args.engine_source)
    failed = [r for r in records if not r["ok"]]
    print(f"sapiens batch: {len(records) - len(failed)} of {len(records)} photos built")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
