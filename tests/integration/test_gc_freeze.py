"""What a full garbage collection has to walk once a function is serving: only what requests made,
not the interpreter's, the libraries' and the function's own start-up objects. Those are frozen
(``gc.freeze``) when the function module loads and after its first request; before, a full
collection walked all of them with the interpreter lock held (38-88 ms each, every few seconds
under load: the lists' p99 outliers in bench/README.md).

Counts, not timings: the objects a collection walks against those frozen, in a child process
serving embedded mode's tasks-api (a fresh interpreter, as a worker or a pod is)."""

from __future__ import annotations

from tests.integration.child import run_child

CHILD = """
import gc, json, os, time
import jwt
from taskflow.embedded import Embedded

client = Embedded().start(timers=False, background=False).apps["tasks-api"].test_client()
now = int(time.time())
claims = {"sub": "alice", "iat": now, "exp": now + 600}
auth = {"Authorization": "Bearer " + jwt.encode(claims, os.environ["TASKFLOW_JWT_SECRET"], algorithm="HS256")}
resp = client.post("/v1/tasks", json={"title": "first", "tags": ["a"]}, headers=auth)
assert resp.status_code == 201, resp.get_data(as_text=True)
after_first = {"walked": len(gc.get_objects()), "frozen": gc.get_freeze_count()}
for i in range(50):
    assert client.post("/v1/tasks", json={"title": f"task {i}"}, headers=auth).status_code == 201
    assert client.get("/v1/tasks?limit=50", headers=auth).status_code == 200
gc.collect()
print(json.dumps({"after_first": after_first, "walked": len(gc.get_objects()), "frozen": gc.get_freeze_count()}))
"""


def test_a_serving_function_collects_only_what_requests_made(tmp_path: object) -> None:
    out, _ = run_child(CHILD, tmp_path, TASKFLOW_TELEMETRY="on")
    assert out["frozen"] > 50_000  # the start-up objects: imports, apps, engine, compiled statements
    # After the first request, and after 100 more, a full collection walks a small fraction of them.
    assert out["after_first"]["walked"] < out["frozen"] // 10, out
    assert out["walked"] < out["frozen"] // 10, out
