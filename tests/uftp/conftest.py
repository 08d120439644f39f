"""Fixtures shared by the UFTP protocol-core tests.

The sample messages themselves are plain functions in `tests.uftp.samples`, importable from
any test; the fixtures below parametrize over them and provide signing key pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from nacl.bindings import crypto_sign_keypair

from adapter.uftp.messages import PayloadMessage

from . import samples


@pytest.fixture(params=samples.VERSIONS, ids=samples.version_id)
def uftp_version(request: pytest.FixtureRequest) -> str:
    """Each Version the codec speaks: 3.0.0, 3.1.0 and the draft 4.0.0."""
    version: str = request.param
    return version


@pytest.fixture(params=samples.MESSAGE_CLASSES, ids=lambda cls: cls.xml_name)
def message_type(request: pytest.FixtureRequest) -> type[PayloadMessage]:
    """Each message type the codec reads and writes."""
    cls: type[PayloadMessage] = request.param
    return cls


@pytest.fixture
def sample_message(message_type: type[PayloadMessage], uftp_version: str) -> PayloadMessage:
    """A complete, schema-valid sample for every message type x Version."""
    return samples.sample(message_type, uftp_version)


@pytest.fixture
def make_sample() -> Callable[..., PayloadMessage]:
    """`make_sample(cls, version="3.1.0", **changes)`: a sample with fields changed."""

    def make(cls: type[PayloadMessage], version: str = "3.1.0", **changes: Any) -> PayloadMessage:
        return samples.sample(cls, version, **changes)

    return make


@pytest.fixture
def keypair() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair: (32-byte public key, 64-byte libsodium secret key)."""
    public, secret = crypto_sign_keypair()
    return public, secret


@pytest.fixture
def other_keypair() -> tuple[bytes, bytes]:
    """A second, unrelated key pair (a rotated-in key, or an impostor's)."""
    public, secret = crypto_sign_keypair()
    return public, secret
