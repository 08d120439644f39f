"""Private keys on disk: file format, permissions, refusal to overwrite, and the public forms
(cs1 string, DNS TXT record) derived from them."""

from __future__ import annotations

import os
import stat
from base64 import b64encode
from pathlib import Path

import nacl.public
import nacl.signing
import pytest
from nacl.bindings import crypto_sign, crypto_sign_keypair, crypto_sign_open

from adapter.keys import (
    KeyFileError,
    KeyFileExists,
    PrivateKeys,
    dns_txt_record,
    generate,
    load_private,
    public_path,
    write_private,
)
from adapter.uftp.envelope import PublicKeys, parse_cs1
from adapter.uftp.messages import Role


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_gives_libsodium_secret_and_matching_publics() -> None:
    keys = generate()
    assert len(keys.signing) == 64
    assert keys.encryption is not None and len(keys.encryption) == 32
    seed = keys.signing[:32]
    assert keys.public.signing == bytes(nacl.signing.SigningKey(seed).verify_key)
    assert keys.public.encryption == bytes(nacl.public.PrivateKey(keys.encryption).public_key)
    assert generate().signing != keys.signing


def test_private_keys_check_lengths() -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        PrivateKeys(b"x" * 32)
    with pytest.raises(ValueError, match="32 bytes"):
        PrivateKeys(generate().signing, b"x" * 64)


def test_repr_never_shows_secret_bytes() -> None:
    keys = generate()
    assert keys.encryption is not None
    text = repr(keys) + str(keys)
    for secret in (keys.signing, keys.signing[:32], keys.encryption):
        assert b64encode(secret).decode() not in text
        assert secret.hex() not in text
        assert repr(secret) not in text
    assert keys.public.to_cs1() in text
    assert "hidden" in text


def test_write_private_modes_and_public_file(tmp_path: Path) -> None:
    keys = generate()
    path = tmp_path / "dso.key"
    pub = write_private(path, keys)
    assert pub == tmp_path / "dso.pub" == public_path(path)
    assert mode(path) == 0o600
    assert mode(pub) == 0o644
    cs1 = pub.read_text().strip()
    # "cs1." + base64 of 64 bytes (signing + encryption public keys).
    assert cs1.startswith("cs1.") and len(cs1) == 4 + 88
    assert parse_cs1(cs1) == keys.public
    text = path.read_text()
    assert text.startswith("#")
    assert "signing-secret = " in text and "encryption-secret = " in text


def test_write_private_keeps_0600_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "k.key"
        write_private(path, generate())
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_write_private_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "cro.key"
    write_private(path, generate())
    assert path.exists() and (tmp_path / "a" / "b" / "cro.pub").exists()


def test_write_private_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "dso.key"
    first = generate()
    write_private(path, first)
    before = path.read_bytes()
    with pytest.raises(KeyFileExists, match="refusing to overwrite") as info:
        write_private(path, generate())
    assert str(path) in str(info.value)
    assert isinstance(info.value, KeyFileError)
    assert path.read_bytes() == before
    assert parse_cs1((tmp_path / "dso.pub").read_text()) == first.public


def test_round_trip_generate_load_sign_verify(tmp_path: Path) -> None:
    path = tmp_path / "dso.key"
    keys = generate()
    write_private(path, keys)
    loaded = load_private(path)
    assert loaded == keys
    sealed = crypto_sign(b"<TestMessage/>", loaded.signing)
    public = parse_cs1(public_path(path).read_text())
    assert crypto_sign_open(sealed, public.signing) == b"<TestMessage/>"
    assert nacl.signing.VerifyKey(public.signing).verify(sealed) == b"<TestMessage/>"
    # The encryption pair works too: a box from a stranger opens with our secret.
    assert loaded.encryption is not None and public.encryption is not None
    stranger = nacl.public.PrivateKey.generate()
    box = nacl.public.Box(stranger, nacl.public.PublicKey(public.encryption))
    sealed_box = box.encrypt(b"hi")
    mine = nacl.public.Box(nacl.public.PrivateKey(loaded.encryption), stranger.public_key)
    assert mine.decrypt(sealed_box) == b"hi"


def test_loads_shapeshifter_uftp_single_line_format(tmp_path: Path) -> None:
    public, secret = crypto_sign_keypair()
    path = tmp_path / "legacy.key"
    path.write_text(b64encode(secret).decode() + "\n")
    path.chmod(0o600)
    keys = load_private(path)
    assert keys.signing == secret
    assert keys.encryption is None
    assert keys.public == PublicKeys(public)
    assert len(keys.public.to_cs1()) == 4 + 44


