"""The settings objects: one default each, whoever builds the participant, and a clear error
naming the field for a value out of range."""

from __future__ import annotations

import dataclasses
import inspect
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapter import AdapterError, Delivery, Limits, ListenAddress, Participant, SettingsError
from adapter.config import ConfigError, CroSettings, RetentionSettings, load_config
from adapter.directory import StaticDirectory
from adapter.keys import generate, write_private
from adapter.server import Endpoint
from adapter.store.sqlite import SqliteStore
from adapter.uftp.messages import Role
from adapter.waiters import Waiters, matcher_for
from tests.postgres import import_asyncpg

DOMAIN = "cro.example.com"


def bare(tmp_path: Path) -> Participant:
    """A participant given no settings at all."""
    return Participant(
        domain=DOMAIN,
        role=Role.CRO,
        keys=generate(),
        store=SqliteStore(tmp_path / "bare.sqlite3"),
        directory=StaticDirectory([]),
    )


def test_a_participant_without_settings_runs_with_the_configuration_files_defaults(
    tmp_path: Path,
) -> None:
    """What a program leaves out is what a configuration file leaves out: one default."""
    write_private(tmp_path / "cro.key", generate())
    (tmp_path / "cro.toml").write_text(
        "[participant]\n"
        f'domain = "{DOMAIN}"\nrole = "CRO"\nsigning_key = "cro.key"\n'
        'listen = "127.0.0.1:0"\nstore = "sqlite:cro.sqlite3"\nversions = ["3.1.0"]\n',
        "utf-8",
    )
    from_file = Participant.from_config(load_config(tmp_path / "cro.toml", environ={}))
    without = bare(tmp_path)
    assert without.limits == from_file.limits == Limits()
    assert without.delivery == from_file.delivery == Delivery()
    assert without.port == ListenAddress().port == 0
    # The endpoint reads them, rather than keeping defaults of its own.
    endpoint = without._endpoint
    assert endpoint._read_timeout == Limits().read_timeout_seconds == 30.0
    assert endpoint._header_timeout == Limits().header_timeout_seconds
    assert endpoint._max_body == Limits().max_body_bytes == 32 * 1024 * 1024


@pytest.mark.parametrize("kind", [Participant, Endpoint])
def test_no_setting_has_a_default_of_its_own_in_the_participant_or_the_endpoint(
    kind: type[Any],
) -> None:
    """A setting's default is written once, in its settings class: the constructors take
    whole objects, whose absence means the class's defaults."""
    numbers = [
        name
        for name, parameter in inspect.signature(kind).parameters.items()
        if isinstance(parameter.default, (int, float)) and parameter.default is not None
    ]
    assert numbers == []


def test_each_field_of_limits_but_the_body_cap_is_a_key_of_the_limits_table() -> None:
    from adapter.config import _SECTIONS

    fields = [item.name for item in dataclasses.fields(Limits)]
    assert [*_SECTIONS["limits"], "max_body_bytes"] == fields
    assert "max_body_bytes" in _SECTIONS["participant"]
    assert list(_SECTIONS["delivery"]) == [item.name for item in dataclasses.fields(Delivery)]


ERRORS: list[tuple[type[Any], dict[str, Any], str, str]] = [
    (Limits, {"burst": 0}, "burst", "expected an integer >= 1, got 0"),
    (Limits, {"burst": True}, "burst", "expected an integer >= 1, got True"),
    (Limits, {"max_connections": 2.5}, "max_connections", "expected an integer >= 1"),
    (Limits, {"read_timeout_seconds": -1}, "read_timeout_seconds", "positive number, got -1"),
    (Limits, {"header_timeout_seconds": math.nan}, "header_timeout_seconds", "got nan"),
    (Limits, {"rate_per_sender": -math.inf}, "rate_per_sender", "positive number, got -inf"),
    (Limits, {"rate_per_sender": "fast"}, "rate_per_sender", "got 'fast'"),
    (
        Limits,
        {"max_body_bytes": 100_000_000},
        "body_bytes_in_flight",
        "must be at least max_body_bytes (100000000)",
    ),
    (Delivery, {"deadline_seconds": math.inf}, "deadline_seconds", "positive number, got inf"),
    (Delivery, {"max_redirects": -1}, "max_redirects", "expected an integer >= 0, got -1"),
    (Delivery, {"handler_concurrency": None}, "handler_concurrency", "got None"),
    (CroSettings, {"time_zone": "Mars/Olympus"}, "time_zone", "IANA time zone"),
    (
        RetentionSettings,
        {"envelopes_days": 10, "messages_days": 5},
        "envelopes_days",
        "must not exceed messages_days (5)",
    ),
]


