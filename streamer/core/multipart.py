"""multipart/form-data framing for uploads (RFC 7578, RFC 2046 5.1.1), without the I/O.

A body is, for each part, `part_head` + the part's bytes + `PART_TAIL`, then `closing`::

    --BOUNDARY\\r\\n
    Content-Disposition: form-data; name="field"; filename="a.txt"\\r\\n
    Content-Type: application/octet-stream\\r\\n
    \\r\\n
    <body bytes>\\r\\n
    --BOUNDARY--\\r\\n

This module builds those pieces and counts them, so the caller can send an exact
``Content-Length`` (or fall back to chunked when a size is unknown) and stream file bodies in
between. It never reads a file: callers pass sizes.

Names and file names are quoted and escaped as browsers and curl do (the WHATWG HTML
"multipart/form-data encoding algorithm"): ``"`` becomes ``%22``, CR ``%0D`` and LF ``%0A``,
and everything else, including non-ASCII (sent as UTF-8, RFC 7578 5.1) and backslash, goes
as is. Servers see those escapes literally; there is no unescaping on the receiving side. Any
other control character is refused with a `UsageError`, since no receiver handles it sanely.

Only the base name of a file is ever sent (RFC 7578 4.2), never a local directory path.

The boundary is random (128 bits or more), so the body is not scanned for it: the chance that
a file contains ``--`` + boundary by accident is about 2**-128 per position. `boundary_collides`
is there for callers who hold small in-memory values and want to be certain.
"""

from __future__ import annotations

import base64
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from streamer.errors import UsageError

__all__ = [
    "DEFAULT_FILE_TYPE",
    "FORM_NEEDS",
    "PART_TAIL",
    "Base64Lines",
    "FormField",
    "PartSpec",
    "boundary_collides",
    "closing",
    "content_length",
    "content_type_header",
    "encoded_size",
    "escape_name",
    "field_spec",
    "new_boundary",
    "part_head",
]

FormField = tuple[str, str]
"""A plain form field: (name, value)."""

# RFC 7578 4.4: a file part without a known type is sent as application/octet-stream.
DEFAULT_FILE_TYPE = "application/octet-stream"
# A form body is read by its boundary, which only its Content-Type names (RFC 7578 4.1):
# -H cannot remove it (core.headers.refuse_omitting).
FORM_NEEDS = {"content-type": "it names the multipart boundary (RFC 7578 4.1)"}

# RFC 2046 5.1.1: the CRLF ending each body part belongs to the next delimiter line.
PART_TAIL = b"\r\n"

_BOUNDARY_PREFIX = "----streamer"
_MIN_ENTROPY = 16  # bytes: 128 bits
_MAX_BOUNDARY = 70  # RFC 2046 5.1.1: boundary := 0*69<bchars> bcharsnospace
_MAX_ENTROPY = (_MAX_BOUNDARY - len(_BOUNDARY_PREFIX)) // 2  # hex doubles the length

# RFC 2046 5.1.1: bcharsnospace := DIGIT / ALPHA / "'" / "(" / ")" / "+" / "_" / "," / "-" /
# "." / "/" / ":" / "=" / "?"; bchars adds the space (but not as the last character).
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]", re.ASCII)

# RFC 9110 5.6.2: token = 1*tchar. A boundary that is not a token must be quoted (RFC 2046).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)

# WHATWG HTML, multipart/form-data encoding algorithm: the only escapes in name and filename.
_NAME_ESCAPES = str.maketrans({'"': "%22", "\r": "%0D", "\n": "%0A"})

# RFC 9110 5.5: field-value = visible ASCII, SP and HTAB (obs-text is not worth sending).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]+", re.ASCII)


def new_boundary(entropy: bytes | None = None) -> str:
    """A fresh boundary: "----streamer" + hex of 16 random bytes (128 bits), 44 characters.

    Pass `entropy` (16 to 29 bytes) to get a fixed boundary, e.g. in tests.
    """
    if entropy is None:
        entropy = secrets.token_bytes(_MIN_ENTROPY)
    if not _MIN_ENTROPY <= len(entropy) <= _MAX_ENTROPY:
        raise UsageError(
            f"boundary entropy must be {_MIN_ENTROPY} to {_MAX_ENTROPY} bytes, got {len(entropy)}"
        )
    return _BOUNDARY_PREFIX + entropy.hex()


def _check_boundary(boundary: str) -> None:
    if not _BOUNDARY.fullmatch(boundary):
        raise UsageError(
            f"invalid multipart boundary {boundary!r}: RFC 2046 allows 1 to 70 of "
            "letters, digits, '()+_,-./:=? and inner spaces"
        )


def _check_text(value: str, what: str) -> None:
    """Refuse control characters other than CR/LF, and text that has no UTF-8 form."""
    for ch in value:
        if ch not in "\r\n" and unicodedata.category(ch) == "Cc":
            raise UsageError(f"{what} contains control character U+{ord(ch):04X}")
        if "\ud800" <= ch <= "\udfff":
            raise UsageError(f"{what} contains a lone surrogate U+{ord(ch):04X} (not UTF-8)")


def escape_name(value: str) -> str:
    """`value` ready for a quoted ``name`` or ``filename`` parameter (WHATWG escaping).

    ``"`` -> ``%22``, CR -> ``%0D``, LF -> ``%0A``; other control characters raise UsageError.
    """
    _check_text(value, f"form name {value!r}")
    return value.translate(_NAME_ESCAPES)


def _base_name(filename: str) -> str:
    # Both separators, whatever the OS we run on: "C:\\Users\\x\\b.bin" must not leak either.
    return re.split(r"[/\\]", filename)[-1]


