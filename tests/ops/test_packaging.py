"""What an installed adapter brings with it: the demo's samples and the template of `init`, as
package data; `init` writing a new participant that serves; and the wheel, built and installed
without the source tree, running `init` and `--version`."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

from adapter.config import DeliverySettings, LimitsSettings, RetentionSettings, load_config
from adapter.keys import load_private
from adapter.ops.init import SAMPLE_FILES, InitError, copy_samples, init_participant, render
from adapter.ops.service import Service
from adapter.uftp.messages import Role, TestMessage
from tests.ops.conftest import REPOSITORY, uftp
from tests.test_run import free_port


def test_the_packaged_samples_are_the_repository_samples() -> None:
    for name in SAMPLE_FILES:
        packaged = REPOSITORY / "adapter" / "samples" / name
        assert packaged.read_bytes() == (REPOSITORY / "config" / name).read_bytes(), name


@pytest.mark.parametrize("role", [Role.DSO, Role.CRO])
def test_init_writes_a_config_serve_takes_and_a_private_key(tmp_path: Path, role: Role) -> None:
    name = role.value.lower()
    done = init_participant(tmp_path / "site", role, f"{name}.example.com", "127.0.0.1:9000")

    config = load_config(done.config, environ={})
    assert (config.participant.role, config.participant.domain) == (role, f"{name}.example.com")
    assert str(config.participant.listen) == "127.0.0.1:9000"
    assert config.participant.signing_key == done.key
    assert config.participant.store.path == tmp_path / "site" / "var" / f"{name}.sqlite3"  # type: ignore[union-attr]
    assert stat.S_IMODE(done.key.stat().st_mode) == 0o600
    assert load_private(done.key).public.to_cs1() == done.cs1 == done.public_key.read_text().strip()
    text = done.config.read_text()
    assert ("\n[cro]\n" in text) is (role is Role.CRO)
    assert "# [[peers]]" in text and "$" not in text


def test_the_commented_settings_of_init_are_the_defaults() -> None:
    """Uncommented, each commented table says what its absence gives."""
    lines = render(Role.DSO, "dso.example.com", "127.0.0.1:9000").splitlines()
    tables: dict[str, dict[str, object]] = {}
    for heading in ("delivery", "limits", "retention"):
        start = lines.index(f"# [{heading}]")
        block = []
        for line in lines[start:]:
            if not line.startswith("# "):
                break
            block.append(line.removeprefix("# "))
        tables[heading] = tomllib.loads("\n".join(block))[heading]
    assert DeliverySettings(**tables["delivery"]) == DeliverySettings()  # type: ignore[arg-type]
    assert LimitsSettings(**tables["limits"]) == LimitsSettings()  # type: ignore[arg-type]
    assert RetentionSettings(**tables["retention"]) == RetentionSettings()  # type: ignore[arg-type]


def test_init_never_overwrites(tmp_path: Path) -> None:
    done = init_participant(tmp_path, Role.DSO, "dso.example.com", "127.0.0.1:9000")
    key = done.key.read_bytes()
    with pytest.raises(InitError, match="exists already"):
        init_participant(tmp_path, Role.DSO, "other.example.com", "127.0.0.1:9000")
    assert done.key.read_bytes() == key and "dso.example.com" in done.config.read_text()
    copy_samples(tmp_path / "demo")
    with pytest.raises(InitError, match="exists already"):
        copy_samples(tmp_path / "demo")


async def test_a_dso_and_a_cro_written_by_init_exchange_a_message(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    ports = {role: free_port() for role in ("dso", "cro")}
    written = {
        role: init_participant(
            folder, Role(role.upper()), f"{role}.example.com", f"127.0.0.1:{port}"
        )
        for role, port in ports.items()
    }
    for role, other in (("dso", "cro"), ("cro", "dso")):
        with written[role].config.open("a") as out:
            out.write(
                f'\n[[peers]]\ndomain = "{other}.example.com"\nrole = "{other.upper()}"\n'
                f'endpoint = "http://127.0.0.1:{ports[other]}/shapeshifter/api/v3/message"\n'
                f'public_keys_file = "keys/{other}.pub"\n'
            )
    async with (
        Service(load_config(written["cro"].config, environ={})),
        Service(load_config(written["dso"].config, environ={})) as dso,
    ):
        response = await dso.participant.request(TestMessage(), to="cro.example.com", timeout=10)
    assert response.accepted


async def test_init_on_the_command_line(tmp_path: Path) -> None:
    result = await uftp("init", str(tmp_path), "--role", "cro", "--domain", "cro.example.com")
    again = await uftp("init", str(tmp_path), "--role", "cro", "--domain", "cro.example.com")
    samples = await uftp("init", str(tmp_path / "demo"), "--samples")
    wrong = await uftp("init", str(tmp_path / "x"), "--role", "MDC", "--domain", "a.example.com")
    agr = await uftp("init", str(tmp_path / "a"), "--role", "AGR", "--domain", "a.example.com")

    assert result.returncode == 0, result.stderr
    assert f"wrote {tmp_path / 'cro.toml'}" in result.stdout and "cs1." in result.stdout
    assert again.returncode == 1 and "exists already" in again.stderr
    assert samples.returncode == 0 and sorted(
        p.name for p in (tmp_path / "demo").iterdir()
    ) == sorted(SAMPLE_FILES)
    assert wrong.returncode == 2 and "expected DSO, CRO or AGR" in wrong.stderr
    assert agr.returncode == 0, agr.stderr
    assert 'role = "AGR"' in (tmp_path / "a" / "agr.toml").read_text()


# -- a non-editable install ------------------------------------------------------------------


def test_a_wheel_installed_elsewhere_has_its_samples_and_version(tmp_path: Path) -> None:
    """Built from a copy of the sources (nothing written into the tree), installed into a new
    virtual environment without its dependencies (they come from this one, on PYTHONPATH,
    which is no site directory: the editable install's finder is not read there), and run
    from a folder away from the sources."""
    source = tmp_path / "source"
    shutil.copytree(
        REPOSITORY / "adapter", source / "adapter", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPOSITORY / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    wheels = tmp_path / "wheels"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = wheels.glob("uftp_adapter-*.whl")
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", target, str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    ours = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": ours}
    env.pop("PYTHONHOME", None)
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), "-m", "adapter", *args],
            capture_output=True,
            text=True,
            cwd=work,
            env=env,
            timeout=60,
            check=False,
        )

    where = subprocess.run(
        [
            str(python),
            "-c",
            "import adapter, importlib.metadata as m; "
            "print(adapter.__file__); print(m.version('uftp-adapter'))",
        ],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=60,
        check=True,
    ).stdout.split()
    assert where[0].startswith(target) and where[1] == importlib.metadata.version("uftp-adapter")
    version = run("--version")
    init = run("init", "site", "--role", "dso", "--domain", "dso.example.com")
    samples = run("init", "demo", "--samples")

    assert version.stdout == f"uftp-adapter {where[1]}\n", version.stderr
    assert init.returncode == 0, init.stderr
    assert load_config(work / "site" / "dso.toml", environ={}).participant.role is Role.DSO
    assert samples.returncode == 0, samples.stderr
    for name in SAMPLE_FILES:
        assert (work / "demo" / name).read_bytes() == (REPOSITORY / "config" / name).read_bytes()
