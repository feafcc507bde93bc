"""Safe local file names from URLs and Content-Disposition (RFC 6266, RFC 8187).

A name that comes from the network is hostile until proven otherwise: it may climb out of the
target directory ("../../etc/passwd", "..\\win.ini", "C:evil"), hide itself (".bashrc"), name a
Windows device ("CON", "nul.txt"), smuggle control or bidi characters into the terminal, or be
too long for the file system. Everything here turns it into one plain path component.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, unquote_to_bytes

__all__ = [
    "HELPER_SUFFIXES",
    "JOURNAL_NAME",
    "MAX_CHOSEN_BYTES",
    "NAME_MAX",
    "length_problem",
    "name_from_content_disposition",
    "name_from_url",
    "reserved_reason",
    "safe_name",
]

NAME_MAX = 255  # bytes in one name on Linux/ext4 and most file systems (NTFS: 255 UTF-16 units)
# The names a download of T writes besides T (storage: T.part, T.part.json and the sidecar's
# temporary file), and the bulk journal's name in the output directory.
HELPER_SUFFIXES = (".part", ".part.json", ".part.json.tmp")
JOURNAL_NAME = ".streamer-journal.jsonl"
# What a Dask run keeps in the output directory (streamer.distributed): each shard's journal,
# the submitter's lock and the record of how the jobs were cut (and its temporary file).
_DASK_FILES = re.compile(
    r"\.streamer-(?:journal\.shard-[0-9]+\.jsonl|dask\.lock|dask-plan\.json(?:\.tmp)?)"
)
_LONGEST_SUFFIX_FIRST = sorted(HELPER_SUFFIXES, key=len, reverse=True)
# A chosen name is cut to this, so that every helper name beside it fits NAME_MAX too.
MAX_CHOSEN_BYTES = NAME_MAX - max(len(s) for s in HELPER_SUFFIXES)
_MAX_BYTES = MAX_CHOSEN_BYTES
_MAX_EXT_CHARS = 16

# Bidi embeddings, overrides and isolates (Unicode TR 9): "evil\u202etxt.exe" displays as
# "evilexe.txt". Line and paragraph separators break terminal output like a newline.
_INVISIBLE = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_DROP_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})

# Characters Windows refuses in names (Win32 "Naming Files"). ":" matters most: "C:x" joined to
# a directory is drive-relative, and "a:b" writes an NTFS alternate data stream.
_WINDOWS_FORBIDDEN = str.maketrans({ch: "_" for ch in '<>:"|?*'})

# Win32 device names, reserved with any extension and in any case. The superscript digits are
# reserved too (they map to 1-3 in some code pages); COM0/LPT0 are listed by recent docs.
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"]
)

# Leading/trailing dots and white space: no hidden files, no "." or "..", and Windows silently
# strips trailing dots and spaces (so "a.exe." would become "a.exe" there).
_EDGE_JUNK = re.compile(r"^[\s.]+|[\s.]+$")
# A name that every step of safe_name would leave as it is: short, plain ASCII, no edge dot.
_PLAIN = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_\-.]{0,199}(?<!\.)")


def _clean_chars(name: str) -> str:
    if name.isascii() and name.isprintable():
        return name  # nothing to drop (the common case: one call per job of a big manifest)
    # Lone surrogates (from surrogateescape'd header bytes) cannot be encoded; mark them.
    chars = ("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in name)
    return "".join(
        ch
        for ch in chars
        if ch not in _INVISIBLE and unicodedata.category(ch) not in _DROP_CATEGORIES
    )


def reserved_reason(name: str) -> str | None:
    """Why `name` may not be a job's target (it is the journal, or another target's helper
    file: ``a.part`` is where ``a`` is written), or None when it may."""
    if name == JOURNAL_NAME or _DASK_FILES.fullmatch(name):
        return f"{name!r} is reserved for the run's journal"
    if not name.endswith(HELPER_SUFFIXES):
        return None  # the common case, one call per job of a big manifest: no loop
    for suffix in _LONGEST_SUFFIX_FIRST:
        if name.endswith(suffix) and len(name) > len(suffix):
            return f"{name!r} is reserved: streamer writes {suffix!r} files beside its targets"
    return None


def length_problem(parts: list[str]) -> str | None:
    """Why a relative path (its components) is too long for the file system, or None: each
    directory fits NAME_MAX bytes, the file name leaves room for its helper names."""
    for part in parts[:-1]:
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > NAME_MAX:
            return f"path component too long: {size} bytes (at most {NAME_MAX})"
    size = len(parts[-1].encode("utf-8", "surrogatepass")) if parts else 0
    if size > MAX_CHOSEN_BYTES:
        return (
            f"file name too long: {size} bytes (at most {MAX_CHOSEN_BYTES}, so that its"
            f" helper files fit in {NAME_MAX})"
        )
    return None


def _is_reserved(name: str) -> bool:
    # Windows matches the part before the first dot, ignoring trailing spaces ("CON .txt").
    return name.split(".", 1)[0].rstrip(" ").upper() in _RESERVED


def _truncate(name: str) -> str:
    """Cut `name` to _MAX_BYTES of UTF-8 on a character boundary, keeping a short extension."""
    if len(name.encode("utf-8")) <= _MAX_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not (dot and stem and len(ext) <= _MAX_EXT_CHARS):
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = _MAX_BYTES - len(suffix.encode("utf-8"))
    # errors="ignore" drops the trailing bytes of a character split by the cut.
    return stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore") + suffix


def safe_name(name: str, default: str = "download") -> str:
    """`name` as one safe path component, or `default` if nothing usable is left.

    `default` is returned as given; callers pass a safe constant.
    """
    if _PLAIN.fullmatch(name) and not _is_reserved(name):
        return name  # the common case in big manifests: ~1 us instead of ~8
    return safe_name_full(name, default)


def safe_name_full(name: str, default: str = "download") -> str:
    """`safe_name` without its fast path (tests check that both agree)."""
    name = unicodedata.normalize("NFC", _clean_chars(name))
    # Both separators, whatever the OS we run on: a name made on one system is used on another.
    name = re.split(r"[/\\]", name)[-1]
    name = _EDGE_JUNK.sub("", name.translate(_WINDOWS_FORBIDDEN))
    if _is_reserved(name):
        name = f"_{name}"
    # The cut may leave a trailing dot or space behind; strip again.
    name = _EDGE_JUNK.sub("", _truncate(name))
    return name or default


def name_from_url(url: str, default: str = "index.html") -> str:
    """The last path segment of `url`, percent-decoded and made safe; `default` if empty."""
    # RFC 3986 3: the query starts at the first "?", the fragment at the first "#". Split by
    # hand so that no URL, however broken, makes this raise.
    rest = url.partition("#")[0].partition("?")[0]
    scheme_end = rest.find("://")
    if scheme_end >= 0:
        # Skip the authority (3.2): the path starts at the first "/" after it.
        after = rest[scheme_end + 3 :]
        slash = after.find("/")
        rest = after[slash:] if slash >= 0 else ""
    segment = rest.rpartition("/")[2]
    if not segment:
        return default
    return safe_name(unquote(segment, errors="replace"), default)


def _quoted(value: str, start: int) -> tuple[str | None, int]:
    """Parse a quoted-string (RFC 9110 5.6.4) opening at `start`; None if unterminated."""
    out: list[str] = []
    i = start + 1
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    return None, len(value)


def _parse_params(value: str) -> dict[str, str | None]:
    """Parameters of a Content-Disposition value (RFC 6266 4.1), names lower-cased.

    A name given twice maps to None: RFC 6266 4.1 calls that invalid, and clients disagree on
    which copy wins, which is exactly the ambiguity an attacker wants.
    """
    params: dict[str, str | None] = {}
    i = 0
    while i < len(value):
        semi, eq = value.find(";", i), value.find("=", i)
        if eq < 0 or (0 <= semi < eq):
            # The disposition type, or a parameter without "=": skip to the next ";".
            i = semi + 1 if semi >= 0 else len(value)
            continue
        key = value[i:eq].strip().lower()
        j = eq + 1
        while j < len(value) and value[j] in " \t":
            j += 1
        parsed: str | None
        if j < len(value) and value[j] == '"':
            parsed, j = _quoted(value, j)
            semi = value.find(";", j)
        else:
            semi = value.find(";", j)
            parsed = value[j : semi if semi >= 0 else len(value)].strip()
        params[key] = None if key in params else parsed
        i = semi + 1 if semi >= 0 else len(value)
    return params


def _decode_ext_value(ext: str) -> str | None:
    """Decode an RFC 8187 3.2 ext-value: charset'language'percent-encoded."""
    charset, sep1, rest = ext.partition("'")
    _language, sep2, encoded = rest.partition("'")
    if not (sep1 and sep2):
        return None
    charset = charset.strip().lower()
    # RFC 8187 3.2.1: UTF-8 and ISO-8859-1 are required; we ignore every other charset rather
    # than guess, and ignore bytes that are not valid in the declared one.
    if charset not in ("utf-8", "iso-8859-1"):
        return None
    try:
        return unquote_to_bytes(encoded).decode(charset)
    except UnicodeDecodeError:
        return None


def name_from_content_disposition(value: str) -> str | None:
    """The safe file name a Content-Disposition value suggests, or None if it has no usable one.

    RFC 6266 4.3: filename* (RFC 8187) is preferred over filename when both are usable.
    """
    params = _parse_params(value)
    candidates: list[str | None] = []
    ext = params.get("filename*")
    if ext is not None:
        candidates.append(_decode_ext_value(ext))
    # RFC 6266 4.3: a plain filename is taken as is; no percent-decoding.
    candidates.append(params.get("filename"))
    for raw in candidates:
        if raw is not None:
            name = safe_name(raw, default="")
            if name:
                return name
    return None
