"""End-to-end encrypted conversations on the real binary: devices publish X25519 public keys,
senders seal each message to every member device with libsodium sealed boxes (PyNaCl, Debian
python3-nacl), and the server stores, logs and forwards only ciphertext: the plaintext appears
nowhere in its database, blobs, log, HTTP answers or WebSocket frames."""
import base64
import json
import pathlib
import uuid

import nacl.public
import nacl.secret
import nacl.utils

from im_support import Socket, User, run


def b64(data):
    return base64.b64encode(data).decode()


class Device:
    """A client device: its own X25519 key pair; the private half never leaves it."""

    def __init__(self, user, name):
        self.user, self.name = user, name
        self.secret = nacl.public.PrivateKey.generate()
        r = user.call("PUT", f"/v1/im/keys/{name}", {"public_key": b64(bytes(self.secret.public_key))}, expect=200)
        self.key_id = r.json()["key"]["id"]

    def seal_for_members(self, conversation_id, payload):
        """The ciphertext map: the payload sealed to every member device's public key."""
        keys = self.user.get(f"/v1/conversations/{conversation_id}/keys")["items"]
        return {k["id"]: b64(nacl.public.SealedBox(nacl.public.PublicKey(base64.b64decode(k["public_key"])))
                             .encrypt(json.dumps(payload).encode()))
                for k in keys}

    def open(self, message):
        sealed = base64.b64decode(message["ciphertext"][self.key_id])
        return json.loads(nacl.public.SealedBox(self.secret).decrypt(sealed))


def test_the_server_only_ever_holds_ciphertext(harmar):
    h = harmar()
    alice, bob, eve = User(h, "e2e-alice@example.com"), User(h, "e2e-bob@example.com"), User(h, "e2e-eve@example.com")
    a1, a2 = Device(alice, "alice-phone"), Device(alice, "alice-laptop")
    b1, b2 = Device(bob, "bob-phone"), Device(bob, "bob-browser")
    r = alice.post("/v1/conversations", {"type": "group", "member_ids": [bob.id], "title": "", "encrypted": True},
                   expect=201)
    cid = r.json()["conversation"]["id"]
    assert r.json()["conversation"]["encrypted"] is True
    secret = f"the eagle lands at dawn {uuid.uuid4()}"
    file_secret = f"attached plans {uuid.uuid4()}".encode()
    transcript = []  # every byte the server sent us

    # Plaintext is refused outright in an encrypted conversation.
    refused = alice.post(f"/v1/conversations/{cid}/messages", {"body": "oops, plaintext", "client_msg_id": "p"},
                         expect=422)
    assert refused.json()["errors"][0]["field"] == "body"
    for bad in ({"not-a-key-id": b64(b"x" * 64)}, {str(uuid.uuid4()): "***"}, {str(uuid.uuid4()): b64(b"short")}):
        assert alice.post(f"/v1/conversations/{cid}/messages", {"client_msg_id": "bad", "ciphertext": bad}).status == 422

    async def scenario():
        async with Socket(h.port, bob.token) as live:  # Bob's browser, live
            await live.subscribe(f"conversation:{cid}")
            # The attachment: encrypted on the device with a fresh key, sealed inside the message.
            file_key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
            blob = nacl.secret.SecretBox(file_key).encrypt(file_secret)
            up = alice.call("POST", f"/v1/conversations/{cid}/attachments?name=plans.bin", bytes(blob),
                            headers={"Content-Type": "application/octet-stream"}, expect=201)
            transcript.append(up.body)
            att = up.json()["attachment"]
            payload = {"text": secret, "file_key": b64(file_key)}
            sent = alice.call("POST", f"/v1/conversations/{cid}/messages",
                              {"client_msg_id": "m1", "ciphertext": a1.seal_for_members(cid, payload),
                               "attachment_id": att["id"]}, expect=201)
            transcript.append(sent.body)
            msg = sent.json()["message"]
            assert msg["body"] == "" and set(msg["ciphertext"]) == {a1.key_id, a2.key_id, b1.key_id, b2.key_id}
            frames = await live.until(lambda f: f["type"] == "message.new")
            transcript.append(json.dumps(frames).encode())
            live_msg = frames[-1]["data"]["message"]
            assert b2.open(live_msg)["text"] == secret
            # Bob's phone catches up through sync; Alice's laptop through history.
            events, _ = bob.sync_all(0)
            transcript.append(json.dumps(events).encode())
            synced = next(e["data"]["message"] for e in events if e["type"] == "message.new")
            opened = b1.open(synced)
            assert opened["text"] == secret
            history = alice.call("GET", f"/v1/conversations/{cid}/messages", expect=200)
            transcript.append(history.body)
            assert a2.open(history.json()["items"][0])["text"] == secret
            # The attachment comes back as the same ciphertext; only a member device can open it.
            got = bob.call("GET", synced["attachment"]["url"], expect=200)
            transcript.append(got.body)
            assert nacl.secret.SecretBox(base64.b64decode(opened["file_key"])).decrypt(got.body) == file_secret
            # An edit is sealed again; a recall leaves nothing to open.
            edited = alice.call("PATCH", f"/v1/conversations/{cid}/messages/{msg['id']}",
                                {"ciphertext": a2.seal_for_members(cid, {"text": secret + " (edited)"})}, expect=200)
            transcript.append(edited.body)
            frames = await live.until(lambda f: f["type"] == "message.edited")
            transcript.append(json.dumps(frames).encode())
            assert b2.open(frames[-1]["data"]["message"])["text"] == secret + " (edited)"
            assert alice.call("PATCH", f"/v1/conversations/{cid}/messages/{msg['id']}",
                              {"body": "plaintext edit"}).status == 422

    run(scenario())
    # Keys are public within the conversation, and nowhere else.
    assert {k["device_id"] for k in alice.get(f"/v1/im/keys?user_id={bob.id}")["items"]} == {"bob-phone", "bob-browser"}
    assert eve.call("GET", f"/v1/im/keys?user_id={bob.id}").status == 404
    assert eve.call("GET", f"/v1/conversations/{cid}/keys").status == 404
    # A new key for a device is a new key id; the old one is gone from the directory.
    old = b1.key_id
    rotated = Device(bob, "bob-phone")
    ids = {k["id"] for k in bob.get("/v1/im/keys")["items"]}
    assert rotated.key_id in ids and old not in ids
    assert bob.call("PUT", "/v1/im/keys/bad%20device!", {"public_key": b64(b"k" * 32)}).status == 422
    assert bob.call("PUT", "/v1/im/keys/short", {"public_key": b64(b"k" * 31)}).status == 422
    bob.call("DELETE", "/v1/im/keys/bob-browser", expect=204)
    assert bob.call("DELETE", "/v1/im/keys/bob-browser").status == 404

    h.stop()
    # The proof: neither the plaintext nor the attachment's contents are anywhere the server wrote.
    needles = [secret.encode(), file_secret, b64(secret.encode()).encode()]
    written = [p for p in pathlib.Path(h.dir).rglob("*") if p.is_file()]
    assert any(p.name == "harmar.db" for p in written)
    for p in written:
        data = p.read_bytes()
        for n in needles:
            assert n not in data, f"{n!r} found in {p}"
    for chunk in transcript:
        for n in needles:
            assert n not in chunk
