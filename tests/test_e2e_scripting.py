"""End to end: ``ftpclient`` in scripts, as a subprocess with pipes (no terminal).

``--json`` records parsed line by line and compared with the files on disk,
``-`` prefixed commands that may fail, exit statuses 0/1/2, no progress
output without a terminal, ``--quiet``, ``--retries`` through a proxy that
cuts the first connection, and the client's config file (defaults,
bookmarks, malformed files).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ALICE,
    HOST,
    SUBPROCESS_TIMEOUT,
    ClientEnv,
    CliResult,
    ProxyFactory,
    RunningServer,
    digest_of,
    file_digest_of,
)

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
MTIME = 1_700_000_000  # a fixed modification time, to compare with the listing


def run_client(
    client_env: ClientEnv, cwd: Path, *args: str, stdin: str = ""
) -> tuple[CliResult, float]:
    """Run ``python -m ftpclient ARGS`` with pipes; return its result and the seconds it took."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ftpclient", *args],
        cwd=cwd,
        env=client_env.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    return CliResult(done.returncode, done.stdout, done.stderr), time.monotonic() - started


def target(port: int) -> str:
    return f"{ALICE}@{HOST}:{port}"


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line parsed as one JSON object (fails on any other line)."""
    records = []
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r} in {stdout!r}")
        assert isinstance(record, dict) and "event" in record, f"not a record: {line!r}"
        records.append(record)
    return records


def one_error_line(stderr: str) -> str:
    """stderr holds exactly one non-empty line and no traceback; return it."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    return lines[0]


