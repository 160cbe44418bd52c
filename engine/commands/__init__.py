"""One module per `sapiens-engine` subcommand (see engine/cli.py), and what they share."""

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
