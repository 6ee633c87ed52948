"""`harmar agent` against the real server: it registers and runs echo, shell and http tasks,
kills a cancelled shell task's whole process group, survives its own kill -9 (the task finishes
on a second agent), survives kill -9 of the server during 1 000 tasks (each ends exactly once),
and gives its work back on SIGTERM."""
import collections
import http.server
import json
import os
import signal
import threading
import time

import pytest

from harness import wait_until
from queue_support import Agent, User, backend_args, free_port, wait_status


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_agent_registers_and_runs_echo_shell_and_http_tasks(harmar, tmp_path):
    h = harmar()
    user = User(h)
    agent = Agent(tmp_path / "a", h.url, token=user.token, name="runner", extra=["--label", "os=linux"])
    try:
        device_id = agent.device_id()
        state = json.loads(agent.state.read_text())
        assert state["api_key"].startswith("hdk_") and oct(agent.state.stat().st_mode & 0o777) == "0o600"
        dev = user.call("GET", f"/v1/devices/{device_id}").json()
        assert dev["name"] == "runner" and dev["labels"] == {"os": "linux"}
        wait_until(lambda: user.call("GET", f"/v1/devices/{device_id}").json()["status"] == "online", timeout=10)

        echo = user.create_task(type="echo", payload={"hello": "world"})
        assert wait_status(user, echo["id"], "succeeded")["result"] == {"hello": "world"}

        shell = user.create_task(type="shell", payload={"command": "echo out; echo err >&2; printf %s \"$GREETING\"",
                                                        "env": {"GREETING": "hi"}}, labels={"os": "linux"})
        done = wait_status(user, shell["id"], "succeeded")
        assert done["result"]["exit_code"] == 0
        assert done["result"]["stdout"] == "out\nhi" and done["result"]["stderr"] == "err\n"
        logs = "".join(l["text"] for l in user.call("GET", f"/v1/tasks/{shell['id']}/logs").json()["items"])
        assert "out" in logs and "err" in logs

        # A task's process inherits nothing of the agent's but stdin/stdout/stderr (no server
        # connection that would outlive a killed agent, no other task's pipe).
        fds = user.create_task(type="shell", payload={"argv": ["sh", "-c", "ls /proc/$$/fd"]})
        assert wait_status(user, fds["id"], "succeeded")["result"]["stdout"].split() == ["0", "1", "2"]

        failing = user.create_task(type="shell", payload={"argv": ["sh", "-c", "exit 7"]}, max_attempts=1)
        failed = wait_status(user, failing["id"], "failed")
        assert failed["result"]["exit_code"] == 7 and failed["error"] == "exit status 7"

        class Hello(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(201)
                self.send_header("X-Seen", self.headers.get("X-Token", ""))
                self.end_headers()
                self.wfile.write(b"got " + body)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            web = user.create_task(type="http", payload={"method": "POST", "url": f"http://127.0.0.1:{srv.server_port}/x",
                                                         "headers": {"X-Token": "t1"}, "body": "ping"})
            res = wait_status(user, web["id"], "succeeded")["result"]
            assert res["status"] == 201 and res["body"] == "got ping" and res["headers"]["x-seen"] == "t1"
        finally:
            srv.shutdown()

        unknown = user.create_task(type="no-such-type", max_attempts=3)
        # A later task it can run is claimed and done while the earlier one stays untouched.
        later = user.create_task(type="echo", payload={"after": True})
        assert wait_status(user, later["id"], "succeeded")["result"] == {"after": True}
        assert user.task(unknown["id"])["status"] == "queued"  # this agent does not claim what it cannot run
    finally:
        assert agent.stop() == 0, agent.read_log()


def test_cancel_kills_the_running_shell_task_and_its_children(harmar, tmp_path):
    h = harmar()
    user = User(h)
    agent = Agent(tmp_path / "a", h.url, token=user.token)
    try:
        agent.device_id()
        pidfile = tmp_path / "pids"
        t = user.create_task(type="shell", payload={"command": f"sleep 300 & echo $! > {pidfile}; echo $$ >> {pidfile}; wait"})
        wait_status(user, t["id"], "running")
        wait_until(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, timeout=10, what="the pid file")
        pids = [int(p) for p in pidfile.read_text().split()]
        assert all(pid_alive(p) for p in pids)
        start = time.monotonic()
        assert user.call("POST", f"/v1/tasks/{t['id']}/cancel").status == 200
        wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10, what="the process group to die")
        assert time.monotonic() - start < 6  # told within one long-poll wake-up, killed with TERM
        assert user.task(t["id"])["status"] == "cancelled"
    finally:
        agent.stop()


def test_a_task_times_out_and_its_processes_are_killed(harmar, tmp_path):
    h = harmar()
    user = User(h)
    agent = Agent(tmp_path / "a", h.url, token=user.token)
    try:
        agent.device_id()
        t = user.create_task(type="shell", payload={"command": "sleep 60"}, timeout_s=1, max_attempts=1)
        failed = wait_status(user, t["id"], "failed", timeout=15)
        assert "timed out" in failed["error"]
    finally:
        agent.stop()


