"""Configuration: the happy path, the sample configs, and one test per way a user can get the
file wrong, each asserting that the message names the file and the field."""

from __future__ import annotations

import copy
import math
import os
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapter.assemble import load_keys
from adapter.config import (
    Config,
    ConfigError,
    CroMode,
    CroSettings,
    DeliverySettings,
    LimitsSettings,
    ListenAddress,
    PeriodViolation,
    PostgresStoreSettings,
    SqliteStoreSettings,
    TlsSettings,
    load_config,
    parse_config,
)
from adapter.keys import generate, write_private
from adapter.uftp.messages import Role
from tests.certs import Pki, make_pki, write_key

SAMPLES = Path(__file__).resolve().parent.parent / "config"
SOURCE = "test.toml"

CRO_KEY = generate().public.to_cs1()
AGR_KEY = generate().public.to_cs1()


def valid() -> dict[str, Any]:
    return {
        "participant": {
            "domain": "dso.example.com",
            "role": "DSO",
            "signing_key": "../keys/dso.key",
            "listen": "127.0.0.1:8081",
            "store": "sqlite:../var/dso.sqlite3",
            "versions": ["3.1.0", "3.0.0"],
        },
        "peers": [
            {
                "domain": "cro.example.com",
                "role": "CRO",
                "endpoint": "http://127.0.0.1:8082/shapeshifter/api/v3/message",
                "public_keys": [CRO_KEY],
            },
            {
                "domain": "agr.example.com",
                "role": "AGR",
                "endpoint": "https://agr.example.com/shapeshifter/api/v3/message",
                "public_keys": [AGR_KEY],
                "barred": True,
            },
        ],
    }


def parse(data: dict[str, Any], base: Path = Path("/srv/uftp/config")) -> Config:
    return parse_config(data, base, SOURCE)


def test_minimal_config_with_defaults() -> None:
    config = parse(valid())
    p = config.participant
    assert p.domain == "dso.example.com"
    assert p.role is Role.DSO
    assert p.signing_key == Path("/srv/uftp/keys/dso.key")
    assert p.listen == ListenAddress("127.0.0.1", 8081)
    assert p.store == SqliteStoreSettings(Path("/srv/uftp/var/dso.sqlite3"))
    assert p.versions == ("3.1.0", "3.0.0")
    assert p.send_version == "3.1.0"
    assert config.limits.max_body_bytes == 32 * 1024 * 1024  # participant.max_body_bytes
    assert config.delivery == DeliverySettings()
    assert config.delivery.deadline_seconds == 3600
    assert config.cro == CroSettings()
    assert config.path == Path("/srv/uftp/config")
    cro, agr = config.peers
    assert cro.role is Role.CRO and cro.barred is False
    assert cro.public_keys[0].to_cs1() == CRO_KEY
    assert cro.signing_keys == (cro.public_keys[0].signing,)
    assert agr.barred is True


def test_all_fields() -> None:
    data = valid()
    data["participant"].update(
        listen="[::1]:0",
        store="postgresql://uftp:hunter2@db.example.com/uftp",
        versions=["4.0.0"],
        max_body_bytes=1024,
        signing_key="/abs/dso.key",
    )
    data["participant"]["role"] = "CRO"
    data["delivery"] = {
        "deadline_seconds": 7200,
        "request_timeout_seconds": 10.5,
        "backoff_initial_seconds": 2,
        "backoff_max_seconds": 60.0,
        "max_redirects": 0,
        "handler_concurrency": 4,
    }
    data["cro"] = {"mode": "closed", "time_zone": "UTC", "period_violation": "clip"}
    second = generate().public.to_cs1()
    data["peers"][0]["public_keys"] = [CRO_KEY, second]
    config = parse(data)
    p = config.participant
    assert p.listen == ListenAddress("::1", 0) and str(p.listen) == "[::1]:0"
    assert isinstance(p.store, PostgresStoreSettings)
    assert p.store.dsn.endswith("@db.example.com/uftp")
    assert "hunter2" not in repr(p.store) and "***" in repr(p.store)
    assert p.signing_key == Path("/abs/dso.key")
    d = config.delivery
    assert (d.deadline_seconds, d.request_timeout_seconds) == (7200.0, 10.5)
    assert isinstance(d.deadline_seconds, float)
    assert (d.backoff_initial_seconds, d.backoff_max_seconds) == (2.0, 60.0)
    assert (d.max_redirects, d.handler_concurrency) == (0, 4)
    assert config.cro == CroSettings(CroMode.CLOSED, "UTC", PeriodViolation.CLIP)
    assert str(config.cro.zone) == "UTC"
    assert [k.to_cs1() for k in config.peers[0].public_keys] == [CRO_KEY, second]


