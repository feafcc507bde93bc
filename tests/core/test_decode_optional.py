"""br (RFC 7932) and zstd (RFC 8878) in streamer.core.decode: the same bounds as gzip.

brotli and zstandard come with ``streamer[compression]``, which .ci/setup installs: a missing
library fails these tests rather than skipping them.
"""

from __future__ import annotations

import functools
import tracemalloc
from collections.abc import Callable, Iterable

import brotli
import pytest
import zstandard

from streamer.core.decode import ACCEPT_ENCODING, SUPPORTED, Decoder
from streamer.errors import DecompressError

MiB = 1 << 20
TEXT = b"".join(b"line %d of a fairly compressible body\n" % i for i in range(5000))
BOMB = 256 * MiB


def br(data: bytes) -> bytes:
    return bytes(brotli.compress(data, quality=5))


def zstd(data: bytes) -> bytes:
    return bytes(zstandard.ZstdCompressor().compress(data))


ENCODERS: dict[str, Callable[[bytes], bytes]] = {"br": br, "zstd": zstd}


def decode(encoding: str, chunks: Iterable[bytes], piece: int = 4096) -> bytes:
    decoder = Decoder(encoding, url="https://example.com/z", piece=piece)
    out = bytearray()
    for chunk in chunks:
        for p in decoder.feed(chunk):
            assert 0 < len(p) <= piece
            out += p
    for p in decoder.finish():
        assert 0 < len(p) <= piece
        out += p
    return bytes(out)


def test_asked_for_when_installed() -> None:
    """--compressed asks for br and zstd only because their libraries are installed here."""
    assert ACCEPT_ENCODING == "gzip, deflate, br, zstd"
    assert {"br", "zstd"} <= set(SUPPORTED)


@pytest.mark.parametrize("encoding", ["br", "zstd"])
@pytest.mark.parametrize("step", [None, 1, 7, 4096])
def test_round_trip_whole_and_byte_by_byte(encoding: str, step: int | None) -> None:
    """The body decodes the same fed whole, one byte at a time, or in odd slices."""
    body = ENCODERS[encoding](TEXT)
    n = step or len(body)
    assert decode(encoding, (body[i : i + n] for i in range(0, len(body), n))) == TEXT


def test_zstd_frames_back_to_back() -> None:
    """Two zstd frames in one body are one body (RFC 8878 3.1)."""
    body = zstd(TEXT) + zstd(b"second")
    assert decode("zstd", [body[:10], body[10:]]) == TEXT + b"second"


def test_stacked_gzip_then_br() -> None:
    """'gzip, br' (br applied last) is undone br first, then gzip."""
    import gzip

    assert decode("gzip, br", [br(gzip.compress(TEXT))]) == TEXT


@pytest.mark.parametrize("encoding", ["br", "zstd"])
def test_truncated_body_is_an_error(encoding: str) -> None:
    """A body cut before the end of its stream is a DecompressError, never a short success."""
    body = ENCODERS[encoding](TEXT)
    with pytest.raises(DecompressError, match="ended before"):
        decode(encoding, [body[: len(body) // 2]])


@pytest.mark.parametrize("encoding", ["br", "zstd"])
def test_corrupt_body_is_an_error(encoding: str) -> None:
    """Garbage labelled br or zstd is a DecompressError (exit 61), not a foreign exception."""
    with pytest.raises(DecompressError, match="corrupt"):
        decode(encoding, [b"\xff" * 64, b"\x00" * 64])


@functools.cache
def bomb(encoding: str) -> bytes:
    """256 MiB of zeros, compressed in a streaming loop."""
    zeros = bytes(MiB)
    if encoding == "br":
        c = brotli.Compressor(quality=5)
        return b"".join([*(c.process(zeros) for _ in range(BOMB // MiB)), c.finish()])
    z = zstandard.ZstdCompressor().compressobj()
    return b"".join([*(z.compress(zeros) for _ in range(BOMB // MiB)), z.flush()])


@pytest.mark.parametrize("encoding", ["br", "zstd"])
def test_bomb_stops_at_a_limit_with_flat_memory(encoding: str) -> None:
    """A >1000:1 bomb fed 64 KiB at a time: stopping at 10 MiB decoded costs a few pieces
    of memory, every piece at most 1 MiB, like gzip."""
    data = bomb(encoding)
    assert len(data) * 1000 < BOMB
    decoder = Decoder(encoding, piece=MiB)
    total = 0
    tracemalloc.start()
    try:
        for i in range(0, len(data), 64 * 1024):
            for piece in decoder.feed(data[i : i + 64 * 1024]):
                assert len(piece) <= MiB
                total += len(piece)
                if total > 10 * MiB:
                    break
            if total > 10 * MiB:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 10 * MiB < total <= 11 * MiB
    assert peak < 6 * MiB, peak


def test_zstd_window_over_8_mib_is_refused() -> None:
    """A zstd frame asking for a 64 MiB window is refused (RFC 8878 3.1.1.1.2: 8 MiB for
    HTTP), so a server cannot make the decoder allocate that much."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=26)
    body = zstandard.ZstdCompressor(compression_params=params).compressobj()
    data = body.compress(bytes(80 * MiB)) + body.flush()
    with pytest.raises(DecompressError):
        decode("zstd", [data], piece=MiB)
