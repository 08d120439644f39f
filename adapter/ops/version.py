"""This program's version, as the installed package's metadata says (`pyproject.toml`'s)."""

from __future__ import annotations

import importlib.metadata

__all__ = ["version"]


def version() -> str:
    try:
        return importlib.metadata.version("uftp-adapter")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"
