"""Create the engine's Python environment: a venv with the engine installed. No bpy.

Runs on a background thread (a pip install of torch takes minutes); the preferences poll
`state` and `log` and, when it is done, store `env_python` as the engine interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path


def venv_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def base_python() -> str:
    """An interpreter that can make venvs: Blender's bundled Python (sys.executable since 2.91)."""
    return sys.executable


class EnvSetup:
    """venv + `pip install PACKAGE` + an import check, one command after the other."""

    def __init__(self, env_dir: str | os.PathLike, package: str, python: str | None = None):
        self.env_dir = Path(env_dir)
        self.package = package  # a path to the source checkout or a wheel, or a requirement
        self.python = python or base_python()
        self.state = "idle"  # idle | running | done | error
        self.log: list[str] = []
        self.env_python: Path | None = None
        self._thread = threading.Thread(target=self._run, name="sapiens-env-setup", daemon=True)

    def start(self) -> "EnvSetup":
        self.state = "running"
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.state in ("done", "error")

    @property
    def summary(self) -> str:
        return self.log[-1] if self.log else ""

    def commands(self) -> list[list[str]]:
        python = str(venv_python(self.env_dir))
        # A source checkout is installed editable: the engine reads its tables and the bundled
        # sample from the checkout's assets/ folder.
        target = ["-e", self.package] if Path(self.package).is_dir() else [self.package]
        return [
            [self.python, "-m", "venv", str(self.env_dir)],
            [python, "-m", "pip", "install", "--upgrade", *target],
            [python, "-c", "import engine, sys; print('engine', engine.__version__, 'on Python', sys.version.split()[0])"],
        ]

    def _run(self) -> None:
        for command in self.commands():
            self.log.append("$ " + " ".join(command))
            try:
                proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
            except OSError as exc:
                self.log.append(f"could not run {command[0]}: {exc.strerror}")
                self.state = "error"
                return
            for line in proc.stdout:
                self.log.append(line.rstrip())
            if proc.wait() != 0:
                self.log.append(f"failed (exit code {proc.returncode}): {' '.join(command[:4])}")
                self.state = "error"
                return
        self.env_python = venv_python(self.env_dir)
        self.log.append(f"engine environment ready: {self.env_python}")
        self.state = "done"
