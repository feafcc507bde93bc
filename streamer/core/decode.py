"""Content-Encoding decoding (RFC 9110 8.4.1) with bounded output pieces.

A compression bomb turns a few kilobytes into gigabytes. zlib's one-shot API would build the
whole output as one bytes object before any size limit could look at it, so every call here
passes ``max_length`` and carries the rest of the input in ``unconsumed_tail``: each yielded
piece is at most `piece` bytes, and a caller that stops iterating (because a limit tripped)
has never held more than one piece per coding.

Supported codings: gzip (RFC 1952; "x-gzip" is its alias, RFC 9110 8.4.1.3), deflate (RFC
9110 8.4.1.2: a zlib stream, RFC 1950, although many servers send raw deflate, RFC 1951, so
we detect which from the first two bytes) and identity; br (RFC 7932) and zstd (RFC 8878)
when their libraries are installed (``streamer[compression]``: brotli, zstandard; or the
stdlib's ``compression.zstd`` where it exists), held to the same output bound. Stacked codings
such as "deflate, gzip" are listed in the order they were applied (RFC 9110 8.4), so they are
decoded in reverse order, by chaining the decoders.
"""

from __future__ import annotations

import importlib
import importlib.util
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from streamer.errors import DecompressError, UsageError


def _installed(*modules: str) -> bool:
    """Whether one of `modules` can be imported (looked up, not imported: start-up cost)."""
    for name in modules:
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except (ImportError, ValueError):
            continue
    return False


_OPTIONAL = tuple(
    name
    for name, modules in (("br", ("brotli",)), ("zstd", ("compression.zstd", "zstandard")))
    if _installed(*modules)
)
SUPPORTED = ("gzip", "x-gzip", "deflate", "identity", *_OPTIONAL)
# What we ask for with --compressed: only codings we can undo (RFC 9110 12.5.3).
ACCEPT_ENCODING = ", ".join(("gzip", "deflate", *_OPTIONAL))
# RFC 8878 3.1.1.1.2: HTTP decoders need not accept windows over 8 MiB; a bigger one is refused
# instead of letting a server make us allocate up to libzstd's own limit.
ZSTD_MAX_WINDOW = 1 << 23
# The zstandard package has no output bound per call, so its input goes in slices: a 4-byte RLE
# block can expand to 128 KiB (RFC 8878 3.1.1.2), so 64 bytes expand to 2 MiB at the very most.
_ZSTD_SLICE = 64
# RFC 9110 8.4 sets no bound on stacked codings, but nobody applies more than a couple; curl
# refuses more than five. Each stage holds a zlib stream, so the bound caps memory and depth.
MAX_CODINGS = 5

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib expects a gzip header and trailer
_ZLIB_WBITS = zlib.MAX_WBITS  # zlib header (RFC 1950 2.2) and Adler-32 trailer
_RAW_WBITS = -zlib.MAX_WBITS  # bare deflate blocks (RFC 1951), no header, no trailer


