"""Notifications on two nodes sharing PostgreSQL and Redis: every node hears every domain event
(through Redis), yet an event becomes exactly one inbox message, one `message.new` and one webhook
delivery per webhook, and each delivery is sent once although both nodes run a delivery loop."""
import asyncio
import base64
import collections
import copy
import json
import os

import websockets

from harness import require_env, wait_until
from queue_support import User, bearer, fresh_pg_url
from webhook_support import Receiver, verify


def two_nodes(harmar):
    db = fresh_pg_url()
    args = ["--db", db, "--redis", require_env("HARMAR_TEST_REDIS_URL"), "--set", "auth.rate_limit.per_ip=0",
            "--set", "webhooks.allow_private_targets=true", "--set", "webhooks.poll_interval=50ms"]
    env = {"HARMAR_AUTH_SECRET": base64.b64encode(os.urandom(32)).decode()}  # one key ring for both
    return harmar(*args, env=env), harmar(*args, env=env)


def test_an_event_becomes_one_message_and_one_delivery_across_two_nodes(harmar):
    n1, n2 = two_nodes(harmar)
    user = User(n1)
    on2 = copy.copy(user)
    on2.h = n2  # the same user, served by node 2
    device = user.register_device()

    with Receiver() as rx:
        r = on2.call("POST", "/v1/webhooks", {"url": rx.url, "event_types": ["task.failed", "device.offline",
                                                                             "message.new"]})
        assert r.status == 201, r.body
        hook = r.json()["webhook"]

        async def scenario():
            # A socket on node 2 while the events are raised on node 1.
            async with websockets.connect(f"ws://127.0.0.1:{n2.port}/v1/ws", extra_headers=bearer(user.token)) as ws:
                await ws.send(json.dumps({"op": "subscribe", "channel": "user"}))
                assert json.loads(await asyncio.wait_for(ws.recv(), timeout=10))["type"] == "subscribed"
                loop = asyncio.get_running_loop()

                def raise_events():
                    task = user.create_task(type="build", max_attempts=1)
                    [claimed] = device.claim()
                    assert device.result(claimed, status="failed", error="boom", retry=False).status == 200
                    assert device.heartbeat().status == 200
                    assert device.call("POST", "/v1/daemon/offline").status == 204
                    return task

                task = await loop.run_in_executor(None, raise_events)
                kinds = []
                while "device.offline" not in kinds:  # handled after task.failed on node 1
                    f = json.loads(await asyncio.wait_for(ws.recv(), timeout=15))
                    if f["type"] == "message.new" and f["data"].get("inbox"):
                        kinds.append(f["data"]["message"]["kind"])
                return task, kinds

        task, kinds = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
        assert kinds == ["task.failed", "device.online", "device.offline"]

        items = on2.call("GET", "/v1/messages").json()["items"]
        assert [m["kind"] for m in items] == ["device.offline", "device.online", "task.failed"]
        assert items[2]["data"]["task_id"] == task["id"]

        # Deliveries: task.failed, device.offline and three message.new, once each, each sent once.
        def all_done():
            log = on2.call("GET", f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
            return log if len(log) >= 5 and all(d["status"] == "succeeded" for d in log) else None
        log = wait_until(all_done, timeout=20, what="five delivered webhooks")
        assert collections.Counter(d["event_type"] for d in log) == {"task.failed": 1, "device.offline": 1,
                                                                     "message.new": 3}
        assert all(d["attempts"] == 1 for d in log)
        got = rx.received(5)
        assert len(got) == 5
        assert sorted(r["headers"]["harmar-delivery"] for r in got) == sorted(d["id"] for d in log)
        assert all(verify(hook["secret"], r) for r in got)
