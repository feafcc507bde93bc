"""The pure rules of a tus 1.0.0 server: header grammar, the checks a request must pass, the
record of one upload, and the names a finished upload may take.

tus 1.0.0 (https://tus.io/protocols/resumable-upload) in short: POST creates an upload of
``Upload-Length`` bytes and answers its URL; HEAD tells ``Upload-Offset``, the bytes the server
holds; PATCH appends its body at ``Upload-Offset``, which must equal the server's offset.
Every refusal here is a `TusRequestError` carrying the HTTP status the protocol names for it,
so the server's handlers only translate. No I/O: the caller supplies clocks and bytes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from streamer.core.names import safe_name
from streamer.errors import Result, StreamerError

TUS_VERSION = "1.0.0"
TUS_DIR = ".streamer-tus"
"""The hidden folder of a served directory holding its tus uploads; never served nor written."""
EXTENSIONS = ("creation", "creation-with-upload", "termination", "checksum", "expiration")
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
RECORD_VERSION = 1
DEFAULT_FILENAME = "upload"

# Checksum extension: algorithm -> digest size in bytes. The protocol requires sha1; md5 and
# sha256 are what clients commonly send.
CHECKSUM_SIZES = {"sha1": 20, "md5": 16, "sha256": 32}
CHECKSUM_ALGORITHMS = tuple(CHECKSUM_SIZES)

ID_BYTES = 24  # secrets.token_urlsafe(24): 192 random bits, 32 URL-safe characters
_ID = re.compile(r"[A-Za-z0-9_-]{32}")
_DIGITS = re.compile(r"[0-9]{1,19}")  # 19 digits: every value fits a signed 64-bit integer
# Upload-Metadata keys: no spaces or commas (tus 1.0.0 "Upload-Metadata"); we also ask for
# printable ASCII, which every known client sends.
_KEY = re.compile(r"[!-+\--~]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class TusRequestError(StreamerError, ValueError):
    """A tus request the server refuses; ``status`` is the HTTP status to answer with."""

    default_result = Result.INVALID_INPUT

    def __init__(self, message: str, *, status: int = 400, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status


def check_version(value: str | None) -> None:
    """Tus-Resumable must name 1.0.0 on every request but OPTIONS (412 otherwise)."""
    if value != TUS_VERSION:
        shown = "missing" if value is None else repr(value)
        raise TusRequestError(f"Tus-Resumable {shown}; this server speaks 1.0.0", status=412)


def parse_size(value: str | None, header: str) -> int:
    """A non-negative decimal integer (Upload-Length, Upload-Offset); 400 on anything else."""
    if value is None:
        raise TusRequestError(f"{header} is missing")
    if not _DIGITS.fullmatch(value):
        raise TusRequestError(f"{header} is not a non-negative integer: {value[:40]!r}")
    return int(value)


def parse_metadata(value: str) -> dict[str, bytes]:
    """Upload-Metadata: comma-separated pairs of a key and, after one space, a Base64 value.

    A key may stand alone (empty value). Empty or repeated keys and values that are not
    Base64 are refused (400). White space around the commas is tolerated: some clients
    join the pairs with ", ".
    """
    pairs: dict[str, bytes] = {}
    if not value.strip():
        return pairs
    for item in value.split(","):
        key, _, encoded = item.strip(" \t").partition(" ")
        if not _KEY.fullmatch(key):
            raise TusRequestError(f"Upload-Metadata has an invalid key: {key[:40]!r}")
        if key in pairs:
            raise TusRequestError(f"Upload-Metadata repeats the key {key!r}")
        pairs[key] = _decode_base64(encoded, key)
    return pairs


def _decode_base64(encoded: str, key: str) -> bytes:
    if not _BASE64.fullmatch(encoded) or len(encoded) % 4:
        raise TusRequestError(f"Upload-Metadata value of {key!r} is not Base64")
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise TusRequestError(f"Upload-Metadata value of {key!r} is not Base64") from None


def parse_checksum(value: str) -> tuple[str, bytes]:
    """Upload-Checksum: an algorithm name, one space, the Base64 digest of the PATCH body.

    An algorithm this server does not list in Tus-Checksum-Algorithm is a 400 (checksum
    extension), as is a digest that is not Base64 or has the wrong size for its algorithm.
    """
    algorithm, _, encoded = value.strip(" \t").partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_SIZES:
        supported = ",".join(CHECKSUM_ALGORITHMS)
        raise TusRequestError(f"Upload-Checksum algorithm {algorithm[:20]!r} not in {supported}")
    digest = _decode_base64(encoded, "Upload-Checksum")
    if len(digest) != CHECKSUM_SIZES[algorithm]:
        raise TusRequestError(
            f"Upload-Checksum: a {algorithm} digest has {CHECKSUM_SIZES[algorithm]} bytes, "
            f"got {len(digest)}"
        )
    return algorithm, digest


def is_offset_stream(content_type: str | None) -> bool:
    """Whether a Content-Type is application/offset+octet-stream (parameters ignored)."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == OFFSET_CONTENT_TYPE