@dataclass(frozen=True)
class PartSpec:
    """One form part: its field `name`, optional `filename` and `content_type`, body `size`.

    A part with a `filename` is a file part; its type defaults to application/octet-stream.
    A plain field has no Content-Type header unless one is given (RFC 7578 4.4: text/plain).
    `size` is the body length in bytes, None when unknown (the body is then sent chunked).
    Bad values raise `UsageError` here, when the spec is made.
    """

    name: str
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None
    headers: tuple[str, ...] = ()  # extra header lines of the part (curl's ;headers=)
    encoder: str | None = None  # its Content-Transfer-Encoding (curl's ;encoder=)

    def __post_init__(self) -> None:
        _check_text(self.name, f"form field name {self.name!r}")
        for line in (*self.headers, self.encoder or "x"):
            if not _HEADER_VALUE.fullmatch(line):
                raise UsageError(
                    f"form field {self.name!r}: header {line!r} must be non-empty printable ASCII"
                )
        if self.filename is not None:
            _check_text(self.filename, f"form field {self.name!r}: filename {self.filename!r}")
            if not _base_name(self.filename):
                raise UsageError(
                    f"form field {self.name!r}: filename {self.filename!r} has no base name"
                )
        if self.content_type is not None and not _HEADER_VALUE.fullmatch(self.content_type):
            raise UsageError(
                f"form field {self.name!r}: content type {self.content_type!r} must be "
                "non-empty printable ASCII (no CR, LF, NUL or other control characters)"
            )
        if self.size is not None and self.size < 0:
            raise UsageError(f"form field {self.name!r}: size must not be negative: {self.size}")

    @property
    def sent_filename(self) -> str | None:
        """The file name as sent: the base name only, never the directories."""
        return None if self.filename is None else _base_name(self.filename)

    @property
    def sent_content_type(self) -> str | None:
        """The Content-Type header value of this part, or None for no header."""
        if self.content_type is None and self.filename is not None:
            return DEFAULT_FILE_TYPE
        return self.content_type


def part_head(boundary: str, spec: PartSpec) -> bytes:
    """The delimiter line and headers that come before a part's body, ending in a blank line."""
    _check_boundary(boundary)
    # RFC 7578 4.2: Content-Disposition: form-data; name="..." [; filename="..."]
    disposition = f'form-data; name="{escape_name(spec.name)}"'
    filename = spec.sent_filename
    if filename is not None:
        disposition += f'; filename="{escape_name(filename)}"'
    lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
    content_type = spec.sent_content_type
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if spec.encoder is not None:  # RFC 2045 6; RFC 7578 4.7 deprecates it, curl still sends it
        lines.append(f"Content-Transfer-Encoding: {spec.encoder}")
    lines.extend(spec.headers)
    # RFC 7578 5.1: names and file names go as UTF-8; the rest is ASCII already.
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def closing(boundary: str) -> bytes:
    """The close-delimiter that ends the body (RFC 2046 5.1.1), with a final CRLF."""
    _check_boundary(boundary)
    return f"--{boundary}--\r\n".encode("ascii")


def content_length(boundary: str, specs: Sequence[PartSpec]) -> int | None:
    """The exact byte length of the whole body, or None if any part's size is unknown."""
    total = len(closing(boundary))
    for spec in specs:
        if spec.size is None:
            return None
        total += len(part_head(boundary, spec)) + spec.size + len(PART_TAIL)
    return total


def content_type_header(boundary: str) -> str:
    """The request's Content-Type value; the boundary is quoted when it is not a token."""
    _check_boundary(boundary)
    if _TOKEN.fullmatch(boundary):
        return f"multipart/form-data; boundary={boundary}"
    # bchars hold no '"' or '\\', so plain quotes suffice (RFC 9110 5.6.4).
    return f'multipart/form-data; boundary="{boundary}"'


def boundary_collides(boundary: str, data: bytes) -> bool:
    """Whether `data` contains ``--`` + boundary anywhere (stricter than a delimiter line).

    Not needed for random boundaries (see the module docstring); for small in-memory values.
    """
    _check_boundary(boundary)
    return f"--{boundary}".encode("ascii") in data


# RFC 2045 6.8: base64 lines of at most 76 characters, CRLF between them (none after the last,
# as curl sends them).
_B64_LINE = 76


def encoded_size(encoder: str | None, size: int | None) -> int | None:
    """The length of `size` bytes once encoded with `encoder` (identity unless "base64")."""
    if encoder != "base64" or size is None:
        return size
    if size == 0:
        return 0
    chars = 4 * ((size + 2) // 3)
    return chars + 2 * ((chars - 1) // _B64_LINE)


class Base64Lines:
    """Streaming base64 (RFC 2045 6.8) in 76-character lines: feed bytes, get text, finish."""

    def __init__(self) -> None:
        self._pending = b""  # fewer than 3 bytes waiting for their group
        self._column = 0  # characters on the current output line

    def _lines(self, encoded: bytes) -> bytes:
        out = bytearray()
        while encoded:
            if self._column == _B64_LINE:
                out += b"\r\n"
                self._column = 0
            take = min(_B64_LINE - self._column, len(encoded))
            out += encoded[:take]
            self._column += take
            encoded = encoded[take:]
        return bytes(out)

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data
        whole = len(data) - len(data) % 3
        self._pending = data[whole:]
        return self._lines(base64.b64encode(data[:whole]))

    def finish(self) -> bytes:
        tail, self._pending = self._pending, b""
        return self._lines(base64.b64encode(tail))


def field_spec(name: str, value: str) -> tuple[PartSpec, bytes]:
    """A plain text field: its spec and its value encoded as UTF-8 (RFC 7578 5.1)."""
    try:
        body = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"form field {name!r}: value is not valid text ({exc.reason})") from exc
    return PartSpec(name, size=len(body)), body
