"""Batch: build avatars for many photos from a list; save a .blend (or FBX, USD, glb) per photo.

    python -m sapiens_blender.batch LIST.yaml [--runner serial|ray] [--engine-python PY]
        [--engine-source DIR] [--size S ...]
    blender -b --factory-startup -P /path/to/sapiens_blender/batch.py -- LIST.yaml [...]

The list (docs/blender.md): `engine_python`, `engine_source`, `cache_dir`, `output_dir`, engine
options for every photo (at the top, or under `defaults`) and `items`, each with `photo`,
optionally `export` (files to write: .blend .fbx .usdc .usd .usda .usdz .glb, through Blender's
own exporters with the item's `preset`: unreal, unity or maya), `blend` (default, when neither is
given: OUTPUT_DIR/PHOTO_STEM.blend) and its own engine
options; an item may name a predictions `bundle` (a folder from `sapiens-engine predict`)
instead of a photo: it is built without a model pass. Engine options are the engine's `avatar` options under their engine names
(engine_options.json: detail, max_faces, rig, rest_pose, formats, size, device, checkpoints ...);
the model options given on the command line (`--size`, `--device`, `--checkpoints` ... as the
panel's Batch passes the preferences) apply where the list does not set them. Each photo gets a
fresh empty scene; a failed photo is reported and the batch goes on. Exit code 1 when any failed.
`runner: ray` (or --runner ray) hands all items to the engine's Ray batch first (batch_ray.py);
SIGTERM or Ctrl-C cancels (exit code 130).
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

from . import batch_list, batch_ray, option_table  # noqa: E402
from .engine_session import EngineSession, EngineSettings  # noqa: E402
from .pipeline import Pipeline, ProgressPrinter, RunRequest, options_key, photo_name, with_glb  # noqa: E402

LIST_KEYS = frozenset({"engine_python", "engine_source", "cache_dir", "output_dir", "defaults", "items", "predict",
                       "preset", "runner", "ray"})
ITEM_KEYS = frozenset({"photo", "bundle", "blend", "export", "preset"})
RAY_SHUTDOWN_S = 30.0
_RETIRED = {"reuse_predictions": "predictions are reused whenever photo, models and options are the same"}


def list_options() -> list[option_table.OptionSpec]:
    """What a list may set: the options of the engine's `avatar` job (which the batch runs per photo)."""
    return option_table.job_options("avatar")


def check_options(mapping: dict, where: str, list_dir: Path, skip=frozenset()) -> dict:
    """`mapping`'s engine options, checked and under their engine names (aliases such as
    `target_faces` accepted); BatchListError naming any key that is not an option."""
    specs = list_options()
    options = {}
    if not isinstance(mapping or {}, dict):
        raise batch_list.BatchListError(f"{where.rstrip('.') or 'the list'}: expected key: value pairs, got {mapping!r}")
    for key, value in (mapping or {}).items():
        if key in skip:
            continue
        if key in _RETIRED:
            raise batch_list.BatchListError(f"{where}{key}: no longer an option ({_RETIRED[key]})")
        spec = option_table.find(key, specs)
        if spec is None:
            names = ", ".join(s.name for s in specs)
            raise batch_list.BatchListError(f"{where}{key}: not an option of the batch (options: {names})")
        if spec.name == "rig" and isinstance(value, bool):  # `rig: true` = Blender's Rigify rig, false none
            value = "rigify" if value else option_table.OFF
        try:
            value = option_table.check_value(spec, value, where)
        except option_table.OptionError as exc:
            raise batch_list.BatchListError(str(exc)) from None
        if spec.kind == "path" and value is not None:
            value = str((list_dir / value).resolve())
        options[spec.name] = value
    return {k: v for k, v in options.items() if v is not None}


