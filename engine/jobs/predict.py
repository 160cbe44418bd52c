"""The `predict` job: photos -> one predictions bundle per photo (and person), docs/bundle.md."""

from __future__ import annotations

from pathlib import Path

from engine.errors import EngineError
from engine.jobs.outputs import check_parent_dir
from engine.jobs.predictors import predictor_for


def failure_rows(results) -> list[dict]:
    """{"photo", "code", "message"} for each photo that could not be used."""
    return [{"photo": r.photo, **(r.error or {"code": "internal", "message": "failed"})}
            for r in results if r.status == "failed"]


def error_from(row: dict) -> EngineError:
    """The EngineError of a failure row {"code", "message"} (its subclass by code)."""
    kinds = {cls.code: cls for cls in EngineError.__subclasses__()}
    return kinds.get(row.get("code"), EngineError)(row.get("message", "failed"))


def raise_if_nothing_came_out(failed: list[dict], made: list) -> None:
    """Every photo failed: the job fails with the first photo's reason, listing them all."""
    if failed and not made:
        error = error_from(failed[0])
        error.data = {"skipped": failed}
        raise error


def run(options: dict, progress=None, cancel=None) -> dict:
    out_dir = check_parent_dir(options["out_dir"])
    with predictor_for(options) as predictor:
        results = predictor.predict(options["photos"], out_dir, bbox=options["bbox"],
                                    all_people=options["all_people"], skip_existing=options["skip_existing"],
                                    progress=progress, cancel=cancel)
        loads = predictor.loads
    bundles = [b for r in results for b in r.bundles]
    failed = failure_rows(results)
    raise_if_nothing_came_out(failed, bundles)
    return {
        "bundles": [str(Path(b)) for b in bundles],
        "skipped": failed,          # protocol 1.0's name for the photos that failed
        "photos": [r.as_dict() for r in results],
        "model_loads": loads,
    }
