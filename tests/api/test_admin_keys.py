"""Key management: scopes, expiry, revocation, rotation with a grace period, the CLI, audit."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select, text, update

from shared.db import session_scope
from shared.keys import hash_key
from shared.models import ApiKey, utcnow
from tests.conftest import _shared_stack
from tests.fixtures.stack import REPO, Stack


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_admin_creates_lists_rotates_and_revokes_keys_in_its_tenant(stack: Stack) -> None:
    admin = stack.new_key(unique("adm"))
    with stack.client(admin) as client:
        created = client.post("/v1/admin/keys", json={"name": "flow", "scopes": ["jobs:read"],
                                                     "rate_limit_per_min": 50})
        assert created.status_code == 201, created.text
        new = created.json()
        assert new["secret"].startswith("lj_live_")
        assert new["status"] == "active"
        assert new["rate_limit_per_min"] == 50

        listed = client.get("/v1/admin/keys").json()["data"]
        assert {k["id"] for k in listed} >= {new["id"]}
        assert all("secret" not in k for k in listed)
        assert new["secret"] not in client.get("/v1/admin/keys").text

        with stack.client(new["secret"]) as reader:
            assert reader.get("/v1/jobs").status_code == 200
            assert reader.get("/v1/jobs").headers["ratelimit-limit"] == "50"
            denied = reader.post("/v1/jobs", json={})
            assert denied.status_code == 403
            assert denied.json()["error"]["type"] == "permission"
            assert reader.get("/v1/admin/keys").status_code == 403

        rotated = client.post(f"/v1/admin/keys/{new['id']}/rotate", json={"grace_s": 3600})
        assert rotated.status_code == 200, rotated.text
        body = rotated.json()
        expires = dt.datetime.fromisoformat(body["old"]["expires_at"])
        assert dt.timedelta(minutes=59) < expires - utcnow() <= dt.timedelta(hours=1)
        assert body["new"]["scopes"] == ["jobs:read"]
        assert body["new"]["rate_limit_per_min"] == 50
        for secret in (new["secret"], body["new"]["secret"]):  # both work during the grace
            with stack.client(secret) as c:
                assert c.get("/v1/jobs").status_code == 200

        revoked = client.post(f"/v1/admin/keys/{body['new']['id']}/revoke")
        assert revoked.status_code == 200
        assert revoked.json()["status"] == "revoked"
        with stack.client(body["new"]["secret"]) as c:
            assert c.get("/v1/jobs").status_code == 401

        actions = [e["action"] for e in client.get("/v1/admin/audit").json()["data"]]
        assert actions[:3] == ["key.revoke", "key.rotate", "key.create"]

    for secret in (admin, new["secret"], body["new"]["secret"]):
        assert secret not in stack.logs("api")  # keys are never logged
    other_admin = stack.new_key(unique("adm2"))
    with stack.client(other_admin) as other:
        assert other.post(f"/v1/admin/keys/{new['id']}/revoke").status_code == 404
        assert other.post(f"/v1/admin/keys/{new['id']}/rotate").status_code == 404
        assert new["id"] not in other.get("/v1/admin/keys").text


def test_expired_key_is_refused(stack: Stack) -> None:
    secret = stack.new_key(unique("exp"))
    with session_scope(stack.sessions) as session:
        session.execute(update(ApiKey).where(ApiKey.key_hash == hash_key(secret))
                        .values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    with stack.client(secret) as client:
        answer = client.get("/v1/jobs")
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "authentication"


def _cli(stack: Stack, *args: str) -> str:
    env = {**stack.env, "PYTHONPATH": str(REPO), "COLUMNS": "250"}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "keys", *args],
        env=env, cwd=stack.workdir, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_cli_create_list_rotate_revoke(stack: Stack) -> None:
    tenant = unique("cli")
    out = _cli(stack, "create", "--tenant", tenant, "--name", "ops", "--scope", "jobs:read",
               "--expires-in", "30d", "--rate-limit", "77")
    secret = next(w for w in out.split() if w.startswith("lj_live_"))
    with stack.sessions() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
        assert key is not None
        assert key.rate_limit_per_min == 77
        assert key.scopes == ["jobs:read"]
        assert key.expires_at is not None
        assert key.expires_at > utcnow() + dt.timedelta(days=29)
    listing = _cli(stack, "list", "--tenant", tenant)
    assert key.id in listing
    assert secret not in listing
    assert "active" in listing

    rotated = _cli(stack, "rotate", key.id, "--grace", "2h")
    new_secret = next(w for w in rotated.split() if w.startswith("lj_live_"))
    with stack.client(secret) as old, stack.client(new_secret) as new:
        assert old.get("/v1/jobs").status_code == 200
        assert new.get("/v1/jobs").status_code == 200
    with stack.sessions() as session:
        old_key = session.get(ApiKey, key.id)
        assert old_key is not None
        assert old_key.expires_at is not None
        assert old_key.expires_at < utcnow() + dt.timedelta(hours=2, minutes=1)

    policy = _cli(stack, "tenant", "--tenant", tenant, "--tokens-per-day", "5000",
                  "--max-running-jobs", "2", "--redact-pii")
    assert "tokens/day 5000" in policy
    assert "running jobs 2" in policy
    assert "PII redaction on" in policy
    with stack.client(secret) as reader:
        assert reader.get("/v1/admin/tenant").status_code == 403  # jobs:read only

    _cli(stack, "revoke", key.id)
    with stack.client(secret) as old:
        assert old.get("/v1/jobs").status_code == 401
    assert os.environ.get("LLMJOBS_DATABASE_URL") != stack.database_url  # only the child used it


def _key_id(stack: Stack, secret: str) -> str:
    with stack.sessions() as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(secret)))
    assert key_id is not None
    return key_id


def _live_admins(stack: Stack, tenant_id_of: str) -> list[str]:
    with stack.sessions() as session:
        tenant_id = session.scalar(select(ApiKey.tenant_id).where(ApiKey.id == tenant_id_of))
        now = utcnow()
        return [k.id for k in session.scalars(select(ApiKey).where(
            ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None)))
            if "admin" in k.scopes and (k.expires_at is None or k.expires_at > now)]


def _assert_conflict(answer: httpx.Response) -> None:
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["type"] == "conflict"
    assert error["param"] == "key_id"
    assert error["request_id"].startswith("req_")


def test_the_last_admin_key_of_a_tenant_cannot_be_revoked(stack: Stack) -> None:
    first = stack.new_key(unique("last"))
    first_id = _key_id(stack, first)
    with stack.client(first) as client:
        refused = client.post(f"/v1/admin/keys/{first_id}/revoke")
        _assert_conflict(refused)
        assert "last working admin key" in refused.json()["error"]["message"]
        assert client.get("/v1/admin/keys").status_code == 200  # still works

        second = client.post("/v1/admin/keys", json={"name": "b", "scopes": ["admin"]}).json()
        assert client.post(f"/v1/admin/keys/{second['id']}/revoke").status_code == 200
        _assert_conflict(client.post(f"/v1/admin/keys/{first_id}/revoke"))

        # A rotated-away key expires: it does not stand in for the key that replaced it.
        rotated = client.post(f"/v1/admin/keys/{first_id}/rotate", json={"grace_s": 3600})
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["new"]
    with stack.client(new["secret"]) as client:
        _assert_conflict(client.post(f"/v1/admin/keys/{new['id']}/revoke"))
        assert client.post(f"/v1/admin/keys/{first_id}/revoke").status_code == 200
        _assert_conflict(client.post(f"/v1/admin/keys/{new['id']}/revoke"))
    assert _live_admins(stack, first_id) == [new["id"]]


def _revoke_each_other(stack: Stack, secrets_: list[str], ids: list[str]) -> list[httpx.Response]:
    barrier = threading.Barrier(2)

    def revoke_other(mine: int) -> httpx.Response:
        with stack.client(secrets_[mine]) as client:
            barrier.wait()
            return client.post(f"/v1/admin/keys/{ids[1 - mine]}/revoke")

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(revoke_other, (0, 1)))


def test_two_admins_revoking_each_other_at_once_leave_one(any_stack: Stack) -> None:
    outcomes: set[str] = set()
    for round_ in range(6):
        tenant = unique("pair")
        secrets_ = [any_stack.new_key(tenant) for _ in range(2)]
        ids = [_key_id(any_stack, s) for s in secrets_]
        if round_ % 2:
            # Keys used a moment ago: the requests record no use, so only the revocation's
            # own locking stands between them (otherwise PostgreSQL may break a lock cycle).
            with session_scope(any_stack.sessions) as session:
                session.execute(update(ApiKey).where(ApiKey.id.in_(ids))
                                .values(last_used_at=utcnow()))
        answers = _revoke_each_other(any_stack, secrets_, ids)
        codes = sorted(a.status_code for a in answers)
        # The loser is refused (409), or finds its own key already revoked (401) when the
        # winner committed before it authenticated.
        assert codes[0] == 200, [a.text for a in answers]
        assert codes[1] in (401, 409), [a.text for a in answers]
        assert len(_live_admins(any_stack, ids[0])) == 1
        loser = max(answers, key=lambda a: a.status_code)
        outcomes.add(f"{loser.status_code} {loser.json()['error']['message'][:40]}")
    print(f"\nlosers' answers: {sorted(outcomes)}")


def test_cli_refuses_to_revoke_the_last_admin_key(stack: Stack) -> None:
    tenant = unique("cliadm")
    out = _cli(stack, "create", "--tenant", tenant, "--scope", "admin")
    secret = next(w for w in out.split() if w.startswith("lj_live_"))
    key_id = _key_id(stack, secret)
    env = {**stack.env, "PYTHONPATH": str(REPO), "COLUMNS": "250"}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "keys", "revoke", key_id],
        env=env, cwd=stack.workdir, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "last working admin key" in done.stderr
    assert "revoked." not in done.stdout
    with stack.client(secret) as client:
        assert client.get("/v1/admin/keys").status_code == 200

    _cli(stack, "create", "--tenant", tenant, "--scope", "admin")
    assert f"key {key_id} revoked." in _cli(stack, "revoke", key_id)


@pytest.fixture
def pg_stack(stacks: dict[str, Stack], request: pytest.FixtureRequest) -> Stack:
    """The shared stack on PostgreSQL."""
    return _shared_stack("postgres", stacks, request)


def test_revocations_held_past_their_checks_still_leave_one_admin(pg_stack: Stack) -> None:
    tenant = unique("held")
    secrets_ = [pg_stack.new_key(tenant) for _ in range(2)]
    ids = [_key_id(pg_stack, s) for s in secrets_]
    with session_scope(pg_stack.sessions) as session:
        session.execute(update(ApiKey).where(ApiKey.id.in_(ids)).values(last_used_at=utcnow()))
    # Holding both key rows stalls each revocation at its write, after it has looked at the
    # other key: only the revocations' own serialisation can stop both from going through.
    holder = pg_stack.sessions()
    holder.execute(select(ApiKey.id).where(ApiKey.id.in_(ids)).with_for_update())

    def revoke_other(mine: int) -> httpx.Response:
        with pg_stack.client(secrets_[mine]) as client:
            return client.post(f"/v1/admin/keys/{ids[1 - mine]}/revoke")

    with ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(revoke_other, i) for i in (0, 1)]
        deadline = time.monotonic() + 30
        while _waiting_on_locks(pg_stack) < 2:
            assert time.monotonic() < deadline, "the revocations never reached the locks"
            assert not any(p.done() for p in pending), [p.result().text for p in pending]
            time.sleep(0.05)
        holder.rollback()
        holder.close()
        answers = [p.result() for p in pending]
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409], [a.text for a in answers]
    assert "last working admin key" in max(answers, key=lambda a: a.status_code).text
    assert len(_live_admins(pg_stack, ids[0])) == 1


def _waiting_on_locks(stack: Stack) -> int:
    with stack.sessions() as session:
        return int(session.scalar(text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'")) or 0)
