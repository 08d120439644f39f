"""The parts of a participant built from its settings: keys, store, directory, TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.assemble import directory_of, load_keys, new_store, tls_contexts
from adapter.config import PostgresStoreSettings as PostgresSettings
from adapter.keys import KeyFileError, generate, write_private
from adapter.store.postgres import PostgresStore
from adapter.store.sqlite import SqliteStore
from adapter.uftp.messages import Role
from tests.test_config import parse, valid


def test_load_keys_never_creates_a_key(tmp_path: Path) -> None:
    """A typo in signing_key must stop the participant, not give it a new identity."""
    data = valid()
    data["participant"]["signing_key"] = "keys/dso.key"
    config = parse(data, tmp_path)

    with pytest.raises(KeyFileError, match="no such key file; create one with `uftp-adapter"):
        load_keys(config.participant)
    assert not (tmp_path / "keys").exists()
    keys = generate()
    write_private(tmp_path / "keys" / "dso.key", keys)
    assert load_keys(config.participant) == keys


def test_the_store_is_the_one_configured_and_not_yet_opened(tmp_path: Path) -> None:
    config = parse(valid(), tmp_path / "config")
    store = new_store(config.participant)
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "var" / "dso.sqlite3"
    assert not store.path.exists()  # opening is its owner's: nothing was created
    postgres = new_store(PostgresSettings("postgresql://u@127.0.0.1/db?schema=other"))
    assert isinstance(postgres, PostgresStore)
    assert postgres.schema == "other"


def test_the_directory_holds_every_configured_peer(tmp_path: Path) -> None:
    config = parse(valid(), tmp_path)
    directory = directory_of(config.peers)
    assert directory.roles_of("cro.example.com") == {Role.CRO}
    assert directory.roles_of("agr.example.com") == {Role.AGR}


async def test_a_barred_peer_stays_barred(tmp_path: Path) -> None:
    directory = directory_of(parse(valid(), tmp_path).peers)
    agr = await directory.lookup("agr.example.com", Role.AGR)
    assert agr is not None and agr.barred


def test_without_a_certificate_the_endpoint_serves_plain_http(tmp_path: Path) -> None:
    contexts = tls_contexts(parse(valid(), tmp_path))
    assert contexts.server is None
    assert contexts.client.check_hostname
