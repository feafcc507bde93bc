"""Hostile peers (issue 10): a server that stacks codings, drips heads, never stops sending
interim answers or stops reading an upload; each ends with a typed error and curl's exit code.

Servers are raw asyncio sockets on 127.0.0.1 (`tests.faults.RawServer` or small ones here);
the CLI runs as a real child process.
"""

from __future__ import annotations

import gzip
from pathlib import Path

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
