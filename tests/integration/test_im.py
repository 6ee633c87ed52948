"""Instant messaging on the real binary with real clients (HTTP, python3-websockets): direct and
group conversations with roles, idempotent sending, history paging, read positions, edits and
recalls, attachments, typing and presence, permissions, a slow consumer, and two users with three
devices each who all catch up exactly after going offline (on SQLite and PostgreSQL)."""
import asyncio
import base64
import json
import os
import socket
import struct
import uuid

import pytest

from harness import wait_until
from im_support import Socket, User, fresh_pg_url, group, run

BACKENDS = ["sqlite", "postgres"]


def backend_args(backend):
    return [] if backend == "sqlite" else ["--db", fresh_pg_url()]


def test_a_direct_conversation_is_one_per_pair_and_invisible_to_others(harmar):
    h = harmar()
    alice, bob, eve = User(h, "d-alice@example.com"), User(h, "d-bob@example.com"), User(h, "d-eve@example.com")
    first = alice.post("/v1/conversations", {"type": "direct", "member_ids": [bob.id]}, expect=201).json()
    conv = first["conversation"]
    assert conv["type"] == "direct" and conv["member_count"] == 2 and conv["last_seq"] == 0
    # Either side asking again gets the same conversation, 200 instead of 201.
    again = bob.post("/v1/conversations", {"type": "direct", "member_ids": [alice.id]}, expect=200).json()
    assert again["conversation"]["id"] == conv["id"]
    assert eve.call("GET", f"/v1/conversations/{conv['id']}").status == 404
    assert eve.call("GET", f"/v1/conversations/{conv['id']}/messages").status == 404
    assert eve.get("/v1/conversations")["items"] == []
    # Direct conversations have exactly two members, no title, nobody to add.
    r = alice.post("/v1/conversations", {"type": "direct", "member_ids": [bob.id, eve.id]}, expect=422)
    assert r.json()["code"] == "validation_failed"
    r = alice.post(f"/v1/conversations/{conv['id']}/members", {"user_ids": [eve.id]}, expect=409)
    assert r.json()["code"] == "direct_conversation"
    r = alice.post("/v1/conversations", {"type": "direct", "member_ids": [str(uuid.uuid4())]}, expect=422)
    assert r.json()["errors"][0]["field"] == "member_ids[0]"


def test_group_roles_join_leave_and_kick(harmar):
    h = harmar()
    owner, ann, ben, cat = (User(h, f"g-{n}@example.com") for n in ("owner", "ann", "ben", "cat"))
    gid = group(owner, [ann, ben], title="crew")
    detail = owner.get(f"/v1/conversations/{gid}")
    roles = {m["user_id"]: m["role"] for m in detail["members"]}
    assert roles == {owner.id: "owner", ann.id: "member", ben.id: "member"}
    # A member may not add people to a closed group, nor change roles.
    assert ann.post(f"/v1/conversations/{gid}/members", {"user_ids": [cat.id]}).status == 403
    assert ann.call("PATCH", f"/v1/conversations/{gid}/members/{ben.id}", {"role": "admin"}).status == 403
    # The owner makes Ann an admin; an admin adds Cat and kicks Ben but cannot kick the owner.
    owner.call("PATCH", f"/v1/conversations/{gid}/members/{ann.id}", {"role": "admin"}, expect=200)
    ann.post(f"/v1/conversations/{gid}/members", {"user_ids": [cat.id]}, expect=200)
    ann.call("DELETE", f"/v1/conversations/{gid}/members/{ben.id}", expect=204)
    assert ann.call("DELETE", f"/v1/conversations/{gid}/members?user_id={owner.id}").status == 403
    assert ben.call("GET", f"/v1/conversations/{gid}").status == 404
    assert ben.post(f"/v1/conversations/{gid}/messages", {"body": "hi", "client_msg_id": "x"}).status == 404
    # Cat leaves by removing themself (the body form of DELETE /members).
    cat.call("DELETE", f"/v1/conversations/{gid}/members", {"user_id": cat.id}, expect=204)
    # The owner leaves: the admin inherits the group.
    owner.call("DELETE", f"/v1/conversations/{gid}/members/{owner.id}", expect=204)
    detail = ann.get(f"/v1/conversations/{gid}")
    assert [(m["user_id"], m["role"]) for m in detail["members"]] == [(ann.id, "owner")]
    assert detail["member_count"] == 1
    # An open group: anyone who knows it may join, as a member.
    ann.call("PATCH", f"/v1/conversations/{gid}", {"open": True, "title": "open crew"}, expect=200)
    ben.post(f"/v1/conversations/{gid}/members", {"user_id": ben.id}, expect=200)
    assert ben.post(f"/v1/conversations/{gid}/members", {"user_id": ben.id, "role": "admin"}).status == 403
    assert ben.get(f"/v1/conversations/{gid}")["title"] == "open crew"
    # Everyone concerned saw each change in their sync log, in order.
    kinds = [e["type"] for e in ann.sync_all(0)[0]]
    assert kinds == ["conversation.created", "member.role_changed", "member.joined", "member.removed", "member.left",
                     "member.left", "member.role_changed", "conversation.updated", "member.joined"]
    ben_kinds = [(e["type"], e["data"].get("user_id")) for e in ben.sync_all(0)[0]]
    assert ("member.removed", ben.id) in ben_kinds
    assert ben_kinds[-1] == ("member.joined", ben.id)


