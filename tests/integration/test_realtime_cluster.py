"""Two `harmar serve` nodes on one PostgreSQL and one Redis, a client on each: events raised on one
node reach sockets on the other (messages, typing, presence, device events), clients reconnect to
the other node with `since` and get exactly what they missed, and messages sent concurrently
through both nodes reach every socket once, in order."""
import asyncio
import base64
import concurrent.futures
import os
import uuid

from harness import require_env
from im_support import Socket, User, fresh_pg_url, group, run


def two_nodes(harmar):
    db = fresh_pg_url()
    redis = require_env("HARMAR_TEST_REDIS_URL")
    # The auth rate limits live in the shared Redis: these tests register many users from one IP.
    args = ["--db", db, "--redis", redis, "--set", "im.presence_ttl=3s", "--set", "auth.rate_limit.per_ip=0"]
    env = {"HARMAR_AUTH_SECRET": base64.b64encode(os.urandom(32)).decode()}  # one key ring for both
    return harmar(*args, env=env), harmar(*args, env=env)


def test_events_raised_on_one_node_reach_a_socket_on_the_other(harmar):
    n1, n2 = two_nodes(harmar)
    alice = User(n1, "c-alice@example.com")
    bob = User(n1, "c-bob@example.com").on(n2)  # registered on one node, served by the other
    gid = group(alice, [bob])

    async def scenario():
        async with Socket(n1.port, alice.token) as a, Socket(n2.port, bob.token) as b:
            await a.subscribe(f"conversation:{gid}")
            await b.subscribe(f"conversation:{gid}")
            await b.subscribe("user")
            await b.subscribe("devices")
            # A message sent through node 1 reaches Bob's socket on node 2, on both channels.
            m = alice.send(gid, "across the cluster")
            seen = await b.until(lambda f: f["type"] == "message.new" and f["channel"] == "user")
            convo = [f for f in seen if f["type"] == "message.new" and f["channel"] == f"conversation:{gid}"]
            if not convo:
                convo = await b.until(lambda f: f["type"] == "message.new" and f["channel"].startswith("conversation:"))
            assert convo[-1]["data"]["message"]["id"] == m["id"], (m, seen, convo)
            assert seen[-1]["data"]["message"]["id"] == m["id"] and seen[-1]["data"]["pos"] >= 1
            # And back: Bob through node 2, Alice's socket on node 1.
            reply = bob.send(gid, "and back")
            await a.until(lambda f: f["type"] == "message.new" and f["data"]["message"]["id"] == reply["id"])
            # Ephemeral events cross nodes too.
            alice.post(f"/v1/conversations/{gid}/typing", {}, expect=204)
            typing = await b.until(lambda f: f["type"] == "typing.started")
            assert typing[-1]["data"]["user_id"] == alice.id
            # Presence: Bob's socket is on node 2; node 1 knows.
            presence = alice.get(f"/v1/presence?user_ids={bob.id}")["items"]
            assert presence == [{"user_id": bob.id, "online": True, "last_seen_at": None}]
            # A domain event: Bob's device heartbeats through node 1; his socket on node 2 hears it.
            reg = bob.on(n1).post("/v1/daemon/register", {"name": "edge-1"}, expect=201).json()
            hb = n1.request("POST", "/v1/daemon/heartbeat", {}, headers={"Authorization": f"Bearer {reg['api_key']}"})
            assert hb.status == 200, hb.body
            online = await b.until(lambda f: f["type"] == "device.online")
            assert online[-1]["channel"] == "devices" and online[-1]["data"]["id"] == reg["device"]["id"]
        # Bob's last socket closed on node 2: node 1 sees him offline.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while alice.get(f"/v1/presence?user_ids={bob.id}")["items"][0]["online"]:
            assert loop.time() < deadline, "bob still online"
            await asyncio.sleep(0.1)

    run(scenario())


