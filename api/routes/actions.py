"""/v1/actions/*: one flat form per job type for low-code clients; each creates a normal job."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import ValidationError

from api.deps import JobsWrite, SessionDep, SettingsDep
from api.errors import ApiError
from api.routes import jobs as jobs_routes
from api.schemas.actions import AnalyzeAction, ChatAction, SummarizeAction
from api.schemas.common import error_responses
from api.schemas.jobs import AnalyzeJobCreate, ChatJobCreate, JobOut, SummarizeJobCreate

router = APIRouter(prefix="/v1/actions", tags=["actions"])

ASYNC_NOTE = (" Answers 202 with Location and Retry-After; poll the Location until it answers "
              "200 with the finished job.")
_RESPONSES = error_responses(401, 413, 422, 429)


def _common(body: ChatAction | SummarizeAction | AnalyzeAction) -> dict[str, Any]:
    return {"backend": body.backend, "model": body.model, "callback_url": body.callback_url}


def _build(model: type[ChatJobCreate | SummarizeJobCreate | AnalyzeJobCreate],
           data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(422, f"{param}: {first['msg']}" if param else first["msg"],
                       param=param) from None


@router.post("/chat", status_code=202, response_model=JobOut, summary="Chat",
             description="Ask a model one question." + ASYNC_NOTE, operation_id="Chat",
             responses=_RESPONSES)
def chat(response: Response, body: Annotated[ChatAction, Body()],
         caller: JobsWrite, session: SessionDep, settings: SettingsDep) -> JobOut:
    messages = [{"role": "system", "content": body.system}] if body.system else []
    messages.append({"role": "user", "content": body.prompt})
    options = {"temperature": body.temperature, "max_tokens": body.max_tokens}
    job = _build(ChatJobCreate, {"type": "chat", "input": {"messages": messages},
                                 "options": options, **_common(body)})
    return jobs_routes.create_job(response, job, caller, session, settings)


@router.post("/summarize", status_code=202, response_model=JobOut, summary="Summarize text",
             description="Summarize a text of any length (long ones in several steps)."
             + ASYNC_NOTE, operation_id="SummarizeText", responses=_RESPONSES)
def summarize(response: Response, body: Annotated[SummarizeAction, Body()],
              caller: JobsWrite, session: SessionDep, settings: SettingsDep) -> JobOut:
    data = {"text": body.text, "instructions": body.instructions, "max_words": body.max_words}
    job = _build(SummarizeJobCreate, {"type": "summarize", "input": data, **_common(body)})
    return jobs_routes.create_job(response, job, caller, session, settings)


@router.post("/analyze", status_code=202, response_model=JobOut, summary="Analyze document",
             description="Summary, sentiment, classification, key points, entities or a custom "
             "analysis of a document, with a typed result. Give exactly one of text and file_id; "
             "classification needs labels and custom needs instructions (422 otherwise)."
             + ASYNC_NOTE, operation_id="AnalyzeDocument", responses=_RESPONSES)
def analyze(response: Response, body: Annotated[AnalyzeAction, Body()],
            caller: JobsWrite, session: SessionDep, settings: SettingsDep) -> JobOut:
    document = {"text": body.text, "file_id": body.file_id}
    data = {"document": {k: v for k, v in document.items() if v is not None},
            "analysis": body.analysis, "labels": body.labels, "instructions": body.instructions}
    job = _build(AnalyzeJobCreate, {"type": "analyze", "input": data, **_common(body)})
    return jobs_routes.create_job(response, job, caller, session, settings)
