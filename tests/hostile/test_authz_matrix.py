"""The authorisation matrix: every authenticated route of tasks-api (read from the app's own route
map, so a new route is covered the day it is added) by every kind of bad or foreign credential by
{own task, another user's task, a missing id}. Each cell has one expected status, and no cell run
by anyone but the owner writes, changes or reveals the owner's data (counts and ETags compared)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from taskflow.adapters import tables
from taskflow.api import app as api
from taskflow.api.openapi import document
from tests.conftest import TEST_SECRET, auth, serve_jwks, token

OWNER, OTHER, DELETED = "alice", "mallory", "carol"
SECRET_TITLE = "alice-private-title"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

#: A valid body per request schema of the OpenAPI document; a new operation with a body needs one here.
BODIES: dict[str, dict[str, Any]] = {
    "TaskCreate": {"title": "from the matrix", "tags": ["matrix"]},
    "TaskPatch": {"title": "patched by the matrix"},
    "UserSettings": {"webhook_url": None},
    "RecurrencePreviewRequest": {"rule": "FREQ=DAILY", "due_at": "2030-01-01T09:00:00Z"},
    "ExportRequest": {"format": "json"},
}
#: A valid body per non-JSON request media type.
RAW_BODIES: dict[str, bytes] = {
    "text/calendar": b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//matrix//EN\r\n"
    b"BEGIN:VTODO\r\nUID:matrix-1\r\nSUMMARY:from the matrix\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
}


def _claims(user: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user, "iat": now, "exp": now + 600, **extra}


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


#: Credentials that must be refused with 401 whatever the route and the target.
REFUSED: dict[str, Callable[[], dict[str, str]]] = {
    "no token": lambda: {},
    "not bearer": lambda: {"Authorization": "Basic YWxpY2U6eA=="},
    "garbage": lambda: _bearer("not.a.jwt"),
    "expired": lambda: _bearer(token(OWNER, exp=int(time.time()) - 3600)),
    "wrong key": lambda: _bearer(jwt.encode(_claims(OWNER), "x" * 64, algorithm="HS256")),
    "alg none": lambda: _bearer(jwt.encode(_claims(OWNER), key="", algorithm="none")),
    "HS/RS confusion": lambda: _bearer(jwt.encode(_claims(OWNER), RSA_KEY, algorithm="RS256")),
    "no exp": lambda: _bearer(jwt.encode({"sub": OWNER}, TEST_SECRET, algorithm="HS256")),
    "empty sub": lambda: _bearer(jwt.encode(_claims(""), TEST_SECRET, algorithm="HS256")),
}
#: Valid credentials of someone who is not the owner.
FOREIGN: dict[str, Callable[[], dict[str, str]]] = {
    "another user": lambda: auth(OTHER),
    "a deleted user's id": lambda: auth(DELETED),
}


def protected_operations() -> list[tuple[str, str, str]]:
    """(endpoint, method, rule) of every route that needs a token, from the app's route map."""
    ops = []
    for rule in api._routes.iter_rules():
        if rule.endpoint in api.PUBLIC:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            ops.append((rule.endpoint, method, rule.rule))
    return ops


OPERATIONS = protected_operations()


def _openapi_path(rule: str) -> str:
    """The OpenAPI path of a route (``<task_id>`` is ``{id}``; converters such as ``path:`` dropped)."""
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{id}" if m.group(1) == "task_id" else "{" + m.group(1) + "}", rule)


