"""The shell's local commands: ``lcd``, ``lls``, ``lpwd``, ``lmkdir`` and ``!command``.

They act on this machine only and work even while disconnected.  Mixed into
:class:`~ftpclient.shell.ClientShell`.
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
    fail: Callable[[str], None]

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

    def do_lpwd(self, arg: str) -> None:
        """lpwd: show the local folder."""
        if self._local_args(arg, 0, "lpwd") is not None:
            self.out.line(os.getcwd())

    def do_lls(self, arg: str) -> None:
        """lls [PATH]: list a local folder.

        Example: lls ~/Downloads"""
        words = self._local_args(arg, 1, "lls [PATH]")
        if words is None:
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
        """!COMMAND: run COMMAND in the local shell.

        Example: !sha256sum report.pdf"""
        if not arg.strip():
            self.fail("usage: !COMMAND")
            return
        import subprocess  # here, not at the top: only ! needs it

        status = subprocess.call(arg, shell=True)
        if status != 0:
            self.fail(f"local command exited with status {status}")
