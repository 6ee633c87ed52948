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
    rows = wait_until(lambda: [r for r in reset_row() if r[1] not in ("queued", "sending")], timeout=10, what="the outbox row")
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


def test_smtp_auth_is_used_and_a_wrong_password_fails_the_mail(harmar, tmp):
    """A second sink, started here, that requires SMTP AUTH (without TLS: it is on loopback)."""
    import pathlib
    import subprocess
    import sys
    from harness import wait_until
    from signin_support import free_port
    port = free_port()
    maildir = tmp / "auth-mail"
    sink = pathlib.Path(__file__).resolve().parents[1] / "services" / "smtp_sink.py"
    proc = subprocess.Popen(["/usr/bin/python3", str(sink), "--port", str(port), "--dir", str(maildir),
                             "--auth", "mailer:s3cret"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import socket

        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_until(listening, timeout=15, what="the AUTH sink")
        box = Mailbox(str(maildir))
        ok = start_configured(harmar, tmp, {"smtp": {"url": f"smtp://127.0.0.1:{port}", "user": "mailer",
                                                     "password": "s3cret", "attempts": 1}})
        assert ok.request("POST", "/v1/auth/register", {"email": "authed@example.test", "password": PASSWORD}).status == 201
        box.wait_for("authed@example.test", timeout=15)
        assert "s3cret" not in ok.read_log()

        bad = start_configured(harmar, tmp, {"smtp": {"url": f"smtp://127.0.0.1:{port}", "user": "mailer",
                                                      "password": "wr0ng-pw-7", "attempts": 1}})
        assert bad.request("POST", "/v1/auth/register", {"email": "refused@example.test", "password": PASSWORD}).status == 201
        rows = wait_until(lambda: [r for r in outbox_rows(bad, "refused@example.test") if r[1] not in ("queued", "sending")], timeout=15,
                          what="the failed outbox row")
        assert rows[0][1] in ("failed", "dead") and rows[0][5], rows  # dead: the sink answers a bad AUTH by timing out
        assert "wr0ng-pw-7" not in (rows[0][5] or "")
        box.assert_none("refused@example.test")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
