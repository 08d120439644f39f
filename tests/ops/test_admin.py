"""The command line beside a running `serve`: `dso publish`, `dso query`, `send` and `cro show`
use the serve of their configuration through its admin socket, and run standalone when there
is none - or only the socket a killed serve left behind. The socket is its user's alone.

Every participant here is a real `uftp-adapter serve` process, every command a process of its
own, as an operator runs them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import sys
from pathlib import Path

import aiohttp
import pytest

from adapter.config import load_config
from adapter.ops import admin
from adapter.ops.service import Service
from adapter.uftp import codec
from tests.ops.conftest import CRO_DOMAIN, REPOSITORY, set_delivery, uftp
from tests.postgres import Schema
from tests.serve import Served, serving, start_serve
from tests.uftp.samples import make_dso_portfolio_update, make_dso_portfolio_update_response

PROGRAM = "import sys; from adapter.cli import main; sys.exit(main(sys.argv[1:]))"
PUBLISHED = [
    f"DSOPortfolioUpdate to {CRO_DOMAIN}: 3 congestion points, 6 connections",
    f"DSOPortfolioUpdateResponse Accepted by {CRO_DOMAIN}",
]


def portfolio(samples: Path) -> str:
    return str(samples / "portfolio.csv")


def using(served: Served) -> str:
    """What `-v` says on stderr when a command goes through `served`."""
    return f"using the running serve (pid {served.pid}) through {served.socket}"


# -- through the daemon ----------------------------------------------------------------------


async def test_dso_publish_query_and_send_go_through_the_running_dso(
    samples: Path, tmp_path: Path
) -> None:
    dso = str(samples / "dso.toml")
    async with serving(samples / "cro.toml"), serving(samples / "dso.toml") as served:
        published = await uftp("-v", "dso", "publish", portfolio(samples), "--config", dso)

        assert published.returncode == 0, published.stdout + published.stderr
        assert published.stdout.splitlines() == PUBLISHED
        # The running DSO sent it: standalone, its store and port would have been taken.
        assert using(served) in published.stderr

        queried = await uftp(
            "-v",
            "dso",
            "query",
            "ea1.2026-01.test.uftp-demo:cp-north",
            "--date",
            "2026-03-01",
            "--config",
            dso,
        )
        assert queried.returncode == 0, queried.stdout + queried.stderr
        assert using(served) in queried.stderr
        assert queried.stdout.splitlines()[0].startswith(
            f"DSOPortfolioQueryResponse Accepted by {CRO_DOMAIN}: congestion point "
            "ea1.2026-01.test.uftp-demo:cp-north on 2026-03-01, 3 connections"
        )
        assert "ean.871685900000000011" in queried.stdout

        message = tmp_path / "rejected.xml"  # a period the CRO refuses: exit status 1
        message.write_bytes(codec.encode(make_dso_portfolio_update()))
        sent = await uftp("-v", "send", str(message), "--to", CRO_DOMAIN, "--config", dso)
        assert sent.returncode in (0, 1), sent.stdout + sent.stderr
        assert using(served) in sent.stderr
        assert sent.stdout.startswith("DSOPortfolioUpdateResponse ")

        # The daemon stored what it sent, as its own: the operator's commands see it.
        listing = await uftp("outbox", "list", "--config", dso)
        assert (
            listing.stdout.count("DSOPortfolioUpdate ") + listing.stdout.count("DSOPortfolioQuery ")
            >= 3
        ), listing.stdout


async def test_timeout_and_keep_trying_through_the_running_dso(samples: Path) -> None:
    dso = str(samples / "dso.toml")
    async with serving(samples / "dso.toml"):  # the CRO is down
        withdrawn = await uftp(
            "dso", "publish", portfolio(samples), "--config", dso, "--timeout", "1"
        )
        kept = await uftp(
            "dso", "publish", portfolio(samples), "--config", dso, "--timeout", "1", "--keep-trying"
        )
        pending = await uftp("outbox", "list", "--config", dso, "--status", "pending")

    assert withdrawn.returncode == 2, withdrawn.stdout + withdrawn.stderr
    last = withdrawn.stdout.splitlines()[-1]
    assert last.startswith(f"not delivered to {CRO_DOMAIN} within 1 s: ")
    assert last.endswith("withdrawn, it will not be sent (--keep-trying leaves it queued)")
    assert kept.returncode == 2, kept.stdout + kept.stderr
    assert "still queued: the running serve keeps trying, until " in kept.stdout
    # One left queued in the running DSO, the other withdrawn.
    rows = [line for line in pending.stdout.splitlines() if "DSOPortfolioUpdate" in line]
    assert len(rows) == 1, pending.stdout


async def test_a_command_waiting_when_serve_stops_is_told(samples: Path) -> None:
    dso = str(samples / "dso.toml")
    served = await start_serve(samples / "dso.toml")  # the CRO is down: no answer comes
    try:
        waiting = asyncio.ensure_future(
            uftp("dso", "publish", portfolio(samples), "--config", dso, "--timeout", "50")
        )
        await asyncio.sleep(3)
        assert not waiting.done()
    finally:
        assert await served.terminate(30) == 0, served.output
    told = await waiting

    assert told.returncode == 2, told.stdout + told.stderr
    assert told.stdout.splitlines()[-1] == (
        "serve stopped before the response arrived; the message stays in its outbox, "
        "delivered when it runs again"
    )
    pending = await uftp("outbox", "list", "--config", dso, "--status", "pending")
    assert "DSOPortfolioUpdate" in pending.stdout, pending.stdout


async def test_cro_show_beside_a_running_cro(samples: Path) -> None:
    cro = str(samples / "cro.toml")
    async with serving(samples / "cro.toml") as served:
        async with serving(samples / "dso.toml"):
            published = await uftp(
                "dso", "publish", portfolio(samples), "--config", str(samples / "dso.toml")
            )
            assert published.returncode == 0, published.stdout + published.stderr

        shown = await uftp("-v", "cro", "show", "--config", cro)
        as_json = await uftp("cro", "show", "--config", cro, "--format", "json", "--history")

    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert using(served) in shown.stderr
    assert "3 congestion points of 1 DSO, 6 connections" in shown.stdout
    assert "ea1.2026-01.test.uftp-demo:cp-north" in shown.stdout
    assert as_json.returncode == 0, as_json.stderr
    assert '"updates"' in as_json.stdout
    # Standalone, now that it stopped: the same register, read from the store.
    alone = await uftp("-v", "cro", "show", "--config", cro)
    assert alone.returncode == 0, alone.stderr
    assert "using the running serve" not in alone.stderr
    assert alone.stdout == shown.stdout


async def test_serve_workers_serves_the_admin_socket_from_one_worker(
    samples: Path, postgres_schema: Schema
) -> None:
    dso = samples / "dso.toml"
    socket_path = samples.parent / "var" / "dso.admin"
    with_store_and_socket(dso, postgres_schema.dsn, socket_path)
    async with serving(samples / "cro.toml"), serving(dso, "--workers", "2") as served:
        published = await uftp("-v", "dso", "publish", portfolio(samples), "--config", str(dso))

    assert published.returncode == 0, published.stdout + published.stderr + served.output
    assert published.stdout.splitlines() == PUBLISHED
    assert f"through {socket_path}" in published.stderr


# -- without a daemon ------------------------------------------------------------------------


async def test_a_socket_left_by_a_killed_serve_does_not_block_the_command_line(
    samples: Path,
) -> None:
    dso = str(samples / "dso.toml")
    killed = await start_serve(samples / "dso.toml")
    killed.kill()
    assert await killed.wait() == -signal.SIGKILL
    assert stat.S_ISSOCK(os.lstat(killed.socket).st_mode)  # left behind

    async with serving(samples / "cro.toml"):
        alone = await uftp("-v", "dso", "publish", portfolio(samples), "--config", dso)

        assert alone.returncode == 0, alone.stdout + alone.stderr
        assert alone.stdout.splitlines() == PUBLISHED
        assert "no serve answers" in alone.stderr and "running standalone" in alone.stderr

        # The next serve replaces it, and the command line uses that one.
        async with serving(samples / "dso.toml") as served:
            assert "left behind by a serve that no longer runs" in served.output
            again = await uftp("-v", "dso", "publish", portfolio(samples), "--config", dso)
            assert again.returncode == 0, again.stdout + again.stderr
            assert using(served) in again.stderr
    assert not served.socket.exists()  # removed at a clean stop


async def test_the_standalone_path_without_a_serve(samples: Path) -> None:
    async with serving(samples / "cro.toml"):
        alone = await uftp(
            "-v", "dso", "publish", portfolio(samples), "--config", str(samples / "dso.toml")
        )
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert alone.stdout.splitlines() == PUBLISHED
    assert "running serve" not in alone.stderr and "admin socket" not in alone.stderr


# -- the socket is its user's alone ------------------------------------------------------------


async def test_the_socket_is_created_owner_only(samples: Path) -> None:
    async with serving(samples / "dso.toml") as served:
        info = os.lstat(served.socket)
        assert stat.S_ISSOCK(info.st_mode)
        assert info.st_uid == os.geteuid()
        assert stat.S_IMODE(info.st_mode) == 0o600


async def test_the_command_line_refuses_a_socket_others_may_use(samples: Path) -> None:
    async with serving(samples / "dso.toml") as served:
        os.chmod(served.socket, 0o666)
        refused = await uftp(
            "dso", "publish", portfolio(samples), "--config", str(samples / "dso.toml")
        )

    assert refused.returncode == 2
    assert refused.stdout.splitlines() == PUBLISHED[:1]  # nothing sent
    error = refused.stderr.splitlines()[-1]  # after the config's warning on the short deadline
    assert error.startswith(f"uftp-adapter: error: admin socket {served.socket}: ")
    assert "srw-rw-rw-" in error


async def test_the_command_line_refuses_the_socket_of_another_participant(samples: Path) -> None:
    async with serving(samples / "cro.toml") as served:
        refused = await uftp(
            "dso",
            "publish",
            portfolio(samples),
            "--config",
            str(samples / "dso.toml"),
            env={"UFTP_ADAPTER_ADMIN_SOCKET": str(served.socket)},
        )
    assert refused.returncode == 2
    assert refused.stdout.splitlines() == PUBLISHED[:1]  # nothing sent, in the CRO's name least
    assert f"(pid {served.pid}) runs another participant or store" in refused.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
async def test_another_user_is_refused_whatever_the_mode(samples: Path) -> None:
    async with serving(samples / "dso.toml") as served:
        os.chmod(served.socket, 0o666)  # as if its mode were wrong: the credentials still hold
        first_line = await asyncio.to_thread(identity_as_nobody, served.socket)
    assert first_line.startswith(b"HTTP/1.1 403"), first_line


def identity_as_nobody(path: Path) -> bytes:
    """The first line of the answer to GET /v1/identity, asked by user 65534 (nobody) in a
    child process; it connects from inside the socket's folder, so that the folders above
    it (the test's, 0700) need not be open to it."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: system calls only, then _exit
        code = 1
        try:
            os.close(reader)
            os.chdir(path.parent)
            os.setgid(65534)
            os.setuid(65534)
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.settimeout(10)
            client.connect(path.name)
            client.sendall(b"GET /v1/identity HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            os.write(writer, client.recv(200))
            code = 0
        finally:
            os._exit(code)
    os.close(writer)
    try:
        answer = os.read(reader, 200)
    finally:
        os.close(reader)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, answer
    return answer.split(b"\r\n", 1)[0]


async def serve_refuses(samples: Path, expected: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROGRAM,
        "serve",
        "--config",
        str(samples / "dso.toml"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2, (out + err).decode()
    (line,) = [line for line in err.decode().splitlines() if ": WARNING: " not in line]
    assert line.startswith("uftp-adapter: error: admin socket "), line
    assert expected in line, line


async def test_serve_refuses_a_symbolic_link_at_the_socket(samples: Path, tmp_path: Path) -> None:
    path = load_config(samples / "dso.toml").admin.socket
    assert path is not None
    path.parent.mkdir(exist_ok=True)
    path.symlink_to(tmp_path / "elsewhere")
    await serve_refuses(samples, "is a symbolic link")
    assert not (tmp_path / "elsewhere").exists()


async def test_serve_refuses_a_file_that_is_not_a_socket(samples: Path) -> None:
    path = load_config(samples / "dso.toml").admin.socket
    assert path is not None
    path.parent.mkdir(exist_ok=True)
    path.write_text("mine")
    await serve_refuses(samples, "exists and is not a socket")
    assert path.read_text() == "mine"


async def test_serve_refuses_a_folder_others_may_write(samples: Path) -> None:
    path = load_config(samples / "dso.toml").admin.socket
    assert path is not None
    path.parent.mkdir(exist_ok=True)
    os.chmod(path.parent, 0o777)
    await serve_refuses(samples, "is writable by others")


async def test_serve_refuses_a_socket_another_process_answers_on(samples: Path) -> None:
    path = load_config(samples / "dso.toml").admin.socket
    assert path is not None
    path.parent.mkdir(exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    try:
        await serve_refuses(samples, "another serve answers on it already")
    finally:
        listener.close()


# -- configuration -----------------------------------------------------------------------------


def test_the_socket_lies_beside_a_sqlite_store(samples: Path) -> None:
    config = load_config(samples / "dso.toml")
    store = config.participant.store
    assert config.admin.socket == store.path.with_name(store.path.name + ".sock")  # type: ignore[union-attr]


def test_a_postgres_store_has_a_socket_only_where_set(samples: Path, tmp_path: Path) -> None:
    dso = samples / "dso.toml"
    with_store_and_socket(dso, "postgresql://127.0.0.1/test", None)
    assert load_config(dso).admin.socket is None
    environ = {"UFTP_ADAPTER_ADMIN_SOCKET": str(tmp_path / "dso.admin")}
    assert load_config(dso, environ=environ).admin.socket == tmp_path / "dso.admin"


def test_a_socket_path_too_long_for_a_unix_socket_is_a_config_error(samples: Path) -> None:
    from adapter.config import ConfigError

    environ = {"UFTP_ADAPTER_ADMIN_SOCKET": "/tmp/" + "x" * 120}
    with pytest.raises(ConfigError, match=r"admin\.socket: .* at most 107"):
        load_config(samples / "dso.toml", environ=environ)


# -- helpers -----------------------------------------------------------------------------------


def with_store_and_socket(config: Path, store: str, socket_path: Path | None) -> None:
    lines = [
        f'store = "{store}"' if line.startswith("store = ") else line
        for line in config.read_text("utf-8").split("\n")
    ]
    if socket_path is not None:
        lines.append(f'\n[admin]\nsocket = "{socket_path}"\n')
    config.write_text("\n".join(lines), "utf-8")


@pytest.fixture(autouse=True)
def fast_dso(samples: Path) -> None:
    set_delivery(samples / "dso.toml", request_timeout_seconds=2)


# -- the protocol refuses what it does not take ------------------------------------------------


async def admin_post(path: Path, name: str, body: bytes) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
        session.post(
            f"http://localhost/v1/{name}",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as answer,
    ):
        return answer.status, await answer.text()


async def test_malformed_requests_are_refused_with_a_reason(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "MAX_REQUEST_BYTES", 4096)
    response = codec.encode(make_dso_portfolio_update_response())
    async with Service(load_config(samples / "dso.toml")) as dso:
        path = dso.admin_server.path  # type: ignore[union-attr]
        request = {"to": CRO_DOMAIN, "timeout": 1, "keep_trying": False}
        cases = {
            b"[]": "expected a JSON object",
            b"{": "expected a JSON object",
            json.dumps({**request, "message": "<nope/>"}).encode(): "message: ",
            json.dumps({**request, "message": response.decode()}).encode(): "is not a request",
            json.dumps({**request, "message": "x", "timeout": True}).encode(): "timeout: ",
            json.dumps({**request, "message": "x", "timeout": "inf"}).encode(): "timeout: ",
        }
        for body, reason in cases.items():
            status, text = await admin_post(path, "request", body)
            assert status == 400, (body, text)
            assert reason in json.loads(text)["error"], (body, text)
        status, _ = await admin_post(path, "request", b"{" + b" " * 5000 + b"}")
        assert status == 413
        status, text = await admin_post(path, "cro/show", b"{}")
        assert status == 404 and "not a CRO" in text


async def test_flex_send_refuses_a_malformed_settle_and_serves_only_a_dso_or_agr(
    samples: Path,
) -> None:
    from tests.flex.messages import flex_request

    request = {
        "message": codec.encode(flex_request()).decode(),
        "to": "agr.example.com",
        "timeout": 1,
        "keep_trying": False,
    }
    settle = {"direction": "received", "peer": "agr.example.com", "message_id": "m"}
    async with Service(load_config(samples / "dso.toml")) as dso:
        path = dso.admin_server.path  # type: ignore[union-attr]
        cases = {
            json.dumps({**request, "settle": 1}).encode(): "settle: ",
            json.dumps({**request, "settle": {**settle, "direction": "up"}}).encode(): "settle: ",
            json.dumps(
                {**request, "settle": {**settle, "from": ["x"], "to": "ordered"}}
            ).encode(): ("settle: "),
        }
        for body, reason in cases.items():
            status, text = await admin_post(path, "flex/send", body)
            assert status == 400, (body, text)
            assert reason in json.loads(text)["error"], (body, text)
        # An entry the book does not hold: refused, nothing sent.
        unknown = {**settle, "from": ["accepted"], "to": "ordered"}
        status, text = await admin_post(
            path, "flex/send", json.dumps({**request, "settle": unknown}).encode()
        )
        assert status == 200 and "refused" in json.loads(text), text
    async with Service(load_config(samples / "cro.toml")) as cro:
        path = cro.admin_server.path  # type: ignore[union-attr]
        status, text = await admin_post(path, "flex/send", json.dumps(request).encode())
        assert status == 404 and "not a DSO or AGR" in text


def test_only_a_socket_of_our_own_is_ours(tmp_path: Path) -> None:
    """The one check both ends make: `serve` before it replaces a stale socket, the command
    line before it talks to one."""
    path = tmp_path / "p.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))
        assert admin.not_our_socket(os.lstat(path)) is None
        (tmp_path / "link").symlink_to(path)
        assert admin.not_our_socket(os.lstat(tmp_path / "link")) == "is a symbolic link"
    (tmp_path / "file").write_text("")
    assert admin.not_our_socket(os.lstat(tmp_path / "file")) == "exists and is not a socket"
