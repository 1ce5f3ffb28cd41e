"""The ``blue`` command line.

Each group of sub-commands lives in its own module and exposes ``register(subparsers)``,
which adds its sub-parsers and sets ``func`` (a callable taking the parsed
``argparse.Namespace`` and returning an exit code). Errors the user can fix
(``BlueInputError``, ``BlueModelError``, missing files) are printed as one line on
stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

# The command line (like the app, app.py) owns its process: passive OpenMP waiting, because on a busy (shared or
# oversubscribed) CPU torch's default spin-waiting threads slow convolutions down ~10x. Set before torch is
# imported; an explicit setting wins. The library itself never changes a caller's environment (issue 23.8).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ..exceptions import BlueInputError, BlueModelError

__all__ = ["build_parser", "main"]

# Modules under blue_core.cli that contribute sub-commands, in help order.
_COMMAND_MODULES = ("_engine", "_clinical", "_app")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``blue`` argument parser with every available sub-command.

    Returns
    -------
    argparse.ArgumentParser
        The parser with every sub-command.
    """
    parser = argparse.ArgumentParser(
        prog="blue",
        description="BLUE: cell-type proportions and cell-type expression profiles from bulk RNA-seq.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:  # a command group not built yet
            if err.name and err.name.endswith(name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``blue`` command. Returns the process exit code.

    Returns
    -------
    int
        The process exit code (0 ok, 2 a problem the user can fix).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (BlueInputError, BlueModelError, FileNotFoundError, IsADirectoryError) as err:
        print(f"blue {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"blue {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
