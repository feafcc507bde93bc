from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from python_multipart.multipart import MultipartParser, parse_options_header

from streamer.core.multipart import (
    DEFAULT_FILE_TYPE,
    PART_TAIL,
    PartSpec,
    boundary_collides,
    closing,
    content_length,
    content_type_header,
    escape_name,
    field_spec,
    new_boundary,
    part_head,
)
from streamer.errors import UsageError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "multipart"
BOUNDARY = new_boundary(bytes(range(16)))
BCHARSNOSPACE = re.compile(r"[0-9A-Za-z'()+_,\-./:=?]+")

Part = tuple[PartSpec, bytes]


@dataclass(frozen=True)
class Decoded:
    """One part as a receiver sees it."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def assemble(boundary: str, parts: Sequence[Part]) -> bytes:
    """The whole body, built the way a streaming caller does: head, body, tail, ..., closing."""
    out = bytearray()
    for spec, data in parts:
        out += part_head(boundary, spec) + data + PART_TAIL
    return bytes(out + closing(boundary))


def file_part(name: str, filename: str, data: bytes, content_type: str | None = None) -> Part:
    return PartSpec(name, filename, content_type, len(data)), data


def sent(spec: PartSpec, data: bytes) -> Decoded:
    """What a receiver should get back for `spec`: escaped name and base file name, no path."""
    filename = None if spec.sent_filename is None else escape_name(spec.sent_filename)
    return Decoded(escape_name(spec.name), filename, spec.sent_content_type, data)


def decode_python_multipart(boundary: str, body: bytes) -> list[Decoded]:
    """Parse with python-multipart's streaming parser, reading raw part headers."""
    parts: list[Decoded] = []
    headers: dict[bytes, bytes] = {}
    field, value, data = bytearray(), bytearray(), bytearray()

    def on_header_end() -> None:
        headers[bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def on_part_end() -> None:
        _, params = parse_options_header(headers[b"content-disposition"])
        filename = params.get(b"filename")
        ctype = headers.get(b"content-type")
        parts.append(
            Decoded(
                params[b"name"].decode("utf-8"),
                None if filename is None else filename.decode("utf-8"),
                None if ctype is None else ctype.decode("ascii"),
                bytes(data),
            )
        )
        headers.clear()
        data.clear()

    callbacks = {
        "on_header_field": lambda b, s, e: field.extend(b[s:e]),
        "on_header_value": lambda b, s, e: value.extend(b[s:e]),
        "on_header_end": on_header_end,
        "on_part_data": lambda b, s, e: data.extend(b[s:e]),
        "on_part_end": on_part_end,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    assert parser.write(body) == len(body)
    parser.finalize()
    return parts


def decode_email(boundary: str, body: bytes) -> list[Decoded]:
    """Parse with the stdlib email package, a second independent MIME decoder."""
    head = f"Content-Type: {content_type_header(boundary)}\r\n\r\n".encode("ascii")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    assert isinstance(msg, EmailMessage)
    assert msg.is_multipart()
    assert not msg.defects
    parts: list[Decoded] = []
    for part in msg.iter_parts():
        assert not part.defects
        params = part["Content-Disposition"].params
        ctype = dict(part.raw_items()).get("Content-Type")  # as sent, not re-rendered
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append(
            Decoded(
                params["name"],
                params.get("filename"),
                ctype,
                payload,
            )
        )
    return parts


# --- golden bytes --------------------------------------------------------------------------

GOLDEN_PARTS: list[Part] = [
    field_spec("title", "Hello, world"),
    field_spec('say "hi"\r\n', "caf\u00e9"),
    file_part("doc", "/home/u/secret/notes.txt", b"line 1\r\nline 2\n", "text/plain"),
    file_part("blob", "C:\\Users\\x\\data.bin", b"\x00\x01\xff"),
]

GOLDEN = (
    b"------streamer000102030405060708090a0b0c0d0e0f\r\n"
    b'Content-Disposition: form-data; name="title"\r\n'
    b"\r\n"
    b"Hello, world\r\n"
    b"------streamer000102030405060708090a0b0c0d0e0f\r\n"
    b'Content-Disposition: form-data; name="say %22hi%22%0D%0A"\r\n'
    b"\r\n"
    b"caf\xc3\xa9\r\n"
    b"------streamer000102030405060708090a0b0c0d0e0f\r\n"
    b'Content-Disposition: form-data; name="doc"; filename="notes.txt"\r\n'
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"line 1\r\nline 2\n\r\n"
    b"------streamer000102030405060708090a0b0c0d0e0f\r\n"
    b'Content-Disposition: form-data; name="blob"; filename="data.bin"\r\n'
    b"Content-Type: application/octet-stream\r\n"
    b"\r\n"
    b"\x00\x01\xff\r\n"
    b"------streamer000102030405060708090a0b0c0d0e0f--\r\n"
)


def test_golden_simple_form() -> None:
    """A small form assembles to exactly the bytes written out here."""
    assert assemble(BOUNDARY, GOLDEN_PARTS) == GOLDEN


def test_golden_fixture_file() -> None:
    """fixtures/multipart/simple.bin holds the same golden body, byte for byte."""
    assert (FIXTURES / "simple.bin").read_bytes() == GOLDEN


def test_golden_content_length() -> None:
    """content_length of the golden form is the length of the golden bytes."""
    assert content_length(BOUNDARY, [spec for spec, _ in GOLDEN_PARTS]) == len(GOLDEN)


def test_golden_decodes_with_both_parsers() -> None:
    """Both decoders read back the escaped names, base file names, types and bytes."""
    expected = [
        Decoded("title", None, None, b"Hello, world"),
        Decoded("say %22hi%22%0D%0A", None, None, "caf\u00e9".encode()),
        Decoded("doc", "notes.txt", "text/plain", b"line 1\r\nline 2\n"),
        Decoded("blob", "data.bin", DEFAULT_FILE_TYPE, b"\x00\x01\xff"),
    ]
    assert decode_python_multipart(BOUNDARY, GOLDEN) == expected
    assert decode_email(BOUNDARY, GOLDEN) == expected


# --- part heads and pieces -----------------------------------------------------------------


def test_plain_field_has_no_content_type() -> None:
    """A plain field sends only Content-Disposition, no Content-Type header."""
    head = part_head("b", PartSpec("q", size=1))
    assert head == b'--b\r\nContent-Disposition: form-data; name="q"\r\n\r\n'


def test_plain_field_with_explicit_content_type() -> None:
    """A plain field given a content type sends it."""
    head = part_head("b", PartSpec("j", content_type="application/json"))
    assert head.endswith(b"\r\nContent-Type: application/json\r\n\r\n")


def test_file_part_defaults_to_octet_stream() -> None:
    """A file part without a content type is sent as application/octet-stream."""
    assert PartSpec("f", "a.bin").sent_content_type == "application/octet-stream"
    assert b"Content-Type: application/octet-stream\r\n" in part_head("b", PartSpec("f", "a"))


def test_non_ascii_names_are_sent_as_utf8() -> None:
    """Non-ASCII names and file names go as raw UTF-8, not percent-encoded or RFC 2231."""
    head = part_head("b", PartSpec("n\u00e4me", "\u65e5\u672c.txt"))
    assert 'name="n\u00e4me"; filename="\u65e5\u672c.txt"'.encode() in head


def test_backslash_in_name_is_sent_as_is() -> None:
    """Backslash is not escaped (WHATWG); RFC 822-style parsers would read it as an escape."""
    assert part_head("b", PartSpec("a\\b")).splitlines()[1].endswith(b'name="a\\b"')


def test_closing_and_tail() -> None:
    """The close-delimiter is --BOUNDARY--CRLF and each part body ends with CRLF."""
    assert closing("xyz") == b"--xyz--\r\n"
    assert PART_TAIL == b"\r\n"


def test_content_type_header() -> None:
    """The request Content-Type names the boundary, quoted only when it is not a token."""
    assert content_type_header(BOUNDARY) == f"multipart/form-data; boundary={BOUNDARY}"
    assert content_type_header("a b:c") == 'multipart/form-data; boundary="a b:c"'


def test_field_spec_encodes_utf8() -> None:
    """field_spec encodes the value as UTF-8 and records its byte size."""
    spec, body = field_spec("k", "\u20ac1")
    assert body == b"\xe2\x82\xac1"
    assert spec == PartSpec("k", None, None, 4)


def test_field_spec_refuses_lone_surrogate() -> None:
    """A value with no UTF-8 form (lone surrogate) is a UsageError naming the field."""
    with pytest.raises(UsageError, match="'k'"):
        field_spec("k", "\udcff")


# --- escaping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ('a"b', "a%22b"),
        ("a\rb\nc\r\n", "a%0Db%0Ac%0D%0A"),
        ("semi;colon=x", "semi;colon=x"),
        ("%22 stays", "%22 stays"),
        ("\u00fc\U0001f600", "\u00fc\U0001f600"),
        ("back\\slash", "back\\slash"),
    ],
)
def test_escape_name(raw: str, escaped: str) -> None:
    """Only quote, CR and LF are percent-encoded (WHATWG); an existing % is left alone."""
    assert escape_name(raw) == escaped


