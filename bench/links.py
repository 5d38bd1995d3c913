"""The links the tree workloads run over: loopback, and a 50 ms round trip.

A :class:`Link` says where servers listen, how server and client processes
are started (a prefix such as ``ip netns exec NS``) and where a client reaches
a server's port.  :func:`open_link` builds one and tears it down afterwards:

* ``loopback``: everything on 127.0.0.1, no delay.
* ``netem``: two network namespaces the benchmark creates (``ftb-s-PID`` for
  the servers, ``ftb-c-PID`` for the clients) joined by a veth pair with
  10.200.0.1/30 and 10.200.0.2/30 and ``netem delay`` of half the round trip
  on each end.  The namespaces have no route anywhere else; they are
  deleted (with the veth pair and its qdiscs) in a ``finally`` block.
* ``proxy``: when netem is missing (:func:`netem_works` tries it in a fresh
  namespace): servers listen on 127.0.0.2 and :mod:`bench.delayproxy`
  forwards from the same ports on 127.0.0.1, delaying each direction by
  half the round trip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.environment import child_env

__all__ = ["Link", "ensure_iproute", "netem_works", "open_link"]

SERVER_ADDRESS = "10.200.0.1"
CLIENT_ADDRESS = "10.200.0.2"


def _ip(*args: str, namespace: str | None = None) -> None:
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


def _in(namespace: str | None, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *command] if namespace else command


def ensure_iproute() -> str:
    """Install iproute2 when ``ip`` or ``tc`` is missing (root only); a note of what happened."""
    if shutil.which("ip") and shutil.which("tc"):
        return ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "ip/tc missing and not root with apt-get: no network namespaces"
    print("installing iproute2 (ip, tc) from Debian's packages ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "iproute2"], capture_output=True)
    if shutil.which("ip") and shutil.which("tc"):
        return "installed iproute2"
    return "could not install iproute2"


def netem_works() -> tuple[bool, str]:
    """Whether a fresh namespace accepts a netem qdisc; and why not."""
    if not (shutil.which("ip") and shutil.which("tc")) or os.geteuid() != 0:
        return False, "needs root and ip/tc"
    probe = f"ftb-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
        _ip("link", "set", "lo", "up", namespace=probe)
        done = subprocess.run(
            _in(probe, ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return False, f"tc netem: {done.stderr.strip()}"
        return True, ""
    except RuntimeError as exc:
        return False, str(exc)
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)


@dataclass
class Link:
    """Where servers listen, how processes start, where clients connect."""

    name: str  # loopback or e.g. 50ms
    method: str  # loopback, netem or proxy
    rtt: float  # seconds, added by the link
    server_host: str
    server_ns: str | None = None
    client_ns: str | None = None
    _proxies: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def description(self) -> str:
        """What this link is, for the output."""
        if self.method == "loopback":
            return "loopback (127.0.0.1)"
        half = f"{1000 * self.rtt / 2:g} ms"
        if self.method == "netem":
            return (f"namespaces {self.server_ns} / {self.client_ns}, veth with "
                    f"netem delay {half} each way")  # fmt: skip
        return f"userland delay proxy on 127.0.0.1, {half} each way (no netem here)"

    def server_command(self, command: list[str]) -> list[str]:
        """``command`` as run on the servers' side of the link."""
        return _in(self.server_ns, command)

    def client_command(self, command: list[str]) -> list[str]:
        """``command`` as run on the clients' side of the link."""
        return _in(self.client_ns, command)

    @contextlib.contextmanager
    def reach(self, ports: list[int]) -> Iterator[str]:
        """The host clients use for a server listening on ``ports`` (a proxy while needed)."""
        if self.method == "loopback":
            yield "127.0.0.1"
            return
        if self.method == "netem":
            yield self.server_host
            return
        proxy = subprocess.Popen(
            [sys.executable, "-m", "bench.delayproxy", "--delay", str(self.rtt / 2),
             "--listen", "127.0.0.1", "--target", self.server_host, *map(str, ports)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )  # fmt: skip
        try:
            assert proxy.stdout is not None
            if proxy.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the delay proxy did not start ({proxy.wait()})")
            yield "127.0.0.1"
        finally:
            proxy.terminate()
            try:
                proxy.wait(10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()


def _namespaces(rtt: float) -> Link:
    pid = os.getpid()
    server_ns, client_ns = f"ftb-s-{pid}", f"ftb-c-{pid}"
    server_if, client_if = f"ftbs{pid}"[:15], f"ftbc{pid}"[:15]
    half = f"{1000 * rtt / 2:g}ms"
    _ip("netns", "add", server_ns)
    _ip("netns", "add", client_ns)
    _ip("link", "add", server_if, "type", "veth", "peer", "name", client_if)
    for namespace, interface, address in (
        (server_ns, server_if, SERVER_ADDRESS),
        (client_ns, client_if, CLIENT_ADDRESS),
    ):
        _ip("link", "set", interface, "netns", namespace)
        _ip("addr", "add", f"{address}/30", "dev", interface, namespace=namespace)
        _ip("link", "set", interface, "up", namespace=namespace)
        _ip("link", "set", "lo", "up", namespace=namespace)
        subprocess.run(
            _in(namespace, ["tc", "qdisc", "add", "dev", interface, "root", "netem",
                            "delay", half, "limit", "100000"]),
            check=True,
            capture_output=True,
        )  # fmt: skip
    return Link(f"{1000 * rtt:g}ms", "netem", rtt, SERVER_ADDRESS, server_ns, client_ns)


@contextlib.contextmanager
def open_link(rtt: float, method: str) -> Iterator[Link]:
    """A link with round trip ``rtt`` (0: loopback) by ``method`` (netem or proxy)."""
    if rtt == 0:
        yield Link("loopback", "loopback", 0.0, "127.0.0.1")
        return
    if method == "proxy":
        yield Link(f"{1000 * rtt:g}ms", "proxy", rtt, "127.0.0.2")
        return
    try:
        link = _namespaces(rtt)
        time.sleep(0.2)  # let the veth pair come up
        yield link
    finally:
        pid = os.getpid()
        for namespace in (f"ftb-s-{pid}", f"ftb-c-{pid}"):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", f"ftbs{pid}"[:15]], capture_output=True, check=False)
