from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.names import name_from_content_disposition, name_from_url, safe_name

RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{d}{n}" for d in ("COM", "LPT") for n in range(10)}


def assert_single_safe_component(name: str) -> None:
    """The invariants every produced name must hold."""
    assert name
    assert "/" not in name
    assert "\\" not in name
    assert "\x00" not in name
    assert not any(unicodedata.category(ch) == "Cc" for ch in name)
    assert not name.startswith(".")
    assert not name.endswith((".", " "))
    assert name not in (".", "..")
    assert len(name.encode("utf-8")) <= 255
    assert name.split(".", 1)[0].rstrip(" ").upper() not in RESERVED


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/etc/shadow", "shadow"),
        ("C:\\Windows\\system.ini", "system.ini"),
        ("a/b\\c", "c"),
        ("dir/", "download"),
        ("..", "download"),
        (".", "download"),
        ("...", "download"),
        ("", "download"),
        ("   ", "download"),
        (". . .", "download"),
        (".bashrc", "bashrc"),
        ("..hidden", "hidden"),
        (" name.txt ", "name.txt"),
        ("name.txt...", "name.txt"),
        ("a\x00b.txt", "ab.txt"),
        ("a\r\nb.txt", "ab.txt"),
        ("a\tb\x7f\x85c\x9f.txt", "abc.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ("line\u2028sep", "linesep"),
        ("C:evil.txt", "C_evil.txt"),
        ('a<b>c:d"e|f?g*h', "a_b_c_d_e_f_g_h"),
        ("file.txt:stream", "file.txt_stream"),
        ("CON", "_CON"),
        ("con", "_con"),
        ("con.txt", "_con.txt"),
        ("Con.tar.gz", "_Con.tar.gz"),
        ("CON .txt", "_CON .txt"),
        ("aux", "_aux"),
        ("NUL", "_NUL"),
        ("PRN.log", "_PRN.log"),
        ("com1", "_com1"),
        ("COM9.bin", "_COM9.bin"),
        ("LPT1", "_LPT1"),
        ("lpt9.x", "_lpt9.x"),
        ("COM\u00b9", "_COM\u00b9"),
        ("CONSOLE.txt", "CONSOLE.txt"),
        ("COM10", "COM10"),
        ("icon.png", "icon.png"),
        ("e\u0301t\u00e9.txt", "\u00e9t\u00e9.txt"),
        ("caf\ud800e.txt", "caf\ufffde.txt"),
        ("日本語.txt", "日本語.txt"),
    ],
)
def test_safe_name_table(raw: str, expected: str) -> None:
    """safe_name keeps one clean component: last segment, no controls, no dots, no devices."""
    assert safe_name(raw) == expected


def test_safe_name_default() -> None:
    """When nothing is left the caller's default comes back unchanged."""
    assert safe_name("../..", default="fallback.bin") == "fallback.bin"
    assert safe_name("", default="") == ""


def test_truncate_keeps_extension_ascii() -> None:
    """A long ASCII name is cut to 241 bytes (so that NAME.part.json.tmp fits in 255) and
    keeps its extension."""
    out = safe_name("a" * 400 + ".tar.gz")
    assert len(out.encode()) == 241
    assert out.endswith("a.gz")


def test_truncate_multibyte_never_splits_a_character() -> None:
    """Multibyte names are cut on a character boundary, extension kept, <= 255 bytes."""
    out = safe_name("€" * 200 + ".pdf")  # € is 3 bytes
    assert out.endswith(".pdf")
    assert len(out.encode("utf-8")) <= 255
    assert out == "€" * 79 + ".pdf"  # 237 + 4 = 241 bytes
    out4 = safe_name("😀" * 100)  # 4 bytes each, no extension
    assert out4 == "😀" * 60


def test_truncate_long_extension_is_not_kept() -> None:
    """An 'extension' longer than 16 chars is just more name: plain cut."""
    out = safe_name("x." + "y" * 300)
    assert out == ("x." + "y" * 300)[:241]


def test_truncate_strips_trailing_space_left_by_cut() -> None:
    """A cut that ends on a space or dot is stripped again."""
    out = safe_name("a" * 240 + " b")
    assert out == "a" * 240


@given(st.text())
def test_safe_name_invariants_property(raw: str) -> None:
    """safe_name never returns /, \\, NUL, controls, a leading dot, >255 bytes or ''."""
    assert_single_safe_component(safe_name(raw))


