"""The client starts quickly: ``ftpclient -c pwd`` imports nothing that pwd does not need.

Each of these modules costs milliseconds at every start (cryptography
40-60 ms, looking the version up through ``importlib.metadata`` 30-40 ms,
ssl 5-10 ms, yaml 10-15 ms, dataclasses with inspect 8 ms, pathlib 2-4 ms,
the others about 1 ms each); scripts that call the client in a loop pay it
every time (issue 19).  They are imported where they are used: a key, TLS,
``--version``, the config file, ``--json``, ``!``, a mistyped command.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import ALICE, ALICE_PASSWORD, HOST, RunningServer, run_command

pytestmark = pytest.mark.timeout(60)

NOT_FOR_PWD = (
    "cryptography",
    "importlib.metadata",
    "configparser",
    "yaml",
    "ssl",
    "hashlib",
    "json",
    "subprocess",
    "difflib",
    "dataclasses",
    "inspect",
    "shutil",
    "blake3",
    "pathlib",
    "getpass",
    "glob",
    "base64",
)

# Runs the command line as ``python -m ftpclient`` does, then prints what it imported
# (not what the interpreter had loaded before: an editable install's finder loads pathlib).
RUN_AND_LIST = """\
import runpy, sys
before = set(sys.modules)
sys.argv = ["ftpclient", *sys.argv[1:]]
try:
    runpy.run_module("ftpclient", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    print("EXIT", exc.code)
print("MODULES", " ".join(sorted(set(sys.modules) - before)))
"""


def imported_by(tmp_path: Path, *args: str) -> tuple[str, set[str]]:
    """Run the client with ``args``; its output before the list, and the modules it imported."""
    done = run_command(["-c", RUN_AND_LIST, *args], cwd=tmp_path, password=ALICE_PASSWORD)
    assert done.returncode == 0, done.stderr
    out, _, modules = done.stdout.partition("MODULES ")
    return out, set(modules.split())


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$XDG_CONFIG_HOME`` for the client: no config file, no default key."""
    home = tmp_path / "config"
    home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def test_pwd_imports_no_heavy_module(
    server: RunningServer, tmp_path: Path, config_home: Path
) -> None:
    out, modules = imported_by(tmp_path, "--port", str(server.port), f"{ALICE}@{HOST}", "-c", "pwd")
    assert out.splitlines() == ["/", "EXIT 0"]
    assert not set(NOT_FOR_PWD) & modules, sorted(set(NOT_FOR_PWD) & modules)


def test_what_is_used_is_imported_when_used(
    server: RunningServer, tmp_path: Path, config_home: Path
) -> None:
    """A bookmark in the config file and ``--json``: yaml and json load, and they work."""
    (config_home / "ftpclient").mkdir()
    bookmark = f"bookmarks:\n  here: {{host: {HOST}, port: {server.port}, user: {ALICE}}}\n"
    (config_home / "ftpclient" / "config.yaml").write_text(bookmark)
    out, modules = imported_by(tmp_path, "--json", "here", "-c", "pwd")
    record, status = out.splitlines()
    assert json.loads(record)["path"] == "/", record
    assert status == "EXIT 0"
    assert {"yaml", "json"} <= modules


def test_server_without_keys_or_tls_loads_no_cryptography(tmp_path: Path) -> None:
    """cryptography adds about 9 MiB to each server process: only key logins and TLS load it."""
    probe = "import sys, ftpserver.__main__; print('cryptography' in sys.modules)"
    done = run_command(["-c", probe], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_an_unchanged_mirror_imports_only_what_comparing_needs(
    server: RunningServer, tmp_path: Path, config_home: Path
) -> None:
    """An unchanged mirror loads none of the modules that move files, nor dataclasses
    or shutil (issue 15: its time is a target); blake3 only where a local file is read:
    ``--rehash``, not ``-c`` with the digest the download kept."""
    site = server.alice_home / "site"
    (site / "sub").mkdir(parents=True)
    (site / "sub" / "a.txt").write_bytes(b"alpha")
    an_hour_ago = time.time() - 3600  # settled: the download's digest is kept
    os.utime(site / "sub" / "a.txt", (an_hour_ago, an_hour_ago))
    target = ["--port", str(server.port), f"{ALICE}@{HOST}", "-c"]
    out, _ = imported_by(tmp_path, *target, "mirror site copy")
    assert "1 file copied" in out, out
    for command in ("mirror -c --rehash site copy", "mirror -c site copy", "mirror site copy"):
        out, modules = imported_by(tmp_path, *target, command)
        assert "0 files copied, 1 unchanged" in out, out
        moving = {"ftpclient.pipelined", "ftpclient.pipelinedput", "ftpproto.pipeline"}
        heavy = (set(NOT_FOR_PWD) - {"blake3"}) | moving
        assert not heavy & modules, sorted(heavy & modules)
        assert ("blake3" in modules) == ("--rehash" in command), command


def test_a_key_login_imports_only_the_signing_half_of_cryptography(
    server: RunningServer, tmp_path: Path, config_home: Path
) -> None:
    """An unencrypted key is read by ``ftpclient.sshkey``: neither cryptography's
    serialization (20-25 ms) nor ssl (15-20 ms, only for a TLS binding) is imported."""
    from ftpclient.identity import generate

    key = tmp_path / "id_ed25519"
    generate(key)
    # alice has no such key on the server: it is refused and the password logs in
    args = ["--port", str(server.port), "--identity", str(key), f"{ALICE}@{HOST}", "-c", "pwd"]
    out, modules = imported_by(tmp_path, *args)
    assert out.splitlines() == ["/", "EXIT 0"]
    assert "cryptography.hazmat.primitives.asymmetric.ed25519" in modules
    unneeded = {"ssl", "cryptography.hazmat.primitives.serialization.ssh"}
    assert not unneeded & modules, sorted(unneeded & modules)


# Runs the program as the console script does, then says whether it froze what was alive.
RUN_AND_FREEZE = """\
import gc, sys
from ftpclient.__main__ import run
sys.argv = ["ftpclient", *sys.argv[1:]]
try:
    run()
except SystemExit as exc:
    print("EXIT", exc.code, "FROZEN", gc.get_freeze_count() > 0)
"""


def test_the_program_exits_with_main_s_status_after_freezing_what_is_alive(
    server: RunningServer, tmp_path: Path, config_home: Path
) -> None:
    """``run`` (the console script, ``python -m ftpclient``): no collection at exit, same status."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="ftpclient")
    assert script.value == "ftpclient.__main__:run"
    target = ["--port", str(server.port), f"{ALICE}@{HOST}"]
    for command, status in (("pwd", 0), ("cd nowhere", 1)):
        done = run_command(
            ["-c", RUN_AND_FREEZE, *target, "-c", command], cwd=tmp_path, password=ALICE_PASSWORD
        )
        assert done.stdout.splitlines()[-1] == f"EXIT {status} FROZEN True", done.stderr
    usage = run_command(["-c", RUN_AND_FREEZE, "--retries", "-1"], cwd=tmp_path)
    assert usage.stdout.splitlines()[-1] == "EXIT 2 FROZEN True", usage.stderr
