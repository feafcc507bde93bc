"""S3 without I/O: s3:// URLs, endpoint and region, part plans, and the XML of the multipart API.

Everything here is a pure function of its arguments (the environment is passed in as a
mapping), so each rule is tested byte by byte. The signing itself is botocore's
(`streamer.http.s3sign`); the requests are sent by `streamer.transfer.s3`.

XML answers are parsed with the stdlib's ElementTree after refusing any document type
declaration: S3 answers never carry one, and refusing them closes the door on entity
expansion ("billion laughs") and external entities before the parser sees a byte.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from ..errors import ProtocolError, UsageError
from .wire import is_s3_url

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

DEFAULT_REGION = "us-east-1"
DEFAULT_PART_SIZE = 16 << 20
# The limits of the multipart API (Amazon S3 User Guide, "Multipart upload limits").
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 << 20
MAX_PART_SIZE = 5 << 30
EXTRA = "streamer[s3]"

# Bucket names: 3-63 lower-case letters, digits, dots and hyphens (S3 naming rules).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_url(url: str) -> S3Location:
    """``s3://BUCKET/KEY`` → S3Location; anything else (no key, bad bucket) is a UsageError."""
    if not is_s3_url(url):
        raise UsageError(f"not an s3:// URL: {url!r}")
    bucket, sep, key = url[5:].partition("/")
    if not sep or not key:
        raise UsageError("give s3://BUCKET/KEY (the key is missing)", url=url)
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise UsageError(f"{bucket!r} is not a valid bucket name", url=url)
    return S3Location(bucket, key)


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: the base URL, and whether the bucket is in the path or the host."""

    url: str
    region: str
    path_style: bool

    def object_url(self, loc: S3Location, query: str = "") -> str:
        # The key is sent percent-encoded except for "/" (each segment is one path segment);
        # "~" stays as is, as SigV4's canonical URI expects (RFC 3986 2.3 unreserved).
        key = quote(loc.key, safe="/~")
        parts = urlsplit(self.url)
        if self.path_style:
            base = f"{self.url.rstrip('/')}/{loc.bucket}/{key}"
        else:
            base = f"{parts.scheme}://{loc.bucket}.{parts.netloc}/{key}"
        return f"{base}?{query}" if query else base

    def bucket_url(self, bucket: str) -> str:
        if self.path_style:
            return f"{self.url.rstrip('/')}/{bucket}"
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{bucket}.{parts.netloc}/"


def resolve_endpoint(
    endpoint_url: str | None, region: str | None, env: Mapping[str, str], bucket: str = ""
) -> Endpoint:
    """The endpoint from the argument, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else
    AWS itself; the region from the argument, AWS_REGION, AWS_DEFAULT_REGION or us-east-1.

    A custom endpoint is addressed path-style (a local store has no DNS per bucket); AWS is
    addressed virtual-hosted style, except for bucket names with dots, which would not match
    the wildcard certificate.
    """
    name = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    url = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"bad S3 endpoint {url!r}: give http(s)://HOST[:PORT]")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise UsageError("an S3 endpoint URL has no query, fragment or credentials")
        return Endpoint(url.rstrip("/"), name, path_style=True)
    return Endpoint(f"https://s3.{name}.amazonaws.com", name, path_style="." in bucket)


@dataclass(frozen=True)
class Credentials:
    """An access key pair (and session token). The secret never appears in a repr."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def resolve_credentials(
    access_key: str | None,
    secret_key: str | None,
    session_token: str | None,
    env: Mapping[str, str],
) -> Credentials:
    """The arguments, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN."""
    access = access_key or env.get("AWS_ACCESS_KEY_ID")
    secret = secret_key or env.get("AWS_SECRET_ACCESS_KEY")
    token = session_token or env.get("AWS_SESSION_TOKEN") or None
    if not access or not secret:
        raise UsageError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(and AWS_SESSION_TOKEN for temporary credentials)"
        )
    return Credentials(access, secret, token)


@dataclass(frozen=True)
class Part:
    """Part `number` (1-based) is bytes ``[offset, offset + length)`` of the file."""

    number: int
    offset: int
    length: int


def choose_part_size(size: int, part_size: int = DEFAULT_PART_SIZE) -> int:
    """The part size asked for, grown (in whole MiB) until the file fits in 10,000 parts."""
    if part_size < MIN_PART_SIZE or part_size > MAX_PART_SIZE:
        raise UsageError(f"the part size must be between 5 MiB and 5 GiB, not {part_size} bytes")
    if size > MAX_PARTS * MAX_PART_SIZE:
        raise UsageError(f"{size} bytes is more than S3's largest object (10,000 parts of 5 GiB)")
    if math.ceil(size / part_size) > MAX_PARTS:
        needed = math.ceil(size / MAX_PARTS)
        part_size = min(MAX_PART_SIZE, math.ceil(needed / (1 << 20)) << 20)
    return part_size


def plan_parts(size: int, part_size: int) -> list[Part]:
    """The parts that cover `size` bytes exactly; an empty file is one empty part."""
    if part_size <= 0:
        raise UsageError(f"the part size must be > 0, not {part_size}")
    count = max(1, math.ceil(size / part_size))
    return [Part(n + 1, n * part_size, min(part_size, size - n * part_size)) for n in range(count)]


@dataclass(frozen=True)
class PresignedPlan:
    part_size: int
    urls: tuple[str, ...]  # part k's URL is urls[k - 1]
    complete_url: str | None

    def parts(self, size: int) -> list[Part]:
        return plan_parts(size, self.part_size)


