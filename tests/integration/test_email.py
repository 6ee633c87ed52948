"""Email on the real binary with the real SMTP sink (scripts/test-services.sh): notification
templates routed by email configs, the durable outbox (retries, dead letters, a restart), sealed
SMTP passwords, the test mail, and inbound replies that become task notes or new tasks."""
import email
import email.message
import email.utils
import email.policy
import json
import pathlib
import subprocess
import urllib.parse

from harness import Harmar, harmar_bin, require_env, wait_until
from mail_sink import Mailbox, text_of, html_of
from queue_support import User, bearer, free_port
from signin_support import start_configured

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "mime"
SECRET = "inbound-shared-secret-0123456789"


def sink():
    url = urllib.parse.urlparse(require_env("HARMAR_TEST_SMTP_URL"))
    return url.hostname, url.port


def admin_of(h):
    addr = "root@example.test"
    out = subprocess.run([harmar_bin(), "admin", "create-user", "--data-dir", str(h.dir / "data"), *h.db_args,
                          "--email", addr,
                          "--password", "root passphrase 1", "--role", "admin", "--log-level", "warn"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    r = h.request("POST", "/v1/auth/login", {"email": addr, "password": "root passphrase 1"})
    assert r.status == 200, r.body
    return bearer(r.json()["access_token"])


def start(harmar, tmp, smtp_url=None, **extra):
    cfg = {"smtp": {"url": smtp_url or require_env("HARMAR_TEST_SMTP_URL"), "from": "HarmarCloud <no-reply@example.test>",
                    "reply_address": "notify@example.test", "retry_base": "50ms", "retry_max": "100ms"},
           "email": {"inbound_secret": SECRET, "user_smtp": True, "poll_interval": "100ms"}}
    for k, v in extra.items():
        section, key = k.split("__")
        cfg[section][key] = v
    return start_configured(harmar, tmp, cfg)


def outbox(h, admin, status=""):
    r = h.request("GET", f"/v1/email/outbox?limit=200&status={status}", headers=admin)
    assert r.status == 200, r.body
    return r.json()["items"]


def inbound(h, raw, secret=SECRET, content_type="message/rfc822"):
    headers = {"Content-Type": content_type}
    if secret is not None:
        headers["X-Harmar-Inbound-Secret"] = secret
    return h.request("POST", "/v1/email/incoming", raw, headers=headers)


def reply_to(mail, sender, text, to=None, in_reply_to=None, message_id=None):
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to or mail["Reply-To"]
    msg["Subject"] = "Re: " + str(mail["Subject"])
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain="example.test")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    msg.set_content(text + "\n\nOn Wed, HarmarCloud wrote:\n> " + text_of(mail).replace("\n", "\n> "))
    return msg.as_bytes()


def send_template(h, admin, name, to, **vars):
    r = h.request("POST", f"/v1/email/templates/{name}/send", {"to": to, "vars": vars}, headers=admin)
    assert r.status == 202, r.body


def test_configs_route_notification_mails_and_a_reply_becomes_a_task_note(harmar, tmp):
    box = Mailbox()
    h = start(harmar, tmp)
    admin = admin_of(h)
    user = User(h)
    device = user.register_device("build-01")
    task = user.create_task(type="echo", device_id=device.id)

    r = user.call("POST", "/v1/email/config", {"device_id": device.id, "recipients": ["oncall@example.test"],
                                                "kinds": ["task-failed"]})
    assert r.status == 201, r.body
    assert r.json()["config"]["kinds"] == ["task-failed"]
    got = user.call("GET", f"/v1/email/config/{device.id}")
    assert got.status == 200 and got.json()["config"]["recipients"] == ["oncall@example.test"]
    assert user.call("GET", "/v1/email/config/default").status == 404
    assert User(h).call("GET", f"/v1/email/config/{device.id}").status == 404  # not theirs

    common = dict(user_id=user.id, device_id=device.id, task_id=task["id"], task_type="echo", device_name="build-01")
    send_template(h, admin, "task-created", "owner@example.test", **common)  # not a wanted kind
    send_template(h, admin, "task-failed", "owner@example.test", task_status="failed", error="exit status 3", **common)
    mail = box.wait_for("oncall@example.test", timeout=15)
    assert str(mail["Subject"]) == "[HarmarCloud] Task failed: echo on build-01"
    assert "exit status 3" in text_of(mail) and "exit status 3" in html_of(mail)
    assert f"{h.url}/v1/tasks/{task['id']}" in text_of(mail)
    assert mail["Reply-To"].startswith("notify+") and mail["Reply-To"].endswith("@example.test")
    box.assert_none("owner@example.test", wait=0.3)  # the config's recipients replace the caller's
    kinds = [m["kind"] for m in outbox(h, admin)]
    assert "task-failed" in kinds and "task-created" not in kinds

    # The reply comes back through the MTA: it becomes a note on the task, once.
    raw = reply_to(mail, "Oncall <oncall@example.test>", "Disk replaced, retrying tonight.")
    first = inbound(h, raw)
    assert first.status == 200, first.body
    assert first.json()["action"] == "note" and first.json()["task_id"] == task["id"]
    again = inbound(h, raw)
    assert again.status == 200 and again.json()["id"] == first.json()["id"]
    logs = user.call("GET", f"/v1/tasks/{task['id']}/logs").json()["items"]
    notes = [l["text"] for l in logs if "note from" in l["text"]]
    assert notes == ["[note from oncall@example.test] Disk replaced, retrying tonight."], logs

    # A reply that lost its Reply-To still matches by In-Reply-To (the Message-ID carries the token).
    raw = reply_to(mail, "ann@example.test", "Second thought.", to="someone@example.test",
                   in_reply_to=mail["Message-ID"])
    assert inbound(h, raw).status == 200
    logs = user.call("GET", f"/v1/tasks/{task['id']}/logs").json()["items"]
    assert any("Second thought." in l["text"] for l in logs)


def test_a_mail_to_a_device_token_becomes_a_new_task_on_that_device(harmar, tmp):
    box = Mailbox()
    h = start(harmar, tmp)
    admin = admin_of(h)
    user = User(h)
    device = user.register_device("pi")
    to = "devices@example.test"
    send_template(h, admin, "device-offline", to, user_id=user.id, device_id=device.id, device_name="pi")
    mail = box.wait_for(to, timeout=15)
    assert str(mail["Subject"]) == "[HarmarCloud] pi is offline"
    r = inbound(h, reply_to(mail, to, "please reboot"))
    assert r.status == 200, r.body
    assert r.json()["action"] == "task"
    t = user.task(r.json()["task_id"])
    assert t["type"] == "email" and t["device_id"] == device.id and t["status"] == "queued"
    assert t["payload"]["text"] == "please reboot" and t["payload"]["from"] == to


def test_inbound_mail_is_authenticated_typed_bounded_and_bad_mime_is_kept(harmar, tmp):
    h = start(harmar, tmp, email__inbound_max_bytes="64KiB")
    admin = admin_of(h)
    good = (FIXTURES / "plain.eml").read_bytes()
    assert inbound(h, good, secret=None).status == 401
    wrong = inbound(h, good, secret="nope")
    assert wrong.status == 401 and wrong.json()["code"] == "invalid_inbound_secret"
    assert inbound(h, good, content_type="text/plain").status == 415
    assert inbound(h, good + b"x" * 70000).status == 413

    no_token = inbound(h, good)  # a well-formed mail whose token is not ours
    assert no_token.status == 422 and no_token.json()["code"] == "no_reply_token"
    for name, code in [("malformed_no_headers.eml", "mime_malformed"), ("malformed_no_from.eml", "mime_malformed"),
                       ("bad_charset.eml", "mime_bad_charset"), ("bad_utf8.eml", "mime_bad_encoding")]:
        r = inbound(h, (FIXTURES / name).read_bytes(), content_type="application/octet-stream")
        assert r.status == 422, (name, r.body)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == code, (name, r.body)
    bomb = b"From: x@example.test\r\nSubject: bomb\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 1500 + b"x\r\n"
    r = inbound(h, bomb)
    assert r.status == 422 and r.json()["code"] == "mime_too_complex"
    assert h.request("GET", "/healthz").status == 200

    rejected = h.request("GET", "/v1/email/incoming?status=rejected", headers=admin).json()["items"]
    assert len(rejected) == 6
    kept = {x["code"]: x for x in rejected}
    assert set(kept) == {"no_reply_token", "mime_malformed", "mime_bad_charset", "mime_bad_encoding", "mime_too_complex"}
    stored = h.dir / "data" / "blobs" / kept["mime_too_complex"]["blob_key"]
    assert stored.read_bytes() == bomb
    assert User(h).call("GET", "/v1/email/incoming").status == 403


def test_config_smtp_passwords_are_never_readable_back(harmar, tmp):
    h = start(harmar, tmp)
    user = User(h)
    password = "Sup3r-Secret-SMTP-pw"
    host, port = sink()
    r = user.call("POST", "/v1/email/config", {"recipients": ["me@example.test"],
                                                "smtp": {"host": host, "port": port, "user": "bot", "password": password}})
    assert r.status == 201, r.body
    assert r.json()["config"]["smtp"]["password"] == "********"
    assert r.json()["config"]["smtp"]["password_set"] is True
    got = user.call("GET", "/v1/email/config/default")
    assert password not in got.body.decode() and got.json()["config"]["smtp"]["user"] == "bot"
    # An update without the password keeps it.
    r = user.call("POST", "/v1/email/config", {"recipients": ["me@example.test"], "smtp": {"host": host, "port": port,
                                                                                             "user": "bot"}})
    assert r.status == 200 and r.json()["config"]["smtp"]["password_set"] is True
    if h.db_args:  # on MariaDB: every column of the stored config
        stored = "".join("".join(r) for r in h.db_rows("SELECT * FROM email_configs"))
        assert "bot" in stored and password not in stored
    else:
        db = (h.dir / "data" / "harmar.db").read_bytes()
        wal = h.dir / "data" / "harmar.db-wal"
        if wal.exists():
            db += wal.read_bytes()
        assert password.encode() not in db
    assert password not in h.read_log()
    bad = user.call("POST", "/v1/email/config", {"recipients": ["not an address"], "kinds": ["nope"],
                                                  "smtp": {"port": 0}})
    assert bad.status == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert {"recipients", "kinds", "smtp.host", "smtp.port"} <= fields


def test_the_test_mail_reports_the_smtp_outcome(harmar, tmp):
    box = Mailbox()
    h = start(harmar, tmp)
    user = User(h)
    assert user.call("POST", "/v1/email/test", {}).json()["code"] == "no_recipients"
    host, port = sink()
    to = "tester@example.test"
    assert user.call("POST", "/v1/email/config", {"recipients": [to], "smtp": {"host": host, "port": port}}).status == 201
    r = user.call("POST", "/v1/email/test", {})
    assert r.status == 200, r.body
    assert r.json()["delivered"] is True and r.json()["results"] == [{"to": to, "ok": True}]
    mail = box.wait_for(to, timeout=5)
    assert "test mail" in str(mail["Subject"])
    closed = free_port()
    assert user.call("POST", "/v1/email/config", {"recipients": [to], "smtp": {"host": "127.0.0.1", "port": closed}}).status == 200
    r = user.call("POST", "/v1/email/test", {})
    assert r.status == 200
    assert r.json()["delivered"] is False and r.json()["results"][0]["ok"] is False
    assert r.json()["results"][0]["error"]


def test_an_unreachable_server_ends_dead_after_its_attempts(harmar, tmp):
    h = start(harmar, tmp, smtp_url=f"smtp://127.0.0.1:{free_port()}", smtp__attempts=3)
    admin = admin_of(h)
    to = "dead-letter@example.test"
    send_template(h, admin, "announcement", to, title="Hello", body="Nobody will read this.")

    def dead():
        return [m for m in outbox(h, admin, "dead") if m["to"] == to]
    rows = wait_until(dead, timeout=20, what="the dead letter")
    assert rows[0]["attempts"] == 3 and rows[0]["error"] and rows[0]["kind"] == "announcement"
    assert not [m for m in outbox(h, admin, "queued") if m["to"] == to]
    assert h.request("GET", "/v1/email/outbox?status=nope", headers=admin).status == 422


def test_a_queued_mail_survives_a_restart_and_is_sent_once(harmar, tmp):
    box = Mailbox()
    h = start(harmar, tmp, smtp_url=f"smtp://127.0.0.1:{free_port()}", smtp__attempts=30)
    admin = admin_of(h)
    to = "restart@example.test"
    send_template(h, admin, "announcement", to, title="Survivor", body="Sent after a restart.")
    wait_until(lambda: [m for m in outbox(h, admin, "queued") if m["to"] == to and m["attempts"] >= 1],
               timeout=20, what="a failed first attempt")
    h.stop()
    config = json.loads(next(tmp.glob("harmar-*.yaml")).read_text())
    config["smtp"]["url"] = require_env("HARMAR_TEST_SMTP_URL")
    path = tmp / "restart.yaml"
    path.write_text(json.dumps(config))
    h2 = Harmar(h.dir, ["--config", str(path)])  # the same data dir, now with a working SMTP server
    h2.start()
    try:
        mail = box.wait_for(to, timeout=20)
        assert str(mail["Subject"]) == "[HarmarCloud] Survivor"
        admin2 = admin_of_existing(h2)
        rows = wait_until(lambda: [m for m in outbox(h2, admin2, "sent") if m["to"] == to], timeout=10, what="sent")
        assert rows[0]["attempts"] >= 2
        box.assert_none(to, wait=0.5)
    finally:
        h2.stop()


def admin_of_existing(h):
    r = h.request("POST", "/v1/auth/login", {"email": "root@example.test", "password": "root passphrase 1"})
    assert r.status == 200, r.body
    return bearer(r.json()["access_token"])
