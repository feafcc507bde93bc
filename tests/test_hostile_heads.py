"""Property: hostile response heads never break either engine (issue 10).

Random status lines, header names and values with control bytes, huge or repeated fields and
every mix of Content-Length and Transfer-Encoding are served by a raw socket on 127.0.0.1, to
the full engine (`Client.download`) and to the small-file lane (`Client.download_many`, which
hands what it cannot judge to the full engine). The outcome is always either a success whose
file holds exactly the body the framing promised, or a typed `StreamerError`; never another
exception, never a hang, and never a file under the final name after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer import Client
from streamer.core.retry import RetryPolicy
from streamer.errors import StreamerError
from streamer.transfer.bulk import BulkOptions

EXAMPLE_LIMIT = 20.0  # seconds one example may take (both engines) before it counts as a hang
CLIENT = {"connect_timeout": 5.0, "read_timeout": 3.0, "trust_env": False}
NO_RETRY = RetryPolicy(retries=0)

# Framings whose body the file must hold exactly on success; for the others (a malformed or
# unusual length or coding) a success may only hold a prefix of the bytes sent.
EXACT = frozenset({"length", "close", "chunked", "both"})


@dataclass(frozen=True)
class Answer:
    wire: bytes
    body: bytes
    framing: str
    status_ok: bool  # a well-formed "HTTP/1.1 200" status line


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, at = bytearray(), 0
    for size in sizes:
        if at >= len(body):
            break
        piece = body[at : at + max(1, size)]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
        at += len(piece)
    if at < len(body):
        out += b"%x\r\n%s\r\n" % (len(body) - at, body[at:])
    return bytes(out + b"0\r\n\r\n")


_NO_LF = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" "))
_TOKENS = st.sampled_from([b"X-A", b"ETag", b"Content-Type", b"Content-Disposition", b"Connection"])
_NAMES = st.one_of(_TOKENS, _TOKENS, _NO_LF.map(lambda b: b.replace(b":", b"")).filter(bool))
_PLAIN = st.sampled_from([b"close", b"keep-alive", b'"abc"', b"attachment; filename=x", b""])
_VALUES = st.one_of(_PLAIN, _PLAIN, _NO_LF)  # binary: control bytes, obs-text, NUL
_OK = st.just(b"HTTP/1.1 200 OK")
_STATUS = st.one_of(
    _OK,
    _OK,
    _OK,
    st.builds(
        lambda code, reason: b"HTTP/1.1 %d %s" % (code, reason),
        st.integers(0, 1000),
        _NO_LF,
    ),
    _NO_LF,  # anything at all
)
_BAD_LENGTHS = [b"-1", b"1e3", b" 12 ", b"0x10", b"99999999999999999999", b"", b"5, 6", b"+5"]
_OTHER_TE = [b"gzip", b"identity", b"chunked, gzip", b"x", b"chunked\x01"]


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    status = draw(_STATUS)
    body = draw(st.binary(max_size=300))
    framing = draw(
        st.sampled_from(
            ["length", "close", "chunked", "both", "bad-length", "two-lengths", "te-other"]
        )
    )
    fields = draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=4))
    if draw(st.booleans()):  # the same field many times
        fields += [(b"X-Repeat", b"v")] * draw(st.integers(1, 200))
    if draw(st.integers(0, 9)) == 0:  # one huge field line
        fields.append((b"X-Huge", b"h" * draw(st.integers(8000, 70000))))
    payload = body
    if framing == "length":
        fields.append((b"Content-Length", b"%d" % len(body)))
    elif framing in ("chunked", "both"):
        fields.append((b"Transfer-Encoding", b"chunked"))
        if framing == "both":
            fields.append((b"Content-Length", b"%d" % draw(st.integers(0, 400))))
        payload = _chunked(body, draw(st.lists(st.integers(1, 64), max_size=8)))
    elif framing == "bad-length":
        fields.append((b"Content-Length", draw(st.sampled_from(_BAD_LENGTHS))))
    elif framing == "two-lengths":
        fields.append((b"Content-Length", b"%d" % len(body)))
        fields.append((b"Content-Length", b"%d" % draw(st.integers(0, 400))))
    elif framing == "te-other":
        fields.append((b"Transfer-Encoding", draw(st.sampled_from(_OTHER_TE))))
    fields = draw(st.permutations(fields))
    head = b"\r\n".join([status, *(name + b": " + value for name, value in fields)])
    wire = head + b"\r\n\r\n" + payload
    return Answer(wire, body, framing, status == b"HTTP/1.1 200 OK")


@contextlib.asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[str]:
    """Answer every connection with `answer.wire`, then close."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            async with asyncio.timeout(EXAMPLE_LIMIT):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer.wire)
                await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/f.bin"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def _judge(answer: Answer, target: Path, error: BaseException | None) -> None:
    if error is not None:
        assert isinstance(error, StreamerError), f"foreign exception: {error!r}"
        assert not isinstance(error, aiohttp.ClientError), repr(error)
        assert not target.exists(), f"a file under the final name after {error!r}"
        return
    if answer.wire.startswith(b"HTTP/1.1 304 ") and not target.exists():
        return  # Not Modified: no body, so no file is made (RFC 9110 15.4.5; as curl)
    saved = target.read_bytes()
    if answer.status_ok and answer.framing in EXACT:
        assert saved == answer.body, (answer.framing, len(saved), len(answer.body))
    else:
        assert answer.body.startswith(saved) or answer.wire.endswith(saved), answer.framing


async def _both_engines(answer: Answer, work: Path) -> None:
    async with serving(answer) as url, Client(**CLIENT) as client:  # type: ignore[arg-type]
        target, error = work / "full" / "f.bin", None
        target.parent.mkdir()
        try:
            await client.download(url, target, retry=NO_RETRY)
        except Exception as exc:  # judged below: must be a StreamerError
            error = exc
        _judge(answer, target, error)
        out = work / "lane"
        options = BulkOptions(retry=NO_RETRY, quick=True)
        results = [r async for r in client.download_many([url], out, options)]
        assert len(results) == 1
        _judge(answer, out / "f.bin", results[0].error)


@settings(max_examples=80)
@given(answers())
def test_hostile_heads_end_in_exact_bytes_or_a_typed_error(answer: Answer) -> None:
    """Any response head: success with exact bytes, or a typed StreamerError and no file."""
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:

        async def bounded() -> None:
            async with asyncio.timeout(EXAMPLE_LIMIT):
                await _both_engines(answer, work)

        asyncio.run(bounded())
    finally:
        shutil.rmtree(work, ignore_errors=True)
