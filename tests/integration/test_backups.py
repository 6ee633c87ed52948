"""Config backups on the real binary (docs/backups.md): a device uploads its config (streamed),
its user lists, downloads (with Range), restores (a "restore" task for the device) and deletes
it; quotas, permissions, broken uploads that leave nothing behind, and a 100 MB upload during
which the server's memory stays flat."""
import hashlib
import http.client
import json
import os
import pathlib
import select
import socket

import pytest

from harness import wait_until
from queue_support import User, backend_args, bearer

BACKENDS = ["sqlite", "postgres"]


def upload(dev, data, name=None, headers=None, chunked=False):
    path = "/v1/config/backup" + (f"?name={name}" if name else "")
    hdrs = bearer(dev.key)
    hdrs.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", dev.h.port, timeout=60)
    try:
        if chunked:
            pieces = [data[i:i + 1000] for i in range(0, len(data), 1000)]
            conn.request("POST", path, body=iter(pieces), headers=hdrs, encode_chunked=True)
        else:
            conn.request("POST", path, body=data, headers=hdrs)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except (BrokenPipeError, ConnectionResetError) as e:  # refused before the body was all sent
        return None, {}, str(e).encode()
    finally:
        conn.close()


def created(dev, data, **kw):
    status, _, body = upload(dev, data, **kw)
    assert status == 201, body
    return json.loads(body)


