"""curl's -H rules on every request path, seen as the exact request heads a raw server records.

``-H 'Name:'`` removes a field streamer sends by itself, ``-H 'Name;'`` sends it empty, and
``-H @FILE`` reads such lines from FILE: for a single download (the raw fast path and the
aiohttp engine), ``--split``, bulk runs on the lane (one process and worker processes), and
uploads (``put`` on the raw path and from stdin on the engine, ``post -F``). Removing a field
that frames the request, or one a protocol needs, is a usage error (exit 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streamer import Client, ClientConfig, UsageError
from tests.helpers import ENV, Run, one_error_line, streamer

BIG = bytes(range(256)) * 8192  # 2 MiB: --split 2 makes two 1 MiB segments of it
SMALL = b"small body " * 50  # a bulk job the lane takes
ETAG = '"v1"'


@dataclass
class Recorder:
    """A raw HTTP/1.1 server on 127.0.0.1 that keeps every request head byte for byte."""

    heads: list[bytes] = field(default_factory=list)
    url: str = ""
    tus_offset: int = 0

    def fields(self) -> list[list[tuple[str, str]]]:
        """Each head's field lines as (lower-case name, value)."""
        out = []
        for head in self.heads:
            lines = head.decode("latin-1").split("\r\n")[1:]
            pairs = [line.partition(":") for line in lines if line]
            out.append([(name.lower(), value.strip()) for name, _, value in pairs])
        return out


def _length(head: bytes) -> tuple[int, bool]:
    lowered = head.lower()
    found = re.search(rb"\r\ncontent-length: *([0-9]+)", lowered)
    return (int(found.group(1)) if found else 0), b"transfer-encoding: chunked" in lowered


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> None:
    length, chunked = _length(head)
    if not chunked:
        await reader.readexactly(length)
        return
    while True:  # RFC 9112 7.1: size line, data, CRLF; a zero size and the trailer end it
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return
        await reader.readexactly(size + 2)


TUS = b"Tus-Resumable: 1.0.0\r\n"


def _tus_answer(method: bytes, head: bytes, rec: Recorder) -> bytes:
    """Just enough of a tus 1.0.0 server (creation) for one small upload."""
    if method == b"OPTIONS":
        return b"HTTP/1.1 204 No Content\r\n" + TUS + b"Tus-Version: 1.0.0\r\n"
    if method == b"POST":
        return b"HTTP/1.1 201 Created\r\n" + TUS + b"Location: /files/1\r\nContent-Length: 0\r\n"
    if method == b"PATCH":
        rec.tus_offset += _length(head)[0]
    offset = b"Upload-Offset: %d\r\nContent-Length: 0\r\n" % rec.tus_offset
    return (
        (b"HTTP/1.1 204 No Content\r\n" if method == b"PATCH" else b"HTTP/1.1 200 OK\r\n")
        + TUS
        + offset
    )


def _answer(head: bytes, rec: Recorder) -> bytes:
    method, target = head.split(b" ", 2)[:2]
    if target == b"/redirect":
        return b"HTTP/1.1 302 Found\r\nLocation: /big\r\nContent-Length: 0\r\n\r\n"
    if target.startswith(b"/files"):
        return _tus_answer(method, head, rec) + b"\r\n"
    if method in (b"PUT", b"POST"):
        return b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    body = SMALL if target.startswith(b"/small") else BIG
    asked = re.search(rb"\r\nrange: *bytes=([0-9]+)-([0-9]*)", head.lower())
    common = f"ETag: {ETAG}\r\nAccept-Ranges: bytes\r\n".encode()
    if asked is None:
        return b"HTTP/1.1 200 OK\r\n" + common + b"Content-Length: %d\r\n\r\n" % len(body) + body
    start = int(asked.group(1))
    end = min(int(asked.group(2) or len(body) - 1), len(body) - 1)
    part = body[start : end + 1]
    return (
        b"HTTP/1.1 206 Partial Content\r\n"
        + common
        + f"Content-Range: bytes {start}-{end}/{len(body)}\r\n".encode()
        + b"Content-Length: %d\r\n\r\n" % len(part)
        + part
    )


