"""Resume state and decisions (streamer.core.resume): the sidecar, plan_request, judge_response."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.resume import (
    SIDECAR_KIND,
    SIDECAR_VERSION,
    Action,
    Plan,
    ResumeState,
    SidecarError,
    Verdict,
    dump_state,
    judge_response,
    load_state,
    plan_request,
    strong_validators,
    total_from_response,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sidecars"
URL = "https://example.org/disk.img"
ETAG = '"abc-123"'
LM = "Tue, 04 Mar 2025 10:00:00 GMT"
DATE_LATER = "Tue, 04 Mar 2025 10:01:00 GMT"  # exactly 60 s after LM: strong
DATE_SOON = "Tue, 04 Mar 2025 10:00:59 GMT"  # 59 s after LM: weak

STATE = ResumeState(url=URL, final_url=URL, etag=ETAG, last_modified=LM, total=1000, committed=400)


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dump_state(STATE))
    doc.update(changes)
    return doc


# --- the sidecar -----------------------------------------------------------------------------


def test_dump_writes_kind_version_and_every_field() -> None:
    """The sidecar is JSON tagged with our kind and the current version, holding every field."""
    doc = json.loads(dump_state(STATE))
    assert doc == {
        "kind": SIDECAR_KIND,
        "version": SIDECAR_VERSION,
        "url": URL,
        "final_url": URL,
        "etag": ETAG,
        "last_modified": LM,
        "total": 1000,
        "committed": 400,
        "checksum": None,
        "segments": None,
    }


_states = st.builds(
    ResumeState,
    url=st.text(),
    final_url=st.text(),
    etag=st.none() | st.text(),
    last_modified=st.none() | st.text(),
    total=st.none() | st.integers(0, 2**63),
    committed=st.integers(0, 2**63),
    checksum=st.none() | st.text(),
).map(lambda s: s if s.total is None else s.with_committed(min(s.committed, s.total)))


@given(state=_states)
def test_sidecar_round_trips(state: ResumeState) -> None:
    """Whatever state is dumped loads back equal (text or bytes), committed never above total."""
    assert load_state(dump_state(state)) == state
    assert load_state(dump_state(state).encode()) == state


@pytest.mark.parametrize(
    "text",
    [b"", b"not json", b"{", b"\xff\xfe\x00garbage", '{"kind": "streamer.partial", "ver'],
    ids=["empty", "text", "truncated", "binary", "cut-mid-key"],
)
def test_load_refuses_non_json(text: str | bytes) -> None:
    """A sidecar that is not JSON (empty, truncated, binary) is refused, never guessed at."""
    with pytest.raises(SidecarError, match="not JSON"):
        load_state(text)


@pytest.mark.parametrize(
    "doc",
    [[], "streamer.partial", 1, None, {}, _doc(kind="aria2.control"), _doc(kind=None)],
    ids=["list", "string", "number", "null", "empty", "other-kind", "no-kind"],
)
def test_load_refuses_json_of_another_kind(doc: Any) -> None:
    """JSON that is not a streamer sidecar (another program's, or no object) is refused."""
    with pytest.raises(SidecarError, match="not a streamer sidecar"):
        load_state(json.dumps(doc))


@pytest.mark.parametrize("version", [SIDECAR_VERSION + 1, 0, 99, None, "1", 1.0], ids=repr)
def test_load_refuses_future_or_unknown_version(version: Any) -> None:
    """A sidecar of a version we have no reader for (a newer streamer's) is refused."""
    doc = _doc(version=version)
    if version is None:
        del doc["version"]
    with pytest.raises(SidecarError, match="unsupported sidecar version"):
        load_state(json.dumps(doc))


@pytest.mark.parametrize(
    "changes",
    [
        {"url": None},
        {"url": 5},
        {"final_url": ["x"]},
        {"committed": "400"},
        {"committed": 400.0},
        {"committed": -1},
        {"committed": None},
        {"total": "1000"},
        {"total": 1000.5},
        {"total": -5, "committed": 0},
        {"etag": 7},
        {"last_modified": ["Tue"]},
        {"checksum": {"sha256": "x"}},
    ],
    ids=lambda c: ",".join(f"{k}={v!r}" for k, v in c.items()),
)
def test_load_refuses_wrong_types(changes: dict[str, Any]) -> None:
    """Every field must have its type: strings, non-negative integers, or null where allowed."""
    with pytest.raises(SidecarError):
        load_state(json.dumps(_doc(**changes)))


def test_load_refuses_boolean_version() -> None:
    """``"version": true`` is not version 1: a boolean is never a version number."""
    with pytest.raises(SidecarError, match="unsupported sidecar version"):
        load_state(json.dumps(_doc(version=True)))


def test_load_refuses_missing_committed() -> None:
    """A sidecar without a committed count claims nothing we can trust."""
    doc = _doc()
    del doc["committed"]
    with pytest.raises(SidecarError, match="committed"):
        load_state(json.dumps(doc))


def test_load_refuses_committed_beyond_total() -> None:
    """A sidecar claiming more committed bytes than the resource has is refused."""
    with pytest.raises(SidecarError, match="more than the total"):
        load_state(json.dumps(_doc(committed=1001, total=1000)))
    assert load_state(json.dumps(_doc(committed=1000, total=1000))).committed == 1000


@pytest.mark.parametrize(
    "changes",
    [{"committed": True}, {"committed": False}, {"total": True}, {"total": False, "committed": 0}],
    ids=lambda c: ",".join(f"{k}={v!r}" for k, v in c.items()),
)
def test_load_refuses_booleans_as_integers(changes: dict[str, Any]) -> None:
    """JSON true/false are not byte counts, though Python's bool is an int."""
    with pytest.raises(SidecarError):
        load_state(json.dumps(_doc(**changes)))


def test_load_keeps_reading_v1_fixture() -> None:
    """A sidecar written by version 1 (fixtures/sidecars/v1.json) still loads, field by field."""
    state = load_state((FIXTURES / "v1.json").read_bytes())
    assert state == ResumeState(
        url="https://example.org/disk.img",
        final_url="https://mirror.example.org/pub/disk.img",
        etag='"5f3a-1a2b3c"',
        last_modified="Tue, 04 Mar 2025 10:00:00 GMT",
        total=4194304,
        committed=1048576,
        checksum="sha256:4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358",
    )


def test_every_sidecar_fixture_loads() -> None:
    """Every sidecar version ever written (one fixture each) keeps loading."""
    fixtures = sorted(FIXTURES.glob("v*.json"))
    assert [p.name for p in fixtures][:1] == ["v1.json"]
    versions = set()
    for path in fixtures:
        load_state(path.read_text(encoding="utf-8"))
        versions.add(json.loads(path.read_text(encoding="utf-8"))["version"])
    assert versions == set(range(1, SIDECAR_VERSION + 1))


# --- strong validators -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"ETag": ETAG}, (ETAG, None)),
        ({"ETag": '""'}, ('""', None)),
        ({"ETag": 'W/"abc"'}, (None, None)),
        ({"ETag": "abc-123"}, (None, None)),
        ({"ETag": " "}, (None, None)),
        ({}, (None, None)),
        ({"Last-Modified": LM, "Date": DATE_LATER}, (None, LM)),
        ({"Last-Modified": LM, "Date": "Tue, 04 Mar 2025 11:00:00 GMT"}, (None, LM)),
        ({"Last-Modified": LM, "Date": DATE_SOON}, (None, None)),
        ({"Last-Modified": LM, "Date": LM}, (None, None)),
        ({"Last-Modified": LM, "Date": "Tue, 04 Mar 2025 09:00:00 GMT"}, (None, None)),
        ({"Last-Modified": LM}, (None, None)),
        ({"Last-Modified": "yesterday", "Date": DATE_LATER}, (None, None)),
        ({"Last-Modified": LM, "Date": "soon"}, (None, None)),
        ({"ETag": 'W/"x"', "Last-Modified": LM, "Date": DATE_LATER}, (None, LM)),
        ({"ETag": ETAG, "Last-Modified": LM, "Date": DATE_SOON}, (ETAG, None)),
        ({"ETag": ETAG, "Last-Modified": LM, "Date": DATE_LATER}, (ETAG, LM)),
    ],
)
def test_strong_validators(
    headers: dict[str, str], expected: tuple[str | None, str | None]
) -> None:
    """Only strong validators survive: a quoted non-W/ ETag, a Last-Modified >= 60 s before Date."""
    assert strong_validators(headers) == expected


