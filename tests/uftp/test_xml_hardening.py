"""Hostile XML on both reading paths: the SignedMessage wrapper (`parse_envelope`, read
before any signature is checked) and the unsealed inner message (`codec.decode`).

Every attack must be refused with `InvalidXml` (HTTP 400), quickly and without memory growth:
the point is that entities are never expanded and nothing is fetched, not that the expansion
happens to fit. Where an entity would make the document valid if it *were* expanded, the
test also proves that the secret it names appears in no parsed value and no error text.
"""

from __future__ import annotations

import base64
import random
import re
import resource
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nacl.bindings import crypto_sign

from adapter.uftp import codec, envelope
from adapter.uftp import xml as xml_module
from adapter.uftp.errors import InvalidXml
from adapter.uftp.messages import Role

from . import samples

#: Wall-clock bound for refusing any one document; generous, the real cost is milliseconds.
TIME_LIMIT_S = 1.0
#: Bound on peak-RSS growth while refusing one document (inputs are at most ~5 MB).
MEMORY_LIMIT_MB = 100

#: A secret MessageID: if the XXE in `MessageID="&e;"` were expanded, decode would succeed.
SECRET_UUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3399"
#: A secret Body: valid base64 of 96 bytes, so an expanded `Body="&e;"` would parse too.
SECRET_BODY = base64.b64encode(bytes(range(100, 196))).decode("ascii")


@dataclass(frozen=True)
class Target:
    """One reading path and a document skeleton that is valid for it."""

    name: str
    parse: Callable[[bytes], object]
    root: str
    attributes: dict[str, str]
    #: Attribute an entity reference is put in; the secret is a valid value for it.
    secret_attribute: str
    secret: str

    def document(self, *, prolog: str = "", reference: str | None = None, content: str = "") -> str:
        attributes = dict(self.attributes)
        if reference is not None:
            attributes[self.secret_attribute] = reference
        text = " ".join(f'{name}="{value}"' for name, value in attributes.items())
        tail = f">{content}</{self.root}>" if content else "/>"
        return f"{prolog}<{self.root} {text}{tail}"


INNER = Target(
    name="codec.decode",
    parse=codec.decode,
    root="TestMessage",
    attributes={
        "Version": "3.1.0",
        "SenderDomain": samples.DSO_DOMAIN,
        "RecipientDomain": samples.CRO_DOMAIN,
        "TimeStamp": "2024-05-01T10:15:30+02:00",
        "MessageID": samples.MESSAGE_ID,
        "ConversationID": samples.CONVERSATION_ID,
    },
    secret_attribute="MessageID",
    secret=SECRET_UUID,
)
WRAPPER = Target(
    name="parse_envelope",
    parse=envelope.parse_envelope,
    root="SignedMessage",
    attributes={
        "SenderDomain": samples.DSO_DOMAIN,
        "SenderRole": "DSO",
        "Body": base64.b64encode(bytes(64) + b"<TestMessage/>").decode("ascii"),
    },
    secret_attribute="Body",
    secret=SECRET_BODY,
)
TARGETS = [pytest.param(INNER, id="decode"), pytest.param(WRAPPER, id="envelope")]


@dataclass(frozen=True)
class Env:
    """Where an attack may point: a secret file and a port someone is listening on."""

    secret_url: str
    #: A file declaring `<!ENTITY e "secret">`: loading it would define &e;.
    dtd_url: str
    port: int


def test_skeletons_are_valid() -> None:
    # Premise of every test below: without the attack, the document is accepted.
    assert codec.decode(INNER.document().encode()).message_id == samples.MESSAGE_ID
    assert envelope.parse_envelope(WRAPPER.document().encode()).sender_domain == samples.DSO_DOMAIN
    # ... and with the secret in place, too: so an expanded entity would be accepted.
    assert codec.decode(INNER.document(reference=SECRET_UUID).encode()).message_id == SECRET_UUID
    wrapped = envelope.parse_envelope(WRAPPER.document(reference=SECRET_BODY).encode())
    assert wrapped.sealed == base64.b64decode(SECRET_BODY)


# --------------------------------------------------------------------------------------------
# The attacks
# --------------------------------------------------------------------------------------------

Attack = Callable[[Target, Env], bytes]


def xxe_etc_passwd(t: Target, env: Env) -> bytes:
    prolog = f'<!DOCTYPE {t.root} [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    return t.document(prolog=prolog, reference="&e;").encode()


def xxe_secret_file(t: Target, env: Env) -> bytes:
    prolog = f'<!DOCTYPE {t.root} [<!ENTITY e SYSTEM "{env.secret_url}">]>'
    return t.document(prolog=prolog, reference="&e;").encode()


def xxe_secret_file_in_content(t: Target, env: Env) -> bytes:
    prolog = f'<!DOCTYPE {t.root} [<!ENTITY e SYSTEM "{env.secret_url}">]>'
    return t.document(prolog=prolog, content="&e;").encode()


