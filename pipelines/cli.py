"""What the CLIs in pipelines/ do with bad input: one line ``error: ...`` on stderr and exit status 2.

``ArgumentParser`` reports argparse's own complaints (unknown option, bad ``type=``) the same way,
instead of a usage block; the argument types below refuse out-of-range numbers while parsing.
"""
from __future__ import annotations

import argparse
import math
import sys

EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    """Command-line input a CLI refuses before it starts work (paths, shards, option values)."""


def fail(problem) -> int:
    """Print ``error: <problem>`` as one line on stderr; returns the exit status for bad input."""
    text = " ".join(str(problem).split()) or type(problem).__name__
    print(f"error: {text}", file=sys.stderr)
    return EXIT_BAD_INPUT


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # argparse's default prints the usage block first
        sys.exit(fail(f"{message} (see --help)"))


def _number(cast, text: str, test, need: str):
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {need}, got {text!r}") from None
    if not test(value):
        raise argparse.ArgumentTypeError(f"expected {need}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 1, "an integer >= 1")


def nonnegative_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def add_fast_flag(parser) -> None:
    """`--fast` / `--no-fast` on a CLI (default: fast on CPU, exact elsewhere); read it with
    sfm_tracks.tracking.choice.tracker_mode."""
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                        help="CoTracker3 fast mode (cotracker3.fast; default on CPU); --no-fast: exact, official numerics")
