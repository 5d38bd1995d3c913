"""The tree workloads' results: a table in seconds, the targets of issue 15, and JSON.

Rows are workload x link, columns ours, ours-tls, rsync, sftp, lftp; a cell
reads ``median [min-max]`` seconds, or why it has no figure.  The targets are
ratios of medians from the same run, each PASS or FAIL.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.measure import MIB, summarize
from bench.report import Target
from bench.treebench import ROWS, TreeResults
from bench.treecolumns import COLUMNS

__all__ = ["as_json", "rehash_lines", "render_table", "targets", "throughput_lines"]

PEERS = ("rsync", "sftp", "lftp")


def _cell(results: TreeResults, key: tuple[str, str], column: str) -> str:
    summary = summarize(results.seconds.get(key, {}).get(column, []))
    if summary is None:
        return results.notes.get(key, {}).get(column, "-")
    text = f"{summary.median:.2f}"
    if summary.count > 1:
        text += f" [{summary.low:.2f}-{summary.high:.2f}]"
    return text


def _label(row: str, big_mib: int) -> str:
    return row.replace("big", f"1 file of {big_mib} MiB") if row.startswith("big") else row


def render_table(results: TreeResults, big_mib: int) -> str:
    """The seconds as a Markdown table."""
    keys = [(row, link) for link in results.links for row in ROWS
            if (row, link) in results.seconds or (row, link) in results.notes]  # fmt: skip
    keys = [k for k in keys if k[0] in {r["row"] for r in results.runs if "row" in r}]
    header = ["workload", "link", *COLUMNS]
    rows = [[_label(row, big_mib), link, *(_cell(results, (row, link), c) for c in COLUMNS)]
            for row, link in keys]  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "| " + " | ".join("-" * w for w in widths) + " |"]
    return "\n".join(out + [line(r) for r in rows])


def _median(results: TreeResults, row: str, link: str, column: str) -> float | None:
    values = results.seconds.get((row, link), {}).get(column)
    return statistics.median(values) if values else None


def _slower(
    results: TreeResults, row: str, link: str, other: str, most: float, name: str = ""
) -> Target | None:
    """Ours takes at most ``most`` x the time of ``other`` (target ``name``)."""
    ours, theirs = _median(results, row, link, "ours"), _median(results, row, link, other)
    if ours is None or theirs is None:
        return None
    ratio = ours / theirs
    text = f"{ratio:.2f} (ours {ours:.2f} s / {other} {theirs:.2f} s; needs <= {most:g})"
    name = name or f"{row} at {link}: ours <= {most:g} x {other}'s time"
    return Target(name, text, ratio <= most)


def _faster(results: TreeResults, row: str, link: str, other: str, least: float) -> Target | None:
    """Ours is at least ``least`` times as fast as ``other``."""
    ours, theirs = _median(results, row, link, "ours"), _median(results, row, link, other)
    if ours is None or theirs is None:
        return None
    ratio = theirs / ours
    text = f"{ratio:.2f} x faster ({other} {theirs:.2f} s / ours {ours:.2f} s; needs >= {least:g})"
    return Target(f"{row} at {link}: ours >= {least:g} x faster than {other}", text,
                  ratio >= least)  # fmt: skip


def _against_bound(facts: list[dict[str, float]]) -> tuple[float, float, str]:
    """Median seconds of an unchanged ``mirror -c``, its bound, and both in words."""
    seconds = statistics.median(f["seconds"] for f in facts)
    session = statistics.median(f["session_s"] for f in facts)
    hashing = statistics.median(f["hash_s"] for f in facts)
    rtt = facts[0]["rtt_s"]
    budget = session + 3 * rtt + hashing
    text = (
        f"{seconds:.2f} s (needs <= {budget:.2f} s: a session with no request"
        f" {session:.2f} s + 3 RTT {3 * rtt:.2f} s + hashing the local tree {hashing:.2f} s)"
    )
    return seconds, budget, text


def _mirror(results: TreeResults, link: str) -> Target | None:
    facts = results.extra.get("mirror", {}).get(f"ours {link}")
    if not facts:
        return None
    seconds, budget, text = _against_bound(facts)
    return Target(f"unchanged mirror -c at {link} in < 3 RTTs + hashing", text, seconds <= budget)


def rehash_lines(results: TreeResults) -> list[str]:
    """``mirror -c --rehash`` (every local file read) against the same bound, for information."""
    lines = []
    for key, facts in results.extra.get("mirror-rehash", {}).items():
        column, link = key.split(" ", 1)
        if column == "ours" and facts:
            text = _against_bound(facts)[2].replace("needs <=", "the -c bound is")
            lines.append(f"unchanged mirror -c --rehash at {link} (every local file read): {text}")
    return lines


def targets(results: TreeResults, big_mib: int) -> list[Target]:
    """The targets of issue 15 that this run measured."""
    found: list[Target | None] = []
    delayed = [link for link in results.links if link != "loopback"]
    for link in delayed[:1]:
        for row in ("tree up", "tree down"):
            found += [_slower(results, row, link, "rsync", 1.5),
                      _faster(results, row, link, "sftp", 3.0)]  # fmt: skip
        for row in ("big down", "big up"):
            name = f"{_label(row, big_mib)} at {link}: ours >= lftp's throughput"
            found.append(_slower(results, row, link, "lftp", 1.0, name))
    if "loopback" in results.links:
        for row in ("tree up", "tree down", "mirror, unchanged"):
            found += [_slower(results, row, "loopback", peer, 1.0,
                              f"{row} at loopback: ours ahead of {peer}")
                      for peer in PEERS]  # fmt: skip
    found += [_mirror(results, link) for link in results.links]
    return [t for t in found if t is not None]


def throughput_lines(results: TreeResults, big_mib: int) -> list[str]:
    """The big file's throughput in MiB/s, and the tree's, per column and link."""
    lines = []
    tree_mib = results.extra.get("tree_bytes", 0) / MIB
    for (row, link), by_column in results.seconds.items():
        size = big_mib if row.startswith("big") else tree_mib
        if row.startswith("mirror") or not size:
            continue
        cells = ", ".join(f"{c} {size / statistics.median(v):.1f}"
                          for c, v in by_column.items())  # fmt: skip
        lines.append(f"MiB/s {_label(row, big_mib)} at {link}: {cells}")
    return lines


def as_json(results: TreeResults, found: list[Target]) -> dict[str, Any]:
    """Everything for the JSON file."""
    return {
        "links": results.links,
        "summary": {
            f"{row} | {link}": {c: s.as_dict() for c, v in by.items() if (s := summarize(v))}
            for (row, link), by in results.seconds.items()
        },
        "notes": {f"{row} | {link}": by for (row, link), by in results.notes.items()},
        "targets": [{"name": t.name, "measured": t.measured, "pass": t.passed} for t in found],
        "extra": results.extra,
        "runs": results.runs,
    }


def report(results: TreeResults, big_mib: int) -> dict[str, Any]:
    """Print the table, the throughputs and the targets; the JSON part, with failed runs."""
    reps = max((r.get("rep", 1) for r in results.runs), default=1)
    print(f"\nTree workloads: {results.extra.get('tree_files')} files in"
          f" {results.extra.get('tree_folders')} folders"
          f" ({results.extra.get('tree_bytes', 0) / MIB:.1f} MiB); seconds, median of {reps}"
          " [min-max]")  # fmt: skip
    for name, description in results.links.items():
        print(f"link {name}: {description}")
    ours = "its password (bcrypt)" if results.extra.get("login") == "password" else "an Ed25519 key"
    print(f"logins: ours with {ours}; rsync and sftp with an ssh key; lftp anonymous")
    print(render_table(results, big_mib))
    print()
    for line in throughput_lines(results, big_mib) + rehash_lines(results):
        print(line)
    found = targets(results, big_mib)
    for target in found:
        print(target.line())
    data = as_json(results, found)
    data["failed"] = [r for r in results.runs if "error" in r]
    return data
