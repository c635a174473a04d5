"""The FastAPI application: thin routes over services, built by `create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from api.routes import health, jobs
from shared.celery_app import get_celery
from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """An app with its engine, sessions and broker connection built at start-up."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
        app.state.celery = get_celery()
        yield
        engine.dispose()

    app = FastAPI(
        title="llm-jobs",
        version="1.0.0",
        description="Queue LLM jobs (chat, summarize, analyze, spreadsheets) on local and cloud "
        "backends; poll them or get a signed webhook.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        json_limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes,
    )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(jobs.router)
    return app
