"""Shared pieces of the device, task and agent integration tests: a harmar on either backend
(SQLite in its data dir, or a fresh PostgreSQL schema), a registered user, devices, and
`harmar agent` processes."""
import json
import os
import signal
import socket
import subprocess
import time
import uuid

from harness import harmar_bin, require_env, wait_until

PASSWORD = "correct horse battery staple 42"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fresh_pg_url():
    """A new, empty PostgreSQL schema, as a URL whose search_path is that schema."""
    base = require_env("HARMAR_TEST_PG_URL")
    schema = "it_" + uuid.uuid4().hex[:16]
    subprocess.run(["psql", base, "-q", "-c", f"CREATE SCHEMA {schema}"], check=True, capture_output=True)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def backend_args(backend):
    return [] if backend == "sqlite" else ["--db", fresh_pg_url()]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


class User:
    """A registered user of a running harmar, with helpers for the calls tests make."""

    def __init__(self, h, email=None):
        self.h = h
        email = email or f"u{uuid.uuid4().hex[:10]}@example.com"
        r = h.request("POST", "/v1/auth/register", {"email": email, "password": PASSWORD, "name": "Queue Tester"})
        assert r.status == 201, r.body
        body = r.json()
        self.token = body["access_token"]
        self.id = body["user"]["id"]

    def call(self, method, path, body=None, headers=None, timeout=30):
        hdrs = bearer(self.token)
        hdrs.update(headers or {})
        return self.h.request(method, path, body, headers=hdrs, timeout=timeout)

    def register_device(self, name="dev", labels=None):
        r = self.call("POST", "/v1/daemon/register", {"name": name, "labels": labels or {}})
        assert r.status == 201, r.body
        return Device(self.h, r.json())

    def create_task(self, **fields):
        fields.setdefault("type", "echo")
        r = self.call("POST", "/v1/tasks", fields)
        assert r.status == 201, r.body
        return r.json()["task"]

    def task(self, task_id):
        r = self.call("GET", f"/v1/tasks/{task_id}")
        assert r.status == 200, r.body
        return r.json()["task"]

    def all_tasks(self, **filters):
        items, cursor = [], None
        while True:
            q = "&".join([f"{k}={v}" for k, v in filters.items()] + ["limit=200"] + ([f"cursor={cursor}"] if cursor else []))
            r = self.call("GET", f"/v1/tasks?{q}")
            assert r.status == 200, r.body
            page = r.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


def waiting_polls(h):
    """How many agents' long-polls wait for work on this node (the server's own gauge)."""
    r = h.request("GET", "/metrics")
    assert r.status == 200
    for line in r.body.decode().splitlines():
        if line.startswith("harmar_tasks_waiting_polls "):
            return float(line.split()[1])
    raise AssertionError("no harmar_tasks_waiting_polls in /metrics")


class Device:
    def __init__(self, h, registered):
        self.h = h
        self.info = registered["device"]
        self.id = self.info["id"]
        self.key = registered["api_key"]

    def call(self, method, path, body=None, timeout=90):
        return self.h.request(method, path, body, headers=bearer(self.key), timeout=timeout)

    def heartbeat(self, **body):
        return self.call("POST", "/v1/daemon/heartbeat", body)

    def pending(self, **body):
        r = self.call("POST", "/v1/daemon/tasks/pending", body)
        assert r.status == 200, r.body
        return r.json()

    def claim(self, max=1, **body):
        return self.pending(max=max, **body)["tasks"]

    def result(self, task, status="succeeded", **body):
        body["status"] = status
        return self.call("POST", f"/v1/daemon/tasks/{task['id']}/result", body)


class Agent:
    """A `harmar agent` process with its own state file and log."""

    def __init__(self, workdir, server_url, token=None, api_key=None, name="agent", extra=()):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / f"{name}.log"
        self.state = self.dir / f"{name}.json"
        cmd = [harmar_bin(), "agent", "--server", server_url, "--state", str(self.state), "--name", name, "--wait", "5"]
        if token:
            cmd += ["--token", token]
        if api_key:
            cmd += ["--api-key", api_key]
        cmd += list(extra)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def device_id(self, timeout=15):
        def registered():
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.read_log()}")
            try:
                return json.loads(self.state.read_text()).get("device_id")
            except (FileNotFoundError, json.JSONDecodeError):
                return None
        return wait_until(registered, timeout=timeout, what="the agent to register")

    def read_log(self):
        return self.log_path.read_text(errors="replace")

    def log_lines(self):
        out = []
        for line in self.read_log().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        self.log.close()
        return self.proc.returncode

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def wait_status(user, task_id, statuses, timeout=20):
    statuses = {statuses} if isinstance(statuses, str) else set(statuses)
    return wait_until(lambda: (t := user.task(task_id))["status"] in statuses and t, timeout=timeout,
                      interval=0.05, what=f"task {task_id} to be {statuses}")
