"""`python -m engine`: the CLI (engine/cli.py).

A Ctrl-C while the CLI module loads is held, not raised inside that import (Python's own handler
would print a traceback), and answered as soon as the CLI can say it: exit 130, one line.
"""

import sys

import _signal

_held = []
if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, lambda signum, frame: _held.append(signum))
    from engine import cli

    _signal.signal(_signal.SIGINT, cli._interrupted_outside_main)
    if _held:
        cli._interrupted_outside_main(_held[0], None)
else:   # a host with a handler of its own (a test, an embedding program): left as it is
    from engine import cli

sys.exit(cli.main())