ANY_CHAR = st.one_of(
    st.characters(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone surrogates
    st.characters(max_codepoint=0x9F),  # C0, DEL and C1 controls
)


@given(st.text(alphabet=ANY_CHAR, max_size=600))
def test_safe_name_invariants_any_codepoint(raw: str) -> None:
    """The invariants hold for any code point, surrogates and C1 controls included."""
    assert_single_safe_component(safe_name(raw))


@given(st.text(alphabet=st.sampled_from("./\\ \x00\x85.aé€😀:CONUL"), max_size=300))
def test_safe_name_invariants_nasty_alphabet(raw: str) -> None:
    """The invariants hold for inputs built from separators, dots, devices and wide chars."""
    assert_single_safe_component(safe_name(raw))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h/file.zip", "file.zip"),
        ("http://h/dir/file.zip?x=1#frag", "file.zip"),
        ("http://h/dir/file.zip#a/b", "file.zip"),
        ("http://h/dir/file.zip?a=/b/c", "file.zip"),
        ("http://h/", "index.html"),
        ("http://h", "index.html"),
        ("http://h/dir/", "index.html"),
        ("http://h?x=/y.txt", "index.html"),
        ("http://h/my%20file.txt", "my file.txt"),
        ("http://h/caf%C3%A9.txt", "café.txt"),
        ("http://h/bad%FF.txt", "bad\ufffd.txt"),
        ("http://h/a%2Fb.txt", "b.txt"),
        ("http://h/%2E%2E", "index.html"),
        ("http://h/..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("http://h/x%00y", "xy"),
        ("http://h/con", "_con"),
        ("http://u:p@h:80/a/b.iso", "b.iso"),
        ("http://[::1/x.bin", "x.bin"),
        ("/relative/path.txt", "path.txt"),
        ("", "index.html"),
    ],
)
def test_name_from_url(url: str, expected: str) -> None:
    """The last path segment, query and fragment ignored, percent-decoded and made safe."""
    assert name_from_url(url) == expected


def test_name_from_url_default() -> None:
    """The default is used for an empty last segment."""
    assert name_from_url("https://h/a/", default="out.bin") == "out.bin"


@given(st.text())
def test_name_from_url_never_raises(url: str) -> None:
    """name_from_url is total and its result is a single safe component."""
    assert_single_safe_component(name_from_url(url))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('attachment; filename="report.pdf"', "report.pdf"),
        ("attachment; filename=report.pdf", "report.pdf"),
        ("inline; filename=report.pdf", "report.pdf"),
        ("ATTACHMENT; FILENAME=report.pdf", "report.pdf"),
        ('attachment;filename="a b.txt"', "a b.txt"),
        ('attachment; filename = "spaced.txt" ', "spaced.txt"),
        ('attachment; filename="semi;colon.txt"', "semi;colon.txt"),
        ('attachment; filename="q\\"uote.txt"', "q_uote.txt"),
        ('attachment; filename="back\\\\slash.txt"', "slash.txt"),
        ("attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf", "€ rates.pdf"),
        ("attachment; filename*=utf-8'en'caf%C3%A9.txt", "café.txt"),
        ("attachment; filename*=ISO-8859-1''caf%E9.txt", "café.txt"),
        ("attachment; FILENAME*=UTF-8''x.txt", "x.txt"),
        ("attachment; filename=fallback.txt; filename*=UTF-8''pref.txt", "pref.txt"),
        ("attachment; filename*=UTF-8''pref.txt; filename=fallback.txt", "pref.txt"),
        ("attachment; filename*=KOI8-R''%F0.txt; filename=plain.txt", "plain.txt"),
        ("attachment; filename*=UTF-8''%FF%FE.txt; filename=plain.txt", "plain.txt"),
        ("attachment; filename*=no-quotes.txt; filename=plain.txt", "plain.txt"),
        ("attachment; filename*=UTF-8''..; filename=plain.txt", "plain.txt"),
        ('attachment; filename="%41.txt"', "%41.txt"),
        ("attachment; size=10; filename=a.txt; x=y", "a.txt"),
        ("filename=noType.txt", "noType.txt"),
        ("attachment", None),
        ("inline", None),
        ("", None),
        ("attachment; filename=", None),
        ('attachment; filename=""', None),
        ("attachment; name=a.txt", None),
        ("attachment; filename*=KOI8-R''x.txt", None),
    ],
)
def test_content_disposition_table(value: str, expected: str | None) -> None:
    """filename* (RFC 8187, UTF-8/ISO-8859-1) beats filename; names and case per RFC 6266."""
    assert name_from_content_disposition(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('attachment; filename="abc', None),
        ("attachment; filename=\"abc; filename*=UTF-8''x.txt", None),
        ("attachment; filename*=UTF-8''ok.txt; filename=\"abc", "ok.txt"),
        ("attachment; filename=a.txt; filename=b.exe", None),
        ("attachment; filename=a.txt; FileName=b.exe", None),
        (
            "attachment; filename*=UTF-8''a.txt; filename*=UTF-8''b.exe; filename=c.txt",
            "c.txt",
        ),
    ],
)
def test_content_disposition_ambiguity(value: str, expected: str | None) -> None:
    """Unterminated quotes and duplicated parameters make that parameter unusable."""
    assert name_from_content_disposition(value) == expected


