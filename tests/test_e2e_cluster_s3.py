"""Two cluster nodes with ``storage: s3``: a put through one, a get and a resume through the other.

Real ``ftpserver serve`` processes (``tests/cluster_nodes.py``) on a
throwaway PostgreSQL (``tests/services.py``) and SeaweedFS
(``tests/s3service.py``).  In a cluster a multipart upload is staged at a
private key, so an upload interrupted on one node is continued by the other
from its kept parts, and the whole file is verified by reading the staged
object back before it is copied into place (docs/S3.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_nodes import Nodes
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    HOST,
    across_two_servers,
    digest_of,
    write_users_file,
)
from s3service import BUCKET
from services import Postgres, pg_url, postgres  # noqa: F401

from ftpclient.client import FileTransferClient

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]
MIB = 1024 * 1024


@pytest.fixture
def nodes(tmp_path: Path, pg_url: str, s3_settings: dict[str, object]) -> Iterator[Nodes]:  # noqa: F811
    users = write_users_file(
        tmp_path / "users.yaml", tmp_path / "homes", {ALICE: (ALICE_PASSWORD, {})}
    )
    base = {
        "host": HOST,
        "users": str(users),
        "home": str(tmp_path / "homes"),
        "workers": 1,
        "bcrypt_rounds": 4,
        "shared_state": pg_url,
        **s3_settings,
    }
    made = Nodes(tmp_path, base)
    try:
        yield made
    finally:
        made.stop_all()


def login(port: int) -> FileTransferClient:
    conn = FileTransferClient(HOST, port, timeout=60)
    conn.login(ALICE, ALICE_PASSWORD)
    return conn


def test_put_get_and_resume_across_nodes(
    nodes: Nodes, tmp_path: Path, s3_settings: dict[str, object]
) -> None:
    one, two = nodes.start("one"), nodes.start("two")
    data = os.urandom(12 * MIB)  # over two parts: a multipart upload that keeps parts
    with login(one.port) as first, login(two.port) as second:
        source = across_two_servers(tmp_path, first, second, one.port, data)
        kept = second.partial("g.bin")
        assert kept <= 7 * MIB
        assert second.put(str(source), "g.bin", resume=True).offset == kept
        assert second.get("g.bin", str(tmp_path / "g.bin")).blake3 == digest_of(data)
        assert (tmp_path / "g.bin").read_bytes() == data
        assert first.partial("g.bin") == 0
        assert first.quota().used == 2 * len(data)  # the shared ledger: both nodes agree
    import boto3

    client = boto3.client("s3", endpoint_url=str(s3_settings["s3_endpoint"]))
    prefix = f"{s3_settings['s3_prefix']}/{ALICE}/"
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    assert sorted(item["Key"][len(prefix) :] for item in listed) == ["f.bin", "g.bin"]
    assert client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []
