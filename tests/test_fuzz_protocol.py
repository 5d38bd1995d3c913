"""Hostile input: property-based tests (hypothesis) of the frame decoder and of a real server.

Sans-IO, :class:`~ftpproto.framing.FrameDecoder` fed random and mutated byte
streams in random chunkings:

* raises nothing but :class:`FramingError`, and returns exactly the frames a
  simple reference parser finds (so exactly the frames encoded);
* never holds more than one frame's worth (header + limit) plus the bytes of
  one feed, and refuses a length prefix over the limit as soon as the header
  is complete, without waiting for the payload;
* :class:`~ftpproto.channel.Channel` on a socket pair raises nothing but the
  protocol's errors on the same streams.

A real server (one per module, in-process on 127.0.0.1 port 0, behind the
re-chunking proxy unless ``FTP_TEST_DIRECT=1``), on raw sockets, before and
after login:

* every command of the table (each one, before and after login) with
  fitting, missing and extra arguments, and random requests mixing them with
  handler attribute names (``handle``, ``setup``, ``server``, ``cmd_get``,
  ...), names that are no command name at all (``__init__``, ``_private``),
  paths that try to climb out, bad sizes and digests: a well-formed answer
  with the code the dispatcher's checks call for, and the session goes on;
* random and mutated streams (invalid UTF-8, control characters, wrong
  prefixes, bad %-escapes, huge and zero length prefixes, junk): only
  well-formed replies, never ``500``, and the connection is closed when the
  client's side ends, within a few seconds;
* with ``proxy_protocol: true`` (issue 13): valid, mutated, truncated and
  random PROXY headers, maybe followed by requests: well-formed replies or a
  close, and a session opened beside each one goes on;
* after every example: no error in the server's log, no session left open, a
  fresh client logs in and asks ``pwd``, and nothing outside the user's home
  changed (the folder holding the homes is compared before and after).

``FTP_FUZZ_EXAMPLES`` sets the number of examples per server test (150; a
sixth of it for each command and login state of the sweep).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import re
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    CLIENT_TIMEOUT,
    HOST,
    PROXY_ALL,
    RawSession,
    RunningServer,
    digest_of,
    start_server,
    stop_server,
    wait_until,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ftpclient.client import FileTransferClient
from ftpproto.channel import Channel
from ftpproto.commands import COMMANDS
from ftpproto.digest import new_hasher
from ftpproto.errors import ConnectionClosed, ErrorCode, FramingError, MessageError
from ftpproto.framing import HEADER_SIZE, MAX_FRAME_SIZE, FrameDecoder, encode_frame
from ftpproto.messages import Message, abort, request
from ftpproto.proxyproto import encode_v1, encode_v2
from ftpserver.users import add_user

pytestmark = pytest.mark.timeout(180)

SERVER_EXAMPLES = int(os.environ.get("FTP_FUZZ_EXAMPLES", "150"))
SWEEP_EXAMPLES = max(1, SERVER_EXAMPLES // 6)  # per command, before and after login
server_settings = settings(
    max_examples=SERVER_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
decoder_settings = settings(max_examples=300, deadline=None)

COMMAND_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
CODES = {int(code) for code in ErrorCode}
EMPTY_DIGEST = digest_of(b"")
READ_LIMIT = 5.0  # seconds the server may take to answer or close


# -- the frame decoder, without sockets -------------------------------------------------------


def reference_frames(data: bytes, max_size: int) -> tuple[list[bytes], bool]:
    """The frames a stream holds, and whether a bad header follows them (the spec, naively)."""
    frames: list[bytes] = []
    pos = 0
    while len(data) - pos >= HEADER_SIZE:
        (length,) = struct.unpack_from(">I", data, pos)
        if length == 0 or length > max_size:
            return frames, True
        if len(data) - pos - HEADER_SIZE < length:
            break
        frames.append(data[pos + HEADER_SIZE : pos + HEADER_SIZE + length])
        pos += HEADER_SIZE + length
    return frames, False


def decode(chunks: list[bytes], max_size: int) -> tuple[list[bytes], bool]:
    """Feed ``chunks`` one by one, taking frames out after each; stop at a FramingError."""
    decoder = FrameDecoder(max_size)
    frames: list[bytes] = []
    for chunk in chunks:
        decoder.feed(chunk)
        assert decoder.buffered < HEADER_SIZE + max_size + len(chunk), "buffered too much"
        while True:
            try:
                frame = decoder.next_frame()
            except FramingError:
                return frames, True
            if frame is None:
                break
            assert 1 <= len(frame) <= max_size
            frames.append(frame)
        assert decoder.buffered < HEADER_SIZE + max_size, "a complete frame was left inside"
        assert 1 <= decoder.wanted() <= HEADER_SIZE + max_size
    return frames, False


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at random places (also into single bytes and empty pieces)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=30)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def header(length: int) -> bytes:
    return struct.pack(">I", length)


LIMITS = st.sampled_from([1, 2, 3, 7, 64, 1000, MAX_FRAME_SIZE])


@st.composite
def segment(draw: st.DrawFn, max_size: int) -> bytes:
    """A piece of stream: a good frame, a bad or odd header, or junk."""
    kind = draw(st.sampled_from(["frame", "frame", "frame", "header", "junk"]))
    if kind == "frame":
        return encode_frame(draw(st.binary(min_size=1, max_size=min(max_size, 300))), max_size)
    if kind == "header":
        length = draw(
            st.one_of(
                st.sampled_from([0, 1, max_size, max_size + 1, 2**31, 2**32 - 1]),
                st.integers(0, 2**32 - 1),
            )
        )
        return header(length)
    return draw(st.binary(max_size=40))


@st.composite
def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted or deleted, or cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(out)))
        if op == "flip" and at < len(out):
            out[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del out[at : at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del out[at:]
    return bytes(out)


@st.composite
def streams(draw: st.DrawFn, max_size: int) -> bytes:
    data = b"".join(draw(st.lists(segment(max_size), max_size=8)))
    return draw(mutate(data)) if draw(st.booleans()) else data


@decoder_settings
@given(data=st.data(), max_size=LIMITS)
def test_decoder_on_random_and_mutated_streams(data: st.DataObject, max_size: int) -> None:
    stream = data.draw(st.one_of(streams(max_size), st.binary(max_size=500)))
    chunks = data.draw(chunkings(stream))
    assert decode(chunks, max_size) == reference_frames(stream, max_size)


@decoder_settings
@given(data=st.data(), payloads=st.lists(st.binary(min_size=1, max_size=2000), max_size=10))
def test_decoder_returns_exactly_the_frames_encoded(
    data: st.DataObject, payloads: list[bytes]
) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    assert decode(data.draw(chunkings(stream)), MAX_FRAME_SIZE) == (payloads, False)


@decoder_settings
@given(
    length=st.one_of(st.just(0), st.integers(MAX_FRAME_SIZE + 1, 2**32 - 1)),
    before=st.lists(st.binary(min_size=1, max_size=100), max_size=3),
)
def test_a_bad_length_prefix_is_refused_at_the_header(length: int, before: list[bytes]) -> None:
    """Refused as soon as its 4 bytes are in, whatever came before; no payload awaited."""
    decoder = FrameDecoder()
    for payload in before:
        decoder.feed(encode_frame(payload))
        assert decoder.next_frame() == payload
    for byte in header(length)[:-1]:
        decoder.feed(bytes([byte]))
        assert decoder.next_frame() is None
        assert decoder.wanted() <= HEADER_SIZE
    decoder.feed(header(length)[-1:])
    with pytest.raises(FramingError):
        decoder.next_frame()
    assert decoder.buffered == HEADER_SIZE, "the decoder kept more than the header"


@decoder_settings
@given(data=st.data(), max_size=LIMITS)
def test_channel_raises_only_protocol_errors(data: st.DataObject, max_size: int) -> None:
    """Channel.recv on a socket: messages, MessageError (the session goes on), or the end."""
    stream = data.draw(st.one_of(streams(max_size), st.binary(max_size=500)))
    left, right = socket.socketpair()
    with left, right:
        left.sendall(stream)
        left.close()
        right.settimeout(5)
        channel = Channel(right, max_frame=max_size)
        frames, bad_header = reference_frames(stream, max_size)
        seen = 0
        while True:
            try:
                channel.recv()
            except MessageError:
                pass
            except FramingError:
                assert bad_header and seen == len(frames)
                return
            except ConnectionClosed:
                assert not bad_header and seen == len(frames)
                return
            seen += 1


# -- a real server ------------------------------------------------------------------------


@dataclass
class FuzzTarget:
    """The module's server, its folders, and what must hold after every example."""

    running: RunningServer
    root: Path  # holds homes/ (alice's and bob's), outside/ and users.yaml
    home: Path  # alice's: the only place the fuzzing may change
    errors: list[logging.LogRecord] = field(default_factory=list)
    outside_before: dict[str, tuple[object, ...]] = field(default_factory=dict)

    def outside(self) -> dict[str, tuple[object, ...]]:
        """Everything under ``root`` but alice's home: type, mtime, and contents or link target."""
        state: dict[str, tuple[object, ...]] = {}
        for top, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if os.path.join(top, d) != str(self.home)]
            for name in [".", *dirs, *files]:
                path = Path(top, name)
                st = path.lstat()
                key = path.relative_to(self.root).as_posix()
                if path.is_symlink():
                    state[key] = ("link", os.readlink(path))
                elif path.is_dir():
                    state[key] = ("dir", st.st_mtime_ns)
                else:
                    state[key] = ("file", st.st_mtime_ns, path.read_bytes())
        return state

    def session(self, logged_in: bool) -> RawSession:
        session = RawSession(self.running.port)
        session.sock.settimeout(READ_LIMIT)
        if logged_in:
            session.login()
        return session

    def check(self) -> None:
        """The server is well: no errors logged, sessions ended, serving, nothing escaped."""
        srv = self.running.server
        assert wait_until(lambda: not srv.sessions.snapshot(), READ_LIMIT, 0.001), (
            f"sessions still open after the client left: {len(srv.sessions.snapshot())}"
        )
        errors = [record.getMessage() for record in self.errors]
        self.errors.clear()  # reported once, not again by every later example
        assert not errors, f"the server logged errors: {errors}"
        with FileTransferClient(HOST, self.running.port, timeout=CLIENT_TIMEOUT) as fresh:
            assert fresh.login(ALICE, ALICE_PASSWORD) == ALICE
            assert fresh.pwd() == "/"
            fresh.quit()
        assert self.running.thread.is_alive(), "the serve_forever thread died"
        assert self.outside() == self.outside_before, "something changed outside the home"


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """One server for the whole module: alice's home seeded with folders, empty files, links
    (out of the home, to ``/``, to itself, dangling, inside) and a FIFO."""
    root = tmp_path_factory.mktemp("fuzz")
    homes, outside = root / "homes", root / "outside"
    homes.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"outside the homes\n")
    users = root / "users.yaml"
    add_user(users, homes, ALICE, ALICE_PASSWORD, rounds=4)
    add_user(users, homes, BOB, BOB_PASSWORD, rounds=4)
    home = homes / ALICE
    (homes / BOB / "bob.txt").write_bytes(b"bob's\n")
    (home / "docs" / "sub").mkdir(parents=True)
    for name in ("a.txt", "docs/empty.txt", "x|y %25.txt"):  # empty: no file data in replies
        (home / name).write_bytes(b"")
    (home / "out").symlink_to(outside)
    (home / "bobs").symlink_to(homes / BOB)
    (home / "secret-link").symlink_to(outside / "secret.txt")
    (home / "root-link").symlink_to("/")
    (home / "loop").symlink_to("loop")
    (home / "dangling").symlink_to("no-such-file")
    (home / "inside-link").symlink_to("a.txt")
    os.mkfifo(home / "pipe")
    running = start_server(
        users,
        homes,
        proxied=PROXY_ALL,
        login_failure_delay=0,
        ban_failures=0,
        max_sessions=0,
        max_sessions_per_ip=0,
        idle_timeout=10,
        request_timeout=5,
        stall_timeout=5,
    )
    fuzz = FuzzTarget(running, root, home)
    fuzz.outside_before = fuzz.outside()
    collect = _Collect(fuzz.errors)
    logger = logging.getLogger("ftpserver")
    logger.addHandler(collect)
    try:
        yield fuzz
    finally:
        logger.removeHandler(collect)
        stop_server(running)


# -- what the fuzzer sends ------------------------------------------------------------------

HOSTILE_NAMES = [
    "__init__", "handle", "setup", "server", "finish", "_private", "cmd_get", "dispatch",
    "cmd_", "channel", "request", "interrupt", "jail", "user", "user_account", "settings",
    "busy", "peer", "_open", "_wait", "__class__", "__dict__", "error", "ok", "ready",
    "abort", "recv_ready", "digest", "entry", "GET", "Pwd", "get ", " ls", "pwd\t",
    "x" * 32, "x" * 33, "é", "",
]  # fmt: skip
PATHS = [
    ".", "/", "..", "../..", "../../..", "/../..", "../bob", "../bob/bob.txt", "../alice",
    "../../outside/secret.txt", "out", "out/secret.txt", "out/new", "bobs", "bobs/bob.txt",
    "bobs/new", "secret-link", "root-link", "root-link/etc/passwd", "loop", "loop/x",
    "dangling", "inside-link", "pipe", "docs", "docs/", "docs/sub", "docs/empty.txt", "a.txt",
    "x|y %25.txt", "new", "new/deeper", "a.txt/x", ".ftp-partial", ".ftp-partial/x",
    ".ftp-upload-1234", "docs/.ftp-upload-x", "", " ", "\x00", "a\x00b", "\n", "\x7f\x1b[2J",
    "é/ü", "a" * 256, "a/" * 100, "x" * 5000,
]  # fmt: skip
GOOD_SIZES = ["0", "1", "5", "007", "65536", "1048576", "99999999999999999999"]
SIZES = [*GOOD_SIZES, "100000000000000000000", "-1", "1.5", "0x10", " 5", ""]
GOOD_DIGESTS = [EMPTY_DIGEST, "0" * 64]
DIGESTS = [*GOOD_DIGESTS, EMPTY_DIGEST.upper(), "0" * 63, "g" * 64, ""]
OTHER_ARGUMENTS = ["blake3", "parents", "recursive", "BLAKE3", "-r", ALICE, BOB, "wrong"]
# Any argument at all: mostly values that mean something to the server, sometimes any text.
argument = st.one_of(
    st.sampled_from(PATHS),
    st.sampled_from(SIZES + DIGESTS + OTHER_ARGUMENTS),
    st.text(max_size=20),
)
# What fits each argument of the command table, by its name in the table.
ROLES: dict[str, list[str]] = {
    "PATH": PATHS,
    "OLD": PATHS,
    "NEW": PATHS,
    "SIZE": GOOD_SIZES * 3 + SIZES,  # mostly good ones: the command then goes on
    "OFFSET": GOOD_SIZES * 3 + SIZES,
    "PREFIX_BLAKE3": GOOD_DIGESTS * 3 + DIGESTS,
    "USER": [ALICE, BOB, "nobody", "", "../alice", "alice\x00", "ALICE"],
    # bob's password is left out: a session of his could change his home, which is
    # "outside" here; alice's logs in (in a session that is already logged in: 409).
    "PASSWORD": [ALICE_PASSWORD, BOB_PASSWORD[:-1], "wrong", "", "x" * 100],
    "COMMAND": [*sorted(COMMANDS), *HOSTILE_NAMES],
}
ANY = PATHS + SIZES + DIGESTS + OTHER_ARGUMENTS