def check_presigned_plan(doc: Any, size: int) -> PresignedPlan:
    """A plan ``{"part_size": N, "parts": [{"part_number": k, "url": U}], "complete_url": U}``
    checked against the file: its parts must be numbered 1..n and cover `size` bytes exactly."""
    if not isinstance(doc, Mapping):
        raise UsageError("the presigned plan must be a JSON object")
    part_size = doc.get("part_size")
    if not isinstance(part_size, int) or isinstance(part_size, bool) or part_size <= 0:
        raise UsageError("the presigned plan needs a positive integer part_size")
    entries = doc.get("parts")
    if not isinstance(entries, list) or not entries:
        raise UsageError("the presigned plan needs a non-empty list of parts")
    urls: dict[int, str] = {}
    for entry in entries:
        number = entry.get("part_number") if isinstance(entry, Mapping) else None
        url = entry.get("url") if isinstance(entry, Mapping) else None
        if not isinstance(number, int) or not isinstance(url, str) or number in urls:
            raise UsageError("each plan part needs a distinct part_number and a url")
        _check_http(url)
        urls[number] = url
    expected = len(plan_parts(size, part_size))
    if sorted(urls) != list(range(1, len(urls) + 1)) or len(urls) != expected:
        raise UsageError(
            f"the plan's {len(urls)} parts of {part_size} bytes do not cover the file's "
            f"{size} bytes ({expected} parts needed, numbered from 1)"
        )
    complete = doc.get("complete_url")
    if complete is not None:
        if not isinstance(complete, str):
            raise UsageError("the plan's complete_url must be a string")
        _check_http(complete)
    return PresignedPlan(part_size, tuple(urls[k] for k in sorted(urls)), complete)


def plan_identity(plan: PresignedPlan) -> str:
    """A SHA-256 naming the upload a plan feeds, safe to store: its part size and its URLs
    without their signature parameters (X-Amz-*, the SigV4 query authentication), so that
    the same upload's plan signed anew (fresh expiry) has the same identity, and no
    signature ever reaches a file."""
    urls = [_unsigned(u) for u in plan.urls]
    complete = None if plan.complete_url is None else _unsigned(plan.complete_url)
    doc = {"part_size": plan.part_size, "urls": urls, "complete_url": complete}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _unsigned(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, True) if not k.lower().startswith("x-amz-")]
    return parts._replace(query=urlencode(sorted(query)), fragment="").geturl()


def _check_http(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError("a presigned plan's URLs must be http(s) URLs")


def complete_xml(parts: Sequence[tuple[int, str]]) -> bytes:
    """The CompleteMultipartUpload request body, parts in ascending order."""
    body = ["<CompleteMultipartUpload>"]
    for number, etag in sorted(parts):
        body.append(f"<Part><PartNumber>{number}</PartNumber><ETag>{_escape(etag)}</ETag></Part>")
    body.append("</CompleteMultipartUpload>")
    return "".join(body).encode("utf-8")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- answers ------------------------------------------------------------------------------


def parse_xml(body: bytes) -> ET.Element:
    """The root element of an S3 answer; a DTD, entity or unparsable body is a ProtocolError."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise ProtocolError("refusing an S3 answer with a document type declaration")
    import xml.etree.ElementTree as ET  # only S3 answers need it: not `get`'s start-up

    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise ProtocolError(f"the S3 answer is not XML ({exc})") from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def s3_error(body: bytes) -> tuple[str, str] | None:
    """(Code, Message) of an ``<Error>`` answer, or None when the body is not one."""
    try:
        root = parse_xml(body)
    except ProtocolError:
        return None
    if _local(root.tag) != "Error":
        return None
    return _child(root, "Code") or "", _child(root, "Message") or ""


def parse_upload_id(body: bytes) -> str:
    """The UploadId of an InitiateMultipartUploadResult."""
    root = parse_xml(body)
    upload_id = (
        _child(root, "UploadId") if _local(root.tag) == "InitiateMultipartUploadResult" else None
    )
    if not upload_id:
        raise ProtocolError("the CreateMultipartUpload answer has no UploadId")
    return upload_id


@dataclass(frozen=True)
class ListedPart:
    number: int
    etag: str
    size: int


@dataclass(frozen=True)
class PartsPage:
    parts: tuple[ListedPart, ...]
    next_marker: int | None  # None: this was the last page


def parse_list_parts(body: bytes) -> PartsPage:
    """One page of a ListPartsResult; ``next_marker`` is set while IsTruncated is true."""
    root = parse_xml(body)
    if _local(root.tag) != "ListPartsResult":
        raise ProtocolError(f"expected ListPartsResult, got {_local(root.tag)}")
    parts = []
    for elem in root:
        if _local(elem.tag) != "Part":
            continue
        number, etag, size = (_child(elem, n) for n in ("PartNumber", "ETag", "Size"))
        if number is None or etag is None or size is None:
            raise ProtocolError("a listed part lacks its PartNumber, ETag or Size")
        parts.append(ListedPart(_int(number), etag, _int(size)))
    truncated = (_child(root, "IsTruncated") or "").strip().lower() == "true"
    marker = _child(root, "NextPartNumberMarker")
    if truncated and not marker:
        raise ProtocolError("a truncated ListParts answer has no NextPartNumberMarker")
    return PartsPage(tuple(parts), _int(marker) if truncated and marker else None)


def parse_complete(body: bytes) -> str:
    """The ETag of a CompleteMultipartUploadResult (S3 may answer 200 with an Error inside)."""
    root = parse_xml(body)
    if _local(root.tag) != "CompleteMultipartUploadResult":
        raise ProtocolError(f"CompleteMultipartUpload answered {_local(root.tag)}")
    return _child(root, "ETag") or ""


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ProtocolError(f"not a number in an S3 answer: {text[:40]!r}") from None
