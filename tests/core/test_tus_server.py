"""Tests for streamer.core.tus_server: the tus 1.0.0 server's header rules, checks and record."""

from __future__ import annotations

import base64
import hashlib
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.tus_server import (
    CHECKSUM_ALGORITHMS,
    RECORD_VERSION,
    TusRequestError,
    UploadRecord,
    candidate_names,
    check_length,
    check_patch,
    check_version,
    filename_from,
    is_offset_stream,
    parse_checksum,
    parse_metadata,
    parse_size,
    valid_id,
)
from streamer.errors import Result

UID = "A" * 31 + "_"
# The example of the tus 1.0.0 text: a file name and a key without a value.
SPEC_METADATA = "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _status(exc: pytest.ExceptionInfo[TusRequestError]) -> int:
    return exc.value.status


# --- Tus-Resumable ------------------------------------------------------------------------------


def test_version_1_0_0_passes() -> None:
    """Tus-Resumable: 1.0.0 is the one version accepted."""
    check_version("1.0.0")


@pytest.mark.parametrize("value", [None, "", "1.0", "0.2.2", "1.0.0 ", "1.0.1"])
def test_other_versions_are_412(value: str | None) -> None:
    """A missing or other Tus-Resumable is 412 Precondition Failed."""
    with pytest.raises(TusRequestError) as exc:
        check_version(value)
    assert _status(exc) == 412
    assert exc.value.result is Result.INVALID_INPUT


# --- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("42", 42), ("0042", 42)])
def test_sizes_parse(text: str, value: int) -> None:
    """Upload-Length and Upload-Offset are decimal digits."""
    assert parse_size(text, "Upload-Length") == value


@pytest.mark.parametrize("text", [None, "", "-1", "+1", " 1", "1 ", "1.0", "0x10", "1e3", "٣"])
def test_bad_sizes_are_400(text: str | None) -> None:
    """Anything but ASCII digits (no sign, space or non-ASCII digit) is 400."""
    with pytest.raises(TusRequestError) as exc:
        parse_size(text, "Upload-Offset")
    assert _status(exc) == 400
    assert "Upload-Offset" in str(exc.value)


def test_size_of_20_digits_is_refused() -> None:
    """A size past 19 digits (beyond a signed 64-bit integer) is refused, not parsed."""
    parse_size("9" * 19, "Upload-Length")
    with pytest.raises(TusRequestError):
        parse_size("1" + "0" * 19, "Upload-Length")


# --- Upload-Metadata ----------------------------------------------------------------------------


def test_metadata_of_the_spec_example() -> None:
    """The spec's example: a Base64 file name and a key standing alone (empty value)."""
    assert parse_metadata(SPEC_METADATA) == {
        "filename": b"world_domination_plan.pdf",
        "is_confidential": b"",
    }


def test_metadata_tolerates_space_after_commas_and_empty_header() -> None:
    """', ' between pairs is accepted; an empty header is no metadata."""
    assert parse_metadata("a YQ==, b Yg==") == {"a": b"a", "b": b"b"}
    assert parse_metadata("") == {}
    assert parse_metadata("  ") == {}


@pytest.mark.parametrize(
    "value",
    [
        "a YQ==,a Yg==",  # repeated key
        ",a YQ==",  # empty key
        "a YQ==,",  # trailing comma: empty key
        "a YQ",  # not padded
        "a Y!==",  # not the Base64 alphabet
        "a YQ== x",  # a second space
        "ké YQ==",  # non-ASCII key
        "a\tb YQ==",  # control character in the key
    ],
)
def test_bad_metadata_is_400(value: str) -> None:
    """Empty, repeated or non-ASCII keys and values that are not Base64 are 400."""
    with pytest.raises(TusRequestError) as exc:
        parse_metadata(value)
    assert _status(exc) == 400