def any_text(rng: random.Random) -> str:
    """Up to 20 characters: control, ASCII (``|`` and ``%`` too) or other Unicode."""
    ranges = [(0, 0x20), (0x20, 0x7F), (0x7F, 0xA0), (0xA0, 0xD800), (0xE000, 0x110000)]
    return "".join(chr(rng.randrange(*rng.choice(ranges))) for _ in range(rng.randrange(20)))


def any_argument(rng: random.Random) -> str:
    return rng.choice(ANY) if rng.random() < 0.7 else any_text(rng)


@st.composite
def argument_lists(draw: st.DrawFn, name: str) -> tuple[str, ...]:
    """Arguments for ``name``: mostly as many as it takes, of the kind each one is (a path,
    a size, a digest, a flag word), sometimes anything, too few or too many.

    The choices come from a seeded ``random.Random`` (the seed drawn by hypothesis) so
    that they follow these proportions; hypothesis's own choices favour long lists.
    """
    rng = random.Random(draw(st.integers(0, 2**64 - 1), label="seed"))
    spec = COMMANDS.get(name)
    roles = [*spec.required, *spec.optional] if spec else []
    least = len(spec.required) if spec else 0
    shape = rng.random()
    if shape < 0.7 or (shape < 0.85 and least == 0):
        count = rng.randint(least, len(roles))  # fits
    elif shape < 0.85:
        count = rng.randrange(least)  # too few
    else:
        count = rng.randint(len(roles) + 1, len(roles) + 3)  # too many
    args = []
    for i in range(count):
        if i < len(roles) and rng.random() < 0.85:
            args.append(rng.choice(ROLES.get(roles[i], [roles[i]])))
        else:
            args.append(any_argument(rng))
    return tuple(args)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    """A command name (known, hostile or random) and arguments."""
    name = draw(
        st.one_of(
            st.sampled_from(sorted(COMMANDS)),
            st.sampled_from(sorted(COMMANDS)),
            st.sampled_from(HOSTILE_NAMES),
            st.from_regex(r"[a-z_][a-z0-9_]{0,34}", fullmatch=True),
        )
    )
    return name, draw(argument_lists(name))


