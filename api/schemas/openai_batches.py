"""Bodies of /v1/batches, exactly in the OpenAI Batch API's shapes (the OpenAI SDK reads them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

BatchStatus = Literal[
    "validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling",
    "cancelled",
]


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_file_id: str = Field(max_length=40, description="A file uploaded with purpose batch")
    endpoint: Literal["/v1/chat/completions"] = Field(description="The endpoint of every line")
    completion_window: Literal["24h"] = "24h"
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(
        None, max_length=16, description="Up to 16 string pairs, echoed back"
    )


class BatchError(BaseModel):
    code: str | None
    message: str | None
    param: str | None = None
    line: int | None = Field(None, description="1-based line of the input file")


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchRequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class Batch(BaseModel):
    """A batch, as OpenAI's Batch object."""

    id: str = Field(description="batch_…")
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int = Field(description="Unix seconds, as every *_at field")
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None = None
    job_id: str = Field(description="llm-jobs: the job running this batch (see /v1/jobs)")


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool
