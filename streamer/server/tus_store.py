"""Where the built-in tus endpoint keeps its uploads: a hidden folder of the served directory.

``DIR/.streamer-tus/ID`` holds the bytes received so far and ``DIR/.streamer-tus/ID.json``
the upload's record (`streamer.core.tus_server.UploadRecord`), written through
`streamer.storage.files.write_sidecar` (temp file, fsync, rename), so a crash leaves the old
record or the new one. The record's offset only ever counts bytes already fsynced in the data
file; bytes past it (written before a crash, or a PATCH whose checksum failed) are cut off
before the next PATCH appends.

A finished upload is published into ``DIR`` under its metadata file name made safe; an
existing file is never replaced: the first free one of ``name``, ``name-1``... (up to
`NAME_TRIES`) is taken, through `os.link` (which fails rather than replace) after fsync.
Every fsync and record write runs in a thread, off the event loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import secrets
from pathlib import Path

from streamer.core.tus_server import (
    ID_BYTES,
    TUS_DIR,
    TusRequestError,
    UploadRecord,
    candidate_names,
    filename_from,
    parse_metadata,
    valid_id,
)
from streamer.errors import StreamerError
from streamer.server.upload import in_thread
from streamer.storage.atomic import publish, sync_dir
from streamer.storage.files import StrayLink, read_sidecar, remove_quietly, write_sidecar

NAME_TRIES = 100
DATA_MODE = 0o600
FOLDER_MODE = 0o700
PUBLISHED_MODE = 0o644  # as a PUT file (streamer.server.upload.FILE_MODE)


def _gone(upload_id: str) -> TusRequestError:
    return TusRequestError(f"no upload {upload_id[:40]!r} on this server", status=404)


class TusStore:
    """The uploads of one served directory: their records, data files and publication."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / TUS_DIR

    def data_path(self, upload_id: str) -> Path:
        return self.folder / upload_id

    def _record_path(self, upload_id: str) -> Path:
        return self.folder / f"{upload_id}.json"

    async def create(self, length: int, metadata: str, expires: float | None) -> UploadRecord:
        """A new, empty upload with an unguessable id (192 bits from `secrets`)."""
        await in_thread(functools.partial(self.folder.mkdir, mode=FOLDER_MODE, exist_ok=True))
        upload_id = secrets.token_urlsafe(ID_BYTES)
        fd = os.open(self.data_path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, DATA_MODE)
        os.close(fd)
        record = UploadRecord(upload_id, length, 0, metadata, expires)
        await self.save(record)
        await in_thread(sync_dir, self.folder)
        return record

    def load(self, upload_id: str) -> UploadRecord:
        """The record of ``upload_id``; 404 when it is unknown, unreadable or not an id."""
        if not valid_id(upload_id):
            raise _gone(upload_id)
        try:
            text = read_sidecar(self._record_path(upload_id))
        except StrayLink:  # not ours: a link planted in the folder is never followed
            text = None
        if text is None:
            raise _gone(upload_id)
        record = UploadRecord.from_json(text)
        if record.id != upload_id:
            raise _gone(upload_id)
        return record

    async def save(self, record: UploadRecord) -> None:
        await in_thread(write_sidecar, self._record_path(record.id), record.to_json())

    async def remove(self, upload_id: str) -> None:
        """Forget an upload: its record first (so it is gone at once), then its data, in a
        thread (unlinking a file of many GiB can take seconds)."""
        await in_thread(remove_quietly, self._record_path(upload_id), self.data_path(upload_id))

    async def publish(self, record: UploadRecord) -> UploadRecord:
        """Give the finished data file its public name (never replacing a file); the record
        saying where. The data was fsynced by the last PATCH."""
        data = self.data_path(record.id)
        await in_thread(os.chmod, data, PUBLISHED_MODE)
        wanted = filename_from(parse_metadata(record.metadata))
        for name in candidate_names(wanted, NAME_TRIES):
            target = self.root / name
            if _same_file(data, target):
                break  # published before a crash took the record's update
            try:
                # The data was fsynced by the last PATCH; link, drop the old name, fsync DIR.
                await publish(None, data, target, no_clobber=True)
            except FileExistsError:
                continue
            break
        else:
            raise StreamerError(f"no free name for {wanted!r} after {NAME_TRIES} tries")
        published = dataclasses.replace(record, published=name)
        await self.save(published)
        remove_quietly(data)
        return published

    def records(self) -> list[str]:
        """The ids that have a record (for the sweep of expired uploads at start)."""
        with contextlib.suppress(OSError):
            return [p.stem for p in self.folder.glob("*.json") if valid_id(p.stem)]
        return []

    def remove_orphans(self) -> None:
        """At start, before any request: drop data files without a record (a creation cut
        between the two) and record temp files a crash left behind."""
        with contextlib.suppress(OSError):
            for path in self.folder.iterdir():
                orphan = valid_id(path.name) and not self._record_path(path.name).exists()
                if orphan or path.name.endswith(".json.tmp"):
                    remove_quietly(path)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


__all__ = ["NAME_TRIES", "TusStore"]