def encoded(name: str, args: tuple[str, ...]) -> bytes:
    return request(name, *args).encode()


@st.composite
def bad_payloads(draw: st.DrawFn) -> bytes:
    """A frame payload that is not a well-formed message."""
    name = draw(st.sampled_from(["pwd", "ls", "get", "help", "login", "nosuch"]))
    kind = draw(st.sampled_from(["prefix", "escape", "utf8", "control", "random"]))
    if kind == "prefix":
        prefixes = ["", "filetransfer", "FileTransfer ", "FTP", "FileTransfer\x00", "|"]
        prefix = draw(st.sampled_from(prefixes))
        return f"{prefix}|{name}|x".encode()
    if kind == "escape":
        field_text = draw(st.sampled_from(["%", "%2", "%zz", "a%", "%%", "%ff", "%c3%28", "%80"]))
        return f"FileTransfer|{name}|{field_text}".encode()
    if kind == "utf8":
        good = encoded(name, ("a.txt",))
        at = draw(st.integers(0, len(good)))
        bad = draw(
            st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
        )
        return good[:at] + bad + good[at:]
    if kind == "control":
        text = draw(st.text(st.characters(max_codepoint=0x1F), min_size=1, max_size=10))
        return f"FileTransfer|{name}{text}|{text}".encode()
    return draw(st.binary(min_size=1, max_size=100))


