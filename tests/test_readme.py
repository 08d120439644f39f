"""The README's Python examples, run as written against the sample configs on loopback.

A reader copies these first; if an import moves or a signature changes, this fails rather
than the reader. The CRO example's body (`...`) becomes the DSO example, so the DSO
publishes to the CRO the first example starts.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

from adapter.run import ensure_key
from tests.test_run import copy_samples

README = Path(__file__).parents[1] / "README.md"


def python_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_the_examples_these_tests_run() -> None:
    cro, dso, consumer, producer, nats_clients = python_examples()  # a new example: run it
    assert "async def consume(" in consumer and "async def send_command(" in producer
    assert "@router.on(DSOPortfolioUpdate)" in cro and cro.rstrip().endswith("...")
    assert "await publish(" in dso
    assert "async def consume(" in nats_clients  # run by tests/bus/test_nats.py


def test_the_readme_examples_import_from_the_public_face_only() -> None:
    """`import adapter` is the face a reader learns; the modules behind it may move. (The
    examples of "Connecting your systems" run in the operator's systems and import their
    broker's client, not the adapter.)"""
    for example in python_examples():
        for node in ast.walk(ast.parse(example)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adapter"):
                assert node.module == "adapter", f"README imports from {node.module}"
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
                assert not any(name.startswith("adapter.") for name in names), names


async def test_the_readme_examples_publish_and_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = copy_samples(tmp_path)
    for name in ("cro.toml", "dso.toml"):
        ensure_key(config / name)
    monkeypatch.chdir(tmp_path)  # the examples name "config/..." relative to the clone
    cro, dso, *_ = python_examples()
    body = textwrap.indent(dso, "    ")
    program = cro.rstrip().removesuffix("...").rstrip() + "\n" + body

    code = compile(program, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    await eval(code, {"__name__": "readme"})  # the project's own README, nothing else

    assert capsys.readouterr().out.strip() == "Accepted None"
