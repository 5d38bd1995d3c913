"""The shell's local commands: ``lcd``, ``lls``, ``lpwd``, ``lmkdir`` and ``!command``.

They act on this machine only and work even while disconnected.  ``lls``
runs the local ``ls`` with the flags given (``lls -la``); ``!`` alone opens
an interactive shell.  In ``--json`` mode what a local program prints becomes
``text`` records.  Mixed into :class:`~ftpclient.shell.ClientShell`.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING

from ftpclient.client import LocalError

if TYPE_CHECKING:
    from ftpclient.output import Output

__all__ = ["LocalCommands"]


class LocalCommands:
    """``do_l*`` commands for the local side of a transfer."""

    out: Output
    fail: Callable[..., None]
    failed: bool

    def _local_args(self, arg: str, most: int, usage: str) -> list[str] | None:
        words = shlex.split(arg)
        if len(words) > most:
            self.fail(f"usage: {usage}")
            return None
        return [os.path.expanduser(w) for w in words]

    def do_lcd(self, arg: str) -> None:
        """lcd [PATH]: change the local folder (default: your home folder).

        Example: lcd ~/Downloads"""
        words = self._local_args(arg, 1, "lcd [PATH]")
        if words is None:
            return
        target = words[0] if words else os.path.expanduser("~")
        try:
            os.chdir(target)
        except OSError as exc:
            raise LocalError(f"{exc.strerror}: {target}") from exc
        self.out.info(os.getcwd())
        self.out.record("lcd", {"path": os.getcwd()})

    def do_lpwd(self, arg: str) -> None:
        """lpwd: show the local folder."""
        if self._local_args(arg, 0, "lpwd") is not None:
            self.out.result("lpwd", {"path": os.getcwd()}, os.getcwd())

    def _run(self, command: str | list[str], what: str) -> int:
        """Run a local program; in ``--json`` mode its output becomes ``text`` records."""
        import subprocess  # here, not at the top: only local programs need it

        if not self.out.json_mode:
            return subprocess.call(command, shell=isinstance(command, str))
        done = subprocess.run(
            command, shell=isinstance(command, str), capture_output=True, text=True, check=False
        )
        for text in done.stdout.splitlines():
            self.out.line(text)
        if done.returncode and done.stderr.strip():
            self.fail(f"local: {done.stderr.strip().splitlines()[-1].removeprefix(what + ': ')}")
        elif done.stderr:
            self.out.warning(done.stderr.rstrip())
        return done.returncode

    def do_lls(self, arg: str) -> None:
        """lls [LS-FLAGS] [PATH...]: list a local folder with this machine's ls (lls -la ~/x).

        The flags go to the local ls as they are.  Example: lls -lh ~/Downloads"""
        words = [os.path.expanduser(w) for w in shlex.split(arg)]
        import shutil  # here, not at the top: see ftpclient.progress

        if shutil.which("ls"):
            if self._run(["ls", *words], "ls") != 0 and not self.failed:
                self.failed = True
            return
        if len(words) > 1 or any(w.startswith("-") for w in words):
            self.fail("usage: lls [PATH] (no local ls here to take flags)")
            return
        folder = words[0] if words else "."
        try:
            names = sorted(os.listdir(folder))
        except OSError as exc:
            raise LocalError(f"{exc.strerror}: {folder}") from exc
        for name in names:
            suffix = "/" if os.path.isdir(os.path.join(folder, name)) else ""
            self.out.line(name + suffix)

    def do_lmkdir(self, arg: str) -> None:
        """lmkdir PATH: create a local folder (and its missing parents).

        Example: lmkdir backups/2026"""
        words = self._local_args(arg, 1, "lmkdir PATH")
        if not words:
            self.fail("usage: lmkdir PATH")
            return
        try:
            os.makedirs(words[0], exist_ok=True)
        except OSError as exc:
            raise LocalError(f"{exc.strerror}: {words[0]}") from exc

    def do_shell(self, arg: str) -> None:
        """![COMMAND]: run COMMAND in the local shell; ! alone opens one (exit returns here).

        Example: !sha256sum report.pdf"""
        if not arg.strip():
            import subprocess

            subprocess.call([os.environ.get("SHELL") or "/bin/sh"])
            return
        status = self._run(arg, "sh")
        if status != 0 and not self.failed:
            self.fail(f"local command exited with status {status}")