def rss_kib(pid, field):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def committed_blobs(h, user_id):
    """Backup files in the filesystem blob store (hidden temporaries excluded)."""
    root = h.dir / "data" / "blobs" / "config-backups" / user_id
    if not root.exists():
        return []
    return [p.name for p in root.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_upload_list_download_range_restore_delete(harmar, backend):
    h = harmar(*backend_args(backend))
    user = User(h)
    dev = user.register_device("router")
    data = os.urandom(200_000)
    b = created(dev, data, name="router.conf", headers={"Content-Type": "text/plain"})
    assert b["size"] == len(data) and b["sha256"] == hashlib.sha256(data).hexdigest()
    assert b["device_id"] == dev.id and b["name"] == "router.conf" and b["created_at"].endswith("Z")
    second = created(dev, b"second version\n", chunked=True)
    assert second["size"] == 15

    page = user.call("GET", "/v1/config/backups?limit=1").json()
    assert [x["id"] for x in page["items"]] == [second["id"]]  # newest first
    rest = user.call("GET", f"/v1/config/backups?limit=1&cursor={page['next_cursor']}").json()
    assert [x["id"] for x in rest["items"]] == [b["id"]] and rest["next_cursor"] is None
    assert len(dev.call("GET", "/v1/config/backups").json()["items"]) == 2  # the device sees its own

    r = user.call("GET", f"/v1/config/backups/{b['id']}")
    assert r.status == 200 and r.body == data
    etag = f"\"{b['sha256']}\""
    assert r.header("etag") == etag and r.header("content-type") == "text/plain"
    assert r.header("accept-ranges") == "bytes" and "router.conf" in r.header("content-disposition")
    r = user.call("GET", f"/v1/config/backups/{b['id']}", headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == data[10:20]
    assert r.header("content-range") == f"bytes 10-19/{len(data)}"
    r = user.call("GET", f"/v1/config/backups/{b['id']}", headers={"Range": "bytes=-5"})
    assert r.status == 206 and r.body == data[-5:]
    r = user.call("GET", f"/v1/config/backups/{b['id']}", headers={"Range": "bytes=199990-"})
    assert r.status == 206 and r.body == data[199990:]
    r = user.call("GET", f"/v1/config/backups/{b['id']}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status == 416 and r.header("content-range") == f"bytes */{len(data)}"
    assert r.json()["code"] == "range_not_satisfiable"
    r = user.call("GET", f"/v1/config/backups/{b['id']}", headers={"Range": "bytes=0-1", "If-Range": "\"other\""})
    assert r.status == 200 and r.body == data  # the file changed since: the whole of it
    r = user.call("GET", f"/v1/config/backups/{b['id']}", headers={"If-None-Match": etag})
    assert r.status == 304 and r.body == b""

    # Restore: the device gets a "restore" task naming the backup and where to fetch it.
    r = user.call("POST", f"/v1/config/restore/{b['id']}", {})
    assert r.status == 202, r.body
    task_id = r.json()["task_id"]
    assert r.header("location") == f"/v1/tasks/{task_id}"
    tasks = dev.claim(max=5)
    assert [t["id"] for t in tasks] == [task_id]
    t = tasks[0]
    assert t["type"] == "restore" and t["device_id"] == dev.id
    p = t["payload"]
    assert p["backup_id"] == b["id"] and p["sha256"] == b["sha256"] and p["size"] == len(data)
    fetched = dev.call("GET", p["url"])  # with the device's own key
    assert fetched.status == 200 and hashlib.sha256(fetched.body).hexdigest() == p["sha256"]

    assert user.call("DELETE", f"/v1/config/backups/{b['id']}").status == 204
    assert user.call("GET", f"/v1/config/backups/{b['id']}").status == 404
    assert user.call("DELETE", f"/v1/config/backups/{b['id']}").status == 404
    assert [x["id"] for x in user.call("GET", "/v1/config/backups").json()["items"]] == [second["id"]]
    if backend == "sqlite":
        assert committed_blobs(h, user.id) == [second["id"]]


def test_permissions_another_users_backup_is_404_and_roles_are_kept(harmar):
    h = harmar()
    alice, bob = User(h), User(h)
    a1, a2 = alice.register_device("a1"), alice.register_device("a2")
    b = created(a1, b"alice's config")
    for method, path in [("GET", f"/v1/config/backups/{b['id']}"), ("DELETE", f"/v1/config/backups/{b['id']}"),
                         ("POST", f"/v1/config/restore/{b['id']}")]:
        r = bob.call(method, path, {} if method == "POST" else None)
        assert r.status == 404, (method, path, r.body)
        assert r.json()["code"] == "not_found"
    assert bob.call("GET", "/v1/config/backups").json()["items"] == []
    # Another device of the same user neither sees nor fetches it; a device cannot delete.
    assert a2.call("GET", f"/v1/config/backups/{b['id']}").status == 404
    assert a2.call("GET", "/v1/config/backups").json()["items"] == []
    assert a1.call("DELETE", f"/v1/config/backups/{b['id']}").status == 403
    # Only devices upload; nobody anonymous does anything.
    r = alice.call("POST", "/v1/config/backup", b"from a user")
    assert r.status == 403
    assert h.request("GET", "/v1/config/backups").status == 401
    assert h.request("POST", "/v1/config/backup", b"x").status == 401
    assert alice.call("GET", f"/v1/config/backups/{b['id']}").body == b"alice's config"


def test_quota_and_size_limits_refuse_with_stable_codes_and_keep_nothing(harmar):
    h = harmar("--set", "backups.quota_bytes=1000", "--set", "backups.max_upload_bytes=600",
               "--set", "backups.max_per_user=3")
    user = User(h)
    dev = user.register_device()
    first = created(dev, b"a" * 600)
    status, _, body = upload(dev, b"b" * 601)
    assert status in (413, None), body  # refused on Content-Length, perhaps before all was sent
    if status:
        assert b"payload_too_large" in body
    status, _, body = upload(dev, b"c" * 500)
    assert status == 409 and b"backup_quota_exceeded" in body
    status, _, body = upload(dev, b"d" * 500, chunked=True)  # no declared length: caught while read
    assert status in (409, None), body
    if status:
        assert b"backup_quota_exceeded" in body
    status, _, body = upload(dev, b"")
    assert status == 422
    status, _, body = upload(dev, b"e" * 100, headers={"X-Checksum-Sha256": "0" * 64})
    assert status == 422 and b"checksum_mismatch" in body
    ok = created(dev, b"f" * 100, headers={"X-Checksum-Sha256": hashlib.sha256(b"f" * 100).hexdigest()})
    assert [x["id"] for x in user.call("GET", "/v1/config/backups").json()["items"]] == [ok["id"], first["id"]]
    assert sorted(committed_blobs(h, user.id)) == sorted([ok["id"], first["id"]])
    created(dev, b"g" * 10)
    status, _, body = upload(dev, b"h" * 10)  # a fourth backup: over max_per_user
    assert status == 409 and b"backup_quota_exceeded" in body
    # Deleting makes room again.
    assert user.call("DELETE", f"/v1/config/backups/{first['id']}").status == 204
    created(dev, b"i" * 500)


def test_an_upload_cut_off_midway_leaves_nothing(harmar):
    h = harmar()
    user = User(h)
    dev = user.register_device()
    s = socket.create_connection(("127.0.0.1", h.port))
    s.sendall(f"POST /v1/config/backup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {dev.key}\r\n"
              f"Content-Length: 1000000\r\n\r\n".encode() + b"x" * 300_000)
    s.close()
    # The next request from the same device is served after the broken one was handled.
    b = created(dev, b"whole")
    assert [x["id"] for x in user.call("GET", "/v1/config/backups").json()["items"]] == [b["id"]]
    assert committed_blobs(h, user.id) == [b["id"]]


def test_a_100_mb_upload_streams_with_flat_server_memory(harmar):
    h = harmar()
    user = User(h)
    dev = user.register_device()
    size = 100 * 1024 * 1024
    piece = os.urandom(1024 * 1024)
    pid = h.proc.pid
    # VmHWM is the peak since start (startup peaks above the idle RSS): reset it to the current
    # RSS (Linux >= 4.0), so after the upload it is the peak during the upload.
    pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = rss_kib(pid, "VmRSS")
    assert rss_kib(pid, "VmHWM") - before < 1024
    sha = hashlib.sha256()
    s = socket.create_connection(("127.0.0.1", h.port))
    s.sendall(f"POST /v1/config/backup?name=big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {dev.key}\r\n"
              f"Content-Length: {size}\r\n\r\n".encode())
    for i in range(size // len(piece)):
        chunk = bytes([i % 251]) + piece[1:]
        sha.update(chunk)
        s.sendall(chunk)
    r = http.client.HTTPResponse(s)
    r.begin()
    body = r.read()
    s.close()
    assert r.status == 201, body
    peak = rss_kib(pid, "VmHWM")
    growth_mib = (peak - before) / 1024
    print(f"\nRSS before {before} KiB, peak after the 100 MB upload {peak} KiB: +{growth_mib:.1f} MiB")
    assert growth_mib < 16, f"the server's peak RSS grew by {growth_mib:.1f} MiB"
    b = json.loads(body)
    assert b["size"] == size and b["sha256"] == sha.hexdigest()
    # The download streams too, and is the same file.
    conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=120)
    conn.request("GET", f"/v1/config/backups/{b['id']}", headers=bearer(user.token))
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.getheader("Content-Length")) == size
    got = hashlib.sha256()
    while True:
        chunk = resp.read(1 << 20)
        if not chunk:
            break
        got.update(chunk)
    conn.close()
    assert got.hexdigest() == b["sha256"]
    peak_after_download = rss_kib(pid, "VmHWM")  # the peak across upload and download
    print(f"peak after the 100 MB download {peak_after_download} KiB: +{(peak_after_download - before) / 1024:.1f} MiB")
    assert (peak_after_download - before) / 1024 < 16


def test_a_device_sends_a_bounded_number_of_uploads_at_once(harmar):
    h = harmar("--set", "backups.max_parallel_uploads=1")
    user = User(h)
    dev = user.register_device()
    def hold():
        s = socket.create_connection(("127.0.0.1", h.port))
        s.sendall(f"POST /v1/config/backup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {dev.key}\r\n"
                  f"Content-Length: 20\r\n\r\n0123456789".encode())  # half the body: its handler waits
        return s

    held = hold()

    def refused():
        nonlocal held
        status, headers, body = upload(dev, b"another")
        if status == 429:
            return b"too_many_uploads" in body and headers.get("retry-after") == "1"
        # This upload reached the server first and took the slot, so the held one was the upload
        # refused: hold another one and try again.
        if select.select([held], [], [], 0)[0]:
            assert held.recv(4096).startswith(b"HTTP/1.1 429")
            held.close()
            held = hold()
        return False

    wait_until(refused, what="a second upload from the device refused while the first is in progress")
    held.sendall(b"abcdefghij")
    r = http.client.HTTPResponse(held)
    r.begin()
    first = json.loads(r.read())
    held.close()
    assert r.status == 201 and first["size"] == 20
    created(dev, b"the slot is free again")
