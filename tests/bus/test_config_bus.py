"""[bus] and [handlers] in a participant's TOML: defaults, and one clear line per mistake."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from adapter.config import BusFormat, BusSettings, ConfigError
from tests.test_config import parse, valid


def with_tables(**tables: Any) -> dict[str, Any]:
    data = valid()
    data.update(tables)
    return data


def test_the_bus_defaults_are_the_documented_names() -> None:
    config = parse(with_tables(bus={"url": "amqp://guest:secret@127.0.0.1:5672/"}))
    bus = config.bus
    assert bus is not None
    assert (bus.exchange, bus.commands_exchange, bus.commands_queue) == (
        "uftp.events",
        "uftp.commands",
        "uftp.commands",
    )
    assert (bus.dead_letter_exchange, bus.dead_letter_queue) == ("uftp.dead", "uftp.dead")
    assert (bus.stream, bus.commands_stream, bus.dead_stream) == (
        "UFTP",
        "UFTP_COMMANDS",
        "UFTP_DEAD",
    )
    assert bus.format is BusFormat.XML and bus.commands and bus.delivery_limit == 5
    assert "secret" not in repr(bus)
    assert config.handlers.bus == () and config.handlers.modules == ()
    assert parse(valid()).bus is None


def test_nats_streams_are_named_in_the_bus_table() -> None:
    config = parse(
        with_tables(
            bus={
                "url": "nats://127.0.0.1:4222",
                "exchange": "grid.events",
                "stream": "GRID",
                "commands_stream": "GRID_COMMANDS",
                "dead_stream": "GRID-DEAD",
            }
        )
    )
    assert config.bus is not None
    assert (config.bus.exchange, config.bus.stream) == ("grid.events", "GRID")
    assert (config.bus.commands_stream, config.bus.dead_stream) == ("GRID_COMMANDS", "GRID-DEAD")


def test_the_readme_bus_tables_show_the_defaults() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = [
        tomllib.loads(block)
        for block in re.findall(r"```toml\n(.*?)```", readme, flags=re.DOTALL)
        if "[bus]" in block
    ]
    assert [table["bus"]["url"].split(":")[0] for table in blocks] == ["amqp", "nats"]
    for tables in blocks:
        bus = parse(with_tables(**tables)).bus
        assert bus is not None
        assert bus == BusSettings(url=bus.url), tables["bus"]


def test_handlers_name_request_types_and_modules() -> None:
    config = parse(
        with_tables(
            bus={"url": "nats://127.0.0.1:4222", "format": "json"},
            handlers={"bus": ["DSOPortfolioQuery"], "modules": ["mypkg.uftp:router"]},
        )
    )
    assert config.handlers.bus == ("DSOPortfolioQuery",)
    assert config.handlers.modules == ("mypkg.uftp:router",)
    assert config.bus is not None and config.bus.format is BusFormat.JSON


@pytest.mark.parametrize(
    ("tables", "field", "problem"),
    [
        ({"bus": {}}, "bus.url", "missing"),
        ({"bus": {"url": "http://x/"}}, "bus.url", "amqp://"),
        ({"bus": {"url": "amqp://u:pw@h/", "format": "yaml"}}, "bus.format", "'xml'"),
        ({"bus": {"url": "amqp://h/", "exchange": "a b"}}, "bus.exchange", "letters"),
        ({"bus": {"url": "amqp://h/", "delivery_limit": 0}}, "bus.delivery_limit", ">= 1"),
        ({"bus": {"url": "amqp://h/", "exhange": "x"}}, "bus.exhange", "did you mean"),
        ({"bus": {"url": "amqp://h/", "stream": "UFTP"}}, "bus.stream", "RabbitMQ"),
        ({"bus": {"url": "nats://h:4222", "stream": "UF.TP"}}, "bus.stream", "stream name"),
        ({"bus": {"url": "nats://h", "dead_stream": "a>"}}, "bus.dead_stream", "stream name"),
        ({"bus": {"url": "nats://h", "exchange": "uftp..ev"}}, "bus.exchange", "empty tokens"),
        ({"handlers": {"bus": ["DSOPortfolioQuery"]}}, "handlers.bus", "[bus]"),
        (
            {"bus": {"url": "amqp://h/"}, "handlers": {"bus": ["FlexRequestResponse"]}},
            "handlers.bus[0]",
            "request type",
        ),
        ({"handlers": {"modules": ["not a module"]}}, "handlers.modules[0]", "package.module"),
    ],
)
def test_mistakes_name_the_field(tables: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(with_tables(**tables))
    assert caught.value.field == field
    assert problem in caught.value.problem
    assert "pw" not in str(caught.value)