def make_file(path: Path, data: bytes, mtime: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


# -- --json -----------------------------------------------------------------------


def test_json_ls_and_ls_l_match_the_disk(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    home = server.alice_home
    make_file(home / "a.txt", b"a" * 123, MTIME)
    make_file(home / "c data.bin", os.urandom(5000), MTIME + 60)
    (home / "sub").mkdir()
    os.utime(home / "sub", (MTIME + 120, MTIME + 120))
    result, _ = run_client(client_env, local, target(server.port), "--json", "-c", "ls; ls -l")
    assert result.returncode == 0, result
    assert result.stderr == "", result.stderr
    records = json_lines(result.stdout)
    assert len(records) == 6, records
    assert records[:3] == records[3:], "ls and ls -l give different records"
    assert all(r["event"] == "entry" for r in records), records
    by_name = {r["name"]: r for r in records[:3]}
    assert sorted(by_name) == ["a.txt", "c data.bin", "sub"], records
    for name in ("a.txt", "c data.bin"):
        st = (home / name).stat()
        assert by_name[name]["type"] == "file", by_name[name]
        assert by_name[name]["size"] == st.st_size, by_name[name]
        assert by_name[name]["mtime"] == int(st.st_mtime), by_name[name]
    assert by_name["sub"]["type"] == "dir"
    assert by_name["sub"]["mtime"] == MTIME + 120


def test_json_stat_with_blake3_matches_the_disk(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    data = os.urandom(40_000)
    make_file(server.alice_home / "docs" / "report.pdf", data, MTIME)
    result, _ = run_client(
        client_env, local, target(server.port), "--json", "-c", "stat -s docs/report.pdf; stat docs"
    )
    assert result.returncode == 0, result
    first, second = json_lines(result.stdout)
    assert first["event"] == "stat", first
    assert first["path"] in ("/docs/report.pdf", "docs/report.pdf"), first
    assert first["type"] == "file"
    assert first["size"] == len(data)
    assert first["mtime"] == MTIME
    assert first["blake3"] == digest_of(data), "stat -s blake3 differs from the file's"
    assert second["event"] == "stat" and second["type"] == "dir", second
    assert not second.get("blake3"), "stat without -s computed a blake3"


def test_json_transfer_summaries_match_the_disk(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    up = make_file(local / "up.bin", os.urandom(200_000))
    down = make_file(server.alice_home / "down.bin", os.urandom(150_000))
    result, _ = run_client(
        client_env, local, target(server.port), "--json", "-c", "put up.bin; get down.bin got.bin"
    )
    assert result.returncode == 0, result
    assert result.stderr == "", result.stderr
    put, get = json_lines(result.stdout)
    assert put["event"] == "put", put
    assert put["remote"] == "up.bin" and put["local"] == "up.bin", put
    assert put["size"] == 200_000
    assert put["blake3"] == file_digest_of(up) == file_digest_of(server.alice_home / "up.bin")
    assert put["verified"] is True and put["offset"] == 0, put
    assert isinstance(put["seconds"], (int, float)) and put["seconds"] >= 0, put
    assert get["event"] == "get", get
    assert get["remote"] == "down.bin" and get["local"] == "got.bin", get
    assert get["size"] == 150_000
    assert get["blake3"] == file_digest_of(down) == file_digest_of(local / "got.bin")
    assert get["verified"] is True and get["offset"] == 0, get


def test_json_error_is_a_record_and_a_stderr_line(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    result, _ = run_client(client_env, local, target(server.port), "--json", "-c", "stat nope")
    assert result.returncode == 1, result
    line = one_error_line(result.stderr)
    assert line == "remote: no such file or folder: nope", line
    assert json_lines(result.stdout) == [{"event": "error", "code": 404, "text": line}]


# -- batches: '-' prefixed commands and exit statuses ---------------------------------


def test_dash_command_may_fail_without_stopping_the_batch(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    make_file(local / "later.txt", b"later\n")
    batch = "-get missing.txt; -rm gone.txt; put later.txt"
    result, _ = run_client(client_env, local, target(server.port), "-c", batch)
    assert result.returncode == 0, result
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 2, errors
    assert "missing.txt" in errors[0] and "gone.txt" in errors[1], errors
    assert (server.alice_home / "later.txt").read_bytes() == b"later\n", "later command did not run"
    assert not (local / "missing.txt").exists() and not (local / "missing.txt.part").exists()


def test_dash_command_in_a_batch_file_from_stdin(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    make_file(local / "keep.txt", b"keep\n")
    script = "# a comment\n-mkdir exists\n-mkdir exists\nput keep.txt exists/keep.txt\n"
    result, _ = run_client(client_env, local, target(server.port), "-b", "-", stdin=script)
    assert result.returncode == 0, result
    assert "exists" in one_error_line(result.stderr)
    assert (server.alice_home / "exists" / "keep.txt").read_bytes() == b"keep\n"


def test_failure_without_dash_stops_the_batch_with_1(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    make_file(local / "first.txt", b"1")
    make_file(local / "later.txt", b"2")
    batch = make_file(local / "batch.txt", b"put first.txt\nget missing.txt\nput later.txt\n")
    result, _ = run_client(client_env, local, target(server.port), "-b", str(batch))
    assert result.returncode == 1, result
    assert "missing.txt" in one_error_line(result.stderr)
    assert (server.alice_home / "first.txt").read_bytes() == b"1"
    assert not (server.alice_home / "later.txt").exists(), "the batch went on after a failure"


def test_help_documents_the_exit_codes(client_env: ClientEnv, local: Path) -> None:
    result, _ = run_client(client_env, local, "--help")
    assert result.returncode == 0, result
    text = result.stdout
    assert "exit status" in text.lower(), text
    for code in (0, 1, 2):
        assert re.search(rf"^\s+{code}\s+\S", text, re.MULTILINE), f"exit code {code}: {text}"
    for option in ("--json", "--quiet", "--retries", "-c", "-b"):
        assert option in text, option


# -- progress without a terminal, --quiet -----------------------------------------------


def test_no_progress_bar_without_a_terminal_but_a_summary(
    server: RunningServer, client_env: ClientEnv, proxy: ProxyFactory, local: Path
) -> None:
    data = make_file(server.alice_home / "big.bin", os.urandom(3 * MIB)).read_bytes()
    result, _ = run_client(client_env, local, target(proxy().port), "-c", "get big.bin")
    assert result.returncode == 0, result
    both = result.stdout + result.stderr
    assert "\r" not in both and "%|" not in both, f"progress output without a terminal: {both!r}"
    assert result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].endswith("blake3 verified"), lines
    match = re.search(r" in ([\d.]+) s ", lines[0])
    assert match and float(match.group(1)) > 1.0, f"the transfer was too quick: {lines[0]}"
    assert (local / "big.bin").read_bytes() == data


def test_quiet_prints_no_progress_and_no_summary(
    server: RunningServer, client_env: ClientEnv, proxy: ProxyFactory, local: Path
) -> None:
    data = make_file(server.alice_home / "big.bin", os.urandom(3 * MIB)).read_bytes()
    result, seconds = run_client(
        client_env, local, target(proxy().port), "--quiet", "-c", "get big.bin"
    )
    assert result.returncode == 0, result
    assert seconds > 1.0, "the transfer was too quick to test"
    assert result.stdout == "" and result.stderr == "", result
    assert (local / "big.bin").read_bytes() == data


# -- --retries ------------------------------------------------------------------------


def test_retries_resume_a_download_after_a_lost_connection(
    server: RunningServer, client_env: ClientEnv, proxy: ProxyFactory, local: Path
) -> None:
    remote = make_file(server.alice_home / "big.bin", os.urandom(3 * MIB))
    cut = proxy(rate=None, drop_after=MIB)
    result, _ = run_client(
        client_env, local, target(cut.port), "--retries", "2", "-c", "get big.bin"
    )
    assert cut.dropped.is_set(), "the proxy never cut the connection"
    assert result.returncode == 0, result
    assert cut.connections == 2, f"{cut.connections} connections"
    assert "retry 1 of 2" in result.stderr, result.stderr
    assert "resumed" in result.stdout, f"the retry did not resume: {result.stdout!r}"
    assert file_digest_of(local / "big.bin") == file_digest_of(remote)
    assert not (local / "big.bin.part").exists()


def test_retries_finish_an_upload_after_a_lost_connection(
    server: RunningServer, client_env: ClientEnv, proxy: ProxyFactory, local: Path
) -> None:
    up = make_file(local / "up.bin", os.urandom(3 * MIB))
    cut = proxy(rate=None, drop_after=MIB)
    result, _ = run_client(
        client_env, local, target(cut.port), "--retries", "2", "-c", "put up.bin"
    )
    assert cut.dropped.is_set(), "the proxy never cut the connection"
    assert result.returncode == 0, result
    assert "retry 1 of 2" in result.stderr, result.stderr
    assert file_digest_of(server.alice_home / "up.bin") == file_digest_of(up)


def test_no_retries_exit_2_with_one_line(
    server: RunningServer, client_env: ClientEnv, proxy: ProxyFactory, local: Path
) -> None:
    make_file(server.alice_home / "big.bin", os.urandom(3 * MIB))
    make_file(local / "after.txt", b"after")
    cut = proxy(rate=None, drop_after=MIB)
    result, _ = run_client(
        client_env, local, target(cut.port), "--retries", "0", "-c", "get big.bin; put after.txt"
    )
    assert cut.dropped.is_set(), "the proxy never cut the connection"
    assert result.returncode == 2, result
    assert "connection lost" in one_error_line(result.stderr)
    assert not (local / "big.bin").exists()
    assert not (server.alice_home / "after.txt").exists(), "the batch went on"
    assert cut.connections == 1


def test_negative_retries_is_a_usage_error(client_env: ClientEnv, local: Path) -> None:
    result, _ = run_client(client_env, local, target(9), "--retries", "-1", "-c", "pwd")
    assert result.returncode == 2, result
    assert "retries" in one_error_line(result.stderr)


# -- the config file ------------------------------------------------------------------


def test_defaults_come_from_the_config_file(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    client_env.write_config(f"host: {HOST}\nport: {server.port}\nuser: {ALICE}\n")
    make_file(server.alice_home / "from-defaults.txt", b"defaults\n")
    result, _ = run_client(client_env, local, "-c", "get from-defaults.txt")
    assert result.returncode == 0, result
    assert (local / "from-defaults.txt").read_bytes() == b"defaults\n"


def test_bookmark_in_a_batch_and_flags_override_it(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind((HOST, 0))
        dead_port = closed.getsockname()[1]
    client_env.write_config(
        f"bookmarks:\n  work: {{host: {HOST}, port: {server.port}, user: {ALICE}}}\n"
        f"  stale: {{host: {HOST}, port: {dead_port}, user: {ALICE}}}\n"
    )
    make_file(local / "via-work.txt", b"work\n")
    result, _ = run_client(client_env, local, "work", "-c", "put via-work.txt")
    assert result.returncode == 0, result
    assert (server.alice_home / "via-work.txt").read_bytes() == b"work\n"

    result, _ = run_client(client_env, local, "stale", "-c", "pwd")
    assert result.returncode == 2, result
    assert str(dead_port) in one_error_line(result.stderr)
    result, _ = run_client(client_env, local, "stale", "--port", str(server.port), "-c", "pwd")
    assert result.returncode == 0, result
    assert result.stdout.strip() == "/"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("bookmarks: [unclosed\n", 2, []),
        ("port: 99999\n", 1, ["port"]),
        ("host: h\nbookmarks:\n  work: {host: 127.0.0.1, colour: red}\n", 3, ["work", "colour"]),
        ("- just\n- a list\n", 1, []),
    ],
)
def test_malformed_config_is_reported_with_its_line_and_the_client_goes_on(
    server: RunningServer,
    client_env: ClientEnv,
    local: Path,
    text: str,
    line: int,
    words: list[str],
) -> None:
    path = client_env.write_config(text)
    result, _ = run_client(client_env, local, target(server.port), "-c", "pwd")
    assert result.returncode == 0, result
    assert result.stdout == "/\n", result.stdout
    warning = one_error_line(result.stderr)
    assert f"{path}:{line}: " in warning, f"the warning does not name file and line: {warning!r}"
    for word in words:
        assert word in warning, f"{word!r} not in {warning!r}"