def item_options(spec: dict, item: dict, index: int, list_dir: Path, base: dict) -> dict:
    """One photo's parameters: the command line's model options < the list's top-level options
    (and its older `predict:` mapping) < `defaults` < the item's own."""
    merged = dict(base)
    merged.update(check_options(spec.get("predict") or {}, "predict.", list_dir))
    merged.update(check_options(spec, "", list_dir, skip=LIST_KEYS))
    merged.update(check_options(spec.get("defaults") or {}, "defaults.", list_dir, skip={"preset"}))
    merged.update(check_options(item, f"items[{index}].", list_dir, skip=ITEM_KEYS))
    return merged


def item_outputs(spec: dict, item: dict, index: int, list_dir: Path, output_dir: Path, name: str):
    """([files], preset) of one item: `export` (a path or a list; .fbx .usdc .usd .usda .usdz .glb
    .blend) and `blend`, or OUTPUT_DIR/NAME.blend when it names neither; the export preset from the
    item, `defaults` or the top level (unreal when none)."""
    from .export_presets import DEFAULT_PRESET, PRESETS, ExportRequestError, export_format

    where = f"items[{index}]."
    exports = item.get("export") or []
    exports = [exports] if isinstance(exports, str) else list(exports) if isinstance(exports, list) else exports
    if not isinstance(exports, list) or not all(isinstance(e, str) for e in exports):
        raise batch_list.BatchListError(f"{where}export: expected a file or a list of files, got {exports!r}")
    if item.get("blend"):
        exports.append(str(item["blend"]))
    files = [(list_dir / e).resolve() for e in exports] or [output_dir / f"{name}.blend"]
    for path in files:
        try:
            export_format(path)
        except ExportRequestError as exc:
            raise batch_list.BatchListError(f"{where}export: {exc}") from None
    preset = item.get("preset") or (spec.get("defaults") or {}).get("preset") or spec.get("preset") or DEFAULT_PRESET
    if preset not in PRESETS:
        raise batch_list.BatchListError(f"{where}preset: {preset!r} is not a preset ({', '.join(PRESETS)})")
    return files, preset


def run_batch(spec: dict, *, list_dir: Path, engine_python: str | None = None, engine_source: str | None = None,
              base_options: dict | None = None, log=print, runner: str | None = None) -> list[dict]:
    """Run every item; returns one record per item ({photo, files, ok, message, seconds}).
    `base_options`: engine options (the preferences' model options) under the list's own.
    `runner`: serial (one engine job per item, in turn) or ray (the engine's Ray batch for all
    items, then the imports); default: the list's `runner`, else serial."""
    from_spec = lambda key: spec.get(key) and str((list_dir / spec[key]).resolve())  # noqa: E731
    python = engine_python or spec.get("engine_python") or os.environ.get("SAPIENS_ENGINE_PYTHON") or sys.executable
    cache_root = Path(from_spec("cache_dir") or _default_cache())
    settings = EngineSettings(
        python=str(python),
        engine_source=engine_source or from_spec("engine_source") or "",
        log_path=str(cache_root / "engine.log"),
    )
    output_dir = Path(from_spec("output_dir") or list_dir)
    runner = batch_ray.runner_of(spec, runner)
    # every item's options are checked before the first photo runs: a typo fails in seconds
    requests = []
    for index, item in enumerate(spec["items"]):
        item = item if isinstance(item, dict) else {"photo": item}
        if ("photo" in item) == ("bundle" in item):
            raise batch_list.BatchListError(f"items[{index}]: give a photo or a predictions bundle (one of them)")
        source = (list_dir / str(item.get("photo") or item.get("bundle"))).resolve()
        name = photo_name(source) if "photo" in item else photo_name(source.name)
        params = item_options(spec, item, index, list_dir, base_options or {})
        outputs = item_outputs(spec, item, index, list_dir, output_dir, name)
        requests.append((source, "bundle" in item, outputs, params, name))
    session = EngineSession()
    try:
        if runner == "ray":
            return _run_on_ray(spec, requests, cache_root, lambda: session.client(settings), log)
        return _run_one_by_one(requests, cache_root, lambda: session.client(settings), log)
    finally:
        if runner == "ray" and session.current is not None:
            # the engine's exit takes its local Ray down (ray.shutdown at exit: 5-10 s here);
            # the usual 2 s before the kill would cut that short
            session.current.shutdown(timeout=RAY_SHUTDOWN_S)
        session.stop()


