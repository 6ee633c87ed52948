"""What the instant-messaging tests share: users registered on the real binary, a small JSON API
client, and a WebSocket client for /v1/ws (python3-websockets)."""
import asyncio
import json
import os
import subprocess
import uuid

import websockets

from harness import require_env

PASSWORD = "a long enough passphrase 42"


class User:
    """A registered user: id, token, and requests made as them against one node."""

    def __init__(self, h, email):
        r = h.request("POST", "/v1/auth/register", body={"email": email, "password": PASSWORD})
        assert r.status == 201, r.body
        body = r.json()
        self.h = h
        self.id = body["user"]["id"]
        self.token = body["access_token"]
        self.email = email

    def on(self, h):
        """The same user, talking to another node."""
        other = object.__new__(User)
        other.__dict__.update(self.__dict__)
        other.h = h
        return other

    def call(self, method, path, body=None, headers=None, expect=None):
        hdrs = {"Authorization": f"Bearer {self.token}"}
        hdrs.update(headers or {})
        r = self.h.request(method, path, body=body, headers=hdrs)
        if expect is not None:
            assert r.status == expect, (method, path, r.status, r.body)
        return r

    def get(self, path, expect=200):
        return self.call("GET", path, expect=expect).json()

    def post(self, path, body=None, expect=None):
        return self.call("POST", path, body=body if body is not None else {}, expect=expect)

    def send(self, conversation_id, body, client_msg_id=None, expect=201):
        r = self.post(f"/v1/conversations/{conversation_id}/messages",
                      {"body": body, "client_msg_id": client_msg_id or uuid.uuid4().hex}, expect=expect)
        return r.json()["message"] if r.status == 201 else r.json()

    def sync_all(self, since):
        """Every sync event after `since`, following pages; returns (events, next_since)."""
        events = []
        while True:
            page = self.get(f"/v1/sync?since={since}&limit=37")
            events += page["items"]
            since = page["next_since"]
            if not page["has_more"]:
                return events, since


def group(owner, members, title="team", **extra):
    r = owner.post("/v1/conversations", {"type": "group", "member_ids": [m.id for m in members], "title": title,
                                         **extra}, expect=201)
    return r.json()["conversation"]["id"]


class Socket:
    """One /v1/ws connection: JSON frames in and out, with timeouts so a missing frame fails."""

    def __init__(self, port, token):
        self.url = f"ws://127.0.0.1:{port}/v1/ws"
        self.token = token
        self.ws = None

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url, extra_headers={"Authorization": f"Bearer {self.token}"},
                                           max_size=1 << 22, ping_interval=None)
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()

    async def send(self, frame):
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout=10):
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout=timeout))

    async def subscribe(self, channel, since=None):
        """Subscribes; returns (frames before the ack, the ack)."""
        frame = {"op": "subscribe", "channel": channel}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        before = []
        while True:
            f = await self.recv()
            if f.get("type") == "subscribed" and f.get("channel") == channel:
                return before, f
            before.append(f)

    async def until(self, predicate, timeout=10):
        """Frames up to and including the first one `predicate` accepts."""
        seen = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no matching frame within {timeout}s; saw {seen[-5:]}")
            f = await self.recv(timeout=left)
            seen.append(f)
            if predicate(f):
                return seen

    async def quiet(self, seconds=0.5):
        """Frames that arrive within `seconds` (expecting none, usually)."""
        got = []
        try:
            while True:
                got.append(await self.recv(timeout=seconds))
        except asyncio.TimeoutError:
            return got


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout=timeout))


def fresh_pg_url():
    """A new, empty PostgreSQL schema, as a URL whose search_path is that schema."""
    base = require_env("HARMAR_TEST_PG_URL")
    schema = "im_" + os.urandom(8).hex()
    subprocess.run(["psql", base, "-q", "-c", f"CREATE SCHEMA {schema}"], check=True, capture_output=True)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"
