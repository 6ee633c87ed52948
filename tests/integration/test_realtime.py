"""GET /v1/ws on the real binary with a real WebSocket client (python3-websockets)."""
import asyncio
import json

import pytest
import websockets

PASSWORD = "a long enough passphrase 42"


def register(h, email):
    r = h.request("POST", "/v1/auth/register", body={"email": email, "password": PASSWORD})
    assert r.status == 201, r.body
    return r.json()["access_token"]


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def test_subscribe_ping_and_errors_over_a_header_token(harmar):
    h = harmar()
    token = register(h, "ws-user@example.com")

    async def scenario():
        async with websockets.connect(f"ws://127.0.0.1:{h.port}/v1/ws",
                                      extra_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channel": "tasks"}))
            ack = await recv_json(ws)
            assert ack == {"type": "subscribed", "channel": "tasks", "seq": 0}
            await ws.send(json.dumps({"op": "ping"}))
            assert await recv_json(ws) == {"type": "pong"}
            await ws.send("{not json")
            err = await recv_json(ws)
            assert err["type"] == "error" and err["code"] == "invalid_json"
            await ws.send(json.dumps({"op": "subscribe", "channel": "conversation:nope"}))
            err = await recv_json(ws)
            assert err["type"] == "error" and err["channel"] == "conversation:nope"

    run(scenario())


def test_browsers_authenticate_with_the_access_token_query(harmar):
    h = harmar()
    token = register(h, "ws-browser@example.com")

    async def scenario():
        async with websockets.connect(f"ws://127.0.0.1:{h.port}/v1/ws?access_token={token}") as ws:
            await ws.send(json.dumps({"op": "ping"}))
            assert await recv_json(ws) == {"type": "pong"}

    run(scenario())


def test_upgrades_without_a_valid_token_are_refused(harmar):
    h = harmar()

    async def scenario(headers):
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with websockets.connect(f"ws://127.0.0.1:{h.port}/v1/ws", extra_headers=headers):
                pass
        return e.value.status_code

    assert run(scenario({})) == 401
    assert run(scenario({"Authorization": "Bearer forged.token.here"})) == 401