# --- plan_request ----------------------------------------------------------------------------


def _plan(state: ResumeState | None, part: int | None = 400, checksum: str | None = None) -> Plan:
    return plan_request(state, part, url=URL, checksum=checksum)


def test_plan_without_state_is_fresh() -> None:
    """No sidecar (or no partial file) means a plain request from byte 0."""
    for plan in (_plan(None), _plan(None, None), _plan(STATE, None)):
        assert (plan.action, plan.offset, plan.headers) == (Action.FRESH, 0, {})


@pytest.mark.parametrize(
    ("state", "part", "checksum", "reason"),
    [
        (ResumeState(URL + "?v=2", URL, ETAG, None, 1000, 400), 400, None, "another URL"),
        (ResumeState(URL, URL, ETAG, None, 1000, 400, "sha256:aa"), 400, "sha256:bb", "checksum"),
        (STATE, 399, None, "fewer than recorded"),
        (STATE, 0, None, "fewer than recorded"),
        (STATE.with_committed(0), 400, None, "nothing committed"),
        (STATE.with_committed(0), 0, None, "nothing committed"),
        (ResumeState(URL, URL, ETAG, None, None, 0), 10, None, "nothing committed"),
        (ResumeState(URL, URL, None, None, 1000, 400), 400, None, "no strong validator"),
        (ResumeState(URL, URL, None, None, None, 400), 500, None, "no strong validator"),
    ],
    ids=[
        "other-url",
        "other-checksum",
        "part-shorter",
        "part-empty",
        "committed-0",
        "committed-0-part-0",
        "committed-0-no-total",
        "no-validator",
        "no-validator-no-total",
    ],
)
def test_plan_fresh(state: ResumeState, part: int, checksum: str | None, reason: str) -> None:
    """Each reason not to trust a partial gives a plain request from 0, with that reason."""
    plan = _plan(state, part, checksum)
    assert (plan.action, plan.offset, plan.headers) == (Action.FRESH, 0, {})
    assert reason in plan.reason


