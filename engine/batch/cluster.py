"""Where the batch runs: a local Ray sized to this machine, or the cluster `--address` names.

Ray's own connect never gives up on an address where no cluster answers (it retries the head
for minutes, printing warnings), so the address is checked first: a TCP connection to the host
and port as typed (refused or unreachable: said at once), then `ray.init` on a helper thread
that gets CONNECT_TIMEOUT_S to finish (a port that accepts but is not a Ray head). A helper that
is still stuck is left behind (a daemon thread: it does not keep the process alive), and later
batches in the same engine process are refused until it gives up, instead of racing it.

A local Ray this module starts is watched by engine/batch/reaper.py, a small process that stops
Ray's processes once the engine is gone, however it ended (a kill leaves no time for
ray.shutdown, and Ray's agents then outlive their raylet).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager

from engine.errors import EngineError

CONNECT_TIMEOUT_S = float(os.environ.get("SAPIENS_RAY_CONNECT_TIMEOUT_S", "60"))
TCP_TIMEOUT_S = 10.0
_SETTINGS = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)



class _WithoutSigtermNote(logging.Filter):
    """Ray notes that a ray.init off the main thread sets no SIGTERM handler (its handler only
    exits); on the helper thread that note is expected, not news for the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


_NOTE_FILTER = _WithoutSigtermNote()
# what this module connected to; batches using it now; a connect thread that hangs
_state = {"address": None, "users": 0, "stuck": None}
# the reaper watching the local Ray's processes, and the pids it has been given
_watching = {"reaper": None, "watched": set()}
_lock = threading.Lock()


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of HOST:PORT or ray://HOST:PORT; None for 'auto'."""
    match = re.fullmatch(r"(?:ray://)?(.+):([0-9]+)", address)
    return (match.group(1), int(match.group(2))) if match else None


def check_reachable(address: str) -> None:
    """A TCP connection to the address's host and port, or an EngineError saying why not."""
    host, port = host_port(address)
    try:
        with socket.create_connection((host, port), timeout=TCP_TIMEOUT_S):
            pass
    except socket.timeout:
        raise EngineError(f"Ray cluster address {address}: no answer from {host}:{port} within {TCP_TIMEOUT_S:.0f} s "
                           "(no Ray cluster there, or a firewall); check the head's address and port") from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise EngineError(f"Ray cluster address {address}: no Ray cluster answers there ({why}); start one with "
                           f"'ray start --head --port {port}' or give its head's HOST:PORT") from None


def connect(options: dict):
    """The ray module, connected to `options['address']` or to a local Ray of `options['cpus']` CPUs."""
    import ray

    address = options.get("address") or None
    if _state["stuck"] is not None and _state["stuck"].is_alive():
        raise EngineError(f"an earlier connection to the Ray cluster at {_state['stuck'].name} has not given up yet; "
                           "restart the engine to try another address")
    if ray.is_initialized():
        if _state["address"] is None or _state["address"] == (address or "local"):
            return ray   # ours with the same address, or started by the caller (tests, the bench)
        if _state["users"]:
            raise EngineError(f"another batch in this engine is running on Ray at {_state['address']}; a batch on "
                              f"{address or 'a local Ray'} waits for it to end (or runs in an engine of its own)")
    if address is not None and host_port(address):
        check_reachable(address)   # before letting go of a Ray this process holds
    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault("RAY_ACCEPT_ONNXRUNTIME_THREADS", "1")
    if address is None:
        before = _descendants()
        ray.init(num_cpus=options.get("cpus") or os.cpu_count(), **_SETTINGS)
        _watch(ray_processes=[p for p in _descendants().values() if p.pid not in before])
    else:
        _init_within(ray, address)
    _state["address"] = address or "local"
    return ray


@contextmanager
def using(options: dict):
    """connect() for the length of a batch: while one runs on a Ray, a batch that would need
    another one (another address) is refused instead of pulling that Ray from under it."""
    with _lock:
        ray = connect(options)
        _state["users"] += 1
    try:
        yield ray
    finally:
        with _lock:
            _state["users"] -= 1
            _watch()   # the workers the local Ray started for this batch


def _descendants() -> dict:
    import psutil   # a dependency of Ray's (importable once ray is)

    try:
        return {p.pid: p for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return {}


def _watch(ray_processes=()) -> None:
    """Hand the reaper the local Ray's processes (the ones ray.init started, and everything those
    started since), starting the reaper with the first ones."""
    import psutil

    processes = list(ray_processes)
    for pid in list(_watching["watched"]):
        try:
            processes += psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            _watching["watched"].discard(pid)
    lines = []
    for process in processes:
        if process.pid in _watching["watched"] or (_watching["reaper"] and process.pid == _watching["reaper"].pid):
            continue
        try:
            lines.append(f"{process.pid} {process.create_time()!r}\n")
        except psutil.Error:
            continue
        _watching["watched"].add(process.pid)
    if not lines:
        return
    try:
        if _watching["reaper"] is None or _watching["reaper"].poll() is not None:
            _watching["reaper"] = _start_reaper(os.path.dirname(os.path.dirname(psutil.__file__)))
        _watching["reaper"].stdin.write("".join(lines))
        _watching["reaper"].stdin.flush()
    except OSError as exc:   # no watch: a killed engine may leave Ray's agents behind, as before
        logging.getLogger(__name__).warning("could not watch the local Ray's processes: %s", exc)


def _start_reaper(psutil_dir: str) -> subprocess.Popen:
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reaper.py")
    # a session of its own: a signal to the engine's process group leaves the watch running
    detach = {"start_new_session": True} if os.name == "posix" else \
        {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    return subprocess.Popen([sys.executable, script, psutil_dir], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True, **detach)


def _init_within(ray, address: str) -> None:
    outcome: dict = {}

    def init():
        try:
            ray.init(address=address, **_SETTINGS)
            outcome["ok"] = True
        except BaseException as exc:  # reported by the caller's thread, in words
            outcome["error"] = exc

    logging.getLogger("ray._private.worker").addFilter(_NOTE_FILTER)
    thread = threading.Thread(target=init, name=address, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if thread.is_alive():
        _state["stuck"] = thread
        raise EngineError(f"Ray cluster address {address}: something listens there but no Ray cluster answered within "
                           f"{CONNECT_TIMEOUT_S:.0f} s (is it the head's GCS port, 6379 by default?)")
    error = outcome.get("error")
    if error is not None:
        if address == "auto" and isinstance(error, ConnectionError):
            raise EngineError("Ray cluster address auto: no Ray cluster runs on this machine (start one with "
                               "'ray start --head', set RAY_ADDRESS, or leave --address out for a local Ray)") from None
        raise EngineError(f"Ray cluster address {address}: could not join the Ray cluster ({type(error).__name__}: "
                           f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'})") from None
