"""TaskFlow installed by Helm on the local cluster: Knative Services with daprd injected, the public
contract through Traefik (the Knative networking layer), scale to zero and back, restarts without loss.
"""

from __future__ import annotations

import functools
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from taskflow.functions import FUNCTIONS
from tests import blackbox
from tests.blackbox import history_types, iso, user_client

from .conftest import JWT_SECRET

pytestmark = pytest.mark.cluster

APP_IDS = tuple(f.app_id for f in FUNCTIONS)  # the catalogue: a new function is checked here too


@pytest.fixture(scope="module")
def tf(cluster: Any) -> Any:
    return cluster


def token(user: str) -> str:
    return blackbox.token(user, JWT_SECRET)


# the cluster's pipeline (Knative, sidecars, a pod that may be waking) gets a minute, not the stack's 45 s
eventually = functools.partial(blackbox.eventually, timeout=60.0)


@pytest.fixture
def api(tf: Any) -> Iterator[httpx.Client]:
    with user_client(tf.api_url, JWT_SECRET, timeout=60) as c:
        yield c


def pods(tf: Any, app: str, terminating: bool = False) -> list[dict[str, Any]]:
    """The function's pods (with ``terminating``, also those still shutting down)."""
    out = tf.kubectl("get", "pods", "-n", "taskflow", "-l", f"serving.knative.dev/service={app}", "-o", "json")
    return [p for p in json.loads(out)["items"] if terminating or not p["metadata"].get("deletionTimestamp")]


# --- the install ---------------------------------------------------------------------------


