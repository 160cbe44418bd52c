"""The Blender batch on the engine's Ray runner (`runner: ray`): the list's photos and bundles go
to the engine's `batch` job in one request (docs/batch.md: photos decoded on CPU workers, the
models loaded once per worker, builds as CPU tasks, resumable), then Blender imports each avatar
it made and saves the item's .blend (and exports), as the one-by-one runner does. No bpy here.

Options that are the same for every item go to the job as the run's; options that differ go per
item in the list file the job reads (the engine decides which options may differ: model options
are the run's, since its workers share their models; the list is checked for those first).
`ray:` in the list sets the job's own options (address, workers, cpus, retry_failed).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import batch_list, option_table

RUNNERS = ("serial", "ray")
RAY_KEYS = ("address", "workers", "cpus", "retry_failed")
WAIT_S = 0.2
CANCEL_WAIT_S = 120.0


def runner_of(spec: dict, given: str | None) -> str:
    """The runner the command line gives, else the list's `runner`, else serial (one by one)."""
    runner = given or spec.get("runner") or "serial"
    if runner not in RUNNERS:
        raise batch_list.BatchListError(f"runner: {runner!r} is not a runner ({', '.join(RUNNERS)})")
    return runner


def ray_options(spec: dict) -> dict:
    """The list's `ray:` mapping, checked as the engine's batch job checks those options."""
    given = spec.get("ray") or {}
    if not isinstance(given, dict):
        raise batch_list.BatchListError(f"ray: expected key: value pairs ({', '.join(RAY_KEYS)}), got {given!r}")
    specs = [s for s in option_table.job_options("batch") if s.name in RAY_KEYS]
    options = {}
    for key, value in given.items():
        found = option_table.find(key, specs)
        if found is None:
            raise batch_list.BatchListError(f"ray.{key}: not an option of the Ray runner "
                                            f"(options: {', '.join(RAY_KEYS)})")
        try:
            options[found.name] = option_table.check_value(found, value, "ray.")
        except option_table.OptionError as exc:
            raise batch_list.BatchListError(str(exc)) from None
    return {k: v for k, v in options.items() if v is not None}


def split_options(requests: list[tuple]) -> tuple[dict, list[dict]]:
    """(the run's options, each item's own): an option with one value across the items is the
    run's; model options must be (BatchListError naming the first item that differs)."""
    model = {s.name for s in option_table.job_options("batch", groups=(option_table.MODEL_GROUP,))}
    params = [r[3] for r in requests]
    names = sorted({k for p in params for k in p})
    shared = {}
    for name in names:
        values = [json.dumps(p.get(name), sort_keys=True, default=str) for p in params]
        if len(set(values)) == 1:
            shared[name] = params[0].get(name)
        elif name in model:
            index = next(i for i, v in enumerate(values) if v != values[0])
            raise batch_list.BatchListError(
                f"items[{index}].{name}: the Ray runner's workers share their models, so model options "
                f"are the run's; this item's {name} differs from items[0]'s (run it in another list)")
    own = [{k: v for k, v in p.items() if k not in shared} for p in params]
    return {k: v for k, v in shared.items() if v is not None}, own


def engine_list(requests: list[tuple], own: list[dict]) -> list[dict]:
    """The list file's entries: absolute paths and each item's own options."""
    seen = {}
    entries = []
    for index, source in enumerate(r[0] for r in requests):
        key = str(source)
        if key in seen:
            raise batch_list.BatchListError(f"items[{index}]: the same input as items[{seen[key]}]; the Ray runner "
                                            "makes one avatar per input (export it to several files instead)")
        seen[key] = index
        entries.append({"path": key, **own[index]})
    return entries


def run_engine_batch(client, entries: list[dict], run_params: dict, out_dir: Path, log=print) -> dict:
    """One `batch` request with the list: progress lines as they come, Ctrl-C / SIGTERM cancels the
    job (the engine keeps the items it finished). Returns {input path: report row}."""
    from .pipeline import format_progress

    out_dir.mkdir(parents=True, exist_ok=True)
    list_path = out_dir / "blender_list.json"
    tmp = list_path.with_name(list_path.name + ".tmp")
    tmp.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    tmp.replace(list_path)
    job = client.submit("batch", {**run_params, "inputs": [str(list_path)], "out_dir": str(out_dir)})
    seen = 0
    try:
        while not job.wait(WAIT_S):
            seen = _print_new(job, seen, log, format_progress)
    except KeyboardInterrupt:
        log("[ray] cancelling the engine's batch (finished items are kept; a rerun does the rest)")
        client.cancel(job)
        job.wait(CANCEL_WAIT_S)
        raise
    _print_new(job, seen, log, format_progress)
    if job.state != "done":
        raise RuntimeError(job.error_message or "the engine's batch failed")
    rows = {}
    for line in (out_dir / "batch_report.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows[row["input"]] = row
    log(f"[ray] {(job.result or {}).get('summary', '')}")
    return rows


def avatar_dir(out_dir: Path, row: dict) -> Path:
    """Where a finished row's avatar is (OUT/NAME/avatar), or RuntimeError with the row's error."""
    if row["status"] not in ("done", "skipped") or not (row.get("outputs") or {}).get("avatar"):
        raise RuntimeError(row.get("error") or f"the engine's batch ended this item as {row['status']}")
    return out_dir / row["name"] / row["outputs"]["avatar"]


def _print_new(job, seen: int, log, format_progress) -> int:
    log_entries = job.progress_log
    end = len(log_entries)
    for event in log_entries[seen:end]:
        log(f"[ray] {format_progress(*event)}")
    return end
