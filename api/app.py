"""The FastAPI application: thin routes over services, built by `create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.connector import router as connector_router
from api.dbgate import DbGate
from api.errors import install_error_handlers
from api.idempotency import IdempotencyMiddleware
from api.middleware import BodyLimitMiddleware, RateLimitHeadersMiddleware, RequestIdMiddleware
from api.openapi import install_openapi
from api.ratelimit import RateLimiter
from api.routes import actions as actions_routes
from api.routes import admin as admin_routes
from api.routes import files, health, jobs, openai_batches, openai_chat, webhooks
from api.routes import job_stream as job_stream_routes
from api.routes import metrics as metrics_routes
from api.routes import models as models_routes
from api.routes import sheets as sheets_routes
from api.services.models import ModelCatalog
from api.waiters import JobWaiters
from shared.celery_app import get_celery
from shared.db import make_engine, make_sessionmaker
from shared.jobs.channel import publisher
from shared.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """An app with its engine, sessions and broker connection built at start-up."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Two connections per slot: a request's own and the short one it may open beside it.
        slots = settings.api_db_slots
        engine = make_engine(settings.database_url, pool_size=slots, max_overflow=slots)
        app.state.db_gate = DbGate(slots)
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
        app.state.celery = get_celery()
        # Rate limits are shared by every API process through the broker's Redis.
        # One quick retry: while Redis is down a request probing it waits for every attempt.
        app.state.redis = redis.Redis.from_url(
            settings.broker_url, socket_timeout=2, socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 1),
        )
        app.state.limiter = RateLimiter(app.state.redis, settings.broker_key_prefix,
                                        settings.rate_limit_on_redis_down)
        # One subscriber per process wakes every request waiting for a job's end.
        app.state.waiters = JobWaiters(settings)
        app.state.waiters.start()
        # Job ends this process causes (a cancel) are announced without a first-use connect.
        publisher(settings)
        app.state.model_catalog = ModelCatalog(settings)
        yield
        await app.state.waiters.stop()
        app.state.redis.close()
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
    # Inside the body limit, so an idempotent request's body is bounded before it is read.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        json_limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes,
    )
    app.add_middleware(RateLimitHeadersMiddleware)
    if settings.cors_origin_list:
        # Off unless origins are listed (browser clients such as an Excel add-in).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key",
                           "X-Request-ID"],
            expose_headers=["Location", "Retry-After", "X-Request-ID", "RateLimit-Limit",
                            "RateLimit-Remaining", "RateLimit-Reset", "Idempotent-Replayed"],
            max_age=600,
        )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(actions_routes.router)
    app.include_router(connector_router)
    app.include_router(admin_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(sheets_routes.router)
    app.include_router(jobs.router)
    app.include_router(models_routes.router)
    app.include_router(job_stream_routes.router)
    app.include_router(files.router)
    app.include_router(webhooks.router)
    app.include_router(openai_chat.router)
    app.include_router(openai_batches.router)
    install_openapi(app)
    return app
