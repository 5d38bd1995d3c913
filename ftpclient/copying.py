"""Copying a list of files: the one function every file transfer of the shell goes through.

``get``/``put`` (one file or a pattern's), ``get -r``/``put -r``,
``mget``/``mput`` and ``mirror`` all copy with :func:`copy_files`.

:func:`copy_files` takes ``(source, destination)`` pairs for one direction
and moves them pipelined on the one connection
(:meth:`~ftpclient.client.FileTransferClient.get_many` / ``put_many``: many
files in flight, each verified by its BLAKE3 digest).  Where pipelining
cannot serve, the files go one at a time through the single-file transfers
(:meth:`~ftpclient.client.FileTransferClient.get` / ``put``): to resume
(``reget``/``reput``), for a single file or none (no round trip to ask
the window), and with a server without pipelining (``get_many`` falls back by
itself).

Without ``on_failure`` the first failed file stops the copy and is raised,
naming the file; every file before it is complete and what was in flight
is finished first (an upload after it is withdrawn, not stored).  With
``on_failure`` each failed file is handed to it and the others still go.

With ``preserve`` the copy gets the source's modification time: a download
sets it on the local file once it is verified, an upload asks the server
with ``touch`` after the data (pipelined, many requests in flight).  A
server too old to know ``touch`` is told once and the files stay copied.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING

from ftpclient.client import FileTransferClient, Monitor, TransferResult
from ftpclient.partfiles import local_target
from ftpproto.errors import ErrorCode, ProtocolError, RemoteError

if TYPE_CHECKING:  # imported when files move: an unchanged mirror needs none of it
    from ftpclient.pipelined import FileOutcome

__all__ = ["CopyResult", "copy_files"]

Pair = tuple[str, str]  # (source, destination)
OnFile = Callable[[TransferResult], None]
OnFailure = Callable[["FileOutcome"], None]
MonitorFor = Callable[[str], Monitor | None]


class CopyResult:
    """What :func:`copy_files` moved, what failed, and where a modification time was not kept."""

    __slots__ = ("failures", "files", "mtime_failures")

    def __init__(self) -> None:
        self.files: list[TransferResult] = []
        self.failures: list[FileOutcome] = []  # with ``on_failure`` only
        self.mtime_failures: list[str] = []  # "PATH: why"

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
    on_failure: OnFailure | None = None,
) -> CopyResult:
    """Copy each ``(source, destination)`` pair: ``direction`` is ``get`` or ``put``.

    ``on_file`` is told of each verified file, in the order given;
    ``monitor_for(source)`` gives a progress monitor per file.  With
    ``preserve`` the copies get their sources' modification times;
    ``mtimes`` may give the remote sources' times already known (a download
    asks ``stat`` for the others, before the data, so a file changed
    meanwhile shows a newer time than its copy).  An empty destination
    means the source's name in the current folder, a local folder the
    source's name in it; ``resume`` continues interrupted transfers (as
    ``reget``/``reput``).  ``on_failure``: see the module's docstring.
    """
    if direction not in ("get", "put"):
        raise ValueError(f"direction must be get or put, not {direction!r}")
    getting = direction == "get"
    if getting:  # (remote, local), as the client's transfers take them
        ends = [(source, local_target(destination, source)) for source, destination in pairs]
    else:
        ends = [(destination or _basename(source), source) for source, destination in pairs]
    times = _source_times(client, getting, ends, mtimes) if preserve else {}
    result = CopyResult()
    touches: list[tuple[str, int]] = []
    outcomes = _outcomes(client, getting, ends, monitor_for, resume, on_failure is None)
    try:
        for outcome in outcomes:
            if outcome.error is not None:
                if on_failure is None:
                    raise outcome.error
                result.failures.append(outcome)
                on_failure(outcome)
                continue
            done = outcome.result
            assert done is not None
            mtime = times.get(done.remote if getting else done.local)
            if isinstance(mtime, ProtocolError):
                result.mtime_failures.append(f"{done.remote}: {mtime.text}")
            elif mtime is not None and getting:
                try:
                    os.utime(done.local, (mtime, mtime))
                except OSError as exc:
                    result.mtime_failures.append(f"{done.local}: {exc.strerror}")
            elif mtime is not None:
                touches.append((done.remote, mtime))
            result.files.append(done)
            if on_file:
                on_file(done)
    finally:
        outcomes.close()  # what is still in flight is finished before an error goes up
    if touches:
        _touch_all(client, touches, result)
    return result


def _basename(local: str) -> str:
    return os.path.basename(local.rstrip(os.sep))


def _outcomes(
    client: FileTransferClient,
    getting: bool,
    ends: list[tuple[str, str]],
    monitor_for: MonitorFor | None,
    resume: bool,
    stop_at_failure: bool,
) -> Generator[FileOutcome, None, None]:
    """One outcome per ``(remote, local)`` pair, in order: pipelined unless it cannot serve.

    Closing it closes the transfer under way (what is in flight is finished).
    """
    if not ends:
        return
    from ftpclient.pipelined import one_by_one  # here, not at the top: see FileOutcome's import

    if getting:
        if resume or len(ends) <= 1:
            yield from one_by_one(
                ends, lambda r, lo, m: client.get(r, lo, m, resume), monitor_for, lambda r, _: r
            )
        else:
            yield from client.get_many(ends, monitor_for)
    elif resume or len(ends) <= 1:
        yield from one_by_one(
            ends, lambda r, lo, m: client.put(lo, r, m, resume), monitor_for, lambda _, lo: lo
        )
    else:
        yield from client.put_many(ends, monitor_for, stop_at_failure)


def _source_times(
    client: FileTransferClient,
    getting: bool,
    ends: list[tuple[str, str]],
    known: Mapping[str, int] | None,
) -> dict[str, int | ProtocolError | None]:
    """Each source's modification time, read before its data moves.

    A source that cannot be looked at has None (its transfer fails for the
    same reason, in its turn) or, if the server refused only the ``stat``,
    that error (reported if the file itself still came).
    """
    times: dict[str, int | ProtocolError | None] = {}
    for remote, local in ends:
        if not getting:
            try:
                times[local] = int(os.stat(local).st_mtime)
            except OSError:
                times[local] = None
        elif known is not None and remote in known:
            times[remote] = known[remote]
        else:
            try:
                times[remote] = client.stat(remote).mtime
            except RemoteError as exc:
                times[remote] = exc
    return times


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
