"""A watchman that stops the processes a local Ray started once the engine process is gone,
however it went: killed, SIGTERM without a handler, os._exit, or a normal exit.

Why: ray.shutdown (at a normal exit) stops the Ray it started, but when the engine dies without
running it (the Blender client kills an engine whose shutdown outlasts its timeout), the raylet
and the GCS go down with the engine while Ray's DashboardAgent and RuntimeEnvAgent see their
raylet die and then hang on their way out (Ray 2.60): two idle processes left per run.

The engine runs this file as a script (no engine import, so it needs no engine on sys.path) in a
session of its own, so a signal sent to the engine's process group does not reach it, and writes
one line per process to watch on its stdin: `PID START_TIME` (psutil's create_time, so a reused
pid is never taken for the process). At end of input (the engine closed the pipe or died) every
watched process still running, and its children, gets SIGTERM, then SIGKILL after GRACE_S.

Usage (by engine.batch.cluster): python reaper.py PSUTIL_PARENT_DIR
"""

from __future__ import annotations

import signal
import sys

GRACE_S = 3.0


def watched_processes(lines, psutil) -> list:
    """The processes the lines name that still run as the same process, with their children."""
    found = {}
    for line in lines:
        try:
            pid_text, start_text = line.split()
            pid, start = int(pid_text), float(start_text)
            process = psutil.Process(pid)
            if abs(process.create_time() - start) > 0.01:
                continue   # that pid now belongs to another process
            found[pid] = process
            for child in process.children(recursive=True):
                found.setdefault(child.pid, child)
        except (ValueError, psutil.Error):
            continue
    return list(found.values())


def stop(processes, psutil) -> None:
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=GRACE_S)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=GRACE_S)


def main(argv: list[str]) -> int:
    # a Ctrl-C or hang-up meant for the engine's terminal must not end the watch early
    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    if argv:
        sys.path.insert(0, argv[0])   # where the engine found psutil (Ray's own copy, or site-packages)
    import psutil

    lines = sys.stdin.read().splitlines()   # returns when the engine is gone
    stop(watched_processes(lines, psutil), psutil)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
