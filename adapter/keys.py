"""A participant's private keys on disk, and the public strings derived from them.

Cryptographic Scheme 1 (spec: message-transport-mechanism.md) gives every participant two key
pairs: an Ed25519 pair for `crypto_sign` and a Curve25519 pair for `crypto_box`. UFTP messages
are only signed today, but the public cs1 string holds both keys, so both are kept.

File format of NAME.key (text, mode 0600)::

    # uftp-adapter private keys: keep this file secret (public part: NAME.pub)
    signing-secret = <base64 of libsodium's 64-byte signing secret key: seed + public key>
    encryption-secret = <base64 of the 32-byte crypto_box secret key>

A file that holds nothing but one base64 line of the 64-byte signing secret is read too: that
is what shapeshifter-uftp's key generator prints, so users migrating can keep their key.

Secret bytes never appear in a repr, a log line or an error message. A key file that group or
others may read is refused, not just warned about: a warning scrolls by while the secret
stays exposed, and whoever read it can sign as us until every peer has the new key.
"""

from __future__ import annotations

import binascii
import contextlib
import os
import re
import stat
import tempfile
from base64 import b64decode, b64encode
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nacl.public
import nacl.signing
from nacl.bindings import crypto_sign_seed_keypair

from .uftp.envelope import SECRET_KEY_BYTES, SIGNING_KEY_BYTES, PublicKeys, format_cs1
from .uftp.errors import AdapterError
from .uftp.messages import Role

#: crypto_box secret keys, like the seed of a signing key, have 32 bytes.
ENCRYPTION_SECRET_BYTES = 32
SIGNING_FIELD = "signing-secret"
ENCRYPTION_FIELD = "encryption-secret"
PUBLIC_SUFFIX = ".pub"
#: The spec allows the old and the new key side by side while a key is rotated (footnote 17).
MAX_PUBLISHED_KEYS = 2

_BASE64_LINE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_FIELD_LINE = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*)")


class KeyFileError(AdapterError):
    """A key file is missing, unreadable or malformed; the message names the file."""


class KeyFileExists(KeyFileError):
    """Refused to overwrite an existing private key: losing it would orphan the public key
    that peers (and DNS) already trust."""


@dataclass(frozen=True, slots=True, repr=False)
class PrivateKeys:
    """A participant's secret keys.

    `signing` is libsodium's 64-byte Ed25519 secret key (32-byte seed followed by the 32-byte
    public key), the form `nacl.bindings.crypto_sign` takes. `encryption` is the 32-byte
    crypto_box secret key, or None for a participant that only signs.
    """

    signing: bytes
    encryption: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.signing) != SECRET_KEY_BYTES:
            raise ValueError(
                f"a signing secret key has {SECRET_KEY_BYTES} bytes, not {len(self.signing)}"
            )
        if self.encryption is not None and len(self.encryption) != ENCRYPTION_SECRET_BYTES:
            raise ValueError(
                f"an encryption secret key has {ENCRYPTION_SECRET_BYTES} bytes, "
                f"not {len(self.encryption)}"
            )

    @property
    def public(self) -> PublicKeys:
        """The public halves, as published in a cs1 string."""
        encryption = None
        if self.encryption is not None:
            encryption = bytes(nacl.public.PrivateKey(self.encryption).public_key)
        return PublicKeys(self.signing[SIGNING_KEY_BYTES:], encryption)

    def __repr__(self) -> str:
        # Only the public key: a repr ends up in logs and tracebacks.
        return f"PrivateKeys(public={self.public.to_cs1()!r}, secrets=<hidden>)"


def generate() -> PrivateKeys:
    """A fresh signing and encryption key pair from the operating system's CSPRNG."""
    signing = nacl.signing.SigningKey.generate()
    # SigningKey holds the seed; libsodium's secret key is the seed followed by the public key.
    secret = bytes(signing) + bytes(signing.verify_key)
    return PrivateKeys(secret, bytes(nacl.public.PrivateKey.generate()))


def public_path(path: Path) -> Path:
    """Where the public key of private key file `path` lives: NAME.key -> NAME.pub."""
    return path.with_suffix(PUBLIC_SUFFIX)


def format_private(keys: PrivateKeys, name: str = "NAME") -> str:
    """The text of a private key file."""
    lines = [
        f"# uftp-adapter private keys: keep this file secret (public part: {name}{PUBLIC_SUFFIX})",
        f"{SIGNING_FIELD} = {b64encode(keys.signing).decode('ascii')}",
    ]
    if keys.encryption is not None:
        lines.append(f"{ENCRYPTION_FIELD} = {b64encode(keys.encryption).decode('ascii')}")
    return "\n".join(lines) + "\n"


