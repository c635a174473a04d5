"""kombu's Redis transport, made to survive a broker restart (celery_app uses it for redis://).

kombu 5.7: when the broker goes away while a channel waits in BRPOP with unacked messages,
Celery's consumer closes the connection twice (collect(), then close()). The first close
fails half-way on the dead socket but clears the transport's `client`; the second one tries
to restore the unacked messages, builds a new connection pool from that `client` and dies
with `AttributeError: 'NoneType' object has no attribute 'hostname'`, which Celery treats as
unrecoverable: the whole process exits. Raising a connection error instead lets kombu's
close paths ignore it and Celery reconnect as it does for any other broker outage; the
unrestored messages stay in the broker's unacked set (back after the visibility timeout)
and the orchestrator's sweep re-sends the work they stood for long before that.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    """A Redis channel that fails like a lost connection once its connection was closed."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was already closed")
        params: dict[str, Any] = super()._connparams(  # type: ignore[no-untyped-call]
            asynchronous=asynchronous
        )
        return params


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above."""

    Channel = Channel
