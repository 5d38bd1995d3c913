"""Server settings: built-in defaults, overridden by ``server.yaml``, overridden by flags.

:func:`load_settings` validates every key of the YAML file (unknown keys,
wrong types, out-of-range values) and reports problems as
:class:`~ftpserver.yamlfile.ConfigError` with file and line.  Relative paths
in the file are taken relative to the file's own folder.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftpserver import yamlfile
from ftpserver.yamlfile import ConfigError

__all__ = [
    "DEFAULT_CONFIG",
    "RESTART_ONLY",
    "ConfigError",
    "Settings",
    "keep_restart_only",
    "load_settings",
    "split_address",
]

DEFAULT_CONFIG = Path("config/server.yaml")

# Settings that need a restart: the listening socket, the paths, TLS, the
# administrator's services (control socket, pid file, metrics endpoint) and
# where the homes are stored.
RESTART_ONLY = (
    "host",
    "port",
    "listen_backlog",
    "users",
    "home",
    "tls_cert",
    "tls_key",
    "workers",
    "control_socket",
    "pid_file",
    "metrics_listen",
    "shared_state",
    "node_name",
    "node_lease",
    "storage",
    "s3_bucket",
    "s3_prefix",
    "s3_endpoint",
    "s3_region",
)


@dataclass(frozen=True)
class Settings:
    """Read-only server settings; see ``config/server.yaml`` for each one's meaning."""

    host: str = "127.0.0.1"
    port: int = 9002
    users: Path = Path("config/users.yaml")
    home: Path = Path("home")
    listen_backlog: int = 256
    idle_timeout: float = 300.0
    login_timeout: float = 30.0
    login_failure_delay: float = 1.0
    max_login_attempts: int = 3
    bcrypt_rounds: int = 12
    fsync_uploads: bool = True
    partial_upload_ttl: float = 86400.0
    max_sessions: int = 500
    max_sessions_per_ip: int = 50
    request_timeout: float = 30.0
    stall_timeout: float = 60.0
    min_transfer_rate: int = 1024
    ban_failures: int = 10
    ban_window: float = 600.0
    ban_time: float = 900.0
    password_checks: int = 2
    password_cache_ttl: float = 300.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: str = "INFO"
    log_file: Path | None = None
    audit_json: bool = False
    shutdown_grace: float = 30.0
    workers: int = 0
    control_socket: Path | None = Path("config/control.sock")
    pid_file: Path | None = None
    metrics_listen: str | None = None
    metrics_user_quota: int = 0
    shared_state: str | None = None
    node_name: str | None = None
    node_lease: float = 15.0
    proxy_protocol: bool = False
    proxy_trusted: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    storage: str = "local"
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_endpoint: str = ""
    s3_region: str = ""
    s3_part_size: int = 8 * 1024 * 1024
    pipeline_files: int = 64
    pipeline_bytes: int = 64 * 1024 * 1024

    def replace(self, **changes: Any) -> Settings:
        """A copy with the given fields changed; ``None`` values (flags not given) are ignored.

        A reload uses :func:`keep_restart_only` instead.
        """
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def keep_restart_only(running: Settings, fresh: Settings) -> tuple[Settings, list[str]]:
    """``fresh`` (reloaded) with the restart-only settings of ``running``, ``None`` included.

    Also returns the names of those that ``fresh`` would have changed.  (Not
    :meth:`Settings.replace`, which skips ``None``: a server started without
    TLS would take ``tls_cert`` from a file that gained one.)
    """
    kept = {key: getattr(running, key) for key in RESTART_ONLY}
    changed = [key for key, value in kept.items() if getattr(fresh, key) != value]
    return dataclasses.replace(fresh, **kept), changed


class _OptionalPath:
    """Marks a setting that is a path or null."""


class _OptionalAddress:
    """Marks a setting that is ``HOST:PORT`` or null."""


class _OptionalString:
    """Marks a setting that is a non-empty string or null."""


class _Networks:
    """Marks a setting that is a list of addresses or networks (``10.0.0.0/8``)."""