def test_sending_is_idempotent_on_client_msg_id_and_history_pages_by_seq(harmar):
    h = harmar()
    alice, bob = User(h, "p-alice@example.com"), User(h, "p-bob@example.com")
    gid = group(alice, [bob])
    first = alice.send(gid, "hello", client_msg_id="c-1")
    retry = alice.call("POST", f"/v1/conversations/{gid}/messages", {"body": "hello", "client_msg_id": "c-1"},
                       expect=201)
    assert retry.json()["message"] == first
    assert retry.header("Idempotent-Replayed") == "true"
    assert set(first) >= {"id", "conversation_id", "sender_id", "seq", "body", "client_msg_id", "created_at"}
    assert first["seq"] == 1 and first["sender_id"] == alice.id and first["conversation_id"] == gid
    # The same client_msg_id from another sender is another message.
    assert bob.send(gid, "hello", client_msg_id="c-1")["seq"] == 2
    for i in range(3, 121):
        (alice if i % 2 else bob).send(gid, f"message {i}", client_msg_id=f"c-{i}")
    # Newest page first, each page ascending; before_seq and the cursor agree.
    page = bob.get(f"/v1/conversations/{gid}/messages?limit=50")
    assert [m["seq"] for m in page["items"]] == list(range(71, 121))
    seqs = [m["seq"] for m in page["items"]]
    cursor = page["next_cursor"]
    while cursor:
        page = bob.get(f"/v1/conversations/{gid}/messages?limit=50&cursor={cursor}")
        seqs = [m["seq"] for m in page["items"]] + seqs
        cursor = page["next_cursor"]
    assert seqs == list(range(1, 121))
    older = bob.get(f"/v1/conversations/{gid}/messages?before_seq=11&limit=5")
    assert [m["seq"] for m in older["items"]] == [6, 7, 8, 9, 10]
    newer = bob.get(f"/v1/conversations/{gid}/messages?after_seq=115&limit=3")
    assert [m["seq"] for m in newer["items"]] == [116, 117, 118]
    assert bob.call("GET", f"/v1/conversations/{gid}/messages?limit=500").status == 422
    # Validation: a message needs a client_msg_id and a body; bounds hold.
    r = alice.post(f"/v1/conversations/{gid}/messages", {"body": "x"}, expect=422)
    assert r.json()["errors"][0]["field"] == "client_msg_id"
    assert alice.post(f"/v1/conversations/{gid}/messages", {"body": "", "client_msg_id": "e"}).status == 422
    assert alice.post(f"/v1/conversations/{gid}/messages",
                      {"body": "x" * (16 * 1024 + 1), "client_msg_id": "big"}).status == 422


