"""What -H cannot remove, and bad -H input: usage errors (exit 2) before any request.

Host, Content-Length and Transfer-Encoding frame the request; tus, a form, a download's
ranges and a signed S3 request each need their own fields. An unreadable -H @FILE is named;
a malformed line (from the command line or a file) is not echoed past its first word.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer import ClientConfig, UsageError
from tests.helpers import one_error_line, streamer
from tests.recorder import SMALL, recorder


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
    one_error_line(run, 2, f"the {name} header cannot be removed", "cannot frame")
    assert rec.heads == []


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (
            ["put", "--tus", "{src}", "{url}/files", "-H", "Tus-Resumable:"],
            ["Tus-Resumable header cannot be removed"],
        ),
        (
            ["put", "--tus", "{src}", "{url}/files", "-H", "Content-Type:"],
            ["Content-Type header", "offset+octet"],
        ),
        (
            ["put", "--tus", "--abort", "{src}", "{url}/files", "-H", "Tus-Resumable:"],
            ["Tus-Resumable header cannot be removed"],
        ),
        (
            ["post", "-F", "f=@{src}", "{url}/up", "-H", "Content-Type:"],
            ["Content-Type header", "boundary"],
        ),
        (["put", "{src}", "s3://bucket/key", "-H", "User-Agent:"], ["-H 'Name:'", "S3", "signed"]),
        (["get", "{url}/big", "-o", "{src}.out", "-H", "Range:"], ["Range header", "resum"]),
        (["get", "-i", "{src}", "-d", "{dir}", "-H", "If-Range:"], ["If-Range header", "resum"]),
    ],
    ids=[
        "tus-resumable",
        "tus-content-type",
        "tus-abort",
        "form-content-type",
        "s3-any",
        "range",
        "if-range",
    ],
)
async def test_removing_a_field_a_protocol_needs_is_a_usage_error(
    argv: list[str], fragments: list[str], tmp_path: Path
) -> None:
    """tus cannot work without Tus-Resumable or its PATCH type, a form without the
    Content-Type naming its boundary, a download's resume and --split without Range and
    If-Range, and an S3 request is signed: -H cannot remove them (exit 2, one line saying
    why), and nothing is sent."""
    (tmp_path / "src").write_bytes(SMALL)
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "AWS_ACCESS_KEY_ID": "k"}
    async with recorder() as rec:
        args = [a.format(src=tmp_path / "src", url=rec.url, dir=tmp_path) for a in argv]
        run = await streamer(*args, env={**env, "AWS_SECRET_ACCESS_KEY": "s"})
    one_error_line(run, 2, *fragments)
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
    Content-Length / Transfer-Encoding, a name both set in headers and omitted, and one
    string (whose letters would be taken for names)."""
    assert ClientConfig(omit_headers=["User-Agent", "ACCEPT"]).omit_headers == {
        "user-agent",
        "accept",
    }
    with pytest.raises(UsageError, match="not one string"):
        ClientConfig(omit_headers="User-Agent")
    with pytest.raises(UsageError, match="cannot frame"):
        ClientConfig(omit_headers={"Transfer-Encoding"})
    with pytest.raises(UsageError, match="both in headers and in omit_headers"):
        ClientConfig(headers={"Accept": "text/plain"}, omit_headers={"accept"})
