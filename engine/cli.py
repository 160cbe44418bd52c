"""`sapiens-engine`: one entry point, one module per subcommand under engine/commands/.

Each command module defines HELP (one line), add_arguments(parser) and run(args) -> exit code.
Commands are imported only when chosen, so `sapiens-engine serve` starts without importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

from engine.errors import EngineError

# command name -> module under engine.commands (kept in the order `--help` lists them)
COMMANDS = {
    "demo": "demo",
    "predict": "predict",
    "build": "build",
    "avatar": "avatar",
    "animate": "animate",
    "retarget": "retarget",
    "batch": "batch",
    "download": "download",
    "models": "models",
    "export-onnx": "export_onnx",
    "serve": "serve",
}

# one-line help for each command, so `--help` does not import every module
HELP = {
    "demo": "build an avatar from the bundled sample (no weights needed)",
    "predict": "run the Sapiens2 models on photos and write predictions bundles",
    "build": "turn a predictions bundle into an avatar (mesh, textures, rig)",
    "avatar": "photos to avatars: predict (cached) and build in one job",
    "animate": "turn a sequence of frames into an animated skeleton",
    "retarget": "put an animation onto any character (GLB/glTF/VRM or skeleton.json)",
    "batch": "many photos or bundles to bundles and avatars, on Ray (local or a cluster)",
    "download": "fetch released checkpoints from the Hugging Face hub",
    "models": "list installed and missing checkpoints",
    "export-onnx": "export task models to ONNX",
    "serve": "JSON-lines protocol over stdio for DCC clients",
}


def _load(name: str):
    return importlib.import_module(f"engine.commands.{COMMANDS[name]}")


def make_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object | None]:
    from engine import __version__

    parser = argparse.ArgumentParser(prog="sapiens-engine", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"sapiens-engine {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen command's module is imported: build its parser in full, the others as stubs.
    chosen = next((a for a in argv if a in COMMANDS), None)
    module = None
    for name in COMMANDS:
        p = sub.add_parser(name, help=HELP[name])
        if name == chosen:
            try:
                module = _load(name)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith("engine.commands"):
                    parser.error(f"command '{name}' is not available in this build")
                raise
            module.add_arguments(p)
    return parser, module


class _Interrupt:
    """Ctrl-C noted as it arrives: raised inside a C extension's import (open3d's, loaded when the
    surface is closed) it comes out as that import's ImportError, still the user's interrupt."""

    seen = False

    @classmethod
    def handle(cls, signum, frame):
        cls.seen = True
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _Interrupt.seen = False
    watch = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    previous = signal.signal(signal.SIGINT, _Interrupt.handle) if watch else None
    try:
        return _main(argv)
    except (Exception, KeyboardInterrupt):
        if _Interrupt.seen:
            command = next((a for a in argv if a in COMMANDS), None)
            print(f"sapiens-engine {command}: interrupted" if command else "sapiens-engine: interrupted",
                  file=sys.stderr)
            return 130
        raise
    finally:
        if watch:
            signal.signal(signal.SIGINT, previous)


def _main(argv: list[str]) -> int:
    parser, module = make_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if module is None:
        parser.print_help()
        return 2
    try:
        return int(module.run(args) or 0)
    except EngineError as exc:
        print(f"sapiens-engine {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sapiens-engine {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
