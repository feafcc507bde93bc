"""A small aiohttp app that answers the way real servers do in the curl-parity tests.

- ``/big/{n}``: n bytes (a repeating pattern) with Content-Length, written 64 KiB at a time;
- ``/s/{code}``: that status with an empty body and no Location; ``/s/{code}/loc``: the same
  status with ``Location: /ok``;
- ``/ok``: ``ok\\n``; ``/nm``: ``304 Not Modified`` to every request;
- ``/cd``: a body named ``report.pdf`` by Content-Disposition;
- ``/enc/{coding}``: the request's Accept-Encoding, then TEXT, encoded with br or zstd;
  ``/bomb/{coding}``: 256 MiB of zeros as a small br or zstd body;
- ``/dated``: ``ok\n`` last modified in 2020, 304 to an If-Modified-Since from then on;
- ``POST /form``: 200, recording the body with its boundary replaced by BOUNDARY in
  ``app[FORMS]``;
- ``PUT /put/...``: 201, recording the raw path, Transfer-Encoding and body in ``app[PUTS]``;
- ``/signed/{mac}``: 200 only when `mac` is the HMAC-SHA256 (hex, 16 digits) of the raw query
  as it arrived on the wire, as S3 and CDNs check signed URLs; 403 otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

import brotli
import zstandard
from aiohttp import web

KEY = b"curl-parity-signing-key"
PUTS = web.AppKey("puts", list)
FORMS = web.AppKey("forms", list)
DATED = "Wed, 01 Jan 2020 00:00:00 GMT"
TEXT = b"".join(b"line %d of a compressible body\n" % i for i in range(2000))
MiB = 1 << 20

PIECE = 1 << 16


def pattern(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


async def _big(request: web.Request) -> web.StreamResponse:
    n = int(request.match_info["n"])
    resp = web.StreamResponse(headers={"Content-Length": str(n)})
    await resp.prepare(request)
    block = pattern(PIECE)
    sent = 0
    while sent < n:
        piece = block[: min(PIECE, n - sent)]
        await resp.write(piece)
        sent += len(piece)
    await resp.write_eof()
    return resp


async def _status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    headers = {"Location": "/ok"} if request.path.endswith("/loc") else {}
    return web.Response(status=code, headers=headers, body=b"")


async def _ok(request: web.Request) -> web.Response:
    return web.Response(body=b"ok\n")


async def _not_modified(request: web.Request) -> web.Response:
    return web.Response(status=304)


async def _cd(request: web.Request) -> web.Response:
    return web.Response(
        body=b"%PDF-", headers={"Content-Disposition": 'attachment; filename="report.pdf"'}
    )


def sign(raw_query: str) -> str:
    return hmac.new(KEY, raw_query.encode("ascii"), hashlib.sha256).hexdigest()[:16]


async def _signed(request: web.Request) -> web.Response:
    raw_query = request.raw_path.partition("?")[2]  # the request-target as sent
    ok = hmac.compare_digest(sign(raw_query), request.match_info["mac"])
    return web.Response(status=200 if ok else 403, body=b"signed ok\n" if ok else b"")


def _encode(coding: str, data: bytes) -> bytes:
    if coding == "br":
        return bytes(brotli.compress(data, quality=5))
    return bytes(zstandard.ZstdCompressor().compress(data))


async def _enc(request: web.Request) -> web.Response:
    coding = request.match_info["coding"]
    asked = request.headers.get("Accept-Encoding", "").encode() + b"\n"
    if request.query.get("echo") == "0":
        asked = b""
    return web.Response(body=_encode(coding, asked + TEXT), headers={"Content-Encoding": coding})


@functools.cache
def bomb(coding: str) -> bytes:
    zeros = bytes(MiB)
    if coding == "br":
        c = brotli.Compressor(quality=5)
        return b"".join([*(c.process(zeros) for _ in range(256)), c.finish()])
    z = zstandard.ZstdCompressor().compressobj()
    return b"".join([*(z.compress(zeros) for _ in range(256)), z.flush()])


async def _bomb(request: web.Request) -> web.Response:
    coding = request.match_info["coding"]
    return web.Response(body=bomb(coding), headers={"Content-Encoding": coding})


async def _dated(request: web.Request) -> web.Response:
    since = request.if_modified_since
    if since is not None and since.timestamp() >= 1577836800:  # RFC 9110 13.1.3
        return web.Response(status=304)
    return web.Response(body=b"ok\n", headers={"Last-Modified": DATED})


async def _put(request: web.Request) -> web.Response:
    body = await request.read()
    te = request.headers.get("Transfer-Encoding", "")
    request.app[PUTS].append((request.raw_path, te, body))
    return web.Response(status=201, body=b"")


async def _form(request: web.Request) -> web.Response:
    boundary = request.content_type == "multipart/form-data" and request.headers[
        "Content-Type"
    ].partition("boundary=")[2].strip('"')
    body = await request.read()
    request.app[FORMS].append(body.replace(f"--{boundary}".encode(), b"--BOUNDARY"))
    return web.Response(body=b"")


def make_app() -> web.Application:
    app = web.Application()
    app[PUTS] = []
    app[FORMS] = []
    app.router.add_post("/form", _form)
    app.router.add_get("/dated", _dated)
    app.router.add_put("/put/{tail:.*}", _put)
    app.router.add_get("/big/{n}", _big)
    app.router.add_get("/s/{code}", _status)
    app.router.add_get("/s/{code}/loc", _status)
    app.router.add_get("/ok", _ok)
    app.router.add_get("/nm", _not_modified)
    app.router.add_get("/cd", _cd)
    app.router.add_get("/enc/{coding}", _enc)
    app.router.add_get("/bomb/{coding}", _bomb)
    app.router.add_get("/signed/{mac}", _signed)
    return app
