"""Bulk-download manifests, parsed as a stream: one `Job` (or `BadLine`) per line, lazily.

A manifest may hold millions of lines, so nothing here keeps more than the current line: every
function takes an iterable of lines and yields as it goes. Three formats, told apart per file
and per line:

* blank lines and lines starting with ``#`` (after white space) are skipped everywhere;
* a line starting with ``{`` (or ``[``) is a JSON object (JSON Lines, RFC 8259) with the keys
  url, path, checksum, headers and max_bytes; any other key is an error, so a typo such as
  "chekcsum" never silently turns verification off;
* if the first other line is a CSV/TSV header (RFC 4180; no "://", a ``url`` column, TAB
  delimiter if it holds a TAB, else comma), every later line is a row of that table (JSON is
  not recognised there: the header said what the rows are);
* otherwise each line is one plain URL.

Every value that reaches a `Job` is validated by `Job` itself, so no invalid Job can exist.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from streamer.core.checksum import Checksum
from streamer.core.names import length_problem, name_from_url, reserved_reason
from streamer.core.sizes import parse_size
from streamer.core.targets import (
    DuplicateFinder,
    claimed_keys,
    components,
    owner_key,
    target_key,
)
from streamer.errors import UsageError

__all__ = [
    "BadLine",
    "DuplicateFinder",
    "Job",
    "check_url",
    "claimed_keys",
    "duplicates_of",
    "owner_key",
    "parse_manifest",
    "prescan",
    "safe_relpath",
    "target_for",
    "target_key",
]

KEYS: tuple[str, ...] = ("url", "path", "checksum", "headers", "max_bytes")
CSV_COLUMNS: tuple[str, ...] = ("url", "path", "checksum", "max_bytes")
MAX_TEXT = 200  # characters of an offending line kept in a BadLine

# Characters no URL may hold: controls (C0, DEL, C1), format characters (bidi overrides, the
# BOM), separators and lone surrogates. RFC 3986 2 allows none of them unencoded.
_URL_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})

# An http(s) URL with a plain host name, an optional port and printable ASCII after it: the
# common case, accepted without urlsplit (anything else takes the full checks).
_SIMPLE_URL = re.compile(
    r"https?://[A-Za-z0-9](?:[A-Za-z0-9.\-]*)(?::([0-9]{1,5}))?(?:[/?#][!-~]*)?"
)
_MAX_PORT = 65535

# RFC 9110 5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# "C:x" is drive-relative on Windows and "C:\x" absolute: never a safe relative path.
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class BadLine:
    """A manifest line that is not a valid job, and why. `text` is cut to about 200 chars."""

    line: int
    text: str
    reason: str


def check_url(url: str) -> str:
    """`url` if it is an absolute http(s) URL with a host; raise `UsageError` otherwise."""
    if not isinstance(url, str):
        raise UsageError("url must be a string")
    simple = _SIMPLE_URL.fullmatch(url)
    if simple is not None and int(simple.group(1) or 0) <= _MAX_PORT:
        return url  # what every check of check_url_full would accept, found in one match
    return check_url_full(url)


def check_url_full(url: str) -> str:
    """`check_url` without its fast path (tests check that both agree)."""
    # Fast path: printable ASCII without a space is clean; only other URLs need the table.
    clean = url.isascii() and url.isprintable() and " " not in url
    if not clean and any(unicodedata.category(ch) in _URL_BAD_CATEGORIES for ch in url):
        raise UsageError("url contains white space or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a non-numeric or out-of-range port
    except ValueError as err:
        raise UsageError(f"invalid url: {err}") from None
    if parts.scheme not in ("http", "https") or not url[len(parts.scheme) :].startswith("://"):
        raise UsageError("url must start with http:// or https://")
    if not parts.hostname:
        raise UsageError("url has no host")
    return url


def safe_relpath(path: str) -> str:
    """`path` normalised ("./a//b" -> "a/b") if it stays inside the target directory.

    Raises `UsageError` ("unsafe path: ...") for absolute or drive paths, ".." components,
    backslashes (a separator on Windows) and control characters; "path is empty" when
    nothing is left, and for a trailing "/" (a directory, not a file).
    """
    if not isinstance(path, str):
        raise UsageError("path must be a string")
    if any(unicodedata.category(ch) == "Cc" for ch in path):
        raise UsageError(f"unsafe path: control character in {path!r}")
    if "\\" in path:
        raise UsageError(f"unsafe path: backslash in {path!r}")
    if path.startswith("/") or _DRIVE.match(path):
        raise UsageError(f"unsafe path: {path!r} is absolute")
    parts = components(path)
    if ".." in parts:
        raise UsageError(f"unsafe path: '..' component in {path!r}")
    if path.endswith("/"):
        raise UsageError(f"path names a directory: {path!r}")
    if not parts:
        raise UsageError(f"path is empty: {path!r}")
    too_long = length_problem(parts)
    if too_long is not None:
        raise UsageError(too_long)
    return "/".join(parts)


def _check_headers(headers: tuple[tuple[str, str], ...]) -> None:
    for pair in headers:
        name, value = pair
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise UsageError(f"bad header name: {name!r}")
        # RFC 9110 5.5: no CR, LF or NUL in a field value (no header injection); HTAB is fine.
        if not isinstance(value, str) or any(
            unicodedata.category(ch) == "Cc" and ch != "\t" for ch in value
        ):
            # The value is not echoed: it may be a credential (Authorization, a token).
            raise UsageError(f"bad header value for {name}: control characters are not allowed")


@dataclass(frozen=True)
class Job:
    """One download: a URL, where to write it (relative) and what to check.

    Validated and normalised on construction: url by `check_url`, path by `safe_relpath`,
    checksum to "algo:hex" by `Checksum.parse`; `max_bytes` must be an int >= 0.
    """

    url: str
    path: str | None = None  # relative output path; None = derive it from the URL
    checksum: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    max_bytes: int | None = None
    line: int = 0  # 1-based line number in the manifest
    # The name derived from the URL (when path is None), made once: `target_for` asks per job.
    _url_name: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_url(self.url)
        if self.path is not None:
            object.__setattr__(self, "path", safe_relpath(self.path))
            name = self.path.rpartition("/")[2]
        else:
            name = name_from_url(self.url)
            object.__setattr__(self, "_url_name", name)
        why = reserved_reason(name)
        if why is not None:
            raise UsageError(why)
        if self.checksum is not None:
            object.__setattr__(self, "checksum", _normal_checksum(self.checksum))
        if self.headers:
            _check_headers(self.headers)
        if self.max_bytes is not None:
            if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int):
                raise UsageError("max_bytes must be an integer or a size string")
            if self.max_bytes < 0:
                raise UsageError(f"bad max_bytes: must not be negative: {self.max_bytes}")


def _normal_checksum(text: str) -> str:
    if not isinstance(text, str):
        raise UsageError("checksum must be a string")
    try:
        return str(Checksum.parse(text))
    except UsageError as err:
        raise UsageError(f"bad checksum: {err.message}") from None


def _max_bytes(value: object) -> int | None:
    """max_bytes as given in a manifest: an int, a size string ("10M") or absent."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if not isinstance(value, str):
        raise UsageError("max_bytes must be an integer or a size string")
    try:
        return parse_size(value)
    except UsageError as err:
        raise UsageError(f"bad max_bytes: {err.message}") from None


