"""The task queue on the real binary, on SQLite and PostgreSQL: life cycle, leases, retries,
priorities, delays, targeting, cancel, dependencies, pause, rate limits, schedules, long-poll
wake-ups, and 1 000 concurrent creations."""
import concurrent.futures
import json
import socket
import threading
import time

import pytest

from harness import wait_until
from queue_support import User, backend_args, wait_status, waiting_polls

BACKENDS = ["sqlite", "postgres"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_life_cycle_claim_progress_result_and_a_lost_lease_is_409(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    d1, d2 = user.register_device("d1"), user.register_device("d2")
    created = user.create_task(type="echo", payload={"n": 1}, max_attempts=2, timeout_s=60)
    assert created["status"] == "queued" and created["attempts"] == 0 and created["max_attempts"] == 2
    claimed = d1.claim(max=5)
    assert [t["id"] for t in claimed] == [created["id"]]
    t = claimed[0]
    assert t["status"] == "running" and t["attempts"] == 1 and t["claimed_by"] == d1.id and t["started_at"]
    assert d2.claim(max=5) == []  # leased: nobody else gets it

    p = d1.call("POST", f"/v1/daemon/tasks/{t['id']}/progress", {"progress": 40, "log": "half way\n", "attempt": 1})
    assert p.status == 200, p.body
    assert user.task(t["id"])["progress"] == 40
    logs = user.call("GET", f"/v1/tasks/{t['id']}/logs").json()["items"]
    assert [l["text"] for l in logs] == ["half way\n"]

    assert d2.result(t).status == 409  # not the holder
    assert d2.call("POST", f"/v1/daemon/tasks/{t['id']}/progress", {"progress": 50}).status == 409
    done = d1.result(t, result={"ok": True}, attempt=1)
    assert done.status == 200, done.body
    final = done.json()["task"]
    assert final["status"] == "succeeded" and final["result"] == {"ok": True} and final["finished_at"]
    # The same result again (a retry after a lost answer) is answered again; a different one is not.
    again = d1.result(t, result={"ok": True}, attempt=1)
    assert again.status == 200 and again.json()["task"]["status"] == "succeeded"
    assert d1.result(t, status="failed", error="late", attempt=1).status == 409
    assert user.task(t["id"])["result"] == {"ok": True}


@pytest.mark.parametrize("backend", BACKENDS)
def test_priorities_first_then_fifo_and_batched_claims(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    d = user.register_device()
    low1 = user.create_task(priority=0)
    high1 = user.create_task(priority=9)
    low2 = user.create_task(priority=0)
    high2 = user.create_task(priority=9)
    mid = user.create_task(priority=5)
    got = d.claim(max=10)
    assert [t["id"] for t in got] == [high1["id"], high2["id"], mid["id"], low1["id"], low2["id"]]
    assert user.call("POST", "/v1/tasks", {"type": "echo", "priority": 11}).status == 422


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_delayed_task_waits_for_run_at(harmar, backend):
    h = harmar(*backend_args(backend), "--set", "tasks.tick_interval=100ms")
    user = User(h)
    d = user.register_device()
    run_at = time.time() + 1.5
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(run_at)) + ".%03dZ" % int((run_at % 1) * 1000)
    t = user.create_task(run_at=stamp)
    assert t["status"] == "queued"
    assert d.claim() == []
    got = d.pending(max=1, wait_s=10)["tasks"]  # woken by the promoter, not by polling
    assert [x["id"] for x in got] == [t["id"]]
    assert time.time() >= run_at - 0.05


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_expired_lease_returns_the_task_then_it_dies_after_max_attempts(harmar, backend):
    h = harmar(*backend_args(backend), "--set", "tasks.lease=1s", "--set", "tasks.tick_interval=100ms",
               "--set", "tasks.backoff_base=0s")
    user = User(h)
    d = user.register_device()
    t = user.create_task(max_attempts=2)
    assert d.claim()[0]["attempts"] == 1
    back = wait_status(user, t["id"], "queued", timeout=10)
    assert back["attempts"] == 1 and "lease expired" in back["error"]
    second = d.pending(max=1, wait_s=10)["tasks"]
    assert second and second[0]["attempts"] == 2
    dead = wait_status(user, t["id"], "dead", timeout=10)
    assert dead["attempts"] == 2 and dead["finished_at"]
    assert d.result(second[0], attempt=2).status == 409  # too late: never completed after death
    # Retry brings a dead task back with fresh attempts.
    r = user.call("POST", f"/v1/tasks/{t['id']}/retry")
    assert r.status == 200 and r.json()["task"]["status"] == "queued" and r.json()["task"]["attempts"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_reported_failures_retry_with_backoff_then_fail(harmar, backend):
    h = harmar(*backend_args(backend), "--set", "tasks.backoff_base=400ms", "--set", "tasks.tick_interval=50ms")
    user = User(h)
    d = user.register_device()
    t = user.create_task(max_attempts=3)
    first = d.claim()[0]
    r = d.result(first, status="failed", error="boom", attempt=1)
    assert r.status == 200 and r.json()["task"]["status"] == "queued"
    failed_at = time.monotonic()
    assert d.claim() == []  # backing off
    second = d.pending(max=1, wait_s=10)["tasks"][0]
    waited = time.monotonic() - failed_at
    assert 0.15 <= waited <= 3, waited  # 400 ms with jitter (200..400 ms), plus a tick
    assert second["attempts"] == 2
    d.result(second, status="failed", error="boom", attempt=2)
    third = d.pending(max=1, wait_s=10)["tasks"][0]
    final = d.result(third, status="failed", error="boom again", attempt=3).json()["task"]
    assert final["status"] == "failed" and final["error"] == "boom again" and final["attempts"] == 3
    # A failure that says retrying cannot help is final at once.
    t2 = user.create_task(max_attempts=5)
    got = d.claim()[0]
    assert got["id"] == t2["id"]
    assert d.result(got, status="failed", error="bad payload", retry=False).json()["task"]["status"] == "failed"


@pytest.mark.parametrize("backend", BACKENDS)
def test_targeting_by_device_and_by_labels(harmar, backend):
    h = harmar(*backend_args(backend))
    user, other = User(h), User(h)
    gpu = user.register_device("gpu", {"gpu": "a100", "zone": "eu"})
    cpu = user.register_device("cpu", {"zone": "eu"})
    stranger = other.register_device("stranger", {"gpu": "a100", "zone": "eu"})
    for_gpu = user.create_task(labels={"gpu": "a100"})
    for_cpu = user.create_task(device_id=cpu.id)
    anyone = user.create_task(labels={"zone": "eu"})
    assert stranger.claim(max=10) == []  # never another user's work
    assert {t["id"] for t in cpu.claim(max=10)} == {for_cpu["id"], anyone["id"]}
    assert [t["id"] for t in gpu.claim(max=10)] == [for_gpu["id"]]
    bad = user.call("POST", "/v1/tasks", {"type": "echo", "device_id": stranger.id})
    assert bad.status == 422


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancel_a_queued_task_and_a_running_one_whose_device_is_told(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    d = user.register_device()
    queued = user.create_task(priority=0)
    running = user.create_task(priority=5)
    claimed = d.claim()[0]
    assert claimed["id"] == running["id"]
    c = user.call("POST", f"/v1/tasks/{queued['id']}/cancel")
    assert c.status == 200 and c.json()["task"]["status"] == "cancelled"

    # The agent long-polls with its running task; the cancel wakes it.
    result = {}

    def poll():
        start = time.monotonic()
        result["body"] = d.pending(max=0, wait_s=20, running=[running["id"]])
        result["took"] = time.monotonic() - start

    th = threading.Thread(target=poll)
    th.start()
    wait_until(lambda: waiting_polls(h) == 1, what="the poll to wait")
    assert user.call("POST", f"/v1/tasks/{running['id']}/cancel").json()["task"]["status"] == "cancelled"
    th.join(timeout=20)
    assert result["body"]["cancel"] == [running["id"]] and result["took"] < 5
    # The heartbeat says it too, and the late result is refused.
    assert d.heartbeat(running=[running["id"]]).json()["cancel"] == [running["id"]]
    assert d.result(claimed).status == 409
    assert user.call("POST", f"/v1/tasks/{running['id']}/cancel").status == 409
    assert user.call("POST", f"/v1/tasks/{running['id']}/retry").json()["task"]["status"] == "queued"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_long_poll_wakes_as_soon_as_work_arrives(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    d = user.register_device()
    out = {}

    def poll():
        start = time.monotonic()
        out["tasks"] = d.pending(max=1, wait_s=30)["tasks"]
        out["took"] = time.monotonic() - start

    th = threading.Thread(target=poll)
    th.start()
    wait_until(lambda: waiting_polls(h) == 1, what="the poll to wait")
    t = user.create_task()
    th.join(timeout=30)
    assert [x["id"] for x in out["tasks"]] == [t["id"]]
    assert out["took"] < 2.0, out["took"]
    # With nothing to do, wait_s bounds the wait.
    start = time.monotonic()
    assert d.pending(max=1, wait_s=1)["tasks"] == []
    assert 0.9 <= time.monotonic() - start < 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_poll_whose_agent_hung_up_claims_nothing(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    d = user.register_device()
    # An agent killed mid-poll: its request is sent, then its connection closes.
    body = json.dumps({"max": 1, "wait_s": 30}).encode()
    s = socket.create_connection(("127.0.0.1", h.port))
    s.sendall(b"POST /v1/daemon/tasks/pending HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Authorization: Bearer {d.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    wait_until(lambda: waiting_polls(h) == 1, what="the poll to wait")
    s.close()
    t = user.create_task()
    # The orphaned poll wakes, sees nobody there, and ends without leasing the task.
    wait_until(lambda: waiting_polls(h) == 0, what="the orphaned poll to end")
    assert user.task(t["id"])["status"] == "queued"
    claimed = d.claim()
    assert [x["id"] for x in claimed] == [t["id"]] and claimed[0]["attempts"] == 1


def test_a_long_poll_on_one_node_wakes_for_a_task_created_on_another(harmar):
    from queue_support import fresh_pg_url
    url = fresh_pg_url()
    a = harmar("--db", url)
    b = harmar("--db", url)
    user = User(a)
    d = user.register_device()
    out = {}

    def poll():
        start = time.monotonic()
        r = b.request("POST", "/v1/daemon/tasks/pending", {"max": 1, "wait_s": 30},
                      headers={"Authorization": f"Bearer {d.key}"}, timeout=60)
        out["tasks"] = r.json()["tasks"]
        out["took"] = time.monotonic() - start

    th = threading.Thread(target=poll)
    th.start()
    wait_until(lambda: waiting_polls(b) == 1, what="the poll to wait on the other node")
    t = user.create_task()
    th.join(timeout=30)
    assert [x["id"] for x in out["tasks"]] == [t["id"]]
    assert out["took"] < 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_dependencies_run_after_their_parents_succeed(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    d = user.register_device()
    a = user.create_task(payload="a")
    b = user.create_task(payload="b")
    child = user.create_task(payload="child", depends_on=[a["id"], b["id"]], priority=10)
    assert child["waiting_for"] == 2
    got = d.claim(max=10)
    assert {t["id"] for t in got} == {a["id"], b["id"]}  # the child waits despite its priority
    d.result(got[0])
    assert d.claim() == []
    d.result(got[1])
    assert [t["id"] for t in d.claim()] == [child["id"]]
    # A parent that fails takes its waiting children with it.
    p = user.create_task(max_attempts=1)
    c = user.create_task(depends_on=[p["id"]])
    grandchild = user.create_task(depends_on=[c["id"]])
    d.result(d.claim()[0], status="failed", error="no")
    assert user.task(c["id"])["status"] == "cancelled"
    assert user.task(grandchild["id"])["status"] == "cancelled"
    assert user.call("POST", "/v1/tasks", {"type": "echo", "depends_on": [p["id"]]}).status == 422
    assert user.call("POST", "/v1/tasks", {"type": "echo", "depends_on": [d.id]}).status == 422


@pytest.mark.parametrize("backend", BACKENDS)
def test_pause_and_resume_a_task_type(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    d = user.register_device()
    build = user.create_task(type="build")
    deploy = user.create_task(type="deploy")
    r = user.call("POST", "/v1/task-types/build/pause")
    assert r.status == 200 and r.json()["paused"] is True
    assert [t["id"] for t in d.claim(max=10)] == [deploy["id"]]
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("t", d.pending(max=1, wait_s=20)["tasks"]))
    th.start()
    wait_until(lambda: waiting_polls(h) == 1, what="the poll to wait")
    assert user.call("POST", "/v1/task-types/build/resume").json()["paused"] is False
    th.join(timeout=20)
    assert [t["id"] for t in out["t"]] == [build["id"]]
    types = {x["type"]: x for x in user.call("GET", "/v1/task-types").json()["items"]}
    assert types["build"]["running"] == 1 and types["build"]["paused"] is False


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rate_limit_caps_how_many_tasks_of_a_type_start_per_period(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    d = user.register_device()
    r = user.call("PATCH", "/v1/task-types/mail", {"rate_limit": {"max": 3, "period_s": 2}})
    assert r.status == 200 and r.json()["rate_limit"] == {"max": 3, "period_s": 2.0}
    for _ in range(7):
        user.create_task(type="mail")
    other = user.create_task(type="other")
    first = d.claim(max=10)
    assert sum(t["type"] == "mail" for t in first) == 3 and other["id"] in {t["id"] for t in first}
    assert d.claim(max=10) == []
    start = time.monotonic()
    second = d.pending(max=10, wait_s=10)["tasks"]  # woken when the window reopens
    assert len(second) == 3 and 1.0 <= time.monotonic() - start <= 4
    assert user.call("PATCH", "/v1/task-types/mail", {"rate_limit": None}).json()["rate_limit"] is None
    # The policy cache lives a second: the last one comes once it has expired.
    got = []
    wait_until(lambda: got.extend(d.claim(max=10)) or len(got) >= 1, timeout=10, what="the limit to be gone")
    assert len(got) == 1


def test_schedules_are_validated_and_list(harmar):
    h = harmar()
    user = User(h)
    bad = user.call("POST", "/v1/task-schedules", {"cron": "61 * * * *", "task": {"type": "echo"}})
    assert bad.status == 422
    s = user.call("POST", "/v1/task-schedules", {"name": "nightly", "cron": "0 3 * * *", "task": {"type": "backup", "payload": {"x": 1}}})
    assert s.status == 201, s.body
    sched = s.json()
    assert sched["next_run_at"].endswith("T03:00:00.000Z") and sched["enabled"] is True
    assert [x["id"] for x in user.call("GET", "/v1/task-schedules").json()["items"]] == [sched["id"]]
    off = user.call("PATCH", f"/v1/task-schedules/{sched['id']}", {"enabled": False}).json()
    assert off["enabled"] is False and off["next_run_at"] is None
    assert user.call("DELETE", f"/v1/task-schedules/{sched['id']}").status == 204
    assert user.call("GET", f"/v1/task-schedules/{sched['id']}").status == 404


@pytest.mark.parametrize("backend", BACKENDS)
def test_idempotency_key_creates_one_task(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    hdr = {"Idempotency-Key": "create-once"}
    a = user.call("POST", "/v1/tasks", {"type": "echo", "payload": 1}, headers=hdr)
    b = user.call("POST", "/v1/tasks", {"type": "echo", "payload": 1}, headers=hdr)
    assert a.status == b.status == 201 and a.json()["task"]["id"] == b.json()["task"]["id"]
    assert user.call("POST", "/v1/tasks", {"type": "echo", "payload": 2}, headers=hdr).status == 409
    assert len(user.all_tasks()) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_thousand_concurrent_task_creations(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)

    def create(i):
        r = user.call("POST", "/v1/tasks", {"type": "echo", "payload": {"i": i}}, timeout=60)
        return r.status, (r.json()["task"]["id"] if r.status == 201 else r.body)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(create, range(1000)))
    took = time.monotonic() - start
    assert all(s == 201 for s, _ in results), [r for r in results if r[0] != 201][:3]
    ids = {i for _, i in results}
    assert len(ids) == 1000
    listed = user.all_tasks(status="queued")
    assert {t["id"] for t in listed} == ids
    assert took < 60, took


def test_task_lists_filter_and_other_users_tasks_are_404(harmar):
    h = harmar()
    user, other = User(h), User(h)
    d = user.register_device()
    a = user.create_task(type="build")
    b = user.create_task(type="test")
    d.claim()
    assert [t["id"] for t in user.all_tasks(type="test")] == [b["id"]]
    assert [t["id"] for t in user.all_tasks(status="running")] == [a["id"]]
    assert [t["id"] for t in user.all_tasks(device_id=d.id)] == [a["id"]]
    assert other.call("GET", f"/v1/tasks/{a['id']}").status == 404
    assert other.call("POST", f"/v1/tasks/{a['id']}/cancel").status == 404
    assert user.call("GET", "/v1/tasks?status=nope").status == 422
