"""curl's -F syntax, parsed as curl's own parser reads it, without I/O.

``name=value`` is a text part, ``name=@path`` a file part, ``name=<path`` a text part holding
the file's content. A value is a word: either double-quoted (``\\"`` and ``\\\\`` escaped inside,
anything after the closing quote up to the next ``;`` ignored) or everything up to the next
``;`` (and ``,`` after ``@``), trailing spaces dropped; a quote that is never closed is an
ordinary character (``@q"uote.txt``). Then ``;``-separated parameters, names case-insensitive:

- ``type=major/minor`` (validated; following unknown parameters belong to it, so
  ``type=text/plain;charset=utf-8`` is one type, as in curl);
- ``filename=WORD`` (not for ``<``), ``headers=WORD`` (a header line; repeatable),
  ``encoder=WORD`` (``7bit``, ``8bit``, ``binary`` or ``base64``);
- anything else is skipped with a warning, as curl does.

Refused (curl does more): several files in one ``-F`` (``@a,b``: multipart/mixed),
``headers=@file`` and ``encoder=quoted-printable``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UsageError

ENCODERS = ("7bit", "8bit", "binary", "base64")

# curl's own table (lib/mime.c): the file name's extension, case-insensitive; anything else is
# application/octet-stream for a file, and no Content-Type for text.
_TYPES_BY_EXTENSION = {
    "gif": "image/gif",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "svg": "image/svg+xml",
    "txt": "text/plain",
    "htm": "text/html",
    "html": "text/html",
    "pdf": "application/pdf",
    "xml": "application/xml",
}
# What curl's sscanf accepts: "%127[^/ ]/%127[^;, \n]".
_TYPE = re.compile(r"[^/ ]{1,127}/[^;, \n]{1,127}")
_SPACE = " \t\n\r\f\v"


def curl_content_type(filename: str | None) -> str | None:
    """The Content-Type curl gives a part named `filename` by its extension, if any."""
    if not filename or "." not in filename:
        return None
    return _TYPES_BY_EXTENSION.get(filename.rpartition(".")[2].lower())


@dataclass(frozen=True)
class FormArg:
    """One -F argument: a text part, a file part (``path``), or with ``as_text`` a text part
    holding the content of ``path``. ``warnings`` are curl's, for the caller to print."""

    name: str
    value: str = ""
    path: str | None = None
    content_type: str | None = None
    filename: str | None = None
    headers: tuple[str, ...] = ()
    encoder: str | None = None
    as_text: bool = False
    warnings: tuple[str, ...] = field(default=(), compare=False)


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in _SPACE:
        i += 1
    return i


def _until(text: str, i: int, stops: str) -> int:
    while i < len(text) and text[i] not in stops:
        i += 1
    return i


def _quoted(text: str, i: int) -> tuple[str, int] | None:
    """The quoted word opening at `i` and where its closing quote is; None if never closed."""
    out: list[str] = []
    j = i + 1
    while j < len(text):
        ch = text[j]
        if ch == "\\" and j + 1 < len(text) and text[j + 1] in '\\"':
            out.append(text[j + 1])
            j += 2
        elif ch == '"':
            return "".join(out), j
        else:
            out.append(ch)
            j += 1
    return None


class _Reader:
    """Walks one -F value: the word, then its parameters."""

    def __init__(self, text: str, stops: str) -> None:
        self.text, self.stops, self.i = text, stops, 0
        self.warnings: list[str] = []
        self.type_start = self.type_end = -1  # the type's span, while it may still grow
        self.type_open = False
        self.filename: str | None = None
        self.headers: list[str] = []
        self.encoder: str | None = None

    def word(self) -> str:
        text, i = self.text, _skip_space(self.text, self.i)
        if i < len(text) and text[i] == '"' and (quoted := _quoted(text, i)) is not None:
            value, close = quoted
            self.i = _until(text, close + 1, self.stops)
            if text[close + 1 : self.i].strip(_SPACE):
                self.warnings.append("trailing data after quoted form parameter")
            return value
        self.i = _until(text, i, self.stops)
        return text[i : self.i].rstrip(_SPACE)

    def at_param(self) -> bool:
        if self.i < len(self.text) and self.text[self.i] == ";":
            self.i = _skip_space(self.text, self.i + 1)
            return True
        return False

    def take(self, prefix: str) -> bool:
        if self.text[self.i : self.i + len(prefix)].lower() == prefix:
            self.i += len(prefix)
            return True
        return False

    def start_type(self, arg: str) -> None:
        start = _skip_space(self.text, self.i)
        if not _TYPE.match(self.text, start):
            raise UsageError(f"bad -F {arg!r}: content type must be major/minor")
        self.type_start, self.type_open = start, True
        self.extend_type()

    def extend_type(self) -> None:
        end = _until(self.text, self.i, ";" + self.stops)
        self.type_end = len(self.text[:end].rstrip(_SPACE))
        self.i = end

    def close_type(self) -> None:
        self.type_open = False

    @property
    def content_type(self) -> str | None:
        return None if self.type_start < 0 else self.text[self.type_start : self.type_end]


def parse_form_arg(arg: str) -> FormArg:
    """Parse one -F argument; a UsageError says what is wrong with it."""
    name, eq, rest = arg.partition("=")
    if not eq or not name:
        raise UsageError(f"bad -F {arg!r}: expected name=value, name=@file or name=<file")
    kind = rest[:1] if rest[:1] in ("@", "<") else ""
    reader = _Reader(rest[len(kind) :], ",;" if kind == "@" else ";")
    value = reader.word()
    while reader.at_param():
        if not reader.type_open and reader.take("type="):
            reader.start_type(arg)
            continue
        if reader.take("filename="):
            reader.close_type()
            reader.filename = reader.word()
        elif reader.take("headers="):
            reader.close_type()
            if reader.text[reader.i : reader.i + 1] in ("@", "<"):
                raise UsageError(f"bad -F {arg!r}: headers=@file is not supported")
            reader.headers.append(reader.word())
        elif reader.take("encoder="):
            reader.close_type()
            reader.encoder = reader.word()
        elif reader.type_open:
            reader.extend_type()
        elif unknown := reader.word():
            reader.warnings.append(f"skip unknown form field: {unknown}")
    if reader.i < len(reader.text):  # stopped at "," in "@a,b"
        raise UsageError(f"bad -F {arg!r}: several files in one -F are not supported")
    return _made(arg, name, kind, value, reader)


def _made(arg: str, name: str, kind: str, value: str, reader: _Reader) -> FormArg:
    encoder, filename = reader.encoder, reader.filename
    if encoder is not None and encoder.lower() not in ENCODERS:
        raise UsageError(f"bad -F {arg!r}: encoder must be one of {', '.join(ENCODERS)}")
    if kind and not value:
        raise UsageError(f"bad -F {arg!r}: no file name after {kind}")
    if kind == "<" and filename is not None:
        reader.warnings.append(f"field file name not allowed here: {filename}")
        filename = None
    return FormArg(
        name=name,
        value="" if kind else value,
        path=value if kind else None,
        content_type=reader.content_type,
        filename=filename,
        headers=tuple(reader.headers),
        encoder=encoder.lower() if encoder else None,
        as_text=kind == "<",
        warnings=tuple(reader.warnings),
    )