def test_metadata_prefixes_byte_by_byte() -> None:
    """Every prefix of a valid header parses or is refused as a TusRequestError, nothing else."""
    header = "filename " + _b64("résumé.pdf".encode()) + ",k,type dGV4dC9wbGFpbg=="
    keys = ("filename", "k", "type")
    for end in range(len(header) + 1):
        try:
            parsed = parse_metadata(header[:end])
        except TusRequestError as exc:
            assert exc.status == 400
        else:
            assert all(any(k.startswith(p) for k in keys) for p in parsed)
    assert parse_metadata(header)["filename"] == "résumé.pdf".encode()


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.binary(max_size=40)))
def test_metadata_round_trips(pairs: dict[str, bytes]) -> None:
    """Any keys and byte values encoded as a client would are decoded back exactly."""
    header = ",".join(f"{k} {_b64(v)}".rstrip() for k, v in pairs.items())
    assert parse_metadata(header) == pairs


# --- Upload-Checksum ----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", CHECKSUM_ALGORITHMS)
def test_checksum_header_of_each_algorithm(algorithm: str) -> None:
    """'ALGO BASE64' parses to the algorithm and the raw digest, for sha1, md5 and sha256."""
    digest = hashlib.new(algorithm, b"body").digest()
    assert parse_checksum(f"{algorithm} {_b64(digest)}") == (algorithm, digest)
    assert parse_checksum(f"{algorithm.upper()} {_b64(digest)}") == (algorithm, digest)


@pytest.mark.parametrize(
    "value",
    [
        "crc32 AAAAAA==",  # not listed in Tus-Checksum-Algorithm
        "sha512 " + _b64(hashlib.sha512(b"").digest()),
        "sha1 " + _b64(hashlib.sha256(b"").digest()),  # wrong size for sha1
        "sha1",  # no digest
        "sha1 " + hashlib.sha1(b"").hexdigest(),  # hex, not Base64
    ],
)
def test_bad_checksum_headers_are_400(value: str) -> None:
    """An unsupported algorithm, a missing, non-Base64 or wrongly sized digest is 400."""
    with pytest.raises(TusRequestError) as exc:
        parse_checksum(value)
    assert _status(exc) == 400


# --- PATCH checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "application/offset+octet-stream",
        "Application/Offset+Octet-Stream",
        "application/offset+octet-stream; charset=x",
    ],
)
def test_offset_stream_content_type(value: str) -> None:
    """application/offset+octet-stream in any case, parameters ignored, is the PATCH type."""
    assert is_offset_stream(value)


@pytest.mark.parametrize("value", [None, "", "application/octet-stream", "text/plain"])
def test_other_content_types_are_not_offset_streams(value: str | None) -> None:
    """Any other media type, or none, is not (the server answers 415)."""
    assert not is_offset_stream(value)


def test_patch_at_the_stored_offset_passes() -> None:
    """A PATCH at the server's offset whose body fits the length passes; no body is fine."""
    check_patch(stored=5, length=10, claimed=5, body=5)
    check_patch(stored=5, length=10, claimed=5, body=None)
    check_patch(stored=10, length=10, claimed=10, body=0)


@pytest.mark.parametrize("claimed", [0, 4, 6, 10])
def test_patch_at_another_offset_is_409(claimed: int) -> None:
    """Upload-Offset other than the stored one is 409 Conflict, naming both numbers."""
    with pytest.raises(TusRequestError) as exc:
        check_patch(stored=5, length=10, claimed=claimed, body=1)
    assert _status(exc) == 409
    assert f"{claimed} does not match the server's offset 5" in str(exc.value)


def test_patch_past_the_length_is_413() -> None:
    """A declared body that would pass Upload-Length is 413."""
    with pytest.raises(TusRequestError) as exc:
        check_patch(stored=5, length=10, claimed=5, body=6)
    assert _status(exc) == 413


def test_length_over_max_size_is_413() -> None:
    """Creation over Tus-Max-Size is 413; at it, or with no maximum, it passes."""
    check_length(100, 100)
    check_length(1 << 62, None)
    with pytest.raises(TusRequestError) as exc:
        check_length(101, 100)
    assert _status(exc) == 413


