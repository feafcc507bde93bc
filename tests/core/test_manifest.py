"""Tests for streamer.core.manifest: streamed bulk-download manifests."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import tracemalloc
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.manifest import (
    BadLine,
    DuplicateFinder,
    Job,
    duplicates_of,
    parse_manifest,
    safe_relpath,
    target_for,
    target_key,
)
from streamer.errors import UsageError

SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
MD5_EMPTY = "d41d8cd98f00b204e9800998ecf8427e"


def parse(text: str) -> list[Job | BadLine]:
    return list(parse_manifest(text.splitlines(keepends=True)))


def only(text: str) -> Job | BadLine:
    [item] = parse(text)
    return item


def bad_reason(text: str) -> str:
    item = only(text)
    assert isinstance(item, BadLine), item
    return item.reason


def jline(**fields: object) -> str:
    return json.dumps(fields) + "\n"


# ---- plain lists ----------------------------------------------------------------------------


def test_plain_list_is_one_url_per_line() -> None:
    """Each line of a plain manifest is one URL, numbered from 1."""
    items = parse("https://a.example/x.bin\nhttp://b.example/y\n")
    assert items == [
        Job("https://a.example/x.bin", line=1),
        Job("http://b.example/y", line=2),
    ]


def test_comments_and_blank_lines_are_skipped_but_counted() -> None:
    """Blank, white-space-only and "#" lines yield nothing, yet line numbers count them."""
    text = (
        "# mirror list\n\nhttps://a.example/1\n   \n  # indented comment\n\thttps://a.example/2\n"
    )
    assert parse(text) == [Job("https://a.example/1", line=3), Job("https://a.example/2", line=6)]


def test_plain_url_is_stripped() -> None:
    """Leading and trailing white space around a plain URL is dropped."""
    assert only("   https://a.example/x  \t\n") == Job("https://a.example/x", line=1)


@pytest.mark.parametrize(
    "line",
    [
        "https://a.example/x out.bin",
        "https://a.example/x # mirror",
        "http://a/x\tb",
        "http://a/x\x1fb",
        "http://a/x\xa0b",
        "http://a/x\u3000b",
    ],
)
def test_text_after_plain_url_is_bad(line: str) -> None:
    """A plain line is a URL alone: anything after white space is refused, never guessed at."""
    assert bad_reason(line) == "unexpected text after URL"


def test_crlf_line_endings() -> None:
    """Lines ending in CRLF (or a lone CR) parse as if they ended in LF."""
    lines = ["https://a.example/1\r\n", '{"url": "https://a.example/2"}\r\n', "\r\n"]
    assert list(parse_manifest(lines)) == [
        Job("https://a.example/1", line=1),
        Job("https://a.example/2", line=2),
    ]
    assert list(parse_manifest(["https://a.example/3\r"])) == [Job("https://a.example/3", line=1)]


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        ("\ufeffhttps://a.example/x\n", Job("https://a.example/x", line=1)),
        ('\ufeff{"url": "https://a.example/x"}\n', Job("https://a.example/x", line=1)),
        ("\ufeff# comment\n", None),
    ],
)
def test_utf8_bom_on_first_line_is_ignored(first: str, expected: Job | None) -> None:
    """A UTF-8 BOM (U+FEFF) at the start of line 1 is dropped before the line is read."""
    assert list(parse_manifest([first])) == ([expected] if expected else [])


def test_bom_before_csv_header_is_ignored() -> None:
    """The BOM does not hide a CSV header's first column name."""
    assert parse("\ufeffurl,path\nhttps://a.example/x,out\n") == [
        Job("https://a.example/x", path="out", line=2)
    ]


def test_bom_after_line_one_is_bad() -> None:
    """Only line 1 may carry a BOM; elsewhere it is an invisible character in a URL."""
    items = list(parse_manifest(["https://a.example/1\n", "\ufeffhttps://a.example/2\n"]))
    assert isinstance(items[1], BadLine)
    assert items[1].line == 2


# ---- JSON Lines -----------------------------------------------------------------------------


