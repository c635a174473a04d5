"""Key management: scopes, expiry, revocation, rotation with a grace period, the CLI, audit."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid

from sqlalchemy import select, update

from shared.db import session_scope
from shared.keys import hash_key
from shared.models import ApiKey, utcnow
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
