"""A small aiohttp app that answers the way real servers do in the curl-parity tests.

- ``/big/{n}``: n bytes (a repeating pattern) with Content-Length, written 64 KiB at a time;
- ``/s/{code}``: that status with an empty body and no Location; ``/s/{code}/loc``: the same
  status with ``Location: /ok``;
- ``/ok``: ``ok\\n``; ``/nm``: ``304 Not Modified`` to every request;
- ``/cd``: a body named ``report.pdf`` by Content-Disposition.
"""

from __future__ import annotations

from aiohttp import web

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


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/big/{n}", _big)
    app.router.add_get("/s/{code}", _status)
    app.router.add_get("/s/{code}/loc", _status)
    app.router.add_get("/ok", _ok)
    app.router.add_get("/nm", _not_modified)
    app.router.add_get("/cd", _cd)
    return app