@pytest.mark.parametrize(
    ("kind", "given", "field", "words"),
    [pytest.param(k, g, f, w, id=f"{k.__name__}.{f}") for k, g, f, w in ERRORS],
)
def test_a_value_out_of_range_is_refused_naming_its_field(
    kind: type[Any], given: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        kind(**given)
    assert raised.value.field == field
    assert words in raised.value.problem
    assert str(raised.value).startswith(f"{field}: ")


def test_a_settings_error_is_an_adapter_error_and_a_value_error() -> None:
    assert issubclass(SettingsError, AdapterError) and issubclass(SettingsError, ValueError)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Limits().burst = 1  # type: ignore[misc]


def test_infinite_rate_switches_the_rate_limit_off() -> None:
    assert Limits().rate_limit == (50.0, 200.0)
    assert Limits(rate_per_sender=math.inf).rate_limit is None


def test_the_time_stamp_window_and_its_infinite_bounds() -> None:
    assert Limits().time_stamp_window == (timedelta(days=7), timedelta(minutes=15))
    past, future = Limits(time_stamp_future_seconds=math.inf).time_stamp_window
    assert past == timedelta(days=7) and future > timedelta(days=365 * 99)


def test_a_program_may_switch_the_caps_off_which_a_file_cannot() -> None:
    limits = Limits(handlers_per_sender=None, deliveries_per_peer=None)
    assert (limits.handlers_per_sender, limits.deliveries_per_peer) == (None, None)


def test_the_matcher_of_a_participant_alone_on_its_store_is_in_memory(tmp_path: Path) -> None:
    """A SQLite store has one process: its requests are matched in memory. (A PostgreSQL
    store's `SharedWaiters` are tested with the processes that share it,
    tests/resilience/test_shared_store.py.)"""
    store = SqliteStore(tmp_path / "alone.sqlite3")
    assert type(matcher_for(store.coordinator(), store)) is Waiters
    assert type(bare(tmp_path).waiters) is Waiters


def test_the_matcher_of_a_participant_on_a_shared_store_tells_the_other_processes() -> None:
    """A PostgreSQL store may be shared: its coordinator's notifier (LISTEN/NOTIFY) carries
    the news of responses and failures to the process that awaits them. Nothing connects
    before the store is opened."""
    import_asyncpg()
    from adapter.store.postgres import PostgresStore
    from adapter.waiters import SharedWaiters

    store = PostgresStore("postgresql://uftp@127.0.0.1:9/none", schema="never_opened")
    assert type(matcher_for(store.coordinator(), store)) is SharedWaiters


def test_a_file_may_switch_the_future_bound_off_but_not_the_past_one_beside_retention() -> None:
    """`inf` reads as in Python; a past bound of `inf` would outlive every message row that
    recognises a resent copy, so the file is refused, naming retention's key."""
    from tests.test_config import parse, valid

    data = valid()
    data["limits"] = {"time_stamp_future_seconds": math.inf}
    assert parse(data).limits.time_stamp_window[1] > timedelta(days=365 * 99)
    data["limits"] = {"time_stamp_past_seconds": math.inf}
    with pytest.raises(ConfigError, match=r"retention\.messages_days: must be more than"):
        parse(data)
