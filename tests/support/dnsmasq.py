"""A real dnsmasq on 127.0.0.1 for the DNS and target tests (the ``dnsmasq`` fixture in conftest).

dnsmasq answers from a hosts file we control (``--addn-hosts``) with a 1 s TTL, is authoritative for
``.test`` (so unknown names get NXDOMAIN rather than REFUSED), forwards nothing anywhere (``--no-resolv``)
and reloads the hosts file on SIGHUP, which is how tests change a record.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query

DNSMASQ = shutil.which("dnsmasq") or next(
    (p for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq") if os.access(p, os.X_OK)), None
)

INITIAL_HOSTS = """\
127.0.0.2 svc.test
127.0.0.3 svc.test
127.0.0.5 single.test
"""


@dataclass
class DnsServer:
    port: int
    hosts_file: Path
    process: subprocess.Popen[bytes]

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_hosts(self, text: str) -> None:
        """Replace the served records; dnsmasq re-reads its hosts files and drops its cache on SIGHUP."""
        self.hosts_file.write_text(text)
        self.process.send_signal(signal.SIGHUP)
        # The reload is asynchronous; wait until the server answers again after it.
        time.sleep(0.1)
        _wait_until_answering(self.port, self.process)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port: int = udp.getsockname()[1]
    return port


def _wait_until_answering(port: int, process: subprocess.Popen[bytes], deadline: float = 5.0) -> bool:
    query = dns.message.make_query("svc.test", "A")
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            return False
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
        except (dns.exception.Timeout, OSError):
            time.sleep(0.05)
            continue
        return True
    return False


@contextlib.contextmanager
def run_dnsmasq(workdir: Path) -> Iterator[DnsServer | None]:
    """A dnsmasq serving ``INITIAL_HOSTS`` on a free port; None if dnsmasq is not installed."""
    if DNSMASQ is None:
        yield None
        return
    hosts_file = workdir / "hosts"
    hosts_file.write_text(INITIAL_HOSTS)
    log_path = workdir / "dnsmasq.log"
    with log_path.open("wb") as log:
        for _attempt in range(5):
            port = _free_port()  # another process may grab it before dnsmasq binds: retry
            args = [
                DNSMASQ,
                "--no-daemon",
                "--conf-file=/dev/null",
                "--pid-file=",
                f"--port={port}",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                f"--addn-hosts={hosts_file}",
                "--local=/test/",
                "--local-ttl=1",
                "--srv-host=_http._tcp.svc.test,b.svc.test,8081,2,10",
                "--srv-host=_http._tcp.svc.test,a.svc.test,8080,1,5",
            ]
            if os.geteuid() == 0:
                args.append("--user=root")  # stay able to re-read the test's private hosts file
            process = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            if _wait_until_answering(port, process):
                break
            process.kill()
            process.wait()
        else:
            raise RuntimeError(f"dnsmasq did not start: {log_path.read_text()}")
        try:
            yield DnsServer(port, hosts_file, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
