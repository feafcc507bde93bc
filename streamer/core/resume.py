"""Resume state and resume decisions, with no I/O: what to ask for and whether to trust the answer.

The rule this module keeps is "never splice two versions of a resource". A partial body is
continued only when the server proves, with a strong validator (RFC 9110 8.8.1), that the
resource is the one whose first bytes we hold, and only at the exact offset we asked for:

- the request carries ``Range: bytes=N-`` and ``If-Range`` with the stored strong validator
  (RFC 9110 13.1.5), so a changed resource comes back whole as a 200;
- a 206 is checked before a byte is written (RFC 9110 14.4, 15.3.7): the range starts at N, the
  complete length equals the recorded one and any validator sent with it is unchanged;
- a 200 means start over; a 416 means done only if ``bytes */L`` equals what we hold.

The state is a small versioned JSON document (the sidecar); unknown, corrupt or foreign state is
never trusted, it only means starting over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any

from ..errors import ProtocolError
from .ranges import format_range, parse_content_range
from .segments import decode as decode_segments
from .validators import is_weak_etag, last_modified_is_strong, parse_http_date

SIDECAR_VERSION = 2
SIDECAR_KIND = "streamer.partial"


class SidecarError(ValueError):
    """The sidecar cannot be trusted: not JSON, another program's, a future version, or bad."""


@dataclass(frozen=True)
class ResumeState:
    """What the sidecar records about a partial file. URLs are stored redacted.

    ``committed`` bytes of the partial file were fsynced before this state was written, so the
    file holds at least that many; anything past them is discarded on resume.
    """

    url: str
    final_url: str
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None
    committed: int = 0
    checksum: str | None = None
    # Segmented downloads (version 2): [start, end, done] per segment; None for one stream.
    segments: tuple[tuple[int, int, int], ...] | None = None

    @property
    def validator(self) -> str | None:
        """The value for If-Range: the strong ETag, else a strong Last-Modified date."""
        return self.etag or self.last_modified

    def with_committed(self, committed: int) -> ResumeState:
        return replace(self, committed=committed)


