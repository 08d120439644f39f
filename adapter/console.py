"""What every command of `uftp-adapter` shares, wherever it is defined (`cli.py`, the operator's
commands of `adapter.ops.commands`, the bus commands of `adapter.bus.operator`): the program's
name, its exit statuses and the usage error.
"""

from __future__ import annotations

__all__ = ["EXIT_REFUSED", "EXIT_USAGE", "PROG", "UsageError"]

PROG = "uftp-adapter"
#: Exit status of a user mistake (the same as argparse's usage errors).
EXIT_USAGE = 2
EXIT_REFUSED = 1


class UsageError(Exception):
    """A command-line argument that argparse cannot check by itself."""
