"""The batch on Ray Data: photos checked on CPU workers, the models in an actor pool (each worker
loads them once; one GPU per worker on a GPU cluster), builds as CPU tasks; every worker writes
its items' outputs and records itself, so the driver only collects rows for the report.

`serial_rows` runs the same stages in this process, one item after another (the reference the
tests compare the Ray run with, and the baseline of bench/bench_batch.py).
"""

from __future__ import annotations

import logging
import re
from typing import Iterator

from engine.batch import cluster, stages
from engine.errors import EngineError


def model_options(options: dict) -> dict:
    from engine.jobs.predictors import model_options as from_job

    return from_job(options)


def ray_rows(rows: list[dict], options: dict) -> Iterator[dict]:
    """Run the stages on Ray Data; yields each finished row as it comes."""
    import ray.data

    ray_module = cluster.connect(options)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False   # the job reports progress per item itself
    quiet_ray_data()
    steps = options["steps"]
    gpus = ray_module.cluster_resources().get("GPU", 0) if options.get("device") != "cpu" else 0
    workers = options.get("workers") or max(1, int(gpus))
    run_options = {k: options[k] for k in stages.BUILD_OPTION_NAMES if k in options}
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 64)))
    on_gpus = gpus >= workers
    predicting = "predict" in steps and any(r["kind"] == "photo" for r in rows)   # bundles alone: no models
    if predicting:
        # Logical CPU shares, chosen so that the model workers never hold every CPU a decode or a
        # build task is waiting for (that would stall the stream): decoding is light, a CPU-only
        # model worker books half a CPU (its torch threads still use what the machine has).
        ds = ds.map(stages.check_photo, num_cpus=0.1)
        ds = ds.map_batches(stages.PredictWorker, batch_format="pandas", batch_size=options.get("batch_size") or 4,
                            compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=1 if on_gpus else 0,
                            num_cpus=1 if on_gpus else 0.5,
                            fn_constructor_kwargs={"model_options": model_options(options),
                                                   "finish_after_predict": "build" not in steps})
    if "build" in steps:
        # build only: workers = builds at once
        build_tasks = {} if predicting else {"compute": ray.data.TaskPoolStrategy(size=workers)}
        ds = ds.map(stages.build_row, fn_kwargs={"run_options": run_options}, num_cpus=1, **build_tasks)
    try:
        yield from ds.iter_rows()
    except ray_module.exceptions.RayError as exc:   # a worker that could not start, a node that died
        raise EngineError(f"the batch's Ray run stopped: {ray_failure(exc)}") from None


class _Unless(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_ray_data() -> None:
    """Ray Data's notes on every run (its execution plan, where its logs are, that progress bars
    are off) stay in its log files; its warnings still reach the user."""
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    progress = logging.getLogger("ray.data._internal.progress")
    if not any(isinstance(f, _Unless) for f in progress.filters):
        progress.addFilter(_Unless("Progress bars disabled"))


def ray_failure(exc: BaseException) -> str:
    """What went wrong on a Ray worker, in words: an engine error raised there (a model worker
    whose checkpoint will not load) by its own message, else Ray's first line."""
    text = str(exc)
    raised = re.findall(r"^engine\.errors\.\w+: (.+)$", text, flags=re.MULTILINE)
    if raised:
        return raised[-1].strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}"[:500]


def serial_rows(rows: list[dict], options: dict) -> Iterator[dict]:
    """The same stages in this process, batch after batch (batches of batch_size, as the workers get)."""
    steps = options["steps"]
    run_options = {k: options[k] for k in stages.BUILD_OPTION_NAMES if k in options}
    size = options.get("batch_size") or 4
    worker = None
    for start in range(0, len(rows), size):
        batch = rows[start:start + size]
        if "predict" in steps:
            batch = [stages.check_photo(row) for row in batch]
            if worker is None and any(not r.get("error") and r["kind"] == "photo" for r in batch):
                worker = stages.PredictWorker(model_options(options), "build" not in steps)
            if worker is not None:
                batch = worker.predict_rows(batch)
        for row in batch:
            yield stages.build_row(row, run_options) if "build" in steps else row