def test_json_line_with_every_key() -> None:
    """A JSON object sets url, path, checksum (normalised), headers and max_bytes."""
    line = jline(
        url="https://a.example/x",
        path="./sub//out.bin",
        checksum="SHA-256:" + SHA256_EMPTY.upper(),
        headers={"Authorization": "Bearer t", "X-Tag": "a\tb"},
        max_bytes="10M",
    )
    assert only(line) == Job(
        "https://a.example/x",
        path="sub/out.bin",
        checksum="sha256:" + SHA256_EMPTY,
        headers=(("Authorization", "Bearer t"), ("X-Tag", "a\tb")),
        max_bytes=10 * 1024**2,
        line=1,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (1234, 1234), ("1234", 1234), ("1.5K", 1536), ("2GB", 2 * 10**9)],
)
def test_json_max_bytes_int_or_size(value: object, expected: int) -> None:
    """max_bytes is an integer, or a size string as parse_size reads it."""
    job = only(jline(url="http://a/", max_bytes=value))
    assert isinstance(job, Job)
    assert job.max_bytes == expected


def test_json_null_means_absent() -> None:
    """null for an optional key is the same as leaving the key out."""
    line = jline(url="http://a/", path=None, checksum=None, headers=None, max_bytes=None)
    assert only(line) == Job("http://a/", line=1)


def test_indented_json_line() -> None:
    """White space before the "{" still makes a JSON line."""
    assert only('   {"url": "http://a/x"}  \n') == Job("http://a/x", line=1)


def test_mixed_json_and_plain_lines() -> None:
    """Without a CSV header, JSON and plain lines may be mixed freely, in order."""
    text = 'http://a/1\n{"url": "http://a/2", "path": "two"}\n# c\nhttp://a/3\n'
    assert parse(text) == [
        Job("http://a/1", line=1),
        Job("http://a/2", path="two", line=2),
        Job("http://a/3", line=4),
    ]


@pytest.mark.parametrize(
    ("line", "reason_start"),
    [
        ('{"url": "http://a/"', "invalid JSON: "),
        ("{url: 'http://a/'}", "invalid JSON: "),
        ('{"url": "http://a/"} trailing', "invalid JSON: "),
        ("[" * 100_000 + "]" * 100_000, "invalid JSON: "),
        ('{"url": "http://a/", "max_bytes": ' + "9" * 5000 + "}", "invalid JSON: "),
        ('["http://a/"]', "JSON line is not an object"),
        ("[]", "JSON line is not an object"),
        ("{}", "missing url"),
        ('{"path": "x"}', "missing url"),
        ('{"url": 1}', "url must be a string"),
        ('{"url": null}', "url must be a string"),
        ('{"url": ["http://a/"]}', "url must be a string"),
        ('{"url": "ftp://a/x"}', "url must start with http:// or https://"),
        ('{"url": "http://a/", "pth": "x"}', "unknown key 'pth' (known: "),
        ('{"url": "http://a/", "URL": "http://b/"}', "unknown key 'URL'"),
        ('{"url": "http://a/", "url": "http://b/"}', "duplicate key 'url'"),
        ('{"url": "http://a/", "headers": {"A": "1", "A": "2"}}', "duplicate key 'A'"),
        ('{"url": "http://a/", "checksum": "abc"}', "bad checksum: "),
        ('{"url": "http://a/", "checksum": "sha256:abc"}', "bad checksum: "),
        ('{"url": "http://a/", "checksum": "crc32:00000000"}', "bad checksum: "),
        ('{"url": "http://a/", "checksum": 5}', "checksum must be a string"),
        ('{"url": "http://a/", "max_bytes": "ten"}', "bad max_bytes: "),
        ('{"url": "http://a/", "max_bytes": "-1"}', "bad max_bytes: "),
        ('{"url": "http://a/", "max_bytes": -1}', "bad max_bytes: must not be negative"),
        ('{"url": "http://a/", "max_bytes": 1.5}', "max_bytes must be an integer"),
        ('{"url": "http://a/", "max_bytes": true}', "max_bytes must be an integer"),
        ('{"url": "http://a/", "max_bytes": NaN}', "max_bytes must be an integer"),
        ('{"url": "http://a/", "headers": ["A", "1"]}', "headers must be an object of strings"),
        ('{"url": "http://a/", "headers": {"A": 1}}', "headers must be an object of strings"),
        ('{"url": "http://a/", "headers": {"A B": "1"}}', "bad header name"),
        ('{"url": "http://a/", "headers": {"": "1"}}', "bad header name"),
        ('{"url": "http://a/", "headers": {"A": "1\\r\\nX: 2"}}', "bad header value"),
        ('{"url": "http://a/", "headers": {"A": "\\u0000"}}', "bad header value"),
        ('{"url": "http://a/", "path": 3}', "path must be a string"),
        ('{"url": "http://a/", "path": "/etc/passwd"}', "unsafe path: "),
    ],
)
def test_json_bad_lines(line: str, reason_start: str) -> None:
    """Every way a JSON line can be wrong gives a BadLine saying which."""
    reason = bad_reason(line)
    assert reason.startswith(reason_start), reason


