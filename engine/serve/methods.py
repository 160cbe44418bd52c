"""The job methods table: one entry per protocol method that runs as a job.

Each entry checks its parameters in the reading thread, before the job is queued (an ill-typed,
out-of-range, unknown or missing parameter is `invalid_params` naming it, before any other check
or any work), then runs on a worker. The engine's jobs (engine/jobs/) take their parameters from
the option table (engine/options.py), so a protocol method's parameters are the option names.

A new protocol method = one entry in `job_methods` (an engine job: `_engine_job(NAME)`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import platform
from dataclasses import dataclass
from typing import Callable

from engine import __version__
from engine.jobs import IMPLEMENTATIONS, JOBS
from engine.options import OptionError, export, validate
from engine.protocol import PROTOCOL_VERSION, ProtocolError
from engine.serve.scheduler import Job

log = logging.getLogger("engine.serve")


@dataclass(frozen=True)
class Method:
    name: str
    check: Callable[[dict], dict]  # request params -> checked options, or ProtocolError
    run: Callable[[Job], dict]     # runs on a worker; job.options holds what `check` returned


def invalid_params(detail: str, data: dict | None = None) -> ProtocolError:
    return ProtocolError("invalid_params", f"bad parameters: {detail}", data or {"detail": detail})


def not_available(method: str, detail: str) -> ProtocolError:
    return ProtocolError("not_available", f"'{method}' is not available in this engine: {detail}",
                         {"method": method, "detail": detail})


def import_module_for(method: str, module_name: str):
    """Import a job's implementation on first use; a missing one is `not_available`, not a crash."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if module_name == missing or module_name.startswith(missing + "."):
            raise not_available(method, f"module {module_name} is not part of this build") from None
        raise not_available(method, f"{module_name} needs the Python package '{missing}', which is not installed") from None


def checked_options(job_name: str, params: dict) -> dict:
    """engine.options.validate, its OptionError as the protocol's invalid_params."""
    try:
        return validate(job_name, params)
    except OptionError as exc:
        raise ProtocolError("invalid_params", str(exc), exc.data) from None


def _engine_job(name: str) -> Method:
    def run(job: Job) -> dict:
        import_module_for(name, IMPLEMENTATIONS[name])
        module = import_module_for(name, f"engine.jobs.{JOBS[name]}")
        return module.run(job.options, progress=job.progress, cancel=job.cancelled)

    return Method(name, check=lambda params: checked_options(name, params), run=run)


# ---------------------------------------------------------------------------------------------
# capabilities
# ---------------------------------------------------------------------------------------------

def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _devices(job: Job) -> tuple[list[dict], str | None]:
    devices = [{"type": "cpu", "name": platform.processor() or platform.machine() or "cpu",
                "count": os.cpu_count()}]
    job.progress("devices", 0.0, "importing torch to look for GPUs")
    try:
        import torch
    except ImportError:
        return devices, None
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append({"type": "cuda", "index": index, "name": props.name, "memory_bytes": props.total_memory})
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append({"type": "mps", "name": "Apple Metal"})
    job.progress("devices", 1.0, f"{len(devices)} device(s)")
    return devices, torch.__version__


def _checkpoints(root: str | None) -> tuple[str | None, list | None, str | None]:
    """(root, one row per task and size with `present`, error): as `sapiens-engine models` lists them."""
    try:
        checkpoints = importlib.import_module("engine.checkpoints")
        directory = checkpoints.checkpoints_root(root)
        rows = [row.as_dict() for row in checkpoints.list_checkpoints(directory)]
    except ModuleNotFoundError as exc:
        return None, None, f"checkpoint listing is not available in this engine ({exc})"
    except Exception as exc:  # a broken listing must not hide the devices and methods
        log.exception("listing checkpoints failed")
        return None, None, f"cannot list checkpoints: {type(exc).__name__}: {exc}"
    return str(directory), rows, None


def _check_capabilities(params: dict) -> dict:
    unknown = set(params) - {"checkpoints_root"}
    if unknown:
        raise invalid_params(f"unknown parameter(s) {sorted(unknown)}")
    root = params.get("checkpoints_root")
    if root is not None and not isinstance(root, str):
        raise invalid_params("'checkpoints_root' must be a directory path", {"param": "checkpoints_root",
                                                                              "detail": "must be a directory path"})
    return {"checkpoints_root": root}


def _capabilities(method_names: Callable[[], list[str]]) -> Method:
    def run(job: Job) -> dict:
        devices, torch_version = _devices(job)
        gpu = next((d["type"] for d in devices if d["type"] != "cpu"), None)
        methods = {name: True for name in method_names()}
        for method, module in IMPLEMENTATIONS.items():
            methods[method] = _module_exists(module)
        job.progress("checkpoints", 0.0, "listing installed checkpoints")
        checkpoints_root, checkpoints, checkpoints_error = _checkpoints(job.options["checkpoints_root"])
        return {
            "engine_version": __version__,
            "protocol": PROTOCOL_VERSION,
            "torch": torch_version,
            "devices": devices,
            "default_device": gpu or "cpu",
            "methods": methods,
            "checkpoints_root": checkpoints_root,
            "checkpoints": checkpoints,
            "checkpoints_error": checkpoints_error,
            "options": export(),
        }

    return Method("capabilities", check=_check_capabilities, run=run)


def job_methods(method_names: Callable[[], list[str]]) -> dict[str, Method]:
    """The job methods of a server (`method_names` lists all of its methods, for capabilities)."""
    return {"capabilities": _capabilities(method_names), **{name: _engine_job(name) for name in JOBS}}