def test_single_public_key_string_is_accepted() -> None:
    data = valid()
    data["peers"][0]["public_keys"] = CRO_KEY
    assert parse(data).peers[0].public_keys[0].to_cs1() == CRO_KEY


def test_peer_lookup() -> None:
    data = valid()
    data["peers"].append({**data["peers"][0], "role": "DSO"})
    config = parse(data)
    assert config.peer("agr.example.com") is config.peers[1]
    assert config.peer("AGR.example.com.", Role.AGR) is config.peers[1]
    assert config.peer("cro.example.com", "DSO") is config.peers[2]
    assert config.peer("cro.example.com", Role.CRO) is config.peers[0]
    assert config.peer("nobody.example.com") is None
    assert config.peer("agr.example.com", Role.DSO) is None
    with pytest.raises(LookupError, match="several roles"):
        config.peer("cro.example.com")


def test_no_peers_is_fine() -> None:
    data = valid()
    del data["peers"]
    assert parse(data).peers == ()


Mutation = Callable[[dict[str, Any]], object]


def _set(section: str, key: str, value: object) -> Mutation:
    return lambda d: d[section].__setitem__(key, value)


def _peer(index: int, key: str, value: object) -> Mutation:
    return lambda d: d["peers"][index].__setitem__(key, value)


def _section(name: str, **table: object) -> Mutation:
    return lambda d: d.__setitem__(name, table)