@pytest.mark.parametrize("bad", ["\x00", "a\x01", "\t", "x\x1f", "\x7f", "\x85"])
def test_control_characters_in_name_refused(bad: str) -> None:
    """NUL and control characters other than CR/LF in a field name raise UsageError."""
    with pytest.raises(UsageError, match="form field name") as info:
        PartSpec(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", ["a\x00.txt", "x\x1b[31m.txt", "dir\x00/ok.txt"])
def test_control_characters_in_filename_refused(bad: str) -> None:
    """NUL and control characters in a file name raise UsageError naming the field."""
    with pytest.raises(UsageError, match="form field 'upload': filename"):
        PartSpec("upload", bad)


def test_lone_surrogate_in_name_refused() -> None:
    """A name that cannot be encoded as UTF-8 is refused."""
    with pytest.raises(UsageError, match="surrogate"):
        PartSpec("a\udc80")


def test_escape_name_refuses_nul() -> None:
    """escape_name itself refuses NUL too."""
    with pytest.raises(UsageError, match="U\\+0000"):
        escape_name("a\x00")


@pytest.mark.parametrize("bad", ["text/plain\r\nX-Evil: 1", "a\nb", "a\x00", "", "t\u00e9xt/x"])
def test_bad_content_type_refused(bad: str) -> None:
    """Content types with CR, LF, NUL, other controls, non-ASCII, or empty raise UsageError."""
    with pytest.raises(UsageError, match="form field 'f': content type"):
        PartSpec("f", "a.bin", bad)


def test_negative_size_refused() -> None:
    """A negative size is a UsageError."""
    with pytest.raises(UsageError, match="negative"):
        PartSpec("f", size=-1)


# --- base name only ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "base"),
    [
        ("/home/u/secret/a.txt", "a.txt"),
        ("C:\\Users\\x\\b.bin", "b.bin"),
        ("rel/dir\\mixed/c.tar.gz", "c.tar.gz"),
        ("plain.txt", "plain.txt"),
        ("\\\\server\\share\\d.doc", "d.doc"),
    ],
)
def test_only_base_name_is_sent(local: str, base: str) -> None:
    """Only the file's base name is sent; no directory of the local path reaches the wire."""
    head = part_head("b", PartSpec("f", local))
    disposition = head.split(b"\r\n")[1]
    assert disposition.endswith(f'; filename="{base}"'.encode())
    assert b"/" not in disposition
    assert b"\\" not in disposition


@pytest.mark.parametrize("bad", ["dir/", "C:\\x\\", ""])
def test_filename_without_base_name_refused(bad: str) -> None:
    """A file name that is only directories (or empty) is a UsageError."""
    with pytest.raises(UsageError, match="no base name"):
        PartSpec("f", bad)


# --- boundary ------------------------------------------------------------------------------


def test_boundary_is_random() -> None:
    """Two boundaries differ: each holds 128 fresh random bits."""
    assert new_boundary() != new_boundary()


def test_boundary_shape() -> None:
    """A boundary is <= 70 bcharsnospace characters with 32 hex digits (128 bits)."""
    boundary = new_boundary()
    assert len(boundary) <= 70
    assert BCHARSNOSPACE.fullmatch(boundary)
    assert re.fullmatch(r"----streamer[0-9a-f]{32}", boundary)


def test_boundary_from_entropy_is_deterministic() -> None:
    """Fixed entropy gives a fixed boundary; the longest allowed still fits in 70 chars."""
    assert new_boundary(b"\xab" * 16) == "----streamer" + "ab" * 16
    assert len(new_boundary(b"\x00" * 29)) == 70


@pytest.mark.parametrize("size", [0, 15, 30])
def test_boundary_entropy_size_checked(size: int) -> None:
    """Entropy under 128 bits, or too long for a 70-char boundary, is refused."""
    with pytest.raises(UsageError, match="entropy"):
        new_boundary(bytes(size))


@pytest.mark.parametrize("bad", ["", "a" * 71, "ends with space ", "semi;colon", 'q"', "\u00e9"])
def test_invalid_boundary_refused(bad: str) -> None:
    """Boundaries outside RFC 2046's grammar are refused wherever they are used."""
    for use in (closing, content_type_header, lambda b: part_head(b, PartSpec("x"))):
        with pytest.raises(UsageError, match="boundary"):
            use(bad)


def test_boundary_collides() -> None:
    """boundary_collides finds --BOUNDARY in data, and not a mere prefix of it."""
    assert boundary_collides(BOUNDARY, b"xx\r\n--" + BOUNDARY.encode() + b"yy")
    assert not boundary_collides(BOUNDARY, b"\r\n--" + BOUNDARY.encode()[:-1])


# --- content length ------------------------------------------------------------------------


def test_unknown_size_gives_no_content_length() -> None:
    """Any part of unknown size makes content_length None (the caller sends chunked)."""
    specs = [PartSpec("a", size=3), PartSpec("f", "x.bin"), PartSpec("b", size=0)]
    assert content_length(BOUNDARY, specs) is None


def test_empty_form_content_length() -> None:
    """A form with no parts is just the close-delimiter."""
    assert content_length(BOUNDARY, []) == len(closing(BOUNDARY))


# --- properties ----------------------------------------------------------------------------

# Names with quotes, semicolons, equals, percent, non-ASCII and CR/LF; no other controls
# (refused), no surrogates, and no backslash: both decoders treat "\\" as a quoted-string
# escape (RFC 822), while browsers and we send it as is (see test_backslash_in_name_is_sent_as_is).
NAME_CHARS = st.one_of(
    st.sampled_from(list("\"\r\n;=%: \u00e9\u4e2d\U0001f600\u2028'")),
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\\"),
)
NAMES = st.text(NAME_CHARS, max_size=12)
BASE_NAMES = NAMES.filter(lambda name: name and "/" not in name)
DIRS = st.sampled_from(["", "/home/u/", "C:\\Users\\x\\", "a/b\\c/"])


@st.composite
def contents(draw: st.DrawFn, boundary: str) -> bytes:
    """Random bytes mixed with CRLFs and pieces of the delimiter that stop short of it."""
    delimiter = b"\r\n--" + boundary.encode()
    cut = st.integers(0, len(delimiter) - 1)
    piece = st.one_of(
        st.binary(max_size=20),
        st.sampled_from([b"\r\n", b"\r", b"\n", b"--", b"\r\n\r\n", b"--\r\n"]),
        cut.map(lambda n: delimiter[:n]),
        cut.map(lambda n: delimiter[2 : 2 + n]),
    )
    data = b"".join(draw(st.lists(piece, max_size=8)))
    assume(not boundary_collides(boundary, data))
    return data


@st.composite
def forms(draw: st.DrawFn) -> tuple[str, list[Part]]:
    """A random boundary and 1 to 6 parts, plain fields and files mixed."""
    boundary = new_boundary(draw(st.binary(min_size=16, max_size=16)))
    parts: list[Part] = []
    for _ in range(draw(st.integers(1, 6))):
        name, data = draw(NAMES), draw(contents(boundary))
        if draw(st.booleans()):
            filename = draw(DIRS) + draw(BASE_NAMES)
            ctype = draw(st.sampled_from([None, "text/plain; charset=utf-8", "image/png"]))
            parts.append(file_part(name, filename, data, ctype))
        else:
            parts.append((PartSpec(name, size=len(data)), data))
    return boundary, parts


@settings(max_examples=300)
@given(forms())
def test_content_length_matches_body(form: tuple[str, list[Part]]) -> None:
    """content_length equals the length of the assembled body, whatever the names and data."""
    boundary, parts = form
    body = assemble(boundary, parts)
    assert content_length(boundary, [spec for spec, _ in parts]) == len(body)


@settings(max_examples=300)
@given(forms())
def test_python_multipart_round_trip(form: tuple[str, list[Part]]) -> None:
    """python-multipart reads back every escaped name, base file name and byte of content."""
    boundary, parts = form
    decoded = decode_python_multipart(boundary, assemble(boundary, parts))
    assert decoded == [sent(spec, data) for spec, data in parts]


@settings(max_examples=300)
@given(forms())
def test_email_round_trip(form: tuple[str, list[Part]]) -> None:
    """The stdlib email parser reads back every escaped name, base file name and byte."""
    boundary, parts = form
    decoded = decode_email(boundary, assemble(boundary, parts))
    assert decoded == [sent(spec, data) for spec, data in parts]


@given(NAMES)
def test_escaped_name_has_no_quote_or_newline(name: str) -> None:
    """After escaping, a name can neither close its quotes nor break the header line."""
    escaped = escape_name(name)
    assert not set(escaped) & {'"', "\r", "\n"}