def check_patch(*, stored: int, length: int, claimed: int, body: int | None) -> None:
    """The offset rules of a PATCH, after its Content-Type passed.

    409 when the client's Upload-Offset is not the server's (tus 1.0.0 PATCH); 413 when a
    declared body (Content-Length) would carry the upload past its Upload-Length.
    """
    if claimed != stored:
        raise TusRequestError(
            f"Upload-Offset {claimed} does not match the server's offset {stored}", status=409
        )
    if body is not None and stored + body > length:
        raise TusRequestError(
            f"a body of {body} bytes at offset {stored} passes Upload-Length {length}",
            status=413,
        )


def check_length(length: int, max_size: int | None) -> None:
    """Creation: an Upload-Length over Tus-Max-Size is refused with 413."""
    if max_size is not None and length > max_size:
        raise TusRequestError(
            f"Upload-Length {length} is over this server's Tus-Max-Size {max_size}", status=413
        )


def valid_id(text: str) -> bool:
    """Whether ``text`` has the shape of an upload id this server makes (so it is safe as a
    file name: no dots, no slashes)."""
    return _ID.fullmatch(text) is not None


def filename_from(metadata: dict[str, bytes]) -> str:
    """The safe base name an upload is published under: its ``filename`` metadata (UTF-8,
    undecodable bytes replaced), made safe by `safe_name`; `DEFAULT_FILENAME` without one."""
    raw = metadata.get("filename", b"").decode("utf-8", errors="replace")
    return safe_name(raw, DEFAULT_FILENAME)


def candidate_names(name: str, tries: int) -> Iterator[str]:
    """``name``, then ``stem-1.ext``, ``stem-2.ext``... (``tries`` names in all): a finished
    upload never replaces an existing file, it takes the first free one of these."""
    yield name
    stem, dot, ext = name.rpartition(".")
    if not (dot and stem):
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    for n in range(1, tries):
        yield safe_name(f"{stem}-{n}{suffix}", f"{DEFAULT_FILENAME}-{n}")


@dataclass(frozen=True)
class UploadRecord:
    """What the server keeps about one upload (JSON on disk, version `RECORD_VERSION`).

    ``offset`` is the count of bytes durably in the data file; ``published`` is the path
    (relative to the served directory) the finished file was given, None until then.
    """

    id: str
    length: int
    offset: int = 0
    metadata: str = ""
    expires: float | None = None
    published: str | None = None

    @property
    def complete(self) -> bool:
        return self.offset == self.length

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def advanced(self, offset: int) -> UploadRecord:
        return dataclasses.replace(self, offset=offset)

    def to_json(self) -> str:
        return json.dumps({"version": RECORD_VERSION, **dataclasses.asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> UploadRecord:
        """Parse a record; a corrupt one or one from another version is a `TusRequestError`
        with status 404: the upload is unknown to this server."""
        try:
            data = json.loads(text)
            if data.pop("version") != RECORD_VERSION:
                raise ValueError("another record version")
            record = cls(**data)
            _check_record(record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise TusRequestError(f"upload record unreadable: {exc}", status=404) from None
        return record


def _check_record(record: UploadRecord) -> None:
    ints_ok = all(
        isinstance(v, int) and not isinstance(v, bool) for v in (record.length, record.offset)
    )
    if not (ints_ok and 0 <= record.offset <= record.length and valid_id(record.id)):
        raise ValueError("fields out of range")
    if not isinstance(record.metadata, str):
        raise ValueError("metadata is not a string")
    if record.expires is not None and not isinstance(record.expires, int | float):
        raise ValueError("expires is not a number")
    if record.published is not None and not isinstance(record.published, str):
        raise ValueError("published is not a string")


__all__ = [
    "CHECKSUM_ALGORITHMS",
    "CHECKSUM_SIZES",
    "DEFAULT_FILENAME",
    "EXTENSIONS",
    "ID_BYTES",
    "OFFSET_CONTENT_TYPE",
    "RECORD_VERSION",
    "TUS_DIR",
    "TUS_VERSION",
    "TusRequestError",
    "UploadRecord",
    "candidate_names",
    "check_length",
    "check_patch",
    "check_version",
    "filename_from",
    "is_offset_stream",
    "parse_checksum",
    "parse_metadata",
    "parse_size",
    "valid_id",
]
