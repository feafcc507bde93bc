"""Tests for streamer.core.decode: Content-Encoding decoding with bounded output pieces."""

from __future__ import annotations

import functools
import gzip
import itertools
import os
import tracemalloc
import zlib
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.decode import ACCEPT_ENCODING, SUPPORTED, Decoder
from streamer.errors import DecompressError, Result, UsageError

MiB = 1 << 20
TEXT = b"".join(b"line %d of a fairly compressible body\n" % i for i in range(5000))
RANDOM = os.urandom(50_000)  # incompressible: output barely larger than input


def zlib_deflate(data: bytes) -> bytes:
    """deflate as RFC 9110 means it: a zlib stream (RFC 1950)."""
    return zlib.compress(data)


def raw_deflate(data: bytes) -> bytes:
    """deflate as many servers send it: bare RFC 1951 blocks."""
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def decode_chunks(decoder: Decoder, chunks: Iterable[bytes]) -> bytes:
    """Feed every chunk then finish, checking each piece respects the bound."""
    out = bytearray()
    for chunk in chunks:
        for piece in decoder.feed(chunk):
            assert 0 < len(piece) <= decoder.piece
            out += piece
    for piece in decoder.finish():
        assert 0 < len(piece) <= decoder.piece
        out += piece
    return bytes(out)


def decode(encoding: str | None, body: bytes, step: int | None = None, piece: int = MiB) -> bytes:
    """Decode body fed whole (step None) or in chunks of `step` bytes."""
    step = step or max(1, len(body))
    chunks = [body[i : i + step] for i in range(0, len(body), step)]
    return decode_chunks(Decoder(encoding, url="https://example.com/z", piece=piece), chunks)


def test_constants() -> None:
    """We advertise exactly the codings we can decode, and name all the spellings (br and
    zstd too when installed: tests/core/test_decode_optional.py)."""
    assert SUPPORTED[:4] == ("gzip", "x-gzip", "deflate", "identity")
    assert ACCEPT_ENCODING.startswith("gzip, deflate")


@pytest.mark.parametrize("encoding", [None, "", "identity", "IDENTITY", " identity "])
def test_identity_passes_bytes_through(encoding: str | None) -> None:
    """No coding or identity yields the input unchanged."""
    assert decode(encoding, TEXT) == TEXT
    assert decode(encoding, TEXT, step=1) == TEXT
    assert list(Decoder(encoding).feed(b"")) == []


def test_identity_splits_large_chunks_to_the_piece_bound() -> None:
    """Even identity yields no piece larger than `piece`, at byte-exact boundaries."""
    pieces = list(Decoder(None, piece=1000).feed(bytes(2001)))
    assert [len(p) for p in pieces] == [1000, 1000, 1]
    assert [len(p) for p in Decoder(None, piece=1000).feed(bytes(1000))] == [1000]


@pytest.mark.parametrize(
    "encoding", ["compress", "xz", "gzip, compress", "compress, gzip", "gzip;q=1"]
)
def test_unsupported_encoding_is_decompress_error(encoding: str) -> None:
    """An unknown coding, alone or stacked with known ones, is refused up front with the URL."""
    with pytest.raises(DecompressError) as info:
        Decoder(encoding, url="https://example.com/z")
    assert encoding in info.value.message
    assert info.value.url == "https://example.com/z"
    assert info.value.result is Result.BODY_DECOMPRESS_FAILED


def test_non_positive_piece_is_usage_error() -> None:
    """A piece bound of 0 would mean 'unlimited' to zlib, so it is refused."""
    with pytest.raises(UsageError):
        Decoder("gzip", piece=0)


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP", " gzip "])
def test_gzip_whole_byte_by_byte_and_odd_splits_agree(encoding: str) -> None:
    """A gzip body decodes the same fed whole, one byte at a time, or in odd chunks."""
    body = gzip.compress(TEXT)
    assert decode(encoding, body) == TEXT
    assert decode(encoding, body, step=1) == TEXT
    assert decode(encoding, body, step=7) == TEXT
    assert decode(encoding, body, step=4099) == TEXT


