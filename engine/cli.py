"""`sapiens-engine`: one entry point, one module per subcommand under engine/commands/.

Each command module defines HELP (one line), add_arguments(parser) and run(args) -> exit code.
Commands are imported only when chosen, so `sapiens-engine serve` starts without importing torch.
"""

# No `from __future__` and no import before the Ctrl-C handler below: the console script's first
# act is to import this module, and every module loaded before the handler is a moment in which
# Ctrl-C gets Python's traceback. `sys`, `_signal` and `posix` / `nt` are built into the interpreter
# and loaded before any script runs.
import sys

try:
    import _signal as _early_signal
except ImportError:   # not CPython
    import signal as _early_signal

_os = sys.modules.get("posix") or sys.modules.get("nt") or __import__("os")

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

def _interrupted_line(argv: list[str]) -> str:
    command = next((a for a in argv if a in COMMANDS), None)
    return f"sapiens-engine {command}: interrupted" if command else "sapiens-engine: interrupted"


def _interrupted_outside_main(signum, frame):
    """Ctrl-C while the entry point is still importing (or after main() returned): nothing is
    under way, so say it in the one line a later Ctrl-C gets and leave at once. Python's own
    handler would raise KeyboardInterrupt inside an import and print its traceback."""
    try:
        sys.stdout.flush()
    except Exception:   # noqa: BLE001 - interrupted inside a write; its bytes are the loss
        pass
    _os.write(2, (_interrupted_line(sys.argv[1:]) + "\n").encode())
    _os._exit(130)


def _started_as_the_engine() -> bool:
    """The console script `sapiens-engine` or `python -m engine` (not a program importing the CLI)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    script = sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else ""
    return script.removesuffix(".exe") == "sapiens-engine" or getattr(spec, "name", None) == "engine.__main__"


# First thing the console script runs (it imports this module, then calls main()): from here on a
# Ctrl-C is the engine's to answer. Only where Python's own handler is still in place.
if _started_as_the_engine() and _early_signal.getsignal(_early_signal.SIGINT) is _early_signal.default_int_handler:
    try:
        _early_signal.signal(_early_signal.SIGINT, _interrupted_outside_main)
    except ValueError:   # imported off the main thread
        pass

import argparse  # noqa: E402 - after the handler: these imports are the start-up a Ctrl-C may cut
import importlib  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402

from engine.errors import EngineError  # noqa: E402

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
        signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _interrupted_outside_main)
    previous = signal.signal(signal.SIGINT, _Interrupt.handle) if watch else None
    try:
        code = _main(argv)
    except (Exception, KeyboardInterrupt):
        if not _Interrupt.seen:
            raise
        code = 130
    finally:
        if watch:
            signal.signal(signal.SIGINT, previous)
    if _Interrupt.seen and code == 130:   # said once, here, whichever command caught it
        print(_interrupted_line(argv), file=sys.stderr)
    return code


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
        _Interrupt.seen = True   # main() says it
        return 130


if __name__ == "__main__":
    sys.exit(main())
