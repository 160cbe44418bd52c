"""`sapiens-engine serve`: the engine as a long-lived subprocess driven over stdin/stdout.

The package splits along the server's seams:

- transport: the process's stdin/stdout claimed for the protocol, `serve_stdio`;
- server: the read loop and the control methods answered at once (handshake, ping, cancel, jobs,
  shutdown);
- scheduler: jobs queued and run on a small pool of worker threads, progress, cancel;
- methods: the job methods table (capabilities and one entry per engine job, engine/jobs/),
  parameters checked against engine/options.py before any other check or any work;
- debug: the debug.* methods of `serve --debug`.

The engine's jobs are imported only when first run, so the server starts without importing torch.
docs/protocol.md is the contract with clients.
"""

from engine.serve.server import Server
from engine.serve.transport import serve_stdio

__all__ = ["Server", "serve_stdio"]
