"""Bridges to other UFTP libraries, for projects migrating to this adapter.

Each bridge lives in its own module and depends on an optional extra, so importing this
package costs nothing and needs nothing beyond the adapter itself. The conversion functions of
the shapeshifter-uftp bridge are re-exported here lazily: the first access to
`adapter.interop.to_shapeshifter` imports `adapter.interop.shapeshifter`, which names the extra
to install when shapeshifter-uftp is missing.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["from_shapeshifter", "to_shapeshifter"]

_LAZY = {
    "from_shapeshifter": "adapter.interop.shapeshifter",
    "to_shapeshifter": "adapter.interop.shapeshifter",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
