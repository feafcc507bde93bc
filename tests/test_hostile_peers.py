"""Hostile peers (issue 10): a server that stacks codings, drips heads, never stops sending
interim answers or stops reading an upload; each ends with a typed error and curl's exit code.

Servers are raw asyncio sockets on 127.0.0.1 (`tests.faults.RawServer` or small ones here);
the CLI runs as a real child process.
"""

from __future__ import annotations

import gzip
import ssl
from pathlib import Path

import pytest

from streamer.core.http1 import simple_request
from streamer.lane.connection import Lane, Timeouts
from tests.faults import End, RawFactory, head
from tests.helpers import one_error_line, streamer


async def test_cli_refuses_a_thousand_stacked_gzip_codings(
    raw_server: RawFactory, tmp_path: Path
) -> None:
    """--compressed against 1,000 stacked gzip codings: one line, exit 61, no file."""
    body = b"x"
    for _ in range(1000):
        body = gzip.compress(body, mtime=0)
    coding = ", ".join(["gzip"] * 1000)
    srv = await raw_server(
        [head(Content_Encoding=coding, Content_Length=len(body), Connection="close") + body],
        End.CLOSE,
    )
    target = tmp_path / "out"
    run = await streamer("get", "--compressed", "-o", str(target), srv.url)
    one_error_line(run, 61, "1000 codings")
    assert not target.exists()


async def test_lane_hands_one_byte_chunks_to_the_sink_in_reads_not_chunks(
    raw_server: RawFactory,
) -> None:
    """The lane's work per chunked body is linear and per read, not per chunk: 200 KB of
    one-byte chunks reach the sink whole in far fewer calls than chunks (one write each)."""
    body = bytes(range(256)) * 800
    wire = b"".join(b"1\r\n%c\r\n" % byte for byte in body) + b"0\r\n\r\n"
    srv = await raw_server([head(Transfer_Encoding="chunked") + wire], End.CLOSE)
    origin, target = simple_request(srv.url) or pytest.fail("not simple")
    lane = Lane(Timeouts(5.0, 10.0, None), ssl.create_default_context)
    got, calls = bytearray(), [0]

    def sink(piece: memoryview) -> None:
        calls[0] += 1
        got.extend(piece)

    try:
        reply = await lane.get(origin, target, [], sink=sink, max_body=1 << 20, url=srv.url)
    finally:
        lane.close()
    assert reply.read and bytes(got) == body
    assert calls[0] <= len(body) // 64, calls[0]
