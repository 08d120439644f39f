"""Settings from the environment (UFTP_ADAPTER_<TABLE>_<KEY>), as twelve-factor deployments
give them: each overrides the file's key, is checked as that key is, and a mistake names the
variable."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from adapter.config import ConfigError, ListenAddress, PostgresStoreSettings, load_config
from adapter.keys import generate, write_private
from tests.test_config import SAMPLES


@pytest.fixture
def dso_file(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    for name in ("dso.toml", "cro.toml"):
        (folder / name).write_text((SAMPLES / name).read_text())
    for name in ("dso", "cro"):
        write_private(tmp_path / "keys" / f"{name}.key", generate())
    return folder / "dso.toml"


def test_variables_override_the_file_with_the_types_of_its_keys(dso_file: Path) -> None:
    config = load_config(
        dso_file,
        environ={
            "UFTP_ADAPTER_PARTICIPANT_LISTEN": "0.0.0.0:8080",
            "UFTP_ADAPTER_PARTICIPANT_VERSIONS": '["3.0.0"]',
            "UFTP_ADAPTER_PARTICIPANT_STORE": "postgresql://uftp:secret@db/uftp",
            "UFTP_ADAPTER_LIMITS_RATE_PER_SENDER": "10",
            "UFTP_ADAPTER_LIMITS_BURST": "20",
            "UFTP_ADAPTER_DELIVERY_BACKOFF_MAX_SECONDS": "60.5",
            "UFTP_ADAPTER_METRICS_LISTEN": "127.0.0.1:9464",
            "OTHER_VARIABLE": "ignored",
        },
    )
    assert config.participant.listen == ListenAddress("0.0.0.0", 8080)
    assert config.participant.versions == ("3.0.0",)
    assert config.participant.store == PostgresStoreSettings("postgresql://uftp:secret@db/uftp")
    assert config.limits.rate_per_sender == 10.0 and config.limits.burst == 20
    assert config.delivery.backoff_max_seconds == 60.5
    assert config.metrics.listen == ListenAddress("127.0.0.1", 9464)  # a table the file lacks
    assert config.participant.domain == "dso.uftp-demo.test"  # what is not set stays


def test_a_relative_path_is_relative_to_the_config_file_as_in_it(dso_file: Path) -> None:
    config = load_config(
        dso_file, environ={"UFTP_ADAPTER_PARTICIPANT_STORE": "sqlite:../state/dso.db"}
    )
    assert config.participant.store.path == dso_file.parent.parent / "state" / "dso.db"  # type: ignore[union-attr]


def test_inf_switches_the_rate_limit_off_as_in_the_file(dso_file: Path) -> None:
    config = load_config(dso_file, environ={"UFTP_ADAPTER_LIMITS_RATE_PER_SENDER": "inf"})
    assert math.isinf(config.limits.rate_per_sender) and config.limits.rate_limit is None


def test_the_process_environment_is_read_by_default(
    dso_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UFTP_ADAPTER_LIMITS_BURST", "7")
    assert load_config(dso_file).limits.burst == 7


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "UFTP_ADAPTER_LIMITS_RATE_PER_SENDER",
            "-1",
            "environment variable UFTP_ADAPTER_LIMITS_RATE_PER_SENDER: limits.rate_per_sender: "
            "expected a positive number, got -1",
        ),
        (
            "UFTP_ADAPTER_LIMITS_BURST",
            "many",
            "environment variable UFTP_ADAPTER_LIMITS_BURST: limits.burst: expected an integer "
            ">= 1, got a string ('many')",
        ),
        (
            "UFTP_ADAPTER_PARTICIPANT_LISTEN",
            "8080",
            "environment variable UFTP_ADAPTER_PARTICIPANT_LISTEN: participant.listen: "
            "expected a string, got an integer (8080)",
        ),
        (
            "UFTP_ADAPTER_PARTICIPANT_VERSIONS",
            '["9.9.9"]',
            "environment variable UFTP_ADAPTER_PARTICIPANT_VERSIONS: participant.versions[0]: "
            "expected one of",
        ),
        (
            "UFTP_ADAPTER_LIMITS_RATE_PER_SENDR",
            "10",
            "environment variable UFTP_ADAPTER_LIMITS_RATE_PER_SENDR: names no setting "
            "(expected UFTP_ADAPTER_<TABLE>_<KEY>, e.g. UFTP_ADAPTER_PARTICIPANT_LISTEN); "
            "did you mean UFTP_ADAPTER_LIMITS_RATE_PER_SENDER?",
        ),
        (
            "UFTP_ADAPTER_PEERS_DOMAIN",
            "x.test",
            "environment variable UFTP_ADAPTER_PEERS_DOMAIN: names no setting",
        ),
    ],
)
def test_a_mistake_names_the_variable(
    dso_file: Path, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(dso_file, environ={variable: value})
    assert str(caught.value).startswith(message)


def test_a_mistake_in_the_file_still_names_the_file(dso_file: Path) -> None:
    text = dso_file.read_text().replace("backoff_max_seconds = 300.0", "backoff_max_seconds = -3")
    dso_file.write_text(text)
    with pytest.raises(ConfigError, match=r"dso\.toml: delivery\.backoff_max_seconds"):
        load_config(dso_file, environ={"UFTP_ADAPTER_LIMITS_BURST": "3"})