def xxe_network(t: Target, env: Env) -> bytes:
    prolog = f'<!DOCTYPE {t.root} [<!ENTITY e SYSTEM "http://127.0.0.1:{env.port}/secret">]>'
    return t.document(prolog=prolog, reference="&e;").encode()


def xxe_unreachable_port(t: Target, env: Env) -> bytes:
    prolog = f'<!DOCTYPE {t.root} [<!ENTITY e SYSTEM "http://127.0.0.1:9/">]>'
    return t.document(prolog=prolog, reference="&e;").encode()


def parameter_entity_file(t: Target, env: Env) -> bytes:
    prolog = f'<!DOCTYPE {t.root} [<!ENTITY % p SYSTEM "{env.secret_url}"> %p;]>'
    return t.document(prolog=prolog).encode()


def parameter_entity_defining_the_reference(t: Target, env: Env) -> bytes:
    prolog = f'<!DOCTYPE {t.root} [<!ENTITY % p SYSTEM "{env.dtd_url}"> %p;]>'
    return t.document(prolog=prolog, reference="&e;").encode()


def parameter_entity_exfiltration(t: Target, env: Env) -> bytes:
    # The classic out-of-band exfiltration: read a file into %file;, then build an entity
    # whose URL carries it to the attacker.
    prolog = (
        f"<!DOCTYPE {t.root} ["
        f'<!ENTITY % file SYSTEM "{env.secret_url}">'
        f'<!ENTITY % dtd SYSTEM "http://127.0.0.1:{env.port}/evil.dtd">'
        "%dtd;]>"
    )
    return t.document(prolog=prolog).encode()


def billion_laughs(t: Target, env: Env) -> bytes:
    entities = '<!ENTITY l0 "lollollollol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    )
    return t.document(prolog=f"<!DOCTYPE {t.root} [{entities}]>", reference="&l9;").encode()


def quadratic_blowup(t: Target, env: Env) -> bytes:
    # One 50 KB entity referenced 50,000 times: 2.5 GB once expanded.
    prolog = f'<!DOCTYPE {t.root} [<!ENTITY a "{"A" * 50_000}">]>'
    return t.document(prolog=prolog, reference="&a;" * 50_000).encode()


def external_dtd_network(t: Target, env: Env) -> bytes:
    prolog = f'<!DOCTYPE {t.root} SYSTEM "http://127.0.0.1:{env.port}/uftp.dtd">'
    return t.document(prolog=prolog).encode()


def external_dtd_file(t: Target, env: Env) -> bytes:
    prolog = f'<!DOCTYPE {t.root} SYSTEM "{env.dtd_url}">'
    return t.document(prolog=prolog, reference="&e;").encode()


def internal_entity(t: Target, env: Env) -> bytes:
    # Not even a harmless internal entity: no DTD is accepted at all.
    prolog = f'<!DOCTYPE {t.root} [<!ENTITY e "{t.secret}">]>'
    return t.document(prolog=prolog, reference="&e;").encode()


def doctype_in_utf16(t: Target, env: Env) -> bytes:
    # The bytes of "<!DOCTYPE" are not ASCII-visible in UTF-16.
    declaration = '<?xml version="1.0" encoding="UTF-16"?>'
    prolog = f'{declaration}<!DOCTYPE {t.root} [<!ENTITY e SYSTEM "{env.secret_url}">]>'
    return t.document(prolog=prolog, reference="&e;").encode("utf-16")


def doctype_in_utf16_le_without_bom(t: Target, env: Env) -> bytes:
    prolog = f'<!DOCTYPE {t.root} [<!ENTITY e SYSTEM "{env.secret_url}">]>'
    return t.document(prolog=prolog, reference="&e;").encode("utf-16-le")


def deep_nesting(t: Target, env: Env) -> bytes:
    depth = 100_000
    return t.document(content="<a>" * depth + "</a>" * depth).encode()


def latin1_declared(t: Target, env: Env) -> bytes:
    # Valid if read as ISO-8859-1 (the é sits in a comment); UFTP is UTF-8 whatever the
    # declaration says, and 0xE9 alone is not UTF-8.
    declaration = '<?xml version="1.0" encoding="ISO-8859-1"?>'
    return t.document(prolog=f"{declaration}<!-- café -->").encode("latin-1")


def empty(t: Target, env: Env) -> bytes:
    return b""


def whitespace_only(t: Target, env: Env) -> bytes:
    return b" \n\t "


def all_byte_values(t: Target, env: Env) -> bytes:
    return bytes(range(256))


def random_garbage(t: Target, env: Env) -> bytes:
    return random.Random(20240501).randbytes(4096)


def nul_bytes(t: Target, env: Env) -> bytes:
    return t.document().encode().replace(b" ", b"\x00", 1)


def huge_text_node(t: Target, env: Env) -> bytes:
    return t.document(content="A" * 5_000_000).encode()


def lowercase_doctype(t: Target, env: Env) -> bytes:
    prolog = f'<!doctype {t.root} [<!ENTITY e SYSTEM "{env.secret_url}">]>'
    return t.document(prolog=prolog, reference="&e;").encode()


