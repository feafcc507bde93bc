"""Errors complete when constructed (issue 9): `status_error`, `evolve`, and no edits after."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamer.core.status import status_error
from streamer.core.text import EXCERPT_MAX, excerpt, printable
from streamer.errors import BodyTruncatedError, FileError, HTTPStatusError, Result, evolve

NOW = 1_000_000.0


@pytest.mark.parametrize("headers", [{"Retry-After": "7"}, {"retry-after": "7"}])
def test_status_error_is_whole_for_either_engine(headers: dict[str, str]) -> None:
    """The engine's (canonical names) and the lane's (lower-cased) fields give the same error,
    Retry-After included, without any attribute set afterwards."""
    err = status_error("http://h/x", 503, "Busy", headers, now=NOW)
    assert isinstance(err, HTTPStatusError)
    assert (err.status, err.reason, err.retry_after, err.retryable) == (503, "Busy", 7.0, True)
    assert str(err) == "http://h/x: HTTP 503 Busy" and err.exit_code == 22


def test_status_error_shows_a_short_text_body_on_one_line() -> None:
    """A short text body follows the status, white space folded to single spaces."""
    err = status_error(
        "u", 413, "Too Large", {"Content-Type": "text/plain"}, b"quota\n  exceeded\r\n", now=NOW
    )
    assert err.message == "HTTP 413 Too Large: quota exceeded"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"<html><body><h1>404 Not Found</h1></body></html>", "text/html"),
        (b"<html>" + b"x" * 10 + b"</html>", None),  # markup without a type
        (b"word " * (EXCERPT_MAX // 4), "text/plain"),  # too long for one line
        (b"\xff\xfe binary", "text/plain"),
        (b"plain words", "application/octet-stream"),
    ],
)
def test_status_error_leaves_out_pages_long_and_binary_bodies(
    body: bytes, kind: str | None
) -> None:
    """An error body is shown only when it is short text: HTML, long or binary bodies are not."""
    headers = {} if kind is None else {"Content-Type": kind}
    assert status_error("u", 500, "Oops", headers, body, now=NOW).message == "HTTP 500 Oops"


def test_printable_escapes_terminal_sequences() -> None:
    """ESC, CR, LF, C1 controls and bidi overrides are escaped; other text is kept."""
    assert printable("ok \x1b]0;pwned\x07\r\nX\x9b\u202e é") == (
        "ok \\x1b]0;pwned\\x07\\r\\nX\\x9b\\u202e é"
    )
    assert excerpt(b"bad \x1b[2J thing", "text/plain") == "bad \\x1b[2J thing"


def test_evolve_returns_a_new_error_and_leaves_the_old_one() -> None:
    """evolve() builds a changed copy (type, errno and extra fields kept); the original stays."""
    err = BodyTruncatedError("cut", url="u", received=3, expected=None)
    new = evolve(err, expected=10, result=Result.CHUNKED_BODY_SIZE_MISMATCH)
    assert (new.expected, new.result, new.received) == (10, Result.CHUNKED_BODY_SIZE_MISMATCH, 3)
    assert (err.expected, err.result) == (None, Result.PARTIAL_BODY)
    ferr = FileError("disk full", path="p")
    ferr.errno = 28
    assert evolve(ferr, url="u").errno == 28
    with pytest.raises(TypeError):
        evolve(err, nonsense=1)


_EDIT = re.compile(
    r"\b(?:exc|err|error|e)\.(?:url|attempts|message|result|expected|received|retry_after|"
    r"path|retryable|status|reason)\s*[-+]?=[^=]"
)


def test_no_error_is_edited_after_construction() -> None:
    """Nothing in streamer/ assigns to an error's attributes after building it: each value is
    given at construction, or a new error is made with `evolve`."""
    root = Path(__file__).resolve().parents[2] / "streamer"
    edits = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _EDIT.search(line)
    ]
    assert edits == []