def strong_validators(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The (ETag, Last-Modified) of a response that may be used for If-Range; None if weak.

    RFC 9110 13.1.5: If-Range must carry a strong validator. A weak ETag is dropped; a
    Last-Modified is strong only when the response's Date is at least 60 s later (8.8.2.2).
    """
    etag = headers.get("ETag")
    if etag is not None and (is_weak_etag(etag) or not etag.startswith('"')):
        etag = None
    last_modified = headers.get("Last-Modified")
    lm = parse_http_date(last_modified) if last_modified else None
    date = parse_http_date(headers.get("Date", "")) if last_modified else None
    if lm is None or date is None or not last_modified_is_strong(lm, date):
        last_modified = None
    return etag, last_modified


def dump_state(state: ResumeState) -> str:
    """The sidecar text: JSON with a kind and a version, so a reader can refuse what it lacks."""
    doc: dict[str, Any] = {"kind": SIDECAR_KIND, "version": SIDECAR_VERSION, **asdict(state)}
    if state.segments is not None:
        doc["segments"] = [list(seg) for seg in state.segments]
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def _v1(doc: Mapping[str, Any]) -> ResumeState:
    def opt_str(key: str) -> str | None:
        value = doc.get(key)
        if value is not None and not isinstance(value, str):
            raise SidecarError(f"field {key!r} is not a string")
        return value

    url, final_url = doc.get("url"), doc.get("final_url")
    committed, total = doc.get("committed"), doc.get("total")
    if not isinstance(url, str) or not isinstance(final_url, str):
        raise SidecarError("url and final_url must be strings")
    if not isinstance(committed, int) or isinstance(committed, bool) or committed < 0:
        raise SidecarError("committed must be a non-negative integer")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
        raise SidecarError("total must be a non-negative integer or null")
    if total is not None and committed > total:
        raise SidecarError(f"committed {committed} is more than the total {total}")
    return ResumeState(
        url=url,
        final_url=final_url,
        etag=opt_str("etag"),
        last_modified=opt_str("last_modified"),
        total=total,
        committed=committed,
        checksum=opt_str("checksum"),
    )


def _v2(doc: Mapping[str, Any]) -> ResumeState:
    """Version 2 added the segment map of segmented downloads; the rest is version 1."""
    state = _v1(doc)
    raw = doc.get("segments")
    if raw is None:
        return state
    segments = decode_segments(raw, state.total)
    if segments is None:
        raise SidecarError("segments do not tile the resource exactly")
    return replace(state, segments=tuple((s.start, s.end, s.done) for s in segments))


# One reader per sidecar version ever written; old versions keep loading (fixtures/sidecars/).
_READERS = {1: _v1, 2: _v2}


def load_state(text: str | bytes) -> ResumeState:
    """Parse a sidecar; SidecarError for anything not a valid streamer sidecar we can read."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SidecarError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != SIDECAR_KIND:
        raise SidecarError("not a streamer sidecar")
    version = doc.get("version")
    reader = None
    if isinstance(version, int) and not isinstance(version, bool):  # JSON true is not 1
        reader = _READERS.get(version)
    if reader is None:
        raise SidecarError(f"unsupported sidecar version {version!r}")
    return reader(doc)


class Action(Enum):
    FRESH = "fresh"  # start at byte 0 (truncate whatever is there)
    RESUME = "resume"  # ask for the rest with Range + If-Range


@dataclass(frozen=True)
class Plan:
    """What the next request should be, and why (the reason is shown to the user)."""

    action: Action
    offset: int
    headers: dict[str, str]
    reason: str


def _fresh(reason: str) -> Plan:
    return Plan(Action.FRESH, 0, {}, reason)


def plan_request(
    state: ResumeState | None, part_size: int | None, *, url: str, checksum: str | None
) -> Plan:
    """Decide from the sidecar and the partial file's size how to ask for the body."""
    if state is None or part_size is None:
        return _fresh("no partial download")
    if state.url != url:
        return _fresh("the partial download is of another URL")
    if state.checksum is not None and checksum is not None and state.checksum != checksum:
        return _fresh("the partial download was made for another checksum")
    if part_size < state.committed:
        return _fresh(f"partial file holds {part_size} bytes, fewer than recorded")
    if state.committed == 0:
        return _fresh("nothing committed yet")
    if state.total is not None and state.committed > state.total:
        return _fresh("partial file is larger than the resource")
    headers = {"Range": format_range(state.committed)}
    if state.validator is not None:
        headers["If-Range"] = state.validator
    elif checksum is None:
        # Without a strong validator nothing proves the bytes we hold are of this version;
        # only a checksum over the whole result could, so without one we start over.
        return _fresh("no strong validator (ETag or Last-Modified) to resume safely")
    return Plan(Action.RESUME, state.committed, headers, f"resuming at byte {state.committed}")


class Verdict(Enum):
    APPEND = "append"  # a 206 that continues exactly where we stopped
    RESTART = "restart"  # write the body from byte 0 (a 200), truncating the partial
    RETRY_FRESH = "retry_fresh"  # discard the partial and ask again without Range
    COMPLETE = "complete"  # 416 and we already hold every byte


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str


def _validators_changed(state: ResumeState, headers: Mapping[str, str]) -> str | None:
    etag, last_modified = headers.get("ETag"), headers.get("Last-Modified")
    if state.etag is not None and etag is not None and etag != state.etag:
        return f"ETag changed from {state.etag} to {etag}"
    lm_known = state.last_modified is not None and last_modified is not None
    if lm_known and last_modified != state.last_modified:
        return "Last-Modified changed"
    return None


def judge_response(
    plan: Plan, state: ResumeState | None, status: int, headers: Mapping[str, str]
) -> Judgement:
    """Whether the answer to a resume request may be appended to what we hold.

    Called for 2xx and 416 answers when ``plan`` resumed; anything else is the caller's error.
    """
    if status == 200:
        return Judgement(Verdict.RESTART, "the server sent the whole resource (200)")
    if status == 416:
        return _judge_416(plan, state, headers)
    if status != 206:
        return Judgement(Verdict.RETRY_FRESH, f"unexpected status {status} to a range request")
    try:
        cr = parse_content_range(headers.get("Content-Range", ""))
    except ProtocolError as exc:
        return Judgement(Verdict.RETRY_FRESH, f"unusable Content-Range: {exc}")
    if cr.start != plan.offset:
        return Judgement(Verdict.RETRY_FRESH, f"range starts at {cr.start}, not {plan.offset}")
    if state is not None and state.total is not None and cr.complete != state.total:
        return Judgement(
            Verdict.RETRY_FRESH, f"complete length {cr.complete} is not the recorded {state.total}"
        )
    changed = _validators_changed(state, headers) if state is not None else None
    if changed is not None:
        return Judgement(Verdict.RETRY_FRESH, changed)
    length = headers.get("Content-Length")
    if length is not None and cr.length is not None and length.strip() != str(cr.length):
        return Judgement(Verdict.RETRY_FRESH, "Content-Length disagrees with Content-Range")
    return Judgement(Verdict.APPEND, f"server continues at byte {plan.offset}")


def _judge_416(plan: Plan, state: ResumeState | None, headers: Mapping[str, str]) -> Judgement:
    try:
        cr = parse_content_range(headers.get("Content-Range", ""))
    except ProtocolError:
        return Judgement(Verdict.RETRY_FRESH, "416 without a usable Content-Range")
    recorded = state.total if state is not None else None
    if cr.start is None and cr.complete == plan.offset and recorded in (None, cr.complete):
        return Judgement(
            Verdict.COMPLETE, f"the partial file already holds all {cr.complete} bytes"
        )
    return Judgement(Verdict.RETRY_FRESH, f"416: resource is {cr.complete} bytes, we hold more")


def total_from_response(status: int, headers: Mapping[str, str]) -> int | None:
    """The complete length of the resource from a 200 (Content-Length) or a 206 (Content-Range)."""
    if status == 206:
        try:
            return parse_content_range(headers.get("Content-Range", "")).complete
        except ProtocolError:
            return None
    length = headers.get("Content-Length")
    if length is None or "chunked" in headers.get("Transfer-Encoding", "").lower():
        return None
    return int(length) if length.strip().isdigit() else None
