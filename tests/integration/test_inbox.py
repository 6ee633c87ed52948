"""The notifications inbox on the real binary: domain events (a task failing, a device going
offline) become inbox messages and `message.new` on the user's WebSocket, preferences switch the
inbox and email, read / read-all / delete keep the unread count right, nobody sees another
user's messages, and admins announce to everyone."""
import asyncio
import json
import subprocess
import uuid

import websockets

from harness import harmar_bin, require_env, wait_until
from mail_sink import Mailbox, text_of
from queue_support import PASSWORD, User, bearer
from signin_support import start_configured


def start(harmar, tmp, **config):
    templates = tmp / "templates"
    templates.mkdir(exist_ok=True)
    # The real templates come with the email work; these stand in so mails are rendered and recorded.
    for name in ("task-failed", "task-completed", "device-offline"):
        (templates / f"{name}.subject").write_text("{{title}}\n")
        (templates / f"{name}.txt").write_text("{{body}}\n")
    return start_configured(harmar, tmp, {"notifications": {"email_unverified": True},
                                           "notify": {"templates_dir": str(templates)}, **config})


def problem(r, status, code):
    assert r.status == status, (r.status, r.body)
    assert r.header("content-type").startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code, body
    return body


def messages(user, query=""):
    r = user.call("GET", "/v1/messages" + query)
    assert r.status == 200, r.body
    return r.json()


def fail_task(user, device, error="boom"):
    task = user.create_task(type="build", max_attempts=1)
    claimed = device.claim()
    assert [t["id"] for t in claimed] == [task["id"]]
    r = device.result(task, status="failed", error=error, retry=False)
    assert r.status == 200, r.body
    return task


def complete_task(user, device):
    task = user.create_task(type="deploy")
    claimed = device.claim()
    assert [t["id"] for t in claimed] == [task["id"]]
    assert device.result(task, status="succeeded").status == 200
    return task


def wait_for_kind(user, kind, count=1):
    def found():
        ms = [m for m in messages(user)["items"] if m["kind"] == kind]
        return ms if len(ms) >= count else None
    return wait_until(found, timeout=15, what=f"{count} {kind} message(s)")


def task_kinds(user):
    return [m["kind"] for m in messages(user)["items"] if m["kind"].startswith("task.")]


def new_user(h):
    email = f"inbox-{uuid.uuid4().hex[:10]}@example.com"
    user = User(h, email)
    user.email = email
    return user


def outbox_kinds(h, to):
    rows = h.db_rows("SELECT kind FROM outbox WHERE to_addr = ? ORDER BY created_at", (to,))
    return [r[0] for r in rows if r[0] != "verify-email"]  # notifications only


def test_a_failing_task_lands_in_the_inbox_and_on_the_users_socket(harmar, tmp):
    h = start(harmar, tmp)
    user = new_user(h)
    device = user.register_device()

    async def scenario():
        async with websockets.connect(f"ws://127.0.0.1:{h.port}/v1/ws",
                                      extra_headers=bearer(user.token)) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channel": "user"}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            assert ack["type"] == "subscribed"
            task = await asyncio.get_running_loop().run_in_executor(None, fail_task, user, device, "disk full")
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=15))
                if frame.get("type") == "message.new" and frame["data"].get("inbox"):
                    return task, frame

    task, frame = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert frame["channel"] == "user" and frame["seq"] >= 1
    pushed = frame["data"]["message"]
    assert pushed["kind"] == "task.failed"
    assert pushed["data"]["task_id"] == task["id"]
    assert "disk full" in pushed["body"]
    assert frame["data"]["unread_count"] == 1

    page = messages(user)
    assert page["unread_count"] == 1 and page["next_cursor"] is None
    [stored] = [m for m in page["items"] if m["kind"] == "task.failed"]
    assert stored == pushed
    assert set(stored) == {"id", "kind", "title", "body", "data", "read_at", "created_at"}
    assert stored["read_at"] is None
    assert user.call("GET", f"/v1/messages/{stored['id']}").json() == stored
    # The default preference mails failures too (the user's address, rendered from task-failed).
    wait_until(lambda: "task-failed" in outbox_kinds(h, user.email), timeout=10, what="the task-failed mail")


def test_a_failure_is_mailed_through_a_real_smtp_server(harmar, tmp):
    box = Mailbox()
    h = start(harmar, tmp, smtp={"url": require_env("HARMAR_TEST_SMTP_URL"), "from": "Harmar <no-reply@example.test>"})
    user = new_user(h)
    device = user.register_device()
    task = fail_task(user, device, error="exit status 3")
    mail = box.wait_for(user.email, subject_contains="failed", timeout=15)
    assert mail["Subject"] == "Task build failed"
    assert "exit status 3" in text_of(mail) and task["id"] in text_of(mail)


