"""/v1/files: upload, read, download, list and delete files (OpenAI Files API shapes)."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse

from api.deps import FilesWrite, JobsRead, SessionDep, SettingsDep, commit_in_new_slot, leave_db
from api.schemas.common import error_responses
from api.schemas.files import FileDeleted, FileList, FileObject, FilePurpose
from api.services import files as service
from shared import storage

router = APIRouter(prefix="/v1/files", tags=["files"])

# A download carries the type sniffed at upload, so the document lists every one it can be.
_CONTENT_TYPES: dict[str, object] = {
    t.split(";")[0]: {"schema": {"type": "string", "format": "binary"}}
    for t in (*service.MEDIA_TYPES.values(), "application/jsonl", "application/octet-stream")
}


@router.post(
    "",
    response_model=FileObject,
    summary="Upload a file",
    description="Multipart upload (`file`, `purpose` = analysis or batch). The stored path never "
    "uses the client's file name; the content type is sniffed from the bytes.",
    operation_id="UploadFile",
    responses=error_responses(400, 401, 413, 422),
)
async def upload_file(
    request: Request,
    file: Annotated[UploadFile, File(description="The document or JSONL file")],
    purpose: Annotated[FilePurpose, Form(description="analysis or batch")],
    caller: FilesWrite,
    session: SessionDep,
    settings: SettingsDep,
) -> FileObject:
    # Checking an archive may take a while: no transaction or database slot is held meanwhile.
    await leave_db(session)
    row = await anyio.to_thread.run_sync(
        service.check_file, settings, caller.tenant_id, file.file, file.filename, purpose
    )

    return await commit_in_new_slot(
        request, session, lambda: service.add_file(session, row),
        lambda: storage.delete(settings.data_dir, caller.tenant_id, row.id),
    )


@router.get(
    "",
    response_model=FileList,
    summary="List files",
    description="The tenant's files, newest first by default, with an `after` cursor.",
    operation_id="ListFiles",
    responses=error_responses(401, 422),
)
def list_files(
    caller: JobsRead,
    session: SessionDep,
    purpose: FilePurpose | Literal["batch_input", "batch_output"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    after: Annotated[str | None, Query(max_length=40, description="Last id of a page")] = None,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    rows, has_more = service.list_files(
        session, caller.tenant_id, purpose=purpose, limit=limit, after=after, order=order
    )
    data = [service.file_object(r) for r in rows]
    return FileList(
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.get(
    "/{file_id}",
    response_model=FileObject,
    summary="Get a file",
    operation_id="GetFile",
    responses=error_responses(401, 404),
)
def get_file(file_id: str, caller: JobsRead, session: SessionDep) -> FileObject:
    return service.file_object(service.get_file(session, caller.tenant_id, file_id))


@router.get(
    "/{file_id}/content",
    response_class=FileResponse,
    summary="Download a file",
    description="The file's bytes with the sniffed content type.",
    operation_id="GetFileContent",
    responses={200: {"content": _CONTENT_TYPES, "description": "The bytes"},
               **error_responses(401, 404)},
)
def get_file_content(
    file_id: str, caller: JobsRead, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    row = service.get_file(session, caller.tenant_id, file_id)
    return FileResponse(
        service.content_path(settings, row),
        media_type=row.content_type,
        filename=row.filename,
    )


@router.delete(
    "/{file_id}",
    response_model=FileDeleted,
    summary="Delete a file",
    operation_id="DeleteFile",
    responses=error_responses(401, 404),
)
def delete_file(
    file_id: str, caller: FilesWrite, session: SessionDep, settings: SettingsDep
) -> FileDeleted:
    service.delete_file(session, settings, caller.tenant_id, file_id)
    return FileDeleted(id=file_id)
