"""A webhook receiver for tests: a real HTTP server in a thread that records every request and
answers a scripted sequence of statuses, and the signature check a receiver does."""
import hashlib
import hmac
import threading
import time

from harness import wait_until
from signin_support import JsonHandler, ThreadedServer


class Receiver:
    """Records every request; answers `statuses` in turn, then 200."""

    def __init__(self, statuses=()):
        self.lock = threading.Lock()
        self.requests = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(JsonHandler):
            def do_POST(self):
                body = self.body()
                with receiver.lock:
                    receiver.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                              "body": body, "at": time.monotonic()})
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_json(status, {"ok": status == 200})

        self.server = ThreadedServer(Handler)

    def __enter__(self):
        self.server.__enter__()
        self.url = self.server.url + "/hook"
        return self

    def __exit__(self, *exc):
        self.server.__exit__(*exc)

    def received(self, n=1, event=None):
        def got():
            with self.lock:
                rs = [r for r in self.requests if event is None or r["headers"].get("harmar-event") == event]
            return rs if len(rs) >= n else None
        return wait_until(got, timeout=20, what=f"{n} webhook request(s)")


def verify(secret, request, tolerance_s=300):
    """What a receiver does: recompute the HMAC over "<t>.<body>" and compare in constant time."""
    parts = dict(p.split("=", 1) for p in request["headers"]["harmar-signature"].split(","))
    t = int(parts["t"])
    assert abs(time.time() - t) < tolerance_s
    expected = hmac.new(secret.encode(), f"{t}.".encode() + request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])
