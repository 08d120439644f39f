"""`uftp-adapter keys ...`: in-process through `main`, and as a real `python -m adapter`
subprocess, as a user runs it."""

from __future__ import annotations

import argparse
import stat
import subprocess
import sys
from base64 import b64encode
from pathlib import Path

import pytest
from nacl.bindings import crypto_sign_keypair

from adapter import cli
from adapter.config import ConfigError
from adapter.keys import generate, load_private, write_private
from adapter.uftp.envelope import parse_cs1


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_generate_as_a_subprocess(tmp_path: Path) -> None:
    result = run("keys", "generate", "dso", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    key, pub = tmp_path / "keys" / "dso.key", tmp_path / "keys" / "dso.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    cs1 = result.stdout.strip()
    assert cs1 == pub.read_text().strip()
    assert len(cs1) == 4 + 88
    assert parse_cs1(cs1) == load_private(key).public
    assert "dso.key" in result.stderr

    before = key.read_bytes()
    again = run("keys", "generate", "dso", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stdout == ""
    assert "refusing to overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert key.read_bytes() == before


def test_missing_key_as_a_subprocess_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run(
        "keys", "show", "nope", "--domain", "dso.example.com", "--role", "DSO", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "uftp-adapter: error: keys/nope.key: no such key file; create one with "
        "`uftp-adapter keys generate nope --dir keys`"
    ]


def test_help_as_a_subprocess(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "keys" in result.stdout


def test_generate_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", "generate", "cro", "--dir", str(tmp_path / "k")]) == 0
    out = capsys.readouterr().out.strip()
    assert parse_cs1(out) == load_private(tmp_path / "k" / "cro.key").public


def test_show_prints_cs1_and_txt_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = generate()
    write_private(tmp_path / "dso.key", keys)
    argv = ["keys", "show", "dso", "--domain", "dso.example.com", "--role", "dso"]
    assert cli.main([*argv, "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    cs1 = keys.public.to_cs1()
    assert lines == [cs1, f'_DSO._usef.dso.example.com. IN TXT "{cs1}"']


def test_show_with_previous_key_publishes_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new, old = generate(), generate()
    write_private(tmp_path / "new.key", new)
    write_private(tmp_path / "old.key", old)
    (tmp_path / "old.key").unlink()  # the old private key is gone; its .pub remains
    argv = ["keys", "show", "new", "--previous", "old", "--domain", "cro.example.com"]
    assert cli.main([*argv, "--role", "CRO", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        f'_CRO._usef.cro.example.com. IN TXT "{new.public.to_cs1()} {old.public.to_cs1()}"'
    )


def test_show_reads_a_shapeshifter_uftp_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, secret = crypto_sign_keypair()
    (tmp_path / "legacy.key").write_text(b64encode(secret).decode() + "\n")
    (tmp_path / "legacy.key").chmod(0o600)
    argv = ["keys", "show", "legacy", "--domain", "agr.example.com", "--role", "AGR"]
    assert cli.main([*argv, "--dir", str(tmp_path)]) == 0
    cs1 = capsys.readouterr().out.splitlines()[0]
    assert parse_cs1(cs1).signing == secret[32:]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["keys", "generate", "../escape"], "NAME: expected a plain name"),
        (["keys", "generate", "dso.key"], "no extension"),
        (["keys", "show", "dso", "--domain", "Not A Domain", "--role", "DSO"], "--domain"),
        (["keys", "show", "dso", "--domain", "dso.example.com", "--role", "XYZ"], "--role"),
        (["keys"], "COMMAND"),
        ([], "COMMAND"),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    words: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert words in err
    assert "Traceback" not in err


def test_bad_key_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dso.key").write_text("signing-secret = AAAA\n")
    (tmp_path / "dso.key").chmod(0o600)
    argv = ["keys", "show", "dso", "--domain", "dso.example.com", "--role", "DSO"]
    assert cli.main([*argv, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("uftp-adapter: error: ") and "must decode to 64 bytes" in err
    assert len(err.strip().splitlines()) == 1


def test_config_error_from_a_command_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise ConfigError("dso.toml", "peers[1].endpoint", "expected an http(s) URL")

    monkeypatch.setattr(cli, "cmd_keys_generate", broken)
    assert cli.main(["keys", "generate", "x"]) == 2
    assert capsys.readouterr().err == (
        "uftp-adapter: error: dso.toml: peers[1].endpoint: expected an http(s) URL\n"
    )
