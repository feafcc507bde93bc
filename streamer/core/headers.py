"""curl's -H lines as one value: the header fields to add, and the names not to send at all.

curl's rules (its manual, option -H), which every request path of streamer honours alike:

- ``Name: value`` adds the field (replacing a default of the same name);
- ``Name:`` with nothing after the colon *removes* a field the tool would send by itself
  (User-Agent, Accept, Accept-Encoding, Content-Type, Expect...); for a name the tool would not
  send, nothing is sent;
- ``Name;`` sends the field with an empty value (``Name:``).

A later line about the same name (case-insensitive, RFC 9110 5.1) replaces an earlier one.

Unlike curl, a request is never left unframed: removing Host, Content-Length or
Transfer-Encoding is refused (`FRAMING`), as are the fields a protocol cannot work without
(`refuse_omitting`). Pure: reading ``-H @FILE`` is the CLI's job.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from ..errors import UsageError

_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 5.6.2 token

# Without these the request cannot be framed (RFC 9112 3.2 Host, 6.1-6.3 the body's length).
FRAMING: Mapping[str, str] = {
    "host": "HTTP/1.1 requires it (RFC 9112 3.2)",
    "content-length": "it frames the request body (RFC 9112 6.2)",
    "transfer-encoding": "it frames the request body (RFC 9112 6.1)",
}


@dataclass(frozen=True)
class HeaderLines:
    """Parsed -H lines: `add` in order (names as written), `omit` as lower-case names.

    A name is in at most one of the two: the last line about it decided."""

    add: tuple[tuple[str, str], ...] = ()
    omit: frozenset[str] = frozenset()

    @property
    def headers(self) -> dict[str, str]:
        """The fields to add, as the ``headers`` mapping the API takes."""
        return dict(self.add)


class BadHeaderLine(ValueError):
    """A line that is none of ``Name: value``, ``Name:``, ``Name;``. Its text is kept out of
    the message: the rest of a malformed line is often a credential."""

    def __init__(self, first_word: str) -> None:
        super().__init__(first_word)
        self.first_word = first_word


def parse_line(line: str) -> tuple[str, str | None]:
    """One -H line: (name, value), with value None for ``Name:`` (remove the field)."""
    if not any(c in line for c in "\r\n\x00"):
        name, sep, value = line.partition(":")
        if sep and _NAME.fullmatch(name.strip()):
            value = value.strip(" \t")  # OWS around the value is not part of it (RFC 9110 5.5)
            return name.strip(), (value if value else None)
        text = line.strip()
        if not sep and text.endswith(";") and _NAME.fullmatch(text[:-1].rstrip()):
            return text[:-1].rstrip(), ""  # curl: "Name;" is the way to send "Name:" empty
    first = line.split(maxsplit=1)[0][:40] if line.strip() else ""
    raise BadHeaderLine(first.split(":", 1)[0])


def parse_lines(lines: Iterable[str]) -> HeaderLines:
    """All -H lines in order (see the module's rules); raises `BadHeaderLine`."""
    add: dict[str, tuple[str, str]] = {}
    omit: set[str] = set()
    for line in lines:
        name, value = parse_line(line)
        key = name.lower()
        add.pop(key, None)
        omit.discard(key)
        if value is None:
            omit.add(key)
        else:
            add[key] = (name, value)
    return HeaderLines(tuple(add.values()), frozenset(omit))


def omit_names(names: Iterable[str]) -> frozenset[str]:
    """`names` as lower-case omit names, refusing the framing fields (see `FRAMING`)."""
    omit = frozenset(name.lower() for name in names)
    refuse_omitting(omit, FRAMING, "streamer will not send a request it cannot frame")
    return omit


def refuse_omitting(omit: Iterable[str], needed: Mapping[str, str], because: str) -> None:
    """UsageError when a name of `needed` (lower-case name -> why) is to be omitted."""
    for name in sorted(omit):
        if name in needed:
            raise UsageError(
                f"the {_title(name)} header cannot be removed: {needed[name]}; {because}"
            )


def without(fields: Iterable[tuple[str, str]], omit: Collection[str]) -> list[tuple[str, str]]:
    """`fields` (a path's own defaults) less the omitted names."""
    return [(name, value) for name, value in fields if name.lower() not in omit]


def basic_credentials(user_password: str) -> str:
    """The Authorization value for curl's ``-u USER:PASSWORD``: Basic with the UTF-8 bytes of
    ``USER:PASSWORD`` in base64 (RFC 7617 2, 2.1). Bytes that are no UTF-8 (a surrogate-escaped
    argument) go as they were given."""
    raw = user_password.encode("utf-8", "surrogateescape")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def option_lines(
    user: str | None = None, user_agent: str | None = None, referer: str | None = None
) -> list[str]:
    """curl's -u, -A and -e as the -H lines they stand for, to go *before* the -H lines (a
    later -H about the same name wins, as in curl). ``-A ''`` removes the User-Agent."""
    lines = []
    if user is not None:
        lines.append(f"Authorization: {basic_credentials(user)}")
    if user_agent is not None:
        lines.append(f"User-Agent: {user_agent}" if user_agent.strip() else "User-Agent:")
    if referer is not None:
        lines.append(f"Referer: {referer}" if referer.strip() else "Referer:")
    return lines


def _title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


__all__ = [
    "FRAMING",
    "BadHeaderLine",
    "HeaderLines",
    "basic_credentials",
    "omit_names",
    "option_lines",
    "parse_line",
    "parse_lines",
    "refuse_omitting",
    "without",
]