def test_preferences_switch_the_inbox_and_email_per_kind(harmar, tmp):
    h = start(harmar, tmp)
    user = new_user(h)
    device = user.register_device()
    prefs = user.call("GET", "/v1/messages/preferences").json()
    assert prefs["task.failed"] == {"inbox": True, "email": True}
    assert prefs["device.offline"] == {"inbox": True, "email": False}
    assert prefs["task.created"] == {"inbox": False, "email": False}

    body = problem(user.call("PATCH", "/v1/messages/preferences",
                             {"task.exploded": {"inbox": True}, "task.failed": {"sms": True, "email": "yes"}}),
                   422, "validation_failed")
    assert {e["field"] for e in body["errors"]} == {"task.exploded", "task.failed.sms", "task.failed.email"}
    problem(user.call("PATCH", "/v1/messages/preferences", {"task.failed": True}), 422, "validation_failed")
    assert user.call("GET", "/v1/messages/preferences").json() == prefs, "a refused change changes nothing"

    r = user.call("PATCH", "/v1/messages/preferences", {"task.failed": {"inbox": False}})
    assert r.status == 200, r.body
    assert r.json()["task.failed"] == {"inbox": False, "email": True}

    # A failure (inbox off, email on), then a completion (inbox on): once the completion is in the
    # inbox the failure has been handled too (a node handles its events in order).
    fail_task(user, device)
    complete_task(user, device)
    wait_for_kind(user, "task.completed")
    assert task_kinds(user) == ["task.completed"]
    wait_until(lambda: outbox_kinds(h, user.email) == ["task-failed"], timeout=10, what="the task-failed mail")

    r = user.call("PATCH", "/v1/messages/preferences", {"task.failed": {"inbox": True, "email": False}})
    assert r.json()["task.failed"] == {"inbox": True, "email": False}
    fail_task(user, device)
    complete_task(user, device)
    wait_for_kind(user, "task.completed", count=2)
    assert task_kinds(user) == ["task.completed", "task.failed", "task.completed"]
    assert outbox_kinds(h, user.email) == ["task-failed"], "email is off now"


def test_read_read_all_delete_and_unread_counts_and_nobody_else_sees_them(harmar, tmp):
    h = start(harmar, tmp)
    me, other = User(h), User(h)
    device = me.register_device()
    for _ in range(3):  # each cycle: device.online, then device.offline
        assert device.heartbeat().status == 200
        assert device.call("POST", "/v1/daemon/offline").status == 204
    wait_for_kind(me, "device.offline", count=3)
    page = messages(me)
    assert page["unread_count"] == 6 and len(page["items"]) == 6
    ids = [m["id"] for m in page["items"]]
    assert ids == sorted(ids, reverse=True), "newest first"

    first = messages(me, "?limit=4")
    assert len(first["items"]) == 4 and first["next_cursor"]
    second = messages(me, f"?limit=4&cursor={first['next_cursor']}")
    assert [m["id"] for m in first["items"] + second["items"]] == ids and second["next_cursor"] is None

    target = ids[2]
    # The other user: 404 for every message of mine, an empty inbox, and their read-all touches nothing.
    for method, path in (("GET", f"/v1/messages/{target}"), ("POST", f"/v1/messages/{target}/read"),
                         ("DELETE", f"/v1/messages/{target}")):
        problem(other.call(method, path), 404, "not_found")
    assert messages(other) == {"items": [], "next_cursor": None, "unread_count": 0}
    assert other.call("POST", "/v1/messages/read-all").json()["marked"] == 0
    problem(me.call("GET", "/v1/messages/not-an-id"), 404, "not_found")
    problem(me.call("GET", "/v1/messages?unread=maybe"), 422, "validation_failed")
    problem(h.request("GET", "/v1/messages"), 401, "unauthorized")

    r = me.call("POST", f"/v1/messages/{target}/read")
    assert r.status == 200 and r.json()["read_at"] is not None
    assert me.call("GET", "/v1/messages/unread-count").json() == {"unread_count": 5}
    unread = messages(me, "?unread=true")
    assert target not in [m["id"] for m in unread["items"]] and len(unread["items"]) == 5

    assert me.call("DELETE", f"/v1/messages/{ids[0]}").status == 204
    problem(me.call("GET", f"/v1/messages/{ids[0]}"), 404, "not_found")
    assert messages(me)["unread_count"] == 4

    r = me.call("POST", "/v1/messages/read-all")
    assert r.status == 200 and r.json()["marked"] == 4
    assert messages(me, "?unread=true")["items"] == []
    assert me.call("GET", "/v1/messages/unread-count").json() == {"unread_count": 0}
    assert len(messages(me)["items"]) == 5


def create_admin(h, email="root@example.com", password="root passphrase 1"):
    out = subprocess.run([harmar_bin(), "admin", "create-user", "--data-dir", str(h.dir / "data"), *h.db_args,
                          "--email", email,
                          "--password", password, "--role", "admin", "--log-level", "warn"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    r = h.request("POST", "/v1/auth/login", {"email": email, "password": password})
    assert r.status == 200, r.body
    return r.json()["access_token"]


def test_admins_announce_to_everyone_or_to_a_list_and_others_may_not(harmar, tmp):
    h = start(harmar, tmp)
    a, b = User(h), User(h)
    admin = create_admin(h)
    problem(a.call("POST", "/v1/messages/announcements", {"title": "hi"}), 403, "forbidden")
    problem(h.request("POST", "/v1/messages/announcements", {"title": ""}, headers=bearer(admin)), 422,
            "validation_failed")
    problem(h.request("POST", "/v1/messages/announcements", {"title": "x", "user_ids": ["nope"]}, headers=bearer(admin)),
            422, "validation_failed")

    r = h.request("POST", "/v1/messages/announcements", {"title": "Maintenance", "body": "Tonight at 22:00"},
                  headers=bearer(admin))
    assert r.status == 202, r.body
    ann = r.json()["announcement"]
    assert ann["user_ids"] is None
    for u in (a, b):
        [m] = wait_for_kind(u, "announcement")
        assert m["title"] == "Maintenance" and m["body"] == "Tonight at 22:00"
        assert m["data"]["announcement_id"] == ann["id"]

    r = h.request("POST", "/v1/messages/announcements", {"title": "Just you", "user_ids": [b.id]}, headers=bearer(admin))
    assert r.status == 202, r.body
    wait_for_kind(b, "announcement", count=2)
    assert [m["title"] for m in messages(a)["items"] if m["kind"] == "announcement"] == ["Maintenance"]