HOSTILE = [
    'attachment; filename="../../etc/passwd"',
    "attachment; filename=../../etc/passwd",
    'attachment; filename="..\\..\\win.ini"',
    'attachment; filename="..\\\\..\\\\win.ini"',
    'attachment; filename="/etc/passwd"',
    'attachment; filename="C:\\Windows\\System32\\drivers\\etc\\hosts"',
    'attachment; filename="C:evil.exe"',
    'attachment; filename="\\\\server\\share\\x.txt"',
    "attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd",
    "attachment; filename*=UTF-8''%2F..%2F",
    "attachment; filename*=UTF-8''%2E%2E%5C%2E%2E%5Cwin.ini",
    "attachment; filename*=UTF-8''%00evil%00.txt",
    "attachment; filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x.txt",
    'attachment; filename="a\x00b.txt"',
    'attachment; filename="a\r\nb.txt"',
    'attachment; filename="\x1b[31mred.txt"',
    'attachment; filename="evil\u202etxt.exe"',
    "attachment; filename*=UTF-8''" + "%E2%82%AC" * 300 + ".txt",
    "attachment; filename*=UTF-8''" + "%F0%9F%98%80" * 200,
    'attachment; filename="' + "日" * 500 + '"',
    'attachment; filename="' + "a" * 10000 + '.exe"',
    'attachment; filename="CON"',
    'attachment; filename="nul.txt"',
    'attachment; filename="COM1.log"',
    'attachment; filename="lpt9"',
    "attachment; filename*=UTF-8''aux.tar.gz",
    'attachment; filename="."',
    'attachment; filename=".."',
    'attachment; filename="..."',
    'attachment; filename=". ."',
    'attachment; filename=".bashrc"',
    'attachment; filename="file.txt."',
    'attachment; filename=""',
    "attachment; filename=",
    'attachment; filename="',
    'attachment; filename="unterminated',
    'attachment; filename="a\\',
    'attachment; filename="a"; filename="b"',
    "attachment; filename*=UTF-8''a; filename*=UTF-8''b",
    "attachment; filename*=''x.txt",
    "attachment; filename*=UTF-8'",
    "attachment; filename*=",
    "attachment; filename*=%%%",
    "attachment; filename*=UTF-8''%",
    "attachment; filename*=UTF-8''%G1.txt",
    ";;;;;",
    "=====",
    '"""',
    "attachment; =x; ==; ;=;",
    "attachment; filename=\ud800.txt",
    "attachment; filename=" + "/" * 1000,
    "attachment; filename*=UTF-8''" + "%2F" * 1000,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_content_disposition_gives_single_safe_component(value: str) -> None:
    """A hostile Content-Disposition gives None or one safe path component, never raises."""
    name = name_from_content_disposition(value)
    if name is not None:
        assert_single_safe_component(name)


@given(st.text())
def test_content_disposition_never_raises(value: str) -> None:
    """Any string at all gives None or a single safe component."""
    name = name_from_content_disposition(value)
    if name is not None:
        assert_single_safe_component(name)


@given(st.text(alphabet=st.sampled_from("attachment;filename*='\"\\%2F.=UTF-8 \x00/"), max_size=80))
def test_content_disposition_never_raises_grammar_soup(value: str) -> None:
    """Inputs made of the grammar's own characters never raise and stay safe."""
    name = name_from_content_disposition(value)
    if name is not None:
        assert_single_safe_component(name)
