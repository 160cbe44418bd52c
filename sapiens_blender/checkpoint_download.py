"""Download the checkpoints the preferences ask for, with the engine's own command. No bpy.

`sapiens-engine download` (engine/commands/download.py) takes one `--size` and a `--tasks` list
per call, so per-task sizes become one call per distinct size; `--checkpoints` is the folder set
in the preferences (the engine's default when empty). The albedo head is not published, so it is
never asked for. The calls run one after the other on a background thread; the preferences poll
`state` and `summary`, and the full output goes to a log file.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

# tasks whose checkpoints the hub has (engine.checkpoints.UNPUBLISHED lists the others)
PUBLISHED_TASKS = ("pose", "seg", "normal", "pointmap")


def download_commands(python: str | os.PathLike, sizes: dict[str, str], checkpoint_dir: str = "") -> list[list[str]]:
    """The engine download calls for a task -> size mapping: one per size, tasks in a fixed order."""
    by_size: dict[str, list[str]] = {}
    for task in PUBLISHED_TASKS:
        if task in sizes:
            by_size.setdefault(sizes[task], []).append(task)
    commands = []
    for size, tasks in by_size.items():
        command = [str(python), "-m", "engine", "download", "--size", size, "--tasks", ",".join(tasks)]
        if checkpoint_dir:
            command += ["--checkpoints", str(checkpoint_dir)]
        commands.append(command)
    return commands


def engine_env(engine_source: str = "") -> dict[str, str]:
    """The environment the engine's commands run in: a source checkout on PYTHONPATH when given."""
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)  # Blender's own Python home must not leak into the engine's
    if engine_source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(engine_source), env.get("PYTHONPATH")]))
    return env


class CheckpointDownload:
    """Runs the download commands one after the other; `state`: idle | running | done | error."""

    def __init__(self, commands: list[list[str]], log_path: str | os.PathLike, env: dict[str, str] | None = None):
        self.commands = commands
        self.log_path = Path(log_path)
        self.env = env
        self.state = "idle"
        self.summary = ""
        self._thread = threading.Thread(target=self._run, name="sapiens-download", daemon=True)

    def start(self) -> "CheckpointDownload":
        self.state = "running"
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.state != "running"

    def _run(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w", encoding="utf-8", errors="replace") as log:
            for index, command in enumerate(self.commands, 1):
                what = " ".join(command[command.index("download") + 1:])
                self.summary = f"({index}/{len(self.commands)}) download {what}"
                log.write(f"$ {' '.join(command)}\n")
                log.flush()
                try:
                    code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=self.env).returncode
                except OSError as exc:
                    self.summary, self.state = f"cannot run {command[0]}: {exc.strerror}", "error"
                    return
                if code != 0:
                    self.summary = f"download {what} failed (exit code {code}); see {self.log_path}"
                    self.state = "error"
                    return
        self.summary = f"downloaded {len(self.commands)} set(s) of checkpoints"
        self.state = "done"
