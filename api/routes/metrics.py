"""GET /metrics: every process's Prometheus series, plus queue depths read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

import shared.metrics  # noqa: F401  (registers the series, so they show before first use)
from shared.backends import configured_backends
from shared.metrics_setup import multiprocess_enabled
from shared.queues import ORCHESTRATOR_QUEUE, WEBHOOK_QUEUE, llm_queue
from shared.settings import Settings

router = APIRouter(tags=["operations"])
# kombu's Redis transport keeps one list per priority step next to the plain queue key.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_names(settings: Settings) -> list[str]:
    """Every queue the system uses with the configured backends."""
    names = [ORCHESTRATOR_QUEUE, WEBHOOK_QUEUE]
    for backend in configured_backends(settings):
        names += [llm_queue(backend), llm_queue(backend, "batch")]
    return names


class QueueDepthCollector(Collector):
    """Messages waiting per queue (Redis LLEN with the broker key prefix), read when scraped."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings, self.client = settings, client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "llmjobs_queue_depth", "Messages waiting in a broker queue", labels=["queue"]
        )
        up = 1.0
        try:
            pipe = self.client.pipeline(transaction=False)
            names = queue_names(self.settings)
            prefix = self.settings.broker_key_prefix
            for name in names:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(f"{prefix}{name}{suffix}")
            lengths = pipe.execute()
            step = len(_PRIORITY_SUFFIXES)
            for i, name in enumerate(names):
                family.add_metric([name], float(sum(lengths[i * step : (i + 1) * step])))
        except redis.RedisError:
            up = 0.0  # the scrape still answers; the broker's absence is itself a series
        yield family
        broker = GaugeMetricFamily("llmjobs_broker_up", "The broker answered this scrape")
        broker.add_metric([], up)
        yield broker


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    settings: Settings = request.app.state.settings
    registry = CollectorRegistry()
    if multiprocess_enabled():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY  # a single process: its own series
    payload = generate_latest(registry)
    depth = CollectorRegistry()
    depth.register(QueueDepthCollector(settings, request.app.state.redis))
    payload += generate_latest(depth)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
