"""Ctrl-C during `sapiens-engine serve`'s start-up: SIGINT sent at 0 to 250 ms after the start, and
how each run ended.

    .venv/bin/python bench/ctrl_c_start.py [--reps 3] [--module]

Outcomes: "130 + one line" (the engine's answer), "killed silently" (before Python installed its
own handler: a shell shows 130), "Python start-up traceback" (the interpreter's own set-up or the
site module's .pth files, e.g. setuptools' editable-install finder), "traceback before the CLI's
handler" (the interpreter finding and loading the engine package and its CLI module), and
"TRACEBACK in the engine" (a bug: the engine's code ran and still showed Python's traceback).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# where each entry module puts its handler in place: a signal raised in that file before that
# line came while the interpreter loaded it (raised at its first line), before the engine could answer
HANDLER_LINES = {"cli.py": "SIGINT, _interrupted_outside_main)", "__main__.py": "SIGINT, lambda"}


def handler_lines() -> dict[str, int]:
    lines = {}
    for name, marker in HANDLER_LINES.items():
        source = (REPO / "engine" / name).read_text().splitlines()
        lines[str(REPO / "engine" / name)] = next((n for n, text in enumerate(source, 1) if marker in text), 0)
    return lines


def outcome(code: int, err: str, handlers: dict[str, int]) -> str:
    lines = err.strip().splitlines()
    if code == -signal.SIGINT and not lines:
        return "killed silently"
    if code == 130 and lines and "Traceback" not in err and lines[-1].endswith(": interrupted"):
        return "130 + one line"
    if "Fatal Python error" in err:
        return "Python start-up traceback"
    engine = [line for line in lines if line.lstrip().startswith("File ") and str(REPO / "engine") in line
              and "__init__.py" not in line]

    def before_handler(frame: str) -> bool:
        path = frame.split('"')[1]
        return path in handlers and int(frame.split(", line ")[1].split(",")[0]) < handlers[path]

    return "traceback before the CLI's handler" if all(map(before_handler, engine)) else "TRACEBACK in the engine"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--module", action="store_true", help="python -m engine instead of the console script")
    args = parser.parse_args()
    script = Path(sys.executable).with_name("sapiens-engine")
    command = [sys.executable, "-m", "engine", "serve"] if args.module else [str(script), "serve"]
    handlers = handler_lines()
    counts: collections.Counter = collections.Counter()
    load = os.getloadavg()[0]
    for _ in range(args.reps):
        for delay in [i * 0.01 for i in range(26)]:
            proc = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            counts[outcome(proc.returncode, err.decode(errors="replace"), handlers)] += 1
    print(f"{' '.join(command[-3:])}: {sum(counts.values())} runs, load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    for name, count in counts.most_common():
        print(f"  {count:4d}  {name}")


if __name__ == "__main__":
    main()