@contextlib.asynccontextmanager
async def recorder() -> AsyncIterator[Recorder]:
    """Serve keep-alive connections, one request after another, until the test ends."""
    rec = Recorder()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            for _ in range(1000):  # bounded: no test sends this many on one connection
                head = await reader.readuntil(b"\r\n\r\n")
                rec.heads.append(head)
                await _read_body(reader, head)
                writer.write(_answer(head, rec))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    rec.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield rec
    finally:
        server.close()
        await server.wait_closed()


# --- the paths: each runs one CLI process with the -H arguments given --------------------------


async def _get(rec: Recorder, tmp: Path, h: list[str]) -> Run:
    return await streamer("get", f"{rec.url}/big", "-o", str(tmp / "out"), "-q", *h)


async def _get_engine(rec: Recorder, tmp: Path, h: list[str]) -> Run:
    env = {"STREAMER_FAST_BODY": "0"}  # fastopen's switch: the body goes through aiohttp
    return await streamer("get", f"{rec.url}/big", "-o", str(tmp / "out"), "-q", *h, env=env)


async def _split(rec: Recorder, tmp: Path, h: list[str]) -> Run:
    out = str(tmp / "out")
    return await streamer("get", f"{rec.url}/big", "--split", "2", "-o", out, "-q", *h)


def _manifest(rec: Recorder, tmp: Path) -> str:
    lines = [json.dumps({"url": f"{rec.url}/small{i}", "path": f"f{i}"}) for i in range(4)]
    (tmp / "m.jsonl").write_text("\n".join(lines) + "\n")
    return str(tmp / "m.jsonl")


async def _bulk(rec: Recorder, tmp: Path, h: list[str]) -> Run:
    return await streamer("get", "-i", _manifest(rec, tmp), "-d", str(tmp), "-q", *h)


async def _bulk_workers(rec: Recorder, tmp: Path, h: list[str]) -> Run:
    manifest = _manifest(rec, tmp)
    return await streamer("get", "-i", manifest, "-d", str(tmp), "--processes", "2", "-q", *h)


async def _put(rec: Recorder, tmp: Path, h: list[str]) -> Run:
    (tmp / "src").write_bytes(SMALL)
    return await streamer("put", str(tmp / "src"), f"{rec.url}/up", "-q", *h)


async def _put_stdin(rec: Recorder, tmp: Path, h: list[str]) -> Run:
    """A stream source takes the aiohttp path (chunked, no file to sendfile)."""
    (tmp / "src").write_bytes(SMALL)
    with (tmp / "src").open("rb") as stdin:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "streamer", "put", "-", f"{rec.url}/up", "-q", *h),
            env=ENV,
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def _post_form(rec: Recorder, tmp: Path, h: list[str]) -> Run:
    (tmp / "src").write_bytes(SMALL)
    return await streamer("post", "-F", f"file=@{tmp / 'src'}", "-F", "a=b", f"{rec.url}/up", *h)


Path_ = Callable[[Recorder, Path, list[str]], Awaitable[Run]]


async def _tus(rec: Recorder, tmp: Path, h: list[str]) -> Run:
    (tmp / "src").write_bytes(SMALL)
    env = {"XDG_STATE_HOME": str(tmp / "state")}  # where the upload URL is remembered
    return await streamer("put", "--tus", str(tmp / "src"), f"{rec.url}/files", "-q", *h, env=env)


PATHS: dict[str, Path_] = {
    "get": _get,
    "get-engine": _get_engine,
    "get-split": _split,
    "get-i": _bulk,
    "get-i-processes": _bulk_workers,
    "put": _put,
    "put-stdin": _put_stdin,
    "post-F": _post_form,
    "put-tus": _tus,
}
# How many requests each path makes at least (so a path that sent nothing cannot pass).
LEAST = {"get-split": 2, "get-i": 4, "get-i-processes": 4, "put-tus": 3}

Fields = list[tuple[str, str]]


def _no(name: str) -> Callable[[Fields], None]:
    def check(fields: Fields) -> None:
        assert name not in [n for n, _ in fields], fields

    return check


def _empty(fields: Fields) -> None:
    assert [v for n, v in fields if n == "user-agent"] == [""], fields
    assert [v for n, v in fields if n == "x-empty"] == [""], fields