# --- ids and names ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "a" * 31, "a" * 33, "../" + "a" * 29, "a" * 31 + "."])
def test_only_server_shaped_ids_are_valid(text: str) -> None:
    """Only 32 URL-safe characters are an id: no dots or slashes ever reach a path."""
    assert not valid_id(text)
    assert valid_id(UID)


@pytest.mark.parametrize(
    ("metadata", "name"),
    [
        ({"filename": b"report.pdf"}, "report.pdf"),
        ({"filename": b"../../etc/passwd"}, "passwd"),
        ({"filename": b"..\\..\\win.ini"}, "win.ini"),
        ({"filename": b".bashrc"}, "bashrc"),
        ({"filename": b".."}, "upload"),
        ({"filename": b"\xff\xfe"}, "\ufffd\ufffd"),
        ({}, "upload"),
    ],
)
def test_filename_from_metadata_is_one_safe_component(
    metadata: dict[str, bytes], name: str
) -> None:
    """The published name is the metadata filename made safe: no directory, not hidden."""
    assert filename_from(metadata) == name


def test_candidate_names_add_a_number_before_the_extension() -> None:
    """A taken name is followed by stem-1.ext, stem-2.ext...; no extension: name-1."""
    assert list(candidate_names("a.tar.gz", 3)) == ["a.tar.gz", "a.tar-1.gz", "a.tar-2.gz"]
    assert list(candidate_names("README", 2)) == ["README", "README-1"]
    long = "x" * 250 + ".bin"
    assert all(len(n.encode()) <= 255 for n in candidate_names(long, 20))


# --- the record ---------------------------------------------------------------------------------


def test_record_round_trips_with_its_version() -> None:
    """A record written as JSON carries its version and reads back equal."""
    record = UploadRecord(UID, 10, 4, SPEC_METADATA, expires=1.5e9, published=None)
    text = record.to_json()
    assert f'"version": {RECORD_VERSION}' in text
    assert UploadRecord.from_json(text) == record
    assert UploadRecord.from_json(record.advanced(10).to_json()).complete


def test_record_expiry() -> None:
    """An upload expires at its time, not before; one without a time never does."""
    record = UploadRecord(UID, 1, expires=100.0)
    assert not record.expired(99.9)
    assert record.expired(100.0)
    assert not UploadRecord(UID, 1).expired(1e12)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"version": 2, "id": "ID", "length": 1}'.replace("ID", UID),
        '{"id": "ID", "length": 1}'.replace("ID", UID),
        '{"version": 1, "id": "../x", "length": 1}',
        '{"version": 1, "id": "ID", "length": 1, "offset": 2}'.replace("ID", UID),
        '{"version": 1, "id": "ID", "length": true}'.replace("ID", UID),
        '{"version": 1, "id": "ID", "length": 1, "extra": 0}'.replace("ID", UID),
        '{"version": 1, "id": "ID", "length": 1, "metadata": 5}'.replace("ID", UID),
    ],
)
def test_corrupt_or_future_records_are_unknown_uploads(text: str) -> None:
    """A record that is corrupt, of another version or out of range reads as 404 (unknown)."""
    with pytest.raises(TusRequestError) as exc:
        UploadRecord.from_json(text)
    assert _status(exc) == 404


def test_record_prefixes_byte_by_byte() -> None:
    """Every cut of a record's JSON is refused cleanly; only the whole parses."""
    text = UploadRecord(UID, 10, 3, "a YQ==").to_json()
    for end in range(len(text)):
        with pytest.raises(TusRequestError):
            UploadRecord.from_json(text[:end])


def test_request_error_pickles_with_its_status() -> None:
    """The error crosses process boundaries with its status and result."""
    err = pickle.loads(pickle.dumps(TusRequestError("x", status=460)))
    assert (err.status, err.result) == (460, Result.INVALID_INPUT)
