"""What every command of `uftp-adapter` shares, wherever it is defined (`cli.py`, the operator's
commands of `adapter.ops.commands`, the bus commands of `adapter.bus.operator`): the program's
name, its exit statuses and the usage error.
"""

from __future__ import annotations

import argparse

__all__ = ["EXIT_REFUSED", "EXIT_USAGE", "PROG", "UsageError", "add_sending_options"]

PROG = "uftp-adapter"
#: Exit status of a user mistake (the same as argparse's usage errors).
EXIT_USAGE = 2
EXIT_REFUSED = 1


class UsageError(Exception):
    """A command-line argument that argparse cannot check by itself."""


def add_sending_options(parser: argparse.ArgumentParser) -> None:
    """`--timeout` and `--keep-trying` of every command that sends a message and waits for
    its answer (`send`, `dso publish`, the flex commands that send): one wording for all."""
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    parser.add_argument(
        "--keep-trying",
        action="store_true",
        help="when the timeout passes before the message is delivered, leave it queued "
        "(delivered when this participant next runs) instead of withdrawing it",
    )
