"""The one durable-write helper: temp file in the same folder, fsync, rename,
fsync the folder; nothing half-written is ever visible."""

from __future__ import annotations

import os
import stat

import pytest

from signing.durable import PendingFile, fsync_dir, fsync_file, write_atomic


def test_write_atomic_replaces_with_mode_and_leaves_no_temp(tmp_path):
    path = tmp_path / "settings.json"
    path.write_bytes(b"old")
    write_atomic(path, b"new", mode=0o600)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["settings.json"]


def test_write_atomic_without_overwrite_keeps_the_existing_file(tmp_path):
    path = tmp_path / "root.key"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        write_atomic(path, b"other", overwrite=False)
    assert path.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["root.key"]
    write_atomic(tmp_path / "new.key", b"fresh", mode=0o600, overwrite=False)
    assert (tmp_path / "new.key").read_bytes() == b"fresh"
    assert stat.S_IMODE((tmp_path / "new.key").stat().st_mode) == 0o600


def test_pending_file_named_after_its_content_and_discarded_on_error(tmp_path):
    with PendingFile(tmp_path) as pending:
        pending.file.write(b"firmware")
        assert pending.path.parent == tmp_path and pending.path.name.startswith(".")
        pending.commit(tmp_path / "abc.fw.bin")
    assert (tmp_path / "abc.fw.bin").read_bytes() == b"firmware"

    with pytest.raises(RuntimeError), PendingFile(tmp_path) as pending:
        pending.file.write(b"half")
        raise RuntimeError("copy failed")
    assert sorted(os.listdir(tmp_path)) == ["abc.fw.bin"]


def test_write_atomic_into_a_missing_folder_fails_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "absent" / "f", b"x")
    assert os.listdir(tmp_path) == []


def test_fsync_helpers_accept_files_and_folders(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    fsync_file(tmp_path / "f")
    fsync_dir(tmp_path)
    with pytest.raises(NotADirectoryError):
        fsync_dir(tmp_path / "f")