def _from_file(fields: Fields) -> None:
    assert [v for n, v in fields if n == "x-token"] == ["t0k3n"], fields
    _no("accept")(fields)


EDITS: dict[str, tuple[list[str], Callable[[Fields], None]]] = {
    "remove-user-agent": (["-H", "User-Agent:"], _no("user-agent")),
    "remove-accept": (["-H", "Accept:"], _no("accept")),
    "empty-by-semicolon": (["-H", "User-Agent;", "-H", "X-Empty;"], _empty),
    "from-file": (["-H", "@{tmp}/headers.txt"], _from_file),
}


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("path", PATHS)
async def test_header_rules_hold_on_every_request_path(
    path: str, edit: str, tmp_path: Path
) -> None:
    """Every request of every path honours -H 'Name:' (removed), 'Name;' (sent empty) and
    -H @FILE (its lines, CRLF and blank lines skipped), and still sends its Host."""
    (tmp_path / "headers.txt").write_bytes(b"X-Token: t0k3n\r\n\r\nAccept:\r\n")
    args, check = EDITS[edit]
    async with recorder() as rec:
        run = await PATHS[path](rec, tmp_path, [a.format(tmp=tmp_path) for a in args])
    assert run.rc == 0, run
    assert len(rec.heads) >= LEAST.get(path, 1), rec.heads
    for fields in rec.fields():
        assert [n for n, _ in fields].count("host") == 1, fields
        check(fields)


async def test_put_without_content_type_and_get_without_accept_encoding(tmp_path: Path) -> None:
    """-H 'Content-Type:' leaves a put's default type out, and -H 'Accept-Encoding:' a
    download's identity coding, on the raw paths and on the engine alike."""
    edits = ["-H", "Content-Type:", "-H", "Accept-Encoding:"]
    async with recorder() as rec:
        for path in ("put", "put-stdin", "get", "get-engine"):
            assert (await PATHS[path](rec, tmp_path, edits)).rc == 0
    assert len(rec.heads) == 4
    for fields in rec.fields():
        names = [n for n, _ in fields]
        assert "content-type" not in names and "accept-encoding" not in names, fields


@pytest.mark.parametrize("name", ["Host", "Content-Length", "Transfer-Encoding"])
@pytest.mark.parametrize("command", ["get", "put"])
async def test_removing_a_framing_field_is_a_usage_error(
    command: str, name: str, tmp_path: Path
) -> None:
    """-H 'Host:' / 'Content-Length:' / 'Transfer-Encoding:' is refused (exit 2, one line
    saying why) before any request: streamer never sends a request it cannot frame."""
    (tmp_path / "src").write_bytes(SMALL)
    async with recorder() as rec:
        where = [str(tmp_path / "src"), f"{rec.url}/up"]
        if command == "get":
            where = [f"{rec.url}/big", "-o", str(tmp_path / "out")]
        run = await streamer(command, *where, "-H", f"{name}:")
    one_error_line(run, 2, f"cannot remove {name.lower()}", "cannot frame")
    assert rec.heads == []


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["put", "--tus", "{src}", "{url}/files", "-H", "Tus-Resumable:"], ["tus-resumable"]),
        (["put", "--tus", "{src}", "{url}/files", "-H", "Content-Type:"], ["offset+octet"]),
        (["post", "-F", "f=@{src}", "{url}/up", "-H", "Content-Type:"], ["boundary"]),
        (["put", "{src}", "s3://bucket/key", "-H", "User-Agent:"], ["S3", "signed"]),
    ],
    ids=["tus-resumable", "tus-content-type", "form-content-type", "s3-any"],
)
async def test_removing_a_field_a_protocol_needs_is_a_usage_error(
    argv: list[str], fragments: list[str], tmp_path: Path
) -> None:
    """tus cannot work without Tus-Resumable or its PATCH type, a form without the
    Content-Type naming its boundary, and an S3 request is signed: -H cannot remove them
    (exit 2, one line saying why), and nothing is sent."""
    (tmp_path / "src").write_bytes(SMALL)
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "AWS_ACCESS_KEY_ID": "k"}
    async with recorder() as rec:
        args = [a.format(src=tmp_path / "src", url=rec.url) for a in argv]
        run = await streamer(*args, env={**env, "AWS_SECRET_ACCESS_KEY": "s"})
    one_error_line(run, 2, "-H", *fragments)
    assert rec.heads == []


