"""A tree up and down through pipelined transfers with ``storage: s3`` (issues 14 and 15).

On S3 a commit is a request to the store, so a pipelined session commits on
its helper thread (``ftpserver/finishing.py``) while it reads the next
file; on a local disk it commits on its own thread.  Through the real
server (two workers, a throwaway SeaweedFS) and the real command-line
client: ``put -r`` stores every file as one object with its bytes, one
``--json`` event per file, nothing else left in the bucket; ``get -r``
brings the same bytes back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ALICE, ALICE_PASSWORD, HOST, ServerProcess, run_command
from s3service import BUCKET

pytestmark = pytest.mark.timeout(240)
MIB = 1024 * 1024


def _tree(root: Path) -> dict[str, bytes]:
    """40 small files in three folders, an empty one, and one of three parts (multipart)."""
    files = {
        f"{folder}/f{n:02d}.bin": os.urandom(n * 997) for n in range(40) for folder in "ab"[n % 2]
    }
    files["c/deep/big.bin"] = os.urandom(12 * MIB)  # over two 5 MiB parts: a multipart upload
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def test_put_r_and_get_r_on_s3(
    s3_settings: dict[str, object], s3_server: Callable[[], ServerProcess], tmp_path: Path
) -> None:
    server = s3_server()
    files = _tree(tmp_path / "tree")

    def client(command: str) -> list[dict[str, object]]:
        done = run_command(
            ["-m", "ftpclient", "--host", HOST, "--port", str(server.port), "--user", ALICE,
             "--json", "-c", command],
            cwd=tmp_path, password=ALICE_PASSWORD,
        )  # fmt: skip
        assert done.returncode == 0, done
        return [json.loads(line) for line in done.stdout.splitlines()]

    events = client(f"put -r {tmp_path / 'tree'} up")
    put = sorted(str(e["remote"]).lstrip("/") for e in events if e["event"] == "put")
    assert put == sorted(f"up/{name}" for name in files), events

    import boto3

    s3 = boto3.client("s3", endpoint_url=str(s3_settings["s3_endpoint"]))
    prefix = f"{s3_settings['s3_prefix']}/{ALICE}/up/"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix, MaxKeys=1000).get("Contents", [])
    keys = [item["Key"][len(prefix) :] for item in listed]
    assert sorted(k for k in keys if k and not k.endswith("/")) == sorted(files)  # and folders
    for name in ("a/f00.bin", "b/f39.bin", "c/deep/big.bin"):
        stored = s3.get_object(Bucket=BUCKET, Key=prefix + name)["Body"].read()
        assert stored == files[name], name
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []

    client(f"get -r up {tmp_path / 'back'}")
    for name, data in files.items():
        assert (tmp_path / "back" / name).read_bytes() == data, name
