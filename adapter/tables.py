"""Typed reading of one table of a file the operator writes (the configuration's TOML
tables, the flex commands' request and offer files): what each reader of such a file does
alike, so that a mistake is named the same way in all of them.

A key the table does not know is refused with the known ones and the nearest as a hint (a
misspelt key silently ignored would leave a default in force the operator meant to change);
a key of the wrong type or missing is refused naming `where.key` and what was expected. Each
reader says what its errors are (`error`) and how it shows a value (`shown`).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from enum import Enum
from typing import Literal, TypeVar

__all__ = ["REQUIRED", "Required", "Table"]

_T = TypeVar("_T")


class Required(Enum):
    """The default of a key that has none: missing, it is an error."""

    REQUIRED = "required"


REQUIRED = Required.REQUIRED


class Table:
    """One table, `data`, at `where` in its file, of the keys `known`."""

    #: What the file calls one entry of a table ("key", "field").
    noun = "key"

    def __init__(self, data: Mapping[str, object], where: str, known: Collection[str]) -> None:
        self.where = where
        self.data = data
        for key in data:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                raise self.error(
                    key,
                    f"unknown {self.noun} (expected one of: {', '.join(known)}){suggestion}",
                )

    def name(self, key: str | None) -> str:
        """`where.key`, the name an error gives."""
        if key is None:
            return self.where
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str | None, problem: str) -> Exception:
        """The error of this reader naming `key` (the table itself for None)."""
        raise NotImplementedError

    def shown(self, value: object) -> str:
        """`value` as an error shows it."""
        return repr(value)

    def value(
        self, key: str, kind: type[_T], expected: str, default: _T | Literal[Required.REQUIRED]
    ) -> _T:
        """The value of `key`, of `kind`; `default` when absent, unless REQUIRED."""
        if key not in self.data:
            if default is REQUIRED:
                raise self.error(key, f"missing; expected {expected}")
            return default
        value = self.data[key]
        # bool is an int in Python, never in TOML or JSON.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.error(key, f"expected {expected}, got {self.shown(value)}")
        return value
