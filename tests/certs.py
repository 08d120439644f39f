"""A throwaway PKI for the TLS tests: a CA, a server certificate for 127.0.0.1 (IP SAN) and a
client certificate it signed, plus a second CA that signed nothing of ours, as PEM files.

EC P-256 keys: generated in milliseconds, so every test gets fresh ones.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapter.config import TlsSettings


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_certificate: Path
    server_key: Path
    client_certificate: Path
    client_key: Path
    #: A CA that signed neither certificate: trusting it alone trusts none of ours.
    other_ca: Path

    def server(self, *, require_client_certificates: bool = True) -> TlsSettings:
        """What a participant that serves HTTPS and also delivers over it configures."""
        return TlsSettings(
            certificate=self.server_certificate,
            private_key=self.server_key,
            client_ca=self.ca if require_client_certificates else None,
            ca=self.ca,
            client_certificate=self.client_certificate,
            client_private_key=self.client_key,
        )


@dataclass(frozen=True)
class _Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _make_ca("UFTP test CA")
    other = _make_ca("Some other CA")
    ca_path = _write_cert(directory / "ca.crt", ca[1])
    other_path = _write_cert(directory / "other-ca.crt", other[1])
    server_key, server_cert = _issue(
        ca[0],
        "127.0.0.1",
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        ),
    )
    client_key, client_cert = _issue(ca[0], "dso.example-grid.nl", ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(
        ca=ca_path,
        server_certificate=_write_cert(directory / "server.crt", server_cert),
        server_key=write_key(directory / "server.key", server_key),
        client_certificate=_write_cert(directory / "client.crt", client_cert),
        client_key=write_key(directory / "client.key", client_key),
        other_ca=other_path,
    )


def _make_ca(common_name: str) -> tuple[_Issuer, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issuer(name, key), cert


def _issue(
    issuer: _Issuer,
    common_name: str,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, issuer.name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return key, builder.sign(issuer.key, hashes.SHA256())


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def write_key(
    path: Path, key: ec.EllipticCurvePrivateKey, *, passphrase: bytes | None = None
) -> Path:
    """Write `key` as PKCS#8 PEM, mode 600 (encrypted when a passphrase is given)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path
