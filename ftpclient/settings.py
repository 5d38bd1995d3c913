"""Where to connect: ``user@host:port`` targets, bookmarks and the client's config file.

The optional file ``~/.config/ftpclient/config.yaml`` (or under
``$XDG_CONFIG_HOME``) gives defaults and named bookmarks::

    host: files.example.org      # defaults for every connection
    port: 9002
    user: alice
    bookmarks:
      work: {host: 10.1.2.3, port: 9002, user: alice}
      backup: {host: backup.example.org, user: robot, identity: ~/.ssh/id_backup}

``identity`` names the private key to log in with (``--identity``;
default ``id_ed25519`` beside this file, see :mod:`ftpclient.identity`).

Precedence: ``--host/--port/--user/--identity`` flags, then the TARGET argument (a
bookmark name or ``[user@]host[:port]``), then the file's defaults, then the
built-in defaults (127.0.0.1, port 9002).

A problem in the file does not stop the client: :func:`load_config` keeps
what is valid and lists each problem as ``FILE:LINE: text`` in
:attr:`ClientConfig.problems`; a broken bookmark is only an error when it is
used.  A bare word that is neither a bookmark nor a host gets
``no such bookmark or host: wrok (did you mean 'work'?)``.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from os import PathLike

    import yaml

__all__ = [
    "ConfigError",
    "Target",
    "config_path",
    "load_config",
    "resolve_target",
    "unknown_target",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9002
_BARE_WORD = re.compile(r"[A-Za-z0-9_-]+\Z")  # no dot, no @, no port: perhaps a bookmark name
_TARGET = re.compile(r"(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?\Z")


class ConfigError(Exception):
    """A problem with the config file or a target; shown as one line, exit status 2."""


class Target(NamedTuple):
    """A place to connect to; ``None`` fields are not decided yet."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    identity: str | None = None  # a private key file

    def over(self, base: Target) -> Target:
        """This target with its missing fields taken from ``base``."""
        return Target(
            self.host or base.host,
            self.port or base.port,
            self.user or base.user,
            self.identity or base.identity,
        )


class ClientConfig(NamedTuple):
    """The config file's defaults and bookmarks, and the problems found in it."""

    defaults: Target
    bookmarks: dict[str, Target]
    problems: Sequence[str] = ()  # "FILE:LINE: text", one each
    broken: Mapping[str, str] = {}  # bookmark name -> its problem (read only)


def config_path() -> str:
    """``$XDG_CONFIG_HOME/ftpclient/config.yaml``, or ``~/.config/ftpclient/config.yaml``.

    A string, not a ``pathlib.Path``: pathlib costs milliseconds at every start.
    """
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "ftpclient", "config.yaml")


