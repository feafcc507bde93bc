"""Remembered resumable uploads (tus, S3 multipart): one small JSON file per upload.

The files live in ``$XDG_STATE_HOME/streamer`` (default ``~/.local/state/streamer``, made mode
0700), each named by its kind and the SHA-256 of its canonical key, so a key (which holds URLs
and paths) never becomes a file name. A file holds::

    {"version": 1, "kind": "tus", "key": {...}, "record": {...}}

and is written like every file streamer publishes, by `atomic.write_atomic`: a temporary file
(mode 0600, opened with O_NOFOLLOW|O_EXCL so that nothing planted at that name is written
through), fsync, rename over the old one, fsync of the directory. A file that is corrupt,
belongs to another key or comes from a future version is not trusted: `load_state` answers
None with a note saying why, and the caller starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import FileError, Result, UsageError
from .atomic import write_atomic

FORMAT_VERSION = 1
KINDS = frozenset({"tus", "s3", "s3plan"})  # s3plan: a presigned plan's confirmed parts
# A state file is a few hundred bytes; anything much larger is not one of ours.
_MAX_BYTES = 1 << 20


def state_dir() -> Path:
    """``$XDG_STATE_HOME/streamer`` (default ``~/.local/state/streamer``), created mode 0700."""
    base = os.environ.get("XDG_STATE_HOME", "")
    # XDG Base Directory spec: a relative path in the variable is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    path = root / "streamer"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise _error(exc, path, "create") from exc
    return path


def _canonical(key: Mapping[str, str | int]) -> str:
    return json.dumps(dict(key), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _path(kind: str, key: Mapping[str, str | int]) -> Path:
    if kind not in KINDS:
        raise UsageError(f"unknown upload state kind {kind!r}")
    digest = hashlib.sha256(_canonical(key).encode("ascii")).hexdigest()
    return state_dir() / f"{kind}-{digest}.json"


def _error(exc: OSError, path: Path, action: str) -> FileError:
    err = FileError(
        f"cannot {action} upload state {path}: {exc.strerror or exc}",
        path=str(path),
        result=Result.DOWNLOAD_FILE_WRITE_ERROR,
    )
    err.errno = exc.errno
    return err


def _read(path: Path) -> bytes | None:
    """The file's bytes; None when there is none. Never follows a symlink at that name."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, _MAX_BYTES + 1)
    finally:
        os.close(fd)


def load_state(kind: str, key: Mapping[str, str | int]) -> tuple[dict[str, Any] | None, str | None]:
    """The record saved for `key`, or (None, None) when there is none, or (None, a note) when
    the file cannot be trusted (corrupt, another key's, a future version's, unreadable)."""
    path = _path(kind, key)
    try:
        raw = _read(path)
    except OSError as exc:
        return None, f"ignoring upload state {path}: {exc.strerror or exc}"
    if raw is None:
        return None, None
    try:
        doc = json.loads(raw) if len(raw) <= _MAX_BYTES else None
    except (UnicodeDecodeError, ValueError):
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("record"), dict):
        return None, f"ignoring corrupt upload state {path}"
    version = doc.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        return None, f"ignoring upload state {path} from a future version ({version!r})"
    if doc.get("kind") != kind or doc.get("key") != json.loads(_canonical(key)):
        return None, f"ignoring upload state {path}: it belongs to another upload"
    record: dict[str, Any] = doc["record"]
    return record, None


def save_state(kind: str, key: Mapping[str, str | int], record: Mapping[str, Any]) -> None:
    """Write the record for `key` atomically (temp, fsync, rename, fsync of the directory)."""
    path = _path(kind, key)
    doc = {"version": FORMAT_VERSION, "kind": kind, "key": dict(key), "record": dict(record)}
    data = json.dumps(doc, sort_keys=True).encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process
    try:
        write_atomic(path, data, tmp=tmp)  # a link planted at either name is not followed
    except OSError as exc:
        raise _error(exc, path, "write") from exc


def find_states(
    kind: str, match: Mapping[str, str | int]
) -> list[tuple[dict[str, str | int], dict[str, Any]]]:
    """The (key, record) of every trusted `kind` state whose key holds all of `match`'s items
    (for example, every remembered upload of one path, whatever its size and mtime)."""
    if kind not in KINDS:
        raise UsageError(f"unknown upload state kind {kind!r}")
    found = []
    for path in sorted(state_dir().glob(f"{kind}-*.json")):
        try:
            doc = json.loads(_read(path) or b"null")
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # not trusted: load_state names it when its own key comes up
        key = doc.get("key") if isinstance(doc, dict) else None
        if not isinstance(key, dict) or any(key.get(k) != v for k, v in match.items()):
            continue
        record, note = load_state(kind, key)
        if record is not None and note is None:
            found.append((key, record))
    return found


def drop_state(kind: str, key: Mapping[str, str | int]) -> None:
    """Forget the record for `key` (nothing to do when there is none)."""
    path = _path(kind, key)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _error(exc, path, "remove") from exc


__all__ = ["drop_state", "find_states", "load_state", "save_state", "state_dir"]