def test_loads_signing_only_structured_file(tmp_path: Path) -> None:
    _, secret = crypto_sign_keypair()
    path = tmp_path / "s.key"
    path.write_text(f"# comment\n\nsigning-secret = {b64encode(secret).decode()}\n")
    path.chmod(0o600)
    assert load_private(path) == PrivateKeys(secret)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "nope.key"
    with pytest.raises(KeyFileError) as info:
        load_private(path)
    message = str(info.value)
    assert str(path) in message and "no such key file" in message
    assert "uftp-adapter keys generate nope" in message


def test_directory_is_not_a_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="directory"):
        load_private(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("signing-secret = !!!notbase64!!!\n", r":1: the signing-secret is not valid base64"),
        (f"signing-secret = {b64encode(b'x' * 32).decode()}\n", "must decode to 64 bytes, not 32"),
        (b64encode(b"x" * 32).decode() + "\n", "must decode to 64 bytes, not 32"),
        ("colour = blue\n", "unknown field 'colour'"),
        ("just some words\n", ":1: expected 'name = base64 value'"),
        (f"encryption-secret = {b64encode(b'e' * 32).decode()}\n", "no signing-secret line"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path / "bad.key", text)
    with pytest.raises(KeyFileError, match=expected) as info:
        load_private(path)
    assert str(path) in str(info.value)


def test_wrong_encryption_length_and_duplicates(tmp_path: Path) -> None:
    keys = generate()
    good = f"signing-secret = {b64encode(keys.signing).decode()}\n"
    path = _write(tmp_path / "a.key", good + f"encryption-secret = {b64encode(b'e' * 31).decode()}")
    with pytest.raises(KeyFileError, match=r"a.key:2: the encryption-secret must decode to 32"):
        load_private(path)
    path = _write(tmp_path / "b.key", good + good)
    with pytest.raises(KeyFileError, match="appears twice"):
        load_private(path)


def test_damaged_secret_is_detected_without_showing_it(tmp_path: Path) -> None:
    keys = generate()
    spliced = keys.signing[:32] + generate().signing[32:]
    path = _write(tmp_path / "d.key", f"signing-secret = {b64encode(spliced).decode()}\n")
    with pytest.raises(KeyFileError, match="damaged") as info:
        load_private(path)
    assert b64encode(spliced).decode() not in str(info.value)


def test_bad_base64_message_does_not_echo_the_value(tmp_path: Path) -> None:
    secretish = "c2VjcmV0c2VjcmV0$$$"
    path = _write(tmp_path / "e.key", f"signing-secret = {secretish}\n")
    with pytest.raises(KeyFileError) as info:
        load_private(path)
    assert secretish not in str(info.value)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize(
    "unsafe", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660], ids=lambda mode: f"{mode:04o}"
)
def test_refuses_a_key_that_group_or_others_may_read(tmp_path: Path, unsafe: int) -> None:
    path = tmp_path / "open.key"
    keys = generate()
    write_private(path, keys)
    assert load_private(path) == keys
    path.chmod(unsafe)

    with pytest.raises(KeyFileError) as info:
        load_private(path)

    message = str(info.value)
    assert message.startswith(f"{path}: mode {unsafe:04o} gives group or others access")
    assert f"`chmod 600 {path}`" in message
    assert b64encode(keys.signing).decode() not in message
    path.chmod(0o400)  # read-only for its owner is fine too
    assert load_private(path) == keys


def test_dns_txt_record_one_key() -> None:
    keys = generate().public
    record = dns_txt_record("dso.example.com", Role.DSO, keys)
    assert record == f'_DSO._usef.dso.example.com. IN TXT "{keys.to_cs1()}"'


def test_dns_txt_record_two_keys_during_rotation() -> None:
    old, new = generate().public, generate().public
    record = dns_txt_record("cro.example.com.", "CRO", [new, old])
    assert record == f'_CRO._usef.cro.example.com. IN TXT "{new.to_cs1()} {old.to_cs1()}"'
    # Two 64-byte keys fit in one TXT character-string (at most 255 bytes).
    assert len(record.split('"')[1]) <= 255


def test_dns_txt_record_limits() -> None:
    keys = generate().public
    with pytest.raises(ValueError, match="1 to 2"):
        dns_txt_record("dso.example.com", Role.DSO, [keys, keys, keys])
    with pytest.raises(ValueError, match="1 to 2"):
        dns_txt_record("dso.example.com", Role.DSO, [])
    with pytest.raises(ValueError):
        dns_txt_record("dso.example.com", "XYZ", keys)
    with pytest.raises(ValueError, match="domain"):
        dns_txt_record(" ", Role.DSO, keys)
