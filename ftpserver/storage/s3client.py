"""The S3 connection: one boto3 client per server, and what its errors mean to a session.

Only :mod:`ftpserver.storage.s3` and its helpers import this module, and only
when ``storage: s3`` is configured, so the default server never imports boto3
(install it with the ``s3`` extra).  Credentials come the standard boto3 way
(environment, shared credentials file, instance role) and are never read
from ``server.yaml`` nor logged (the SDK's own loggers are held at WARNING).

Throttling, 5xx answers and connection errors are retried by botocore with
exponential backoff (its ``standard`` retry mode); every request the backend
sends is safe to retry (a part upload, a conditional copy, a complete).
What still fails becomes a clear error reply: :func:`store_error` maps a
botocore exception to ``OSError`` (missing key, access denied) or an
``IO_ERROR`` :class:`~ftpproto.errors.ProtocolError` naming the store's
complaint.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.config import Settings

__all__ = [
    "StoreError",
    "check_bucket",
    "error_code",
    "make_client",
    "shared_client",
    "store_error",
]

StoreError = (ClientError, BotoCoreError)
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}
_DENIED = {"403", "AccessDenied", "Forbidden"}
_clients: dict[tuple[int, str, str], Any] = {}

# The SDK's debug logs carry request headers (the access key id, signatures):
# they stay out of the server's log even at log_level DEBUG.
for _name in ("boto3", "botocore", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)
_clients_lock = threading.Lock()


def make_client(settings: Settings, attempts: int = 5) -> Any:
    """A boto3 S3 client for ``settings`` (retries with backoff, bounded timeouts)."""
    config = Config(
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=256,  # sessions x parts in flight share one client per process
        s3={"addressing_style": "path" if settings.s3_endpoint else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=settings.s3_endpoint or None,
        region_name=settings.s3_region or None,
        config=config,
    )


def shared_client(settings: Settings) -> Any:
    """The client for ``settings``' endpoint and region, made once per process (thread-safe).

    Keyed by the process id too: a worker forked after the main process made
    one gets its own (a client's connection pool must not cross a fork).
    """
    key = (os.getpid(), settings.s3_endpoint, settings.s3_region)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make_client(settings)
        return client


def error_code(exc: BaseException) -> str:
    """The store's error code of a ClientError (the HTTP status when it gave none)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return str(
            error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        )
    return ""


def store_error(exc: BaseException, subject: str) -> Exception:
    """What a failed request means to the client: an OSError or an IO_ERROR reply."""
    code = error_code(exc)
    if code in _MISSING:
        return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), subject)
    if code in _DENIED:
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), subject)
    if code in ("PreconditionFailed", "412"):
        return ProtocolError(ErrorCode.EXISTS, f"already exists: {subject}")
    if isinstance(exc, (EndpointConnectionError, BotoConnectionError)):
        return ProtocolError(ErrorCode.IO_ERROR, f"object store unreachable: {subject}")
    return ProtocolError(ErrorCode.IO_ERROR, f"object store error ({code or exc}): {subject}")


def check_bucket(settings: Settings) -> str | None:
    """Reach the bucket; None if it answers, else one line saying what is wrong."""
    where = settings.s3_endpoint or "AWS"
    try:
        client = make_client(settings, attempts=2)
        client.head_bucket(Bucket=settings.s3_bucket)
    except NoCredentialsError:
        return "s3: no credentials found (set them the standard boto3 way)"
    except (EndpointConnectionError, BotoConnectionError):
        return f"s3: endpoint unreachable: {where}"
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return f"s3: no such bucket: {settings.s3_bucket}"
        if code in _DENIED or code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return f"s3: credentials refused for bucket {settings.s3_bucket} ({code})"
        return f"s3: bucket {settings.s3_bucket} answered {code}"
    except BotoCoreError as exc:
        return f"s3: {exc}"
    return None