def test_small_piece_bound_holds_on_one_small_compressed_chunk() -> None:
    """One ~1 KiB chunk expanding to 1 MiB comes out in pieces of at most `piece`, losslessly."""
    body = gzip.compress(bytes(MiB))
    assert len(body) < 2048
    pieces = list(Decoder("gzip", piece=1000).feed(body))
    assert max(len(p) for p in pieces) == 1000
    assert b"".join(pieces) == bytes(MiB)


def test_feed_yields_everything_decodable_so_far() -> None:
    """After each feed, all output zlib can produce from the bytes so far has been yielded."""
    body = gzip.compress(bytes(MiB))
    for cut in range(11, len(body), 7):
        prefix = body[:cut]
        available = len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(prefix))
        got = sum(len(p) for p in Decoder("gzip", piece=1000).feed(prefix))
        assert got == available, cut


def test_incompressible_gzip_round_trips() -> None:
    """Random data (where output is barely bigger than input) decodes exactly."""
    assert decode("gzip", gzip.compress(RANDOM), step=333, piece=4096) == RANDOM


def test_multi_member_gzip_decodes_members_in_sequence() -> None:
    """Concatenated gzip members decode to the concatenation of their contents."""
    body = gzip.compress(b"first member\n") + gzip.compress(b"") + gzip.compress(TEXT)
    expected = b"first member\n" + TEXT
    assert decode("gzip", body) == expected
    assert decode("gzip", body, step=1) == expected


def test_gzip_zero_padding_after_a_member_is_ignored() -> None:
    """NUL padding between or after members is skipped (it can never start a member)."""
    body = gzip.compress(b"abc") + bytes(10) + gzip.compress(b"def") + bytes(5)
    assert decode("gzip", body) == b"abcdef"
    assert decode("gzip", body, step=3) == b"abcdef"


def test_garbage_after_a_gzip_member_is_decompress_error() -> None:
    """Bytes after a member that are not another member are corrupt data."""
    with pytest.raises(DecompressError):
        decode("gzip", gzip.compress(b"abc") + b"trailing garbage")


@pytest.mark.parametrize("cut", [1, 4, 8, 20, 100])
def test_truncated_gzip_raises_on_finish(cut: int) -> None:
    """A gzip body missing its last `cut` bytes fails at finish, never silently."""
    body = gzip.compress(TEXT)[:-cut]
    decoder = Decoder("gzip", url="https://example.com/t")
    for _ in decoder.feed(body):
        pass
    with pytest.raises(DecompressError, match="ended before the end") as info:
        list(decoder.finish())
    assert info.value.url == "https://example.com/t"


def test_gzip_cut_inside_the_header_raises_on_finish() -> None:
    """A body of only the first bytes of a gzip header is truncated, not empty."""
    with pytest.raises(DecompressError):
        decode("gzip", gzip.compress(TEXT)[:5])


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_empty_body_with_a_coding_is_empty(encoding: str) -> None:
    """An empty body (e.g. a HEAD-like reply) decodes to nothing rather than failing."""
    assert decode(encoding, b"") == b""


