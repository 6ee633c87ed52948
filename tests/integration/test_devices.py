"""Devices on the real binary: registration with a one-time key, heartbeats, offline by timeout,
config versions, and deletion that revokes the key at once — on SQLite and PostgreSQL."""
import time

import pytest

from harness import wait_until
from queue_support import User, backend_args, bearer

BACKENDS = ["sqlite", "postgres"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_register_heartbeat_and_the_key_is_a_device_credential(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    r = user.call("POST", "/v1/daemon/register",
                  {"name": "build-box", "hostname": "bb1", "os": "linux", "arch": "x86_64", "version": "1.2",
                   "labels": {"gpu": "a100", "os": "linux"}})
    assert r.status == 201, r.body
    body = r.json()
    key = body["api_key"]
    assert key.startswith("hdk_") and len(key) == 47
    dev = body["device"]
    assert dev["status"] == "offline" and dev["last_seen_at"] is None and dev["config_version"] == 0
    assert dev["labels"] == {"gpu": "a100", "os": "linux"}
    # The key is never shown again.
    assert "api_key" not in user.call("GET", f"/v1/devices/{dev['id']}").json()

    beat = h.request("POST", "/v1/daemon/heartbeat", {"status": "idle", "metrics": {"load1": 0.5}}, headers=bearer(key))
    assert beat.status == 200, beat.body
    hb = beat.json()
    assert set(hb) >= {"server_time", "config_version", "pending_tasks"}
    assert hb["config_version"] == 0 and hb["pending_tasks"] == 0

    got = user.call("GET", f"/v1/devices/{dev['id']}").json()
    assert got["status"] == "online" and got["last_seen_at"] and got["metrics"] == {"load1": 0.5}
    assert got["agent_status"] == "idle"

    # A device key is not a user credential, and a user token is not a device one.
    assert h.request("GET", "/v1/devices", headers=bearer(key)).status == 403
    assert user.call("POST", "/v1/daemon/heartbeat", {}).status == 403
    assert h.request("POST", "/v1/daemon/heartbeat", {}, headers=bearer("hdk_" + "x" * 43)).status == 401


def test_pending_tasks_in_the_heartbeat_count_what_the_device_could_claim(harmar):
    h = harmar()
    user = User(h)
    gpu = user.register_device("gpu", {"gpu": "yes"})
    cpu = user.register_device("cpu")
    user.create_task(labels={"gpu": "yes"})
    user.create_task(device_id=cpu.id)
    user.create_task()
    assert gpu.heartbeat().json()["pending_tasks"] == 2
    assert cpu.heartbeat().json()["pending_tasks"] == 2


def test_a_silent_device_goes_offline_by_the_sweeper(harmar):
    h = harmar("--set", "devices.heartbeat_timeout=1s", "--set", "devices.sweep_interval=100ms")
    user = User(h)
    d = user.register_device()
    assert d.heartbeat().status == 200
    assert user.call("GET", f"/v1/devices/{d.id}").json()["status"] == "online"
    started = time.monotonic()
    wait_until(lambda: user.call("GET", f"/v1/devices/{d.id}").json()["status"] == "offline", timeout=10,
               what="the device to go offline")
    assert time.monotonic() - started >= 0.5
    # A heartbeat brings it back.
    assert d.heartbeat().status == 200
    assert user.call("GET", f"/v1/devices/{d.id}").json()["status"] == "online"
    listed = user.call("GET", "/v1/devices?status=online").json()["items"]
    assert [x["id"] for x in listed] == [d.id]


def test_goodbye_marks_the_device_offline_at_once(harmar):
    h = harmar()
    user = User(h)
    d = user.register_device()
    d.heartbeat()
    assert d.call("POST", "/v1/daemon/offline").status == 204
    assert user.call("GET", f"/v1/devices/{d.id}").json()["status"] == "offline"


@pytest.mark.parametrize("backend", BACKENDS)
def test_config_change_bumps_the_version_and_the_heartbeat_tells_the_device(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    d = user.register_device()
    r = user.call("PATCH", f"/v1/devices/{d.id}/config", {"config": {"log_level": "debug", "interval": 5}})
    assert r.status == 200, r.body
    dev = r.json()["device"]
    assert dev["config_version"] == 1 and dev["config"] == {"log_level": "debug", "interval": 5}
    assert d.heartbeat().json()["config_version"] == 1
    mine = d.call("GET", "/v1/daemon/config").json()
    assert mine == {"device_id": d.id, "config": {"log_level": "debug", "interval": 5}, "config_version": 1}
    user.call("PATCH", f"/v1/devices/{d.id}/config", {"config": {}})
    assert d.heartbeat().json()["config_version"] == 2
    bad = user.call("PATCH", f"/v1/devices/{d.id}/config", {"config": "nope"})
    assert bad.status == 422


@pytest.mark.parametrize("backend", BACKENDS)
def test_deleting_a_device_revokes_its_key_at_once_and_returns_its_tasks(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    d = user.register_device()
    assert d.heartbeat().status == 200  # the key is now cached on the node
    task = user.create_task()
    assert [t["id"] for t in d.claim()] == [task["id"]]
    assert user.call("DELETE", f"/v1/devices/{d.id}").status == 204
    r = d.heartbeat()
    assert r.status == 401 and r.json()["code"] == "invalid_api_key"
    assert user.call("GET", f"/v1/devices/{d.id}").status == 404
    back = user.task(task["id"])
    assert back["status"] == "queued" and back["attempts"] == 0 and back["claimed_by"] is None


def test_devices_of_other_users_are_not_found_and_lists_page(harmar):
    h = harmar()
    alice, bob = User(h), User(h)
    mine = [alice.register_device(f"d{i}") for i in range(5)]
    theirs = bob.register_device()
    assert alice.call("GET", f"/v1/devices/{theirs.id}").status == 404
    assert alice.call("DELETE", f"/v1/devices/{theirs.id}").status == 404
    assert alice.call("PATCH", f"/v1/devices/{theirs.id}/config", {"config": {}}).status == 404
    first = alice.call("GET", "/v1/devices?limit=3").json()
    assert len(first["items"]) == 3 and first["next_cursor"]
    rest = alice.call("GET", f"/v1/devices?limit=3&cursor={first['next_cursor']}").json()
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    assert {x["id"] for x in first["items"] + rest["items"]} == {d.id for d in mine}


def test_registration_is_validated_and_idempotent(harmar):
    h = harmar()
    user = User(h)
    bad = user.call("POST", "/v1/daemon/register", {"name": "", "labels": {"bad key!": "x"}, "extra": 1})
    assert bad.status == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert "name" in fields and "extra" in fields and any(f.startswith("labels") for f in fields)
    one = user.call("POST", "/v1/daemon/register", {"name": "x"}, headers={"Idempotency-Key": "dev-1"})
    two = user.call("POST", "/v1/daemon/register", {"name": "x"}, headers={"Idempotency-Key": "dev-1"})
    assert one.status == two.status == 201
    assert one.json()["device"]["id"] == two.json()["device"]["id"]
    assert len(user.call("GET", "/v1/devices").json()["items"]) == 1
