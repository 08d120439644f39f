"""Real DNS servers on loopback for the DNS directory tests: NSD serving test zones, signed
at test time with keys generated at test time (ldns-keygen, ldns-signzone), and an Unbound
that validates them against those keys as trust anchors, each with its own configuration in
the test's folder, run in the foreground by the test and killed at its end.

Zones (all under the special-use name "test."):

- signed zones (``example.test``, and ``bogus.test`` whose records are altered after
  signing): Unbound holds their KSKs as trust anchors, so it sets the AD bit on their good
  answers and answers SERVFAIL for the altered ones;
- unsigned zones (``plain.test``): Unbound is told they are insecure (``domain-insecure``),
  so their answers come without the AD bit.

Without the servers these tests skip, or fail under CI=true: CI must not pass without them
(`.ci/run` installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROGRAMS = ("nsd", "unbound", "ldns-keygen", "ldns-signzone")
REQUIRED = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_programs() -> None:
    missing = [name for name in PROGRAMS if shutil.which(name) is None and not _sbin(name)]
    if missing:
        problem = (
            f"DNS servers missing: {', '.join(missing)} (apt-get install nsd unbound ldnsutils)"
        )
        if REQUIRED:
            pytest.fail(f"{problem}; CI=true: the DNS tests may not skip")
        pytest.skip(problem)


def _sbin(name: str) -> str | None:
    for folder in ("/usr/sbin", "/usr/bin", "/sbin"):
        path = Path(folder) / name
        if path.exists():
            return str(path)
    return None


def program(name: str) -> str:
    found = shutil.which(name) or _sbin(name)
    assert found, name
    return found


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (as far as one can tell)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return int(port)
    raise RuntimeError("no free port")


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited {process.returncode}: {log.read_text(errors='replace')}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}: {log.read_text(errors='replace')}")


@dataclass
class Zone:
    name: str
    signed: bool
    #: Owner-relative record lines ("_cro._usef.cro 2 TXT \"cs1...\"").
    records: list[str]
    #: Records whose signatures are altered after signing (owner names, relative).
    corrupt: tuple[str, ...] = ()
    serial: int = 1
    keys: list[str] = field(default_factory=list)


class DnsLab:
    """NSD and Unbound for one test; `publish` changes a zone while they run."""

    def __init__(self, folder: Path, zones: Iterable[Zone]) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.zones = {zone.name: zone for zone in zones}
        self.nsd_port = free_port()
        self.resolver_port = free_port()
        self._processes: list[subprocess.Popen[bytes]] = []
        self._mtime = time.time()

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.resolver_port}"

    # -- zones ------------------------------------------------------------------------------

    def _keygen(self, zone: Zone) -> None:
        for ksk in (True, False):
            args = [program("ldns-keygen"), "-a", "ED25519", *(["-k"] if ksk else []), zone.name]
            base = subprocess.run(
                args, cwd=self.folder, check=True, capture_output=True, text=True
            ).stdout.strip()
            zone.keys.append(base)

    def _write(self, zone: Zone) -> Path:
        text = "\n".join(
            [
                f"$ORIGIN {zone.name}.",
                "$TTL 60",
                # SOA MINIMUM 1: an absent name is cached for a second (RFC 2308).
                f"@ 60 IN SOA ns.{zone.name}. admin.{zone.name}. {zone.serial} 3600 600 86400 1",
                f"@ 60 IN NS ns.{zone.name}.",
                "ns 60 IN A 127.0.0.1",
                *zone.records,
                "",
            ]
        )
        path = self.folder / f"{zone.name}.zone"
        path.write_text(text)
        if not zone.signed:
            return self._touch(path)
        keys = [str(self.folder / key) for key in zone.keys]
        subprocess.run(
            [program("ldns-signzone"), "-n", str(path), *keys],
            cwd=self.folder,
            check=True,
            capture_output=True,
        )
        signed = self.folder / f"{zone.name}.zone.signed"
        if zone.corrupt:
            signed.write_text(self._corrupted(signed.read_text(), zone))
        return self._touch(signed)

    def _touch(self, path: Path) -> Path:
        # NSD reloads a zone file on SIGHUP when its mtime changed: make sure it did.
        self._mtime += 2
        os.utime(path, (self._mtime, self._mtime))
        return path

    @staticmethod
    def _corrupted(text: str, zone: Zone) -> str:
        owners = {f"{name}.{zone.name}." for name in zone.corrupt}
        lines = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[0] in owners and fields[3] == "RRSIG":
                signature = fields[-1]
                flipped = "B" if signature[10] != "B" else "C"
                line = line.replace(signature, signature[:10] + flipped + signature[11:])
            lines.append(line)
        return "\n".join(lines) + "\n"

    def publish(self, zone_name: str, records: list[str]) -> None:
        """Serve `records` in the zone from now on (NSD reloads it; Unbound's cache keeps
        the old records for their TTL)."""
        zone = self.zones[zone_name]
        zone.records = records
        zone.serial += 1
        self._write(zone)
        self._processes[0].send_signal(signal.SIGHUP)
        # NSD reloads in a child process: wait until it serves the new serial.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._serial(zone_name) == zone.serial:
                return
            time.sleep(0.05)
        raise RuntimeError(f"NSD did not reload {zone_name}")

    def _serial(self, zone_name: str) -> int | None:
        import dns.message
        import dns.query
        import dns.rdatatype

        query = dns.message.make_query(f"{zone_name}.", dns.rdatatype.SOA)
        try:
            response = dns.query.udp(query, "127.0.0.1", timeout=1, port=self.nsd_port)
        except Exception:
            return None
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        return None

    # -- servers ----------------------------------------------------------------------------

    def start(self) -> None:
        require_programs()
        zone_config = []
        anchors = []
        insecure = []
        for zone in self.zones.values():
            if zone.signed:
                self._keygen(zone)
                ksk = next(key for key in zone.keys if _is_ksk(self.folder / f"{key}.key"))
                anchors.append(f'  trust-anchor-file: "{self.folder / ksk}.key"')
            else:
                insecure.append(f'  domain-insecure: "{zone.name}"')
            path = self._write(zone)
            zone_config.append(f"zone:\n  name: {zone.name}\n  zonefile: {path}\n")
        nsd_conf = self.folder / "nsd.conf"
        nsd_conf.write_text(
            "server:\n"
            f"  ip-address: 127.0.0.1@{self.nsd_port}\n"
            f"  port: {self.nsd_port}\n"
            "  do-ip6: no\n"
            "  server-count: 1\n"
            '  username: ""\n'
            '  chroot: ""\n'
            f"  zonesdir: {self.folder}\n"
            f"  pidfile: {self.folder / 'nsd.pid'}\n"
            f"  xfrdfile: {self.folder / 'xfrd.state'}\n"
            f"  zonelistfile: {self.folder / 'zone.list'}\n"
            f"  xfrdir: {self.folder}\n"
            '  database: ""\n'
            f"  logfile: {self.folder / 'nsd.log'}\n"
            "  verbosity: 1\n"
            "remote-control:\n"
            "  control-enable: no\n" + "".join(zone_config)
        )
        self._run([program("nsd"), "-d", "-c", str(nsd_conf)], "nsd", self.nsd_port)
        stubs = [
            f'stub-zone:\n  name: "{zone}"\n  stub-addr: 127.0.0.1@{self.nsd_port}\n'
            for zone in self.zones
        ]
        unbound_conf = self.folder / "unbound.conf"
        unbound_conf.write_text(
            "server:\n"
            "  interface: 127.0.0.1\n"
            f"  port: {self.resolver_port}\n"
            "  do-ip6: no\n"
            "  num-threads: 1\n"
            '  username: ""\n'
            '  chroot: ""\n'
            f'  directory: "{self.folder}"\n'
            f'  pidfile: "{self.folder / "unbound.pid"}"\n'
            f'  logfile: "{self.folder / "unbound.log"}"\n'
            "  use-syslog: no\n"
            "  verbosity: 1\n"
            "  val-log-level: 2\n"
            "  do-not-query-localhost: no\n"
            "  access-control: 127.0.0.0/8 allow\n"
            '  module-config: "validator iterator"\n'
            # "test." is a special-use name Unbound answers itself unless told not to.
            '  local-zone: "test." nodefault\n'
            "  prefetch: no\n" + "\n".join(anchors + insecure) + "\n" + "".join(stubs)
        )
        self._run(
            [program("unbound"), "-d", "-c", str(unbound_conf)], "unbound", self.resolver_port
        )

    def _run(self, args: list[str], name: str, port: int) -> None:
        log = self.folder / f"{name}.out"
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        self._processes.append(process)
        try:
            wait_for_port(port, process, log)
        except RuntimeError as exc:
            self.stop()
            server_log = self.folder / f"{name}.log"
            extra = server_log.read_text(errors="replace") if server_log.exists() else ""
            raise RuntimeError(f"{name} did not start: {exc} {extra}") from None

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._processes.clear()


def _is_ksk(path: Path) -> bool:
    # DNSKEY flags 257: the key-signing key, which the resolver is given as the trust anchor.
    return re.search(r"\bDNSKEY\s+257\b", path.read_text()) is not None


def txt(owner: str, *strings: str, ttl: int = 60) -> str:
    quoted = " ".join(f'"{text}"' for text in strings)
    return f"{owner} {ttl} IN TXT {quoted}"


def cname(owner: str, target: str, ttl: int = 60) -> str:
    return f"{owner} {ttl} IN CNAME {target}"