# ---- JSON Lines ------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object, refusing a key given twice (RFC 8259 4: parsers disagree on the winner)."""
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _opt_str(obj: dict[str, object], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{key} must be a string")
    return value


def _json_headers(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise UsageError("headers must be an object of strings")
    return tuple(value.items())


def _load_json(text: str) -> dict[str, object]:
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as err:
        raise UsageError(str(err)) from None
    except (ValueError, RecursionError) as err:  # JSONDecodeError, int too long, too deep
        raise UsageError(f"invalid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise UsageError("JSON line is not an object")
    return obj


def _job_from_json(text: str, number: int) -> Job:
    obj = _load_json(text)
    unknown = [key for key in obj if key not in KEYS]
    if unknown:
        raise UsageError(f"unknown key {', '.join(map(repr, unknown))} (known: {', '.join(KEYS)})")
    if "url" not in obj:
        raise UsageError("missing url")
    url = obj["url"]
    if not isinstance(url, str):
        raise UsageError("url must be a string")
    return Job(
        url=url,
        path=_opt_str(obj, "path"),
        checksum=_opt_str(obj, "checksum"),
        headers=_json_headers(obj.get("headers")),
        max_bytes=_max_bytes(obj.get("max_bytes")),
        line=number,
    )


# ---- CSV / TSV -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    delimiter: str
    columns: tuple[str, ...]  # lower-cased header cells; unknown ones are kept, then ignored


def _split_csv(text: str, delimiter: str) -> list[str]:
    """One CSV record on one line (RFC 4180 2, as the csv module reads it), cells stripped."""
    try:
        rows = list(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as err:
        raise UsageError(f"bad CSV quoting: {err}") from None
    return [cell.strip() for cell in rows[0]] if rows else []


def _table_from_header(text: str) -> _Table | None:
    """The table a first line announces, or None if it is not a CSV/TSV header."""
    if "://" in text or text.lstrip().startswith(("{", "[")):
        return None
    delimiter = "\t" if "\t" in text else ","
    try:
        cells = _split_csv(text, delimiter)
    except UsageError:
        return None
    columns = tuple(cell.lower() for cell in cells)
    return _Table(delimiter, columns) if "url" in columns else None


def _check_header(table: _Table) -> None:
    """Raise for unknown or repeated columns; rows are still read by their known columns."""
    seen: set[str] = set()
    for column in table.columns:
        if column in seen:
            raise UsageError(f"duplicate CSV column {column!r}")
        seen.add(column)
    unknown = [c for c in table.columns if c not in CSV_COLUMNS]
    if unknown:
        raise UsageError(
            f"unknown CSV column {', '.join(map(repr, unknown))} (known: {', '.join(CSV_COLUMNS)});"
            " its values are ignored"
        )


def _job_from_row(table: _Table, text: str, number: int) -> Job:
    cells = _split_csv(text, table.delimiter)
    if len(cells) != len(table.columns):
        raise UsageError(f"CSV row has {len(cells)} fields, the header has {len(table.columns)}")
    # An empty cell means "not given"; unknown columns were reported on the header line.
    row = {col: cell for col, cell in zip(table.columns, cells, strict=True) if cell}
    if "url" not in row:
        raise UsageError("missing url")
    return Job(
        url=row["url"],
        path=row.get("path"),
        checksum=row.get("checksum"),
        max_bytes=_max_bytes(row.get("max_bytes")),
        line=number,
    )


# ---- the stream ------------------------------------------------------------------------------


def _job_from_plain(text: str, number: int) -> Job:
    """A plain line, stripped: one URL and nothing else."""
    if " " in text or "\t" in text or not text.isprintable():  # else `text` is the one word
        url, *rest = text.split(None, 1)
        if rest:
            raise UsageError("unexpected text after URL")
        text = url
    return Job(text, line=number)


def _bad(number: int, text: str, reason: str) -> BadLine:
    cut = text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
    return BadLine(number, cut, reason)


def _parse_line(table: _Table | None, text: str, stripped: str, number: int) -> Job | BadLine:
    try:
        if table is not None:
            return _job_from_row(table, text, number)
        if stripped.startswith(("{", "[")):
            return _job_from_json(stripped, number)
        return _job_from_plain(stripped, number)
    except UsageError as err:
        return _bad(number, text, err.message)


def parse_manifest(
    lines: Iterable[str], shard: tuple[int, int] = (0, 1)
) -> Iterator[Job | BadLine]:
    """Yield one `Job` or `BadLine` per non-blank, non-comment line, pulling lines lazily.

    Lines may keep their "\\n" or "\\r\\n"; a UTF-8 BOM on line 1 is dropped. `line` numbers
    count every line given, blank and comment lines included. With ``shard=(k, n)`` only lines
    whose number is k modulo n are parsed (a CSV header line is read whatever its number).
    """
    table: _Table | None = None
    first = True
    k, n = shard
    for number, raw in enumerate(lines, start=1):
        if number % n != k and not first:
            continue
        text = raw.rstrip("\r\n")
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if first:
            first = False
            table = _table_from_header(text)
            if table is not None:
                try:
                    _check_header(table)
                except UsageError as err:
                    if number % n == k:  # every shard reads the header; its owner reports it
                        yield _bad(number, text, err.message)
                continue
            if number % n != k:
                continue
        yield _parse_line(table, text, stripped, number)


# ---- targets and duplicates ------------------------------------------------------------------


def target_for(job: Job) -> str:
    """The relative path `job` writes: its own path, else the name its URL suggests."""
    return job.path if job.path is not None else job._url_name


def duplicates_of(lines: Iterable[str]) -> set[int]:
    """First pass over a manifest: the `target_key`s that more than one job writes.

    Lets a runner refuse every job of a clash before any of them starts. BadLines are skipped.
    """
    return prescan(lines)[0]


def prescan(lines: Iterable[str]) -> tuple[set[int], int]:
    """The keys claimed by more than one job (see `claimed_keys`), and the number of jobs."""
    finder = DuplicateFinder()
    duplicates: set[int] = set()
    count = 0
    for item in parse_manifest(lines):
        if isinstance(item, Job):
            count += 1
            for key in claimed_keys(target_for(item)):
                if finder.add(key):
                    duplicates.add(key)
    return duplicates, count