# ---- URLs and paths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://a/",
        "https://example.com/path/file.tar.gz?x=1&y=2#frag",
        "HTTPS://EXAMPLE.COM/X",
        "http://user:pw@example.com:8080/x",
        "http://[::1]:8080/x",
        "http://127.0.0.1/x",
        "https://bücher.example/ü",
        "http://a/%20space",
    ],
)
def test_valid_urls(url: str) -> None:
    """Absolute http(s) URLs with a host are accepted and kept exactly as written."""
    assert only(jline(url=url)) == Job(url, line=1)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://a/x", "url must start with http:// or https://"),
        ("file:///etc/passwd", "url must start with http:// or https://"),
        ("example.com/x", "url must start with http:// or https://"),
        ("//a/x", "url must start with http:// or https://"),
        ("http:/a/x", "url must start with http:// or https://"),
        ("http:a", "url must start with http:// or https://"),
        ("", "url must start with http:// or https://"),
        ("http://", "url has no host"),
        ("http:///x", "url has no host"),
        ("http://user@/x", "url has no host"),
        ("http://:80/", "url has no host"),
        ("http://a:port/", "invalid url: "),
        ("http://a:99999/", "invalid url: "),
        ("http://[::1/", "invalid url: "),
        ("http://a/b c", "url contains white space or control characters"),
        ("http://a/b\tc", "url contains white space or control characters"),
        ("http://a/b\x00", "url contains white space or control characters"),
        ("http://a/b\x7f", "url contains white space or control characters"),
        ("http://a/b\x85", "url contains white space or control characters"),
        ("http://a/b\u00a0", "url contains white space or control characters"),
        ("http://a/evil\u202etxt.exe", "url contains white space or control characters"),
        ("http://a/b\u2028", "url contains white space or control characters"),
    ],
)
def test_bad_urls(url: str, reason: str) -> None:
    """A URL must be http:// or https://, have a host, and hold no space or control char."""
    assert bad_reason(jline(url=url)).startswith(reason)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc/passwd", "unsafe path: '/etc/passwd' is absolute"),
        ("//server/share/x", "unsafe path: '//server/share/x' is absolute"),
        ("C:evil", "unsafe path: 'C:evil' is absolute"),
        ("c:/windows/x", "unsafe path: 'c:/windows/x' is absolute"),
        ("..", "unsafe path: '..' component in '..'"),
        ("../x", "unsafe path: '..' component in '../x'"),
        ("a/../../b", "unsafe path: '..' component in 'a/../../b'"),
        ("a/..", "unsafe path: '..' component in 'a/..'"),
        ("./../x", "unsafe path: '..' component in './../x'"),
        ("a\\b", "unsafe path: backslash in 'a\\\\b'"),
        ("..\\x", "unsafe path: backslash in '..\\\\x'"),
        ("a\x00b", "unsafe path: control character in 'a\\x00b'"),
        ("a\nb", "unsafe path: control character in 'a\\nb'"),
        ("a\x1b[31mb", "unsafe path: control character in 'a\\x1b[31mb'"),
        ("a\x7f", "unsafe path: control character in 'a\\x7f'"),
        ("a\x9b", "unsafe path: control character in 'a\\x9b'"),
        ("", "path is empty: ''"),
        (".", "path is empty: '.'"),
        ("./.", "path is empty: './.'"),
        ("dir/", "path names a directory: 'dir/'"),
        ("./", "path names a directory: './'"),
    ],
)
def test_unsafe_paths(path: str, reason: str) -> None:
    """A job's path must stay inside the target directory and name a file."""
    assert bad_reason(jline(url="http://a/", path=path)) == reason
    with pytest.raises(UsageError):
        safe_relpath(path)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("out.bin", "out.bin"),
        ("./a/b", "a/b"),
        ("a//b/./c", "a/b/c"),
        ("a/.b", "a/.b"),
        ("...", "..."),
        ("a..b/c", "a..b/c"),
        ("dir:x/y", "dir:x/y"),
        ("ü/ß.txt", "ü/ß.txt"),
    ],
)
def test_safe_paths_are_normalised(path: str, expected: str) -> None:
    """Safe relative paths lose "." and empty components and keep everything else."""
    assert safe_relpath(path) == expected
    job = only(jline(url="http://a/", path=path))
    assert isinstance(job, Job)
    assert job.path == expected


