"""/v1/webhooks: subscribe, list, unsubscribe, rotate secrets, inspect and redeliver."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response

from api.deps import SessionDep, SettingsDep, WebhooksManage
from api.schemas.common import error_responses
from api.schemas.webhooks import (
    DeliveryList,
    DeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookSecret,
)
from api.services import webhooks as service
from api.urls import base_url
from shared.webhooks.events import tenant_secret

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])



@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    summary="Subscribe to job events",
    description="Register a URL that receives signed POSTs (Standard Webhooks) when jobs end. "
    "Answers 201 with Location; the signing secret is shown only in this answer.",
    operation_id="CreateWebhook",
    responses=error_responses(401, 403, 422),
)
def create_webhook(
    request: Request,
    response: Response,
    body: Annotated[WebhookCreate, Body()],
    caller: WebhooksManage,
    session: SessionDep,
    settings: SettingsDep,
) -> WebhookCreated:
    created = service.create(session, settings, caller.tenant_id, body)
    response.headers["Location"] = f"{base_url(request)}/v1/webhooks/{created.id}"
    return created


@router.get(
    "",
    response_model=WebhookList,
    summary="List webhook subscriptions",
    description="The tenant's subscriptions, oldest first (secrets are never shown again).",
    operation_id="ListWebhooks",
    responses=error_responses(401, 403),
)
def list_webhooks(caller: WebhooksManage, session: SessionDep) -> WebhookList:
    return WebhookList(data=[service.out(s) for s in service.list_all(session, caller.tenant_id)])


@router.get(
    "/callback-secret",
    response_model=WebhookSecret,
    summary="Get the callback signing secret",
    description="The tenant's secret that signs deliveries to a job's own callback_url "
    "(created on first use). Verify those POSTs with it like any Standard Webhook.",
    operation_id="GetCallbackSecret",
    responses=error_responses(401, 403),
)
def get_callback_secret(caller: WebhooksManage, session: SessionDep) -> WebhookSecret:
    return WebhookSecret(secret=tenant_secret(session, caller.tenant_id))


@router.get(
    "/{webhook_id}",
    response_model=WebhookOut,
    summary="Get a webhook subscription",
    description="One subscription, with its status (disabled ones say why).",
    operation_id="GetWebhook",
    responses=error_responses(401, 403, 404),
)
def get_webhook(webhook_id: str, caller: WebhooksManage, session: SessionDep) -> WebhookOut:
    return service.out(service.get(session, caller.tenant_id, webhook_id))


@router.delete(
    "/{webhook_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a webhook subscription",
    description="Unsubscribe. Safe to repeat: deleting again answers 204 too.",
    operation_id="DeleteWebhook",
    responses=error_responses(401, 403, 404),
)
def delete_webhook(webhook_id: str, caller: WebhooksManage, session: SessionDep) -> Response:
    service.delete(session, caller.tenant_id, webhook_id)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/rotate-secret",
    response_model=WebhookSecret,
    summary="Rotate a subscription's signing secret",
    description="Issue a new secret. For 24 hours deliveries carry two signatures, one per "
    "secret, so receivers can switch without missing events.",
    operation_id="RotateWebhookSecret",
    responses=error_responses(401, 403, 404),
)
def rotate_secret(webhook_id: str, caller: WebhooksManage, session: SessionDep) -> WebhookSecret:
    sub = service.rotate(session, caller.tenant_id, webhook_id)
    return WebhookSecret(secret=sub.secret,
                         previous_secret_expires_at=sub.previous_secret_expires_at)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryList,
    summary="List a subscription's deliveries",
    description="Deliveries newest first, each with its attempts (status code, latency, "
    "response snippet, error).",
    operation_id="ListWebhookDeliveries",
    responses=error_responses(401, 403, 404, 422),
)
def list_deliveries(
    webhook_id: str,
    caller: WebhooksManage,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=40, description="next_after of a page")] = None,
) -> DeliveryList:
    rows, has_more = service.deliveries(session, caller.tenant_id, webhook_id, limit, after)
    return DeliveryList(data=rows, has_more=has_more,
                        next_after=rows[-1].id if has_more and rows else None)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
    summary="Redeliver an event",
    description="Send a delivery again now, with the same webhook-id. 409 when the "
    "subscription is disabled.",
    operation_id="RedeliverWebhook",
    responses=error_responses(401, 403, 404, 409),
)
def redeliver(
    webhook_id: str, delivery_id: str, caller: WebhooksManage, session: SessionDep
) -> DeliveryOut:
    delivery = service.redeliver(session, caller.tenant_id, webhook_id, delivery_id)
    return service.delivery_out(session, delivery)