def test_read_positions_move_forward_and_unread_counts_follow(harmar):
    h = harmar()
    alice, bob = User(h, "r-alice@example.com"), User(h, "r-bob@example.com")
    gid = group(alice, [bob])
    for i in range(5):
        alice.send(gid, f"m{i}")
    bob.send(gid, "mine")  # one's own messages are never unread
    conv = next(c for c in bob.get("/v1/conversations")["items"] if c["id"] == gid)
    assert conv["unread_count"] == 5 and conv["read_seq"] == 0 and conv["last_seq"] == 6
    r = bob.post(f"/v1/conversations/{gid}/read", {"seq": 3}, expect=200).json()
    assert r == {"conversation_id": gid, "read_seq": 3, "unread_count": 2}
    # Going back is ignored; going past the end stops at the newest message.
    assert bob.post(f"/v1/conversations/{gid}/read", {"seq": 1}, expect=200).json()["read_seq"] == 3
    assert bob.post(f"/v1/conversations/{gid}/read", {"seq": 99}, expect=200).json() == {
        "conversation_id": gid, "read_seq": 6, "unread_count": 0}
    assert bob.get(f"/v1/conversations/{gid}")["unread_count"] == 0
    assert alice.get(f"/v1/conversations/{gid}")["unread_count"] == 1
    # Bob's other devices learn of it through sync.
    reads = [e for e in bob.sync_all(0)[0] if e["type"] == "conversation.read"]
    assert [e["data"]["read_seq"] for e in reads] == [3, 6]
    assert bob.post(f"/v1/conversations/{gid}/read", {}).status == 422


def test_only_the_sender_edits_or_recalls_and_everyone_sees_it(harmar):
    h = harmar()
    alice, bob = User(h, "e-alice@example.com"), User(h, "e-bob@example.com")
    gid = group(alice, [bob])
    m = alice.send(gid, "helo")
    path = f"/v1/conversations/{gid}/messages/{m['id']}"
    assert bob.call("PATCH", path, {"body": "hacked"}).status == 403
    assert bob.call("DELETE", path).status == 403
    edited = alice.call("PATCH", path, {"body": "hello"}, expect=200).json()["message"]
    assert edited["body"] == "hello" and edited["edited_at"] and edited["seq"] == m["seq"]
    alice.call("DELETE", path, expect=204)
    alice.call("DELETE", path, expect=204)  # recalling twice is a no-op
    assert alice.call("PATCH", path, {"body": "again"}).status == 409
    shown = bob.get(f"/v1/conversations/{gid}/messages")["items"]
    assert len(shown) == 1 and shown[0]["deleted"] is True and shown[0]["body"] == ""
    events = bob.sync_all(0)[0]
    assert [e["type"] for e in events] == ["conversation.created", "message.new", "message.edited", "message.deleted"]
    # Sync shows each message as it is now: the recalled one has no body left anywhere.
    assert all(e["data"]["message"]["body"] == "" for e in events[1:])
    assert bob.get(f"/v1/conversations/{gid}")["unread_count"] == 0


def test_edit_and_recall_windows_close(harmar):
    h = harmar("--set", "im.edit_window=1s", "--set", "im.recall_window=1s")
    alice, bob = User(h, "w-alice@example.com"), User(h, "w-bob@example.com")
    gid = group(alice, [bob])
    m = alice.send(gid, "soon too late")
    import time
    time.sleep(1.2)
    path = f"/v1/conversations/{gid}/messages/{m['id']}"
    assert alice.call("PATCH", path, {"body": "x"}).json()["code"] == "edit_window_passed"
    assert alice.call("DELETE", path).json()["code"] == "recall_window_passed"


