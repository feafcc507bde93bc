"""streamer.core.s3: s3:// URLs, endpoint and region, credentials, part plans, presigned plan
checks, and the multipart API's XML, byte by byte."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from streamer.core.s3 import (
    Credentials,
    ListedPart,
    Part,
    S3Location,
    check_presigned_plan,
    choose_part_size,
    complete_xml,
    parse_complete,
    parse_list_parts,
    parse_s3_url,
    parse_upload_id,
    plan_parts,
    resolve_credentials,
    resolve_endpoint,
    s3_error,
)
from streamer.errors import ProtocolError, UsageError

MIB = 1 << 20
NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def test_parse_s3_url() -> None:
    """s3://BUCKET/KEY keeps the key exactly (slashes, spaces); no key or a bad bucket fails."""
    assert parse_s3_url("s3://my-bucket/a/b c.bin") == S3Location("my-bucket", "a/b c.bin")
    assert str(parse_s3_url("S3://b.k-1/x/")) == "s3://b.k-1/x/"
    for bad in ("s3://bucket", "s3://bucket/", "s3://Bad_Bucket/k", "s3://ab/k", "http://b/k"):
        with pytest.raises(UsageError):
            parse_s3_url(bad)


def test_endpoint_and_region_resolution() -> None:
    """--endpoint-url beats AWS_ENDPOINT_URL_S3 beats AWS_ENDPOINT_URL; a custom endpoint is
    path-style; AWS itself is virtual-hosted; region: argument, AWS_REGION, AWS_DEFAULT_REGION,
    us-east-1."""
    env = {"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "http://s3:2/"}
    assert resolve_endpoint(None, None, env).url == "http://s3:2"
    assert resolve_endpoint("http://x:3", None, env).url == "http://x:3"
    assert resolve_endpoint(None, None, {"AWS_ENDPOINT_URL": "http://a:1"}).url == "http://a:1"
    ep = resolve_endpoint(None, None, env)
    assert (ep.path_style, ep.region) == (True, "us-east-1")
    loc = S3Location("bkt", "dir/a b~+.bin")
    assert ep.object_url(loc, "uploads") == "http://s3:2/bkt/dir/a%20b~%2B.bin?uploads"
    aws = resolve_endpoint(None, None, {"AWS_DEFAULT_REGION": "eu-west-1"})
    assert aws.object_url(loc) == "https://bkt.s3.eu-west-1.amazonaws.com/dir/a%20b~%2B.bin"
    assert resolve_endpoint(None, "ap-1", {"AWS_REGION": "x"}).region == "ap-1"
    assert (
        resolve_endpoint(None, None, {"AWS_REGION": "r1", "AWS_DEFAULT_REGION": "r2"}).region
        == "r1"
    )
    assert resolve_endpoint(None, None, {}, bucket="dotted.name").path_style
    for bad in ("ftp://h", "http://", "http://u:p@h", "http://h/?q=1"):
        with pytest.raises(UsageError):
            resolve_endpoint(bad, None, {})


def test_credentials_from_arguments_or_environment() -> None:
    """Arguments first, then AWS_*; a missing half is a UsageError; the repr hides secrets."""
    env = {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "T"}
    assert resolve_credentials(None, None, None, env) == Credentials("AK", "SK", "T")
    assert resolve_credentials("a", "s", None, {}) == Credentials("a", "s", None)
    assert "SK" not in repr(resolve_credentials(None, None, None, env))
    for partial in ({"AWS_ACCESS_KEY_ID": "AK"}, {"AWS_SECRET_ACCESS_KEY": "SK"}, {}):
        with pytest.raises(UsageError, match="AWS_ACCESS_KEY_ID"):
            resolve_credentials(None, None, None, partial)


def test_part_plan_covers_the_file_exactly() -> None:
    """Parts are [(k-1)*size, k*size), the last one short; an empty file is one empty part."""
    assert plan_parts(10, 4) == [Part(1, 0, 4), Part(2, 4, 4), Part(3, 8, 2)]
    assert plan_parts(8, 4) == [Part(1, 0, 4), Part(2, 4, 4)]
    assert plan_parts(0, 4) == [Part(1, 0, 0)]
    for size in (1, 16 * MIB - 1, 16 * MIB, 16 * MIB + 1, 100 * MIB + 7):
        parts = plan_parts(size, 16 * MIB)
        assert sum(p.length for p in parts) == size
        assert all(a.offset + a.length == b.offset for a, b in itertools.pairwise(parts))


def test_part_size_grows_to_stay_within_10000_parts() -> None:
    """16 MiB by default; grown in whole MiB so that no upload needs more than 10,000 parts;
    below 5 MiB or above 5 GiB is refused."""
    assert choose_part_size(1 << 30) == 16 * MIB
    assert choose_part_size(10_000 * 16 * MIB) == 16 * MIB
    grown = choose_part_size(10_000 * 16 * MIB + 1)
    assert grown == 17 * MIB and len(plan_parts(10_000 * 16 * MIB + 1, grown)) <= 10_000
    huge = 1 << 45  # 32 TiB
    assert len(plan_parts(huge, choose_part_size(huge))) <= 10_000
    for bad in (5 * MIB - 1, (5 << 30) + 1):
        with pytest.raises(UsageError):
            choose_part_size(100, bad)
    with pytest.raises(UsageError):
        choose_part_size(10_000 * (5 << 30) + 1)


def _plan(part_size: Any, count: int, **extra: Any) -> dict[str, Any]:
    parts = [{"part_number": n, "url": f"https://h/p?partNumber={n}"} for n in range(1, count + 1)]
    return {"part_size": part_size, "parts": parts, **extra}


def test_presigned_plan_checks() -> None:
    """A plan is accepted only when its parts, numbered 1..n, cover the file exactly."""
    plan = check_presigned_plan(_plan(4, 3, complete_url="https://h/c"), 10)
    assert (plan.part_size, len(plan.urls), plan.complete_url) == (4, 3, "https://h/c")
    assert plan.parts(10)[-1] == Part(3, 8, 2)
    shuffled = _plan(4, 3)
    shuffled["parts"].reverse()
    assert check_presigned_plan(shuffled, 9).urls[0].endswith("=1")
    bad_plans: list[tuple[Any, int]] = [
        (_plan(4, 2), 10),  # too few parts
        (_plan(4, 4), 10),  # one too many
        (_plan(5, 3), 10),  # the sizes do not add up
        (_plan(0, 3), 10),
        (_plan("4", 3), 10),
        (_plan(True, 3), 10),
        ({"part_size": 4, "parts": []}, 0),
        ([], 10),
        (_plan(4, 3, complete_url=7), 10),
        (_plan(4, 3, complete_url="file:///etc/passwd"), 10),
        ({"part_size": 4, "parts": [{"part_number": 1, "url": "ftp://h"}]}, 4),
        ({"part_size": 4, "parts": [{"part_number": 2, "url": "http://h"}]}, 4),
        ({"part_size": 4, "parts": [{"part_number": 1}]}, 4),
        ({"part_size": 4, "parts": [{"part_number": 1, "url": "http://h"}] * 2}, 8),
    ]
    for doc, size in bad_plans:
        with pytest.raises(UsageError):
            check_presigned_plan(doc, size)


def test_complete_xml_bytes() -> None:
    """The CompleteMultipartUpload body lists parts in ascending order, ETags escaped."""
    assert complete_xml([(2, '"b"'), (1, '"a&<"')]) == (
        b"<CompleteMultipartUpload>"
        b'<Part><PartNumber>1</PartNumber><ETag>"a&amp;&lt;"</ETag></Part>'
        b'<Part><PartNumber>2</PartNumber><ETag>"b"</ETag></Part>'
        b"</CompleteMultipartUpload>"
    )


def test_parse_answers() -> None:
    """UploadId, ListParts pages (with the marker while truncated), Complete's ETag, and the
    Code/Message of an <Error>, with or without the S3 namespace."""
    created = f"<?xml version='1.0'?><InitiateMultipartUploadResult {NS}><Bucket>b</Bucket>"
    assert (
        parse_upload_id(
            (created + "<UploadId>u-1</UploadId></InitiateMultipartUploadResult>").encode()
        )
        == "u-1"
    )
    page = (
        f"<ListPartsResult {NS}><IsTruncated>true</IsTruncated>"
        "<NextPartNumberMarker>2</NextPartNumberMarker>"
        '<Part><PartNumber>1</PartNumber><ETag>"e1"</ETag><Size>5</Size></Part>'
        '<Part><PartNumber>2</PartNumber><ETag>"e2"</ETag><Size>6</Size></Part>'
        "</ListPartsResult>"
    ).encode()
    parsed = parse_list_parts(page)
    assert parsed.parts == (ListedPart(1, '"e1"', 5), ListedPart(2, '"e2"', 6))
    assert parsed.next_marker == 2
    last = parse_list_parts(b"<ListPartsResult><IsTruncated>false</IsTruncated></ListPartsResult>")
    assert (last.parts, last.next_marker) == ((), None)
    done = f'<CompleteMultipartUploadResult {NS}><ETag>"x-2"</ETag></CompleteMultipartUploadResult>'
    assert parse_complete(done.encode()) == '"x-2"'
    err = b"<Error><Code>NoSuchUpload</Code><Message>gone</Message></Error>"
    assert s3_error(err) == ("NoSuchUpload", "gone")
    assert s3_error(b"not xml") is None
    assert s3_error(done.encode()) is None


def test_bad_answers_are_protocol_errors() -> None:
    """No UploadId, a part without its fields, a truncated page without a marker, a DTD or an
    entity (refused before parsing), or not XML at all: ProtocolError."""
    bombs = [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Error><Code>&a;</Code></Error>',
        b'<!doctype x SYSTEM "file:///etc/passwd"><x/>',
    ]
    for body in bombs:
        with pytest.raises(ProtocolError, match="document type"):
            parse_upload_id(body)
        assert s3_error(body) is None
    with pytest.raises(ProtocolError):
        parse_upload_id(b"<InitiateMultipartUploadResult></InitiateMultipartUploadResult>")
    with pytest.raises(ProtocolError):
        parse_upload_id(b"<Error><UploadId>u</UploadId></Error>")
    with pytest.raises(ProtocolError):
        parse_list_parts(
            b"<ListPartsResult><Part><PartNumber>1</PartNumber></Part></ListPartsResult>"
        )
    with pytest.raises(ProtocolError):
        parse_list_parts(b"<ListPartsResult><IsTruncated>true</IsTruncated></ListPartsResult>")
    with pytest.raises(ProtocolError):
        parse_list_parts(
            b"<ListPartsResult><Part><PartNumber>x</PartNumber><ETag>e</ETag><Size>1</Size></Part></ListPartsResult>"
        )
    with pytest.raises(ProtocolError):
        parse_complete(b"<Error><Code>InternalError</Code></Error>")
    with pytest.raises(ProtocolError):
        parse_list_parts(b"<ListPartsResult>")


def test_plan_identity_ignores_signatures_only() -> None:
    """A plan's identity is the same when its URLs are signed anew (other X-Amz-* values),
    differs for another upload or part size, and holds no part of a signature."""
    from streamer.core.s3 import check_presigned_plan, plan_identity

    def plan(upload: str, sig: str, part_size: int = 5) -> Any:
        q = f"uploadId={upload}&X-Amz-Date=2026{sig}&X-Amz-Signature={sig * 8}"
        return check_presigned_plan(
            {
                "part_size": part_size,
                "parts": [
                    {"part_number": n, "url": f"http://h/b/k?partNumber={n}&{q}"} for n in (1, 2)
                ],
                "complete_url": f"http://h/b/k?{q}",
            },
            8,
        )

    same = plan_identity(plan("U1", "aa"))
    assert plan_identity(plan("U1", "bb")) == same
    assert plan_identity(plan("U2", "aa")) != same
    assert plan_identity(plan("U1", "aa", part_size=4)) != same
    assert len(same) == 64 and "aa" * 8 not in same
