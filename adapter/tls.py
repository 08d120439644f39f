"""The two TLS contexts of a participant: the one our endpoint serves with, and the one our
client connects to peers with.

The spec requires HTTPS between participants (message-transport-mechanism.md); the signed
envelope proves who wrote a message, TLS keeps it private on the way and proves which server
we talk to. Both contexts refuse anything older than TLS 1.2.

The server trusts only the configured `client_ca` for client certificates, never the system
store: with the system store, any publicly trusted certificate would pass as a peer. The
client trusts `ca` when given, else the system store, and always checks the host name.

Files are checked one at a time before OpenSSL loads them, because OpenSSL's own "PEM lib"
does not say which file is wrong. Nothing read from a key file is ever logged or put in an
error message.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from .uftp.errors import AdapterError

log = logging.getLogger(__name__)

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """HTTPS in both directions: the [tls] table (paths are absolute once loaded).

    Without `certificate` the endpoint serves plain HTTP, for loopback or behind a proxy that
    terminates TLS. Outgoing connections always verify the peer's certificate: against `ca`
    when given, else against the system trust store. This module builds the contexts,
    and checks the files when the configuration is loaded (`check`).
    """

    #: Our server certificate (PEM, chain allowed) and its unencrypted private key.
    certificate: Path | None = None
    private_key: Path | None = None
    #: CA(s) that sign our peers' client certificates; when set, every client must present one.
    client_ca: Path | None = None
    #: CA(s) we trust for peers' server certificates, instead of the system trust store.
    ca: Path | None = None
    #: The certificate we present to peers that require client certificates, and its key.
    client_certificate: Path | None = None
    client_private_key: Path | None = None


class TlsFileError(AdapterError):
    """A certificate, key or CA file that cannot be used; `key` names its [tls] field."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"tls.{key}: {problem}")


def server_context(settings: TlsSettings) -> ssl.SSLContext | None:
    """The context our endpoint serves HTTPS with; None (plain HTTP) without a certificate."""
    if settings.certificate is None or settings.private_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    _load_pair(context, "certificate", settings.certificate, "private_key", settings.private_key)
    if settings.client_ca is not None:
        _load_ca(context, "client_ca", settings.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context our client verifies peers' servers with (and presents our client
    certificate with, when one is configured)."""
    if settings.ca is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        # Instead of the system store, not beside it: a private CA is meant to be the only trust.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_ca(context, "ca", settings.ca)
    context.minimum_version = MINIMUM_VERSION
    if settings.client_certificate is not None and settings.client_private_key is not None:
        _load_pair(
            context,
            "client_certificate",
            settings.client_certificate,
            "client_private_key",
            settings.client_private_key,
        )
    return context


def check(settings: TlsSettings) -> None:
    """Build both contexts once, so that a bad file is found when the config is loaded.

    Raises `TlsFileError` naming the field.
    """
    server_context(settings)
    client_context(settings)


def _read(key: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsFileError(key, f"{path} does not exist") from None
    except IsADirectoryError:
        raise TlsFileError(key, f"{path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise TlsFileError(key, f"cannot read {path}: {exc.strerror}") from None


def _load_ca(context: ssl.SSLContext, key: str, path: Path) -> None:
    _read(key, path)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise TlsFileError(
            key, f"{path} holds no usable PEM certificate ({exc.reason or exc})"
        ) from None


def _load_pair(context: ssl.SSLContext, cert_key: str, cert: Path, key_key: str, key: Path) -> None:
    """Load a certificate (chain) and its private key, naming the file that is wrong."""
    _load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert_key, cert)  # parses, or names it
    pem = _read(key_key, key)
    if b"PRIVATE KEY-----" not in pem:
        raise TlsFileError(key_key, f"{key} holds no PEM private key")
    if b"ENCRYPTED" in pem:
        raise TlsFileError(
            key_key,
            f"{key} is encrypted; the adapter starts unattended and cannot ask for a "
            "passphrase: store the key unencrypted, readable only by the adapter (chmod 600)",
        )
    del pem
    _warn_if_exposed(key)

    def no_passphrase() -> bytes:
        # Without a callback OpenSSL would prompt on the terminal for a key we failed to
        # recognise as encrypted above.
        raise TlsFileError(key_key, f"{key} asks for a passphrase; store it unencrypted")

    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError(key_key, f"{key} is not the key of the certificate {cert}") from None
        raise TlsFileError(key_key, f"{key} holds no usable private key ({exc})") from None


def _warn_if_exposed(path: Path) -> None:
    if os.name != "posix":
        return
    mode = path.stat().st_mode
    if mode & 0o077:
        log.warning(
            "%s: TLS private key file has mode %04o, readable by group or others; "
            "restrict it with `chmod 600 %s`",
            path,
            stat.S_IMODE(mode),
            path,
        )
