"""The `batch` job: many inputs -> a bundle and/or an avatar per item, on Ray Data (docs/batch.md).

Inputs are expanded into items with distinct names (engine.batch.inputs); each item's key says
what its outputs depend on (input content, model files, options); items whose outputs are
complete under that key are skipped, so a rerun or a run after a killed one does only what is
missing. The rest run on Ray (engine.batch.pipeline), or in this process (`serial`, the tests'
and the benchmark's reference). A bad item is a failed row in batch_report.jsonl, never a
failed job.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from engine.batch import cluster
from engine.batch import inputs as batch_inputs
from engine.batch import items as batch_items
from engine.batch.report import ReportWriter, counts, summary_line
from engine.errors import EngineError
from engine.jobs import checked_progress
from engine.jobs.outputs import check_parent_dir
from engine.options import BY_NAME, OFF, OptionError


def plan(options: dict) -> tuple[list[dict], list[dict]]:
    """(rows to run, rows already settled: skipped, or refused before any work)."""
    out_dir = Path(options["out_dir"])
    steps = options["steps"]
    models = batch_items.model_files(options)
    todo, settled = [], []
    for item in batch_inputs.expand_inputs(options["inputs"]):
        item_dir = out_dir / item.name
        # every row has every column a stage may set: Ray hands batches to the model workers as
        # tables, where a column some rows lack is NaN in the others (a bundle's bundle_dir was)
        row = {**item.as_row(), "item_dir": str(item_dir), "key": "", "outputs": "{}", "timings": "{}",
               "error": "", "status": "", "bundle_dir": "", "photo_size": "", "note": ""}
        try:
            item_options = _item_options(item.options)
            row["options"] = json.dumps(item_options, sort_keys=True)
            _check_item(item, item_dir, steps)
            row["key"] = batch_items.item_key(batch_items.input_digest(item.path, item.kind), models,
                                              {**options, **item_options})
        except (EngineError, OSError) as exc:
            settled.append({**row, "status": "failed", "error": f"input: {exc}"})
            continue
        if batch_items.is_complete(item_dir, row["key"]):
            record = batch_items.read_record(item_dir)
            settled.append({**row, "status": "skipped", "outputs": json.dumps(record.get("outputs") or {}),
                            "timings": json.dumps(record.get("timings") or {})})
        elif not options["retry_failed"] and (record := batch_items.failed_before(item_dir, row["key"])):
            settled.append({**row, "status": "failed",
                            "error": f"failed in an earlier run (--retry-failed runs it again): {record.get('error')}"})
        else:
            todo.append(row)
    return todo, settled


def _item_options(given: dict) -> dict:
    """An item's own options, checked as the option table checks them (OptionError names one)."""
    bad = sorted(set(given) - set(batch_inputs.ITEM_OPTIONS))
    if bad:
        raise OptionError(bad[0], f"cannot be set per item (per-item options: {', '.join(batch_inputs.ITEM_OPTIONS)}; "
                                  "model options are the run's)")
    checked = {name: BY_NAME[name].check(value) for name, value in given.items()}
    # an item's "none" turns the run's value off for it (None overrides the run's when merged)
    return {name: None if value == OFF else value for name, value in checked.items()}


def _check_item(item, item_dir: Path, steps) -> None:
    if item.kind == "bundle" and "build" not in steps:
        raise EngineError(f"{item.path}: a predictions bundle as input needs the build step")
    if item.kind == "photo" and "predict" not in steps:
        raise EngineError(f"{item.path}: a photo needs the predict step (--steps build takes predictions bundles)")
    if item_dir.exists():
        if not item_dir.is_dir():
            raise EngineError(f"{item_dir}: is a file; the item's outputs would need its name")
        if any(item_dir.iterdir()) and not (item_dir / batch_items.RECORD).is_file():
            raise OptionError("out_dir", f"{item_dir} exists and is not a batch item's folder (no "
                                         f"{batch_items.RECORD}); not touched. Move it away or choose another --out")


def _check_models(options: dict) -> None:
    """The checkpoints the photos need, found in the driver (CheckpointError in words), and on a
    local Ray the device and number format too: a model worker that cannot start ends the whole
    run, after pages of Ray's worker tracebacks. (On a cluster the workers' devices are not the
    driver's: a CPU-only driver may send work to GPU nodes.)"""
    from engine.checkpoints import checkpoints_root
    from engine.predict.selection import resolve_runtime, resolve_tasks

    resolve_tasks(options.get("tasks"), options.get("size") or "0.4b", checkpoints_root(options.get("checkpoints")),
                  bool(options.get("allow_pickle")))
    if not options.get("address"):
        resolve_runtime(options.get("backend") or "torch", options.get("device") or "auto",
                        options.get("dtype") or "auto", options.get("compile"))


def run(options: dict, progress=None, cancel=None, *, serial: bool = False) -> dict:
    from engine.batch import pipeline

    report = checked_progress(progress, cancel)
    out_dir = check_parent_dir(options["out_dir"])
    started = time.perf_counter()
    todo, settled = plan(options)
    if "predict" in options["steps"] and any(row["kind"] == "photo" for row in todo):
        _check_models(options)
    with contextlib.ExitStack() as held:
        if todo and not serial:   # the cluster (or a local Ray) first: an address with no cluster writes nothing
            report("batch", 0.0, f"joining the Ray cluster at {options['address']}" if options.get("address")
                   else "using a local Ray")
            held.enter_context(cluster.using(options))
        out_dir.mkdir(parents=True, exist_ok=True)
        for row in todo:   # marks the folder as this batch's before any work: a killed run is resumed, not refused
            batch_items.write_record(Path(row["item_dir"]), {"name": row["name"], "input": row["path"],
                                                             "kind": row["kind"], "key": row["key"],
                                                             "status": "pending"})
        writer = ReportWriter(out_dir)
        total, ran = len(todo) + len(settled), 0
        try:
            for row in settled:
                writer.add(row)
            report("batch", len(settled) / max(total, 1), f"{len(todo)} to run, {len(settled)} settled already")
            if not todo:
                rows = []   # nothing to run: Ray is not even started
            else:
                rows = pipeline.serial_rows(todo, options) if serial else pipeline.ray_rows(todo, options)
            for row in rows:
                ran += 1
                entry = writer.add(row)
                report("batch", len(writer.rows) / max(total, 1), f"{entry['name']}: {entry['status']}"
                       + (f" ({entry['error']})" if entry["error"] else ""))
        finally:
            writer.close()
    seconds = time.perf_counter() - started
    return {"out_dir": str(out_dir), "report": str(out_dir / "batch_report.jsonl"),
            "sheet": str(out_dir / "batch_report.html"), "counts": counts(writer.rows),
            "summary": summary_line(writer.rows, seconds, ran), "seconds": round(seconds, 3),
            "failed": [r for r in writer.rows if r["status"] == "failed"]}