def test_job_validates_on_construction() -> None:
    """A Job cannot be built with bad values, even without the parser."""
    with pytest.raises(UsageError):
        Job("ftp://a/")
    with pytest.raises(UsageError):
        Job("http://a/", path="../x")
    with pytest.raises(UsageError):
        Job("http://a/", checksum="md5:zz")
    with pytest.raises(UsageError):
        Job("http://a/", headers=(("Bad Name", "v"),))
    with pytest.raises(UsageError):
        Job("http://a/", max_bytes=-5)
    assert Job("http://a/", checksum="MD5:" + MD5_EMPTY.upper()).checksum == "md5:" + MD5_EMPTY


def test_bad_line_text_is_truncated() -> None:
    """A BadLine keeps about 200 characters of the offending line, not all of it."""
    item = only("ftp://a/" + "x" * 10_000 + "\n")
    assert isinstance(item, BadLine)
    assert item.text.startswith("ftp://a/xxx")
    assert len(item.text) <= 201
    short = only("ftp://a/x\r\n")
    assert isinstance(short, BadLine)
    assert short.text == "ftp://a/x"


def test_bad_lines_do_not_stop_the_stream() -> None:
    """A bad line is reported in place and parsing goes on with the next line."""
    items = parse("http://a/1\nnot a url\nhttp://a/3\n")
    assert [type(i) for i in items] == [Job, BadLine, Job]
    assert [i.line for i in items] == [1, 2, 3]


# ---- CSV / TSV ------------------------------------------------------------------------------


def test_csv_with_header() -> None:
    """A first line naming a url column makes the rest CSV rows, columns in any order."""
    text = (
        "path,url,checksum,max_bytes\n"
        f"out/a.bin,https://a.example/a,md5:{MD5_EMPTY},1K\n"
        ",https://a.example/b,,\n"
    )
    assert parse(text) == [
        Job(
            "https://a.example/a",
            path="out/a.bin",
            checksum="md5:" + MD5_EMPTY,
            max_bytes=1024,
            line=2,
        ),
        Job("https://a.example/b", line=3),
    ]


def test_tsv_with_header() -> None:
    """A TAB in the header line makes TAB the delimiter; empty leading cells keep their place."""
    text = "Path\tURL\n\thttps://a.example/a\nx.bin\thttps://a.example/b,c\n"
    assert parse(text) == [
        Job("https://a.example/a", line=2),
        Job("https://a.example/b,c", path="x.bin", line=3),
    ]


