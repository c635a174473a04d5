"""File storage: paths from ids only, size limit while streaming, atomic writes, safe delete."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shared import storage


def test_save_upload_streams_to_the_id_path(tmp_path: Path) -> None:
    chunks = [b"a" * 1000, b"b" * 10]
    path, size, digest = storage.save_upload(tmp_path, "tenant_1", "file_1", iter(chunks))
    assert path == storage.path_for(tmp_path, "tenant_1", "file_1")
    assert path.read_bytes() == b"".join(chunks)
    assert size == 1010
    assert digest == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_too_large_upload_keeps_nothing(tmp_path: Path) -> None:
    endless = (b"x" * 1024 for _ in range(10_000))
    with pytest.raises(storage.UploadTooLarge):
        storage.save_upload(tmp_path, "t", "f", endless, max_bytes=4096)
    folder = storage.path_for(tmp_path, "t", "f").parent
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".", "a" * 65])
def test_unsafe_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        storage.path_for(tmp_path, bad, "file_1")
    with pytest.raises(ValueError, match="unsafe"):
        storage.path_for(tmp_path, "t", bad)


def test_delete_is_safe_to_repeat(tmp_path: Path) -> None:
    storage.save_upload(tmp_path, "t", "f", [b"data"])
    assert storage.delete(tmp_path, "t", "f") is True
    assert storage.delete(tmp_path, "t", "f") is False