def test_attachments_are_blobs_with_type_and_size_limits(harmar):
    h = harmar("--set", "im.attachment_max_bytes=1MiB")
    alice, bob, eve = User(h, "a-alice@example.com"), User(h, "a-bob@example.com"), User(h, "a-eve@example.com")
    gid = group(alice, [bob])
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(200_000)
    r = alice.call("POST", f"/v1/conversations/{gid}/attachments?name=../../cat.png", png,
                   headers={"Content-Type": "image/png"}, expect=201)
    att = r.json()["attachment"]
    assert att["size"] == len(png) and att["content_type"] == "image/png" and att["name"] == "cat.png"
    msg = alice.call("POST", f"/v1/conversations/{gid}/messages",
                     {"body": "", "client_msg_id": "pic", "attachment_id": att["id"]}, expect=201).json()["message"]
    assert msg["attachment"]["id"] == att["id"]
    got = bob.call("GET", att["url"], expect=200)
    assert got.body == png and got.header("Content-Type") == "image/png"
    assert got.header("X-Content-Type-Options") == "nosniff"
    assert eve.call("GET", att["url"]).status == 404
    # One attachment, one message; other senders cannot borrow it.
    again = alice.post(f"/v1/conversations/{gid}/messages", {"body": "", "client_msg_id": "pic2",
                                                              "attachment_id": att["id"]}, expect=422)
    assert again.json()["errors"][0]["field"] == "attachment_id"
    assert bob.post(f"/v1/conversations/{gid}/messages", {"body": "mine", "client_msg_id": "b",
                                                           "attachment_id": att["id"]}).status == 422
    assert alice.call("POST", f"/v1/conversations/{gid}/attachments", b"#!/bin/sh",
                      headers={"Content-Type": "application/x-sh"}).status == 415
    # Too large is refused from the Content-Length, before the bytes are sent.
    s = socket.create_connection(("127.0.0.1", h.port))
    s.sendall((f"POST /v1/conversations/{gid}/attachments HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
               f"Authorization: Bearer {alice.token}\r\nContent-Length: {(1 << 20) + 1}\r\n\r\n").encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 413")
    s.close()
    assert eve.call("POST", f"/v1/conversations/{gid}/attachments", png,
                    headers={"Content-Type": "image/png"}).status == 404
    # A recalled message takes its attachment with it.
    alice.call("DELETE", f"/v1/conversations/{gid}/messages/{msg['id']}", expect=204)
    assert "attachment" not in bob.get(f"/v1/conversations/{gid}/messages")["items"][0]


def test_typing_is_live_only_and_presence_follows_sockets(harmar):
    h = harmar("--set", "im.presence_ttl=3s")
    alice, bob = User(h, "t-alice@example.com"), User(h, "t-bob@example.com")
    gid = group(alice, [bob])

    async def scenario():
        async with Socket(h.port, alice.token) as a:
            await a.subscribe(f"conversation:{gid}")
            # Bob comes online: Alice's conversation hears it, and /v1/presence says so.
            async with Socket(h.port, bob.token):
                seen = await a.until(lambda f: f["type"] == "presence.changed" and f["data"]["user_id"] == bob.id
                                     and f["data"]["online"])
                assert "seq" not in seen[-1]
                items = alice.get(f"/v1/presence?user_ids={bob.id},{alice.id}")["items"]
                assert {p["user_id"]: p["online"] for p in items} == {bob.id: True, alice.id: True}
                bob.post(f"/v1/conversations/{gid}/typing", {"typing": True}, expect=204)
                frames = await a.until(lambda f: f["type"] == "typing.started")
                assert frames[-1]["data"] == {"conversation_id": gid, "user_id": bob.id}
                assert "seq" not in frames[-1]
                bob.post(f"/v1/conversations/{gid}/typing", {"typing": False}, expect=204)
                await a.until(lambda f: f["type"] == "typing.stopped")
            seen = await a.until(lambda f: f["type"] == "presence.changed" and f["data"]["user_id"] == bob.id
                                 and not f["data"]["online"])
            assert seen[-1]["data"]["last_seen_at"]
            p = alice.get(f"/v1/presence?user_ids={bob.id}")["items"][0]
            assert p["online"] is False and p["last_seen_at"]
            # Typing is never stored: a new subscriber replaying everything sees only stored events.
            alice.send(gid, "after typing")
        async with Socket(h.port, alice.token) as again:
            replay, ack = await again.subscribe(f"conversation:{gid}", since=0)
            # Presence of our own new socket may arrive live meanwhile; stored events carry a seq.
            assert all("seq" not in f for f in replay if f["type"] == "presence.changed")
            assert [f["type"] for f in replay if f["type"] != "presence.changed"] == ["message.new"]
            assert ack["seq"] == 1

    run(scenario())
    # Presence is only told about people one shares a conversation with.
    stranger = User(h, "t-stranger@example.com")
    assert stranger.get(f"/v1/presence?user_ids={bob.id}")["items"] == []


def test_permission_refusals_on_channels_and_endpoints(harmar):
    h = harmar()
    alice, bob, eve = User(h, "x-alice@example.com"), User(h, "x-bob@example.com"), User(h, "x-eve@example.com")
    gid = group(alice, [bob])

    async def scenario():
        async with Socket(h.port, eve.token) as e:
            await e.send({"op": "subscribe", "channel": f"conversation:{gid}"})
            err = await e.recv()
            assert err["type"] == "error" and err["code"] == "forbidden" and err["channel"] == f"conversation:{gid}"
            await e.send({"op": "subscribe", "channel": "conversation:not-a-uuid"})
            assert (await e.recv())["code"] == "forbidden"
        # A member removed while subscribed sees the removal, then nothing more of the conversation.
        async with Socket(h.port, bob.token) as b:
            await b.subscribe(f"conversation:{gid}")
            alice.send(gid, "before")
            await b.until(lambda f: f["type"] == "message.new")
            alice.call("DELETE", f"/v1/conversations/{gid}/members/{bob.id}", expect=204)
            frames = await b.until(lambda f: f["type"] == "member.removed")
            assert frames[-1]["data"]["user_id"] == bob.id
            alice.send(gid, "after")
            alice.post(f"/v1/conversations/{gid}/typing", {}, expect=204)
            assert await b.quiet(0.7) == []
            await b.send({"op": "subscribe", "channel": f"conversation:{gid}"})
            assert (await b.recv())["code"] == "forbidden"

    run(scenario())
    for method, path, body in [
        ("GET", f"/v1/conversations/{gid}", None),
        ("GET", f"/v1/conversations/{gid}/messages", None),
        ("POST", f"/v1/conversations/{gid}/messages", {"body": "x", "client_msg_id": "x"}),
        ("POST", f"/v1/conversations/{gid}/read", {"seq": 1}),
        ("POST", f"/v1/conversations/{gid}/typing", {}),
        ("POST", f"/v1/conversations/{gid}/members", {"user_id": eve.id}),
        ("GET", f"/v1/conversations/{gid}/keys", None),
        ("PATCH", f"/v1/conversations/{gid}", {"title": "mine now"}),
    ]:
        r = eve.call(method, path, body)
        assert r.status == 404, (method, path, r.status)
        assert r.json()["code"] == "not_found"
    assert h.request("GET", "/v1/sync").status == 401
    assert h.request("GET", f"/v1/conversations/{gid}").status == 401
    assert eve.call("GET", "/v1/sync?since=-1").status == 422
    r = eve.call("GET", "/v1/sync?since=5")
    assert r.status == 409 and r.json()["code"] == "since_ahead"


# --- a slow consumer ---------------------------------------------------------------------------

class RawSocket:
    """A WebSocket client that reads only when told to, with a tiny receive buffer: a slow consumer."""

    def __init__(self, port, token):
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.s.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                        f"Authorization: Bearer {token}\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_text(self, text):
        data = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81, 0x80 | len(data)]) if len(data) < 126 else bytes([0x81, 0xFE]) + struct.pack("!H", len(data))
        self.s.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def read_frame(self):
        self._need(2)
        op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        off = 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return op, payload