def _port(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{where}: port must be a number from 1 to 65535")
    return value


def _target(data: Any, where: str) -> Target:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected host, port and user")
    unknown = sorted(set(data) - {"host", "port", "user", "identity"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    for key in ("host", "user", "identity"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{where}: {key} must be text")
    port = _port(data["port"], where) if "port" in data else None
    return Target(data.get("host"), port, data.get("user"), data.get("identity"))


def _key_lines(node: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """The line (from 1) of each key of the top mapping and of the ``bookmarks`` mapping."""
    import yaml

    lines: dict[tuple[str, ...], int] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key, value in node.value:
        name = str(key.value)
        lines[(name,)] = key.start_mark.line + 1
        if name == "bookmarks" and isinstance(value, yaml.MappingNode):
            for mark, _ in value.value:
                lines[(name, str(mark.value))] = mark.start_mark.line + 1
    return lines


def _read(path: str | PathLike[str]) -> tuple[Any, dict[tuple[str, ...], int]]:
    """The file's data and key lines; ``(None, {})`` if there is no file."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        return None, {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    import yaml  # here, not at the top: only a config file needs it, and it costs 10-15 ms

    try:
        return yaml.safe_load(text), _key_lines(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: {problem}") from None


def load_config(path: str | PathLike[str] | None = None) -> ClientConfig:
    """Read the config file; a missing file means no defaults and no bookmarks.

    Nothing here raises: an unreadable or malformed file, a bad default or a
    bad bookmark is listed in ``problems`` and left out, the rest is kept.
    """
    path = path or config_path()
    try:
        data, lines = _read(path)
    except ConfigError as exc:
        return ClientConfig(Target(), {}, [str(exc)])
    if data is None:
        return ClientConfig(Target(), {})
    if not isinstance(data, dict):
        return ClientConfig(
            Target(), {}, [f"{path}:1: expected a mapping (host, port, user, bookmarks)"]
        )

    def where(*keys: str) -> str:
        line = lines.get(keys) or lines.get(keys[:1])
        return f"{path}:{line}" if line else str(path)

    problems: list[str] = []
    marks = data.pop("bookmarks", None) or {}
    if not isinstance(marks, dict):
        problems.append(f"{where('bookmarks')}: bookmarks must map names to host, port and user")
        marks = {}
    bookmarks: dict[str, Target] = {}
    broken: dict[str, str] = {}
    for name, value in marks.items():
        try:
            bookmarks[str(name)] = _target(
                value, f"{where('bookmarks', str(name))}: bookmark {name}"
            )
        except ConfigError as exc:
            broken[str(name)] = str(exc)
            problems.append(str(exc))
    defaults = Target()
    for key, value in data.items():  # one by one: a bad port leaves the host usable
        try:
            defaults = _target({key: value}, where(str(key))).over(defaults)
        except ConfigError as exc:
            problems.append(str(exc))
    return ClientConfig(defaults, bookmarks, problems, broken)


def parse_target(text: str) -> Target:
    """``[user@]host[:port]`` (an IPv6 host in brackets) as a :class:`Target`."""
    match = _TARGET.match(text)
    if not match:
        raise ConfigError(f"not a bookmark or [user@]host[:port]: {text}")
    port = _port(int(match["port"]), text) if match["port"] else None
    return Target(match["host"].strip("[]"), port, match["user"])


def resolve_target(
    config: ClientConfig, target: str | None, flags: Target
) -> tuple[str, int, str | None, str | None]:
    """``(host, port, user, identity)`` from flags, the target (bookmark or address), defaults."""
    chosen = Target()
    if target is not None and target in config.broken:
        raise ConfigError(config.broken[target])
    if target:
        chosen = config.bookmarks.get(target) or parse_target(target)
        if target not in config.bookmarks and flags.host is None and _BARE_WORD.match(target):
            close = _closest(target, config.bookmarks)
            if close and not _is_known_host(target):
                raise ConfigError(unknown_target(config, target))
    merged = flags.over(chosen).over(config.defaults)
    merged = merged._replace(host=merged.host or DEFAULT_HOST, port=merged.port or DEFAULT_PORT)
    assert merged.host is not None and merged.port is not None
    return merged.host, merged.port, merged.user, merged.identity


def _closest(name: str, names: dict[str, Target]) -> str | None:
    import difflib  # here, not at the top: only a mistyped target needs it

    found = difflib.get_close_matches(name, list(names), n=1)
    return found[0] if found else None


def _is_known_host(name: str) -> bool:
    """Whether ``name`` is ``localhost`` or in ``/etc/hosts`` (no DNS query is made)."""
    if name == "localhost":
        return True
    try:
        with open("/etc/hosts", encoding="utf-8", errors="replace") as hosts:
            return any(name in line.split("#")[0].split()[1:] for line in hosts)
    except OSError:
        return False


def unknown_target(config: ClientConfig, target: str) -> str:
    """``no such bookmark or host: NAME``, with the closest bookmark name if there is one."""
    close = _closest(target, config.bookmarks)
    hint = f" (did you mean '{close}'?)" if close else ""
    return f"no such bookmark or host: {target}{hint}"
