"""HTTP/1.1 framing for the small-file lane: which URLs it sends, what heads it writes and reads.

The lane accepts a narrow subset of HTTP/1.1 (RFC 9112) and says "not simple" (None, or
``Head.simple`` False) for everything else; these tests pin both sides of that line, byte by byte.
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.http1 import (
    ChunkError,
    Dechunker,
    Head,
    Origin,
    head_end,
    parse_head,
    request_head,
    reusable,
    simple_request,
)


def _parse(head: bytes) -> Head | None:
    """parse_head over a whole head, its size found the way the lane finds it."""
    size = head_end(head)
    assert size == len(head)
    return parse_head(head, size)


def _response(*lines: bytes, status: bytes = b"HTTP/1.1 200 OK") -> bytes:
    return b"\r\n".join((status, *lines)) + b"\r\n\r\n"


# --- simple_request: which URLs are sent as written --------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://h/x", Origin("http", "h", 80, "h")),
        ("https://h/x", Origin("https", "h", 443, "h")),
        ("http://h:80/x", Origin("http", "h", 80, "h")),
        ("https://h:443/x", Origin("https", "h", 443, "h")),
        ("http://h:8080/x", Origin("http", "h", 8080, "h:8080")),
        ("https://h:80/x", Origin("https", "h", 80, "h:80")),
        ("http://h:443/x", Origin("http", "h", 443, "h:443")),
        ("http://h:65535/x", Origin("http", "h", 65535, "h:65535")),
        ("http://example.com/x", Origin("http", "example.com", 80, "example.com")),
        ("http://1.2.3.4:8/x", Origin("http", "1.2.3.4", 8, "1.2.3.4:8")),
        ("http://xn--9ca.test/x", Origin("http", "xn--9ca.test", 80, "xn--9ca.test")),
    ],
)
def test_simple_request_origin_default_port_omitted(url: str, origin: Origin) -> None:
    """RFC 9110 4.2.3/7.2: the Host authority omits the scheme's default port (http 80, https
    443) and keeps any other explicit port; the connect port is always filled in."""
    assert simple_request(url) == (origin, "/x")


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://[::1]:8080/x", Origin("http", "::1", 8080, "[::1]:8080")),
        ("http://[::1]/x", Origin("http", "::1", 80, "[::1]")),
        ("https://[2001:db8::1]:443/x", Origin("https", "2001:db8::1", 443, "[2001:db8::1]")),
        ("http://[::ffff:1.2.3.4]/x", Origin("http", "::ffff:1.2.3.4", 80, "[::ffff:1.2.3.4]")),
    ],
)
def test_simple_request_ipv6_literal(url: str, origin: Origin) -> None:
    """RFC 3986 3.2.2: an IP-literal keeps its brackets in the Host authority (RFC 9110 7.2) but
    the host to connect to is the bare address."""
    assert simple_request(url) == (origin, "/x")


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://h", "/"),
        ("http://h/", "/"),
        ("http://h:81", "/"),
        ("http://h?a=1", "/?a=1"),
        ("http://h/x?a=1&b=2", "/x?a=1&b=2"),
        ("http://h/x?a=/b?c:d@e", "/x?a=/b?c:d@e"),
        ("http://h/x#frag", "/x"),
        ("http://h/x?a=1#frag", "/x?a=1"),
        ("http://h/x?a=1#", "/x?a=1"),
        ("http://h/#", "/"),
        ("http://h/a/b/", "/a/b/"),
        ("http://h/a//b", "/a//b"),
        ("http://h/a/..b/.c/c./...", "/a/..b/.c/c./..."),
        ("http://h/-._~!$&'()*+,;=:@", "/-._~!$&'()*+,;=:@"),
        ("http://h/a%2Fb", "/a%2Fb"),
        ("http://h/a%20b?q=%E2%82%AC", "/a%20b?q=%E2%82%AC"),
    ],
)
def test_simple_request_target_as_written(url: str, target: str) -> None:
    """RFC 9112 3.2.1: the origin-form target is the path (empty becomes "/") plus "?query" when
    there is one; RFC 3986 3.5: the fragment is never sent. Allowed characters (RFC 3986 3.3,
    3.4) and well-formed pct-encoded octets (2.1) are kept exactly as written."""
    result = simple_request(url)
    assert result is not None
    assert result[1] == target


def test_simple_request_scheme_case_insensitive() -> None:
    """RFC 3986 3.1: the scheme is case-insensitive; the origin carries its lower-case form."""
    assert simple_request("HTTP://h/x") == (Origin("http", "h", 80, "h"), "/x")


@pytest.mark.parametrize(
    "url",
    [
        "http://u:p@h/",
        "http://u@h/",
        "http://@h/",
        "https://u:p@h:8443/x",
    ],
)
def test_simple_request_userinfo_not_simple(url: str) -> None:
    """RFC 3986 3.2.1: a URL with userinfo (even empty) is left to the full engine's
    credential rules."""
    assert simple_request(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://Example.com/",
        "http://H/",
        "http://[::FFFF]/",
        "http://\u00e9.test/",
        "http://h\u00e9/",
        "http://h_x/",
        "http://h./",
        "http://-h/",
        "http:///x",
        "http://[::1]x/",
    ],
)
def test_simple_request_host_not_simple(url: str) -> None:
    """RFC 3986 3.2.2: a host that needs case folding or IDNA (upper case, non-ASCII), or is not
    a plain lower-case reg-name or IP-literal, is not simple."""
    assert simple_request(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://h/a b",
        'http://h/a"b',
        "http://h/a<b>",
        "http://h/a\\b",
        "http://h/a^b",
        "http://h/a`b",
        "http://h/a{b}",
        "http://h/a|b",
        "http://h/x ",
        "http://h/caf\u00e9",
        "http://h/x?q=caf\u00e9",
        "http://h/x?q=a b",
        "http://h/\x7f",
    ],
)
def test_simple_request_needs_percent_encoding_not_simple(url: str) -> None:
    """RFC 3986 2.1/3.3/3.4: a path or query with a character outside the allowed set (space,
    non-ASCII, delimiters) would be percent-encoded by the full engine; not simple."""
    assert simple_request(url) is None


@pytest.mark.parametrize(
    "url",
    ["http://h/%zz", "http://h/%2", "http://h/%", "http://h/a%g0", "http://h/x?a=%zz"],
)
def test_simple_request_malformed_pct_escape_not_simple(url: str) -> None:
    """RFC 3986 2.1: pct-encoded = "%" HEXDIG HEXDIG; a stray "%" would be re-encoded as "%25"
    by the full engine, so it is not simple."""
    assert simple_request(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://h/a/../b",
        "http://h/./x",
        "http://h/a/..",
        "http://h/a/.",
        "http://h/..",
        "http://h/.",
        "http://h/a/./b?x=1",
    ],
)
def test_simple_request_dot_segments_not_simple(url: str) -> None:
    """RFC 3986 5.2.4: a path with "." or ".." segments is normalised by the full engine; the
    lane does not resolve it itself."""
    assert simple_request(url) is None


@pytest.mark.parametrize(
    "url", ["http://h/a/%2e%2e/b", "http://h/a/%2E%2E/b", "http://h/%2e/x", "http://h/a/.%2e"]
)
def test_simple_request_pct_encoded_dot_segments_not_simple(url: str) -> None:
    """RFC 3986 2.3/6.2.2.2: %2E is equivalent to "." so "%2e%2e" is a dot segment (5.2.4) and
    the full engine resolves it; the lane must not send it as written."""
    assert simple_request(url) is None


@pytest.mark.parametrize("url", ["http://h/x?", "http://h/?", "http://h?", "http://h/x?#frag"])
def test_simple_request_bare_question_mark_not_simple(url: str) -> None:
    """RFC 3986 3.4: an empty query after "?" is kept by some clients and dropped by others; not
    simple."""
    assert simple_request(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h/x",
        "ws://h/x",
        "wss://h/x",
        "file:///x",
        "httpx://h/x",
        "h/x",
        "//h/x",
        "/x",
        "",
        "mailto:a@h",
    ],
)
def test_simple_request_non_http_scheme_not_simple(url: str) -> None:
    """RFC 9110 4.2: only the http and https schemes are sent by the lane."""
    assert simple_request(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://h:99999/",
        "http://h:65536/",
        "http://h:-1/",
        "http://h:abc/",
        "http://h:+80/",
        "http://h: 80/",
        "http://h:8_0/",
        "http://h:80:80/",
        "http://[::1]:70000/",
    ],
)
def test_simple_request_bad_port_not_simple(url: str) -> None:
    """RFC 3986 3.2.3: port = *DIGIT, and a TCP port is at most 65535; anything else is not
    simple."""
    assert simple_request(url) is None


# --- request_head: the bytes the lane writes ---------------------------------------------------


def test_request_head_exact_bytes() -> None:
    """RFC 9112 3/3.2: request-line "GET target HTTP/1.1", then Host first, then the fields in
    order, each "Name: value" CRLF, and an empty line."""
    head = request_head("/x", "h:81", [("User-Agent", "u")])
    assert head == b"GET /x HTTP/1.1\r\nHost: h:81\r\nUser-Agent: u\r\n\r\n"


def test_request_head_no_fields() -> None:
    """RFC 9112 3.2: Host is always sent, even with no other field."""
    assert request_head("/", "h", []) == b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


def test_request_head_keeps_field_order_and_latin1() -> None:
    """RFC 9110 5.3: field order is kept; values are written as latin-1 octets (obs-text)."""
    head = request_head("/a?b=1", "[::1]:8080", [("B", "2"), ("A", "1"), ("X", "caf\u00e9")])
    assert head == (
        b"GET /a?b=1 HTTP/1.1\r\nHost: [::1]:8080\r\nB: 2\r\nA: 1\r\nX: caf\xe9\r\n\r\n"
    )


def test_request_head_from_simple_request() -> None:
    """What simple_request returns is what request_head writes."""
    result = simple_request("http://[::1]:8080/x?a=1#f")
    assert result is not None
    origin, target = result
    assert request_head(target, origin.authority, []) == (
        b"GET /x?a=1 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"
    )


# --- head_end: where the response head stops ---------------------------------------------------


@pytest.mark.parametrize(
    "buf",
    [
        b"",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\n\r",
        b"HTTP/1.1 200 OK\r\nA: b\r\n",
        b"HTTP/1.1 200 OK\n\n",
        b"HTTP/1.1 200 OK\r\n\n\r\n",
    ],
)
def test_head_end_incomplete(buf: bytes) -> None:
    """RFC 9112 2.1: the head ends at the empty line (CRLF CRLF); -1 until it has arrived."""
    assert head_end(buf) == -1
    assert head_end(bytearray(buf)) == -1


@pytest.mark.parametrize(
    ("buf", "size"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", 19),
        (b"HTTP/1.1 200 OK\r\n\r\nbody", 19),
        (b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n\r\n\r\n", 25),
        (b"\r\n\r\n", 4),
    ],
)
def test_head_end_size_includes_crlfcrlf(buf: bytes, size: int) -> None:
    """The size counts the head through its final CRLF CRLF (4 bytes), the first one only;
    bytes after it are body. Works on bytes and bytearray alike."""
    assert head_end(buf) == size
    assert head_end(bytearray(buf)) == size


# --- parse_head: status line and fields --------------------------------------------------------


def test_parse_head_basic() -> None:
    """RFC 9112 4/5: status, reason, fields with lower-case names, Content-Length framing."""
    buf = _response(b"Content-Type: text/plain", b"Content-Length: 5")
    head = _parse(buf)
    assert head == Head(
        status=200,
        reason="OK",
        block=b"Content-Type: text/plain\r\nContent-Length: 5\r\n",
        length=5,
        keep_alive=True,
        simple=True,
        size=len(buf),
    )
    assert head.fields == {"content-type": "text/plain", "content-length": "5"}


def test_parse_head_reads_only_size_bytes_and_bytearray() -> None:
    """Only the first `size` bytes are the head: the body after it (whatever it holds) is not
    parsed; a bytearray buffer is accepted."""
    head = _response(b"Content-Length: 4")
    buf = bytearray(head + b"\x00\r\n :")
    parsed = parse_head(buf, head_end(buf))
    assert parsed is not None
    assert parsed.size == len(head)
    assert parsed.length == 4
    assert parsed.simple


def test_parse_head_field_names_lower_case() -> None:
    """RFC 9110 5.1: field names are case-insensitive; they are stored lower-case."""
    parsed = _parse(_response(b"X-FOO: a", b'eTaG: "e"', b"content-LENGTH: 0"))
    assert parsed is not None
    assert parsed.fields == {"x-foo": "a", "etag": '"e"', "content-length": "0"}
    assert parsed.length == 0


def test_parse_head_repeated_fields_joined() -> None:
    """RFC 9110 5.3: repeated field lines are combined in order with ", ", whatever the case of
    their names."""
    parsed = _parse(_response(b"Vary: a", b"X: 1", b"vary: b", b"VARY: c"))
    assert parsed is not None
    assert parsed.fields == {"vary": "a, b, c", "x": "1"}


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (b"X: v", "v"),
        (b"X:v", "v"),
        (b"X:   v   ", "v"),
        (b"X:\t v \t", "v"),
        (b"X: a b\tc ", "a b\tc"),
        (b"X:", ""),
        (b"X:  \t ", ""),
        (b"X: caf\xe9", "caf\u00e9"),
        (b"X: a:b: c", "a:b: c"),
    ],
)
def test_parse_head_ows_trimmed(line: bytes, value: str) -> None:
    """RFC 9112 5: field-line = field-name ":" OWS field-value OWS; the OWS around the value is
    not part of it, inner white space is; obs-text octets read as latin-1."""
    parsed = _parse(_response(line))
    assert parsed is not None
    assert parsed.fields == {"x": value}


@pytest.mark.parametrize(
    ("status_line", "status", "reason"),
    [
        (b"HTTP/1.1 200 OK", 200, "OK"),
        (b"HTTP/1.1 404 Not Found", 404, "Not Found"),
        (b"HTTP/1.0 200 OK", 200, "OK"),
        (b"HTTP/1.1 100 Continue", 100, "Continue"),
        (b"HTTP/1.1 999 Odd", 999, "Odd"),
        (b"HTTP/1.1 200 ", 200, ""),
        (b"HTTP/1.1 200", 200, ""),
        (b"HTTP/1.1 200 Very  Fine\tIndeed", 200, "Very  Fine\tIndeed"),
        (b"HTTP/1.1 200 caf\xe9", 200, "caf\u00e9"),
    ],
)
def test_parse_head_status_line(status_line: bytes, status: int, reason: str) -> None:
    """RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ]; a missing
    reason phrase, with or without its space, is accepted."""
    parsed = _parse(_response(b"Content-Length: 0", status=status_line))
    assert parsed is not None
    assert (parsed.status, parsed.reason) == (status, reason)


@pytest.mark.parametrize(
    "status_line",
    [
        b"HTTP/2 200 OK",
        b"HTTP/2.0 200 OK",
        b"HTTP/1.2 200 OK",
        b"HTTP/1 200 OK",
        b"http/1.1 200 OK",
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 099 OK",
        b"HTTP/1.1 2x0 OK",
        b"HTTP/1.1  200 OK",
        b"HTTP/1.1\t200 OK",
        b" HTTP/1.1 200 OK",
        b"ICY 200 OK",
        b"HTTP/1.1",
        b"HTTP/1.1 ",
        b"",
        b"HTTP/1.1 200 O\x00K",
        b"HTTP/1.1 200 O\rK",
    ],
)
def test_parse_head_bad_status_line(status_line: bytes) -> None:
    """RFC 9112 4: HTTP-version is "HTTP/1.0" or "HTTP/1.1" (case-sensitive, 2.3), one SP,
    a 3-digit status code 100-999; anything else is malformed."""
    assert _parse(_response(b"Content-Length: 0", status=status_line)) is None


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 2000 OK", b"HTTP/1.1 200OK"])
def test_parse_head_status_code_exactly_three_digits(status_line: bytes) -> None:
    """RFC 9112 4: status-code = 3DIGIT, followed by SP or the end of the line; a longer code
    (or a reason glued to it) is malformed, not a 200."""
    assert _parse(_response(b"Content-Length: 0", status=status_line)) is None


@pytest.mark.parametrize(
    "lines",
    [
        (b"X: a", b" b"),
        (b"X: a", b"\tb"),
        (b" X: a",),
        (b"Content-Length: 5", b" 6"),
    ],
)
def test_parse_head_obs_fold_rejected(lines: tuple[bytes, ...]) -> None:
    """RFC 9112 5.2: obsolete line folding (a field line starting with SP or HTAB) is not
    accepted."""
    assert _parse(_response(*lines)) is None


@pytest.mark.parametrize("line", [b"Content-Length : 5", b"X\t: a", b"X  :a"])
def test_parse_head_space_before_colon_rejected(line: bytes) -> None:
    """RFC 9112 5.1: no white space is allowed between the field name and the colon."""
    assert _parse(_response(line)) is None


@pytest.mark.parametrize(
    "line",
    [
        b"X a",
        b"Content-Length 5",
        b":a",
        b": a",
        b"X(y): a",
        b"X/y: a",
        b'X"y": a',
        b"caf\xe9: a",
        b"X@y: a",
    ],
)
def test_parse_head_bad_field_line_rejected(line: bytes) -> None:
    """RFC 9110 5.1/5.6.2: a field line needs a colon after a non-empty token name."""
    assert _parse(_response(line)) is None


@pytest.mark.parametrize("line", [b"X: a\x00b", b"X: \x00", b"X: a\rb", b"X: a\r"])
def test_parse_head_nul_or_cr_in_value_rejected(line: bytes) -> None:
    """RFC 9110 5.5: a field value with NUL or a bare CR is rejected."""
    assert _parse(_response(line)) is None


@pytest.mark.parametrize(
    "buf",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\n\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\nContent-Length: 5\r\n\r\n",
    ],
)
def test_parse_head_bare_lf_rejected(buf: bytes) -> None:
    """RFC 9112 2.2: inside the head, lines end in CRLF; a bare LF is not taken as a line end
    (the lane does not guess where a field ends)."""
    size = head_end(buf)
    assert size == len(buf)
    assert parse_head(buf, size) is None


# --- parse_head: framing (Content-Length, Transfer-Encoding) -----------------------------------


@pytest.mark.parametrize(
    ("lines", "length"),
    [
        ((b"Content-Length: 0",), 0),
        ((b"Content-Length: 5",), 5),
        ((b"Content-Length: 05",), 5),
        ((b"Content-Length: 5, 5",), 5),
        ((b"Content-Length: 5,5, 5",), 5),
        ((b"Content-Length: 5", b"Content-Length: 5"), 5),
        ((b"Content-Length: 999999999999999999",), 10**18 - 1),
    ],
)
def test_parse_head_content_length(lines: tuple[bytes, ...], length: int) -> None:
    """RFC 9110 8.6 / RFC 9112 6.3: Content-Length = 1*DIGIT frames the body; a list of
    identical values (one field or repeated) is that value. Such a head is simple."""
    parsed = _parse(_response(*lines))
    assert parsed is not None
    assert (parsed.length, parsed.simple) == (length, True)


@pytest.mark.parametrize(
    "lines",
    [
        (b"Transfer-Encoding: chunked",),
        (b"Transfer-Encoding: chunked", b"Content-Length: 5"),
        (b"Content-Length: 5", b"transfer-encoding: gzip, chunked"),
        (b"Transfer-Encoding: identity", b"Content-Length: 5"),
        (b"Transfer-Encoding:", b"Content-Length: 5"),
    ],
)
def test_parse_head_transfer_encoding_not_simple(lines: tuple[bytes, ...]) -> None:
    """RFC 9112 6.1/6.3: Transfer-Encoding overrides Content-Length; any Transfer-Encoding makes
    the head not simple, with no length."""
    parsed = _parse(_response(*lines))
    assert parsed is not None
    assert (parsed.length, parsed.simple) == (None, False)


@pytest.mark.parametrize(
    "lines",
    [
        (),
        (b"Content-Type: text/plain",),
        (b"Content-Length: 5, 6",),
        (b"Content-Length: 5", b"Content-Length: 6"),
        (b"Content-Length: 5,",),
        (b"Content-Length: ,5",),
        (b"Content-Length:",),
        (b"Content-Length: +5",),
        (b"Content-Length:  +5",),
        (b"Content-Length: -1",),
        (b"Content-Length: 0x10",),
        (b"Content-Length: 1e3",),
        (b"Content-Length: 5.0",),
        (b"Content-Length: 5 5",),
        (b"Content-Length: 1_000",),
        (b"Content-Length: \xd9\xa5",),
        (b"Content-Length: 1000000000000000000",),
    ],
)
def test_parse_head_no_or_bad_length_not_simple(lines: tuple[bytes, ...]) -> None:
    """RFC 9112 6.3: with no Content-Length the body runs to the close; a list of differing
    lengths or a value that is not 1*DIGIT (sign, hex, non-ASCII digit, too long) is invalid.
    None of these is simple, and none has a length."""
    parsed = _parse(_response(*lines))
    assert parsed is not None
    assert (parsed.length, parsed.simple) == (None, False)


# --- parse_head: persistence ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_line", "lines", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK", (), True),
        (b"HTTP/1.1 200 OK", (b"Connection: keep-alive",), True),
        (b"HTTP/1.1 200 OK", (b"Connection: Upgrade",), True),
        (b"HTTP/1.1 200 OK", (b"Connection: close",), False),
        (b"HTTP/1.1 200 OK", (b"Connection: CLOSE",), False),
        (b"HTTP/1.1 200 OK", (b"Connection: foo, Close",), False),
        (b"HTTP/1.1 200 OK", (b"Connection:  close  ",), False),
        (b"HTTP/1.1 200 OK", (b"Connection: foo", b"connection: close"), False),
        (b"HTTP/1.1 200 OK", (b"Connection: closed",), True),
        (b"HTTP/1.0 200 OK", (), False),
        (b"HTTP/1.0 200 OK", (b"Connection: keep-alive",), True),
        (b"HTTP/1.0 200 OK", (b"Connection: Keep-Alive",), True),
        (b"HTTP/1.0 200 OK", (b"Connection: foo, keep-alive",), True),
        (b"HTTP/1.0 200 OK", (b"Connection: keep-alive, close",), False),
        (b"HTTP/1.0 200 OK", (b"Keep-Alive: timeout=5",), False),
    ],
)
def test_parse_head_keep_alive(
    status_line: bytes, lines: tuple[bytes, ...], keep_alive: bool
) -> None:
    """RFC 9112 9.3 / RFC 9110 7.6.1: HTTP/1.1 persists unless the Connection field lists the
    "close" option (case-insensitive, any place in the list); HTTP/1.0 persists only with
    "keep-alive" listed (RFC 9112 C.2.2), and never with "close"."""
    parsed = _parse(_response(b"Content-Length: 0", *lines, status=status_line))
    assert parsed is not None
    assert parsed.keep_alive is keep_alive


@pytest.mark.parametrize(
    ("status_line", "minor"), [(b"HTTP/1.1 200 OK", 1), (b"HTTP/1.0 200 OK", 0)]
)
def test_parse_head_minor_version(status_line: bytes, minor: int) -> None:
    """The minor version of the status line is kept: requests are pipelined only on an
    HTTP/1.1 connection (RFC 9112 9.3.2), even an HTTP/1.0 one kept alive is not."""
    parsed = _parse(_response(b"Content-Length: 0", b"Connection: keep-alive", status=status_line))
    assert parsed is not None and parsed.keep_alive
    assert parsed.minor == minor


# --- reusable ---------------------------------------------------------------------------------


def _head(*, keep_alive: bool, simple: bool) -> Head:
    return Head(200, "OK", b"", 5 if simple else None, keep_alive, simple, 19)


@pytest.mark.parametrize(
    ("keep_alive", "simple", "extra", "expected"),
    [
        (True, True, 0, True),
        (True, True, 1, False),
        (True, False, 0, False),
        (False, True, 0, False),
        (False, False, 0, False),
        (False, True, 3, False),
    ],
)
def test_reusable(keep_alive: bool, simple: bool, extra: int, expected: bool) -> None:
    """The connection carries the next request only when kept alive, the body was framed by its
    length, and no bytes came past that length (RFC 9112 9.3, 6.3)."""
    assert reusable(_head(keep_alive=keep_alive, simple=simple), extra) is expected


def test_reusable_from_parsed_heads() -> None:
    """End to end: a head framed by Content-Length or by chunks alone is reusable; with
    "Connection: close", another coding before chunked, or no framing it is not."""
    ok = _parse(_response(b"Content-Length: 3"))
    closing = _parse(_response(b"Content-Length: 3", b"Connection: close"))
    chunked = _parse(_response(b"Transfer-Encoding: chunked"))
    coded = _parse(_response(b"Transfer-Encoding: gzip, chunked"))
    both = _parse(_response(b"Transfer-Encoding: chunked", b"Content-Length: 3"))
    unframed = _parse(_response(b"X-A: b"))
    assert ok is not None and closing is not None and chunked is not None
    assert coded is not None and both is not None and unframed is not None
    assert reusable(ok, 0)
    assert not reusable(ok, 1)
    assert not reusable(closing, 0)
    assert chunked.chunked and reusable(chunked, 0)
    assert not coded.chunked and not reusable(coded, 0)
    assert not both.chunked and not reusable(both, 0)  # RFC 9112 6.1: both is suspect
    assert not reusable(unframed, 0)


# --- properties -------------------------------------------------------------------------------

_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# RFC 9110 5.5: field-vchar = VCHAR / obs-text, with SP / HTAB allowed between them.
_VALUE_CHARS = "".join(chr(c) for c in [*range(0x21, 0x7F), *range(0x80, 0x100)]) + " \t"
_FRAMING = {"content-length", "transfer-encoding", "connection", "host"}

_names = st.text(alphabet=_TCHAR, min_size=1, max_size=20).filter(
    lambda name: name.lower() not in _FRAMING
)
_values = st.text(alphabet=_VALUE_CHARS, max_size=40)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(_names, _values), max_size=12, unique_by=lambda f: f[0].lower()),
    st.integers(0, 10**18 - 1),
    st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH"]),
    st.data(),
)
def test_head_round_trip(
    fields: list[tuple[str, str]], length: int, cl_name: str, data: st.DataObject
) -> None:
    """Fields written the way request_head writes them ("Name: value" CRLF) read back from a
    response head: every value (OWS trimmed, RFC 9112 5) under its lower-case name, and the
    Content-Length as the simple framing length."""
    where = data.draw(st.integers(0, len(fields)))
    fields = [*fields[:where], (cl_name, str(length)), *fields[where:]]
    request = request_head("/", "h", fields)
    head = b"HTTP/1.1 200 OK\r\n" + request.split(b"\r\n", 1)[1]
    parsed = _parse(head)
    assert parsed is not None
    assert (parsed.status, parsed.reason, parsed.size) == (200, "OK", len(head))
    assert (parsed.length, parsed.simple, parsed.keep_alive) == (length, True, True)
    expected = {name.lower(): value.strip(" \t") for name, value in fields}
    assert parsed.fields == {"host": "h", **expected}
    assert reusable(parsed, 0)


@settings(max_examples=200)
@given(st.binary(max_size=40), st.binary(max_size=40), st.lists(st.tuples(_names, _values)))
def test_head_at_an_offset_parses_as_alone(
    before: bytes, after: bytes, fields: list[tuple[str, str]]
) -> None:
    """`head_end`/`parse_head` at `start` see exactly the head there: bytes before it (an
    interim answer already read) and after it (the body in the same read) change nothing."""
    request = request_head("/", "h", fields)
    head = b"HTTP/1.1 200 OK\r\n" + request.split(b"\r\n", 1)[1]
    before = before.replace(b"\r\n\r\n", b"")
    buf = before + head + after
    size = head_end(buf, len(before))
    assert size == len(head) == head_end(head)
    assert parse_head(buf, size, len(before)) == parse_head(head, size)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.sampled_from(["ETag", "etag", "X-A", "x-a", "Vary"]), _values)),
    st.sampled_from(["etag", "x-a", "vary", "last-modified"]),
)
def test_head_value_is_fields_get(fields: list[tuple[str, str]], name: str) -> None:
    """`Head.value(name)` is `fields.get(name)` whatever the case of the names, repeated
    fields (joined with ", ", RFC 9110 5.3) and white space around the values."""
    request = request_head("/", "h", fields)
    parsed = _parse(b"HTTP/1.1 200 OK\r\n" + request.split(b"\r\n", 1)[1])
    assert parsed is not None
    assert parsed.value(name) == parsed.fields.get(name)


@given(
    st.tuples(st.sampled_from(["http", "https"]), _names, st.integers(1, 65535), _names),
    st.tuples(st.sampled_from(["http", "https"]), _names, st.integers(1, 65535), _names),
)
def test_origin_is_a_value(a: tuple[str, str, int, str], b: tuple[str, str, int, str]) -> None:
    """Origins are equal, and hash equal, exactly when their four fields are (the hash made
    once must not make two equal origins two dict keys); pickling rebuilds one."""
    one, two = Origin(*a), Origin(*b)
    assert (one == two) == (a == b)
    if a == b:
        assert hash(one) == hash(two) and {one: 1}[two] == 1
    assert pickle.loads(pickle.dumps(one)).__dict__ == one.__dict__
    assert repr(one) == (f"Origin(scheme={a[0]!r}, host={a[1]!r}, port={a[2]}, authority={a[3]!r})")


_SEGMENT_CHARS = "abcXYZ019-._~!$&'()*+,;=:@"
_segments = st.text(alphabet=_SEGMENT_CHARS, max_size=8).filter(lambda s: s not in (".", ".."))


@given(
    st.lists(_segments, min_size=1, max_size=6),
    st.one_of(st.none(), st.text(alphabet=_SEGMENT_CHARS + "/?", min_size=1, max_size=12)),
)
def test_simple_request_target_round_trip(segments: list[str], query: str | None) -> None:
    """RFC 3986 3.3/3.4: a path of allowed characters without dot segments, with or without a
    non-empty query, is sent exactly as written."""
    target = "/" + "/".join(segments) + ("" if query is None else f"?{query}")
    result = simple_request(f"http://h{target}")
    assert result == (Origin("http", "h", 80, "h"), target)


# --- chunked bodies (RFC 9112 7.1) -----------------------------------------------------------

CHUNKED = b"5\r\nhello\r\n6;name=value;x\r\n world\r\n0\r\nX-T: 1\r\nY: two\r\n\r\n"


def _decode(*parts: bytes) -> tuple[bytes, Dechunker]:
    dechunker, out = Dechunker(), bytearray()
    for part in parts:
        for piece in dechunker.feed(part):
            out += piece
    return bytes(out), dechunker


@pytest.mark.parametrize("split", range(len(CHUNKED) + 1))
def test_dechunker_any_split_gives_the_body_and_the_bytes_after(split: int) -> None:
    """Chunks, an extension and a trailer section decode to the body whatever the read
    boundaries; the bytes after the end are kept apart (the next answer's, or junk)."""
    body, dechunker = _decode(CHUNKED[:split], CHUNKED[split:] + b"NEXT")
    assert body == b"hello world"
    assert dechunker.done and dechunker.extra == b"NEXT"


def test_dechunker_byte_by_byte() -> None:
    """One byte per read works as well (a slow peer)."""
    body, dechunker = _decode(*(CHUNKED[i : i + 1] for i in range(len(CHUNKED))))
    assert body == b"hello world" and dechunker.done and dechunker.extra == b""


def test_dechunker_upper_case_hex_and_empty_trailers() -> None:
    """chunk-size is 1*HEXDIG in either case; the trailer section may be empty."""
    body, dechunker = _decode(b"A\r\n0123456789\r\n0\r\n\r\n")
    assert body == b"0123456789" and dechunker.done


def test_dechunker_not_done_until_the_final_crlf() -> None:
    """The body is not complete before the empty line after the last chunk."""
    _, dechunker = _decode(b"5\r\nhello\r\n0\r\n\r")
    assert not dechunker.done


@pytest.mark.parametrize(
    "data",
    [
        b"g\r\n",  # not hex
        b" 5\r\nhello\r\n",  # white space before the size
        b"0x5\r\nhello\r\n",  # a C prefix
        b"5\nhello\r\n",  # bare LF
        b"5\r\nhelloX\r\n",  # data longer than the size
        b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",  # a bad trailer line
        b"5;\x00\r\nhello\r\n",  # NUL in an extension
        b"1" * 16 + b"\r\n",  # a size that does not fit 60 bits
        b"5" + b";" * 5000 + b"\r\n",  # an endless chunk-size line
    ],
)
def test_dechunker_refuses_malformed_framing(data: bytes) -> None:
    """RFC 9112 7.1: anything but hex size, optional extensions, CRLF, data, CRLF is refused
    (ChunkError), never guessed."""
    with pytest.raises(ChunkError):
        _decode(data)


def _one_byte_chunks(body: bytes) -> bytes:
    return b"".join(b"1\r\n%c\r\n" % byte for byte in body) + b"0\r\n\r\n"


@pytest.mark.parametrize("read", [1, 7, 64 << 10, 1 << 30])
def test_dechunker_work_is_linear_in_the_wire_size(read: int) -> None:
    """Decoding is linear whatever the chunk sizes: one-byte chunks of a 200 KB body, read in
    any sizes, cost at most two bytes copied per byte on the wire (`Dechunker.copied`)."""
    body = bytes(range(256)) * 800  # 204,800 bytes
    wire = _one_byte_chunks(body)
    parts = [wire[i : i + read] for i in range(0, len(wire), read)]
    out, dechunker = _decode(*parts)
    assert out == body and dechunker.done
    assert dechunker.copied <= 2 * len(wire), (dechunker.copied, len(wire))