def _looks_like_zlib(head: bytes) -> bool:
    """True if two bytes are a valid zlib header (RFC 1950 2.2).

    CMF's low nibble is the method, 8 = deflate, and its high nibble the window size, at most
    7 (32 KiB); CMF * 256 + FLG must be a multiple of 31. A raw deflate stream almost never
    passes both checks by chance.
    """
    cmf, flg = head[0], head[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0


class _Stage:
    """One content coding being undone; subclasses decide how the zlib stream starts."""

    name = "compressed"  # for messages

    def __init__(self, url: str, piece: int) -> None:
        self.url = url
        self.piece = piece
        self._z: zlib._Decompress | None = None

    def _error(self, message: str) -> DecompressError:
        return DecompressError(message, url=self.url)

    def _drain(self, data: bytes) -> Iterator[bytes]:
        """Decompress `data` into pieces of at most `piece` bytes until zlib has no more."""
        z = self._z
        assert z is not None
        while True:
            try:
                out = z.decompress(data, self.piece)
            except zlib.error as exc:
                raise self._error(f"corrupt {self.name} data: {exc}") from exc
            if out:
                yield out
            data = z.unconsumed_tail
            # A full piece means zlib may hold more output even with all input consumed
            # (a long back-reference cut short), so ask again with no new input: the caller
            # then has everything decodable so far, not a piece held back until the next feed.
            if z.eof or (not data and len(out) < self.piece):
                return

    def _truncated(self) -> DecompressError:
        return self._error(f"{self.name} data ended before the end of the compressed stream")

    def feed(self, data: bytes) -> Iterator[bytes]:
        raise NotImplementedError

    def finish(self) -> Iterator[bytes]:
        raise NotImplementedError


class _Identity(_Stage):
    """No coding: only split large chunks so the piece bound holds here too."""

    def feed(self, data: bytes) -> Iterator[bytes]:
        if len(data) <= self.piece:
            if data:
                yield data
            return
        for offset in range(0, len(data), self.piece):
            yield data[offset : offset + self.piece]

    def finish(self) -> Iterator[bytes]:
        return iter(())


class _Gzip(_Stage):
    """gzip, including several members back to back (RFC 1952 2.2) and zero padding."""

    name = "gzip"

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._z is None:
                # Between members. Some servers and tools pad with NUL bytes, which can never
                # start a member (the magic is 1f 8b), so skipping them is unambiguous.
                data = data.lstrip(b"\x00")
                if not data:
                    return
                self._z = zlib.decompressobj(_GZIP_WBITS)
            yield from self._drain(data)
            if not self._z.eof:
                return
            data = self._z.unused_data
            self._z = None

    def finish(self) -> Iterator[bytes]:
        # A member was started but its trailer (CRC-32 and size) never came.
        if self._z is not None:
            raise self._truncated()
        return iter(())


class _Deflate(_Stage):
    """deflate: a zlib stream (RFC 1950) or, as many servers send, raw deflate (RFC 1951)."""

    name = "deflate"

    def __init__(self, url: str, piece: int) -> None:
        super().__init__(url, piece)
        self._head = b""  # first bytes, kept until there are two to tell zlib from raw

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._z is None:
            self._head += data
            if len(self._head) < 2:
                return
            wbits = _ZLIB_WBITS if _looks_like_zlib(self._head) else _RAW_WBITS
            self._z = zlib.decompressobj(wbits)
            data, self._head = self._head, b""
        z = self._z
        if not z.eof:
            yield from self._drain(data)
            data = z.unused_data if z.eof else b""
        # Anything after the end of the stream must be padding; anything else is corrupt.
        if data.strip(b"\x00"):
            raise self._error("unexpected data after the end of the deflate stream")

    def finish(self) -> Iterator[bytes]:
        if self._head or (self._z is not None and not self._z.eof):
            raise self._truncated()
        return iter(())


class _Brotli(_Stage):
    """br (RFC 7932), with brotli's own output bound (``output_buffer_limit``, brotli >= 1.2)."""

    name = "br"

    def __init__(self, url: str, piece: int) -> None:
        super().__init__(url, piece)
        self._lib: Any = importlib.import_module("brotli")
        self._d: Any = self._lib.Decompressor()

    def _process(self, data: bytes) -> bytes:
        try:
            out: bytes = self._d.process(data, output_buffer_limit=self.piece)
        except self._lib.error as exc:
            raise self._error(f"corrupt br data: {exc}") from exc
        return out

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._d.is_finished():
            if data.strip(b"\x00"):
                raise self._error("unexpected data after the end of the br stream")
            return
        out = self._process(data)
        # Each call's output is bounded; an empty one means the input so far is all decoded.
        while out:
            yield from _split(out, self.piece)  # the buffer may end a little past its limit
            if self._d.is_finished():
                return
            out = self._process(b"")

    def finish(self) -> Iterator[bytes]:
        if not self._d.is_finished():
            raise self._truncated()
        return iter(())


class _Zstd(_Stage):
    """zstd (RFC 8878), frames back to back; the stdlib's module bounds each call's output
    like zlib, the zstandard package gets its input in small slices instead."""

    name = "zstd"

    def __init__(self, url: str, piece: int) -> None:
        super().__init__(url, piece)
        self._std = _installed("compression.zstd")
        self._lib: Any = importlib.import_module("compression.zstd" if self._std else "zstandard")
        self._obj: Any = None  # the decoder of the frame in progress

    def _new(self) -> Any:
        if self._std:
            options = {
                self._lib.DecompressionParameter.window_log_max: ZSTD_MAX_WINDOW.bit_length() - 1
            }
            return self._lib.ZstdDecompressor(options=options)
        dctx = self._lib.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        return dctx.decompressobj()

    def _call(self, data: bytes) -> bytes:
        error = self._lib.ZstdError
        try:
            if self._std:
                out: bytes = self._obj.decompress(data, self.piece)
            else:
                out = self._obj.decompress(data)
        except error as exc:
            raise self._error(f"corrupt zstd data: {exc}") from exc
        return out

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._obj is None:
                self._obj = self._new()
            step = len(data) if self._std else _ZSTD_SLICE
            head, data = data[:step], data[step:]
            yield from _split(self._call(head), self.piece)
            while self._std and not self._obj.eof and not self._obj.needs_input:
                yield from _split(self._call(b""), self.piece)
            if self._obj.eof:  # a frame ended: what follows starts the next one (3.1)
                data, self._obj = self._obj.unused_data + data, None

    def finish(self) -> Iterator[bytes]:
        if self._obj is not None:
            raise self._truncated()
        return iter(())


def _split(data: bytes, piece: int) -> Iterator[bytes]:
    for offset in range(0, len(data), piece):
        yield data[offset : offset + piece]


_STAGES: dict[str, type[_Stage]] = {
    "gzip": _Gzip,
    "x-gzip": _Gzip,
    "deflate": _Deflate,
    "br": _Brotli,
    "zstd": _Zstd,
}


def _parse_codings(encoding: str | None, url: str) -> list[str]:
    """The codings to undo, in decoding order (the reverse of the header's order)."""
    codings = [c.strip().lower() for c in (encoding or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    unknown = [c for c in codings if c not in SUPPORTED]
    if unknown:
        raise DecompressError(
            f"unsupported Content-Encoding {encoding!r} (supported: {', '.join(SUPPORTED)})",
            url=url,
        )
    if len(codings) > MAX_CODINGS:
        raise DecompressError(
            f"Content-Encoding stacks {len(codings)} codings; at most {MAX_CODINGS} are undone",
            url=url,
        )
    return codings[::-1]


class Decoder:
    """Undo a Content-Encoding incrementally, yielding pieces of at most `piece` bytes."""

    def __init__(self, encoding: str | None, url: str = "", piece: int = 1 << 20) -> None:
        if piece <= 0:
            raise UsageError(f"decode piece size must be positive: {piece}")
        self.encoding = encoding
        self.url = url
        self.piece = piece
        self._stages: list[_Stage] = []
        for coding in _parse_codings(encoding, url):
            self._stages.append(_STAGES[coding](url, piece))
        if not self._stages:
            self._stages.append(_Identity(url, piece))
        self._finished = False

    def _through(self, level: int, pieces: Iterable[bytes]) -> Iterator[bytes]:
        """Push `pieces` through the stages from `level` on, lazily, one piece at a time."""
        if level == len(self._stages):
            yield from pieces
            return
        stage = self._stages[level]
        for piece in pieces:
            yield from self._through(level + 1, stage.feed(piece))

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decode the next chunk of the body. Stopping the iteration early abandons the body:
        decoding cannot continue afterwards."""
        if self._finished:
            raise UsageError("Decoder.feed() called after finish()")
        return self._through(0, (data,))

    def finish(self) -> Iterator[bytes]:
        """Flush the end of the body; raises `DecompressError` if it was truncated."""
        self._finished = True
        for level, stage in enumerate(self._stages):
            yield from self._through(level + 1, stage.finish())
