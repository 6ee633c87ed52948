"""Reading the mails the test SMTP sink received (tests/services/smtp_sink.py, started by
scripts/test-services.sh, which exports HARMAR_TEST_SMTP_URL and HARMAR_TEST_SMTP_DIR).
(Named mail_sink, not mailbox: that would shadow the standard library module.)

    box = Mailbox()                      # remembers what is already there
    ... make harmar send a mail ...
    mail = box.wait_for("ann@example.test", timeout=10)
    link = first_link(mail, "/verify-email")
    token = query_param(link, "token")
"""
import email
import email.policy
import os
import re
import time
import urllib.parse

from harness import require_env


class Mailbox:
    def __init__(self, directory=None):
        self.dir = directory or require_env("HARMAR_TEST_SMTP_DIR")
        self.seen = set(self._names())

    def _names(self):
        try:
            return sorted(os.listdir(os.path.join(self.dir, "new")))
        except FileNotFoundError:
            return []

    def _read(self, name):
        with open(os.path.join(self.dir, "new", name), "rb") as f:
            return email.message_from_binary_file(f, policy=email.policy.default)

    def new_mails(self, to=None):
        """Mails not yet returned (to `to`, if given), oldest first; each is returned once."""
        out = []
        for name in self._names():
            if name in self.seen:
                continue
            msg = self._read(name)
            rcpts = [r.lower() for r in msg.get_all("X-Envelope-To", [])]
            if to is not None and to.lower() not in rcpts:
                continue
            self.seen.add(name)
            out.append(msg)
        return out

    def wait_for(self, to, timeout=10.0, subject_contains=None):
        """The next new mail to `to`; AssertionError after `timeout` seconds (polls every 50 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.new_mails(to):
                if subject_contains is None or subject_contains in str(msg["Subject"]):
                    return msg
            if time.monotonic() >= deadline:
                raise AssertionError(f"no mail to {to} within {timeout}s (mail dir {self.dir})")
            time.sleep(0.05)

    def assert_none(self, to, wait=0.5):
        """Fails if a mail to `to` arrives within `wait` seconds."""
        time.sleep(wait)
        got = self.new_mails(to)
        assert not got, f"unexpected mail to {to}: {[str(m['Subject']) for m in got]}"


def text_of(msg):
    """The text/plain body, decoded."""
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None, "the mail has no text/plain part"
    return part.get_content()


def html_of(msg):
    part = msg.get_body(preferencelist=("html",))
    return part.get_content() if part is not None else None


def links(msg):
    return re.findall(r"https?://[^\s<>\"']+", text_of(msg))


def first_link(msg, contains=""):
    for link in links(msg):
        if contains in link:
            return link
    raise AssertionError(f"no link containing {contains!r} in:\n{text_of(msg)}")


def query_param(url, name):
    values = urllib.parse.parse_qs(urllib.parse.urlparse(url).query).get(name)
    assert values, f"{url} has no {name} parameter"
    return values[0]