def test_csv_header_only_url_column() -> None:
    """A header of just "url" is a one-column table."""
    assert parse("url\nhttp://a/1\n\nhttp://a/2\n") == [
        Job("http://a/1", line=2),
        Job("http://a/2", line=4),
    ]


def test_csv_quoting_follows_csv_module() -> None:
    """Cells are quoted as the csv module reads them: commas and doubled quotes inside quotes."""
    text = 'url,path\n"https://a.example/x?a=1,2","dir/say ""hi"".txt"\n'
    assert only(text) == Job("https://a.example/x?a=1,2", path='dir/say "hi".txt', line=2)


def test_csv_after_comments_and_line_numbers() -> None:
    """Comments before the header are skipped and line numbers still count them."""
    text = "# exported\n\nurl , path\n# row comment\nhttp://a/x , y\n"
    assert parse(text) == [Job("http://a/x", path="y", line=5)]


def test_csv_unknown_column_reported_once_rows_still_parsed() -> None:
    """An unknown header column is one BadLine on the header; rows use the known columns."""
    text = "url,path,chekcsum\nhttp://a/1,one,sha256:x\nhttp://a/2,two,\n"
    header, *rows = parse(text)
    assert isinstance(header, BadLine)
    assert header.line == 1
    assert header.reason.startswith("unknown CSV column 'chekcsum' (known: url, path, ")
    assert rows == [Job("http://a/1", path="one", line=2), Job("http://a/2", path="two", line=3)]


def test_csv_duplicate_column() -> None:
    """A column named twice is reported on the header line."""
    header, row = parse("url,path,URL\nhttp://a/1,p,http://a/2\n")
    assert isinstance(header, BadLine)
    assert header.reason == "duplicate CSV column 'url'"
    assert isinstance(row, Job)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("http://a/x", "CSV row has 1 fields, the header has 2"),
        ("http://a/x,p,extra", "CSV row has 3 fields, the header has 2"),
        (",p", "missing url"),
        ('"http://a/x,p', "bad CSV quoting: "),
        ('"http://a/x"junk,p', "bad CSV quoting: "),
        ("ftp://a/x,p", "url must start with http:// or https://"),
        ("http://a/x,../p", "unsafe path: "),
    ],
)
def test_csv_bad_rows(row: str, reason: str) -> None:
    """Short, long, unquotable and invalid CSV rows are BadLines with their line number."""
    item = only("url,path\n" + row + "\n")
    assert isinstance(item, BadLine)
    assert item.line == 2
    assert item.reason.startswith(reason), item.reason


def test_csv_bad_max_bytes_and_checksum() -> None:
    """CSV cells get the same checksum and size validation as JSON values."""
    text = "url,checksum,max_bytes\nhttp://a/,md5:zz,\nhttp://a/,,lots\n"
    reasons = [i.reason for i in parse(text) if isinstance(i, BadLine)]
    assert [r.split(":")[0] for r in reasons] == ["bad checksum", "bad max_bytes"]


def test_json_line_in_csv_is_a_row() -> None:
    """Once a header announced a table, every row is CSV: JSON is not recognised there."""
    item = only('url\n{"url": "http://a/x"}\n')
    assert isinstance(item, BadLine)


@pytest.mark.parametrize(
    "first",
    ["https://example.com/url,x", "http://a/url\tb", '{"url": "http://a/"}', "[url]"],
)
def test_not_a_header(first: str) -> None:
    """A first line with "://" or a JSON start is never taken for a CSV header."""
    item = parse(first + "\n")[0]
    assert item.line == 1
    assert not (isinstance(item, BadLine) and "CSV" in item.reason)


def test_header_only_on_first_line() -> None:
    """A header-like line after the first is just a bad URL line."""
    items = parse("http://a/1\nurl,path\n")
    assert isinstance(items[1], BadLine)
    assert items[1].reason == "url must start with http:// or https://"


# ---- streaming ------------------------------------------------------------------------------


