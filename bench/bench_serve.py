"""Figures for `sapiens-engine serve`: start-to-ready time, request round trips, large responses.

    .venv/bin/python bench/bench_serve.py [--starts 9] [--pings 500]

Start-to-ready is measured the way a DCC sees it: from spawning the process to reading the
`ready` event (target: under 2 s, models are not loaded at start). Everything is printed, nothing
is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class Engine:
    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", *args], cwd=REPO_ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self._next_id = 0

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"engine exited with code {self.proc.wait()}")
        return json.loads(line)

    def request(self, method: str, params: dict | None = None) -> tuple[dict, int]:
        """Send one request and wait for its final message; returns it and the bytes read."""
        self._next_id += 1
        request_id = self._next_id
        self.proc.stdin.write(json.dumps({"id": request_id, "method": method, "params": params or {}}).encode() + b"\n")
        self.proc.stdin.flush()
        received = 0
        while True:
            line = self.proc.stdout.readline()
            received += len(line)
            message = json.loads(line)
            if message["id"] == request_id and message["type"] in ("result", "error"):
                return message, received

    def stop(self) -> int:
        self.request("shutdown")
        return self.proc.wait(timeout=60)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def bench_start(starts: int) -> None:
    to_ready, to_handshake, to_exit = [], [], []
    for _ in range(starts):
        t0 = time.perf_counter()
        engine = Engine()
        assert engine.read()["event"] == "ready"
        to_ready.append(time.perf_counter() - t0)
        engine.request("handshake", {"client": "bench", "protocol": "1.0"})
        to_handshake.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        engine.stop()
        to_exit.append(time.perf_counter() - t1)
    print(f"start to ready        median {median_ms(to_ready):7.1f} ms  (min {min(to_ready) * 1e3:.1f}, "
          f"max {max(to_ready) * 1e3:.1f}; {starts} starts; target < 2000 ms)")
    print(f"start to handshake    median {median_ms(to_handshake):7.1f} ms")
    print(f"shutdown to exit      median {median_ms(to_exit):7.1f} ms")


def bench_round_trips(pings: int) -> None:
    engine = Engine("--debug")
    engine.read()
    samples = []
    for _ in range(pings):
        t0 = time.perf_counter()
        engine.request("ping")
        samples.append(time.perf_counter() - t0)
    samples.sort()
    print(f"ping round trip       median {median_ms(samples):7.3f} ms  p95 {samples[int(0.95 * len(samples))] * 1e3:.3f} ms"
          f"  ({pings} pings, control method on the reader thread)")

    samples = []
    for _ in range(max(10, pings // 10)):
        t0 = time.perf_counter()
        engine.request("debug.sleep", {"steps": 0, "interval": 0})
        samples.append(time.perf_counter() - t0)
    print(f"empty job round trip  median {median_ms(samples):7.3f} ms  (debug.sleep steps=0: queue + worker thread)")

    for size in (1 << 20, 20 << 20, 100 << 20):
        t0 = time.perf_counter()
        reply, received = engine.request("debug.echo", {"size_bytes": size})
        elapsed = time.perf_counter() - t0
        assert len(reply["result"]["blob"]) == size
        print(f"{size >> 20:4d} MiB response     {elapsed * 1e3:9.1f} ms  ({received / elapsed / 1e6:.0f} MB/s incl. JSON decode)")

    t0 = time.perf_counter()
    reply, _ = engine.request("capabilities")
    devices = [d["type"] for d in reply["result"]["devices"]]
    print(f"first capabilities    {(time.perf_counter() - t0) * 1e3:9.1f} ms  (imports torch; devices {devices})")
    t0 = time.perf_counter()
    engine.request("capabilities")
    print(f"second capabilities   {(time.perf_counter() - t0) * 1e3:9.1f} ms")
    engine.stop()


def bench_build(bundle: Path) -> None:
    """A real job: build through the server vs in this process (the difference is the server's cost)."""
    import tempfile

    sys.path.insert(0, str(REPO_ROOT))  # the bench runs as a script from any directory
    from engine.avatar.build import build_avatar

    options = {"resolution": "quarter", "texture_size": 512}
    with tempfile.TemporaryDirectory() as tmp:
        build_avatar(bundle, Path(tmp) / "warm", **options)  # page cache and imports, both sides
        t0 = time.perf_counter()
        build_avatar(bundle, Path(tmp) / "direct", **options)
        direct = time.perf_counter() - t0
        engine = Engine()
        engine.read()
        engine.request("build", {"bundle_dir": str(bundle), "out_dir": str(Path(tmp) / "warm2"), **options})
        t0 = time.perf_counter()
        reply, received = engine.request("build", {"bundle_dir": str(bundle), "out_dir": str(Path(tmp) / "served"), **options})
        served = time.perf_counter() - t0
        engine.stop()
    assert reply["type"] == "result", reply
    print(f"build {bundle.name} (quarter, 512 px): in process {direct * 1e3:.0f} ms, through serve "
          f"{served * 1e3:.0f} ms ({received} bytes of progress + result)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=9)
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--bundle", type=Path, default=REPO_ROOT / "assets" / "sample",
                        help="predictions bundle for the build round trip (default: the bundled sample)")
    args = parser.parse_args()
    print(f"sapiens-engine serve on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
          f"Python {platform.python_version()}")
    bench_start(args.starts)
    bench_round_trips(args.pings)
    if (args.bundle / "bundle.json").is_file():
        bench_build(args.bundle)
    else:
        print(f"build round trip skipped: {args.bundle} is not a predictions bundle (pass --bundle)")


if __name__ == "__main__":
    main()