def test_every_route_is_documented_and_every_documented_operation_is_a_route() -> None:
    documented = {(method.upper(), path) for path, item in document()["paths"].items() for method in item}
    routed = {(m, _openapi_path(r)) for _, m, r in OPERATIONS} | {
        (m, _openapi_path(rule.rule))
        for rule in api._routes.iter_rules()
        if rule.endpoint in api.PUBLIC
        for m in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert routed == documented


def _body(method: str, rule: str) -> dict[str, Any]:
    """The test client's keyword arguments that send a valid body for this operation."""
    op = document()["paths"][_openapi_path(rule)][method.lower()]
    if "requestBody" not in op:
        return {"json": None}
    content = op["requestBody"]["content"]
    if "application/json" not in content:
        [media] = content
        assert media in RAW_BODIES, f"{method} {rule}: add a valid {media} body to RAW_BODIES"
        return {"data": RAW_BODIES[media], "content_type": media}
    ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert ref in BODIES, f"{method} {rule}: add a valid {ref} body to BODIES"
    return {"json": BODIES[ref]}


def _snapshot(app: Any, client: Any, owner: str) -> dict[str, Any]:
    """What a user owns, as the API shows it to them and as the database counts it."""
    with app.root.engine.connect() as conn:
        counts = {
            t.name: conn.execute(select(func.count()).select_from(t).where(t.c.owner_id == owner)).scalar_one()
            for t in (tables.tasks, tables.task_tags, tables.reminders, tables.notifications, tables.audit_log)
        }
        owned = select(tables.tasks.c.id).where(tables.tasks.c.owner_id == owner)
        counts["outbox"] = conn.execute(
            select(func.count()).select_from(tables.outbox).where(tables.outbox.c.partition_key.in_(owned))
        ).scalar_one()
    listed = client.get("/v1/tasks?status=all&limit=200", headers=auth(owner)).get_json()["items"]
    return {
        "counts": counts,
        "etags": sorted((t["id"], t["version"], t["updated_at"]) for t in listed),
        "tags": client.get("/v1/tags", headers=auth(owner)).get_json(),
        "settings": client.get("/v1/settings", headers=auth(owner)).get_json(),
    }


def _create(client: Any, user: str, **fields: Any) -> dict[str, Any]:
    body = {"title": SECRET_TITLE, "tags": ["private"], "due_at": "2031-05-01T10:00:00Z", **fields}
    resp = client.post("/v1/tasks", json=body, headers=auth(user))
    assert resp.status_code == 201, resp.get_json()
    return dict(resp.get_json())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("endpoint", "method", "rule"), OPERATIONS, ids=[f"{m} {r}" for _, m, r in OPERATIONS])
