"""The results: a table of medians with min and max, the targets of issue 6, and JSON.

Cells read ``median [min-max]`` over the repetitions.  The targets are ratios
of medians from the same run, each marked PASS or FAIL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bench.measure import MIB, Summary, summarize
from bench.workloads import METRICS

__all__ = ["COLUMNS", "Target", "missing_lines", "render_table", "summaries", "targets"]

COLUMNS = ("ours", "ours-tls", "ours-fsync", "pyftpdlib", "plain", "ours-s3", "boto3")
S3_METRICS = ("big_down", "big_up", "multi_down", "multi_up")
S3_SPEED = 0.8  # issue 14: ours with storage: s3 >= 0.8 x boto3 alone on the same store
MEMORY_LIMIT_MB = 100  # issue 6: "under 100 MB resident" (decimal megabytes)
CROWD_LIMIT_MIB = 500  # issue 19: summed RSS with 10,000 idle sessions
CROWD_SPEED = 0.9  # issue 19: the active clients "as fast" beside the crowd (noise allowed)
LOGIN_LIMIT_MS = 5.0
START_LIMIT_MS = 50.0  # issue 19: ftpclient -c pwd against a local server

Values = dict[str, dict[str, list[float]]]  # metric -> kind -> one value per repetition
Summaries = dict[str, dict[str, Summary]]


def summaries(values: Values) -> Summaries:
    """Median, min and max for every metric and server kind that has values."""
    out: Summaries = {}
    for metric, by_kind in values.items():
        for kind, numbers in by_kind.items():
            summary = summarize(numbers)
            if summary is not None:
                out.setdefault(metric, {})[kind] = summary
    return out


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _cell(summary: Summary | None, digits: int) -> str:
    if summary is None:
        return "-"
    text = _number(summary.median, digits)
    if summary.count > 1:
        text += f" [{_number(summary.low, digits)}-{_number(summary.high, digits)}]"
    return text


def render_table(
    table: Summaries, clients: int, idle: int, missing: Mapping[str, str] | None = None
) -> str:
    """The figures as a Markdown table (readable in a terminal too).

    A column in ``missing`` (could not run here) shows ``n/a`` in the S3 rows.
    """
    missing = missing or {}
    columns = [
        c for c in COLUMNS if c in missing or any(c in by_kind for by_kind in table.values())
    ]
    header = ["workload", "unit", *columns]
    rows: list[list[str]] = []
    for key, metric in METRICS.items():
        if key not in table:
            continue
        label = metric.label.format(clients=clients, idle=idle)
        row = [label, metric.unit]
        row += [
            "n/a" if kind in missing and key in S3_METRICS else
            _cell(table[key].get(kind), metric.digits)
            for kind in columns
        ]  # fmt: skip
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "| " + " | ".join("-" * w for w in widths) + " |"]
    out += [line(r) for r in rows]
    return "\n".join(out)


@dataclass(frozen=True)
class Target:
    """One target of issue 6 and how this run did."""

    name: str
    measured: str
    passed: bool

    def line(self) -> str:
        """``PASS  name: measured``."""
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.measured}"


def _median(table: Summaries, metric: str, kind: str) -> float | None:
    summary = table.get(metric, {}).get(kind)
    return None if summary is None else summary.median


def _ratio_target(
    table: Summaries, metric: str, other: str, least: float, name: str, mine: str = "ours"
) -> Target | None:
    ours, theirs = _median(table, metric, mine), _median(table, metric, other)
    if ours is None or theirs is None or theirs == 0:
        return None
    ratio = ours / theirs
    unit = METRICS[metric].unit
    text = f"{ratio:.2f} ({mine} {ours:.0f} / {other} {theirs:.0f} {unit}; needs >= {least:g})"
    return Target(name, text, ratio >= least)


def targets(table: Summaries, clients: int, idle: int) -> list[Target]:
    """The targets of issue 6 that this run measured."""
    found: list[Target | None] = [
        _ratio_target(table, "big_down", "plain", 0.8, "1 file download >= 0.8 x plain limit"),
        _ratio_target(table, "big_up", "plain", 0.8, "1 file upload >= 0.8 x plain limit"),
        _ratio_target(table, "big_down", "pyftpdlib", 1.0, "1 file download >= pyftpdlib"),
        _ratio_target(table, "big_up", "pyftpdlib", 1.0, "1 file upload >= pyftpdlib"),
        _ratio_target(table, "multi_down", "pyftpdlib", 1.0, f"{clients} downloads >= pyftpdlib"),
        _ratio_target(table, "multi_up", "pyftpdlib", 1.0, f"{clients} uploads >= pyftpdlib"),
        _ratio_target(
            table, "small", "pyftpdlib", 1.0, f"{clients} clients' requests >= pyftpdlib"
        ),
    ]
    for metric in S3_METRICS:
        label = METRICS[metric].label.format(clients=clients, idle=idle)
        name = f"{label} ours-s3 >= {S3_SPEED:g} x boto3"
        found.append(_ratio_target(table, metric, "boto3", S3_SPEED, name, "ours-s3"))
    rss = _median(table, "rss_sessions", "ours")
    if rss is not None:
        limit_mib = MEMORY_LIMIT_MB * 1e6 / MIB
        text = f"{rss:.1f} MiB = {rss * MIB / 1e6:.1f} MB (needs < {MEMORY_LIMIT_MB} MB)"
        delta = _median(table, "rss_delta", "ours")
        if delta is not None:
            text += f"; {delta:.1f} MiB over the idle server"
        found.append(Target(f"RSS with {idle} idle sessions < 100 MB", text, rss < limit_mib))
    found += _crowd_targets(table, clients)
    login = _median(table, "login_ms", "ours")
    if login is not None:
        first = _median(table, "first_login_ms", "ours")
        text = f"{login:.2f} ms (needs < {LOGIN_LIMIT_MS:g})"
        if first is not None:
            text += f"; first login (bcrypt) {first:.0f} ms"
        found.append(Target("repeated login < 5 ms", text, login < LOGIN_LIMIT_MS))
    start = _median(table, "start_ms", "ours")
    if start is not None:
        text = f"{start:.1f} ms (needs <= {START_LIMIT_MS:g})"
        lftp = _median(table, "start_ms", "pyftpdlib")
        if lftp is not None:
            text += f"; lftp against pyftpdlib {lftp:.1f} ms"
        found.append(Target("ftpclient -c pwd <= 50 ms", text, start <= START_LIMIT_MS))
    return [t for t in found if t is not None]


def _crowd_targets(table: Summaries, clients: int) -> list[Target]:
    """Issue 19: memory with the idle crowd, and the active clients' speed beside it."""
    found = []
    rss, pss = _median(table, "crowd_rss", "ours"), _median(table, "crowd_pss", "ours")
    if rss is not None:
        text = f"{rss:.1f} MiB summed RSS (PSS {pss or 0:.1f} MiB; needs < {CROWD_LIMIT_MIB})"
        found.append(Target("RSS with the idle crowd < 500 MiB", text, rss < CROWD_LIMIT_MIB))
    busy, alone = _median(table, "crowd_busy", "ours"), _median(table, "crowd_alone", "ours")
    if busy is not None and alone:
        ratio = busy / alone
        text = f"{ratio:.2f} ({busy:.0f} / {alone:.0f} req/s; needs >= {CROWD_SPEED:g})"
        name = f"{clients} active clients beside the crowd as fast as alone"
        found.append(Target(name, text, ratio >= CROWD_SPEED))
    return found


def missing_lines(missing: Mapping[str, str], names: Iterable[str]) -> list[str]:
    """``n/a`` for the S3 targets when their columns could not run, with the reason."""
    if "ours-s3" not in missing or not any(n.startswith(("big", "multi")) for n in names):
        return []
    return [f"n/a   ours-s3 >= {S3_SPEED:g} x boto3: {missing['ours-s3']}"]


def tls_lines(table: Summaries, clients: int, idle: int) -> list[str]:
    """Ours over TLS against ours on plain TCP, for every metric measured both ways."""
    lines = []
    for key, metric in METRICS.items():
        tls, plain = _median(table, key, "ours-tls"), _median(table, key, "ours")
        if tls is None or plain is None or not plain or not metric.higher_is_better:
            continue
        label = metric.label.format(clients=clients, idle=idle)
        lines.append(
            f"TLS   {label}: {tls:.0f} {metric.unit} = {tls / plain:.2f} x ours without TLS"
        )
    return lines
