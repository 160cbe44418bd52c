"""How a serve engine that ran a batch on a local Ray ends, each way it can end: its exit time and
the processes of its Ray still running 1, 5 and 15 s later (Linux: found by a mark in their
environment, which they inherit from the engine).

    .venv/bin/python bench/serve_ray_exit.py [--ways eof,shutdown,term,kill]

Each way starts one engine and one local Ray (about 15-30 s on a shared 2-core machine). Any
process still marked at the end is this script's own and is killed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WAYS = ("eof", "shutdown", "term", "kill")


def marked(mark: str) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark.encode() in (entry / "environ").read_bytes():
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
    return found


def one(way: str, work: Path) -> dict:
    from engine.paths import asset

    shutil.copytree(asset("sample"), work / "bundles" / "b0")
    mark = f"sapiens-bench-{uuid.uuid4().hex}"
    engine = subprocess.Popen([sys.executable, "-m", "engine", "serve"], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env={**os.environ, "SAPIENS_BENCH_MARK": mark})
    engine.stdout.readline()   # ready
    request = {"id": 1, "method": "batch", "params": {"inputs": [str(work / "bundles")], "out_dir": str(work / "out"),
                                                      "steps": ["build"], "cpus": 1, "texture_size": 256,
                                                      "formats": ["glb"]}}
    engine.stdin.write((json.dumps(request) + "\n").encode())
    engine.stdin.flush()
    while (line := engine.stdout.readline()) and json.loads(line)["type"] not in ("result", "error"):
        pass
    during = len(marked(mark))
    started = time.monotonic()
    if way == "eof":
        engine.stdin.close()
    elif way == "shutdown":
        engine.stdin.write(b'{"id": 2, "method": "shutdown"}\n')
        engine.stdin.flush()
    else:
        engine.send_signal(signal.SIGTERM if way == "term" else signal.SIGKILL)
    code = engine.wait(120)
    exit_s = time.monotonic() - started
    left = {}
    for after in (1, 5, 15):
        time.sleep(max(0.0, started + exit_s + after - time.monotonic()))
        left[after] = sorted(marked(mark).values())
    for pid in marked(mark):   # this run's own, found by its mark
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return {"way": way, "exit_code": code, "exit_s": round(exit_s, 1), "processes_during": during, "left": left}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ways", default=",".join(WAYS))
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} (shared machine)")
    for way in args.ways.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            row = one(way, Path(tmp))
        left = ", ".join(f"{t} s: {len(names)}{' ' + str(names) if names else ''}" for t, names in row["left"].items())
        print(f"{row['way']:9s} exit {row['exit_code']} in {row['exit_s']} s; {row['processes_during']} marked "
              f"processes during the run; left after {left}")


if __name__ == "__main__":
    main()