# key -> (type, lowest, highest); None means no bound.
_LIMITS: dict[str, tuple[type, float | None, float | None]] = {
    "host": (str, None, None),
    "port": (int, 0, 65535),
    "users": (Path, None, None),
    "home": (Path, None, None),
    "listen_backlog": (int, 1, 65535),
    "idle_timeout": (float, 1, None),
    "login_timeout": (float, 1, None),
    "login_failure_delay": (float, 0, 60),
    "max_login_attempts": (int, 1, 100),
    "bcrypt_rounds": (int, 4, 31),
    "fsync_uploads": (bool, None, None),
    "partial_upload_ttl": (float, 1, None),
    "max_sessions": (int, 0, 1_000_000),
    "max_sessions_per_ip": (int, 0, 1_000_000),
    "request_timeout": (float, 1, None),
    "stall_timeout": (float, 1, None),
    "min_transfer_rate": (int, 0, None),
    "ban_failures": (int, 0, 1000),
    "ban_window": (float, 1, None),
    "ban_time": (float, 0, None),
    "password_checks": (int, 1, 1024),
    "password_cache_ttl": (float, 0, 86400),
    "tls_cert": (_OptionalPath, None, None),
    "tls_key": (_OptionalPath, None, None),
    "log_level": (str, None, None),
    "log_file": (_OptionalPath, None, None),
    "audit_json": (bool, None, None),
    "shutdown_grace": (float, 0, 3600),
    "workers": (int, 0, 256),
    "control_socket": (_OptionalPath, None, None),
    "pid_file": (_OptionalPath, None, None),
    "metrics_listen": (_OptionalAddress, None, None),
    "metrics_user_quota": (int, 0, 1000),
    "shared_state": (_OptionalString, None, None),
    "node_name": (_OptionalString, None, None),
    "node_lease": (float, 3, 3600),
    "proxy_protocol": (bool, None, None),
    "proxy_trusted": (_Networks, None, None),
    "storage": (str, None, None),
    "s3_bucket": (str, None, None),
    "s3_prefix": (str, None, None),
    "s3_endpoint": (str, None, None),
    "s3_region": (str, None, None),
    "s3_part_size": (int, 5 * 1024 * 1024, 5 * 1024 * 1024 * 1024),
    "pipeline_files": (int, 1, 1024),
    "pipeline_bytes": (int, 1, None),
}
_STORAGES = ("local", "s3")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def load_settings(path: Path, base: Settings | None = None) -> Settings:
    """Read ``path`` over ``base`` (the defaults).

    Every problem is collected; if there are any, a ConfigError is raised
    whose ``problems`` lists them all (the first one's line comes first).
    """
    doc = yamlfile.load(path)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise doc.error((), "expected a mapping of setting: value")
    changes: dict[str, Any] = {}
    problems: list[ConfigError] = []
    for key, value in data.items():
        if key not in _LIMITS:
            hint = yamlfile.closest(str(key), list(_LIMITS))
            hint = hint or f" (known: {', '.join(sorted(_LIMITS))})"
            problems.append(doc.error((str(key),), f"unknown setting {key!r}{hint}"))
            continue
        try:
            changes[key] = _check(doc, key, value)
        except ConfigError as exc:
            problems.append(exc)
    if not problems and bool(changes.get("tls_cert")) != bool(changes.get("tls_key")):
        problems.append(doc.error(("tls_cert",), "tls_cert and tls_key go together"))
    problems += _storage_problems(doc, {**dataclasses.asdict(base or Settings()), **changes})
    for key in ("tls_cert", "tls_key"):
        if changes.get(key) is not None and not changes[key].is_file():
            problems.append(doc.error((key,), f"{key}: no such file: {changes[key]}"))
    yamlfile.raise_all(problems)
    settings = (base or Settings()).replace(**changes)
    if "control_socket" in data and data["control_socket"] is None:  # null turns it off
        settings = dataclasses.replace(settings, control_socket=None)
    return settings


def _check(doc: yamlfile.Document, key: str, value: Any) -> Any:
    kind, low, high = _LIMITS[key]
    where = (key,)
    if kind is _Networks:
        return _networks(doc, key, value)
    if kind is _OptionalString:
        if value is None:
            return None
        kind = str
    if kind is _OptionalPath or kind is _OptionalAddress:
        if value is None:
            return None
        if kind is _OptionalAddress:
            if not isinstance(value, str) or split_address(value) is None:
                raise doc.error(where, f"{key}: expected HOST:PORT, e.g. 127.0.0.1:9102")
            return value
        kind = Path
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise doc.error(where, f"{key}: expected a path")
        resolved = Path(value)
        return (
            resolved
            if resolved.is_absolute()
            else Path(os.path.normpath(doc.path.parent / resolved))
        )
    if kind is bool:
        if not isinstance(value, bool):
            raise doc.error(where, f"{key}: expected true or false")
        return value
    if kind is str:
        if not isinstance(value, str) or not value:
            raise doc.error(where, f"{key}: expected a non-empty string")
        if key == "shared_state" and not value.startswith(("postgresql://", "postgres://")):
            raise doc.error(where, "shared_state: expected a postgresql:// URL or null")
        if key == "log_level":
            if value.upper() not in _LOG_LEVELS:
                raise doc.error(where, f"log_level: expected one of {', '.join(_LOG_LEVELS)}")
            return value.upper()
        if key == "storage" and value not in _STORAGES:
            raise doc.error(where, f"storage: expected one of {', '.join(_STORAGES)}")
        return value
    numeric = (int, float) if kind is float else (int,)
    expected = "a number" if kind is float else "an integer"
    if isinstance(value, bool) or not isinstance(value, numeric):
        raise doc.error(where, f"{key}: expected {expected}")
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > 1e15:
        raise doc.error(where, f"{key}: expected {expected} of a sensible size")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"from {low}" + (f" to {high}" if high is not None else " up")
        raise doc.error(where, f"{key}: {value} is out of range ({bounds})")
    return kind(value)


def split_address(text: str) -> tuple[str, int] | None:
    """``"HOST:PORT"`` (``"[::1]:PORT"`` for IPv6) as ``(host, port)``; None if malformed."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or int(port) > 65535:
        return None
    return host, int(port)


def _networks(doc: yamlfile.Document, key: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    networks: list[str] = []
    for item in items:
        try:
            networks.append(str(ipaddress.ip_network(str(item), strict=False)))
        except ValueError:
            raise doc.error((key,), f"{key}: not an address or network: {item!r}") from None
    if not networks or not all(isinstance(item, str) for item in items):
        raise doc.error((key,), f"{key}: expected a list of addresses or networks")
    return tuple(networks)


def _storage_problems(doc: yamlfile.Document, merged: dict[str, Any]) -> list[ConfigError]:
    """``s3_bucket`` goes with ``storage: s3``; the prefix is a key prefix, not a path."""
    problems = []
    if merged.get("storage") == "s3" and not merged.get("s3_bucket"):
        problems.append(doc.error(("storage",), "storage: s3 needs s3_bucket"))
    prefix = str(merged.get("s3_prefix") or "")
    if prefix and any(part in ("", ".", "..") for part in prefix.strip("/").split("/")):
        problems.append(doc.error(("s3_prefix",), "s3_prefix: no empty, '.' or '..' parts"))
    return problems


def log_level(settings: Settings) -> int:
    """The ``logging`` level number for the configured level name."""
    return int(logging.getLevelName(settings.log_level))