def test_plan_fresh_when_committed_beyond_total() -> None:
    """A state claiming more than the resource (built in memory, past load_state) is not resumed."""
    state = ResumeState(URL, URL, ETAG, None, total=100, committed=101)
    plan = _plan(state, 200)
    assert (plan.action, plan.offset, plan.headers) == (Action.FRESH, 0, {})
    assert "larger than the resource" in plan.reason


def test_plan_resumes_with_etag_if_range() -> None:
    """A strong ETag gives ``Range: bytes=N-`` and ``If-Range: <etag>`` at the committed count."""
    plan = _plan(STATE, 400)
    assert plan.action is Action.RESUME
    assert plan.offset == 400
    assert plan.headers == {"Range": "bytes=400-", "If-Range": ETAG}


def test_plan_resumes_with_last_modified_if_range() -> None:
    """Without an ETag, a strong Last-Modified date is the If-Range validator."""
    state = ResumeState(URL, URL, None, LM, 1000, 400)
    assert _plan(state, 400).headers == {"Range": "bytes=400-", "If-Range": LM}


def test_plan_resumes_at_committed_not_part_size() -> None:
    """Bytes in the partial file past the committed count are not trusted: resume at committed."""
    plan = _plan(STATE, 999)
    assert (plan.offset, plan.headers["Range"]) == (400, "bytes=400-")


def test_plan_resumes_without_if_range_when_only_checksum() -> None:
    """With no validator but a checksum, resume with Range alone: the checksum judges the whole."""
    state = ResumeState(URL, URL, None, None, 1000, 400, "sha256:aa")
    plan = _plan(state, 400, "sha256:aa")
    assert plan.action is Action.RESUME
    assert plan.headers == {"Range": "bytes=400-"}
    assert "If-Range" not in plan.headers


def test_plan_same_checksum_or_none_recorded_resumes() -> None:
    """A checksum differing is a reason to start over only when both sides have one."""
    assert _plan(STATE, 400, "sha256:aa").action is Action.RESUME
    state = ResumeState(URL, URL, ETAG, None, 1000, 400, "sha256:aa")
    assert _plan(state, 400, None).action is Action.RESUME
    assert _plan(state, 400, "sha256:aa").action is Action.RESUME