def test_authorisation_matrix(make_app: Any, endpoint: str, method: str, rule: str) -> None:
    app = make_app()
    client = app.apps["tasks-api"].test_client()
    victim = _create(client, OWNER, reminders=[{"offset": "-PT15M"}])
    client.put("/v1/settings", json={"webhook_url": "http://127.0.0.1:9/hook"}, headers=auth(OWNER))
    gone = _create(client, DELETED)  # carol's only task, deleted: her id is a user with nothing left
    assert client.delete(f"/v1/tasks/{gone['id']}", headers=auth(DELETED)).status_code == 204
    app.bus.drain()
    body = _body(method, rule)
    placeholder = re.search(r"<\w+>", rule)
    has_id = placeholder is not None
    param = placeholder.group(0) if placeholder else ""

    def own(user: str) -> str:
        """A fresh object of ``user`` of the kind the route addresses."""
        if param == "<export_id>":
            resp = client.post("/v1/exports", json={"format": "json"}, headers=auth(user))
            assert resp.status_code == 202, resp.get_json()
            return str(resp.get_json()["id"])
        return str(_create(client, user)["id"])

    own_id = victim["id"] if param == "<task_id>" else own(OWNER) if has_id else ""
    foreign_id = gone["id"] if param == "<task_id>" else own("trent") if has_id else ""
    targets = {"own task": own_id, "another user's task": foreign_id, "missing id": str(uuid.uuid4())}
    if not has_id:
        targets = {"-": ""}

    def call(headers: dict[str, str], task_id: str) -> Any:
        path = rule.replace(param, task_id) if param else rule
        return client.open(path, method=method, headers=headers, **body)

    failures: list[str] = []
    before = _snapshot(app, client, OWNER)
    for cred_name, cred in {**REFUSED, **FOREIGN}.items():
        for target_name, task_id in targets.items():
            resp = call(cred(), task_id)
            app.bus.drain()
            cell = f"{method} {rule} | {cred_name} | {target_name}: {resp.status_code}"
            # The problem's "instance" echoes the path the caller sent; anything else must not name the task.
            text = resp.get_data(as_text=True).replace(
                f'"instance": "{rule.replace(param, task_id) if param else rule}"', ""
            )
            if cred_name in REFUSED:
                expected = {401}
                if resp.status_code == 401 and not resp.headers.get("WWW-Authenticate", "").startswith("Bearer"):
                    failures.append(cell + " without a Bearer challenge")
            elif has_id:
                expected = {404}  # another user's object is 404, never 403 and never its data
            else:
                expected = {200, 201, 202}
            if resp.status_code not in expected:
                failures.append(f"{cell}, expected {sorted(expected)}: {text[:200]}")
            if resp.status_code >= 400 and resp.mimetype != "application/problem+json":
                failures.append(cell + f" answered {resp.mimetype}, not problem+json")
            if victim["id"] in text or SECRET_TITLE in text or "private" in text:
                failures.append(cell + " revealed the owner's data")
            after = _snapshot(app, client, OWNER)
            if after != before:
                failures.append(f"{cell} changed the owner's data: {before} -> {after}")
                before = after
    # The owner's own cells: 2xx on their task, 404 on a missing id and on another user's task.
    for target_name, task_id in targets.items():
        if has_id and target_name == "own task":
            task_id = own(OWNER)
        resp = call(auth(OWNER), task_id)
        ok = target_name in ("own task", "-")
        if ok != (200 <= resp.status_code < 300) or (not ok and resp.status_code != 404):
            failures.append(f"{method} {rule} | owner | {target_name}: {resp.status_code} {resp.get_data()[:200]!r}")
    assert not failures, "\n".join(failures)


@pytest.fixture
def jwks_url() -> Iterator[str]:
    """A JWKS endpoint (a real HTTP server on loopback) publishing RSA_KEY's public half."""
    with serve_jwks(RSA_KEY.public_key()) as url:
        yield url


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_with_jwks_every_route_refuses_forged_tokens(make_app: Any, jwks_url: str) -> None:
    """JWKS mode (RS256 from an identity provider): HS256 signed with the published public key
    (algorithm confusion), alg none, another key, an unknown kid and an expired token are all 401
    on every authenticated route; a good token passes."""
    from cryptography.hazmat.primitives import serialization

    app = make_app(jwks_url=jwks_url)
    client = app.apps["tasks-api"].test_client()
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = {
        "HS256 with the public key": _raw_hs256(_claims(OWNER), public_pem, kid="k1"),
        "alg none": jwt.encode(_claims(OWNER), key="", algorithm="none", headers={"kid": "k1"}),
        "another key": jwt.encode(_claims(OWNER), other, algorithm="RS256", headers={"kid": "k1"}),
        "unknown kid": jwt.encode(_claims(OWNER), RSA_KEY, algorithm="RS256", headers={"kid": "nope"}),
        "expired": jwt.encode(
            _claims(OWNER, exp=int(time.time()) - 3600), RSA_KEY, algorithm="RS256", headers={"kid": "k1"}
        ),
    }
    good = jwt.encode(_claims(OWNER), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    assert client.get("/v1/tasks", headers=_bearer(good)).status_code == 200
    failures = []
    for _, method, rule in OPERATIONS:
        path = rule.replace("<task_id>", str(uuid.uuid4()))
        for name, value in forged.items():
            resp = client.open(path, method=method, headers=_bearer(value), **_body(method, rule))
            if resp.status_code != 401:
                failures.append(f"{method} {rule} | {name}: {resp.status_code}")
    assert not failures, "\n".join(failures)


def _raw_hs256(claims: dict[str, Any], key: bytes, kid: str) -> str:
    """An HS256 token whose HMAC key is ``key`` (PyJWT refuses to sign with a PEM: build it by hand)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"