ATTACKS: list[Attack] = [
    xxe_etc_passwd,
    xxe_secret_file,
    xxe_secret_file_in_content,
    xxe_network,
    xxe_unreachable_port,
    parameter_entity_file,
    parameter_entity_defining_the_reference,
    parameter_entity_exfiltration,
    billion_laughs,
    quadratic_blowup,
    external_dtd_network,
    external_dtd_file,
    internal_entity,
    doctype_in_utf16,
    doctype_in_utf16_le_without_bom,
    lowercase_doctype,
    deep_nesting,
    latin1_declared,
    empty,
    whitespace_only,
    all_byte_values,
    random_garbage,
    nul_bytes,
    huge_text_node,
]
ATTACK_PARAMS = [pytest.param(attack, id=attack.__name__.replace("_", "-")) for attack in ATTACKS]


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port that is really listening, so that any fetch attempt would be seen."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def env_for(target: Target, tmp_path: Path, listener: socket.socket) -> Env:
    """Secret files holding a valid value for `target`'s secret attribute."""
    path = tmp_path / f"secret-{target.root}.txt"
    path.write_text(target.secret)
    dtd = tmp_path / f"secret-{target.root}.dtd"
    dtd.write_text(f'<!ENTITY e "{target.secret}">')
    return Env(secret_url=path.as_uri(), dtd_url=dtd.as_uri(), port=listener.getsockname()[1])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def assert_nobody_connected(listener: socket.socket) -> None:
    try:
        connection, peer = listener.accept()
    except BlockingIOError:
        return
    connection.close()
    pytest.fail(f"the parser connected to the listener from {peer}")


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", ATTACK_PARAMS)
@pytest.mark.parametrize("target", TARGETS)
def test_refused_quickly_without_expansion(
    attack: Attack, target: Target, tmp_path: Path, listener: socket.socket
) -> None:
    env = env_for(target, tmp_path, listener)
    data = attack(target, env)
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    with pytest.raises(InvalidXml) as caught:
        target.parse(data)
    elapsed = time.perf_counter() - started
    assert elapsed < TIME_LIMIT_S, f"took {elapsed:.2f} s"
    assert peak_rss_mb() - rss_before < MEMORY_LIMIT_MB
    assert caught.value.status == 400
    # The secret, which would have made the document valid, is nowhere in the error either.
    assert target.secret not in str(caught.value)
    assert_nobody_connected(listener)


@pytest.mark.parametrize("target", TARGETS)
def test_etc_passwd_content_never_surfaces(target: Target, tmp_path: Path) -> None:
    passwd = Path("/etc/passwd")
    if not passwd.is_file():
        pytest.skip("no /etc/passwd on this machine")
    first_line = passwd.read_text(errors="replace").splitlines()[0]
    with pytest.raises(InvalidXml) as caught:
        target.parse(xxe_etc_passwd(target, Env("", "", 9)))
    assert first_line not in str(caught.value)
    assert "root:" not in str(caught.value)


def test_inner_message_limits_do_not_refuse_a_large_legitimate_envelope(
    keypair: tuple[bytes, bytes],
) -> None:
    # The wrapper's one attribute holds the whole message, so its parser lifts libxml2's
    # 10 MB text limit: an 8 MB inner message (10.7 MB of base64) must still get through.
    public, secret = keypair
    inner = b"<TestMessage " + b" " * 8_000_000 + b"/>"
    document = envelope.seal(inner, secret, samples.DSO_DOMAIN, Role.DSO)
    with pytest.raises(InvalidXml):  # premise: the inner-message limits would refuse it
        xml_module.parse_xml(document)
    wrapped = envelope.parse_envelope(document)
    assert wrapped.sealed == crypto_sign(inner, secret)
    assert envelope.open_sealed(wrapped.sealed, [public]) == inner


def test_deep_nesting_under_the_limit_is_still_an_ordinary_refusal() -> None:
    # 200 levels parse (libxml2's default depth limit is 256) and are then refused by the
    # schema, not by a crash: the depth refusal above is the parser's, not the schema's.
    data = INNER.document(content="<a>" * 200 + "</a>" * 200).encode()
    with pytest.raises(InvalidXml, match="schema"):
        codec.decode(data)


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(external_dtd_file, id="external-dtd-file"),
        pytest.param(parameter_entity_defining_the_reference, id="parameter-entity"),
    ],
)
def test_parser_alone_reads_no_local_file(
    attack: Attack, tmp_path: Path, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Switch off the byte-level "<!DOCTYPE" refusal to test the parser's own settings.
    monkeypatch.setattr(xml_module, "_DTD_MARKERS", re.compile(rb"(?!)"))
    data = attack(INNER, env_for(INNER, tmp_path, listener))
    try:
        message = codec.decode(data)
    except InvalidXml:
        return
    assert message.message_id != SECRET_UUID, "the parser read the secret file"
