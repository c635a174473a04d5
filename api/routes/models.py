"""GET /v1/models: every backend's models in OpenAI's list shape."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import JobsRead
from api.schemas.common import error_responses
from api.schemas.models import ModelList
from api.services.models import ModelCatalog

router = APIRouter(prefix="/v1", tags=["openai"])



@router.get(
    "/models",
    response_model=ModelList,
    summary="List models",
    description="Models of every configured backend as `backend/model` (OpenAI's list shape). "
    "Cached for a few seconds; a backend that is down is left out.",
    operation_id="ListModels",
    responses=error_responses(401),
)
async def list_models(request: Request, caller: JobsRead) -> ModelList:
    state = request.app.state
    catalog: ModelCatalog = state.model_catalog
    return await catalog.listing()