@given(committed=st.integers(1, 2**62), extra=st.integers(0, 2**20))
def test_plan_range_header_is_exact(committed: int, extra: int) -> None:
    """The Range header is exactly ``bytes=N-`` (open-ended, no spaces) for any N."""
    state = ResumeState(URL, URL, ETAG, None, None, committed)
    plan = _plan(state, committed + extra)
    assert plan.headers["Range"] == f"bytes={committed}-"
    assert plan.offset == committed


# --- judge_response --------------------------------------------------------------------------

RESUME = Plan(Action.RESUME, 400, {"Range": "bytes=400-", "If-Range": ETAG}, "resuming")


def _h(content_range: str | None = "bytes 400-999/1000", **more: str) -> dict[str, str]:
    headers = {k.replace("_", "-"): v for k, v in more.items()}
    if content_range is not None:
        headers["Content-Range"] = content_range
    return headers


def _verdict(status: int, headers: dict[str, str], state: ResumeState | None = STATE) -> Verdict:
    return judge_response(RESUME, state, status, headers).verdict


def test_judge_200_restarts() -> None:
    """A 200 to a range request is the whole resource: write it from byte 0."""
    assert _verdict(200, {"ETag": ETAG}) is Verdict.RESTART
    assert _verdict(200, {"ETag": '"other"', "Content-Length": "5"}) is Verdict.RESTART


@pytest.mark.parametrize(
    "headers",
    [
        _h(),
        _h(ETag=ETAG),
        _h(ETag=ETAG, Content_Length="600"),
        _h(ETag=ETAG, Last_Modified=LM, Content_Length="600"),
        _h("bytes 400-499/1000", Content_Length="100"),
        _h("bytes 400-999/1000", Content_Length=" 600 "),
    ],
    ids=["bare", "etag", "etag-length", "all", "short-range", "length-ows"],
)
def test_judge_206_exact_continuation_appends(headers: dict[str, str]) -> None:
    """A 206 at the asked start, same complete length, unchanged validators: append."""
    assert _verdict(206, headers) is Verdict.APPEND


def test_judge_206_unknown_complete_length_appends_without_recorded_total() -> None:
    """``bytes 400-999/*`` is fine when no total was recorded, and refused when one was."""
    state = ResumeState(URL, URL, ETAG, None, None, 400)
    assert _verdict(206, _h("bytes 400-999/*"), state) is Verdict.APPEND
    assert _verdict(206, _h("bytes 400-999/*")) is Verdict.RETRY_FRESH


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (_h("bytes 0-999/1000"), "starts at 0"),
        (_h("bytes 401-999/1000"), "starts at 401"),
        (_h("bytes 399-999/1000"), "starts at 399"),
        (_h("bytes 400-1000/1001"), "complete length 1001"),
        (_h("bytes 400-998/999"), "complete length 999"),
        (_h(ETag='"changed"'), "ETag changed"),
        (_h(ETag='W/"abc-123"'), "ETag changed"),
        (_h(Last_Modified="Wed, 05 Mar 2025 10:00:00 GMT"), "Last-Modified changed"),
        (_h(Content_Length="599"), "Content-Length disagrees"),
        (_h(Content_Length="601"), "Content-Length disagrees"),
        (_h("bytes 400-499/1000", Content_Length="600"), "Content-Length disagrees"),
        (_h(None), "unusable Content-Range"),
        (_h(""), "unusable Content-Range"),
        (_h("bytes 400-999"), "unusable Content-Range"),
        (_h("bytes=400-999/1000"), "unusable Content-Range"),
        (_h("items 400-999/1000"), "unusable Content-Range"),
        (_h("bytes 999-400/1000"), "unusable Content-Range"),
        (_h("bytes 400-1000/1000"), "unusable Content-Range"),
        (_h("bytes */1000"), "not 400"),
    ],
)
def test_judge_206_that_cannot_continue_retries_fresh(headers: dict[str, str], reason: str) -> None:
    """A 206 at another start, of another length or version, or malformed: discard, ask again."""
    judgement = judge_response(RESUME, STATE, 206, headers)
    assert judgement.verdict is Verdict.RETRY_FRESH
    assert reason in judgement.reason