def test_a_slow_consumer_is_cut_off_while_others_go_on(harmar):
    h = harmar("--set", "realtime.send_queue_bytes=65536")
    alice, bob = User(h, "s-alice@example.com"), User(h, "s-bob@example.com")
    gid = group(alice, [bob])
    slow = RawSocket(h.port, bob.token)
    slow.send_text(json.dumps({"op": "subscribe", "channel": f"conversation:{gid}"}))
    op, payload = slow.read_frame()
    while json.loads(payload)["type"] == "presence.changed":  # our own socket's presence may come first
        op, payload = slow.read_frame()
    assert json.loads(payload)["type"] == "subscribed"
    count = 400

    async def scenario():
        async with Socket(h.port, alice.token) as fast:
            await fast.subscribe(f"conversation:{gid}")
            got = []

            async def read_all():  # a client that keeps up: reads while the messages are sent
                while len(got) < count:
                    f = await fast.recv(timeout=30)
                    if f["type"] == "message.new":
                        got.append(f["data"]["message"]["seq"])

            reader = asyncio.ensure_future(read_all())
            loop = asyncio.get_running_loop()
            for i in range(count):  # ~6.5 MB in all: past the 64 KiB queue and both socket buffers
                await loop.run_in_executor(None, alice.send, gid, f"{i:04d}" + "x" * 16_000)
            await reader
            assert got == list(range(1, count + 1))

    run(scenario(), timeout=180)
    # The slow one finds, after what fitted, a close frame: 1008, send queue overflow.
    delivered, close = 0, None
    while close is None:
        op, payload = slow.read_frame()
        if op == 0x8:
            close = (struct.unpack("!H", payload[:2])[0], payload[2:].decode())
        elif op == 0x1:
            delivered += 1
    assert close == (1008, "send queue overflow")
    assert delivered < count
    # The server is fine, and the slow client may come back and resume with since: the replay of
    # its backlog (far larger than the queue) is paced by its reading, not cut off.
    async def resume():
        async with Socket(h.port, bob.token) as back:
            replay, ack = await back.subscribe(f"conversation:{gid}", since=delivered)
            assert [f["data"]["message"]["seq"] for f in replay] == list(range(delivered + 1, count + 1))

    run(resume())


