"""`import adapter`: what a program needs, under one name, and one root for every error."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import adapter
from adapter import AdapterError, ConfigError, InvalidOutbound, InvalidXml, TransportError
from tests.test_layers import MODULES

INIT = Path(adapter.__file__)
#: Exceptions the package defines that are not raised to its users, and why.
INTERNAL_ERRORS = {
    # argparse's usage mistakes, turned into exit status 2 inside `cli.main`.
    "adapter.console.UsageError",
}


def python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PAGER": "cat"},
        cwd=INIT.parents[1],
    )
    return result.stdout


def test_every_public_name_is_listed_and_resolves() -> None:
    public = set(adapter.__all__) - {"__version__"}
    assert public == set(adapter._LAZY)
    for name in adapter.__all__:
        assert getattr(adapter, name) is not None, name
    with pytest.raises(AttributeError):
        adapter.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_type_checkers_see_every_public_name() -> None:
    """The names imported under TYPE_CHECKING, which mypy and editors read, are the public
    face: one list cannot drift from the other."""
    tree = ast.parse(INIT.read_text("utf-8"))
    [block] = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    ]
    seen = {
        alias.asname or alias.name
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == set(adapter._LAZY)


def test_importing_the_package_loads_no_http_stack_and_no_store() -> None:
    """The command line imports the package first; `keys generate` needs neither."""
    loaded = python(
        "import sys, adapter; print(sorted(m for m in sys.modules if m.startswith("
        "('aiohttp', 'asyncpg', 'adapter.participant', 'adapter.store'))))"
    )
    assert loaded.strip() == "[]"


def test_help_shows_the_public_face() -> None:
    text = python("import adapter; help(adapter)")
    for shown in (
        "class Participant",
        "class Router",
        "class HandlerContext",
        "load_config(path",
        "participant_for(config",
        "class DSOPortfolioUpdate(",
        "class AdapterError",
        "class InvalidOutbound",
        "class DeliveryFailed",
    ):
        assert shown in text, shown


def exception_classes() -> list[type[BaseException]]:
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found.append(value)
    return found


def test_every_error_the_package_raises_derives_from_the_one_root() -> None:
    errors = exception_classes()
    assert len(errors) >= 30  # the reader found them: the core's, the stores', the config's
    strays = [
        f"{error.__module__}.{error.__qualname__}"
        for error in errors
        if not issubclass(error, AdapterError)
    ]
    assert sorted(strays) == sorted(INTERNAL_ERRORS)


def test_an_error_keeps_the_builtin_kind_callers_caught_it_by() -> None:
    assert issubclass(adapter.ResponseTimeout, TimeoutError)
    assert issubclass(adapter.UnknownPeer, LookupError)
    assert issubclass(adapter.StoreOpenError, RuntimeError)
    assert issubclass(adapter.CannotListen, OSError)
    assert issubclass(adapter.PortfolioFileError, ValueError)


def test_our_invalid_message_is_apart_from_the_peers() -> None:
    """The peer's malformed message carries the HTTP status it is answered with; ours has
    none, so that no edge can answer a peer for our mistake (h11's Local/Remote split)."""
    assert issubclass(InvalidXml, TransportError) and InvalidXml.status == 400
    assert not issubclass(InvalidOutbound, TransportError)
    assert issubclass(adapter.IncompleteMessage, InvalidOutbound)
    assert issubclass(InvalidOutbound, adapter.UftpError)


def test_one_except_clause_catches_a_configuration_mistake(tmp_path: Path) -> None:
    with pytest.raises(AdapterError) as caught:
        adapter.load_config(tmp_path / "missing.toml")
    assert isinstance(caught.value, ConfigError)
