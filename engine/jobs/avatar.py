"""The `avatar` job: photos -> avatars (predict, then build), predictions cached for reuse.

For each photo: its predictions come from the cache (engine.jobs.prediction_cache) when the same
photo was predicted with the same models and options, else the photos not cached are predicted
together with the process's Predictor (engine.jobs.predictors: models load once per process);
then each bundle is checked for what the build needs and built into OUT_DIR/NAME (NAME as the
predict job names bundles, docs/bundle.md "Names"). Every output folder is checked before any
model runs. A photo that fails is reported and the others go on; when all fail, the job fails
with the first one's reason. With `fuse`, the photos are views of one person: their bundles
become one avatar in OUT_DIR/NAME (the first photo's name), and any photo that fails fails the job.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from engine.errors import Cancelled, EngineError
from engine.jobs import checked_progress
from engine.jobs.build import build_one
from engine.jobs.outputs import check_output_dir, check_parent_dir, relative_files
from engine.jobs.prediction_cache import PredictionCache, cache_key, model_identity
from engine.jobs.predict import error_from, raise_if_nothing_came_out
from engine.jobs.predictors import predictor_for


def run(options: dict, progress=None, cancel=None) -> dict:
    from engine.predict import bundle_names

    report = checked_progress(progress, cancel)
    photos = [Path(p) for p in options["photos"]]
    out_dir = check_parent_dir(options["out_dir"])
    _check_tasks(options)
    names = bundle_names(photos)
    fuse = bool(options.get("fuse"))
    if fuse and len(dict.fromkeys(names)) < 2:
        raise EngineError("fuse: fusing needs at least two different photos of the person (front, back, sides)")
    for name in dict.fromkeys(names[:1] if fuse else names):
        check_output_dir(out_dir / name, "avatar")
    cache = PredictionCache(options["cache_dir"])
    rows = {name: {"photo": str(photo), "name": name} for photo, name in zip(photos, names)}
    failed: list[dict] = []

    def fail(name: str, exc: EngineError) -> None:
        rows.pop(name, None)
        failed.append({"photo": str(photos[names.index(name)]), "code": exc.code, "message": str(exc)})

    with predictor_for(options) as predictor:
        identity = model_identity(predictor, options)
        keys, todo = {}, []
        for photo, name in zip(photos, names):
            if name in keys or name not in rows:
                continue
            report("cache", len(keys) / len(photos), f"{photo.name}: looking for its predictions")
            try:
                keys[name] = cache_key(photo, identity)
            except EngineError as exc:
                fail(name, exc)
                continue
            bundle = cache.lookup(keys[name])
            if bundle is not None:
                rows[name].update(bundle_dir=str(bundle), predictions="cached", **_recorded_people(bundle))
            else:
                todo.append((photo, name))
        if todo:
            _predict(predictor, todo, keys, cache, options, rows, fail, report, cancel)
        loads = predictor.loads

    if fuse:
        return _fused(options, rows, failed, out_dir / names[0], report, loads)
    for name, row in list(rows.items()):
        photo_report = _prefixed(report, name if len(rows) > 1 else None)
        try:
            avatar_dir = build_one(row["bundle_dir"], out_dir / name, options, photo_report,
                                   source=f"{row['photo']} (predictions in {row['bundle_dir']})")
        except Cancelled:
            raise
        except EngineError as exc:
            if row["photo"] not in str(exc):  # the build names the cached bundle: name the photo too
                exc = error_from({"code": exc.code, "message": f"{row['photo']}: {exc}"})
            fail(name, exc)
            continue
        row.update(avatar_dir=str(avatar_dir), files=relative_files(avatar_dir))
    raise_if_nothing_came_out(failed, list(rows))
    return {"avatars": list(rows.values()), "failed": failed, "model_loads": loads}


def _fused(options: dict, rows: dict, failed: list, avatar_dir: Path, report, loads: int) -> dict:
    """fuse: the photos' bundles become one avatar (engine.jobs.build.build_fused); a photo that
    could not be predicted fails the job, naming it (a view left out would change the avatar)."""
    from engine.jobs.build import build_fused

    if failed:
        error = error_from({"code": failed[0]["code"], "message": f"cannot fuse the views: {failed[0]['message']}"})
        error.data = {"skipped": failed}
        raise error
    views = list(rows.values())
    kinds = [row["predictions"] for row in views]
    try:
        built = build_fused([row["bundle_dir"] for row in views], avatar_dir, options, report,
                            sources=[f"{row['photo']} (predictions in {row['bundle_dir']})" for row in views])
    except Cancelled:
        raise
    except EngineError as exc:  # the build names a cached bundle: name its photo too
        message = str(exc)
        for view in views:
            if view["photo"] not in message:
                message = message.replace(view["bundle_dir"], f"{view['photo']} (predictions in {view['bundle_dir']})")
        if message == str(exc):
            raise
        raise error_from({"code": exc.code, "message": message}) from exc
    row = {"photo": views[0]["photo"], "name": views[0]["name"], "photos": [v["photo"] for v in views],
           "predictions": ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds)),
           "notes": [n for v in views for n in v.get("notes") or []], "views": views,
           "avatar_dir": str(built), "files": relative_files(built)}
    return {"avatars": [row], "failed": [], "model_loads": loads}


def _check_tasks(options: dict) -> None:
    """Tasks chosen without what the build needs fail before the models run, not after."""
    tasks = options.get("tasks")
    if not tasks:
        return  # every installed task: the predictor names a missing checkpoint
    needed = {"pointmap": "the surface is made from the pointmap"}
    if options.get("rig"):
        needed["pose"] = "the rig is placed on the pose keypoints"
    missing = [task for task in needed if task not in tasks]
    if missing:
        raise EngineError(f"tasks {','.join(tasks)}: an avatar also needs {' and '.join(missing)} "
                          f"({'; '.join(needed[t] for t in missing)})")


def _predict(predictor, todo, keys, cache, options, rows, fail, report, cancel) -> None:
    """Predict the photos not in the cache, in one run, and store their bundles under their keys."""
    staging = cache.staging()
    try:
        results = predictor.predict([photo for photo, _ in todo], staging, bbox=options["bbox"],
                                    progress=report, cancel=cancel)
        for (photo, name), result in zip(todo, results):
            if result.status == "failed":
                fail(name, error_from(result.error or {}))
                continue
            bundle = cache.store(Path(result.bundles[0]), keys[name])
            rows[name].update(bundle_dir=str(bundle), predictions="predicted",
                              people_found=result.people_found, notes=list(result.notes))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _recorded_people(bundle: Path) -> dict:
    """What the bundle's bundle.json says about who was found (cached predictions tell it too)."""
    try:
        meta = json.loads((bundle / "bundle.json").read_text())
    except (OSError, ValueError):
        return {}
    person = meta.get("person") or {}
    return {"people_found": person.get("count"), "notes": list(meta.get("notes") or [])}


def _prefixed(report, name: str | None):
    if name is None:
        return report
    return lambda stage, fraction, message="": report(stage, fraction, f"{name}: {message}")
