"""GET requests read without the write lock yet still record when a key was last used."""

from __future__ import annotations

from sqlalchemy import select

from shared.keys import hash_key
from shared.models import ApiKey
from tests.fixtures.stack import Stack


def test_get_records_the_keys_last_use_outside_its_read_transaction(stack: Stack) -> None:
    secret = stack.new_key()
    with stack.sessions() as session:
        key = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(secret))).one()
        assert key.last_used_at is None
    with stack.client(secret) as client:
        response = client.get("/v1/jobs")
        assert response.status_code == 200, response.text
        # The job list is read in a read-only transaction; answering must not have failed.
        assert response.json()["data"] == []
    with stack.sessions() as session:
        used = session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key.id))
    assert used is not None
