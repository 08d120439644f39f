"""`serve` loads the handler modules a configuration names ([handlers] modules)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

from adapter.config import ConfigError, load_config
from adapter.run import ensure_key, participant_for, serve
from adapter.uftp.messages import Role, TestMessage, TestMessageResponse
from tests.test_run import copy_samples

MODULE = """
from adapter.router import Router
from adapter.uftp.messages import TestMessage, TestMessageResponse

router = Router()
seen = []


@router.on(TestMessage)
async def test_message(message, ctx):
    seen.append((ctx.sender_domain, message.message_id))
    return TestMessageResponse()


def register(participant):
    participant.router.include(router)
"""


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = copy_samples(tmp_path)
    for name in ("cro.toml", "dso.toml"):
        ensure_key(config / name)
    package = tmp_path / "site"
    package.mkdir()
    (package / "myhandlers.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(package))
    yield config
    sys.modules.pop("myhandlers", None)


def with_handlers(config: Path, *refs: str) -> Path:
    path = config / "cro.toml"
    listed = ", ".join(f'"{ref}"' for ref in refs)
    path.write_text(path.read_text() + f"\n[handlers]\nmodules = [{listed}]\n")
    return path


async def test_serve_answers_with_the_configured_module(configs: Path) -> None:
    cro_path = with_handlers(configs, "myhandlers:router")
    stop = asyncio.Event()
    server = asyncio.ensure_future(serve(load_config(cro_path), stop=stop))
    dso = participant_for(load_config(configs / "dso.toml"))
    await asyncio.sleep(0.5)
    await dso.start()
    try:
        cro_domain = load_config(cro_path).participant.domain
        response = await dso.request(TestMessage(), to=cro_domain, role=Role.CRO, timeout=10)
        assert isinstance(response, TestMessageResponse)
        import myhandlers  # type: ignore[import-not-found]

        assert myhandlers.seen and myhandlers.seen[0][0] == dso.domain
    finally:
        await dso.stop()
        stop.set()
        await server


def test_a_function_module_registers_itself(configs: Path) -> None:
    participant = participant_for(load_config(with_handlers(configs, "myhandlers:register")))
    assert TestMessage in participant.router


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("nosuchmodule:router", "cannot import"),
        ("myhandlers:seen", "not a Router"),
    ],
)
def test_a_module_that_cannot_serve_is_a_config_error(
    configs: Path, ref: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        participant_for(load_config(with_handlers(configs, ref)))


def test_two_handlers_for_one_type_are_an_error(configs: Path) -> None:
    with pytest.raises(ConfigError, match="already registered"):
        participant_for(
            load_config(with_handlers(configs, "myhandlers:router", "myhandlers:register"))
        )
