"""The administrator's commands to a running server: ``status``, ``sessions``, ``kick``, ...

Each one sends one request to the server's control socket
(:mod:`ftpserver.control`): the ``control_socket`` of the settings file
(``--config``, or ``config/server.yaml``), or the path given with
``--socket``.  :func:`register` adds the subcommands to the ``ftpserver``
parser; :func:`run` runs one and prints its answer.  Exit status: 0 done,
1 when the server could not be reached or refused (one line on stderr).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ftpserver.config import DEFAULT_CONFIG, ConfigError, Settings
from ftpserver.control import ControlError, call

__all__ = ["COMMANDS", "register", "run"]

COMMANDS = ("status", "sessions", "kick", "bans", "unban", "reload")
Row = dict[str, Any]


def register(sub: Any) -> None:
    """Add the admin subcommands to the ``ftpserver`` subparsers ``sub``."""

    def add(name: str, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", type=Path, help="settings file naming control_socket")
        p.add_argument("--socket", type=Path, help="the control socket (default: control_socket)")
        p.set_defaults(users=None, home=None)
        return p

    add("status", "uptime, workers (nodes in a cluster), sessions, transfers and bans")
    add("sessions", "one line per session of the running server").add_argument(
        "--json", action="store_true", help="print a JSON list instead"
    )
    kick = add("kick", "end sessions now; an upload's bytes are kept for reput")
    target = kick.add_mutually_exclusive_group(required=True)
    target.add_argument("session", nargs="?", metavar="SESSION", help="a session id (see sessions)")
    target.add_argument("--user", metavar="NAME", help="every session of this user")
    target.add_argument("--ip", metavar="ADDR", help="every session from this address")
    add("bans", "client addresses banned now").add_argument(
        "--json", action="store_true", help="print a JSON list instead"
    )
    add("unban", "lift the ban on an address").add_argument("ip", metavar="ADDR")
    add("reload", "reload the settings and users (as SIGHUP) and say what changed")


def run(args: argparse.Namespace, settings: Callable[[argparse.Namespace], Settings]) -> int:
    """Run admin command ``args.command``; ``settings`` reads the settings file."""
    try:
        path = args.socket or _socket_path(args, settings)
        if path is None:
            raise ControlError("control_socket is null in the settings: the server has none")
        printed = _COMMANDS[args.command](path.absolute(), args)
    except ControlError as exc:
        print(f"ftpserver: error: {exc}", file=sys.stderr)
        return 1
    for line in printed:
        print(line)
    return 0


def _socket_path(
    args: argparse.Namespace, settings: Callable[[argparse.Namespace], Settings]
) -> Path | None:
    """The settings' ``control_socket``; from a broken settings file, its best reading.

    ``reload`` must reach the server even when the file now has a mistake
    (the server then says so and keeps the old settings).
    """
    try:
        return settings(args).control_socket
    except ConfigError:
        pass
    config: Path = args.config or DEFAULT_CONFIG
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        data = None
    if not isinstance(data, dict) or "control_socket" not in data:
        return Settings().control_socket
    value = data["control_socket"]
    return None if value is None else config.parent / str(value)


def _status(path: Path, args: argparse.Namespace) -> list[str]:
    state = call(path, "status")
    lines = [f"server pid {state['pid']}, up {_duration(state['uptime'])}"]
    if state["workers"]:
        pids = ", ".join(f"{w['worker']}: {w['pid']}" for w in state["workers"])
        lines.append(f"workers: {len(state['workers'])} ({pids})")
    if state["silent_workers"]:
        lines.append(f"not answering: workers {', '.join(map(str, state['silent_workers']))}")
    lines.append(f"sessions: {state['sessions']}")
    lines.append(f"transfers: {len(state['transfers'])}")
    lines += [f"  {row['id']} {row['user']} {_transfer(row)}" for row in state["transfers"]]
    if state.get("shared_state"):
        lines.append(f"bans: unknown ({state['shared_state']})")
    else:
        lines.append(f"bans: {state['bans']}")
    nodes: list[Row] = state.get("nodes", [])
    if nodes:
        lines.append(f"nodes: {len(nodes)}")
        for node in nodes:
            age = f"{node['lease_age']:.1f}s" + ("" if node["alive"] else " (expired)")
            lines.append(
                f"  {node['name']} {node['address']} lease {age} ago,"
                f" {node['sessions']} sessions, {node['transfers']} transfers"
            )
    return lines


def _sessions(path: Path, args: argparse.Namespace) -> list[str]:
    answer = call(path, "sessions")
    rows: list[Row] = answer["sessions"]
    _warn_silent(answer["silent_workers"], "their sessions are not listed")
    if args.json:
        return [json.dumps(rows, indent=2)]
    if not rows:
        return ["no sessions"]
    table = [("ID", "USER", "ADDRESS", "SINCE", "IDLE", "TRANSFER")]
    for row in sorted(rows, key=lambda r: r["since"]):
        since = datetime.datetime.fromtimestamp(row["since"]).strftime("%Y-%m-%d %H:%M:%S")
        idle = _duration(row["idle"]) if not row["command"] else "busy"
        user = row["user"] or "(not logged in)"
        table.append((row["id"], user, row["address"], since, idle, _transfer(row)))
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    lines = []
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line[:5], widths, strict=True)]
        lines.append("  ".join([*cells, line[5]]))
    return lines


def _warn_silent(workers: list[int], consequence: str) -> None:
    if workers:
        names = ", ".join(map(str, workers))
        print(f"ftpserver: warning: workers {names} did not answer; {consequence}", file=sys.stderr)


def _kick(path: Path, args: argparse.Namespace) -> list[str]:
    answer = call(path, "kick", session=args.session, user=args.user, ip=args.ip)
    _warn_silent(answer["silent_workers"], "their sessions were not asked to end")
    kicked = answer["kicked"]
    if not kicked:
        raise ControlError("no such session")
    return [f"ended session {session}" for session in kicked]


def _bans(path: Path, args: argparse.Namespace) -> list[str]:
    rows: list[Row] = call(path, "bans")
    if args.json:
        return [json.dumps(rows, indent=2)]
    if not rows:
        return ["no bans"]
    return [f"{row['ip']}  {_duration(row['seconds_left'])} left" for row in rows]


def _unban(path: Path, args: argparse.Namespace) -> list[str]:
    return [f"unbanned {call(path, 'unban', ip=args.ip)['unbanned']}"]


def _reload(path: Path, args: argparse.Namespace) -> list[str]:
    outcome = call(path, "reload")
    if not outcome["applied"]:
        problems = "\n".join(f"  {line}" for line in outcome["lines"])
        raise ControlError(f"reload refused, the old configuration stays in force:\n{problems}")
    return ["reloaded", *(f"  {line}" for line in outcome["lines"] or ["nothing changed"])]


_COMMANDS: dict[str, Callable[[Path, argparse.Namespace], list[str]]] = {
    "status": _status,
    "sessions": _sessions,
    "kick": _kick,
    "bans": _bans,
    "unban": _unban,
    "reload": _reload,
}


def _transfer(row: Row) -> str:
    transfer = row.get("transfer")
    if not transfer:
        return "-"
    verb = "put" if transfer["direction"] == "upload" else "get"
    return f"{verb} {transfer['path']} {_size(transfer['bytes'])} at {_size(transfer['rate'])}/s"


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"  # not reached


def _duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
