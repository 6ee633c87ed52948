"""The mailer inside the real binary: mails reach a real SMTP server (the python3-aiosmtpd sink of
scripts/test-services.sh) and the outbox table records them without their secrets."""
import sqlite3

from harness import require_env
from mail_sink import Mailbox, first_link, html_of, query_param, text_of
from signin_support import start_configured

PASSWORD = "correct horse battery staple"


def outbox_rows(h, to):
    db = sqlite3.connect(h.dir / "data" / "harmar.db")
    try:
        return db.execute("SELECT kind, status, attempts, body, redacted, error FROM outbox WHERE to_addr = ?"
                          " ORDER BY created_at", (to,)).fetchall()
    finally:
        db.close()


def test_a_reset_mail_is_sent_by_smtp_and_the_outbox_keeps_no_token(harmar, tmp):
    box = Mailbox()
    h = start_configured(harmar, tmp, {"smtp": {"url": require_env("HARMAR_TEST_SMTP_URL"),
                                                "from": "HarmarCloud <no-reply@example.test>"}})
    to = "outbox-reader@example.test"
    assert h.request("POST", "/v1/auth/register", {"email": to, "password": PASSWORD}).status == 201
    assert h.request("POST", "/v1/auth/forgot-password", {"email": to}).status == 202
    mail = box.wait_for(to, subject_contains="Reset", timeout=15)
    assert mail["From"] == "HarmarCloud <no-reply@example.test>"
    link = first_link(mail, "/reset-password?token=")
    assert link.startswith(h.url + "/reset-password?token=")
    token = query_param(link, "token")
    assert token in html_of(mail)
    assert "Resetting the password signs" in text_of(mail)

    def reset_row():
        return [r for r in outbox_rows(h, to) if r[0] == "reset-password"]
    from harness import wait_until
    rows = wait_until(lambda: [r for r in reset_row() if r[1] != "queued"], timeout=10, what="the outbox row")
    kind, status, attempts, body, redacted, error = rows[0]
    assert (status, attempts, error) == ("sent", 1, None)
    assert redacted == 1 and token not in body and "[redacted]" in body
    assert h.request("POST", "/v1/auth/reset-password", {"token": token, "password": PASSWORD + "!"}).status == 200


def test_without_smtp_mails_go_to_the_log_and_the_outbox_says_logged(harmar, tmp):
    h = start_configured(harmar, tmp, {})
    assert "smtp.url is not set" in h.read_log()
    to = "no-smtp@example.test"
    assert h.request("POST", "/v1/auth/register", {"email": to, "password": PASSWORD}).status == 201
    from harness import wait_until
    rows = wait_until(lambda: outbox_rows(h, to), timeout=10, what="the outbox row")
    assert rows[0][0] == "verify-email" and rows[0][1] == "logged"
    assert "/verify-email?token=" in h.read_log()
