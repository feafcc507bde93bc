"""streamer.storage.upload_state: the remembered resumable uploads (tus, S3) on disk."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from streamer.errors import FileError, UsageError
from streamer.storage import upload_state as us

KEY = {"endpoint": "http://h/files", "path": "/data/x.bin", "size": 10}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$XDG_STATE_HOME for this test; the store lives in its streamer/ folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "streamer"


def only_file(home: Path) -> Path:
    (path,) = home.iterdir()
    return path


def test_round_trip_modes_and_name(home: Path) -> None:
    """save then load gives the record back; the folder is 0700, the file 0600 and named by
    kind and the SHA-256 of the key (no URL or path in the name); drop forgets it."""
    us.save_state("tus", KEY, {"version": 1, "url": "http://h/files/1"})
    assert us.load_state("tus", KEY) == ({"version": 1, "url": "http://h/files/1"}, None)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    path = only_file(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.name.startswith("tus-") and len(path.name) == len("tus-") + 64 + len(".json")
    assert us.load_state("s3", KEY) == (None, None)
    assert us.load_state("tus", {**KEY, "size": 11}) == (None, None)
    us.drop_state("tus", KEY)
    us.drop_state("tus", KEY)  # nothing left: no error
    assert us.load_state("tus", KEY) == (None, None)


def test_default_dir_and_relative_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without (or with a relative) $XDG_STATE_HOME the store is ~/.local/state/streamer."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", "relative/path")
    assert us.state_dir() == tmp_path / ".local" / "state" / "streamer"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert us.state_dir() == tmp_path / ".local" / "state" / "streamer"


@pytest.mark.parametrize(
    ("content", "note"),
    [
        (b"{not json", "corrupt"),
        (b"\xff\xfe", "corrupt"),
        (b"[]", "corrupt"),
        (b'{"version": 1, "kind": "tus", "key": {}, "record": 3}', "corrupt"),
        (b'{"version": 99, "kind": "tus", "key": {}, "record": {}}', "future version"),
        (b'{"version": "1", "kind": "tus", "key": {}, "record": {}}', "future version"),
        (b'{"version": 1, "kind": "tus", "key": {"other": 1}, "record": {}}', "another upload"),
        (b'{"version": 1, "kind": "s3", "key": {}, "record": {}}', "another upload"),
    ],
)
def test_untrusted_files_give_a_note(home: Path, content: bytes, note: str) -> None:
    """A corrupt file, another key's or kind's, or a future version's: None and a note."""
    us.save_state("tus", KEY, {"url": "u"})
    only_file(home).write_bytes(content)
    record, text = us.load_state("tus", KEY)
    assert record is None
    assert text is not None and note in text


def test_symlink_never_followed(home: Path, tmp_path: Path) -> None:
    """A symlink planted at the state file's name is neither read nor written through."""
    us.save_state("tus", KEY, {"url": "u"})
    path = only_file(home)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path.unlink()
    path.symlink_to(victim)
    record, note = us.load_state("tus", KEY)
    assert record is None and note is not None
    us.save_state("tus", KEY, {"url": "v"})
    assert victim.read_text() == "precious"
    assert not path.is_symlink()
    assert us.load_state("tus", KEY) == ({"url": "v"}, None)


def test_write_error_names_the_path_when_folder_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$XDG_STATE_HOME/streamer being a file: FileError naming it (for root too)."""
    (tmp_path / "streamer").write_text("not a folder")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    with pytest.raises(FileError, match="streamer"):
        us.save_state("tus", KEY, {"url": "v"})


def test_unknown_kind(home: Path) -> None:
    with pytest.raises(UsageError):
        us.save_state("ftp", KEY, {})


def test_file_content_is_versioned(home: Path) -> None:
    """The file carries the format version, the kind, the key and the record."""
    us.save_state("tus", KEY, {"url": "u"})
    doc = json.loads(only_file(home).read_text())
    assert doc == {"version": 1, "kind": "tus", "key": KEY, "record": {"url": "u"}}


def test_find_states_matches_part_of_the_key(home: Path) -> None:
    """find_states gives every trusted record of a kind whose key holds the given items
    (other sizes of one path, say), not other kinds' or paths', and skips corrupt files."""
    us.save_state("s3", KEY, {"upload_id": "A"})
    us.save_state("s3", {**KEY, "size": 11}, {"upload_id": "B"})
    us.save_state("s3", {**KEY, "path": "/data/y.bin"}, {"upload_id": "C"})
    us.save_state("tus", KEY, {"url": "http://h/files/1"})
    (home / f"s3-{'0' * 64}.json").write_bytes(b"{not json")
    found = us.find_states("s3", {"path": "/data/x.bin"})
    assert sorted((k["size"], r["upload_id"]) for k, r in found) == [(10, "A"), (11, "B")]
    assert us.find_states("s3", {"path": "/nowhere"}) == []
    with pytest.raises(UsageError):
        us.find_states("nope", {})