def test_migration_hook_job_completed(tf: Any) -> None:
    jobs = json.loads(tf.kubectl("get", "jobs", "-n", "taskflow", "-o", "json"))["items"]
    # hook-succeeded deletes the Job; the release's hook record says it ran
    status = json.loads(
        subprocess.run(
            [str(tf.helm), "status", "taskflow", "-n", "taskflow", "--kubeconfig", str(tf.kubeconfig), "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert status["info"]["status"] == "deployed"
    hooks = {h["name"]: h for h in status.get("hooks", [])}
    migrate = [h for n, h in hooks.items() if "migrat" in n]
    assert migrate, f"no migration hook in {sorted(hooks)}"
    assert migrate[0]["last_run"]["phase"] == "Succeeded", migrate[0]["last_run"]
    assert all(j["status"].get("succeeded", 0) >= 1 for j in jobs if "migrat" in j["metadata"]["name"])


def test_every_function_ready_with_daprd_and_queue_proxy(tf: Any) -> None:
    ksvcs = json.loads(tf.kubectl("get", "ksvc", "-n", "taskflow", "-o", "json"))["items"]
    ready = {
        k["metadata"]["name"]: next(c["status"] for c in k["status"]["conditions"] if c["type"] == "Ready")
        for k in ksvcs
    }
    assert ready == dict.fromkeys(APP_IDS, "True")
    min_scale = {
        k["metadata"]["name"]: k["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"]
        for k in ksvcs
    }
    for app in APP_IDS:
        if min_scale[app] == "0" and not pods(tf, app):
            continue  # it may already be at zero
        containers = eventually(lambda app=app: pods(tf, app))[0]["spec"]["containers"]
        assert sorted(c["name"] for c in containers) == ["daprd", "function", "queue-proxy"], app


def test_helm_test_passes(tf: Any) -> None:
    res = subprocess.run(
        [str(tf.helm), "test", "taskflow", "-n", "taskflow", "--kubeconfig", str(tf.kubeconfig), "--timeout", "5m"],
        capture_output=True,
        text=True,
        timeout=330,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Phase:          Succeeded" in res.stdout


# --- the public contract through the cluster -----------------------------------------------


def test_create_list_and_history_through_service_invocation(api: httpx.Client) -> None:
    task = api.post("/v1/tasks", json={"title": "on kubernetes"}).json()
    assert api.get("/v1/tasks").json()["items"][0]["id"] == task["id"]
    api.post(f"/v1/tasks/{task['id']}/complete")
    assert eventually(lambda: history_types(api, task["id"]) == ["created", "completed"])


def test_an_export_becomes_ready_and_downloads_from_the_clusters_object_store(tf: Any, api: httpx.Client) -> None:
    """exports writes through its sidecar's S3 binding into moto running in the cluster (tools/images.py
    ``moto``); the presigned URL downloads the file; another user sees no such export."""
    api.post("/v1/tasks", json={"title": "exported on kubernetes", "due_at": "2030-01-01T09:00:00Z"})
    resp = api.post("/v1/exports", json={"format": "ics"})
    assert resp.status_code == 202, resp.text
    location = resp.headers["Location"]
    done = eventually(lambda: (b := api.get(location).json()).get("status") == "ready" and b, timeout=120)
    url = done["download_url"]
    assert "X-Amz-Signature=" in url
    body = httpx.get(url, timeout=30)
    assert body.status_code == 200
    assert b"SUMMARY:exported on kubernetes" in body.content
    with user_client(tf.api_url, JWT_SECRET, timeout=60) as other:
        assert other.get(location).status_code == 404


def test_completing_a_recurring_task_creates_the_next_occurrence(api: httpx.Client) -> None:
    task = api.post(
        "/v1/tasks",
        json={
            "title": "weekly",
            "due_at": "2030-03-04T15:00:00Z",
            "timezone": "Europe/Berlin",
            "recurrence": {"rule": "FREQ=WEEKLY;BYDAY=MO"},
        },
    ).json()
    api.post(f"/v1/tasks/{task['id']}/complete")

    def occurrences() -> list[dict[str, Any]]:
        items = api.get("/v1/tasks?status=all&recurring=true").json()["items"]
        return [t for t in items if t["series_id"] == task["id"]]

    eventually(lambda: len(occurrences()) == 2)
    series = sorted(occurrences(), key=lambda t: t["occurrence"])
    assert series[1]["due_at"] == "2030-03-11T15:00:00Z"


def test_a_reminder_reaches_the_inbox(api: httpx.Client) -> None:
    due = datetime.now(UTC) + timedelta(seconds=3)
    task = api.post("/v1/tasks", json={"title": "ping", "due_at": iso(due), "reminders": [{"offset": "PT0S"}]}).json()
    items = eventually(lambda: api.get("/v1/notifications").json()["items"], timeout=90)
    assert len(items) == 1 and items[0]["task_id"] == task["id"]


# --- restarts ------------------------------------------------------------------------------


def _create_while(api: httpx.Client, fault: Callable[[], None], label: str, n: int = 12) -> list[str]:
    """Create ``n`` tasks, one every 0.3 s, and inject ``fault`` a third of the way in: events are
    flowing through Kafka to the consumers when it strikes."""
    ids: list[str] = []

    def creator() -> None:
        for i in range(n):
            resp = api.post("/v1/tasks", json={"title": f"{label} {i}"})
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
            time.sleep(0.3)

    t = threading.Thread(target=creator)
    t.start()
    time.sleep(n * 0.3 / 3)
    fault()
    t.join(timeout=120)
    assert len(ids) == n
    return ids


def _kill_container(tf: Any, app: str, container: str) -> tuple[str, int]:
    """SIGKILL one container of the function's pod (a crash); (pod name, its restart count before)."""
    pod = pods(tf, app)[0]
    status = next(c for c in pod["status"]["containerStatuses"] if c["name"] == container)
    subprocess.run(
        tf.ctr("tasks", "kill", "-s", "SIGKILL", status["containerID"].split("://", 1)[1]),
        check=True,
        capture_output=True,
    )
    return pod["metadata"]["name"], status["restartCount"]


def _restarted(tf: Any, pod: str, container: str, before: int) -> bool:
    p = json.loads(tf.kubectl("get", "pod", pod, "-n", "taskflow", "-o", "json"))
    st = next(c for c in p["status"]["containerStatuses"] if c["name"] == container)
    return bool(st["restartCount"] > before and st["ready"])


def _each_audited_once(api: httpx.Client, ids: list[str]) -> None:
    """Every task's history is exactly ["created"]: no event lost, none recorded twice."""

    def types(task_id: str) -> list[str] | None:
        resp = api.get(f"/v1/tasks/{task_id}/history")  # audit may still be coming back: 5xx, ask again
        return [h["type"].split(".")[3] for h in resp.json()["items"]] if resp.status_code == 200 else None

    for task_id in ids:
        assert eventually(lambda t=task_id: types(t) == ["created"], timeout=180), task_id


def test_a_killed_consumer_pod_is_replaced_and_no_event_is_lost(tf: Any, api: httpx.Client) -> None:
    """audit's pod is deleted while tasks are created; Kubernetes starts another and every event lands once."""
    victim = pods(tf, "audit")[0]["metadata"]["name"]
    ids = _create_while(
        api, lambda: tf.kubectl("delete", "pod", victim, "-n", "taskflow", "--wait=false"), "pod deleted"
    )
    eventually(lambda: [p for p in pods(tf, "audit") if p["metadata"]["name"] != victim], timeout=120)
    _each_audited_once(api, ids)


@pytest.mark.parametrize("container", ["function", "daprd"])
def test_a_killed_consumer_container_is_restarted_and_no_event_is_lost(
    tf: Any, api: httpx.Client, container: str
) -> None:
    """audit's function container, or its daprd, is SIGKILLed while events flow; the kubelet restarts it in
    the same pod; every event is recorded exactly once (Dapr redelivers what was not acknowledged, audit
    drops what it has already recorded)."""
    killed: list[tuple[str, int]] = []
    ids = _create_while(api, lambda: killed.append(_kill_container(tf, "audit", container)), f"{container} killed")
    pod, before = killed[0]
    eventually(lambda: _restarted(tf, pod, container, before), timeout=120)
    _each_audited_once(api, ids)


def test_a_killed_sidecar_is_restarted_and_no_event_is_lost(tf: Any, api: httpx.Client) -> None:
    """daprd of recurrence is killed (its container exits); the kubelet restarts it; completions still recur,
    exactly once."""
    pod, before = _kill_container(tf, "recurrence", "daprd")
    task = api.post(
        "/v1/tasks", json={"title": "daily", "due_at": "2030-03-04T09:00:00Z", "recurrence": {"rule": "FREQ=DAILY"}}
    ).json()
    api.post(f"/v1/tasks/{task['id']}/complete")
    eventually(lambda: _restarted(tf, pod, "daprd", before), timeout=120)

    def occurrences() -> int:
        items = api.get("/v1/tasks?status=all&recurring=true").json()["items"]
        return len([t for t in items if t["series_id"] == task["id"]])

    assert eventually(lambda: occurrences() == 2, timeout=180)
    time.sleep(5)  # a duplicate delivery would show up as a third occurrence
    assert occurrences() == 2


# --- scale to zero and back ----------------------------------------------------------------


def test_tasks_api_scales_to_zero_and_wakes_on_the_next_request(tf: Any, api: httpx.Client) -> None:
    # zero means no pod at all, not even one still draining (it would answer without a cold start)
    eventually(lambda: not pods(tf, "tasks-api", terminating=True), timeout=300, interval=1)
    t0 = time.monotonic()
    with httpx.stream("GET", f"{tf.api_url}/v1/tasks", headers=api.headers, timeout=120) as resp:
        first_byte = next(resp.iter_raw(1), b"")
        cold = time.monotonic() - t0
        assert resp.status_code == 200
    assert first_byte
    print(f"\n[cluster] tasks-api cold start from zero: {cold:.2f}s to the first byte")
    tf.timings["cold_start_first_byte"] = cold
    assert eventually(lambda: pods(tf, "tasks-api"), timeout=30)


# --- NetworkPolicy -------------------------------------------------------------------------


def test_networkpolicy_is_not_enforced_by_the_bridge_cni(tf: Any) -> None:
    """The chart's NetworkPolicy admits only this release and the platform namespaces. The CNI here is the
    reference bridge plugin, which implements no NetworkPolicy: a pod in another namespace still reaches a
    function. This test states that truth (it fails if someone installs an enforcing CNI, as it should).
    """
    assert json.loads(tf.kubectl("get", "networkpolicy", "-n", "taskflow", "-o", "json"))["items"]
    target = pods(tf, "audit")[0]["status"]["podIP"]
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "np-probe", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "probe",
                    "image": tf.taskflow_image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c"],
                    "args": [f"import socket; socket.create_connection(({target!r}, 8080), 5); print('connected')"],
                }
            ],
        },
    }
    tf.kubectl("delete", "pod", "np-probe", "-n", "default", "--ignore-not-found")
    tf.kubectl("apply", "-f", "-", input=json.dumps(probe))
    phase = eventually(
        lambda: (
            json.loads(tf.kubectl("get", "pod", "np-probe", "-n", "default", "-o", "json"))["status"].get("phase")
            in ("Succeeded", "Failed")
            and json.loads(tf.kubectl("get", "pod", "np-probe", "-n", "default", "-o", "json"))["status"]["phase"]
        ),
        timeout=120,
    )
    out = tf.kubectl("logs", "np-probe", "-n", "default")
    tf.kubectl("delete", "pod", "np-probe", "-n", "default", "--wait=false")
    assert phase == "Succeeded", out
    assert "connected" in out
