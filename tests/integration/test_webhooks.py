"""Outgoing webhooks on the real binary, to a real receiver (http.server in a thread): CRUD with the
secret shown once, signed deliveries the receiver verifies, retries with backoff after a 500 that
survive a restart, the delivery log, and the SSRF guards (scheme, private targets, checked again
after DNS at connect time)."""
import json

from harness import wait_until
from queue_support import User
from signin_support import start_configured
from webhook_support import Receiver, verify

FAST = {"allow_private_targets": True, "retry_base": "200ms", "retry_max": "1s", "poll_interval": "50ms",
        "max_attempts": 5, "max_per_user": 2}


def problem(r, status, code):
    assert r.status == status, (r.status, r.body)
    assert r.json()["code"] == code, r.body
    return r.json()


def create(user, url, **fields):
    r = user.call("POST", "/v1/webhooks", {"url": url, **fields})
    assert r.status == 201, r.body
    return r.json()["webhook"]


def deliveries(user, hook_id):
    r = user.call("GET", f"/v1/webhooks/{hook_id}/deliveries")
    assert r.status == 200, r.body
    return r.json()["items"]


def test_crud_shows_the_secret_once_and_only_to_its_owner(harmar, tmp):
    h = start_configured(harmar, tmp, {"webhooks": FAST})
    me, other = User(h), User(h)
    hook = create(me, "http://127.0.0.1:9/in", event_types=["task.failed", "device.offline"], description="ci")
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert hook["enabled"] is True and hook["event_types"] == ["task.failed", "device.offline"]
    got = me.call("GET", f"/v1/webhooks/{hook['id']}").json()["webhook"]
    assert "secret" not in got and got["url"] == "http://127.0.0.1:9/in"
    listed = me.call("GET", "/v1/webhooks").json()
    assert [w["id"] for w in listed["items"]] == [hook["id"]] and "secret" not in listed["items"][0]
    key = {"Idempotency-Key": "create-own-1"}
    r = me.call("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/own", "secret": "my-own-secret-of-some-length"},
                headers=key)
    assert r.status == 201, r.body
    own = r.json()["webhook"]
    assert own["secret"] == "my-own-secret-of-some-length"
    again = me.call("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/own", "secret": "my-own-secret-of-some-length"},
                    headers=key)
    assert again.status == 201 and again.json()["webhook"]["id"] == own["id"], "the same key answers the first again"
    problem(me.call("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/third"}), 409, "too_many_webhooks")

    for method, path in (("GET", f"/v1/webhooks/{hook['id']}"), ("PATCH", f"/v1/webhooks/{hook['id']}"),
                         ("DELETE", f"/v1/webhooks/{hook['id']}"), ("GET", f"/v1/webhooks/{hook['id']}/deliveries"),
                         ("POST", f"/v1/webhooks/{hook['id']}/ping")):
        problem(other.call(method, path, {} if method == "PATCH" else None), 404, "not_found")
    assert other.call("GET", "/v1/webhooks").json()["items"] == []

    body = problem(me.call("POST", "/v1/webhooks", {"url": "ftp://example.com/x", "event_types": ["task.exploded"]}),
                   422, "validation_failed")
    assert {e["field"] for e in body["errors"]} == {"url", "event_types"}
    problem(me.call("POST", "/v1/webhooks", {"url": "http://example.com/", "secret": "short"}), 422, "validation_failed")

    r = me.call("PATCH", f"/v1/webhooks/{hook['id']}", {"enabled": False, "event_types": ["*"]})
    assert r.status == 200 and r.json()["webhook"]["enabled"] is False and r.json()["webhook"]["event_types"] == ["*"]
    assert me.call("DELETE", f"/v1/webhooks/{hook['id']}").status == 204
    problem(me.call("GET", f"/v1/webhooks/{hook['id']}"), 404, "not_found")


