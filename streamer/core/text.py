"""Text a peer chose, made safe to print: control characters escaped, bodies cut to one line.

A reason phrase, an ETag, a file name or an error body comes from the server. Printed raw, an
ESC byte starts a terminal escape sequence (ECMA-48 5.3) that can move the cursor, rewrite
earlier lines or set the window title, and a CR or LF can forge a line of our own output. So
everything streamer prints goes through `printable` at the output edge: C0 and C1 controls,
DEL and the Unicode bidirectional overrides (which reorder what the reader sees) are shown as
Python-style escapes instead.
"""

from __future__ import annotations

import re

__all__ = ["EXCERPT_MAX", "excerpt", "field_text", "printable"]

# C0 (0x00-0x1F), DEL, C1 (0x80-0x9F), the bidi embeddings/overrides and isolates (UAX #9),
# the line and paragraph separators, which some terminals treat as new lines, and lone
# surrogates: U+DC80-U+DCFF are undecodable bytes kept by "surrogateescape" (PEP 383).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
EXCERPT_MAX = 160  # an error body longer than this (after folding white space) is not shown
_WHITE = re.compile(r"\s+")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        code -= 0xDC00  # the byte it stands for
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def field_text(value: bytes) -> str:
    """A header field's value from its bytes on the wire: UTF-8 when valid, else ISO-8859-1.

    RFC 9110 5.5 leaves non-ASCII field bytes as opaque octets, historically ISO-8859-1, and
    RFC 6266 appendix C.1 reads a plain ``filename="r\xe9sum\xe9.txt"`` that way (as curl does)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def printable(text: str) -> str:
    """`text` with every control character escaped: one line, no terminal sequences."""
    return text if _UNSAFE.search(text) is None else _UNSAFE.sub(_escape, text)


def excerpt(body: bytes, content_type: str | None) -> str:
    """The body of an error answer worth showing next to its status, or "".

    Shown only when it is short text: not HTML (a whole error page says nothing a status
    line does not), valid UTF-8, and at most `EXCERPT_MAX` characters once its white space
    is folded to single spaces, so the message stays one line."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind and not (kind.startswith("text/") or kind.endswith(("json", "+xml", "/xml"))):
        return ""
    if kind == "text/html" or len(body) > 4 * EXCERPT_MAX:
        return ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    folded = _WHITE.sub(" ", text).strip()
    if len(folded) > EXCERPT_MAX or folded.startswith("<"):
        return ""
    return printable(folded)