async def test_an_unreadable_header_file_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    """-H @FILE with no such FILE: exit 2, one line naming the file, no request."""
    async with recorder() as rec:
        missing = tmp_path / "no-such-headers"
        run = await streamer(
            "get", f"{rec.url}/big", "-o", str(tmp_path / "o"), "-H", f"@{missing}"
        )
    one_error_line(run, 2, "cannot read header file", str(missing))
    assert rec.heads == []


async def test_a_malformed_line_in_a_header_file_is_not_echoed(tmp_path: Path) -> None:
    """A bad line read from -H @FILE is refused as on the command line: its first word is
    named, the rest (often a credential) is not printed."""
    (tmp_path / "h").write_text("X-Fine: yes\nAuthorization Bearer CANARY-7f3e\n")
    async with recorder() as rec:
        run = await streamer(
            "get", f"{rec.url}/big", "-o", str(tmp_path / "o"), "-H", f"@{tmp_path / 'h'}"
        )
    one_error_line(run, 2, "bad header", "Authorization")
    assert "CANARY" not in run.err + run.out
    assert rec.heads == []


def test_the_api_refuses_omitting_framing_fields_and_contradictions() -> None:
    """ClientConfig.omit_headers (the API's -H 'Name:') lower-cases names, refuses Host /
    Content-Length / Transfer-Encoding, and a name both set in headers and omitted."""
    assert ClientConfig(omit_headers=["User-Agent", "ACCEPT"]).omit_headers == {
        "user-agent",
        "accept",
    }
    with pytest.raises(UsageError, match="cannot frame"):
        ClientConfig(omit_headers={"Transfer-Encoding"})
    with pytest.raises(UsageError, match="both in headers and in omit_headers"):
        ClientConfig(headers={"Accept": "text/plain"}, omit_headers={"accept"})


@pytest.mark.parametrize("fast", ["1", "0"], ids=["raw", "engine"])
async def test_a_removed_field_stays_removed_after_a_redirect(fast: str, tmp_path: Path) -> None:
    """The next hop of a redirect (RFC 9110 15.4) is built without the removed fields too,
    on the raw download path and on the engine."""
    env = {"STREAMER_FAST_BODY": fast}
    async with recorder() as rec:
        url, out = f"{rec.url}/redirect", str(tmp_path / "o")
        run = await streamer("get", url, "-o", out, "-H", "User-Agent:", "-H", "Accept:", env=env)
    assert run.rc == 0, run
    assert [h.split(b" ")[1] for h in rec.heads] == [b"/redirect", b"/big"]
    for fields in rec.fields():
        assert not {"user-agent", "accept"} & {n for n, _ in fields}, fields


async def test_the_api_omits_fields_on_stream_and_upload(tmp_path: Path) -> None:
    """Client(omit_headers=...) leaves those fields out of `stream` and `upload` requests;
    a field the call itself gives is sent (only the client's own defaults are omitted); a
    form's Content-Type cannot be omitted."""
    (tmp_path / "src").write_bytes(SMALL)
    omit = {"User-Agent", "Accept", "Content-Type"}
    async with recorder() as rec, Client(omit_headers=omit, trust_env=False) as client:
        async with client.stream(f"{rec.url}/small") as st:
            assert await st.read() == SMALL
        await client.upload(f"{rec.url}/up", tmp_path / "src")
        await client.upload(f"{rec.url}/up", SMALL, headers={"Accept": "text/plain"})
        with pytest.raises(UsageError, match="boundary"):  # as post -F: a form needs its type
            await client.upload_form(f"{rec.url}/up", fields={"a": "b"})
    first, second, third = rec.fields()
    for fields in (first, second):
        assert not {"user-agent", "accept", "content-type"} & {n for n, _ in fields}, fields
    assert ("accept", "text/plain") in third and "user-agent" not in dict(third), third
