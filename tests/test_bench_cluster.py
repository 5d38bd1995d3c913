"""The ``cluster`` workload of ``python -m bench`` (issue 13), at a tiny size.

It starts its own PostgreSQL, three nodes, HAProxy and a single node, runs
the small-commands, login and big-download workloads on both sides and
returns every figure, the CPU per process group and the three targets.
Without HAProxy (or PostgreSQL) it reports n/a and why instead of failing;
``--only`` selects it only when named.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from required import require

from bench import cluster
from bench.options import parser, selected

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

TINY = [
    "--only", "cluster", "--reps", "1", "--big-reps", "1", "--size-mib", "2",
    "--clients", "4", "--client-procs", "1", "--commands", "3", "--latency-runs", "3",
    "--bcrypt-rounds", "4",
]  # fmt: skip


def test_the_cluster_workload_measures_both_sides(tmp_path: Path) -> None:
    require(cluster.unavailable() is None, str(cluster.unavailable()))
    document = cluster.run(parser().parse_args(TINY), tmp_path)
    for side in ("single", "cluster"):
        medians = document["medians"][side]
        assert set(medians) == {"small", "login_ms", "big_down"}, medians
        assert all(value > 0 and math.isfinite(value) for value in medians.values()), medians
        (cpu,) = document["cpu_pct_small"][side]
        assert set(cpu) == {"nodes", "haproxy", "postgres", "clients", "other"}
        assert all(math.isfinite(value) for value in cpu.values()), cpu  # ticks: may be 0 here
    assert document["cpu_pct_small"]["single"][0]["haproxy"] == 0
    names = [target["name"] for target in document["targets"]]
    assert names == [
        "cluster small req/s >= 0.8x single",
        "cluster repeated login <= 2 ms",
        "cluster big download >= 0.8x direct",
    ]
    assert set(document["load_average"]) == {"at the start", "at the end"}
    assert document["setting"]["haproxy_threads"] == 1


def test_without_haproxy_the_workload_is_not_applicable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "find_haproxy", lambda: None)
    document = cluster.run(parser().parse_args(TINY), tmp_path)
    assert document == {"n/a": "HAProxy is not installed (apt-get install haproxy)"}
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


def test_cluster_runs_only_when_named() -> None:
    assert "cluster" not in selected(None)
    assert selected("cluster") == ["cluster"]
    assert selected("c,cluster") == ["small", "cluster"]
