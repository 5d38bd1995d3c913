"""Workload ``start`` (group g): a new client process connects, logs in, prints the folder, quits.

What a script that calls the client in a loop pays for every call (issue 19's
target: ``ftpclient -c pwd`` against a local server in 50 ms or less).  Each
run is one whole command timed from its start to its exit, ``--latency-runs``
times in a row against one server; the figure is the median.

* ``ours``: ``python -m ftpclient --port PORT bench@HOST -c pwd`` with the
  password in ``FTPCLIENT_PASSWORD`` and ``XDG_CONFIG_HOME`` pointed at an
  empty folder (no config file, no default key), and our modules' bytecode
  compiled beforehand, as an installed client has it;
* ``ours-tls``: the same with ``--cafile``;
* ``pyftpdlib``: ``lftp`` when the machine has it, the command-line FTP
  client users would otherwise call (``cd /`` makes it connect and log in;
  lftp's ``pwd`` alone would not).

A run whose command fails (an exit status, or anything on stderr: lftp exits
0 after a failed login) raises, so the benchmark reports it.
"""

from __future__ import annotations

import compileall
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.environment import REPO_ROOT, child_env
from bench.servers import Running

__all__ = ["START_KINDS", "client_start_ms", "compile_ours"]

START_KINDS = ("ours", "ours-tls", "pyftpdlib") if shutil.which("lftp") else ("ours", "ours-tls")
PACKAGES = ("ftpclient", "ftpproto", "ftpfiles", "ftpserver")


def compile_ours() -> None:
    """Write our modules' bytecode, as an installed copy has it.

    The benchmark's children run with ``PYTHONDONTWRITEBYTECODE=1`` (and this
    machine may set it for everyone); without this each client command would
    compile our modules again at every start (35-60 ms).
    """
    for package in PACKAGES:
        compileall.compile_dir(str(REPO_ROOT / package), quiet=1)


def _command(server: Running, config_home: Path) -> tuple[list[str], dict[str, str]]:
    info = server.info
    env = child_env()
    if info.protocol == "ftp":
        script = "set cmd:interactive false; cd /; pwd; bye"
        command = ["lftp", "-u", f"{info.user},{info.password}", "-p", str(info.port)]
        return [*command, "-e", script, info.host], env
    env.update(FTPCLIENT_PASSWORD=info.password, XDG_CONFIG_HOME=str(config_home))
    command = [sys.executable, "-m", "ftpclient", "--port", str(info.port)]
    if info.cafile:
        command += ["--cafile", info.cafile]
    return [*command, f"{info.user}@{info.host}", "-c", "pwd"], env


def client_start_ms(server: Running, runs: int, tmp: Path) -> tuple[float, list[float]]:
    """The median and every wall time (ms) of ``runs`` client commands in a row."""
    compile_ours()
    config_home = tmp / "client-config"
    config_home.mkdir(exist_ok=True)
    command, env = _command(server, config_home)
    times: list[float] = []
    for _ in range(max(1, runs)):
        started = time.perf_counter()
        done = subprocess.run(
            command, env=env, cwd=tmp, capture_output=True, text=True, timeout=60, check=False
        )
        times.append(1000 * (time.perf_counter() - started))
        if done.returncode != 0 or done.stderr.strip() or "/" not in done.stdout:
            problem = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{command[0]} exited with {done.returncode}: {problem[0]}")
    return statistics.median(times), times
