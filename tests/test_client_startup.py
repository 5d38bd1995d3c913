"""The client starts quickly: ``ftpclient -c pwd`` imports nothing that pwd does not need.

Each of these modules costs milliseconds at every start (tqdm 25-35 ms
through ``importlib.metadata``, ssl 10-20 ms, yaml 15 ms); scripts that call
the client in a loop pay it every time (issue 19).  They are imported where
they are used: the progress bar, TLS, the config file, ``--json``, ``!``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ALICE, ALICE_PASSWORD, HOST, RunningServer, run_command

pytestmark = pytest.mark.timeout(60)

NOT_FOR_PWD = ("tqdm", "yaml", "ssl", "json", "subprocess", "difflib", "importlib.metadata")

# Runs the command line as ``python -m ftpclient`` does, then prints what it imported.
RUN_AND_LIST = """\
import runpy, sys
sys.argv = ["ftpclient", *sys.argv[1:]]
try:
    runpy.run_module("ftpclient", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    print("EXIT", exc.code)
print("MODULES", " ".join(sorted(sys.modules)))
"""


def imported_by(tmp_path: Path, *args: str, home: Path | None = None) -> tuple[str, set[str]]:
    """Run the client with ``args``; its output before the list, and the modules it imported."""
    done = run_command(["-c", RUN_AND_LIST, *args], cwd=tmp_path, password=ALICE_PASSWORD)
    assert done.returncode == 0, done.stderr
    out, _, modules = done.stdout.partition("MODULES ")
    return out, set(modules.split())


def test_pwd_imports_no_heavy_module(server: RunningServer, tmp_path: Path) -> None:
    out, modules = imported_by(tmp_path, "--port", str(server.port), f"{ALICE}@{HOST}", "-c", "pwd")
    assert out.splitlines() == ["/", "EXIT 0"]
    assert not set(NOT_FOR_PWD) & modules, sorted(set(NOT_FOR_PWD) & modules)