class CountingLines:
    """An endless-ish line source that records how many lines were pulled."""

    def __init__(self, total: int, comment_every: int = 0) -> None:
        self.total = total
        self.comment_every = comment_every
        self.pulled = 0

    def __iter__(self) -> Iterator[str]:
        for i in range(self.total):
            self.pulled += 1
            if self.comment_every and i % self.comment_every == 0:
                yield "# comment\n"
            else:
                yield f"https://cdn.example/file{i}.bin\n"


def test_parse_pulls_lines_lazily() -> None:
    """Taking the first 10 jobs of a 1,000,000-line manifest reads exactly 10 lines."""
    source = CountingLines(1_000_000)
    results = parse_manifest(source)
    assert source.pulled == 0  # a generator: nothing is read before the first next()
    first = list(itertools.islice(results, 10))
    assert [j.line for j in first] == list(range(1, 11))
    assert source.pulled == 10
    assert next(results).line == 11
    assert source.pulled == 11


def test_parse_pulls_lazily_past_comments() -> None:
    """Comment lines are read only as far as the next job needs."""
    source = CountingLines(1_000_000, comment_every=2)  # lines 1, 3, 5, ... are comments
    first = list(itertools.islice(parse_manifest(source), 10))
    assert [j.line for j in first] == list(range(2, 21, 2))
    assert source.pulled == 20


def test_parse_memory_stays_flat() -> None:
    """Parsing 200,000 lines keeps the traced peak under 5 MiB: nothing accumulates."""

    def lines() -> Iterator[str]:
        for i in range(200_000):
            if i % 3 == 0:
                yield json.dumps({"url": f"https://a.example/{i}", "path": f"d/{i}"}) + "\n"
            elif i % 3 == 1:
                yield f"https://a.example/f{i}.bin\n"
            else:
                yield "ftp://not-allowed/\n"

    tracemalloc.start()
    try:
        count = sum(1 for _ in parse_manifest(lines()))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert peak < 5 * 1024 * 1024


_HOST = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){0,2}", fullmatch=True)
_PATH_CHARS = st.characters(
    blacklist_categories=("Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Co", "Cn"),
)
_URL = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
    st.sampled_from(["http", "https"]),
    _HOST,
    st.sampled_from(["", ":80", ":8443"]),
    st.text(_PATH_CHARS, max_size=30),
)


@given(st.lists(_URL, max_size=20), st.sampled_from(["\n", "\r\n"]))
def test_plain_manifest_round_trip(urls: list[str], newline: str) -> None:
    """Any list of valid URLs, one per line, parses back to the same jobs in order."""
    lines = [url + newline for url in urls]
    assert list(parse_manifest(lines)) == [Job(u, line=n) for n, u in enumerate(urls, start=1)]


# ---- targets and duplicates -----------------------------------------------------------------


def test_target_for() -> None:
    """A job writes its own path, else the safe name its URL suggests."""
    assert target_for(Job("http://a/x/file.iso", path="out/f.iso")) == "out/f.iso"
    assert target_for(Job("http://a/x/file.iso?v=2")) == "file.iso"
    assert target_for(Job("http://a/")) == "index.html"
    assert target_for(Job("http://a/..%2f..%2fetc%2fpasswd")) == "passwd"


def test_target_key_is_blake2b_of_normalised_path() -> None:
    """The key is the 64-bit blake2b of the normalised path, big-endian."""
    digest = hashlib.blake2b(b"a/b.bin", digest_size=8).digest()
    assert target_key("a/b.bin") == int.from_bytes(digest, "big")
    assert 0 <= target_key("x") < 2**64


@pytest.mark.parametrize(
    ("left", "right", "same"),
    [
        ("a/b", "./a/b", True),
        ("a/b", "a//b/", True),
        ("a/./b", "a/b", True),
        ("caf\u00e9", unicodedata.normalize("NFD", "caf\u00e9"), True),
        ("a/b", "A/b", False),
        ("a/b", "a/b ", False),
        ("a/b", "b/a", False),
    ],
)
def test_target_key_normalises(left: str, right: str, same: bool) -> None:
    """Spellings of one path share a key; case and other differences do not."""
    assert (target_key(left) == target_key(right)) is same