def test_deliveries_are_signed_and_retried_after_500_until_answered(harmar, tmp):
    h = start_configured(harmar, tmp, {"webhooks": FAST})
    user = User(h)
    device = user.register_device()
    with Receiver(statuses=[500, 500]) as rx:
        hook = create(user, rx.url, event_types=["task.failed"])
        task = user.create_task(type="build", max_attempts=1)
        [claimed] = device.claim()
        assert device.result(claimed, status="failed", error="boom", retry=False).status == 200

        attempts = rx.received(3)
        assert [a["headers"]["harmar-attempt"] for a in attempts] == ["1", "2", "3"]
        assert len({a["headers"]["harmar-delivery"] for a in attempts}) == 1, "one delivery, three attempts"
        assert all(a["body"] == attempts[0]["body"] for a in attempts), "the same body each time"
        assert all(verify(hook["secret"], a) for a in attempts)
        assert not verify("whsec_wrong", attempts[0])
        # Exponential backoff: the second wait is longer than the first (200 ms, then 400 ms, +<25%).
        gap1 = attempts[1]["at"] - attempts[0]["at"]
        gap2 = attempts[2]["at"] - attempts[1]["at"]
        assert gap1 >= 0.19 and gap2 >= 0.39, (gap1, gap2)

        event = json.loads(attempts[0]["body"])
        assert event["type"] == "task.failed" and attempts[0]["headers"]["harmar-event"] == "task.failed"
        assert event["data"]["id"] == task["id"] and event["data"]["error"] == "boom"
        assert attempts[0]["headers"]["content-type"] == "application/json"

        def finished():
            log = deliveries(user, hook["id"])
            return log if log and log[0]["status"] == "succeeded" else None
        [d] = wait_until(finished, timeout=10, what="the delivery log to say succeeded")
        assert d["attempts"] == 3 and d["response_status"] == 200 and d["event_type"] == "task.failed"
        assert d["id"] == attempts[0]["headers"]["harmar-delivery"] and d["delivered_at"]
        metrics = h.get("/metrics").body.decode()
        assert 'harmar_webhook_attempts_total{outcome="retrying"} 2' in metrics

        # A task that succeeds is not an event this webhook asked for; a ping is for it alone.
        r = user.call("POST", f"/v1/webhooks/{hook['id']}/ping")
        assert r.status == 202, r.body
        [ping] = rx.received(1, event="webhook.ping")
        assert verify(hook["secret"], ping)
        assert len(rx.requests) == 4

        # Disabled: what is still queued for it fails instead of being sent.
        assert user.call("PATCH", f"/v1/webhooks/{hook['id']}", {"enabled": False}).status == 200
        r = user.call("POST", f"/v1/webhooks/{hook['id']}/ping")
        dropped = r.json()["delivery"]["id"]

        def failed():
            return [x for x in deliveries(user, hook["id"]) if x["id"] == dropped and x["status"] == "failed"]
        [x] = wait_until(failed, timeout=10, what="the ping to a disabled webhook to fail")
        assert x["error"] == "the webhook was disabled"
        assert len(rx.requests) == 4

        # A finished delivery can be sent again, from its first attempt; a pending one cannot.
        assert user.call("PATCH", f"/v1/webhooks/{hook['id']}", {"enabled": True}).status == 200
        r = user.call("POST", f"/v1/webhooks/{hook['id']}/deliveries/{d['id']}/redeliver")
        assert r.status == 202, r.body
        assert r.json()["delivery"]["status"] == "pending" and r.json()["delivery"]["attempts"] == 0
        again = [a for a in rx.received(5) if a["headers"]["harmar-delivery"] == d["id"]]
        assert len(again) == 4 and again[-1]["headers"]["harmar-attempt"] == "1"
        assert again[-1]["body"] == attempts[0]["body"] and verify(hook["secret"], again[-1])
        other = User(h)
        problem(other.call("POST", f"/v1/webhooks/{hook['id']}/deliveries/{d['id']}/redeliver"), 404, "not_found")
        problem(user.call("POST", f"/v1/webhooks/{hook['id']}/deliveries/{hook['id']}/redeliver"), 404, "not_found")


def test_pending_retries_survive_a_restart_and_private_targets_are_refused_after_dns(harmar, tmp):
    with Receiver(statuses=[500]) as rx:
        h = start_configured(harmar, tmp, {"webhooks": {**FAST, "retry_base": "3s", "retry_max": "3s"}})
        user = User(h)
        hook = create(user, rx.url, event_types=["webhook.ping"])
        assert user.call("POST", f"/v1/webhooks/{hook['id']}/ping").status == 202
        rx.received(1)  # answered 500: the retry is due in 3 s
        wait_until(lambda: deliveries(user, hook["id"])[0]["attempts"] == 1 and
                   deliveries(user, hook["id"])[0]["response_status"] == 500, timeout=10, what="attempt 1 recorded")
        pending = deliveries(user, hook["id"])[0]
        problem(user.call("POST", f"/v1/webhooks/{hook['id']}/deliveries/{pending['id']}/redeliver"), 409,
                "delivery_pending")
        assert h.stop() == 0
        h.start()  # same data dir and arguments: the retry is in the database, not in memory
        [first, second] = rx.received(2)
        assert first["headers"]["harmar-delivery"] == second["headers"]["harmar-delivery"]
        assert second["headers"]["harmar-attempt"] == "2"
        wait_until(lambda: deliveries(user, hook["id"])[0]["status"] == "succeeded", timeout=10, what="success")

    # Without allow_private_targets: a loopback URL is refused when created, and a webhook made
    # while it was allowed fails at connect time (the address is checked after DNS), without retries.
    h2 = start_configured(harmar, tmp, {"webhooks": {"poll_interval": "50ms"}})
    u2 = User(h2)
    problem(u2.call("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/x"}), 422, "validation_failed")
    problem(u2.call("POST", "/v1/webhooks", {"url": "http://localhost:9/x"}), 422, "validation_failed")
    problem(u2.call("POST", "/v1/webhooks", {"url": "http://[::ffff:169.254.169.254]/x"}), 422, "validation_failed")
    # 2130706433 is 127.0.0.1 spelled as one number: not an address literal to the URL check, but the
    # resolved address is refused at connect time, and such a failure is not retried.
    sneaky = create(u2, "http://2130706433:9/x", event_types=["webhook.ping"])
    assert u2.call("POST", f"/v1/webhooks/{sneaky['id']}/ping").status == 202
    d = wait_until(lambda: [x for x in deliveries(u2, sneaky["id"]) if x["status"] == "failed"], timeout=10,
                   what="the sneaky ping to fail")[0]
    assert d["attempts"] == 1 and "destination_forbidden" in d["error"] and "127.0.0.1" in d["error"]
    h.stop()
    h.args += ["--set", "webhooks.allow_private_targets=false"]
    h.start()
    problem(user.call("PATCH", f"/v1/webhooks/{hook['id']}", {"url": "http://127.0.0.1:9/x"}), 422, "validation_failed")
    assert user.call("POST", f"/v1/webhooks/{hook['id']}/ping").status == 202

    def refused():
        log = deliveries(user, hook["id"])
        return log[0] if log[0]["status"] == "failed" else None
    d = wait_until(refused, timeout=10, what="the ping to fail")
    assert d["attempts"] == 1 and "destination_forbidden" in d["error"] and d["response_status"] is None
