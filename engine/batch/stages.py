"""The work on batch items, as plain functions of rows (dicts of strings and numbers).

The Ray pipeline runs them as CPU tasks (check_photo, build_row) and in an actor pool
(PredictWorker: the models load once per worker); the serial path calls the same functions in a
loop. A row that fails carries `error` (words) and its record is written as failed; it never
stops the others.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from pathlib import Path

from engine.batch.items import write_record
from engine.errors import EngineError
from engine.options import OPTIONS

# the build job's options (from the option table: a new build option reaches the batch's builds)
BUILD_OPTION_NAMES = tuple(o.name for o in OPTIONS
                           if "build" in o.jobs and o.name not in ("bundle_dir", "views", "out_dir"))


def _timings(row: dict) -> dict:
    return json.loads(row.get("timings") or "{}")


def _words(exc: BaseException) -> str:
    if isinstance(exc, EngineError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory"
    # not a known failure: the message, and where, so a report says enough to act on
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


def fail(row: dict, stage: str, exc: BaseException) -> dict:
    """The row as failed at `stage`, its record written."""
    row = {**row, "status": "failed", "error": f"{stage}: {_words(exc)}"}
    finish(row)
    return row


def finish(row: dict) -> None:
    """Write the item's record (batch_item.json) from its row."""
    outputs = json.loads(row.get("outputs") or "{}")
    write_record(Path(row["item_dir"]), {
        "name": row["name"], "input": row["path"], "kind": row["kind"], "key": row["key"],
        "status": row["status"], "outputs": outputs, "timings": _timings(row), "error": row.get("error") or None,
    })


def check_photo(row: dict) -> dict:
    """Decode the photo on a CPU worker: an unreadable photo fails here, before the models."""
    if row.get("error") or row["kind"] != "photo":
        return row
    from engine.images import load_photo

    t0 = time.perf_counter()
    try:
        photo = load_photo(row["path"])
    except Exception as exc:  # noqa: BLE001 - any bad photo is one failed row
        return fail(row, "decode", exc)
    timings = {**_timings(row), "decode": round(time.perf_counter() - t0, 4)}
    return {**row, "timings": json.dumps(timings), "photo_size": f"{photo.size[0]}x{photo.size[1]}"}


class PredictWorker:
    """Holds one Predictor (models loaded once) and predicts the photos of each batch it gets, in
    one Predictor run per batch (the model passes batch across photos); each bundle is then
    published into its item's folder as OUT/NAME/bundle."""

    def __init__(self, model_options: dict, finish_after_predict: bool):
        from engine.predict import Predictor

        self.predictor = Predictor(**model_options)
        self.finish_after_predict = finish_after_predict

    def __call__(self, batch):
        import pandas as pd

        return pd.DataFrame(self.predict_rows(batch.to_dict("records")))

    def predict_rows(self, rows: list[dict]) -> list[dict]:
        out = list(rows)
        groups: dict[str, list[int]] = {}   # one Predictor run per person box (None: found per photo)
        for i, row in enumerate(rows):
            if not row.get("error") and row["kind"] == "photo":
                groups.setdefault(json.dumps(json.loads(row["options"]).get("bbox")), []).append(i)
        for bbox, members in groups.items():
            for i, row in zip(members, self._predict([rows[i] for i in members], json.loads(bbox))):
                out[i] = row
        return out

    def _predict(self, rows: list[dict], bbox) -> list[dict]:
        from engine import fileio

        out_dir = Path(rows[0]["item_dir"]).parent
        staging = fileio.staging_dir(out_dir / "batch")
        t0 = time.perf_counter()
        try:
            results = self.predictor.predict([row["path"] for row in rows], staging, bbox=bbox)
        except Exception as exc:  # noqa: BLE001 - the whole run failed (a model, the device): each row says so
            shutil.rmtree(staging, ignore_errors=True)
            return [fail(row, "predict", exc) for row in rows]
        seconds = (time.perf_counter() - t0) / len(rows)   # the batch's time, shared out
        finished = []
        try:
            for row, result in zip(rows, results):
                try:
                    if result.status == "failed":
                        raise EngineError((result.error or {}).get("message", "prediction failed"))
                    item_dir = Path(row["item_dir"])
                    item_dir.mkdir(parents=True, exist_ok=True)
                    fileio.publish_dir(Path(result.bundles[0]), item_dir / "bundle")
                except Exception as exc:  # noqa: BLE001
                    finished.append(fail(row, "predict", exc))
                    continue
                outputs = {**json.loads(row.get("outputs") or "{}"), "bundle": "bundle"}
                timings = {**_timings(row), "predict": round(seconds, 4)}
                row = {**row, "bundle_dir": str(item_dir / "bundle"), "outputs": json.dumps(outputs),
                       "timings": json.dumps(timings)}
                if self.finish_after_predict:
                    row["status"] = "done"
                    finish(row)
                finished.append(row)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return finished


def build_row(row: dict, run_options: dict) -> dict:
    """Build the item's avatar (OUT/NAME/avatar) from its bundle, then its preview (preview.png in
    the avatar's folder, after the avatar is published; avatar.json does not list it) and record."""
    if row.get("error"):
        return row
    from engine.jobs.build import build_one

    options = {**{k: run_options[k] for k in BUILD_OPTION_NAMES if k in run_options}, **json.loads(row["options"])}
    options.pop("bbox", None)
    item_dir = Path(row["item_dir"])
    bundle = row.get("bundle_dir") or row["path"]
    t0 = time.perf_counter()
    try:
        avatar = build_one(bundle, item_dir / "avatar", options)
    except Exception as exc:  # noqa: BLE001
        return fail(row, "build", exc)
    timings = {**_timings(row), "build": round(time.perf_counter() - t0, 4)}
    outputs = {**json.loads(row.get("outputs") or "{}"), "avatar": avatar.relative_to(item_dir).as_posix()}
    t0 = time.perf_counter()
    try:
        from engine.batch.preview import write_preview

        write_preview(avatar, avatar / "preview.png")
        outputs["preview"] = (avatar / "preview.png").relative_to(item_dir).as_posix()
        timings["preview"] = round(time.perf_counter() - t0, 4)
    except Exception as exc:  # noqa: BLE001 - a preview is a convenience: its failure is a note
        row = {**row, "note": f"no preview: {_words(exc)}"}
    row = {**row, "status": "done", "outputs": json.dumps(outputs), "timings": json.dumps(timings)}
    finish(row)
    return row
