"""curl's -F syntax (streamer.core.formspec): fields, files, options, quoting and errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.formspec import FormArg, parse_form_arg
from streamer.errors import Result, UsageError


def test_text_field() -> None:
    """name=value is a text field."""
    assert parse_form_arg("a=1") == FormArg(name="a", value="1")


def test_empty_value() -> None:
    """name= is a field with an empty value."""
    assert parse_form_arg("a=") == FormArg(name="a", value="")


def test_value_keeps_equals_and_options_apply_to_text() -> None:
    """Only the first '=' splits; a text value keeps '=', and ';type=' applies to text parts
    too (curl); a quoted value keeps its ';'."""
    assert parse_form_arg("a=b=c;type=x/y") == FormArg(name="a", value="b=c", content_type="x/y")
    assert parse_form_arg('a="b;c"') == FormArg(name="a", value="b;c")


def test_file_part() -> None:
    """name=@path is a file part with no type or filename given."""
    assert parse_form_arg("f=@/tmp/a.bin") == FormArg(name="f", path="/tmp/a.bin")


def test_file_with_type_and_filename() -> None:
    """;type= and ;filename= set the part's Content-Type and file name, in any order."""
    want = FormArg(name="f", path="p.txt", content_type="text/plain", filename="x.txt")
    assert parse_form_arg("f=@p.txt;type=text/plain;filename=x.txt") == want
    assert parse_form_arg("f=@p.txt;filename=x.txt;type=text/plain") == want


def test_option_names_case_insensitive() -> None:
    """Option names are matched without regard to case or surrounding spaces."""
    arg = parse_form_arg("f=@p; TYPE=image/png;FileName=a.png")
    assert (arg.content_type, arg.filename) == ("image/png", "a.png")


def test_quoted_path_keeps_semicolon() -> None:
    """A double-quoted piece may contain ';' (curl's quoting)."""
    assert parse_form_arg('f=@"a;b.txt";type=text/plain') == FormArg(
        name="f", path="a;b.txt", content_type="text/plain"
    )


def test_quoted_filename_with_escapes() -> None:
    """Inside quotes, backslash escapes '"' and '\\'."""
    arg = parse_form_arg(r'f=@p;filename="say \"hi\"; c:\\x.txt"')
    assert arg.filename == r'say "hi"; c:\x.txt'


def test_type_parameters_and_repeats_as_curl() -> None:
    """Unknown parameters right after type= belong to the type (curl); a type= after another
    option replaces it; repeated headers= add lines; an unknown option is skipped, warned."""
    assert parse_form_arg("f=@p;type=a/b;type=c/d").content_type == "a/b;type=c/d"
    assert parse_form_arg("f=@p;type=a/b;charset=x").content_type == "a/b;charset=x"
    assert parse_form_arg("f=@p;type=a/b;filename=n;type=c/d").content_type == "c/d"
    arg = parse_form_arg('f=@p;headers=A: 1;headers="B: 2";size=3')
    assert arg.headers == ("A: 1", "B: 2")
    assert arg.warnings == ("skip unknown form field: size=3",)


def test_content_from_file_and_unclosed_quotes() -> None:
    """name=<file is the file's content as a text part; an unclosed quote is a character."""
    assert parse_form_arg("t=<a.txt") == FormArg(name="t", path="a.txt", as_text=True)
    assert parse_form_arg('f=@q"uote.txt').path == 'q"uote.txt'
    assert parse_form_arg("f=@p;encoder=BASE64").encoder == "base64"


def test_at_only_in_first_position_means_file() -> None:
    """A value with '@' later on is text, not a file."""
    assert parse_form_arg("mail=me@example.com") == FormArg(name="mail", value="me@example.com")


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("novalue", "expected name=value"),
        ("=x", "expected name=value"),
        ("", "expected name=value"),
        ("f=@", "no file name after @"),
        ("f=@;type=a/b", "no file name after @"),
        ("f=@p;type=", "major/minor"),
        ("f=@p;type=text", "major/minor"),
        ("f=@a,b", "several files"),
        ("f=@p;headers=@h", "headers=@file"),
        ("f=@p;encoder=quoted-printable", "encoder must be"),
    ],
)
def test_bad_arguments(arg: str, message: str) -> None:
    """Malformed -F arguments are UsageErrors (exit 2) saying what is wrong."""
    with pytest.raises(UsageError, match=message) as info:
        parse_form_arg(arg)
    assert info.value.result == Result.INVALID_INPUT


_names = st.text(min_size=1).filter(lambda s: "=" not in s)
_plain = st.text(alphabet=st.characters(blacklist_characters=';"<@ \t\n\r\x0b\x0c'))
_piece = st.text(
    alphabet=st.characters(blacklist_characters=';",\\ \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0'),
    min_size=1,
)


@given(_names, _plain)
def test_any_text_field_round_trips(name: str, value: str) -> None:
    """Any name without '=' and a value free of ';', quotes, spaces, '@' and '<' parse back
    unchanged."""
    assert parse_form_arg(f"{name}={value}") == FormArg(name=name, value=value)


@given(_names, _piece, _piece.filter(lambda s: "\\" not in s))
def test_any_file_round_trips(name: str, path: str, filename: str) -> None:
    """A path and a quoted filename free of ';' and '"' parse back unchanged."""
    arg = parse_form_arg(f'{name}=@{path};filename="{filename}"')
    assert arg == FormArg(name=name, path=path, filename=filename)


@given(st.text())
def test_never_crashes(arg: str) -> None:
    """Any input gives a FormArg or a UsageError, nothing else."""
    try:
        result = parse_form_arg(arg)
    except UsageError:
        return
    assert isinstance(result, FormArg)
    assert result.name


def test_curl_content_types_by_extension() -> None:
    """curl's own extension table, case-insensitive; anything else has no type of its own."""
    from streamer.core.formspec import curl_content_type

    assert curl_content_type("a.TXT") == "text/plain"
    assert curl_content_type("x.jpeg") == curl_content_type("x.jpg") == "image/jpeg"
    assert curl_content_type("d.json") is None
    assert curl_content_type("noext") is None
    assert curl_content_type(None) is None
