"""streamer.core.tus: tus 1.0.0 header values and decisions, byte by byte."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core import tus
from streamer.errors import ProtocolError, UsageError


def test_metadata_encoding_exact() -> None:
    """Upload-Metadata: "key base64(utf-8 value)" pairs, comma-joined, in the given order;
    an empty value is the key alone (tus 1.0.0, creation)."""
    value = tus.encode_metadata(
        [("filename", "world_domination_plan.pdf"), ("is_confidential", "")]
    )
    assert value == "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential"
    assert tus.encode_metadata([("n", "é")]) == "n w6k="
    assert tus.encode_metadata([]) == ""


@pytest.mark.parametrize("key", ["", "a b", "a,b", "tab\t", "é", "new\nline"])
def test_metadata_bad_keys(key: str) -> None:
    """Keys must be non-empty visible ASCII without commas or spaces: a UsageError names it."""
    with pytest.raises(UsageError, match="bad metadata key"):
        tus.encode_metadata([(key, "v")])


def test_metadata_duplicate_key() -> None:
    """Keys are unique (tus 1.0.0: "All keys MUST be unique")."""
    with pytest.raises(UsageError, match="twice"):
        tus.encode_metadata([("a", "1"), ("a", "2")])


@given(st.lists(st.tuples(st.text("abcXYZ09_-.", min_size=1), st.text()), unique_by=lambda p: p[0]))
def test_metadata_round_trip(pairs: list[tuple[str, str]]) -> None:
    """decode_metadata(encode_metadata(pairs)) gives the pairs back, for any values."""
    if pairs:
        assert tus.decode_metadata(tus.encode_metadata(pairs)) == dict(pairs)


def test_decode_metadata_rejects_bad_base64() -> None:
    with pytest.raises(ProtocolError):
        tus.decode_metadata("a !!!")


@pytest.mark.parametrize(
    ("text", "pair"),
    [("a=b", ("a", "b")), ("a=", ("a", "")), ("a=b=c", ("a", "b=c")), ("k=é x", ("k", "é x"))],
)
def test_meta_arg(text: str, pair: tuple[str, str]) -> None:
    """--meta KEY=VALUE splits at the first '='."""
    assert tus.parse_meta_arg(text) == pair


@pytest.mark.parametrize("text", ["novalue", "=v", "a b=c"])
def test_meta_arg_bad(text: str) -> None:
    with pytest.raises(UsageError):
        tus.parse_meta_arg(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("123", 123),
        (" 42\t", 42),
        ("007", 7),
        ("", None),
        (None, None),
        ("-1", None),
        ("+1", None),
        ("1.0", None),
        ("1e3", None),
        ("١٢", None),  # non-ASCII digits
        ("9" * 18, 10**18 - 1),
        ("9" * 19, None),
    ],
)
def test_parse_count(value: str | None, expected: int | None) -> None:
    """Upload-Offset / Upload-Length: ASCII decimal, non-negative, at most 18 digits."""
    assert tus.parse_count(value) == expected


def test_parse_list_and_server_info() -> None:
    """Tus-Extension and Tus-Checksum-Algorithm are comma lists (case folded); Tus-Max-Size."""
    info = tus.server_info(
        {
            "Tus-Extension": "creation, Termination,,checksum ",
            "Tus-Checksum-Algorithm": "SHA1,md5",
            "Tus-Max-Size": "1000",
        }
    )
    assert info.extensions == {"creation", "termination", "checksum"}
    assert info.checksum_algorithms == ("sha1", "md5")
    assert info.max_size == 1000
    assert tus.parse_list(None) == ()
    assert tus.parse_list("1.0.0,0.2.2") == ("1.0.0", "0.2.2")


@pytest.mark.parametrize(
    ("headers", "speaks"),
    [
        ({"Tus-Resumable": "1.0.0"}, True),
        ({"Tus-Resumable": " 1.0.0 "}, True),
        ({"Tus-Version": "0.2.2,1.0.0"}, True),
        ({"Tus-Resumable": "0.2.2"}, False),
        ({"Tus-Version": "0.2.2"}, False),
        ({}, False),
    ],
)
def test_speaks_tus(headers: dict[str, str], speaks: bool) -> None:
    """An answer is tus 1.0.0 when Tus-Resumable is 1.0.0 (or, for OPTIONS, Tus-Version
    lists it)."""
    assert tus.speaks_tus(headers) is speaks


def test_checksum_support() -> None:
    """A checksum is sent only when the server lists the extension and the algorithm."""
    offered = tus.ServerInfo(frozenset({"checksum"}), ("sha1",))
    tus.check_checksum_support(offered, "sha1")
    with pytest.raises(UsageError, match="offered: sha1"):
        tus.check_checksum_support(offered, "sha256")
    with pytest.raises(UsageError, match="checksum extension"):
        tus.check_checksum_support(tus.ServerInfo(), "sha1")
    assert tus.check_algorithm("SHA256") == "sha256"
    with pytest.raises(UsageError):
        tus.check_algorithm("crc32")


def test_checksum_header_exact() -> None:
    """Upload-Checksum: "<algorithm> <base64 of the raw digest>"."""
    digest = bytes.fromhex("a9993e364706816aba3e25717850c26c9cd0d89d")  # sha1("abc")
    assert tus.checksum_header("sha1", digest) == "sha1 qZk+NkcGgWq6PiVxeFDCbJzQ2J0="
    assert base64.b64decode(tus.checksum_header("sha1", digest).split()[1]) == digest


@pytest.mark.parametrize(
    ("location", "url"),
    [
        ("http://h/files/abc", "http://h/files/abc"),
        ("/files/abc", "http://e:1/files/abc"),
        ("abc", "http://e:1/files/abc"),
        (" /x ", "http://e:1/x"),
        ("", None),
        (None, None),
    ],
)
def test_upload_url(location: str | None, url: str | None) -> None:
    """Location may be relative to the creation endpoint (RFC 9110 10.2.2)."""
    assert tus.upload_url("http://e:1/files/", location) == url


@pytest.mark.parametrize(
    ("offset", "size", "chunk", "length"),
    [(0, 10, None, 10), (4, 10, None, 6), (0, 10, 3, 3), (9, 10, 3, 1), (10, 10, 3, 0)],
)
def test_next_chunk(offset: int, size: int, chunk: int | None, length: int) -> None:
    """The next PATCH carries the rest, or at most chunk_size bytes."""
    assert tus.next_chunk(offset, size, chunk) == length


def test_next_chunk_outside() -> None:
    with pytest.raises(ValueError):
        tus.next_chunk(11, 10, None)


def test_check_offset() -> None:
    """A reported offset must exist and lie within the file."""
    assert tus.check_offset(5, 10, "u") == 5
    with pytest.raises(ProtocolError, match="no valid Upload-Offset"):
        tus.check_offset(None, 10, "u")
    with pytest.raises(ProtocolError, match="past the size"):
        tus.check_offset(11, 10, "u")


def test_resume_url_decisions() -> None:
    """A record resumes only for its own version, the same size and mtime, and with an
    http(s) URL."""
    record = tus.state_record("http://h/files/1", 10, 99)
    assert record["version"] == tus.STATE_VERSION
    assert tus.resume_url(record, 10, 99) == ("http://h/files/1", "")
    url, why = tus.resume_url(record, 11, 99)
    assert url is None and "changed" in why
    url, why = tus.resume_url(record, 10, 98)
    assert url is None and "changed" in why
    url, why = tus.resume_url({**record, "version": 2}, 10, 99)
    assert url is None and "future version" in why
    url, why = tus.resume_url({**record, "url": "file:///etc/passwd"}, 10, 99)
    assert url is None and "no valid URL" in why
    assert tus.state_key("http://e/files", "/a/b") == {"endpoint": "http://e/files", "path": "/a/b"}
