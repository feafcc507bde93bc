"""curl's -H rules on every request path, seen as the exact request heads a raw server records.

``-H 'Name:'`` removes a field streamer sends by itself, ``-H 'Name;'`` sends it empty, and
``-H @FILE`` reads such lines from FILE: for a single download (the raw fast path and the
aiohttp engine), ``--split``, bulk runs on the lane (one process and worker processes), and
uploads (``put`` on the raw path and from stdin on the engine, ``post -F``, ``put --tus``).
What cannot be removed is pinned in test_header_refusals.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from streamer import Client, UsageError
from tests.helpers import ENV, Run, streamer
from tests.recorder import SMALL, Recorder, recorder

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
    download's identity coding, on the raw paths, the lane and the engine alike."""
    edits = ["-H", "Content-Type:", "-H", "Accept-Encoding:"]
    async with recorder() as rec:
        for path in ("put", "put-stdin", "get", "get-engine", "get-split", "get-i"):
            (tmp_path / path).mkdir()
            run = await PATHS[path](rec, tmp_path / path, edits)
            assert run.rc == 0, (path, run)
    assert len(rec.heads) >= 10
    for fields in rec.fields():
        names = [n for n, _ in fields]
        assert "content-type" not in names and "accept-encoding" not in names, fields


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


async def test_removing_authorization_drops_url_and_netrc_credentials(tmp_path: Path) -> None:
    """-H 'Authorization:' removes the credentials streamer would send by itself, from the
    URL's userinfo (RFC 7617) or from $NETRC, as curl drops its own -u header."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login n password CANARY-netrc\n")
    netrc.chmod(0o600)
    env = {"NETRC": str(netrc)}
    async with recorder() as rec:
        with_user = rec.url.replace("://", "://u:CANARY-url@") + "/big"
        for url in (with_user, f"{rec.url}/big"):
            for edit in ([], ["-H", "Authorization:"]):
                run = await streamer(
                    "get", url, "-o", str(tmp_path / "o"), "--clobber", *edit, env=env
                )
                assert run.rc == 0, run
    sent = [dict(fields).get("authorization") for fields in rec.fields()]
    assert [s is not None for s in sent] == [True, False, True, False], sent
