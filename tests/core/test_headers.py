"""core.headers: curl's -H lines parsed into fields to add and names to omit, byte by byte."""

from __future__ import annotations

import pytest

from streamer.core.headers import (
    FRAMING,
    BadHeaderLine,
    HeaderLines,
    basic_credentials,
    omit_names,
    option_lines,
    parse_line,
    parse_lines,
    refuse_omitting,
    without,
)
from streamer.errors import Result, UsageError


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("X-A: 1", ("X-A", "1")),
        ("X-A:1", ("X-A", "1")),
        ("X-A:  spaced value \t", ("X-A", "spaced value")),
        ("Accept: text/html; q=1", ("Accept", "text/html; q=1")),  # ";" in a value is a value
        ("X-A: a:b", ("X-A", "a:b")),
        ("X-A:", ("X-A", None)),  # remove
        ("X-A:   ", ("X-A", None)),  # only whitespace after the colon: remove, as curl
        (" X-A :", ("X-A", None)),
        ("X-A;", ("X-A", "")),  # send empty
        ("X-A ; ", ("X-A", "")),
    ],
)
def test_a_line_adds_removes_or_empties_a_field(line: str, parsed: tuple[str, str | None]) -> None:
    """'Name: value' adds (value trimmed of OWS), 'Name:' removes (value None), 'Name;'
    sends an empty value."""
    assert parse_line(line) == parsed


@pytest.mark.parametrize(
    ("line", "first"),
    [
        ("no colon here", "no"),
        ("Authorization Bearer SECRET", "Authorization"),
        ("Authorization Bearer SECRET;", "Authorization"),  # ";" after a non-token name
        ("X-A; more", "X-A;"),
        ("X-A: ok\r\nX-Injected: 1", "X-A"),  # CR/LF would inject a line (RFC 9112 2.2)
        ("Bad Name: v", "Bad"),
        (": no name", ""),
        (";", ";"),
        ("", ""),
        ("Authorization:Bearer\rSECRET", "Authorization"),
    ],
)
def test_a_malformed_line_is_refused_naming_only_its_first_word(line: str, first: str) -> None:
    """Anything else is BadHeaderLine carrying at most the line's first word (up to a
    colon): the rest of a malformed line may be a credential."""
    with pytest.raises(BadHeaderLine) as info:
        parse_line(line)
    assert info.value.first_word == first
    assert "SECRET" not in str(info.value)


def test_the_last_line_about_a_name_decides_any_case() -> None:
    """A later line about the same name (case-insensitive, RFC 9110 5.1) replaces an
    earlier one, whether it adds, removes or empties; adds come in their last line's order."""
    lines = ["User-Agent:", "X-B: 1", "user-agent: me", "Accept: */*", "ACCEPT:", "X-C;"]
    assert parse_lines(lines) == HeaderLines(
        add=(("X-B", "1"), ("user-agent", "me"), ("X-C", "")), omit=frozenset({"accept"})
    )
    assert parse_lines(["X-B: 1", "x-b:"]) == HeaderLines((), frozenset({"x-b"}))
    assert parse_lines([]).headers == {}


def test_framing_fields_cannot_be_omitted() -> None:
    """Host, Content-Length and Transfer-Encoding frame the request (RFC 9112 3.2, 6):
    omit_names refuses them with a usage error saying why; other names come back lower-case."""
    assert omit_names(["User-Agent", "EXPECT"]) == {"user-agent", "expect"}
    for name in ("host", "content-length", "TRANSFER-ENCODING"):
        with pytest.raises(UsageError) as info:
            omit_names([name])
        assert info.value.result is Result.INVALID_INPUT
        title = {"host": "Host", "content-length": "Content-Length"}.get(name, "Transfer-Encoding")
        assert f"the {title} header cannot be removed" in info.value.message
        assert "cannot frame" in info.value.message
    assert set(FRAMING) == {"host", "content-length", "transfer-encoding"}


def test_refuse_omitting_names_the_needed_field() -> None:
    """refuse_omitting: UsageError for the first omitted name a protocol needs; none else."""
    refuse_omitting({"user-agent"}, {"tus-resumable": "tus needs it"}, "x")
    with pytest.raises(
        UsageError, match="the Tus-Resumable header cannot be removed: tus needs it; x"
    ):
        refuse_omitting({"user-agent", "tus-resumable"}, {"tus-resumable": "tus needs it"}, "x")


def test_without_drops_omitted_defaults_in_order() -> None:
    """`without` filters a path's own defaults by lower-case name, keeping their order."""
    defaults = [("User-Agent", "s/1"), ("Accept", "*/*"), ("Accept-Encoding", "identity")]
    assert without(defaults, frozenset({"accept"})) == [defaults[0], defaults[2]]
    assert without(defaults, frozenset()) == defaults


def test_basic_credentials_are_rfc7617_utf8_base64() -> None:
    """-u USER:PASSWORD is Basic base64(UTF-8 of USER:PASSWORD) (RFC 7617 2, 2.1): the
    first colon splits, later ones belong to the password; an empty password is allowed."""
    assert basic_credentials("Aladdin:open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    assert basic_credentials("test:123£") == "Basic dGVzdDoxMjPCow=="  # RFC 7617 2.1's example
    assert basic_credentials("u:a:b") == "Basic " + "dTphOmI="
    assert basic_credentials("u:") == "Basic dTo="


def test_option_lines_stand_for_header_lines_before_the_h_lines() -> None:
    """-u, -A, -e become the -H lines they stand for; -A '' removes the User-Agent; a later
    -H line about the same name wins (curl's order)."""
    lines = option_lines("u:p", "agent/1", "http://r/")
    assert lines == ["Authorization: Basic dTpw", "User-Agent: agent/1", "Referer: http://r/"]
    assert option_lines(user_agent="") == ["User-Agent:"]
    assert option_lines() == []
    parsed = parse_lines([*lines, "Authorization:", "Referer: http://h/"])
    assert parsed.add == (("User-Agent", "agent/1"), ("Referer", "http://h/"))
    assert parsed.omit == frozenset({"authorization"})


def test_option_line_with_a_line_break_is_refused_without_its_value() -> None:
    """-A or -e with CR/LF could inject a field: refused like a bad -H line, naming the field
    only."""
    with pytest.raises(BadHeaderLine) as caught:
        parse_lines(option_lines(referer="http://r/\r\nX-Evil: 1"))
    assert caught.value.first_word == "Referer"