def test_a_client_reconnecting_to_the_other_node_with_since_misses_nothing(harmar):
    n1, n2 = two_nodes(harmar)
    alice = User(n1, "r-alice@example.com")
    bob = User(n1, "r-bob@example.com")
    gid = group(alice, [bob])
    alice2 = alice.on(n2)

    async def scenario():
        async with Socket(n2.port, bob.token) as b:
            await b.subscribe(f"conversation:{gid}")
            await b.subscribe("user")
            for i in range(5):
                alice.send(gid, f"live {i}")
            frames = await b.until(lambda f: f["type"] == "message.new" and f["channel"] == "user"
                                   and f["data"]["message"]["seq"] == 5)
        stored = [f for f in frames if "seq" in f]  # presence.changed (ephemeral) has none
        conv_seq = max(f["seq"] for f in stored if f["channel"] == f"conversation:{gid}")
        user_seq = max(f["seq"] for f in stored if f["channel"] == "user")
        pos = max(f["data"]["pos"] for f in stored if f["channel"] == "user")
        # Offline: messages go through both nodes.
        missed = []
        for i in range(12):
            who = alice if i % 2 else alice2
            missed.append(who.send(gid, f"while away {i}")["id"])
        # Back, on the other node, from where it left off: exactly the missed ones, in order.
        async with Socket(n1.port, bob.token) as b:
            replay, ack = await b.subscribe(f"conversation:{gid}", since=conv_seq)
            replay = [f for f in replay if "seq" in f]  # not presence.changed (ephemeral)
            assert [f["data"]["message"]["id"] for f in replay] == missed
            assert [f["seq"] for f in replay] == list(range(conv_seq + 1, ack["seq"] + 1))
            replay, ack = await b.subscribe("user", since=user_seq)
            replay = [f for f in replay if "seq" in f]
            assert [f["data"]["message"]["id"] for f in replay if f["type"] == "message.new"] == missed
            assert [f["seq"] for f in replay] == list(range(user_seq + 1, ack["seq"] + 1))
            # And live again, from either node.
            alice2.send(gid, "welcome back")
            live = await b.until(lambda f: f["type"] == "message.new" and f["channel"] == "user")
            assert live[-1]["data"]["message"]["body"] == "welcome back"
        # Another device of Bob's catches up through /v1/sync on node 2 from the same position.
        events, _ = bob.on(n2).sync_all(pos)
        got = [e["data"]["message"]["id"] for e in events if e["type"] == "message.new"]
        assert got[:12] == missed and len(got) == 13
        assert [e["pos"] for e in events] == list(range(pos + 1, pos + 1 + len(events)))

    run(scenario())


def test_concurrent_sends_through_both_nodes_reach_every_socket_once_in_order(harmar):
    n1, n2 = two_nodes(harmar)
    alice = User(n1, "k-alice@example.com")
    bob = User(n1, "k-bob@example.com")
    gid = group(alice, [bob])
    senders = [alice, alice.on(n2), bob, bob.on(n2)]
    total = 120

    async def scenario():
        async with Socket(n1.port, alice.token) as s1, Socket(n2.port, bob.token) as s2:
            await s1.subscribe(f"conversation:{gid}")
            await s2.subscribe(f"conversation:{gid}")
            loop = asyncio.get_running_loop()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                sends = [loop.run_in_executor(pool, senders[i % 4].send, gid, f"m{i}", uuid.uuid4().hex)
                         for i in range(total)]
                sent = await asyncio.gather(*sends)
            assert sorted(m["seq"] for m in sent) == list(range(1, total + 1))
            for sock in (s1, s2):
                events = []
                while len(events) < total:
                    try:
                        f = await sock.recv(timeout=15)
                    except asyncio.TimeoutError:
                        raise AssertionError(f"after {len(events)} events: {[e['seq'] for e in events]}")
                    if f["type"] == "message.new":
                        events.append(f)
                # Each socket gets every event once, in channel order, whichever node published it.
                assert [f["seq"] for f in events] == list(range(1, total + 1))
                assert {f["data"]["message"]["id"] for f in events} == {m["id"] for m in sent}

    run(scenario())
