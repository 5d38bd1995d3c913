"""``reput`` on S3 after the server restarted: the kept parts are not sent again (issue 14).

The real server (``ftpserver serve``, two worker processes, ``storage: s3``
on a throwaway SeaweedFS) and the real command-line client.  A client is
killed mid-upload; the server keeps the finished part and its BLAKE3 state
in the partial record (libblake3, docs/S3.md); the server is stopped and a
new one started (no process keeps anything in memory); ``reput`` then
continues at the kept offset, and the object in the bucket is the whole
file, verified, with nothing else left there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    HOST,
    STALLED_PUT,
    ServerProcess,
    digest_of,
    run_and_kill,
    run_command,
    wait_until,
)
from s3service import BUCKET, require

from ftpclient.client import FileTransferClient
from ftpproto.units import format_size
from ftpserver.storage import b3state

pytestmark = pytest.mark.timeout(240)
MIB = 1024 * 1024


def login(port: int) -> FileTransferClient:
    conn = FileTransferClient(HOST, port, timeout=60)
    conn.login(ALICE, ALICE_PASSWORD)
    return conn


def test_reput_after_a_restart_continues_from_the_kept_parts(
    s3_settings: dict[str, object], s3_server: Callable[[], ServerProcess], tmp_path: Path
) -> None:
    require(b3state.library(), "libblake3 is not there (python3 ftpserver/storage/b3build.py)")
    first = s3_server()
    old = b"the old version\n" * 100
    (tmp_path / "old.bin").write_bytes(old)
    data = os.urandom(12 * MIB)
    (tmp_path / "big.bin").write_bytes(data)
    with login(first.port) as conn:
        conn.put(str(tmp_path / "old.bin"), "big.bin")
    line = run_and_kill(
        tmp_path, STALLED_PUT, str(first.port), ALICE, ALICE_PASSWORD,
        str(tmp_path / "big.bin"), "big.bin", str(11 * MIB),
    )  # fmt: skip
    assert line == f"SENT {11 * MIB}"
    with login(first.port) as conn:
        assert wait_until(lambda: conn.partial("big.bin") >= 5 * MIB, timeout=30)
        kept = conn.partial("big.bin")
    assert 5 * MIB <= kept <= 11 * MIB, kept  # the finished parts (5 MiB or a little more each)
    first.proc.terminate()
    assert first.proc.wait(timeout=30) == 0

    second = s3_server()
    with login(second.port) as conn:
        assert conn.partial("big.bin") == kept
        assert conn.get("big.bin", str(tmp_path / "still-old.bin")).size == len(old)
    assert (tmp_path / "still-old.bin").read_bytes() == old, "the old object changed"
    done = run_command(
        ["-m", "ftpclient", "--host", HOST, "--port", str(second.port), "--user", ALICE,
         "-c", "reput big.bin"],
        cwd=tmp_path, password=ALICE_PASSWORD,
    )  # fmt: skip
    assert done.returncode == 0, done
    assert f"resumed at {format_size(kept)}" in done.stdout, done.stdout  # not sent again

    import boto3

    client = boto3.client("s3", endpoint_url=str(s3_settings["s3_endpoint"]))
    prefix = f"{s3_settings['s3_prefix']}/{ALICE}/"
    stored = client.get_object(Bucket=BUCKET, Key=f"{prefix}big.bin")["Body"].read()
    assert digest_of(stored) == digest_of(data)
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    assert [item["Key"][len(prefix) :] for item in listed] == ["big.bin"], "a record was left"
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []
    with login(second.port) as conn:
        assert conn.partial("big.bin") == 0
        assert conn.quota().used == len(data)
        assert conn.get("big.bin", str(tmp_path / "got.bin")).blake3 == digest_of(data)