def test_corrupt_gzip_data_is_decompress_error() -> None:
    """A flipped byte in the compressed data is a DecompressError chained from zlib.error."""
    body = bytearray(gzip.compress(TEXT))
    body[len(body) // 2] ^= 0xFF
    with pytest.raises(DecompressError) as info:
        decode("gzip", bytes(body))
    assert isinstance(info.value.__cause__, zlib.error)


def test_corrupt_gzip_crc_is_decompress_error() -> None:
    """A wrong CRC-32 in the gzip trailer (RFC 1952 2.3.1) is detected."""
    body = bytearray(gzip.compress(TEXT))
    body[-8] ^= 0x01
    with pytest.raises(DecompressError):
        decode("gzip", bytes(body))


def test_not_gzip_at_all_is_decompress_error() -> None:
    """A plain-text body labelled gzip fails on the magic bytes."""
    with pytest.raises(DecompressError):
        decode("gzip", b"<html>not compressed</html>")


@pytest.mark.parametrize("wrap", [zlib_deflate, raw_deflate])
@pytest.mark.parametrize("step", [None, 1, 2, 3, 1000])
def test_deflate_accepts_zlib_and_raw(wrap: object, step: int | None) -> None:
    """deflate decodes both zlib-wrapped and raw streams, however the first bytes are split."""
    assert callable(wrap)
    for data in (TEXT, RANDOM, b"x", b""):
        assert decode("deflate", wrap(data), step=step) == data


def test_raw_deflate_whose_first_byte_has_method_8_is_still_raw() -> None:
    """A raw stored block starting 0x88 0x1c passes the mod-31 check but not CINFO <= 7."""
    data = bytes(range(65, 65 + 28))
    # Stored block (BTYPE 00, padding bits set), LEN 28, NLEN, data; then an empty final block.
    raw = b"\x88\x1c\x00\xe3\xff" + data + b"\x03\x00"
    assert (0x88 * 256 + 0x1C) % 31 == 0
    assert decode("deflate", raw) == data
    assert decode("deflate", raw, step=1) == data


@pytest.mark.parametrize("wrap", [zlib_deflate, raw_deflate])
def test_truncated_deflate_raises_on_finish(wrap: object) -> None:
    """A deflate stream missing its end (last block or Adler-32) fails at finish."""
    assert callable(wrap)
    with pytest.raises(DecompressError, match="ended before the end"):
        decode("deflate", wrap(TEXT)[:-2])


def test_one_byte_deflate_body_is_truncated() -> None:
    """A single byte cannot be a whole deflate stream; finish says so."""
    with pytest.raises(DecompressError):
        decode("deflate", b"\x78")


def test_deflate_trailing_garbage_fails_but_zero_padding_passes() -> None:
    """After the end of a deflate stream only NUL padding is tolerated."""
    assert decode("deflate", zlib_deflate(b"abc") + bytes(3)) == b"abc"
    with pytest.raises(DecompressError, match="after the end"):
        decode("deflate", zlib_deflate(b"abc") + b"junk")
    with pytest.raises(DecompressError, match="after the end"):
        decode("deflate", zlib_deflate(b"abc") + bytes(3) + b"j", step=1)


def test_corrupt_deflate_is_decompress_error() -> None:
    """A corrupt zlib stream (bad Adler-32) is a DecompressError."""
    body = bytearray(zlib_deflate(TEXT))
    body[-1] ^= 0x01
    with pytest.raises(DecompressError):
        decode("deflate", bytes(body))


def test_stacked_codings_are_undone_in_reverse_order() -> None:
    """'deflate, gzip' means deflate was applied first, so gzip is undone first."""
    body = gzip.compress(zlib_deflate(TEXT))
    assert decode("deflate, gzip", body) == TEXT
    assert decode("deflate, gzip", body, step=1, piece=100) == TEXT
    assert decode("identity, gzip", gzip.compress(TEXT)) == TEXT
    with pytest.raises(DecompressError):
        decode("gzip, deflate", body)  # wrong order: the outer layer is not deflate


def test_stacked_truncation_is_detected() -> None:
    """A truncated outer gzip layer of a stacked body fails at finish."""
    with pytest.raises(DecompressError):
        decode("deflate, gzip", gzip.compress(zlib_deflate(TEXT))[:-4])


def test_feed_after_finish_is_usage_error() -> None:
    """Feeding a finished decoder is a caller bug."""
    decoder = Decoder("gzip")
    list(decoder.finish())
    with pytest.raises(UsageError):
        decoder.feed(b"x")


@given(
    st.binary(max_size=3000) | st.sampled_from([TEXT[:3000], bytes(3000)]),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
    st.integers(min_value=1, max_value=700),
    st.sampled_from(["gzip", "deflate", "raw", "deflate, gzip"]),
)
@settings(max_examples=200, deadline=None)
def test_any_split_decodes_to_the_original(
    data: bytes, cuts: list[int], piece: int, encoding: str
) -> None:
    """Any split of an encoded body, with any piece bound, decodes to the original."""
    if encoding == "gzip":
        body = gzip.compress(data)
    elif encoding == "raw":
        body, encoding = raw_deflate(data), "deflate"
    elif encoding == "deflate":
        body = zlib_deflate(data)
    else:
        body = gzip.compress(zlib_deflate(data))
    bounds = [0, *sorted(c % (len(body) + 1) for c in cuts), len(body)]
    chunks = [body[a:b] for a, b in itertools.pairwise(bounds)]
    assert decode_chunks(Decoder(encoding, piece=piece), chunks) == data


# --- a real bomb: 1 GiB of zeros as about 1 MiB of gzip --------------------------------------

BOMB_SIZE = 1 << 30
CHUNK = 64 * 1024


@functools.cache
def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzip-compressed in a streaming loop so building it stays small."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    parts = [compressor.compress(zeros) for _ in range(BOMB_SIZE // MiB)]
    parts.append(compressor.flush())
    return b"".join(parts)


def bomb_chunks() -> Iterable[bytes]:
    bomb = gzip_bomb()
    return (bomb[i : i + CHUNK] for i in range(0, len(bomb), CHUNK))


def test_gzip_bomb_can_be_stopped_early_with_flat_memory() -> None:
    """Stopping at a 10 MiB limit mid-chunk reads one 64 KiB chunk and allocates ~one piece."""
    bomb = gzip_bomb()
    assert len(bomb) < 2 * MiB  # the test really is a >500:1 bomb
    limit = 10 * MiB
    decoder = Decoder("gzip", piece=MiB)
    total = 0
    chunks_read = 0
    tracemalloc.start()
    try:
        for chunk in bomb_chunks():
            chunks_read += 1
            for piece in decoder.feed(chunk):
                assert len(piece) <= MiB
                total += len(piece)
                if total > limit:
                    break
            if total > limit:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert limit < total <= limit + MiB
    assert chunks_read == 1  # the first 64 KiB chunk alone holds far more than 10 MiB
    assert peak < 4 * MiB


@pytest.mark.slow
def test_gzip_bomb_decodes_fully_in_bounded_pieces() -> None:
    """All 1 GiB decodes in pieces of at most 1 MiB with peak allocation of a few pieces."""
    decoder = Decoder("gzip", piece=MiB)
    total = 0
    largest = 0
    tracemalloc.start()
    try:
        for chunk in bomb_chunks():
            for piece in decoder.feed(chunk):
                largest = max(largest, len(piece))
                total += len(piece)
                # Zeros in, zeros out; checking a byte keeps the piece honest without a copy.
                assert piece[-1] == 0
        for piece in decoder.finish():
            total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == BOMB_SIZE
    assert largest == MiB
    assert peak < 4 * MiB


def test_a_deep_stack_of_codings_is_refused_before_decoding() -> None:
    """More than five stacked codings (curl's bound) is a DecompressError, exit 61, at once."""
    body = b"x"
    for _ in range(1000):
        body = gzip.compress(body, mtime=0)
    with pytest.raises(DecompressError) as info:
        decoder = Decoder(", ".join(["gzip"] * 1000))
        b"".join(decoder.feed(body)) + b"".join(decoder.finish())
    assert info.value.result is Result.BODY_DECOMPRESS_FAILED
    assert info.value.exit_code == 61
    assert "1000" in str(info.value)


def test_five_stacked_codings_still_decode() -> None:
    """Five codings, the most curl accepts, are undone in reverse order."""
    body = TEXT
    for _ in range(5):
        body = gzip.compress(body, mtime=0)
    decoder = Decoder("gzip, gzip, gzip, gzip, gzip")
    assert b"".join(decoder.feed(body)) + b"".join(decoder.finish()) == TEXT