ERRORS: list[tuple[str, Mutation, str, str]] = [
    # (case, mutation, field named, words expected)
    ("missing section", lambda d: d.pop("participant"), "participant", "missing"),
    ("missing field", lambda d: d["participant"].pop("domain"), "participant.domain", "missing"),
    ("missing listen", lambda d: d["participant"].pop("listen"), "participant.listen", "missing"),
    (
        "wrong type int",
        _set("participant", "max_body_bytes", "big"),
        "participant.max_body_bytes",
        "integer",
    ),
    (
        "bool is not int",
        _set("participant", "max_body_bytes", True),
        "participant.max_body_bytes",
        "got a boolean",
    ),
    ("too small", _set("participant", "max_body_bytes", 0), "participant.max_body_bytes", ">= 1"),
    (
        "wrong type bool",
        _peer(0, "barred", "yes"),
        "peers[0].barred",
        "true or false",
    ),
    (
        "generate_key is gone",
        _set("participant", "generate_key", True),
        "participant.generate_key",
        "no longer read: a participant never creates its own key, so that a typo in "
        "signing_key cannot give it a new identity; create the key once with "
        "`uftp-adapter keys generate dso --dir /srv/uftp/keys` and delete this line",
    ),
    (
        "wrong type str",
        _set("participant", "domain", 42),
        "participant.domain",
        "expected a string, got an integer (42)",
    ),
    ("section not table", lambda d: d.__setitem__("delivery", 5), "delivery", "expected a table"),
    (
        "bad domain upper",
        _set("participant", "domain", "DSO.example.com"),
        "participant.domain",
        "internet domain",
    ),
    ("bad domain one label", _peer(1, "domain", "localhost"), "peers[1].domain", "internet domain"),
    ("bad role", _set("participant", "role", "dso"), "participant.role", "'DSO'"),
    ("bad peer role", _peer(0, "role", "BRP"), "peers[0].role", "'AGR' | 'CRO' | 'DSO'"),
    (
        "bad URL scheme",
        _peer(1, "endpoint", "ftp://agr.example.com/x"),
        "peers[1].endpoint",
        "http(s) URL",
    ),
    ("bad URL text", _peer(1, "endpoint", "agr.example.com"), "peers[1].endpoint", "http(s) URL"),
    (
        "bad URL port",
        _peer(1, "endpoint", "https://agr.example.com:99999/x"),
        "peers[1].endpoint",
        "Port out of range",
    ),
    (
        "URL credentials",
        _peer(1, "endpoint", "https://u:p@agr.example.com/x"),
        "peers[1].endpoint",
        "credentials",
    ),
    (
        "URL type",
        _peer(0, "endpoint", ["http://x.example.com"]),
        "peers[0].endpoint",
        "got an array",
    ),
    (
        "unknown key",
        _set("participant", "domian", "x"),
        "participant.domian",
        "did you mean 'domain'",
    ),
    ("unknown section", lambda d: d.__setitem__("peer", []), "peer", "did you mean 'peers'"),
    ("unknown peer key", _peer(1, "barrd", True), "peers[1].barrd", "unknown key"),
    ("unknown delivery key", _section("delivery", deadline=1), "delivery.deadline", "unknown key"),
    (
        "duplicate peer",
        lambda d: d["peers"].append(dict(d["peers"][0])),
        "peers[2]",
        "duplicate peer (cro.example.com, CRO)",
    ),
    ("bad cs1 prefix", _peer(0, "public_keys", ["cs2.AAAA"]), "peers[0].public_keys[0]", "cs1."),
    (
        "bad cs1 base64",
        _peer(0, "public_keys", [CRO_KEY, "cs1.***"]),
        "peers[0].public_keys[1]",
        "base64",
    ),
    (
        "bad cs1 length",
        _peer(0, "public_keys", ["cs1.AAAA"]),
        "peers[0].public_keys[0]",
        "32 or 64 bytes",
    ),
    (
        "bad cs1 single",
        _peer(0, "public_keys", "cs1.AAAA"),
        "peers[0].public_keys",
        "32 or 64 bytes",
    ),
    (
        "three keys",
        _peer(0, "public_keys", [CRO_KEY, AGR_KEY, CRO_KEY]),
        "peers[0].public_keys",
        "got 3",
    ),
    ("no keys", _peer(0, "public_keys", []), "peers[0].public_keys", "got 0"),
    (
        "same key twice",
        _peer(0, "public_keys", [CRO_KEY, CRO_KEY]),
        "peers[0].public_keys[1]",
        "twice",
    ),
    (
        "key not string",
        _peer(0, "public_keys", [1]),
        "peers[0].public_keys[0]",
        "expected a string",
    ),
    ("keys and file", _peer(0, "public_keys_file", "cro.pub"), "peers[0]", "not both"),
    (
        "neither keys nor file",
        lambda d: d["peers"][0].pop("public_keys"),
        "peers[0]",
        "public_keys_file",
    ),
    ("peers not array", lambda d: d.__setitem__("peers", {"domain": "x"}), "peers", "[[peers]]"),
    ("peer not table", lambda d: d["peers"].__setitem__(0, "cro"), "peers[0]", "expected a table"),
    (
        "listen no port",
        _set("participant", "listen", "127.0.0.1"),
        "participant.listen",
        "host:port",
    ),
    (
        "listen bare ipv6",
        _set("participant", "listen", "::1:8081"),
        "participant.listen",
        "brackets",
    ),
    ("listen bad ipv6", _set("participant", "listen", "[nope]:8081"), "participant.listen", "IPv6"),
    (
        "listen big port",
        _set("participant", "listen", "0.0.0.0:70000"),
        "participant.listen",
        "0-65535",
    ),
    ("listen bad host", _set("participant", "listen", "a b:80"), "participant.listen", "host name"),
    (
        "store scheme",
        _set("participant", "store", "mysql://db/x"),
        "participant.store",
        "sqlite:PATH",
    ),
    (
        "store empty path",
        _set("participant", "store", "sqlite:"),
        "participant.store",
        "has no PATH",
    ),
    (
        "signing_key empty",
        _set("participant", "signing_key", ""),
        "participant.signing_key",
        "empty",
    ),
    ("versions empty", _set("participant", "versions", []), "participant.versions", "at least one"),
    (
        "versions string",
        _set("participant", "versions", "3.1.0"),
        "participant.versions",
        "array of strings",
    ),
    (
        "versions unknown",
        _set("participant", "versions", ["3.1.0", "2.0.0"]),
        "participant.versions[1]",
        "3.0.0, 3.1.0, 4.0.0",
    ),
    (
        "versions duplicate",
        _set("participant", "versions", ["3.1.0", "3.1.0"]),
        "participant.versions[1]",
        "twice",
    ),
    (
        "deadline zero",
        _section("delivery", deadline_seconds=0),
        "delivery.deadline_seconds",
        "positive",
    ),
    (
        "deadline inf",
        _section("delivery", deadline_seconds=float("inf")),
        "delivery.deadline_seconds",
        "positive",
    ),
    (
        "deadline type",
        _section("delivery", deadline_seconds="1h"),
        "delivery.deadline_seconds",
        "got a string",
    ),
    (
        "backoff order",
        _section("delivery", backoff_initial_seconds=10, backoff_max_seconds=5),
        "delivery.backoff_initial_seconds",
        "backoff_max_seconds",
    ),
    (
        "timeout > deadline",
        _section("delivery", request_timeout_seconds=5000),
        "delivery.request_timeout_seconds",
        "deadline_seconds",
    ),
    (
        "redirects negative",
        _section("delivery", max_redirects=-1),
        "delivery.max_redirects",
        ">= 0",
    ),
    (
        "concurrency zero",
        _section("delivery", handler_concurrency=0),
        "delivery.handler_concurrency",
        ">= 1",
    ),
    ("cro mode", _section("cro", mode="half"), "cro.mode", "'open' | 'closed'"),
    ("cro zone", _section("cro", time_zone="Mars/Olympus"), "cro.time_zone", "IANA time zone"),
    (
        "cro violation",
        _section("cro", period_violation="ignore"),
        "cro.period_violation",
        "'reject' | 'clip'",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [pytest.param(m, f, w, id=case) for case, m, f, w in ERRORS],
)
def test_config_errors_name_the_field(mutate: Mutation, field: str, words: str) -> None:
    data = copy.deepcopy(valid())
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse(data)
    error = info.value
    assert error.source == SOURCE
    assert error.field == field
    message = str(error)
    assert message.startswith(f"{SOURCE}: {field}: ")
    assert words in message
    assert "\n" not in message


def test_store_error_hides_password() -> None:
    data = valid()
    data["participant"]["store"] = "mysql://uftp:hunter2@db/x"
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert "hunter2" not in str(info.value)


def test_plain_http_to_a_remote_host_warns(caplog: pytest.LogCaptureFixture) -> None:
    data = valid()
    data["peers"][1]["endpoint"] = "http://agr.example.com/x"
    parse(data)
    assert "peers[1].endpoint" in caplog.text and "https" in caplog.text


def test_public_keys_file(tmp_path: Path) -> None:
    keys = generate()
    write_private(tmp_path / "keys" / "cro.key", keys)
    data = valid()
    del data["peers"][0]["public_keys"]
    data["peers"][0]["public_keys_file"] = "../keys/cro.pub"
    (tmp_path / "config").mkdir()
    config = parse(data, tmp_path / "config")
    peer = config.peers[0]
    assert peer.public_keys == (keys.public,)
    assert peer.public_keys_file == tmp_path / "keys" / "cro.pub"


def test_public_keys_file_with_two_keys_and_a_comment(tmp_path: Path) -> None:
    old, new = generate().public, generate().public
    (tmp_path / "cro.pub").write_text(f"# rotating\n{new.to_cs1()}\n{old.to_cs1()}\n")
    data = valid()
    del data["peers"][0]["public_keys"]
    data["peers"][0]["public_keys_file"] = "cro.pub"
    assert parse(data, tmp_path).peers[0].public_keys == (new, old)


def test_missing_public_keys_file_says_to_ask_the_peer(tmp_path: Path) -> None:
    """The peer's key comes from the peer: generating one here would make a stranger's."""
    data = valid()
    del data["peers"][0]["public_keys"]
    data["peers"][0]["public_keys_file"] = "../keys/cro.pub"
    with pytest.raises(ConfigError) as info:
        parse(data, tmp_path / "config")
    assert info.value.field == "peers[0].public_keys_file"
    pub = tmp_path / "keys" / "cro.pub"
    assert info.value.problem == (
        f"{pub} does not exist: ask the operator of cro.example.com for its public key "
        f"(a 'cs1.' string) and save it as {pub}"
    )
    assert "generate" not in str(info.value)


def test_bad_public_keys_file(tmp_path: Path) -> None:
    (tmp_path / "cro.pub").write_text("cs1.AAAA\n")
    data = valid()
    del data["peers"][0]["public_keys"]
    data["peers"][0]["public_keys_file"] = "cro.pub"
    with pytest.raises(ConfigError, match=r"peers\[0\]\.public_keys_file .*32 or 64 bytes"):
        parse(data, tmp_path)
    (tmp_path / "cro.pub").write_text("\n")
    with pytest.raises(ConfigError, match="got 0"):
        parse(data, tmp_path)


def test_load_config_from_file(tmp_path: Path) -> None:
    path = tmp_path / "dso.toml"
    path.write_text(
        f"""
[participant]
domain = "dso.example.com"
role = "DSO"
signing_key = "dso.key"
listen = "127.0.0.1:8081"
store = "sqlite:var/dso.sqlite3"
versions = ["3.0.0"]

[[peers]]
domain = "cro.example.com"
role = "CRO"
endpoint = "http://127.0.0.1:8082/x"
public_keys = ["{CRO_KEY}"]
"""
    )
    config = load_config(path)
    assert config.path == path
    assert config.participant.signing_key == tmp_path / "dso.key"
    assert config.participant.store == SqliteStoreSettings(tmp_path / "var" / "dso.sqlite3")


def test_load_config_relative_path_resolves_against_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    data = (
        '[participant]\ndomain = "dso.example.com"\nrole = "DSO"\nsigning_key = "k.key"\n'
        'listen = "127.0.0.1:1"\nstore = "sqlite:db"\nversions = ["3.1.0"]\n'
    )
    (tmp_path / "etc" / "c.toml").write_text(data)
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/c.toml")
    assert config.participant.signing_key == tmp_path / "etc" / "k.key"
    assert config.path == tmp_path / "etc" / "c.toml"


def test_load_config_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="no such config file") as info:
        load_config(missing)
    assert str(info.value).startswith(str(missing))
    bad = tmp_path / "bad.toml"
    bad.write_text("[participant\ndomain = 1\n")
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 1") as info:
        load_config(bad)
    assert str(info.value).startswith(str(bad))
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(binary)
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)
    dup = tmp_path / "dup.toml"
    dup.write_text("[participant]\ndomain = 'a'\ndomain = 'b'\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(dup)


# --------------------------------------------------------------------------------------------
# The sample configs in config/
# --------------------------------------------------------------------------------------------


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    shutil.copytree(SAMPLES, tmp_path / "config")
    return tmp_path


def test_sample_configs_load_after_generating_keys(samples: Path) -> None:
    dso_keys, cro_keys = generate(), generate()
    write_private(samples / "keys" / "dso.key", dso_keys)
    write_private(samples / "keys" / "cro.key", cro_keys)

    dso = load_config(samples / "config" / "dso.toml")
    cro = load_config(samples / "config" / "cro.toml")

    assert dso.participant.domain == "dso.uftp-demo.test"
    assert dso.participant.role is Role.DSO
    assert dso.participant.listen == ListenAddress("127.0.0.1", 8081)
    assert dso.participant.signing_key == samples / "keys" / "dso.key"
    assert dso.participant.store == SqliteStoreSettings(samples / "var" / "dso.sqlite3")
    assert load_keys(dso.participant) == dso_keys

    assert cro.participant.domain == "cro.uftp-demo.test"
    assert cro.participant.role is Role.CRO
    assert cro.participant.listen == ListenAddress("127.0.0.1", 8082)
    assert cro.cro.mode is CroMode.OPEN

    to_cro = dso.peer("cro.uftp-demo.test", Role.CRO)
    to_dso = cro.peer("dso.uftp-demo.test", Role.DSO)
    assert to_cro is not None and to_dso is not None
    assert to_cro.public_keys == (cro_keys.public,)
    assert to_dso.public_keys == (dso_keys.public,)
    assert to_cro.endpoint.startswith("http://127.0.0.1:8082/")
    assert to_dso.endpoint.startswith("http://127.0.0.1:8081/")


def test_sample_config_without_the_peers_key_says_where_it_goes(samples: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(samples / "config" / "dso.toml")
    assert info.value.field == "peers[0].public_keys_file"
    assert "ask the operator of cro.uftp-demo.test" in str(info.value)
    assert str(samples / "keys" / "cro.pub") in str(info.value)


def test_sample_configs_do_not_create_keys() -> None:
    for name in ("dso.toml", "cro.toml"):
        with (SAMPLES / name).open("rb") as handle:
            assert "generate_key" not in tomllib.load(handle)["participant"]


# --------------------------------------------------------------------------------------------
# [limits]
# --------------------------------------------------------------------------------------------


def test_limits_default_when_absent() -> None:
    limits = parse(valid()).limits
    assert limits == LimitsSettings()
    assert limits.rate_limit == (50.0, 200.0)
    assert limits.handlers_per_sender == DeliverySettings().handler_concurrency // 2
    assert limits.deliveries_per_peer == 16


def test_limits_table() -> None:
    data = valid()
    data["limits"] = {
        "rate_per_sender": 2,
        "burst": 5,
        "handlers_per_sender": 3,
        "deliveries_per_peer": 4,
    }
    limits = parse(data).limits
    assert limits == LimitsSettings(
        rate_per_sender=2.0, burst=5, handlers_per_sender=3, deliveries_per_peer=4
    )
    assert limits.rate_limit == (2.0, 5.0)


def test_rate_per_sender_inf_switches_the_limit_off() -> None:
    data = valid()
    data["limits"] = {"rate_per_sender": math.inf}
    assert parse(data).limits.rate_limit is None


@pytest.mark.parametrize(("slots", "per_sender"), [(6, 3), (1, 1), (16, 8)])
def test_handlers_per_sender_defaults_to_half_the_handler_slots(
    slots: int, per_sender: int
) -> None:
    data = valid()
    data["delivery"] = {"handler_concurrency": slots}
    assert parse(data).limits.handlers_per_sender == per_sender


def test_sample_limits_comment_shows_the_defaults() -> None:
    """The commented-out [limits] in the samples, uncommented, is what no [limits] gives."""
    for sample in ("dso.toml", "cro.toml"):
        lines = (SAMPLES / sample).read_text("utf-8").splitlines()
        block = []
        for line in lines[lines.index("# [limits]") :]:
            if not line.startswith("# "):
                break
            block.append(line.removeprefix("# "))
        table = tomllib.loads("\n".join(block))["limits"]
        assert set(table) == {
            "rate_per_sender",
            "burst",
            "handlers_per_sender",
            "deliveries_per_peer",
            "read_timeout_seconds",
            "header_timeout_seconds",
            "keepalive_timeout_seconds",
            "max_connections",
            "body_bytes_in_flight",
            "time_stamp_future_seconds",
            "time_stamp_past_seconds",
        }
        data = valid()
        data["limits"] = table
        assert parse(data).limits == LimitsSettings()


LIMITS_ERRORS: list[tuple[str, Mutation, str, str]] = [
    ("rate zero", _section("limits", rate_per_sender=0), "limits.rate_per_sender", "positive"),
    (
        "rate -inf",
        _section("limits", rate_per_sender=-math.inf),
        "limits.rate_per_sender",
        "positive",
    ),
    (
        "rate string",
        _section("limits", rate_per_sender="fast"),
        "limits.rate_per_sender",
        "got a string",
    ),
    ("burst zero", _section("limits", burst=0), "limits.burst", ">= 1"),
    ("burst float", _section("limits", burst=1.5), "limits.burst", "integer"),
    (
        "handlers zero",
        _section("limits", handlers_per_sender=0),
        "limits.handlers_per_sender",
        ">= 1",
    ),
    (
        "handlers over the global slots",
        _section("limits", handlers_per_sender=17),
        "limits.handlers_per_sender",
        "delivery.handler_concurrency (16)",
    ),
    (
        "deliveries zero",
        _section("limits", deliveries_per_peer=0),
        "limits.deliveries_per_peer",
        ">= 1",
    ),
    (
        "unknown key",
        _section("limits", rate_per_second=1),
        "limits.rate_per_second",
        "did you mean 'rate_per_sender'",
    ),
    ("not a table", lambda d: d.__setitem__("limits", 3), "limits", "expected a table"),
]


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [pytest.param(m, f, w, id=case) for case, m, f, w in LIMITS_ERRORS],
)
def test_limits_errors_name_the_field(mutate: Mutation, field: str, words: str) -> None:
    data = copy.deepcopy(valid())
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert info.value.field == field
    assert str(info.value).startswith(f"{SOURCE}: {field}: ")
    assert words in str(info.value)


# --------------------------------------------------------------------------------------------
# [tls]: real files from a throwaway CA, in tmp_path/tls beside tmp_path/config
# --------------------------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "tls")


def tls_table(**changes: str | None) -> dict[str, object]:
    """A full [tls] table as written in tmp_path/config; None drops a key."""
    table: dict[str, str | None] = {
        "certificate": "../tls/server.crt",
        "private_key": "../tls/server.key",
        "client_ca": "../tls/ca.crt",
        "ca": "../tls/ca.crt",
        "client_certificate": "../tls/client.crt",
        "client_private_key": "../tls/client.key",
    }
    table.update(changes)
    return {key: value for key, value in table.items() if value is not None}


def parse_tls(tmp_path: Path, table: object) -> Config:
    data = valid()
    data["tls"] = table
    return parse_config(data, tmp_path / "config", SOURCE)


def test_tls_defaults_to_plain_http_with_system_trust() -> None:
    assert parse(valid()).tls == TlsSettings()


def test_tls_paths_resolve_against_the_config_folder(pki: Pki, tmp_path: Path) -> None:
    tls = parse_tls(tmp_path, tls_table()).tls
    assert tls == TlsSettings(
        certificate=pki.server_certificate.resolve(),
        private_key=pki.server_key.resolve(),
        client_ca=pki.ca.resolve(),
        ca=pki.ca.resolve(),
        client_certificate=pki.client_certificate.resolve(),
        client_private_key=pki.client_key.resolve(),
    )


def test_tls_trust_alone_is_fine(pki: Pki, tmp_path: Path) -> None:
    """A participant behind a TLS-terminating proxy still verifies its peers' servers."""
    tls = parse_tls(tmp_path, {"ca": "../tls/ca.crt"}).tls
    assert tls.certificate is None and tls.ca == pki.ca.resolve()


def _write(name: str, text: str) -> Callable[[Path], object]:
    return lambda folder: (folder / name).write_text(text)


def _encrypted_key(folder: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    write_key(folder / "encrypted.key", ec.generate_private_key(ec.SECP256R1()), passphrase=b"pw")


TLS_ERRORS: list[tuple[str, dict[str, str | None], Callable[[Path], object] | None, str, str]] = [
    # (case, table changes, file preparation in tmp_path/tls, field named, words expected)
    ("no such certificate", {"certificate": "../tls/nope.crt"}, None, "certificate", "not exist"),
    ("certificate is a folder", {"certificate": "../tls"}, None, "certificate", "directory"),
    (
        "certificate not PEM",
        {"certificate": "../tls/junk.crt"},
        _write("junk.crt", "hello\n"),
        "certificate",
        "no usable PEM certificate",
    ),
    (
        "certificate unreadable",
        {"certificate": "../tls/server.crt/x"},
        None,
        "certificate",
        "cannot read",
    ),
    ("key without certificate", {"certificate": None}, None, "certificate", "missing"),
    ("certificate without key", {"private_key": None}, None, "private_key", "missing"),
    (
        "client certificate without key",
        {"client_private_key": None},
        None,
        "client_private_key",
        "tls.client_certificate needs it",
    ),
    (
        "client_ca without a server certificate",
        {"certificate": None, "private_key": None},
        None,
        "client_ca",
        "needs certificate",
    ),
    (
        "key of another certificate",
        {"private_key": "../tls/client.key"},
        None,
        "private_key",
        "is not the key of the certificate",
    ),
    (
        "key file holds a certificate",
        {"private_key": "../tls/ca.crt"},
        None,
        "private_key",
        "no PEM private key",
    ),
    (
        "key file corrupt",
        {"private_key": "../tls/bad.key"},
        _write("bad.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        "private_key",
        "no usable private key",
    ),
    (
        "encrypted key",
        {"client_private_key": "../tls/encrypted.key"},
        _encrypted_key,
        "client_private_key",
        "encrypted",
    ),
    ("no such key", {"private_key": "../tls/nope.key"}, None, "private_key", "not exist"),
    ("ca not a certificate", {"ca": "../tls/server.key"}, None, "ca", "no usable PEM certificate"),
    ("no such client_ca", {"client_ca": "../tls/nope.crt"}, None, "client_ca", "not exist"),
    ("empty path", {"ca": ""}, None, "ca", "empty string"),
]


@pytest.mark.parametrize(
    ("changes", "prepare", "field", "words"),
    [pytest.param(c, p, f, w, id=case) for case, c, p, f, w in TLS_ERRORS],
)
def test_tls_errors_name_the_field(
    pki: Pki,
    tmp_path: Path,
    changes: dict[str, str | None],
    prepare: Callable[[Path], object] | None,
    field: str,
    words: str,
) -> None:
    if prepare is not None:
        prepare(tmp_path / "tls")
    with pytest.raises(ConfigError) as info:
        parse_tls(tmp_path, tls_table(**changes))
    message = str(info.value)
    assert info.value.field == f"tls.{field}"
    assert message.startswith(f"{SOURCE}: tls.{field}: ")
    assert words in message
    assert "BEGIN" not in message and "\n" not in message  # nothing read from a key file


@pytest.mark.parametrize(
    ("table", "field", "words"),
    [
        ({"certificat": "x"}, "tls.certificat", "did you mean 'certificate'"),
        ({"ca": 5}, "tls.ca", "expected a string"),
        ("yes", "tls", "expected a table"),
    ],
)
def test_tls_table_shape_errors(tmp_path: Path, table: object, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_tls(tmp_path, table)
    assert info.value.field == field
    assert words in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_tls_unreadable_key(pki: Pki, tmp_path: Path) -> None:
    pki.server_key.chmod(0)
    with pytest.raises(ConfigError) as info:
        parse_tls(tmp_path, tls_table())
    assert info.value.field == "tls.private_key"
    assert "cannot read" in str(info.value)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_tls_key_readable_by_others_warns(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki.server_key.chmod(0o644)
    parse_tls(tmp_path, tls_table())
    assert "chmod 600" in caplog.text
    assert "BEGIN" not in caplog.text


def test_read_timeout_and_time_stamp_window_from_limits() -> None:
    data = valid()
    data["limits"] = {
        "read_timeout_seconds": 5,
        "time_stamp_future_seconds": 60,
        "time_stamp_past_seconds": 3600,
    }
    limits = parse(data).limits
    assert (limits.read_timeout_seconds, limits.time_stamp_future_seconds) == (5.0, 60.0)
    assert limits.time_stamp_past_seconds == 3600.0
    assert LimitsSettings().time_stamp_future_seconds == 900.0  # clock skew, not more


@pytest.mark.parametrize("key", ["read_timeout_seconds", "time_stamp_past_seconds"])
def test_time_limits_must_be_positive(key: str) -> None:
    data = valid()
    data["limits"] = {key: 0}
    with pytest.raises(ConfigError, match=f"limits.{key}"):
        parse(data)