def test_duplicate_finder_basic() -> None:
    """add() is False the first time a key is seen and True every time after."""
    finder = DuplicateFinder()
    assert finder.add(42) is False
    assert finder.add(42) is True
    assert finder.add(42) is True
    assert finder.add(0) is False
    assert finder.add(0) is True
    assert finder.add(2**64 - 1) is False
    assert finder.add(2**64 - 1) is True
    assert len(finder) == 3


@pytest.mark.parametrize("key", [-1, 2**64])
def test_duplicate_finder_rejects_out_of_range_keys(key: int) -> None:
    """Keys are unsigned 64-bit integers."""
    with pytest.raises(UsageError):
        DuplicateFinder().add(key)


@pytest.mark.parametrize(
    "keys",
    [
        [random.Random(1).getrandbits(64) for _ in range(20_000)],
        [i << 40 for i in range(5_000)],  # structured keys: same low bits
        list(range(5_000)),
    ],
    ids=["random", "high-bits", "sequential"],
)
def test_duplicate_finder_agrees_with_a_set(keys: list[int]) -> None:
    """Through many growths, add() answers exactly as membership in a set would."""
    keys = keys + keys[::3]
    random.Random(2).shuffle(keys)
    finder = DuplicateFinder()
    seen: set[int] = set()
    for key in keys:
        assert finder.add(key) is (key in seen)
        seen.add(key)
    assert len(finder) == len(seen)


def test_duplicate_finder_is_small() -> None:
    """100,000 keys cost under 4 MiB at peak (a set of ints would take about 8)."""
    rng = random.Random(3)
    keys = (rng.getrandbits(64) for _ in range(100_000))
    tracemalloc.start()
    try:
        finder = DuplicateFinder()
        for key in keys:
            finder.add(key)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(finder) == 100_000
    assert peak < 4 * 1024 * 1024


def test_duplicates_of_finds_clashing_targets() -> None:
    """A first pass returns the key of every target written by more than one job."""
    text = (
        "https://a.example/x/file.bin\n"
        "https://b.example/y/file.bin?mirror=2\n"  # same derived name
        '{"url": "https://c.example/z", "path": "./out/z"}\n'
        '{"url": "https://d.example/q", "path": "out//z"}\n'  # same explicit path
        "https://a.example/unique.bin\n"
        "ftp://bad/file.bin\n"  # BadLines are not jobs and never clash
    )
    assert duplicates_of(text.splitlines()) == {target_key("file.bin"), target_key("out/z")}


def test_duplicates_of_without_clashes() -> None:
    """A manifest whose targets are all distinct has no duplicates."""
    source = CountingLines(10_000)
    assert duplicates_of(source) == set()
    assert source.pulled == 10_000


def test_partial_suffixes_are_the_files_adapters() -> None:
    """The names a download of T uses besides T (files.py) are the ones duplicate detection
    treats as T's: T.part, T.part.json and the sidecar's temporary file."""
    from streamer.core.targets import PARTIAL_SUFFIXES
    from streamer.storage.files import PART_SUFFIX, SIDECAR_SUFFIX

    assert PARTIAL_SUFFIXES == (PART_SUFFIX, SIDECAR_SUFFIX, SIDECAR_SUFFIX + ".tmp")


def test_a_partial_like_name_also_claims_its_owner() -> None:
    """A target named like another target's partial file ("a.part") claims "a" as well;
    such jobs are refused outright since the reserved names (tests/core/test_reserved_names.py),
    so only the key function is left to check; unrelated names like "a.partial" or ".part"
    alone claim only themselves."""
    from streamer.core.manifest import claimed_keys

    assert claimed_keys("a.part") == (target_key("a.part"), target_key("a"))
    assert claimed_keys("x/a.part.json") == (target_key("x/a.part.json"), target_key("x/a"))
    assert claimed_keys("a.partial") == (target_key("a.partial"),)
    assert claimed_keys(".part") == (target_key(".part"),)
