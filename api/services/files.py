"""Uploading, reading, listing and deleting a tenant's files."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path, PureWindowsPath
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.schemas.files import FileObject
from shared import audit, storage
from shared.archives import ArchiveError, ArchiveLimits, ensure_bounded
from shared.db import after_commit
from shared.documents import sniff_type
from shared.ids import new_id
from shared.models import StoredFile
from shared.settings import Settings

_HEAD_BYTES = 8192
_TEXT_KINDS = ("txt", "md", "csv", "html")
_ZIP_KINDS = ("docx", "xlsx", "zip")
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "zip": "application/zip",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def display_name(raw: str | None) -> str:
    """The client's file name for display only: last path part, no control chars, ≤ 255."""
    name = PureWindowsPath(raw or "").name  # handles both / and \ separators
    name = _CONTROL.sub("", unicodedata.normalize("NFC", name)).strip()
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 250 - len(ext)] + dot + ext) if dot and len(ext) <= 16 else name[:255]
    return name or "upload"


def media_type(kind: str, filename: str) -> str:
    """Content type of a sniffed kind (JSONL keeps its own type)."""
    if kind == "txt" and filename.lower().endswith(".jsonl"):
        return "application/jsonl"
    return MEDIA_TYPES.get(kind, "application/octet-stream")


def check_file(
    settings: Settings,
    tenant_id: str,
    stream: BinaryIO,
    filename: str | None,
    purpose: str,
) -> StoredFile:
    """Store an upload under a generated path and check it (413/422); the row is not added."""
    name = display_name(filename)
    file_id = new_id("file")
    try:
        path, size, sha256 = storage.save_upload(
            settings.data_dir, tenant_id, file_id, stream, max_bytes=settings.max_upload_bytes
        )
    except storage.UploadTooLarge as exc:
        raise ApiError(413, str(exc), param="file") from None
    try:
        if size == 0:
            raise ApiError(422, "the uploaded file is empty", param="file")
        with path.open("rb") as fh:
            kind = sniff_type(fh.read(_HEAD_BYTES), name)
        if purpose == "batch" and kind not in _TEXT_KINDS:
            raise ApiError(
                422,
                f"a batch file must be JSONL text; this one looks like {kind}",
                param="file",
            )
        if kind in _ZIP_KINDS:
            _check_archive(settings, path)
    except ApiError:
        storage.delete(settings.data_dir, tenant_id, file_id)
        raise
    return StoredFile(
        id=file_id,
        tenant_id=tenant_id,
        purpose=purpose,
        filename=name,
        bytes=size,
        content_type=media_type(kind, name),
        storage_key=str(Path("files") / tenant_id / file_id),
        sha256=sha256,
    )



def add_file(session: Session, row: StoredFile) -> FileObject:
    """Record a checked upload and who created it."""
    session.add(row)
    session.flush()
    audit.record(session, "file.create", "file", row.id)
    return file_object(row)


def _check_archive(settings: Settings, path: Path) -> None:
    try:
        ensure_bounded(path, ArchiveLimits.from_settings(settings))
    except ArchiveError as exc:
        raise ApiError(exc.status, exc.message, param="file") from None


def get_file(session: Session, tenant_id: str, file_id: str, param: str = "file_id") -> StoredFile:
    """The tenant's file; 404 for unknown ids and other tenants' files alike."""
    row = session.scalar(
        select(StoredFile).where(StoredFile.id == file_id, StoredFile.tenant_id == tenant_id)
    )
    if row is None:
        raise ApiError(404, f"no file {file_id!r}", param=param)
    return row


def content_path(settings: Settings, row: StoredFile) -> Path:
    """Where a recorded file's bytes are; 404 if they vanished from the disk."""
    path = storage.path_for(settings.data_dir, row.tenant_id, row.id)
    if not path.is_file():
        raise ApiError(404, f"the content of file {row.id!r} is no longer stored", param="file_id")
    return path


def list_files(
    session: Session,
    tenant_id: str,
    *,
    purpose: str | None,
    limit: int,
    after: str | None,
    order: str,
) -> tuple[list[StoredFile], bool]:
    """A page of the tenant's files (ids are time-ordered, so they are the cursor)."""
    query = select(StoredFile).where(StoredFile.tenant_id == tenant_id)
    if purpose:
        query = query.where(StoredFile.purpose == purpose)
    if order == "asc":
        query = query.where(StoredFile.id > after) if after else query
        query = query.order_by(StoredFile.id.asc())
    else:
        query = query.where(StoredFile.id < after) if after else query
        query = query.order_by(StoredFile.id.desc())
    rows = list(session.scalars(query.limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def delete_file(session: Session, settings: Settings, tenant_id: str, file_id: str) -> None:
    """Forget the file; its bytes are removed once the deletion is committed."""
    row = get_file(session, tenant_id, file_id)
    session.delete(row)
    session.flush()
    audit.record(session, "file.delete", "file", row.id)

    def remove() -> None:
        storage.delete(settings.data_dir, tenant_id, file_id)

    after_commit(session, remove)


def file_object(row: StoredFile) -> FileObject:
    """The OpenAI-shaped view of a file."""
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=int(row.created_at.timestamp()),
        filename=row.filename,
        purpose=row.purpose,
    )


def document_source(session: Session, tenant_id: str, file_id: str) -> dict[str, Any]:
    """Job columns for an analysis of a stored file; 422 unless it is the tenant's analysis file."""
    param = "input.document.file_id"
    row = session.scalar(
        select(StoredFile).where(StoredFile.id == file_id, StoredFile.tenant_id == tenant_id)
    )
    if row is None:
        raise ApiError(422, f"no file {file_id!r} for this tenant; upload it first", param=param)
    if row.purpose != "analysis":
        raise ApiError(
            422,
            f"file {file_id!r} was uploaded with purpose {row.purpose!r}; "
            "upload documents with purpose 'analysis'",
            param=param,
        )
    # The planner reads the bytes by tenant and id; the name only hints the type to extraction.
    return {"input_file_id": row.id, "plan": {"document": {"file_id": row.id,
                                                            "filename": row.filename}}}
