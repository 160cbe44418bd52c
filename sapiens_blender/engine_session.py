"""The add-on's one engine process: started on first use, restarted when dead or reconfigured. No bpy."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from .engine_client import EngineClient


@dataclass(frozen=True)
class EngineSettings:
    python: str
    engine_source: str = ""  # a source checkout to put on PYTHONPATH ("" when pip-installed)
    debug: bool = False
    log_path: str = ""
    cwd: str = ""
    checkpoint_dir: str = ""  # passed to the engine as $SAPIENS_CHECKPOINTS


class EngineSession:
    """Hands out a live EngineClient; a killed or crashed engine is replaced on the next request."""

    def __init__(self):
        self._client: EngineClient | None = None
        self._settings: EngineSettings | None = None
        self._lock = threading.Lock()
        self.restarts = 0

    def client(self, settings: EngineSettings) -> EngineClient:
        with self._lock:
            current = self._client
            if current is not None and current.alive and self._settings == settings:
                return current
            if current is not None:
                if current.process is not None and not current.alive:
                    self.restarts += 1
                current.shutdown(timeout=2.0)
            client = EngineClient(
                settings.python,
                engine_source=settings.engine_source or None,
                debug=settings.debug,
                log_path=settings.log_path or None,
                cwd=settings.cwd or None,
                env={"SAPIENS_CHECKPOINTS": settings.checkpoint_dir} if settings.checkpoint_dir else None,
            )
            if settings.cwd:
                Path(settings.cwd).mkdir(parents=True, exist_ok=True)
            client.start()
            self._client, self._settings = client, settings
            return client

    @property
    def current(self) -> EngineClient | None:
        return self._client

    def stop(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.shutdown(timeout=2.0)
            self._client = self._settings = None


SESSION = EngineSession()
