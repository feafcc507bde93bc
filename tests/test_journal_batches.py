"""The bulk journal's batches (streamer/storage/journal.py) are synced and written in the
background: a download never waits for the file system sync, a due batch is journaled without
anyone calling `flush`, and a failed background write still ends the run as a typed error."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from streamer.errors import FileError, Result
from streamer.storage.journal import BATCH_FILES, MAX_PENDING, Done, Journal
from tests.helpers import wait_for
from tests.test_local_faults import tmpfs


def done(i: int) -> Done:
    return Done(f"f{i}.bin", 100, None, f"http://h/f{i}.bin", '"e"')


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def test_a_due_batch_is_journaled_in_the_background(tmp_path: Path) -> None:
    """BATCH_FILES records and nothing else: the batch reaches the journal file without a call
    to flush or close, each record returning at once; close writes the rest; a re-run's load
    finds every record."""
    journal = Journal(tmp_path / "j.jsonl", tmp_path)
    journal.open()
    try:
        for i in range(BATCH_FILES + 3):
            await journal.record(done(i))
        await wait_for(lambda: lines(tmp_path / "j.jsonl") >= BATCH_FILES, "the batch")
        assert lines(tmp_path / "j.jsonl") in (BATCH_FILES, BATCH_FILES + 3)
    finally:
        await journal.close()
    assert lines(tmp_path / "j.jsonl") == BATCH_FILES + 3
    assert Journal(tmp_path / "j.jsonl").load() == BATCH_FILES + 3


async def test_a_failed_background_flush_is_a_typed_error_of_the_run(tmp_path: Path) -> None:
    """The journal's file system is full: the background write fails, and a later record (at
    the latest the MAX_PENDING-th, which waits for a flush itself) raises FileError with the
    file-write result; close raises it too and still closes the journal's files."""
    with tmpfs(tmp_path / "small", "1m") as small:
        with open(small / "filler", "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        journal = Journal(small / "j.jsonl", tmp_path)
        journal.open()
        with pytest.raises(FileError) as raised:
            for i in range(MAX_PENDING + 1):
                await journal.record(done(i))
        assert raised.value.result is Result.DOWNLOAD_FILE_WRITE_ERROR
        assert "cannot write journal" in str(raised.value)
        with pytest.raises(FileError):
            await journal.close()
        assert journal._fd is None and journal._data_fd is None