# --- two users, three devices each ---------------------------------------------------------------

class Device:
    """One of a user's devices. `ws`: keeps a socket on its user channel and resumes it with
    `since`; `sync`: no socket, catches up with GET /v1/sync; `both`: live socket while online and
    /v1/sync on reconnect, applying events in position order (skipping positions it already has)."""

    def __init__(self, user, name, mode):
        self.user, self.name, self.mode = user, name, mode
        self.rt_seq = 0            # last seq seen on the user channel (ws)
        self.pos = 0               # last sync position applied
        self.positions = []        # every position applied, in order
        self.rt_seqs = []          # every user-channel seq received (ws)
        self.messages = {}         # message id -> times received
        self.sock = None
        self.reader = None
        self.pending = {}          # both: live events ahead of what sync has applied

    def _apply(self, pos, etype, data):
        if pos <= self.pos:
            return False
        assert pos == self.pos + 1, f"{self.name}: position {pos} after {self.pos}"
        self.pos = pos
        self.positions.append(pos)
        if etype == "message.new":
            mid = data["message"]["id"]
            self.messages[mid] = self.messages.get(mid, 0) + 1
        return True

    async def _read(self):
        while True:
            f = await self.sock.recv(timeout=3600)
            if "seq" not in f or f.get("channel") != "user":
                continue
            assert f["seq"] > self.rt_seq
            if self.mode == "ws":
                assert f["seq"] == self.rt_seq + 1, f"{self.name}: user-channel seq {f['seq']} after {self.rt_seq}"
            self.rt_seq = f["seq"]
            self.rt_seqs.append(f["seq"])
            if self.mode == "ws":
                self._apply(f["data"]["pos"], f["type"], f["data"])
            else:
                self.pending[f["data"]["pos"]] = f
                while self.pos + 1 in self.pending:
                    g = self.pending.pop(self.pos + 1)
                    self._apply(g["data"]["pos"], g["type"], g["data"])

    async def online(self, port):
        if self.mode in ("ws", "both"):
            self.sock = Socket(port, self.user.token)
            await self.sock.__aenter__()
            since = self.rt_seq if self.mode == "ws" else None
            replay, ack = await self.sock.subscribe("user", since=since)
            for f in replay:  # ws: what it missed, in order, exactly once
                assert f["seq"] == self.rt_seq + 1
                self.rt_seq = f["seq"]
                self.rt_seqs.append(f["seq"])
                self._apply(f["data"]["pos"], f["type"], f["data"])
            if self.mode == "both":
                self.rt_seq = ack["seq"]
            self.reader = asyncio.ensure_future(self._read())
        if self.mode in ("sync", "both"):
            await self.catch_up()

    async def catch_up(self):
        loop = asyncio.get_running_loop()
        events, _ = await loop.run_in_executor(None, self.user.sync_all, self.pos)
        for e in events:
            assert self._apply(e["pos"], e["type"], e["data"]) or self.mode == "both"
            self.pending.pop(e["pos"], None)
        while self.pos + 1 in self.pending:
            g = self.pending.pop(self.pos + 1)
            self._apply(g["data"]["pos"], g["type"], g["data"])

    async def offline(self):
        if self.reader:
            self.reader.cancel()
            try:
                await self.reader
            except (asyncio.CancelledError, Exception):
                pass
            self.reader = None
        if self.sock:
            await self.sock.ws.close()
            self.sock = None


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_users_with_three_devices_each_catch_up_exactly(harmar, backend):
    h = harmar(*backend_args(backend))
    alice, bob = User(h, "m-alice@example.com"), User(h, "m-bob@example.com")
    conv = alice.post("/v1/conversations", {"type": "direct", "member_ids": [bob.id]}, expect=201).json()
    cid = conv["conversation"]["id"]
    devices = {u.email: [Device(u, f"{u.email[2:5]}-{m}", m) for m in ("ws", "sync", "both")] for u in (alice, bob)}
    everyone = devices[alice.email] + devices[bob.email]
    sent = []

    async def say(n, tag):
        loop = asyncio.get_running_loop()
        for i in range(n):
            who = alice if i % 3 else bob
            cmid = f"{tag}-{i}"
            m = await loop.run_in_executor(None, who.send, cid, f"{tag} {i}", cmid)
            if i % 7 == 0:  # a device retried: the same message again, nothing new
                again = await loop.run_in_executor(None, who.send, cid, f"{tag} {i}", cmid)
                assert again["id"] == m["id"]
            sent.append(m["id"])

    async def settle():
        """Every online socket has what the server has (live pushes are asynchronous)."""
        heads = {u.email: u.get("/v1/sync?since=0&limit=1")["head"] for u in (alice, bob)}
        deadline = asyncio.get_running_loop().time() + 20
        for d in everyone:
            if d.sock:
                while d.pos < heads[d.user.email]:
                    assert asyncio.get_running_loop().time() < deadline, f"{d.name} stuck at {d.pos}"
                    await asyncio.sleep(0.05)

    async def scenario():
        for d in everyone:
            await d.online(h.port)
        await say(20, "all-online")
        await settle()
        # Some devices go away while the chat goes on.
        gone = [devices[alice.email][1], devices[bob.email][0], devices[bob.email][2]]
        for d in gone:
            await d.offline()
        await say(30, "some-offline")
        await settle()
        # Everyone goes away; the chat goes on from the API alone.
        for d in everyone:
            await d.offline()
        await say(20, "all-offline")
        # Everyone comes back and catches up, then the chat goes on live.
        for d in everyone:
            await d.online(h.port)
        await say(10, "back")
        await settle()
        for d in everyone:
            if d.mode in ("sync", "both"):
                await d.catch_up()
        for d in everyone:
            await d.offline()

    run(scenario(), timeout=300)
    assert len(sent) == 80 and len(set(sent)) == 80
    for d in everyone:
        head = d.user.get("/v1/sync?since=0&limit=1")["head"]
        assert d.positions == list(range(1, head + 1)), d.name  # every position once, in order
        assert set(d.messages) == set(sent), d.name                # no message lost
        assert all(n == 1 for n in d.messages.values()), d.name    # none twice
        if d.mode == "ws":
            assert d.rt_seqs == list(range(1, len(d.rt_seqs) + 1)), d.name
    # The conversation itself holds seq 1..80, once each.
    seqs, cursor = [], None
    while True:
        page = alice.get(f"/v1/conversations/{cid}/messages?limit=200" + (f"&cursor={cursor}" if cursor else ""))
        seqs = [m["seq"] for m in page["items"]] + seqs
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seqs == list(range(1, 81))