def test_judge_other_status_retries_fresh() -> None:
    """A 2xx that is neither 200 nor 206 cannot be appended."""
    assert _verdict(204, _h()) is Verdict.RETRY_FRESH


def test_judge_416_complete_when_length_equals_offset() -> None:
    """416 with ``bytes */N`` where N is what we hold (and the recorded total): complete."""
    state = ResumeState(URL, URL, ETAG, None, 400, 400)
    assert _verdict(416, _h("bytes */400"), state) is Verdict.COMPLETE
    unknown_total = ResumeState(URL, URL, ETAG, None, None, 400)
    assert _verdict(416, _h("bytes */400"), unknown_total) is Verdict.COMPLETE
    assert _verdict(416, _h("bytes */400"), None) is Verdict.COMPLETE


@pytest.mark.parametrize("value", ["bytes */1000", "bytes */399", "bytes */401", "bytes */0"])
def test_judge_416_other_length_retries_fresh(value: str) -> None:
    """416 with a complete length other than what we hold: the partial is not of it."""
    assert _verdict(416, _h(value)) is Verdict.RETRY_FRESH


def test_judge_416_length_equal_offset_but_not_recorded_total_retries_fresh() -> None:
    """416 ``bytes */400`` when the recorded total is 1000: the resource shrank, start over."""
    assert _verdict(416, _h("bytes */400")) is Verdict.RETRY_FRESH


@pytest.mark.parametrize("value", [None, "", "bytes 0-399/400", "bytes */", "garbage"], ids=repr)
def test_judge_416_without_unsatisfied_range_retries_fresh(value: str | None) -> None:
    """416 without a usable ``bytes */N`` proves nothing: start over."""
    state = ResumeState(URL, URL, ETAG, None, 400, 400)
    assert _verdict(416, _h(value), state) is Verdict.RETRY_FRESH


# --- total_from_response ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "total"),
    [
        (200, {"Content-Length": "1000"}, 1000),
        (200, {"Content-Length": "1000", "Transfer-Encoding": "chunked"}, None),
        (200, {}, None),
        (200, {"Content-Length": "-1"}, None),
        (206, {"Content-Range": "bytes 400-999/1000", "Content-Length": "600"}, 1000),
        (206, {"Content-Range": "bytes 400-999/*"}, None),
        (206, {"Content-Range": "nonsense", "Content-Length": "600"}, None),
    ],
)
def test_total_from_response(status: int, headers: dict[str, str], total: int | None) -> None:
    """The complete length is Content-Length of a 200 and the /N of a 206's Content-Range."""
    assert total_from_response(status, headers) == total


def test_load_reads_v2_fixture_with_segments() -> None:
    """A version 2 sidecar (fixtures/sidecars/v2.json) loads with its segment map."""
    state = load_state((FIXTURES / "v2.json").read_bytes())
    assert state.segments == (
        (0, 2097152, 2097152),
        (2097152, 4194304, 1048576),
        (4194304, 6291456, 0),
    )
    assert state.total == 6291456


@pytest.mark.parametrize(
    "segments",
    [
        [[0, 10, 0]],  # does not reach the total
        [[0, 50, 0], [60, 100, 0]],  # a gap
        [[0, 60, 0], [50, 100, 0]],  # an overlap
        [[0, 100, 101]],  # more done than the segment holds
        [[0, 100, -1]],  # negative done
        [[0, 100]],  # not a triple
        [[0, 100, True]],  # a boolean is not a count
        "0-100",  # not a list
    ],
)
def test_load_refuses_segments_that_do_not_tile(segments: object) -> None:
    """A segment map must cover [0, total) exactly, in order, with 0 <= done <= length."""
    with pytest.raises(SidecarError):
        load_state(json.dumps(_doc(version=2, total=100, committed=0, segments=segments)))


def test_segments_round_trip() -> None:
    """dump_state/load_state keep a segment map unchanged."""
    state = ResumeState(
        url="u", final_url="u", etag='"e"', total=100, segments=((0, 40, 40), (40, 100, 7))
    )
    assert load_state(dump_state(state)) == state