def _missing(source: Path, is_bundle: bool) -> str:
    if not (source.is_dir() if is_bundle else source.is_file()):
        return f"{'bundle' if is_bundle else 'photo'} not found: {source}"
    return ""


def _run_one_by_one(requests: list[tuple], cache_root: Path, get_client, log) -> list[dict]:
    records = []
    for index, (photo, is_bundle, (files, preset), params, name) in enumerate(requests, 1):
        started = time.monotonic()
        record = {"photo": str(photo), "files": [str(f) for f in files], "ok": False, "message": ""}
        try:
            if _missing(photo, is_bundle):
                raise FileNotFoundError(_missing(photo, is_bundle))
            request = RunRequest(photos=[str(photo)], cache_root=cache_root, params=params,
                                 method="bundle" if is_bundle else "avatar")
            run = Pipeline(request, get_client).start()
            printer = ProgressPrinter(write=log, prefix=f"[{index}/{len(requests)}] ")
            while not run.wait(0.2):
                printer(run)
            printer(run)
            if run.state != "ready":
                raise RuntimeError(run.error or run.message)
            record.update(ok=True, message=save_item(run.avatar_dir, request.name, files, preset)
                          + (" (cached predictions)" if run.used_cache else ""))
        except Exception as exc:  # one bad photo must not stop the batch
            record["message"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
        records.append(_ended(record, started, index, len(requests), log))
    return records


def _run_on_ray(spec: dict, requests: list[tuple], cache_root: Path, get_client, log) -> list[dict]:
    """All present items in one engine `batch` job (docs/batch.md), then each avatar imported and
    saved; an item the engine failed on is that item's failed record, in the engine's words."""
    started = time.monotonic()
    present = [r for r in requests if not _missing(r[0], r[1])]
    rows, out_dir = {}, None
    if present:
        ray = batch_ray.ray_options(spec)
        run_params, own = batch_ray.split_options([(*r[:3], with_glb(r[3])) for r in present])
        entries = batch_ray.engine_list(present, own)
        out_dir = cache_root / "ray-batch" / options_key({**run_params, **ray})
        log(f"[ray] {len(entries)} item(s) to the engine's Ray batch in {out_dir}")
        rows = batch_ray.run_engine_batch(get_client(), entries, {**run_params, **ray}, out_dir, log=log)
    records = []
    for index, (source, is_bundle, (files, preset), _params, name) in enumerate(requests, 1):
        item_started = time.monotonic()
        record = {"photo": str(source), "files": [str(f) for f in files], "ok": False, "message": ""}
        try:
            if _missing(source, is_bundle):
                raise FileNotFoundError(_missing(source, is_bundle))
            row = rows.get(str(source))
            if row is None:
                raise RuntimeError("the engine's batch report has no row for it")
            message = save_item(batch_ray.avatar_dir(out_dir, row), name, files, preset)
            earlier = " (done in an earlier run)" if row["status"] == "skipped" else ""
            record.update(ok=True, message=message + earlier)
        except Exception as exc:  # one bad photo must not stop the batch
            record["message"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
        records.append(_ended(record, item_started, index, len(requests), log))
    log(f"[ray] batch and imports took {time.monotonic() - started:.1f} s")
    return records


def save_item(avatar_dir: Path, name: str, files: list[Path], preset: str) -> str:
    """A fresh empty scene, the avatar imported, the item's files written; what was made, in words."""
    import bpy

    from .blender.export_avatar import export_avatar
    from .blender.import_avatar import import_avatar

    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = import_avatar(avatar_dir, name=name, scene=bpy.context.scene)
    marked = _mark_asset(result.collection, Path(avatar_dir) / "preview.png")
    objects = [o for o in (result.armature_object, result.mesh_object) if o is not None]
    for path in files:
        export_avatar(objects, path, preset)
    vertices = len(result.mesh_object.data.vertices)
    return f"{result.collection.name}: {vertices} vertices" + (", an asset" if marked else "")


def _mark_asset(collection, preview: Path) -> bool:
    """An avatar the engine's batch made comes with preview.png (front and back): its collection
    becomes an asset with that thumbnail, so the saved .blend files browse in the Asset Browser."""
    import bpy

    if not preview.is_file():
        return False
    collection.asset_mark()
    with bpy.context.temp_override(id=collection):
        bpy.ops.ed.lib_id_load_custom_preview(filepath=str(preview))
    return True


def _ended(record: dict, started: float, index: int, total: int, log) -> dict:
    record["seconds"] = round(time.monotonic() - started, 2)
    written = ", ".join(Path(f).name for f in record["files"])
    log(f"[{index}/{total}] {'ok  ' if record['ok'] else 'FAIL'} {Path(record['photo']).name} -> "
        f"{written if record['ok'] else record['message']} ({record['seconds']} s)")
    return record


# --- command line: the model options come from the engine's table, under its flag names ---------


def model_option_specs() -> list[option_table.OptionSpec]:
    return option_table.job_options("avatar", groups=(option_table.MODEL_GROUP,))


def model_arguments(options: dict) -> list[str]:
    """Command-line flags for model options (the preferences' size, device, checkpoints, ...)."""
    args = []
    for spec in model_option_specs():
        value = options.get(spec.name)
        if value is None or value is False:
            continue
        if value is True:
            args.append(spec.cli)
        elif isinstance(value, dict):
            args += [spec.cli, ",".join(f"{k}={v}" for k, v in value.items())]
        elif isinstance(value, (list, tuple)):
            args += [spec.cli, ",".join(str(v) for v in value)]
        else:
            args += [spec.cli, str(value)]
    return args


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    for spec in model_option_specs():
        if spec.kind == "bool":
            parser.add_argument(spec.cli, dest=spec.name, action="store_const", const=True, help=spec.help)
        else:
            kind = {"int": int, "float": float}.get(spec.kind, str)
            parser.add_argument(spec.cli, dest=spec.name, type=kind, metavar=spec.name.upper(), help=spec.help)


def base_options_from(args: argparse.Namespace) -> dict:
    """The model options given on the command line, checked as the list's are."""
    given = {s.name: getattr(args, s.name) for s in model_option_specs() if getattr(args, s.name, None) is not None}
    return check_options(given, "--", Path.cwd())


def _default_cache() -> Path:
    from . import user_data

    return user_data.cache_root()


def _cancel_on_sigterm() -> None:
    """SIGTERM (the panel's Cancel Batch) ends the batch as Ctrl-C does: the engine's job is
    cancelled and the engine stopped, instead of the process dying with the engine left running."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser(prog="sapiens_blender.batch", description=__doc__.splitlines()[0])
    parser.add_argument("list", type=Path, help="YAML or JSON list of photos (docs/blender.md)")
    parser.add_argument("--engine-python", help="the engine environment's python (default: the list's, "
                        "$SAPIENS_ENGINE_PYTHON, or this interpreter)")
    parser.add_argument("--engine-source", help="an engine source checkout to put on PYTHONPATH")
    parser.add_argument("--runner", choices=batch_ray.RUNNERS, help="serial: one engine job per item in turn; "
                        "ray: the engine's Ray batch for all items, then the imports (default: the list's runner, "
                        "else serial)")
    _add_model_arguments(parser)
    args = parser.parse_args(argv)
    _cancel_on_sigterm()
    try:
        spec = batch_list.read_batch_list(args.list)
        base = base_options_from(args)
        records = run_batch(spec, list_dir=args.list.resolve().parent, engine_python=args.engine_python,
                            engine_source=args.engine_source, base_options=base,
                            log=lambda line: print(line, flush=True), runner=args.runner)
    except batch_list.BatchListError as exc:
        print(f"sapiens batch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sapiens batch: cancelled (the files already saved are kept)", file=sys.stderr, flush=True)
        return 130
    failed = [r for r in records if not r["ok"]]
    print(f"sapiens batch: {len(records) - len(failed)} of {len(records)} photos built")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
