"""Copying a list of files: the one function ``mirror``, ``mget`` and ``mput`` transfer through.

:func:`copy_files` takes ``(source, destination)`` pairs for one direction
and moves each file through the verified single-file transfers
(:meth:`~ftpclient.client.FileTransferClient.get` / ``put``), in order; a
failure stops the copy and names the file, and every file before it is
complete.  With ``preserve`` the copy gets the source's modification time:
a download sets it on the local file once it is verified, an upload asks the
server with ``touch`` after the data (pipelined, many requests in flight).
A server too old to know ``touch`` is told once and the files stay copied.

Keeping this in one function lets the sequential loop here be replaced by
pipelined transfers without touching its callers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ftpclient.client import FileTransferClient, LocalError, Monitor, TransferResult
from ftpproto.errors import ErrorCode, ProtocolError

__all__ = ["CopyResult", "copy_files"]

Pair = tuple[str, str]  # (source, destination)
OnFile = Callable[[TransferResult], None]
MonitorFor = Callable[[str], Monitor | None]


@dataclass
class CopyResult:
    """What :func:`copy_files` moved, and where a modification time could not be kept."""

    files: list[TransferResult] = field(default_factory=list)
    mtime_failures: list[str] = field(default_factory=list)  # "PATH: why"

    @property
    def size(self) -> int:
        """Bytes copied."""
        return sum(result.size for result in self.files)


def copy_files(
    client: FileTransferClient,
    direction: str,
    pairs: Sequence[Pair],
    preserve: bool = False,
    on_file: OnFile | None = None,
    monitor_for: MonitorFor | None = None,
    mtimes: Mapping[str, int] | None = None,
    resume: bool = False,
) -> CopyResult:
    """Copy each ``(source, destination)`` pair: ``direction`` is ``get`` or ``put``.

    ``on_file`` is told of each verified file, ``monitor_for(source)`` gives
    a progress monitor per file.  With ``preserve`` the copies get their
    sources' modification times; ``mtimes`` may give the remote sources'
    times already known (a download asks ``stat`` for the others, before the
    data, so a file changed meanwhile shows a newer time than its copy).
    An empty destination means the source's name in the current folder;
    ``resume`` continues interrupted transfers (as ``reget``/``reput``).
    """
    if direction not in ("get", "put"):
        raise ValueError(f"direction must be get or put, not {direction!r}")
    result = CopyResult()
    touches: list[tuple[str, int]] = []
    for source, destination in pairs:
        monitor = monitor_for(source) if monitor_for else None
        if direction == "get":
            mtime = _remote_mtime(client, source, mtimes) if preserve else None
            done = client.get(source, destination or None, monitor, resume)
            if mtime is not None:
                try:
                    os.utime(done.local, (mtime, mtime))
                except OSError as exc:
                    result.mtime_failures.append(f"{done.local}: {exc.strerror}")
        else:
            mtime = _local_mtime(source) if preserve else None
            done = client.put(source, destination or None, monitor, resume)
            if mtime is not None:
                touches.append((done.remote, mtime))
        result.files.append(done)
        if on_file:
            on_file(done)
    if touches:
        _touch_all(client, touches, result)
    return result


def _remote_mtime(client: FileTransferClient, source: str, known: Mapping[str, int] | None) -> int:
    if known is not None and source in known:
        return known[source]
    return client.stat(source).mtime


def _local_mtime(source: str) -> int:
    try:
        return int(os.stat(source).st_mtime)
    except OSError as exc:
        raise LocalError(f"{exc.strerror}: {source}") from exc


def _touch_all(
    client: FileTransferClient, touches: list[tuple[str, int]], result: CopyResult
) -> None:
    """Set the uploaded files' times; an old server's ``405`` is reported once."""
    for (path, _), outcome in zip(touches, client.touch_many(touches), strict=True):
        if outcome is None:
            continue
        if isinstance(outcome, ProtocolError) and outcome.code == ErrorCode.UNKNOWN_COMMAND:
            result.mtime_failures.append("the server cannot set modification times (touch)")
            return
        result.mtime_failures.append(f"{path}: {outcome}")
