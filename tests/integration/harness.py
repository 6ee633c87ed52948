"""The real binary as a test sees it: started on port 0, talked to over loopback, stopped with
SIGTERM, its exit status and log checked."""
import http.client
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import time
import urllib.parse
import uuid


def harmar_bin():
    b = os.environ.get("HARMAR_BIN")
    if not b:
        raise RuntimeError("HARMAR_BIN is not set: run the integration tests through ctest / make test")
    return b


def require_env(name):
    v = os.environ.get(name)
    if not v:
        raise RuntimeError(f"{name} is not set: run through `make test` (scripts/test-services.sh)")
    return v


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def fresh_mariadb_url():
    """A new, empty MariaDB database on HARMAR_TEST_MARIADB_URL's server: (URL, parsed base URL, name)."""
    base = require_env("HARMAR_TEST_MARIADB_URL")
    u = urllib.parse.urlparse(base)
    name = "it_" + uuid.uuid4().hex[:16]
    subprocess.run(["mariadb", "--no-defaults", "-h", u.hostname, "-P", str(u.port), "-u", u.username,
                    "-e", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return base.rsplit("/", 1)[0] + "/" + name, u, name


# HARMAR_TEST_DB=mysql runs every server a test starts without --db on a MariaDB database of its
# own (one per data dir, so a server restarted on its data dir finds its data again) instead of
# the embedded SQLite. Servers given --db keep theirs.
_databases = {}


def default_db_args(data_dir, args):
    if os.environ.get("HARMAR_TEST_DB", "sqlite") != "mysql" or "--db" in args:
        return []
    key = str(pathlib.Path(data_dir).resolve())
    if key not in _databases:
        _databases[key] = fresh_mariadb_url()[0]
    return ["--db", _databases[key]]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())


class Harmar:
    def __init__(self, data_dir, args, env=None):
        self.dir = pathlib.Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proc = None
        self.port = None
        self.log_path = self.dir / "harmar.log"
        self.exit_code = None
        # ["--db", URL] when HARMAR_TEST_DB picks the database: CLI commands run on this server's
        # data take them too.
        self.db_args = default_db_args(self.dir, self.args)

    def start(self, wait_ready=True):
        port_file = self.dir / "port"
        if port_file.exists():
            port_file.unlink()
        cmd = [harmar_bin(), "serve", "--listen", "127.0.0.1:0", "--port-file", str(port_file),
               "--data-dir", str(self.dir / "data"), "--workers", "2"] + self.args
        cmd += self.db_args
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)

        def started():
            if self.proc.poll() is not None:
                raise AssertionError(f"harmar exited with {self.proc.returncode}:\n{self.read_log()}")
            return port_file.exists() and port_file.read_text().strip()

        self.port = int(wait_until(started, timeout=30, what="the port file"))
        if wait_ready:
            wait_until(lambda: self.request("GET", "/readyz").status == 200, timeout=30, what="/readyz")
        return self

    def db_rows(self, sql, params=()):
        """Rows of a query on this server's database (SQLite in its data dir, or its MariaDB database);
        ? placeholders. For MariaDB the parameters become quoted literals: test values only."""
        if not self.db_args:
            db = sqlite3.connect(self.dir / "data" / "harmar.db")
            try:
                return [tuple(r) for r in db.execute(sql, params)]
            finally:
                db.close()
        u = urllib.parse.urlparse(self.db_args[1])
        parts = sql.split("?")
        assert len(parts) == len(params) + 1, sql
        text = parts[0] + "".join("'" + str(p).replace("\\", "\\\\").replace("'", "''") + "'" + rest
                                  for p, rest in zip(params, parts[1:]))
        out = subprocess.run(["mariadb", "--no-defaults", "-h", u.hostname, "-P", str(u.port), "-u", u.username,
                              "-N", "-B", "-e", text, u.path.lstrip("/")], check=True, capture_output=True, text=True)
        return [tuple(line.split("\t")) for line in out.stdout.splitlines()]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body
            hdrs = dict(headers or {})
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            self.exit_code = self.proc.returncode if self.proc else None
            return self.exit_code
        self.proc.send_signal(sig)
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"harmar did not stop within {timeout}s after {sig!r}:\n{self.read_log()}")
        finally:
            self.log.close()
        return self.exit_code

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
