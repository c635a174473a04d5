"""Bodies of /v1/files, in the OpenAI Files API's shapes (the OpenAI SDK reads them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FilePurpose = Literal["analysis", "batch"]


class FileObject(BaseModel):
    """An uploaded file, as OpenAI's file object."""

    id: str = Field(description="file_…")
    object: Literal["file"] = "file"
    bytes: int
    created_at: int = Field(description="Unix seconds, as OpenAI")
    filename: str
    # Uploads say analysis or batch; files the system writes say batch_input or batch_output.
    purpose: FilePurpose | Literal["batch_input", "batch_output"]
    status: Literal["processed"] = "processed"


class FileList(BaseModel):
    """A page of files, as OpenAI's cursor list."""

    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
