"""core.text.field_text and errors.BodyTruncatedError.cut_short: one reading of a field's bytes
and one wording of a cut body, shared by the aiohttp engine, the raw body path and the lane."""

from __future__ import annotations

import pytest

from streamer.core.text import field_text
from streamer.errors import BodyTruncatedError, Result


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"attachment; filename=plain.txt", "attachment; filename=plain.txt"),
        ("résumé".encode(), "résumé"),  # valid UTF-8 is read as UTF-8
        (b"r\xe9sum\xe9.txt", "r\xe9sum\xe9.txt"),  # not UTF-8: ISO-8859-1, byte for byte
        (b"", ""),
    ],
)
def test_field_bytes_are_utf8_when_valid_else_latin1(raw: bytes, text: str) -> None:
    """A field's value is UTF-8 when it decodes as such, else ISO-8859-1 (RFC 9110 5.5)."""
    assert field_text(raw) == text


def test_cut_short_wording_and_result_per_framing() -> None:
    """Chunked: CHUNKED_BODY_SIZE_MISMATCH without an expected size; Content-Length: both
    sizes; no framing: the count alone; every one PARTIAL-type and retryable."""
    chunked = BodyTruncatedError.cut_short("http://h/x", 7, None, chunked=True)
    assert (chunked.message, chunked.result, chunked.expected) == (
        "chunked body cut short after 7 bytes (no last chunk)",
        Result.CHUNKED_BODY_SIZE_MISMATCH,
        None,
    )
    sized = BodyTruncatedError.cut_short("http://h/x", 7, 10)
    assert (sized.message, sized.result, sized.received, sized.expected) == (
        "body cut short: 7 of 10 bytes",
        Result.PARTIAL_BODY,
        7,
        10,
    )
    bare = BodyTruncatedError.cut_short("http://h/x", 7, None)
    assert (bare.message, bare.result) == ("body cut short after 7 bytes", Result.PARTIAL_BODY)
    assert all(e.retryable and e.url == "http://h/x" for e in (chunked, sized, bare))
