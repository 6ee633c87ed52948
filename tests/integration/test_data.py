"""Data services (shared/API.md "Data services (collections)") on the real binary: collections,
records, rules (through filters, expansion and realtime), files, batches, import/export, the
declarative CLI, and the record cache across two nodes sharing PostgreSQL and Redis."""
import asyncio
import base64
import os
import json
import subprocess
import urllib.parse
import uuid

import pytest
import websockets

from harness import fresh_mariadb_url, harmar_bin, require_env, wait_until

PASSWORD = "a long enough passphrase 42"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def fresh_pg_url():
    base = require_env("HARMAR_TEST_PG_URL")
    schema = "it_" + uuid.uuid4().hex[:16]
    subprocess.run(["psql", base, "-q", "-c", f"CREATE SCHEMA {schema}"], check=True, capture_output=True)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def register(h, email):
    r = h.request("POST", "/v1/auth/register", body={"email": email, "password": PASSWORD})
    assert r.status == 201, r.body
    j = r.json()
    return j["access_token"], j["user"]["id"]


def admin_token(h, extra_args=()):
    email = f"root-{uuid.uuid4().hex[:6]}@example.com"
    out = subprocess.run([harmar_bin(), "admin", "create-user", "--data-dir", str(h.dir / "data"), *h.db_args,
                          "--email", email,
                          "--password", PASSWORD, "--role", "admin", "--log-level", "warn", *extra_args],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    r = h.request("POST", "/v1/auth/login", body={"email": email, "password": PASSWORD})
    assert r.status == 200, r.body
    return r.json()["access_token"]


def problem(r, status, code=None):
    assert r.status == status, (r.status, r.body)
    assert r.header("content-type") == "application/problem+json"
    if code:
        assert r.json()["code"] == code, r.body
    return r.json()


NOTES = {
    "name": "notes", "type": "table",
    "fields": [{"name": "title", "type": "text", "required": True}, {"name": "done", "type": "bool"},
               {"name": "owner", "type": "text"}],
    "indexes": [["owner"]],
    "rules": {"list": "owner = @request.auth.id", "view": "owner = @request.auth.id",
              "create": "owner = @request.auth.id", "update": "owner = @request.auth.id",
              "delete": "owner = @request.auth.id"},
}


def q(**params):
    return "?" + urllib.parse.urlencode(params)


@pytest.fixture
def env(harmar):
    h = harmar()
    admin = bearer(admin_token(h))
    a_token, a_id = register(h, "a@example.com")
    b_token, b_id = register(h, "b@example.com")
    return h, admin, (bearer(a_token), a_id, a_token), (bearer(b_token), b_id, b_token)


def test_collections_are_admin_only_and_keep_their_exact_shape(env):
    h, admin, (a, _, _), _ = env
    problem(h.request("POST", "/v1/collections", NOTES), 401)
    problem(h.request("POST", "/v1/collections", NOTES, headers=a), 403)
    dry = h.request("POST", "/v1/collections?dry_run=true", NOTES, headers=admin)
    assert dry.status == 200 and dry.json()["plan"]["up"][0].startswith("CREATE TABLE")
    problem(h.get("/v1/collections/notes", headers=admin), 404, "collection_not_found")
    r = h.request("POST", "/v1/collections", NOTES, headers=admin)
    assert r.status == 201, r.body
    assert r.json() == {**NOTES, "fields": [
        {"name": "title", "type": "text", "required": True}, {"name": "done", "type": "bool"},
        {"name": "owner", "type": "text"}]}
    assert h.get("/v1/collections/notes", headers=admin).json() == r.json()
    problem(h.request("POST", "/v1/collections", NOTES, headers=admin), 409, "collection_exists")
    listed = h.get("/v1/collections", headers=admin).json()
    assert [c["name"] for c in listed["items"]] == ["notes"] and listed["next_cursor"] is None
    bad = problem(h.request("POST", "/v1/collections", {"name": "x", "fields": [{"name": "a", "type": "nope"}],
                                                          "rules": {"list": "a = ("}}, headers=admin), 422)
    assert {e["field"] for e in bad["errors"]} >= {"fields[0].type", "rules.list"}
    r = h.request("PATCH", "/v1/collections/notes", {"fields": NOTES["fields"] + [{"name": "due", "type": "datetime"}],
                                                      "rules": {"delete": None}}, headers=admin)
    assert r.status == 200, r.body
    assert r.json()["fields"][-1] == {"name": "due", "type": "datetime"} and "delete" not in r.json()["rules"]
    retyped = [{"name": "title", "type": "number"}] + NOTES["fields"][1:]
    problem(h.request("PATCH", "/v1/collections/notes", {"fields": retyped}, headers=admin), 409, "type_change_unsupported")
    assert h.request("DELETE", "/v1/collections/notes", headers=admin).status == 204
    problem(h.get("/v1/collections/notes", headers=admin), 404)


def test_records_crud_with_etags_if_match_filters_sort_and_cursors(env):
    h, admin, (a, a_id, _), _ = env
    assert h.request("POST", "/v1/collections", NOTES, headers=admin).status == 201
    r = h.request("POST", "/v1/collections/notes/records", {"title": "first", "owner": a_id}, headers=a)
    assert r.status == 201, r.body
    rec = r.json()
    assert set(rec) == {"id", "created_at", "updated_at", "version", "title", "done", "owner"}
    assert rec["version"] == 1 and r.header("etag") == '"1"'
    assert r.header("location") == f"/v1/collections/notes/records/{rec['id']}"
    path = f"/v1/collections/notes/records/{rec['id']}"
    assert h.get(path, headers=a).json() == rec
    r = h.request("PATCH", path, {"done": True}, headers={**a, "If-Match": '"1"'})
    assert r.status == 200 and r.json()["version"] == 2 and r.json()["done"] is True
    problem(h.request("PATCH", path, {"done": False}, headers={**a, "If-Match": '"1"'}), 412, "version_mismatch")
    r = h.request("PUT", path, {"title": "replaced", "owner": a_id}, headers={**a, "If-Match": "2"})
    assert r.status == 200 and r.json()["done"] is None and r.json()["title"] == "replaced"
    for i in range(12):
        assert h.request("POST", "/v1/collections/notes/records", {"title": f"n{i:02}", "owner": a_id,
                                                                   "done": i % 2 == 0}, headers=a).status == 201
    seen, cursor = [], None
    while True:
        params = {"filter": 'title ~ "n" && done = true', "sort": "-title", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = h.get("/v1/collections/notes/records" + q(**params), headers=a).json()
        seen += [x["title"] for x in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"n{i:02}" for i in range(10, -1, -2)]
    page = h.get("/v1/collections/notes/records" + q(fields="title", limit=1), headers=a).json()
    assert set(page["items"][0]) == {"id", "title"}
    problem(h.get("/v1/collections/notes/records" + q(filter="title = 1"), headers=a), 422, "invalid_expression")
    problem(h.get("/v1/collections/notes/records" + q(filter="nope = 1"), headers=a), 422, "invalid_expression")
    problem(h.get("/v1/collections/notes/records" + q(cursor="garbage!"), headers=a), 422)
    problem(h.get("/v1/collections/nope/records", headers=a), 404, "collection_not_found")
    assert h.request("DELETE", path, headers={**a, "If-Match": "3"}).status == 204
    problem(h.get(path, headers=a), 404)


def test_another_user_cannot_read_or_write_through_filters_expansion_or_ids(env):
    h, admin, (a, a_id, _), (b, b_id, _) = env
    assert h.request("POST", "/v1/collections", NOTES, headers=admin).status == 201
    people = {"name": "people", "fields": [{"name": "name", "type": "text"}, {"name": "account", "type": "text"}],
              "rules": {"list": "account = @request.auth.id", "view": "account = @request.auth.id", "create": ""}}
    assert h.request("POST", "/v1/collections", people, headers=admin).status == 201
    links = {"name": "links", "fields": [{"name": "to", "type": "relation", "collection": "people"},
                                         {"name": "owner", "type": "text"}],
             "rules": {"list": "", "view": "", "create": ""}}
    assert h.request("POST", "/v1/collections", links, headers=admin).status == 201
    mine = h.request("POST", "/v1/collections/notes/records", {"title": "a secret", "owner": a_id}, headers=a).json()
    problem(h.request("POST", "/v1/collections/notes/records", {"title": "forged", "owner": a_id}, headers=b), 403)
    for f in ['owner = "' + a_id + '"', 'title ~ "secret"', 'owner != "" || 1 = 1', "owner = null || owner != null"]:
        page = h.get("/v1/collections/notes/records" + q(filter=f), headers=b).json()
        assert page["items"] == [], f
    path = f"/v1/collections/notes/records/{mine['id']}"
    problem(h.get(path, headers=b), 404)
    problem(h.request("PATCH", path, {"title": "mine now"}, headers=b), 404)
    problem(h.request("DELETE", path, headers=b), 404)
    assert h.get("/v1/collections/notes/records").json()["items"] == []  # anonymous: the rule matches nothing
    assert h.get(path, headers=a).json()["title"] == "a secret"
    assert len(h.get("/v1/collections/notes/records", headers=admin).json()["items"]) == 1
    # Expansion shows a related record only to those its own view rule lets see it.
    person = h.request("POST", "/v1/collections/people/records", {"name": "Ann", "account": a_id}, headers=a).json()
    h.request("POST", "/v1/collections/links/records", {"to": person["id"], "owner": b_id}, headers=b)
    as_b = h.get("/v1/collections/links/records" + q(expand="to"), headers=b).json()["items"][0]
    as_a = h.get("/v1/collections/links/records" + q(expand="to"), headers=a).json()["items"][0]
    assert "expand" not in as_b and as_a["expand"]["to"]["name"] == "Ann"
    problem(h.get("/v1/collections/links/records" + q(expand="owner"), headers=a), 422, "invalid_expand")


def test_live_changes_reach_only_subscribers_the_view_rule_allows(env):
    h, admin, (a, a_id, a_token), (b, b_id, b_token) = env
    assert h.request("POST", "/v1/collections", NOTES, headers=admin).status == 201
    admin_tok = admin["Authorization"].split(" ", 1)[1]

    async def scenario():
        socks = {}
        for who, tok in (("a", a_token), ("b", b_token), ("admin", admin_tok)):
            ws = await websockets.connect(f"ws://127.0.0.1:{h.port}/v1/ws", extra_headers=bearer(tok))
            await ws.send(json.dumps({"op": "subscribe", "channel": "collection:notes"}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ack["type"] == "subscribed", ack
            socks[who] = ws
        loop = asyncio.get_running_loop()
        ra = await loop.run_in_executor(None, lambda: h.request(
            "POST", "/v1/collections/notes/records", {"title": "a's", "owner": a_id}, headers=a).json())
        rb = await loop.run_in_executor(None, lambda: h.request(
            "POST", "/v1/collections/notes/records", {"title": "b's", "owner": b_id}, headers=b).json())
        await loop.run_in_executor(None, lambda: h.request(
            "PATCH", f"/v1/collections/notes/records/{ra['id']}", {"done": True}, headers=a))
        await loop.run_in_executor(None, lambda: h.request(
            "DELETE", f"/v1/collections/notes/records/{rb['id']}", headers=b))

        async def frames(ws, n):
            out = []
            for _ in range(n):
                out.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            await ws.send(json.dumps({"op": "ping"}))
            while True:  # nothing else may be queued before the pong
                f = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if f["type"] == "pong":
                    return out
                out.append(f)

        got_a = await frames(socks["a"], 2)
        got_b = await frames(socks["b"], 2)
        got_admin = await frames(socks["admin"], 4)
        for ws in socks.values():
            await ws.close()
        return got_a, got_b, got_admin

    got_a, got_b, got_admin = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [(f["type"], f["data"]["title"]) for f in got_a] == [("record.created", "a's"), ("record.updated", "a's")]
    assert [(f["type"], f["data"]["title"]) for f in got_b] == [("record.created", "b's"), ("record.deleted", "b's")]
    assert [f["type"] for f in got_admin] == ["record.created", "record.created", "record.updated", "record.deleted"]
    assert all(f["channel"] == "collection:notes" for f in got_a + got_b + got_admin)

    async def refused():
        async with websockets.connect(f"ws://127.0.0.1:{h.port}/v1/ws", extra_headers=bearer(a_token)) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channel": "collection:nope"}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert asyncio.run(refused())["type"] == "error"


def test_files_batches_import_and_export_over_http(env):
    h, admin, (a, a_id, _), (b, _, _) = env
    albums = {"name": "albums", "fields": [{"name": "title", "type": "text"}, {"name": "owner", "type": "text"},
                                           {"name": "cover", "type": "file", "max": 4096, "types": ["image/*"]}],
              "rules": {"list": "owner = @request.auth.id", "view": "owner = @request.auth.id",
                        "create": "owner = @request.auth.id", "update": "owner = @request.auth.id"}}
    assert h.request("POST", "/v1/collections", albums, headers=admin).status == 201
    rec = h.request("POST", "/v1/collections/albums/records", {"title": "t", "owner": a_id}, headers=a).json()
    fpath = f"/v1/collections/albums/records/{rec['id']}/files/cover"
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    r = h.request("PUT", fpath + "?name=c.png", png, headers={**a, "Content-Type": "image/png"})
    assert r.status == 200, r.body
    assert r.json()["cover"]["size"] == len(png) and r.json()["cover"]["url"] == fpath
    r = h.get(fpath, headers=a)
    assert r.status == 200 and r.body == png and r.header("content-type") == "image/png"
    assert r.header("x-content-type-options") == "nosniff"
    problem(h.get(fpath, headers=b), 404)
    problem(h.request("PUT", fpath, b"<html>", headers={**a, "Content-Type": "text/html"}), 415)
    problem(h.request("PUT", fpath, b"x" * 5000, headers={**a, "Content-Type": "image/png"}), 413)
    assert h.request("DELETE", fpath, headers=a).json()["cover"] is None
    problem(h.get(fpath, headers=a), 404, "file_not_found")

    ops = [{"op": "create", "body": {"title": "x", "owner": a_id}},
           {"op": "update", "id": rec["id"], "body": {"title": "renamed"}, "if_match": 99}]
    problem(h.request("POST", "/v1/collections/albums/batch", {"operations": ops}, headers=a), 412)
    assert len(h.get("/v1/collections/albums/records", headers=a).json()["items"]) == 1
    ops[1]["if_match"] = 3
    r = h.request("POST", "/v1/collections/albums/batch", {"operations": ops}, headers=a)
    assert r.status == 200, r.body
    assert [x["title"] for x in r.json()["results"]] == ["x", "renamed"]

    exported = h.get("/v1/collections/albums/export?format=ndjson", headers=a)
    assert exported.status == 200 and exported.header("content-type") == "application/x-ndjson"
    lines = [json.loads(x) for x in exported.body.decode().splitlines()]
    assert sorted(x["title"] for x in lines) == ["renamed", "x"]
    csv = h.get("/v1/collections/albums/export?format=csv", headers=a).body.decode()
    assert csv.splitlines()[0] == "id,created_at,updated_at,version,title,owner,cover"
    problem(h.request("POST", "/v1/collections/albums/import", b"{}", headers={**a, "Content-Type": "application/x-ndjson"}), 403)
    body = "\n".join(json.dumps({"title": f"imp{i}", "owner": a_id}) for i in range(50)).encode()
    r = h.request("POST", "/v1/collections/albums/import", body, headers={**admin, "Content-Type": "application/x-ndjson"})
    assert r.status == 200 and r.json() == {"imported": 50}, r.body
    r = h.request("POST", "/v1/collections/albums/import", b"title,owner\nc1,x\n\"c,2\",y\n",
                  headers={**admin, "Content-Type": "text/csv"})
    assert r.json() == {"imported": 2}, r.body
    assert len(h.get("/v1/collections/albums/export", headers=a).body.decode().splitlines()) == 52


def test_an_export_with_files_imports_into_a_fresh_collection_with_its_files(env):
    h, admin, _, _ = env

    def albums(name):
        return {"name": name, "fields": [{"name": "title", "type": "text"},
                                         {"name": "cover", "type": "file", "types": ["image/*"]}]}
    assert h.request("POST", "/v1/collections", albums("albums"), headers=admin).status == 201
    rec = h.request("POST", "/v1/collections/albums/records", {"title": "with"}, headers=admin).json()
    h.request("POST", "/v1/collections/albums/records", {"title": "without"}, headers=admin)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    r = h.request("PUT", f"/v1/collections/albums/records/{rec['id']}/files/cover?name=c.png", png,
                  headers={**admin, "Content-Type": "image/png"})
    assert r.status == 200, r.body
    sha256 = r.json()["cover"]["sha256"]
    for fmt, ctype in (("ndjson", "application/x-ndjson"), ("csv", "text/csv")):
        copy = f"copy_{fmt}"
        assert h.request("POST", "/v1/collections", albums(copy), headers=admin).status == 201
        exported = h.get(f"/v1/collections/albums/export?format={fmt}", headers=admin)
        assert exported.status == 200
        r = h.request("POST", f"/v1/collections/{copy}/import", exported.body, headers={**admin, "Content-Type": ctype})
        assert r.status == 200 and r.json() == {"imported": 2}, (fmt, r.body)
        items = h.get(f"/v1/collections/{copy}/records", headers=admin).json()["items"]
        assert [(x["title"], x["cover"] and x["cover"]["sha256"]) for x in items] == [("with", sha256), ("without", None)]
        got = h.get(f"/v1/collections/{copy}/records/{rec['id']}/files/cover", headers=admin)
        assert got.status == 200 and got.body == png and got.header("content-type") == "image/png"


def test_collections_apply_plans_applies_and_rolls_back(harmar, tmp_path):
    h = harmar()
    admin = bearer(admin_token(h))
    spec = tmp_path / "collections.yaml"
    spec.write_text("""
collections:
  - name: tasks
    fields:
      - {name: title, type: text, required: true}
      - {name: priority, type: number, min: 0, max: 10}
    indexes: [[priority]]
    rules: {list: "", view: ""}
""")

    def cli(*args):
        return subprocess.run([harmar_bin(), "collections", *args, "--data-dir", str(h.dir / "data"), *h.db_args,
                               "--log-level", "warn"],
                              capture_output=True, text=True)

    dry = cli("apply", str(spec), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+ collection tasks" in dry.stdout and "dry run" in dry.stdout and "CREATE TABLE" in dry.stdout
    problem(h.get("/v1/collections/tasks", headers=admin), 404)
    out = cli("apply", str(spec))
    assert out.returncode == 0, out.stderr
    assert h.get("/v1/collections/tasks", headers=admin).json()["indexes"] == [["priority"]]
    assert "nothing to change" in cli("apply", str(spec)).stdout
    spec.write_text(spec.read_text().replace("indexes: [[priority]]", "indexes: [[priority], [title]]")
                    .replace("max: 10}", "max: 10}\n      - {name: done, type: bool}"))
    out = cli("apply", str(spec))
    assert out.returncode == 0 and "+ field done" in out.stdout and "+ index [title]" in out.stdout, out.stdout
    wait_until(lambda: len(h.get("/v1/collections/tasks", headers=admin).json()["fields"]) == 3, timeout=40,
               what="the server to see the new field")
    back = cli("rollback")
    assert back.returncode == 0 and "undo" in back.stdout, back.stdout + back.stderr
    wait_until(lambda: len(h.get("/v1/collections/tasks", headers=admin).json()["fields"]) == 2, timeout=40,
               what="the server to see the rollback")
    bad = tmp_path / "bad.yaml"
    bad.write_text("collections:\n  - name: Bad\n")
    out = cli("apply", str(bad))
    assert out.returncode == 1 and "collections[0].name" in out.stderr


def test_two_nodes_share_records_and_the_cache_follows_writes(harmar):
    db = fresh_pg_url()
    redis = require_env("HARMAR_TEST_REDIS_URL")
    shared = ("--db", db, "--redis", redis, "--set", "auth.secret=" + base64.b64encode(os.urandom(32)).decode())
    n1 = harmar(*shared)
    n2 = harmar(*shared)
    admin = bearer(admin_token(n1, shared))
    spec = {"name": "shared", "fields": [{"name": "v", "type": "number"}],
            "rules": {"list": "", "view": "", "create": "", "update": ""}}
    assert n1.request("POST", "/v1/collections", spec, headers=admin).status == 201
    rec = n2.request("POST", "/v1/collections/shared/records", {"v": 1}).json()
    path = f"/v1/collections/shared/records/{rec['id']}"
    for _ in range(3):  # fill the cache on both nodes
        assert n1.get(path).json()["v"] == 1 and n2.get(path).json()["v"] == 1
    for v in range(2, 6):
        node_w, node_r = (n1, n2) if v % 2 else (n2, n1)
        assert node_w.request("PATCH", path, {"v": v}).json()["v"] == v
        wait_until(lambda: node_r.get(path).json()["v"] == v, timeout=6, what=f"v={v} on the other node")
    assert n1.request("DELETE", path, headers=admin).status == 204
    wait_until(lambda: n2.get(path).status == 404, timeout=6, what="the delete on the other node")
    # Re-created under the same id: neither node keeps answering from the delete's tombstone.
    assert n2.get(path).status == 404 and n1.get(path).status == 404
    again = n1.request("POST", "/v1/collections/shared/records", {"id": rec["id"], "v": 7})
    assert again.status == 201, again.body
    assert n1.get(path).json()["v"] == 7
    wait_until(lambda: n2.get(path).status == 200 and n2.get(path).json()["v"] == 7, timeout=6,
               what="the re-created record on the other node")
    metrics = n1.get("/metrics").body.decode()
    assert "harmar_data_cache_hits_total" in metrics


def test_on_mariadb_collections_apply_makes_real_tables_and_serve_migrates_every_module(tmp_path, harmar):
    url, u, name = fresh_mariadb_url()
    spec = tmp_path / "collections.yaml"
    spec.write_text("collections:\n  - name: tasks\n    fields:\n      - {name: title, type: text, required: true}\n"
                    "    indexes: [[title]]\n")
    common = ["--db", url, "--data-dir", str(tmp_path / "data"), "--log-level", "warn"]
    out = subprocess.run([harmar_bin(), "collections", "apply", str(spec), *common], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "+ collection tasks" in out.stdout, out.stdout + out.stderr
    tables = subprocess.run(["mariadb", "--no-defaults", "-h", u.hostname, "-P", str(u.port), "-u", u.username,
                             "-N", "-e", "SHOW TABLES", name], check=True, capture_output=True, text=True).stdout.split()
    assert "data_collections" in tables and any("tasks" in t for t in tables), tables
    again = subprocess.run([harmar_bin(), "collections", "apply", str(spec), *common], capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0 and "nothing to change" in again.stdout, again.stdout + again.stderr
    # serve migrates every other module onto the same database and serves the collection.
    h = harmar("--db", url)
    admin = bearer(admin_token(h, ("--db", url)))
    created = h.request("POST", "/v1/collections/tasks/records", body={"title": "on MariaDB"}, headers=admin)
    assert created.status == 201, created.body
    got = h.get(f"/v1/collections/tasks/records/{created.json()['id']}", headers=admin)
    assert got.status == 200 and got.json()["title"] == "on MariaDB", got.body
    after = subprocess.run(["mariadb", "--no-defaults", "-h", u.hostname, "-P", str(u.port), "-u", u.username,
                            "-N", "-e", "SELECT DISTINCT module FROM schema_migrations", name],
                           check=True, capture_output=True, text=True).stdout.split()
    assert {"auth", "data", "devices", "im", "tasks", "platform"} <= set(after), after
