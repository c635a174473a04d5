"""The API process's one subscriber: wakes a job's waiters, relays live events, reconnects."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import redis

from api.waiters import JobWaiters, wait_event
from shared.jobs.channel import job_channel, publish_ended
from shared.settings import Settings
from tests.fixtures.services import broker_namespace


def _settings() -> Settings:
    url, prefix = broker_namespace()
    return Settings(redis_url=url, broker_key_prefix=prefix)


def _subscriber_ids(settings: Settings, name: str) -> list[str]:
    client = redis.Redis.from_url(settings.broker_url)
    try:
        return [str(c["id"]) for c in client.client_list(_type="pubsub") if c["name"] == name]
    finally:
        client.close()


async def _until(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_an_announced_end_wakes_only_that_jobs_waiters() -> None:
    settings = _settings()

    async def scenario() -> None:
        waiters = JobWaiters(settings)
        waiters.start()
        try:
            assert await wait_event(waiters.connected, 10)
            with waiters.watch("job_a") as a, waiters.watch("job_a") as a2, \
                    waiters.watch("job_b") as b:
                for watch in (a, a2, b):
                    watch.ended.clear()  # a connect wakes everyone; start from quiet
                await asyncio.to_thread(publish_ended, settings, "job_a")
                assert await wait_event(a.ended, 10)
                assert await wait_event(a2.ended, 10)
                assert not await wait_event(b.ended, 0.5)
        finally:
            await waiters.stop()

    asyncio.run(scenario())


def test_live_events_of_a_followed_job_arrive_on_the_shared_connection() -> None:
    settings = _settings()
    channel = job_channel(settings.broker_key_prefix, "job_live")

    async def scenario() -> None:
        waiters = JobWaiters(settings)
        waiters.start()
        publisher = redis.Redis.from_url(settings.broker_url)
        try:
            assert await wait_event(waiters.connected, 10)
            with waiters.watch("job_live", channel) as watch:
                # The subscription is sent in the background: publish until it is heard.
                deadline = time.monotonic() + 10
                while watch.deltas.empty():
                    assert time.monotonic() < deadline, "no live event relayed"
                    publisher.publish(channel, json.dumps({"content": "hi"}))
                    await asyncio.sleep(0.05)
                assert watch.deltas.get_nowait() == {"content": "hi"}
            # Nobody follows the job any more: the process stops listening to its channel.
            await _until(lambda: publisher.pubsub_numsub(channel)[0][1] == 0)
        finally:
            publisher.close()
            await waiters.stop()

    asyncio.run(scenario())


def test_a_killed_subscriber_reconnects_and_wakes_every_waiter_to_re_read() -> None:
    settings = _settings()

    async def scenario() -> None:
        waiters = JobWaiters(settings)
        waiters.start()
        admin = redis.Redis.from_url(settings.broker_url)
        try:
            assert await wait_event(waiters.connected, 10)
            [first] = _subscriber_ids(settings, waiters.client_name)
            with waiters.watch("job_k") as watch:
                watch.ended.clear()
                admin.client_kill_filter(_id=first)
                # An end announced while the connection was down would be lost: the waiter is
                # told to re-read once the subscriber is back.
                assert await wait_event(watch.ended, 10)
                await _until(lambda: _subscriber_ids(settings, waiters.client_name) != [])
                assert _subscriber_ids(settings, waiters.client_name) != [first]
                watch.ended.clear()
                await asyncio.to_thread(publish_ended, settings, "job_k")
                assert await wait_event(watch.ended, 10)
        finally:
            admin.close()
            await waiters.stop()

    asyncio.run(scenario())
