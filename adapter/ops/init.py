"""`uftp-adapter init`: a new participant's configuration and signing key, or the demo's
samples, from the files the package ships (`adapter.samples`), so that an installed adapter
needs no clone of its repository.

Nothing is overwritten: a folder that holds the config or the key already is refused before
anything is written, as `keys generate` refuses to replace a key (a participant's key is its
identity).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from adapter.config import load_config
from adapter.keys import generate, write_private
from adapter.uftp.errors import AdapterError
from adapter.uftp.messages import Role

__all__ = ["ROLES", "SAMPLE_FILES", "InitError", "Initialised", "copy_samples", "init_participant"]

#: The roles `init` writes a configuration for.
ROLES = (Role.DSO, Role.CRO, Role.AGR)
#: The demo's files (`uftp-adapter demo --config-dir`).
SAMPLE_FILES = ("dso.toml", "cro.toml", "portfolio.csv", "portfolio.json")

_CRO_SECTION = """
# The Common Reference's policy (the defaults are shown).
[cro]
mode = "open"                       # open: any DSO may register; closed: only the peers below
time_zone = "Europe/Amsterdam"      # the market's time zone (IANA)
period_violation = "reject"         # reject | clip: what to do with periods out of bounds
"""
_FLEX_SECTION = """
# The flex market: its agreed ISP length and time zone (the defaults are shown), and the
# congestion points traded on (a DSO's portfolio file, or a list; neither: not checked).
# [flex]
# isp_duration = "PT15M"
# time_zone = "Europe/Amsterdam"
# portfolio = "portfolio.csv"
# congestion_points = ["ea1.2026-01.example.com:cp-north"]
"""
_PEER_EXAMPLES = {
    Role.DSO: ("cro.example.com", "CRO", "cro"),
    Role.CRO: ("dso.example.com", "DSO", "dso"),
    Role.AGR: ("dso.example.com", "DSO", "dso"),
}


class InitError(AdapterError):
    """What `init` refuses to do, naming the file."""


@dataclass(frozen=True, slots=True)
class Initialised:
    config: Path
    key: Path
    public_key: Path
    #: The public key as a 'cs1.' string, for the peers' operators.
    cs1: str


def template() -> str:
    return resources.files("adapter.samples").joinpath("participant.toml.in").read_text("utf-8")


def render(role: Role, domain: str, listen: str) -> str:
    """The commented configuration of a participant."""
    name = role.value.lower()
    peer_domain, peer_role, peer_name = _PEER_EXAMPLES[role]
    peers = "\n".join(
        [
            "# [[peers]]",
            f'# domain = "{peer_domain}"',
            f'# role = "{peer_role}"',
            f'# endpoint = "https://{peer_domain}/shapeshifter/api/v3/message"',
            f'# public_keys_file = "keys/{peer_name}.pub"   # its cs1 string, from its operator;',
            '#                                         # or public_keys = ["cs1...."]',
        ]
    )
    return Template(template()).substitute(
        role=role.value,
        domain=domain,
        name=name,
        listen=listen,
        cro_section=_CRO_SECTION if role is Role.CRO else _FLEX_SECTION,
        peers_example=peers,
    )


def init_participant(folder: Path, role: Role, domain: str, listen: str) -> Initialised:
    """Write FOLDER/NAME.toml and the key FOLDER/keys/NAME.key (0600, and its .pub), NAME
    being the role in lower case; FOLDER is created. Raises `InitError` for a file that
    exists already, and `ConfigError` for a domain or address the configuration refuses."""
    if role not in ROLES:
        raise InitError(f"init writes a DSO, CRO or AGR configuration, not {role}")
    name = role.value.lower()
    config_path = folder / f"{name}.toml"
    key_path = folder / "keys" / f"{name}.key"
    for path in (config_path, key_path, key_path.with_suffix(".pub")):
        if path.exists():
            raise InitError(f"{path} exists already: init writes a new participant only")
    text = render(role, domain, listen)
    folder.mkdir(parents=True, exist_ok=True)
    _write_new(config_path, text)
    try:
        load_config(config_path, environ={})  # what we wrote is a configuration serve takes
    except BaseException:
        config_path.unlink()
        raise
    keys = generate()
    public_path = write_private(key_path, keys)
    return Initialised(config_path, key_path, public_path, keys.public.to_cs1())


def copy_samples(folder: Path) -> list[Path]:
    """The demo's sample configs and portfolio files into FOLDER (`demo --config-dir`)."""
    targets = [folder / name for name in SAMPLE_FILES]
    for path in targets:
        if path.exists():
            raise InitError(f"{path} exists already: init writes new files only")
    folder.mkdir(parents=True, exist_ok=True)
    samples = resources.files("adapter.samples")
    for name, path in zip(SAMPLE_FILES, targets, strict=True):
        _write_new(path, samples.joinpath(name).read_text("utf-8"))
    return targets


def _write_new(path: Path, text: str) -> None:
    # O_EXCL: never over a file that appeared meanwhile; 0644 minus the umask, as a config.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