def test_im_keys_are_in_the_configuration_schema(harmar):
    import subprocess
    from harness import harmar_bin
    out = subprocess.run([harmar_bin(), "config", "schema"], capture_output=True, text=True).stdout
    for key in ("im.max_group_members", "im.edit_window", "im.attachment_types", "im.sync_retention",
                "im.presence_ttl"):
        assert key in out


def test_every_im_endpoint_is_in_the_openapi_document(harmar):
    h = harmar()
    paths = h.get("/v1/openapi.json").json()["paths"]
    for path, methods in {
        "/v1/conversations": {"get", "post"},
        "/v1/conversations/{id}": {"get", "patch"},
        "/v1/conversations/{id}/members": {"post", "delete"},
        "/v1/conversations/{id}/members/{user_id}": {"delete", "patch"},
        "/v1/conversations/{id}/messages": {"get", "post"},
        "/v1/conversations/{id}/messages/{message_id}": {"patch", "delete"},
        "/v1/conversations/{id}/read": {"post"},
        "/v1/conversations/{id}/typing": {"post"},
        "/v1/conversations/{id}/attachments": {"post"},
        "/v1/conversations/{id}/attachments/{attachment_id}": {"get"},
        "/v1/conversations/{id}/keys": {"get"},
        "/v1/sync": {"get"},
        "/v1/presence": {"get"},
        "/v1/im/keys": {"get"},
        "/v1/im/keys/{device_id}": {"put", "delete"},
    }.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