@st.composite
def hostile_streams(draw: st.DrawFn) -> bytes:
    """Frames of good requests, bad payloads and odd headers, junk, maybe mutated."""
    piece = st.one_of(
        requests().map(lambda r: encode_frame(encoded(*r))),
        bad_payloads().map(encode_frame),
        st.sampled_from([0, 1, MAX_FRAME_SIZE + 1, 2**31, 2**32 - 1]).map(header),
        st.integers(MAX_FRAME_SIZE + 1, 2**32 - 1).map(header),
        st.binary(max_size=40),
    )
    data = b"".join(draw(st.lists(piece, min_size=1, max_size=6)))
    return draw(mutate(data)) if draw(st.booleans()) else data


# -- checking what the server says ---------------------------------------------------------


def assert_well_formed(reply: Message) -> None:
    """A reply as section 3 of docs/PROTOCOL.md has them, and no internal error."""
    assert reply.status in ("ok", "error", "ready", "entry", "digest"), reply
    if reply.status == "error":
        assert len(reply.fields) == 3, f"malformed error reply {reply}"
        assert reply.fields[1].isdigit() and int(reply.fields[1]) in CODES, reply
        assert int(reply.fields[1]) != ErrorCode.INTERNAL, f"internal error: {reply}"
        assert reply.fields[2], f"an error without a text: {reply}"
    elif reply.status == "ready":
        assert len(reply.fields) in (2, 3) and all(f.isdigit() for f in reply.fields[1:]), reply
    elif reply.status == "digest":
        assert len(reply.fields) == 2 and re.fullmatch(r"[0-9a-f]{64}", reply.fields[1]), reply