def write_private(path: Path | str, keys: PrivateKeys) -> Path:
    """Create private key file `path` (mode 0600) and its public cs1 file (mode 0644).

    The private file is created with O_EXCL, so an existing key is never overwritten (raises
    `KeyFileExists`) and the secret is never readable by others, not even for a moment. The
    public file is rewritten to match. Returns the path of the public file.
    """
    path = Path(path)
    pub = public_path(path)
    if pub == path:
        raise KeyFileError(f"{path}: a private key file must not end in {PUBLIC_SUFFIX}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileExists(
            f"{path}: a private key already exists; refusing to overwrite it "
            "(move it away first if you really mean to replace it)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create the key file: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            os.fchmod(out.fileno(), 0o600)  # the umask may have been stricter; never looser
            out.write(format_private(keys, path.stem))
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        # A half-written key is worse than none: the next run would fail to read it.
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    _write_public(pub, keys.public.to_cs1() + "\n")
    return pub


def _write_public(path: Path, text: str) -> None:
    """Replace `path` atomically so that a reader never sees half a key."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            os.fchmod(out.fileno(), 0o644)
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_private(path: Path | str) -> PrivateKeys:
    """Read a private key file written by `write_private`, or a shapeshifter-uftp key.

    Raises `KeyFileError` naming the file and the problem, also when group or others may
    read or change the file (with the `chmod` that fixes it).
    """
    path = Path(path)
    try:
        info = path.stat()
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: no such key file; create one with "
            f"`uftp-adapter keys generate {path.stem} --dir {path.parent}`"
        ) from None
    except IsADirectoryError:
        raise KeyFileError(f"{path}: is a directory, not a key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key file: {exc.strerror}") from None
    if os.name == "posix" and info.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: mode {stat.S_IMODE(info.st_mode):04o} gives group or others access to "
            f"this private key; restrict it with `chmod 600 {path}` (and replace the key if "
            "someone else may have read it)"
        )
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a text key file (non-ASCII content)") from None
    return _parse_private(text, path)


def _parse_private(text: str, path: Path) -> PrivateKeys:
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise KeyFileError(f"{path}: the key file is empty")
    if len(lines) == 1 and _BASE64_LINE.fullmatch(lines[0][1]):
        # shapeshifter-uftp's format: base64 of the 64-byte signing secret, nothing else.
        number, value = lines[0]
        return _keys(path, _decode(path, number, value, "signing secret", SECRET_KEY_BYTES), None)
    fields: dict[str, tuple[int, str]] = {}
    for number, line in lines:
        match = _FIELD_LINE.fullmatch(line)
        if match is None:
            raise KeyFileError(f"{path}:{number}: expected 'name = base64 value'")
        name, value = match.groups()
        if name not in (SIGNING_FIELD, ENCRYPTION_FIELD):
            raise KeyFileError(
                f"{path}:{number}: unknown field {name!r} "
                f"(expected {SIGNING_FIELD} or {ENCRYPTION_FIELD})"
            )
        if name in fields:
            raise KeyFileError(f"{path}:{number}: {name} appears twice")
        fields[name] = (number, value.strip())
    if SIGNING_FIELD not in fields:
        raise KeyFileError(f"{path}: no {SIGNING_FIELD} line")
    signing = _decode(path, *fields[SIGNING_FIELD], SIGNING_FIELD, SECRET_KEY_BYTES)
    encryption = None
    if ENCRYPTION_FIELD in fields:
        number, value = fields[ENCRYPTION_FIELD]
        encryption = _decode(path, number, value, ENCRYPTION_FIELD, ENCRYPTION_SECRET_BYTES)
    return _keys(path, signing, encryption)


def _decode(path: Path, number: int, value: str, what: str, size: int) -> bytes:
    # Messages name the line and the length, never the value: it is a secret.
    try:
        raw = b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{path}:{number}: the {what} is not valid base64") from None
    if len(raw) != size:
        raise KeyFileError(
            f"{path}:{number}: the {what} must decode to {size} bytes, not {len(raw)}"
        )
    return raw


def _keys(path: Path, signing: bytes, encryption: bytes | None) -> PrivateKeys:
    # The public half is stored beside the seed; a mismatch means a damaged or spliced file,
    # which would sign messages that no peer can verify.
    public, _ = crypto_sign_seed_keypair(signing[:SIGNING_KEY_BYTES])
    if public != signing[SIGNING_KEY_BYTES:]:
        raise KeyFileError(
            f"{path}: the signing secret is damaged (its public half does not match its seed)"
        )
    return PrivateKeys(signing, encryption)


def dns_txt_record(domain: str, role: Role | str, keys: PublicKeys | Sequence[PublicKeys]) -> str:
    """The zone-file line that publishes `keys` for `role` at `domain`.

    The record is `_ROLE._usef.DOMAIN` TXT with up to two space-separated cs1 strings (spec:
    message-transport-mechanism.md, "Service discovery"): two while a key is being rotated, so
    that messages signed with the old key still verify. Both fit in one 255-byte TXT string.
    """
    role = Role(role)
    domain = domain.strip().rstrip(".").lower()
    if not domain or any(c.isspace() for c in domain):
        raise ValueError(f"not a domain name: {domain!r}")
    published = [keys] if isinstance(keys, PublicKeys) else list(keys)
    if not 1 <= len(published) <= MAX_PUBLISHED_KEYS:
        raise ValueError(
            f"a TXT record holds 1 to {MAX_PUBLISHED_KEYS} public keys, not {len(published)}"
        )
    strings = " ".join(format_cs1(key.signing, key.encryption) for key in published)
    return f'_{role}._usef.{domain}. IN TXT "{strings}"'