def test_kill_9_of_an_agent_the_lease_expires_and_a_second_agent_finishes_the_task(harmar, tmp_path):
    h = harmar("--set", "tasks.lease=2s", "--set", "tasks.tick_interval=100ms", "--set", "tasks.backoff_base=0s")
    user = User(h)
    first = Agent(tmp_path / "a1", h.url, token=user.token, name="first")
    first_id = first.device_id()
    t = user.create_task(type="echo", payload={"sleep_ms": 60000})
    running = wait_status(user, t["id"], "running")
    assert running["claimed_by"] == first_id
    first.kill()
    second = Agent(tmp_path / "a2", h.url, token=user.token, name="second")
    try:
        second_id = second.device_id()
        back = wait_status(user, t["id"], "queued", timeout=10)
        assert "lease expired" in back["error"]
        # The retry runs on the second agent (it sleeps again: cancel it after checking who has it).
        rerun = wait_status(user, t["id"], "running", timeout=10)
        assert rerun["claimed_by"] == second_id and rerun["attempts"] == 2
        user.call("POST", f"/v1/tasks/{t['id']}/cancel")
        quick = user.create_task(type="echo", payload={"n": 1})
        assert wait_status(user, quick["id"], "succeeded")["claimed_by"] == second_id
    finally:
        second.stop()


def test_kill_9_of_an_agent_mid_task_then_a_second_agent_completes_it(harmar, tmp_path):
    h = harmar("--set", "tasks.lease=2s", "--set", "tasks.tick_interval=100ms", "--set", "tasks.backoff_base=0s")
    user = User(h)
    first = Agent(tmp_path / "a1", h.url, token=user.token, name="first")
    first.device_id()
    t = user.create_task(type="shell", payload={"command": "sleep 3; echo finished"})
    wait_status(user, t["id"], "running")
    first.kill()
    second = Agent(tmp_path / "a2", h.url, token=user.token, name="second")
    try:
        second_id = second.device_id()
        done = wait_status(user, t["id"], "succeeded", timeout=30)
        assert done["claimed_by"] == second_id and done["attempts"] == 2
        assert done["result"]["stdout"] == "finished\n"
    finally:
        second.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_of_the_server_during_1000_tasks_every_task_ends_exactly_once(harmar, tmp_path, backend):
    port = free_port()
    args = backend_args(backend) + ["--set", f"listen=127.0.0.1:{port}"]
    h = harmar(*args)
    user = User(h)
    url = f"http://127.0.0.1:{port}"
    agents = [Agent(tmp_path / f"a{i}", url, token=user.token, name=f"agent{i}", extra=["--concurrency", "8"])
              for i in range(2)]
    for a in agents:
        a.device_id()
    ids = set()
    for i in range(1000):
        ids.add(user.create_task(type="echo", payload={"i": i, "sleep_ms": 5})["id"])
    wait_until(lambda: len(user.all_tasks(status="succeeded")) >= 150, timeout=60, what="some progress")
    h.kill()  # kill -9, mid-load
    wait_until(lambda: any("cannot reach the server" in a.read_log() for a in agents), timeout=30,
               what="an agent to notice the server is gone")
    h.start()  # the same node again: same data dir (and keys), same port
    assert h.port == port
    try:
        wait_until(lambda: len(user.all_tasks(status="succeeded")) == 1000, timeout=180, interval=0.5,
                   what="every task to succeed")
        tasks = user.all_tasks()
        assert {t["id"] for t in tasks} == ids
        assert collections.Counter(t["status"] for t in tasks) == {"succeeded": 1000}
    finally:
        for a in agents:
            assert a.stop() == 0
    # Count the completions the server accepted, as the agents saw them: one per task.
    accepted = collections.Counter()
    for a in agents:
        for line in a.log_lines():
            if line.get("msg") == "task succeeded":
                accepted[line["task_id"]] += 1
    assert set(accepted) == ids
    assert max(accepted.values()) == 1, [k for k, v in accepted.items() if v > 1][:5]
    assert sum(accepted.values()) == 1000


def test_sigterm_lets_a_short_task_finish_and_gives_a_long_one_back(harmar, tmp_path):
    h = harmar()
    user = User(h)
    agent = Agent(tmp_path / "a", h.url, token=user.token, extra=["--grace", "1"])
    device_id = agent.device_id()
    short = user.create_task(type="echo", payload={"sleep_ms": 300})
    long = user.create_task(type="shell", payload={"command": "sleep 120"})
    wait_status(user, short["id"], "running")
    wait_status(user, long["id"], "running")
    start = time.monotonic()
    assert agent.stop(timeout=30) == 0
    assert time.monotonic() - start < 15
    assert user.task(short["id"])["status"] == "succeeded"
    back = user.task(long["id"])
    assert back["status"] == "queued" and back["attempts"] == 0
    assert user.call("GET", f"/v1/devices/{device_id}").json()["status"] == "offline"


def test_agent_keeps_its_key_across_restarts_and_reconnects_to_a_returning_server(harmar, tmp_path):
    port = free_port()
    h = harmar("--set", f"listen=127.0.0.1:{port}")
    user = User(h)
    url = f"http://127.0.0.1:{port}"
    a = Agent(tmp_path / "a", url, token=user.token)
    first_id = a.device_id()
    a.stop()
    b = Agent(tmp_path / "a", url)  # same state file, no token: the stored key is used
    try:
        wait_until(lambda: "agent running" in b.read_log(), timeout=15, what="the agent to start")
        h.stop()
        wait_until(lambda: "cannot reach the server" in b.read_log() or "heartbeat failed" in b.read_log(),
                   timeout=30, what="the agent to see the server gone")
        h.start()
        t = user.create_task(type="echo", payload="back")
        done = wait_status(user, t["id"], "succeeded", timeout=40)
        assert done["claimed_by"] == first_id
        assert len(user.call("GET", "/v1/devices").json()["items"]) == 1
    finally:
        b.stop()