def expected_error(name: str, args: tuple[str, ...], logged_in: bool) -> tuple[str, int] | None:
    """``(reply command, code)`` the generic checks give, or None if the command runs."""
    if not COMMAND_NAME.match(name):
        return "error", ErrorCode.BAD_REQUEST  # not a message at all
    spec = COMMANDS.get(name)
    if spec is None:
        return name, ErrorCode.UNKNOWN_COMMAND
    if spec.needs_login and not logged_in:
        return name, ErrorCode.NOT_LOGGED_IN
    if not spec.accepts(len(args)):
        return name, ErrorCode.BAD_REQUEST
    return None


def final_reply(session: RawSession) -> Message:
    """The reply that ends an answer (entries of a listing skipped); a hang fails."""
    while True:
        try:
            reply = session.recv()
        except TimeoutError:
            pytest.fail(f"the server did not answer within {READ_LIMIT} s")
        assert_well_formed(reply)
        if reply.status != "entry":
            return reply


def read_until_closed(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; and whether it ended with a reset."""
    parts: list[bytes] = []
    deadline = time.monotonic() + READ_LIMIT
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return b"".join(parts), True
        except TimeoutError:
            pytest.fail(f"the server neither answered nor closed within {READ_LIMIT} s")
        if not data:
            return b"".join(parts), False
        parts.append(data)


# -- the server tests ------------------------------------------------------------------------


def exercise(target: FuzzTarget, name: str, args: tuple[str, ...], logged_in: bool) -> None:
    """Send one request; check the answer and that the session goes on; check the server."""
    session = target.session(logged_in)
    try:
        session.send_raw(encode_frame(encoded(name, args)))
        reply = final_reply(session)
        event(f"reply {reply.status} {reply.fields[1] if reply.status == 'error' else ''}")
        expected = expected_error(name, args, logged_in)
        if expected is not None:
            assert reply.status == "error", f"{name}{args}: {reply}, expected error {expected}"
            assert (reply.command, int(reply.fields[1])) == expected, f"{name}{args}: {reply}"
        else:
            assert reply.command == name, f"{name}{args} answered by {reply}"
        if finish_handshake(session, name, reply, args):
            logged_in = logged_in or (name == "login" and reply.status == "ok")
            follow_up = "pwd" if logged_in else "help"
            session.request(follow_up)
            after = final_reply(session)
            assert (after.command, after.status) == (follow_up, "ok"), f"then {after}"
    finally:
        session.close()
    target.check()


class _Drop:
    """A sink for file data the test does not look at."""

    def write(self, data: bytes | memoryview) -> None:
        """Drop ``data``."""


def finish_handshake(
    session: RawSession, name: str, reply: Message, args: tuple[str, ...] = ()
) -> bool:
    """Call off a transfer the server got ready for; False if the session is over."""
    if reply.status == "ready" and name == "get":
        session.send(abort("get"))
    elif reply.status == "ready" and name == "put":
        count = int(reply.fields[1])
        if count > 1 << 20:
            return False
        session.send_raw(bytes(count))
        session.send(abort("put"))
        after = final_reply(session)
        assert (after.command, after.status, after.fields[1]) == (
            "put", "error", str(int(ErrorCode.TRANSFER_ABORTED)),
        ), after  # fmt: skip
    elif reply.status == "ready" and name == "fetch":  # the data and digest follow at once
        count = int(reply.fields[1])
        if count > 1 << 20:
            return False
        session.channel.recv_file(_Drop(), count, new_hasher())
        after = final_reply(session)
        assert (after.command, after.status) in {("fetch", "digest"), ("fetch", "error")}, after
    elif name == "send" and not args and reply.status == "error" and reply.fields[1] == "409":
        assert session.is_closed_by_server(READ_LIMIT), "send without an offer kept the session"
        return False
    elif name == "quit" and reply.status == "ok":
        assert session.is_closed_by_server(READ_LIMIT), "quit did not close the connection"
        return False
    elif reply.status == "error" and int(reply.fields[1]) == ErrorCode.TOO_MANY_FAILURES:
        return False
    return True


@pytest.mark.parametrize("logged_in", [False, True], ids=["before-login", "after-login"])
@pytest.mark.parametrize("name", sorted(COMMANDS))
@settings(server_settings, max_examples=SWEEP_EXAMPLES)
@given(data=st.data())
def test_every_command_with_fitting_missing_and_extra_arguments(
    target: FuzzTarget, name: str, logged_in: bool, data: st.DataObject
) -> None:
    exercise(target, name, data.draw(argument_lists(name), label="args"), logged_in)


@server_settings
@given(req=requests(), logged_in=st.booleans())
def test_any_request_gets_a_well_formed_answer_and_the_session_goes_on(
    target: FuzzTarget, req: tuple[str, tuple[str, ...]], logged_in: bool
) -> None:
    exercise(target, *req, logged_in)


@server_settings
@given(stream=hostile_streams(), logged_in=st.booleans())
def test_hostile_streams_get_well_formed_replies_or_a_close(
    target: FuzzTarget, stream: bytes, logged_in: bool
) -> None:
    session = target.session(logged_in)
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            session.send_raw(stream)
            session.sock.shutdown(socket.SHUT_WR)  # the server must close once it sees the end
        output, reset = read_until_closed(session.sock)
    finally:
        session.close()
    decoder = FrameDecoder()
    decoder.feed(output)
    replies = []
    while (frame := decoder.next_frame()) is not None:
        replies.append(Message.parse(frame))
    assert decoder.buffered == 0 or reset, f"the server sent half a frame: {output[-40:]!r}"
    for reply in replies:
        assert_well_formed(reply)
        event(f"reply {reply.status} {reply.fields[1] if reply.status == 'error' else ''}")
    event(f"{min(len(replies), 5)} replies" + (" then a reset" if reset else ""))
    target.check()


@server_settings
@given(
    length=st.one_of(
        st.sampled_from([0, MAX_FRAME_SIZE + 1, 2**32 - 1]),
        st.integers(MAX_FRAME_SIZE + 1, 2**32 - 1),
    ),
    junk=st.binary(max_size=2000),
    logged_in=st.booleans(),
)
def test_a_bad_length_prefix_is_answered_413_and_closed(
    target: FuzzTarget, length: int, junk: bytes, logged_in: bool
) -> None:
    session = target.session(logged_in)
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            session.send_raw(header(length) + junk)
        try:
            reply = session.recv()
        except TimeoutError:
            pytest.fail("no answer to a bad length prefix")
        assert (reply.command, reply.status, reply.fields[1:2]) == (
            "error", "error", (str(int(ErrorCode.FRAMING)),),
        ), reply  # fmt: skip
        assert session.is_closed_by_server(READ_LIMIT), "the connection was left open"
    finally:
        session.close()
    target.check()


@pytest.mark.parametrize("name", ["__init__", "_private", "handle", "setup", "server", "finish"])
@pytest.mark.parametrize("logged_in", [False, True], ids=["before-login", "after-login"])
def test_handler_internals_are_unreachable(target: FuzzTarget, name: str, logged_in: bool) -> None:
    """The names the issue lists, with and without arguments: refused, the session goes on."""
    code = ErrorCode.BAD_REQUEST if name.startswith("_") else ErrorCode.UNKNOWN_COMMAND
    session = target.session(logged_in)
    try:
        for args in ((), ("x",), ("x", "y", "z")):
            reply = session.call(name, *args)
            assert_well_formed(reply)
            assert reply.status == "error" and int(reply.fields[1]) == code, reply
        follow_up = "pwd" if logged_in else "help"
        assert session.call(follow_up).status == "ok"
    finally:
        session.close()
    target.check()


# -- PROXY protocol headers (issue 13) ---------------------------------------------------------


@pytest.fixture(scope="module")
def proxied_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with ``proxy_protocol: true``, reached directly (no re-chunking proxy)."""
    root = tmp_path_factory.mktemp("fuzz-proxy")
    homes = root / "homes"
    homes.mkdir()
    users = root / "users.yaml"
    add_user(users, homes, ALICE, ALICE_PASSWORD, rounds=4)
    running = start_server(
        users, homes, proxied=False, proxy_protocol=True, max_sessions_per_ip=0, ban_failures=0
    )
    try:
        yield running
    finally:
        stop_server(running)


@st.composite
def proxy_openings(draw: st.DrawFn) -> bytes:
    """Valid, mutated, truncated and random PROXY headers, maybe followed by frames."""
    source = (draw(st.ip_addresses().map(str)), draw(st.integers(0, 65535)))
    good = draw(st.sampled_from([encode_v1, encode_v2]))(source, (HOST, 9002))
    kind = draw(st.sampled_from(["good", "mutated", "truncated", "random", "v1-junk"]))
    if kind == "mutated":
        data = bytearray(good)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        good = bytes(data)
    elif kind == "truncated":
        good = good[: draw(st.integers(0, len(good) - 1))]
    elif kind == "random":
        good = draw(st.binary(max_size=300))
    elif kind == "v1-junk":
        good = b"PROXY " + draw(st.binary(max_size=200))
    tail = draw(st.lists(requests().map(lambda r: encode_frame(encoded(*r))), max_size=2))
    return good + b"".join(tail)


@server_settings
@given(opening=proxy_openings())
def test_proxy_headers_are_refused_or_accepted_without_harm(
    proxied_target: RunningServer, opening: bytes
) -> None:
    """Whatever comes first, the server answers well-formed frames or closes, and serves on."""
    port = proxied_target.direct_port
    witness = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)
    sock = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)
    try:
        witness.sendall(encode_v2(("10.200.0.1", 1), (HOST, port)))
        checked = Channel(witness)
        checked.send(request("login", ALICE, ALICE_PASSWORD))
        assert checked.recv().status == "ok"
        with contextlib.suppress(OSError):  # the server may have closed already
            sock.sendall(opening)
            sock.shutdown(socket.SHUT_WR)
        output, _reset = read_until_closed(sock)
        decoder = FrameDecoder()
        decoder.feed(output)
        while (frame := decoder.next_frame()) is not None:
            assert_well_formed(Message.parse(frame))
        checked.send(request("pwd"))
        assert checked.recv() == Message("pwd", ("ok", "/"))
    finally:
        sock.close()
        witness.close()
