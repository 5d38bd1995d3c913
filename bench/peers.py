"""The peers of the tree workloads: rsync and sftp over a private sshd, lftp against vsftpd.

:func:`ensure_tools` installs what is missing from Debian's packages (as
root, with ``apt-get``) and says which columns cannot run and why.
:func:`start_sshd` runs OpenSSH's server on its own port with a generated
host key and one authorized key, both in a temporary folder (root may log in
with that key only; no PAM, no passwords); :func:`start_vsftpd` runs vsftpd
with its own config: anonymous login, uploads and folders allowed under
``ROOT/pub``, passive ports in a small range.  Both are :class:`Daemon`
processes, ready once their port listens (seen in ``/proc/PID/net/tcp``,
which works inside a network namespace too) and stopped by
:meth:`Daemon.stop`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PASV_PORTS",
    "Daemon",
    "ensure_tools",
    "free_ports",
    "ssh_options",
    "start_sshd",
    "start_vsftpd",
]

PASV_PORTS = 24
TOOLS = {  # column -> (commands it needs, Debian packages that bring them)
    "rsync": (("rsync", "ssh", "sshd"), ("rsync", "openssh-client", "openssh-server")),
    "sftp": (("sftp", "sshd"), ("openssh-client", "openssh-server")),
    "lftp": (("lftp", "vsftpd"), ("lftp", "vsftpd")),
}


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def ensure_tools(columns: list[str]) -> dict[str, str]:
    """Install the missing peers' packages; column -> why it cannot run (absent when it can)."""
    missing = {c: [t for t in TOOLS[c][0] if not _which(t)] for c in columns}
    packages = sorted({p for c in columns if missing[c] for p in TOOLS[c][1]})
    if packages and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"note: installing {', '.join(packages)} from Debian's packages for the peers ...",
              flush=True)  # fmt: skip
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        command = ["apt-get", "install", "-y", "-qq", *packages]
        if subprocess.run(command, capture_output=True, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
            subprocess.run(command, capture_output=True, env=env)
    reasons: dict[str, str] = {}
    for column in columns:
        absent = [t for t in TOOLS[column][0] if not _which(t)]
        if absent:
            reasons[column] = f"{', '.join(absent)} missing (apt-get install failed or not root)"
    return reasons


def free_ports(count: int, hosts: tuple[str, ...]) -> list[int]:
    """``count`` consecutive ports free on every one of ``hosts``.

    Searched from 20000 up, below Linux's ephemeral ports (32768-60999), so no
    client connection takes one meanwhile; probed with SO_REUSEADDR, as the
    servers bind, so connections in TIME_WAIT do not hide a free port.
    """
    hosts = tuple(dict.fromkeys(hosts))
    error: OSError | None = None
    for base in range(20000 + (os.getpid() % 100) * 64, 32700 - count, 64):
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                for host in hosts:
                    sock = socket.socket()
                    held.append(sock)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((host, port))
            return list(range(base, base + count))
        except OSError as exc:
            error = exc
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports on {', '.join(hosts)}: {error}")


def _listening(pid: int, port: int) -> bool:
    try:
        with open(f"/proc/{pid}/net/tcp") as table:
            rows = [row.split() for row in list(table)[1:]]
    except OSError:
        return False
    return any(row[3] == "0A" and int(row[1].split(":")[1], 16) == port for row in rows)


@dataclass
class Daemon:
    """A started server process of a peer."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def wait_listening(self, timeout: float = 20.0) -> None:
        """Return once the port listens; RuntimeError if the process exits or takes too long."""
        deadline = time.monotonic() + timeout
        while not _listening(self.process.pid, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-800:]
                raise RuntimeError(f"{self.name} did not start: {tail.strip()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _spawn(name: str, command: list[str], log: Path, port: int) -> Daemon:
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    daemon = Daemon(name, process, port, log)
    daemon.wait_listening()
    return daemon


def ssh_options(port: int, key: Path) -> list[str]:
    """The ssh options every ssh-based client uses against the private sshd."""
    return [
        "-p", str(port), "-i", str(key), "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
    ]  # fmt: skip


def start_sshd(folder: Path, host: str, port: int, prefix: list[str]) -> tuple[Daemon, Path]:
    """A private sshd on ``host:port`` (run under ``prefix``); the daemon and the client key."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)],
                       check=True, capture_output=True)  # fmt: skip
    authorized = folder / "authorized_keys"
    shutil.copyfile(folder / "client_key.pub", authorized)
    authorized.chmod(0o600)
    config = folder / "sshd_config"
    config.write_text(
        f"ListenAddress {host}\nPort {port}\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {authorized}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPidFile none\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # its privilege separation folder
    sshd = _which("sshd") or "/usr/sbin/sshd"
    command = [*prefix, sshd, "-D", "-e", "-f", str(config)]
    return _spawn("sshd", command, folder / "sshd.log", port), folder / "client_key"


def start_vsftpd(
    folder: Path, root: Path, host: str, port: int, pasv: list[int], advertise: str | None,
    prefix: list[str],
) -> Daemon:  # fmt: skip
    """vsftpd on ``host:port`` serving ``root`` anonymously, uploads under ``root/pub``.

    ``advertise`` is the address named in PASV replies when clients reach the
    server through the delay proxy on another address.
    """
    (root / "pub").mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # vsftpd refuses an anonymous root the anonymous user may write
    (root / "pub").chmod(0o777)
    empty = folder / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    lines = [
        "listen=YES", "listen_ipv6=NO", f"listen_address={host}", f"listen_port={port}",
        "background=NO", "anonymous_enable=YES", "local_enable=NO", "no_anon_password=YES",
        f"anon_root={root}", "write_enable=YES", "anon_upload_enable=YES",
        "anon_mkdir_write_enable=YES", "anon_other_write_enable=YES", "anon_umask=022",
        "anon_world_readable_only=NO", "ftp_username=ftp", f"secure_chroot_dir={empty}",
        "seccomp_sandbox=NO", "isolate=NO", "isolate_network=NO", "pasv_enable=YES",
        f"pasv_min_port={pasv[0]}", f"pasv_max_port={pasv[-1]}", "xferlog_enable=NO",
        "dirmessage_enable=NO", "max_clients=0", "max_per_ip=0", "use_sendfile=YES",
    ]  # fmt: skip
    if advertise:
        lines.append(f"pasv_address={advertise}")
    config = folder / "vsftpd.conf"
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    vsftpd = _which("vsftpd") or "/usr/sbin/vsftpd"
    return _spawn("vsftpd", [*prefix, vsftpd, str(config)], folder / "vsftpd.log", port)
