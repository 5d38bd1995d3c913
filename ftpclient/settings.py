"""Where to connect: ``user@host:port`` targets, bookmarks and the client's config file.

The optional file ``~/.config/ftpclient/config.yaml`` (or under
``$XDG_CONFIG_HOME``) gives defaults and named bookmarks::

    host: files.example.org      # defaults for every connection
    port: 9002
    user: alice
    bookmarks:
      work: {host: 10.1.2.3, port: 9002, user: alice}

Precedence: ``--host/--port/--user`` flags, then the TARGET argument (a
bookmark name or ``[user@]host[:port]``), then the file's defaults, then the
built-in defaults (127.0.0.1, port 9002).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "Target", "config_path", "load_config", "resolve_target"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9002
_TARGET = re.compile(r"(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?\Z")


class ConfigError(Exception):
    """A problem with the config file or a target; shown as one line, exit status 2."""


@dataclass(frozen=True)
class Target:
    """A place to connect to; ``None`` fields are not decided yet."""

    host: str | None = None
    port: int | None = None
    user: str | None = None

    def over(self, base: Target) -> Target:
        """This target with its missing fields taken from ``base``."""
        return Target(self.host or base.host, self.port or base.port, self.user or base.user)


@dataclass(frozen=True)
class ClientConfig:
    """The config file's defaults and bookmarks."""

    defaults: Target
    bookmarks: dict[str, Target]


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/ftpclient/config.yaml``, or ``~/.config/ftpclient/config.yaml``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "ftpclient" / "config.yaml"


def _port(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{where}: port must be a number from 1 to 65535")
    return value


def _target(data: Any, where: str) -> Target:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected host, port and user")
    unknown = sorted(set(data) - {"host", "port", "user"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    for key in ("host", "user"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{where}: {key} must be text")
    port = _port(data["port"], where) if "port" in data else None
    return Target(data.get("host"), port, data.get("user"))


def _unreadable(path: Path, exc: Exception) -> ConfigError:
    problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ConfigError(f"{path}: {problem}")


def load_config(path: Path | None = None) -> ClientConfig:
    """Read the config file; a missing file means no defaults and no bookmarks."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ClientConfig(Target(), {})
    except (OSError, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None
    import yaml  # here, not at the top: only a config file needs it, and it costs 15 ms

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _unreadable(path, exc) from None
    if data is None:
        return ClientConfig(Target(), {})
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping")
    marks = data.pop("bookmarks", None) or {}
    if not isinstance(marks, dict):
        raise ConfigError(f"{path}: bookmarks must map names to host, port and user")
    bookmarks = {
        str(name): _target(value, f"{path}: bookmark {name}") for name, value in marks.items()
    }
    return ClientConfig(_target(data, str(path)), bookmarks)


def parse_target(text: str) -> Target:
    """``[user@]host[:port]`` (an IPv6 host in brackets) as a :class:`Target`."""
    match = _TARGET.match(text)
    if not match:
        raise ConfigError(f"not a bookmark or [user@]host[:port]: {text}")
    port = _port(int(match["port"]), text) if match["port"] else None
    return Target(match["host"].strip("[]"), port, match["user"])


def resolve_target(
    config: ClientConfig, target: str | None, flags: Target
) -> tuple[str, int, str | None]:
    """``(host, port, user)`` from flags, the target (bookmark or address) and defaults."""
    chosen = Target()
    if target:
        chosen = config.bookmarks.get(target) or parse_target(target)
    merged = flags.over(chosen).over(config.defaults)
    merged = replace(merged, host=merged.host or DEFAULT_HOST, port=merged.port or DEFAULT_PORT)
    assert merged.host is not None and merged.port is not None
    return merged.host, merged.port, merged.user
