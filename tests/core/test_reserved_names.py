"""Chosen names leave room for streamer's helper names; reserved names are refused for jobs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.manifest import BadLine, Job, parse_manifest
from streamer.core.names import name_from_content_disposition, name_from_url
from streamer.core.targets import HELPER_SUFFIXES, JOURNAL_NAME, reserved_reason
from streamer.errors import UsageError

NAME_MAX = 255
LONGEST_HELPER = max(HELPER_SUFFIXES, key=len)


def fits_with_helpers(name: str) -> bool:
    return len((name + LONGEST_HELPER).encode("utf-8")) <= NAME_MAX


def test_helper_suffixes_are_the_storage_names() -> None:
    """The helper names the core reserves are the ones storage writes (T.part, T.part.json,
    the sidecar's temporary file) and the journal's name."""
    from streamer.storage.atomic import TEMP_SUFFIX
    from streamer.storage.files import PART_SUFFIX, SIDECAR_SUFFIX
    from streamer.storage.journal import JOURNAL_NAME as STORAGE_JOURNAL

    assert HELPER_SUFFIXES == (PART_SUFFIX, SIDECAR_SUFFIX, SIDECAR_SUFFIX + TEMP_SUFFIX)
    assert STORAGE_JOURNAL == JOURNAL_NAME


@pytest.mark.parametrize("stem", ["a" * 255, "é" * 200, "\U0001f600" * 70, "a" * 241])
@pytest.mark.parametrize("ext", [".iso", ".txt", ""])
def test_long_chosen_names_leave_room_for_helpers(stem: str, ext: str) -> None:
    """A name from the URL or Content-Disposition is cut so that NAME.part.json.tmp fits in
    NAME_MAX bytes, keeping its extension, on a character boundary."""
    raw = stem + ext
    for name in (
        name_from_url("http://h/" + raw),
        name_from_content_disposition(f"attachment; filename*=UTF-8''{raw}"),
    ):
        assert name is not None
        assert fits_with_helpers(name), len(name.encode())
        assert name.endswith(ext)
        name.encode("utf-8")  # valid: no lone surrogate


@given(st.text(min_size=1, max_size=400))
def test_any_url_name_fits_with_helpers(raw: str) -> None:
    """Whatever the URL's last segment, its name fits NAME_MAX with every helper suffix."""
    assert fits_with_helpers(name_from_url("http://h/" + raw.replace("/", "_")))


@pytest.mark.parametrize(
    "path",
    [JOURNAL_NAME, "x.part", "d/x.part.json", "x.part.json.tmp", "d/" + JOURNAL_NAME],
)
def test_reserved_job_paths_are_refused(path: str) -> None:
    """A job may not write the journal or a name that is another target's helper file."""
    assert reserved_reason(path.rpartition("/")[2]) is not None
    with pytest.raises(UsageError, match="reserved"):
        Job("http://h/f", path=path)


def test_reserved_url_names_are_refused() -> None:
    """The same holds for names taken from the URL; plain names like ".part" stay allowed."""
    with pytest.raises(UsageError, match="reserved"):
        Job("http://h/x.part")
    assert reserved_reason(".part") is None
    assert reserved_reason("a.partial") is None
    assert Job("http://h/a.partial").path is None


def test_manifest_reports_reserved_and_long_paths_with_their_line() -> None:
    """Reserved names and over-long components become BadLines with their line numbers;
    the other jobs are kept."""
    long = "b" * 300
    lines = [
        "http://h/ok",
        '{"url": "http://h/j", "path": ".streamer-journal.jsonl"}',
        f'{{"url": "http://h/l", "path": "{long}"}}',
        f'{{"url": "http://h/m", "path": "{"c" * 250}"}}',
        f'{{"url": "http://h/n", "path": "{long}/x"}}',
        "http://h/y.part.json",
    ]
    items = list(parse_manifest(lines))
    assert isinstance(items[0], Job)
    bad = [item for item in items if isinstance(item, BadLine)]
    assert [b.line for b in bad] == [2, 3, 4, 5, 6]
    assert "reserved" in bad[0].reason and "reserved" in bad[4].reason
    assert all("too long" in b.reason for b in bad[1:4])
