"""tus 1.0.0 (https://tus.io/protocols/resumable-upload), the client's decisions, without I/O.

Header values in, values and decisions out: the metadata encoding of the creation extension,
the parsing of the protocol's headers, whether an answer speaks tus 1.0.0 at all, which bytes
the next PATCH carries, and the key under which an upload is remembered. The loop that sends
the requests lives in `streamer.transfer.tus`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin

from streamer.errors import ProtocolError, UsageError

TUS_VERSION = "1.0.0"
# tus 1.0.0 "PATCH": the body of every PATCH has this media type.
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
# Fields a tus client cannot leave out (tus 1.0.0 "Headers"), by lower-case name: -H cannot
# remove them (core.headers.refuse_omitting).
TUS_NEEDS = {
    "tus-resumable": "every tus request but OPTIONS carries it (tus 1.0.0)",
    "content-type": f"a PATCH body must be {OFFSET_CONTENT_TYPE} (tus 1.0.0)",
    "upload-offset": "a PATCH says where its bytes go (tus 1.0.0)",
    "upload-length": "the creation POST says the upload's size (tus 1.0.0 creation)",
}
# tus 1.0.0 "Checksum": the algorithms streamer can compute (hashlib names, as the spec's
# registry spells them).
CHECKSUM_ALGORITHMS: tuple[str, ...] = ("sha1", "md5", "sha256")
# At most this many digits in an offset or length: 10**18 bytes is beyond any disk, and huge
# strings never reach int().
_MAX_DIGITS = 18


def _is_key_char(c: str) -> bool:
    # "The key MUST NOT contain spaces and commas and MUST NOT be empty. The key SHOULD be ASCII
    # encoded" (tus 1.0.0, Upload-Metadata): streamer insists on visible ASCII, so a key never
    # carries a control character into a header either.
    return "!" <= c <= "~" and c != ","


def check_metadata_key(key: str) -> str:
    """`key` if it can be an Upload-Metadata key; UsageError naming it otherwise."""
    if not key or not all(_is_key_char(c) for c in key):
        raise UsageError(
            f"bad metadata key {key!r}: it must be non-empty visible ASCII without commas"
        )
    return key


def encode_metadata(pairs: Iterable[tuple[str, str]]) -> str:
    """The Upload-Metadata value: ``key base64(value)`` pairs joined by commas, in order.

    tus 1.0.0 (creation, Upload-Metadata): values are Base64 of their bytes (UTF-8 here), keys
    unique. An empty value is sent as the key alone, as the spec allows.
    """
    seen: set[str] = set()
    out: list[str] = []
    for key, value in pairs:
        check_metadata_key(key)
        if key in seen:
            raise UsageError(f"metadata key {key!r} given twice")
        seen.add(key)
        encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
        out.append(f"{key} {encoded}" if encoded else key)
    return ",".join(out)


def decode_metadata(value: str) -> dict[str, str]:
    """The pairs of an Upload-Metadata value (the inverse of `encode_metadata`)."""
    out: dict[str, str] = {}
    for item in value.split(","):
        key, _, encoded = item.strip().partition(" ")
        check_metadata_key(key)
        try:
            out[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ProtocolError(f"bad Upload-Metadata value for {key!r}") from exc
    return out


def parse_meta_arg(text: str) -> tuple[str, str]:
    """``--meta KEY=VALUE`` as a pair (the value may be empty or contain '=')."""
    key, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"bad --meta {text!r}: expected KEY=VALUE")
    return check_metadata_key(key), value


def parse_count(value: str | None) -> int | None:
    """Upload-Offset / Upload-Length / Tus-Max-Size: a non-negative decimal integer, or None
    when the header is missing or not one (tus 1.0.0: "MUST be a non-negative integer")."""
    if value is None:
        return None
    value = value.strip(" \t")
    if not value or len(value) > _MAX_DIGITS or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def parse_list(value: str | None) -> tuple[str, ...]:
    """Tus-Version, Tus-Extension, Tus-Checksum-Algorithm: a comma-separated list, in order."""
    if value is None:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


def speaks_tus(headers: Mapping[str, str]) -> bool:
    """Whether an answer is from a tus 1.0.0 server: ``Tus-Resumable: 1.0.0`` (every answer but
    OPTIONS carries it), or for OPTIONS a Tus-Version list naming 1.0.0."""
    if headers.get("Tus-Resumable", "").strip() == TUS_VERSION:
        return True
    return TUS_VERSION in parse_list(headers.get("Tus-Version"))


@dataclass(frozen=True)
class ServerInfo:
    """What OPTIONS said: the extensions, the checksum algorithms, the largest upload."""

    extensions: frozenset[str] = frozenset()
    checksum_algorithms: tuple[str, ...] = ()
    max_size: int | None = None


def server_info(headers: Mapping[str, str]) -> ServerInfo:
    return ServerInfo(
        extensions=frozenset(e.lower() for e in parse_list(headers.get("Tus-Extension"))),
        checksum_algorithms=tuple(
            a.lower() for a in parse_list(headers.get("Tus-Checksum-Algorithm"))
        ),
        max_size=parse_count(headers.get("Tus-Max-Size")),
    )


def check_checksum_support(info: ServerInfo, algorithm: str) -> None:
    """Refuse a checksum the server did not offer (tus 1.0.0, Checksum: a server that lacks
    it ignores Upload-Checksum, so the digest would protect nothing)."""
    if "checksum" not in info.extensions:
        raise UsageError("the server does not offer the tus checksum extension")
    if algorithm not in info.checksum_algorithms:
        offered = ", ".join(info.checksum_algorithms) or "none"
        raise UsageError(f"the server does not offer checksum {algorithm} (offered: {offered})")


def check_algorithm(algorithm: str) -> str:
    name = algorithm.strip().lower()
    if name not in CHECKSUM_ALGORITHMS:
        raise UsageError(
            f"unknown tus checksum {algorithm!r} (supported: {', '.join(CHECKSUM_ALGORITHMS)})"
        )
    return name


def checksum_header(algorithm: str, digest: bytes) -> str:
    """Upload-Checksum: the algorithm, a space, and the Base64 of the raw digest."""
    return f"{algorithm} {base64.b64encode(digest).decode('ascii')}"


def upload_url(endpoint: str, location: str | None) -> str | None:
    """The upload's URL from the creation answer's Location (may be relative, RFC 9110 10.2.2)."""
    if location is None or not location.strip():
        return None
    return urljoin(endpoint, location.strip())


def next_chunk(offset: int, size: int, chunk_size: int | None) -> int:
    """How many bytes the PATCH at `offset` carries: the rest, or at most `chunk_size`."""
    if not 0 <= offset <= size:
        raise ValueError(f"offset {offset} outside 0..{size}")
    rest = size - offset
    return rest if chunk_size is None else min(rest, chunk_size)


def check_offset(offset: int | None, size: int, url: str) -> int:
    """An offset the server reported (HEAD or PATCH answer), which must lie in 0..size."""
    if offset is None:
        raise ProtocolError("the tus answer has no valid Upload-Offset", url=url)
    if offset > size:
        raise ProtocolError(f"the server reports offset {offset} past the size {size}", url=url)
    return offset


# The record of a remembered upload; a future version is not trusted (a new upload is made).
STATE_VERSION = 1


def state_key(endpoint: str, path: str) -> dict[str, str]:
    """The key of a remembered upload: the creation endpoint and the file's absolute path.

    The size and mtime the upload began with are kept in the record, not the key, so that a
    changed file is noticed (and said) rather than silently missing its record.
    """
    return {"endpoint": endpoint, "path": path}


def state_record(url: str, size: int, mtime_ns: int) -> dict[str, str | int]:
    return {"version": STATE_VERSION, "url": url, "size": size, "mtime_ns": mtime_ns}


def resume_url(record: Mapping[str, object], size: int, mtime_ns: int) -> tuple[str | None, str]:
    """The upload URL to resume from a record, or None and why it cannot be resumed."""
    version = record.get("version")
    if not isinstance(version, int) or version > STATE_VERSION:
        return (
            None,
            f"the remembered upload is from a future version ({version!r}); starting a new upload",
        )
    url = record.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None, "the remembered upload has no valid URL; starting a new upload"
    if record.get("size") != size or record.get("mtime_ns") != mtime_ns:
        return (
            None,
            "the file changed since the upload began (size or mtime); starting a new upload",
        )
    return url, ""


__all__ = [
    "CHECKSUM_ALGORITHMS",
    "OFFSET_CONTENT_TYPE",
    "STATE_VERSION",
    "TUS_NEEDS",
    "TUS_VERSION",
    "ServerInfo",
    "check_algorithm",
    "check_checksum_support",
    "check_metadata_key",
    "check_offset",
    "checksum_header",
    "decode_metadata",
    "encode_metadata",
    "next_chunk",
    "parse_count",
    "parse_list",
    "parse_meta_arg",
    "resume_url",
    "server_info",
    "speaks_tus",
    "state_key",
    "state_record",
    "upload_url",
]
