"""Property: whatever name a URL or a Content-Disposition carries, the file lands inside the
output directory as one component that fits NAME_MAX with its helper names, and no file
outside the directory changes. Both engines: bulk jobs on the lane and on the full engine
(names from the URL), and `Client.download` with ``remote_name`` (Content-Disposition).
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer import Client, StreamerError
from streamer.core.manifest import Job
from streamer.core.names import HELPER_SUFFIXES, NAME_MAX
from streamer.errors import UsageError
from streamer.transfer.bulk import BulkOptions, download_many

BODY = b"hostile names\n" * 10
SENTINEL = b"outside the output directory\n"
LONGEST = max(HELPER_SUFFIXES, key=len)

HOSTILE = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        [
            "..",
            ".",
            "../../outside/victim",
            "..%2F..%2Foutside%2Fvictim",
            "a/../../b",
            "a\\..\\..\\b",
            "/etc/passwd",
            "C:evil",
            "CON",
            "nul.txt",
            ".streamer-journal.jsonl",
            "victim.part",
            "x.part.json",
            "x.part.json.tmp",
            "\x00",
            "a\nb",
            "\u202etxt.exe",
            "é" * 200 + ".txt",
            "\U0001f600" * 80,
            "a" * 300 + ".iso",
            " . ",
            "~",
            "-",
        ]
    ),
)


class _Origin:
    """An aiohttp server on its own loop in a thread: every path answers BODY, with the
    Content-Disposition given (percent-encoded) in the ``d`` query parameter."""

    def __init__(self) -> None:
        self.base = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        headers = {"ETag": '"n1"'}
        if "d" in request.query:
            headers["Content-Disposition"] = request.query["d"]
        return web.Response(body=BODY, headers=headers)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> _Origin:
        self._thread.start()
        assert self._ready.wait(10), "origin did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def origin() -> Iterator[_Origin]:
    with _Origin() as server:
        yield server


def _snapshot(root: Path, skip: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and skip not in p.parents
    }


def _check_saved(path: Path, out: Path) -> None:
    assert path.parent.resolve() == out.resolve(), path
    assert "/" not in path.name and path.name not in ("", ".", "..")
    assert len((path.name + LONGEST).encode("utf-8")) <= NAME_MAX, path.name
    assert path.read_bytes() == BODY


def _scene() -> tuple[tempfile.TemporaryDirectory[str], Path, Path]:
    holder = tempfile.TemporaryDirectory()
    root = Path(holder.name)
    (root / "outside").mkdir()
    (root / "outside" / "victim").write_bytes(SENTINEL)
    (root / "passwd").write_bytes(SENTINEL)
    out = root / "out" / "deep"
    out.mkdir(parents=True)
    return holder, root, out


async def _bulk(url: str, out: Path, quick: bool) -> None:
    try:
        job = Job(url)
    except UsageError:
        return  # a reserved or unusable name: refused before anything is written
    async with Client(trust_env=False) as client:
        async for res in download_many(client, [job], out, BulkOptions(jobs=1, quick=quick)):
            if res.ok:
                assert res.path is not None
                _check_saved(Path(res.path), out)


@settings(max_examples=40)
@given(name=HOSTILE, quick=st.booleans())
def test_url_names_stay_inside_for_both_engines(origin: _Origin, name: str, quick: bool) -> None:
    """A hostile last URL segment, on the lane and on the full engine: the saved file is one
    component inside the output directory, fits with its helpers; nothing outside changes."""
    holder, root, out = _scene()
    with holder:
        before = _snapshot(root, out)
        asyncio.run(_bulk(origin.base + "dir/" + quote(name, safe=""), out, quick))
        assert _snapshot(root, out) == before


async def _remote_name(url: str, out: Path) -> None:
    async with Client(trust_env=False) as client:
        try:
            res = await client.download(url, out / "fallback", remote_name=True, clobber=True)
        except StreamerError:
            return  # refused (a reserved name): nothing saved under it
        _check_saved(Path(res.path), out)


@settings(max_examples=40)
@given(name=HOSTILE, extended=st.booleans())
def test_disposition_names_stay_inside(origin: _Origin, name: str, extended: bool) -> None:
    """A hostile Content-Disposition filename (plain or RFC 8187 extended) with -J --clobber:
    one component inside the output directory, fits with its helpers; nothing outside
    changes."""
    if extended:
        disposition = "attachment; filename*=UTF-8''" + quote(name, safe="")
    else:
        plain = name.encode("latin-1", "replace").decode("latin-1").replace('"', "")
        disposition = f'attachment; filename="{plain}"'.replace("\r", "").replace("\n", "")
        disposition = disposition.replace("\x00", "")
    holder, root, out = _scene()
    with holder:
        before = _snapshot(root, out)
        asyncio.run(_remote_name(origin.base + "f?d=" + quote(disposition, safe=""), out))
        assert _snapshot(root, out) == before
