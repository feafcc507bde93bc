"""HTTP/1.1 framing for the small-file lane (RFC 9112): request heads out, response heads in.

Pure functions over strings and bytes. The lane (`streamer.lane.connection`) takes only what these
functions call simple; anything else (a URL that needs encoding or normalising, a response
head it cannot judge with certainty) is left to the full engine, which asks again through
aiohttp. So the rules here are deliberately narrow: they accept a subset of HTTP/1.1 and say
"not simple" (None, or `Head.simple` False) for the rest, never guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit

# A response head larger than this is not simple (aiohttp allows 8190 bytes per line).
MAX_HEAD = 32 << 10

# RFC 3986 3.3/3.4: a path and query made of these characters, with "%" only as the start of
# a pct-encoded octet, is sent exactly as written (yarl may normalise the case of an escape or
# decode one of an unreserved character, which names the same resource: RFC 3986 6.2.2).
_TARGET = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
# RFC 3986 5.2.4: a path with dot segments is normalised by yarl; not simple.
_DOT_SEGMENT = re.compile(r"/(?:\.|%2e){1,2}(?:/|$)", re.IGNORECASE)  # %2E is "." (2.3)
_MAX_PORT = 65535
# scheme "://" lower-case host [":" port] path-abempty ["?" query] ["#" fragment], all of it
# characters that are sent as written (the common URL of a manifest).
_PCHARS = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})"
_FAST_URL = re.compile(
    rf"(https?)://([a-z0-9](?:[a-z0-9.\-]*[a-z0-9])?)(?::([0-9]{{1,5}}))?"
    rf"(/{_PCHARS}*)(\?(?:{_PCHARS}|\?)+)?(?:#[!-~]*)?"
)
_ORIGINS: dict[tuple[str, str, str | None], Origin] = {}  # a bounded memo (Origin is a value)
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.\-]*[a-z0-9])?|\[[0-9a-f:.]+\]")
# RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: ([\t -~\x80-\xff]*))?")
# RFC 9110 5.1/5.5: field-name is a token; the value has no CR, LF or NUL. One match checks
# every field line of a head at once (a match per line cost most of the parse).
_FIELD_LINES = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\x00\r\n]*\r\n)*")
_DIGITS = re.compile(rb"[0-9]{1,18}")
# A framing field's line in the lower-cased field block preceded by CRLF: (name, raw value).
_FRAMING_FIELD = re.compile(rb"\r\n(content-length|transfer-encoding|connection):([^\r]*)")
_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 5.6.2 token
_VALUE = re.compile(r"[\t\x20-\x7e]*")
# Request fields the lane writes itself or that change the meaning of the answer.
RESERVED_FIELDS = frozenset(
    {
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "te",
        "upgrade",
        "expect",
        "range",
        "if-range",
        "accept-encoding",
        "authorization",
        "proxy-authorization",
    }
)


@dataclass(frozen=True)
class Origin:
    """Where to connect, and the ``Host`` field value (RFC 9112 3.2)."""

    scheme: str
    host: str  # for connect(): no brackets around an IPv6 literal
    port: int
    authority: str  # the Host field: host[:port], port only when not the default
    # The lane looks an origin up several times per file (idle pool, hand-offs): its hash is
    # made once, not from the four fields at every lookup.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.scheme, self.host, self.port, self.authority)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Origin], tuple[str, str, int, str]]:
        # Rebuilt, not restored: str hashes differ between processes (PYTHONHASHSEED).
        return Origin, (self.scheme, self.host, self.port, self.authority)


def simple_request(url: str) -> tuple[Origin, str] | None:
    """(origin, request-target) when `url` can be sent as written, else None.

    Not simple: userinfo (credentials go through the full engine's rules), a non-ASCII or
    upper-case host (IDNA and case folding), a path or query needing percent-encoding, dot
    segments, or a port out of range.
    """
    fast = _FAST_URL.fullmatch(url)
    if fast is not None:  # the common shape, in one match; the rest takes urlsplit
        scheme, host, port_text, path, query = fast.groups()
        if (port_text is None or int(port_text) <= _MAX_PORT) and not _DOT_SEGMENT.search(path):
            return _origin(scheme, host, port_text), path + (query or "")
    return _simple_request_slow(url)


def _origin(scheme: str, host: str, port_text: str | None) -> Origin:
    key = (scheme, host, port_text)
    origin = _ORIGINS.get(key)
    if origin is None:
        default = 443 if scheme == "https" else 80
        port = default if port_text is None else int(port_text)
        authority = host if port == default else f"{host}:{port}"
        if len(_ORIGINS) >= 1024:
            _ORIGINS.clear()
        origin = _ORIGINS[key] = Origin(scheme, host, port, authority)
    return origin


def _simple_request_slow(url: str) -> tuple[Origin, str] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or "@" in parts.netloc:
        return None
    host = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    if not host or not _HOST.fullmatch(host):
        return None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if (parts.query == "" and url.split("#", 1)[0].endswith("?")) or not _TARGET.fullmatch(target):
        return None  # a bare "?" is dropped by some clients and kept by others
    if _DOT_SEGMENT.search(parts.path):
        return None
    default = 443 if parts.scheme == "https" else 80
    port = default if port is None else port
    authority = host if port == default else f"{host}:{port}"
    return Origin(parts.scheme, host.strip("[]"), port, authority), target


def merge_fields(*layers: Iterable[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """The request fields of `layers`, a later layer's field replacing a same-named earlier
    one (names are case-insensitive, RFC 9110 5.1), in first-seen order.

    None (not simple) when a name is not a token, a value holds anything but visible ASCII,
    SP and HTAB (RFC 9110 5.5: no CR, LF or NUL, which could inject lines; obs-text is left to
    the full engine), or a field is one the lane writes itself or cannot honour.
    """
    merged: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for name, value in layer:
            key = name.lower()
            if key in RESERVED_FIELDS or not _NAME.fullmatch(name) or not _VALUE.fullmatch(value):
                return None
            merged[key] = (name, value)
    return list(merged.values())


def request_head(target: str, authority: str, fields: list[tuple[str, str]]) -> bytes:
    """A GET request head (RFC 9112 3): the caller has checked `fields` (no CR/LF/NUL)."""
    lines = [f"GET {target} HTTP/1.1", f"Host: {authority}"]
    lines.extend(f"{name}: {value}" for name, value in fields)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class Head:
    """A parsed response head. ``simple`` is False when framing needs the full engine."""

    status: int
    reason: str
    block: bytes  # the field lines, each ending in CRLF (checked well-formed)
    length: int | None  # Content-Length, when present and unambiguous
    keep_alive: bool
    simple: bool
    size: int  # bytes of the head, final CRLF CRLF included
    chunked: bool = False  # framed by chunked coding alone (RFC 9112 7.1), no Content-Length
    minor: int = 1  # HTTP/1.minor of the status line: pipelining needs 1.1 (RFC 9112 9.3.2)

    @cached_property
    def fields(self) -> dict[str, str]:
        """Lower-case names; repeated fields joined with ", " (RFC 9110 5.3). Built on first
        use: a successful small download never needs more than the parse found."""
        fields: dict[str, str] = {}
        for line in self.block.split(b"\r\n")[:-1]:
            raw_name, _, raw_value = line.partition(b":")
            name = raw_name.decode("ascii").lower()
            value = raw_value.strip(b" \t").decode("latin-1")  # OWS: SP / HTAB (RFC 9110 5.6.3)
            fields[name] = f"{fields[name]}, {value}" if name in fields else value
        return fields

    def value(self, name: str) -> str | None:
        """``fields.get(name)`` for a lower-case `name`, without building `fields`: the lane
        asks each answer for its validator only, and the dict cost more than the whole parse."""
        key = b"\r\n" + name.encode("ascii") + b":"
        lowered = b"\r\n" + self.block.lower()  # offsets: lowered[i + 2] is block[i]
        at = lowered.find(key)
        if at < 0:
            return None
        if lowered.find(key, at + len(key)) >= 0:
            return self.fields[name]  # repeated: joined as `fields` joins them
        start = at + len(key) - 2
        end = self.block.find(b"\r\n", start)
        return self.block[start:end].strip(b" \t").decode("latin-1")


def head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """The size of the head at `start` in `buf` (through CRLF CRLF), or -1 if incomplete."""
    end = buf.find(b"\r\n\r\n", start)
    return -1 if end < 0 else end + 4 - start


def parse_head(buf: bytes | bytearray, size: int, start: int = 0) -> Head | None:
    """Parse the `size` bytes at `start` in `buf` as a response head; None if malformed.

    RFC 9112 2.2: lines end in CRLF, and obsolete line folding (a line starting with white
    space) is not accepted here. A malformed head is not judged here: the full engine asks
    again and reports it in its own words.
    """
    data = bytes(buf[start : start + size - 2])  # every line with its CRLF
    first = data.find(b"\r\n")
    status_line = _STATUS_LINE.fullmatch(data, 0, first)
    if status_line is None or not _FIELD_LINES.fullmatch(data, first + 2):
        return None
    block = data[first + 2 :]
    # Names are case-insensitive (RFC 9110 5.1); one scan finds the three framing fields.
    lengths: list[bytes] = []
    codings: list[bytes] = []
    connection: list[bytes] = []
    for name, raw in _FRAMING_FIELD.findall(b"\r\n" + block.lower()):
        value = raw.strip(b" \t")
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.append(value)
        else:
            connection.append(value)
    length = None if codings else _length(lengths)
    http11 = status_line.group(1) == b"1"
    if connection:
        tokens = {t.strip(b" \t") for t in b",".join(connection).split(b",")}
        keep_alive = b"close" not in tokens and (http11 or b"keep-alive" in tokens)
    else:
        keep_alive = http11  # RFC 9112 9.3: 1.1 persists by default, 1.0 does not
    reason = (status_line.group(3) or b"").decode("latin-1")
    status = int(status_line.group(2))
    # RFC 9112 6.3: chunked alone frames the body; with Content-Length too it is not simple.
    chunked = b",".join(codings) == b"chunked" and not lengths
    return Head(
        status, reason, block, length, keep_alive, length is not None, size, chunked, int(http11)
    )


def _length(values: list[bytes]) -> int | None:
    """The Content-Length of the field values `values` (each stripped), None when absent or
    not simple. RFC 9112 6.3: a list of differing lengths is an error; a list of one repeated
    length is that length. (Transfer-Encoding, which overrides it, is the caller's check.)"""
    if not values:
        return None
    if len(values) == 1 and _DIGITS.fullmatch(values[0]):
        return int(values[0])  # the common case: one value, digits only
    distinct = {v.strip(b" \t") for v in b",".join(values).split(b",")}
    if len(distinct) != 1:
        return None
    value = distinct.pop()
    return int(value) if _DIGITS.fullmatch(value) else None


def reusable(head: Head, extra: int) -> bool:
    """Whether the connection can carry the next request: kept alive, body framed by its
    length or by chunks and read exactly (`extra` bytes past it: the server is out of step)."""
    return head.keep_alive and (head.simple or head.chunked) and extra == 0


class ChunkError(ValueError):
    """A chunked body that breaks RFC 9112 7.1 framing."""


_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_CHUNK_LINE_MAX = 4096  # a chunk-size line with its extensions, CRLF excluded
# A chunk-size line with extensions of the characters `_VALUE` allows (RFC 9112 7.1.1).
_CHUNK_HEAD = re.compile(
    rb"([0-9A-Fa-f]{1,15})(?:;[\t\x20-\x7e]{0,%d})?\r\n" % (_CHUNK_LINE_MAX - 16)
)


class Dechunker:
    """Incremental decoder of a chunked body (RFC 9112 7.1): `feed` returns the data pieces
    found in each read; `done` once the last chunk and the trailer section are in, with any
    bytes after them in `extra`. Chunk extensions and trailer fields are read and dropped.

    Linear in the wire size whatever the chunk sizes: a read is scanned by offsets, data
    pieces are views into it, and only line bytes (sizes, CRLFs, trailers) are copied, each
    once. `copied` counts the bytes copied, so tests can pin that."""

    def __init__(self) -> None:
        self.done = False
        self.extra = b""
        self.copied = 0  # bytes copied out of the reads (line bytes, a memoryview's read)
        self._line = bytearray()  # a chunk-size line, a chunk's CRLF or trailer lines so far
        self._left = 0  # data bytes of the current chunk still to come
        self._state = "size"  # size, data, crlf, trailers
        self._trailers = 0

    def feed(self, data: bytes | memoryview) -> list[memoryview]:
        if not isinstance(data, bytes):
            data = bytes(data)  # bytes.find needs bytes; one copy of the read, counted
            self.copied += len(data)
        view, pos, size = memoryview(data), 0, len(data)
        pieces: list[memoryview] = []
        while pos < size and not self.done:
            if self._state == "size" and not self._line:
                pos = self._whole_chunks(data, view, pos, pieces)
                if pos >= size or self._state != "size" or self._line:
                    continue
            if self._state == "data":
                end = min(size, pos + self._left)
                pieces.append(view[pos:end])
                self._left -= end - pos
                pos = end
                if not self._left:
                    self._state = "crlf"
            else:
                pos = self._line_bytes(data, pos)
        if self.done and pos < size:
            self.extra += data[pos:]
            self.copied += size - pos
        return pieces

    def _whole_chunks(
        self, data: bytes, view: memoryview, pos: int, pieces: list[memoryview]
    ) -> int:
        """The fast path: chunks whose size line, data and CRLF are all in this read, one
        regex match each; stops (returning the offset) at anything else for the general path."""
        match, size = _CHUNK_HEAD.match, len(data)
        while True:
            head = match(data, pos)
            if head is None:
                return pos
            left = int(head[1], 16)
            start = head.end()
            end = start + left
            if left == 0 or end + 2 > size or data[end : end + 2] != b"\r\n":
                return pos  # the last chunk, a chunk cut by the read, or bad framing
            self.copied += start - pos + 2
            pieces.append(view[start:end])
            pos = end + 2

    def _line_bytes(self, data: bytes, pos: int) -> int:
        """Add bytes from `pos` to the current line; act on it when its CRLF is in. Returns
        the offset after what was used. The search never looks past the longest legal line."""
        room = _CHUNK_LINE_MAX + 2 - len(self._line)
        end = data.find(b"\n", pos, pos + room)
        if end < 0:
            stop = min(len(data), pos + room)
            self._line += data[pos:stop]
            self.copied += stop - pos
            if len(self._line) > _CHUNK_LINE_MAX + 1:
                raise ChunkError("chunk-size or trailer line too long")
            return stop
        line = data[pos : end + 1]
        if self._line:  # the line began in an earlier read
            self._line += line
            line, self._line = bytes(self._line), bytearray()
            self.copied += len(line)
        self.copied += end + 1 - pos
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise ChunkError("line not ended by CRLF")
        self._on_line(line[:-2])
        return end + 1

    def _on_line(self, line: bytes) -> None:
        if self._state == "crlf":
            if line:
                raise ChunkError("chunk data longer than its size")
            self._state = "size"
        elif self._state == "size":
            size_text, _, ext = line.partition(b";")
            if not _HEX.fullmatch(size_text) or not _VALUE.fullmatch(ext.decode("latin-1")):
                raise ChunkError(f"bad chunk-size line {line[:40]!r}")
            self._left = int(size_text, 16)
            self._state = "data" if self._left else "trailers"
        elif not line:  # the empty line that ends the trailer section
            self.done = True
        else:
            self._trailers += len(line) + 2
            if self._trailers > MAX_HEAD or not _FIELD_LINES.fullmatch(line + b"\r\n"):
                raise ChunkError("bad trailer section")


__all__ = [
    "MAX_HEAD",
    "RESERVED_FIELDS",
    "ChunkError",
    "Dechunker",
    "Head",
    "Origin",
    "head_end",
    "merge_fields",
    "parse_head",
    "request_head",
    "reusable",
    "simple_request",
]
