"""The operational endpoints and the command line of the real binary."""
import json
import signal
import socket
import subprocess
import time

from harness import harmar_bin, require_env


def test_healthz_readyz_and_version(harmar):
    h = harmar()
    assert h.get("/healthz").json() == {"status": "ok"}
    ready = h.get("/readyz")
    assert ready.status == 200
    assert ready.json()["checks"]["database"] == "ok"
    v = h.get("/v1/version").json()
    assert v["name"] == "harmar" and v["version"] and v["commit"]


def test_embedded_storage_lands_in_the_data_dir_in_wal_mode(harmar):
    h = harmar()
    db = h.dir / "data" / "harmar.db"
    assert db.exists()
    mode = subprocess.run(["sqlite3", str(db), "PRAGMA journal_mode;"], capture_output=True, text=True)
    assert mode.stdout.strip() == "wal"


def test_metrics_pass_promtool(harmar):
    h = harmar()
    for _ in range(3):
        h.get("/v1/version")
    h.get("/no/such/route")
    r = h.get("/metrics")
    assert r.status == 200
    assert r.header("content-type").startswith("text/plain; version=0.0.4")
    text = r.body.decode()
    assert 'harmar_http_requests_total{route="/v1/version",method="GET",code="2xx"} 3' in text
    assert "process_resident_memory_bytes" in text
    check = subprocess.run(["promtool", "check", "metrics"], input=r.body, capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_openapi_document_is_served_as_json(harmar):
    h = harmar()
    doc = h.get("/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ["/healthz", "/readyz", "/metrics", "/v1/version"]:
        assert path in doc["paths"], path


def test_errors_are_problem_json(harmar):
    h = harmar()
    r = h.get("/v1/nothing-here")
    assert r.status == 404
    assert r.header("content-type") == "application/problem+json"
    p = r.json()
    assert p["code"] == "not_found" and p["status"] == 404 and p["title"] and "type" in p
    r = h.request("POST", "/v1/version")
    assert r.status == 405
    assert "GET" in r.header("allow")
    assert r.json()["code"] == "method_not_allowed"


def test_request_id_is_echoed_or_generated(harmar):
    h = harmar()
    assert h.get("/healthz", headers={"X-Request-Id": "req-42"}).header("x-request-id") == "req-42"
    a = h.get("/healthz").header("x-request-id")
    b = h.get("/healthz").header("x-request-id")
    assert a and b and a != b


def test_access_log_is_json_lines(harmar):
    h = harmar()
    h.get("/v1/version", headers={"X-Request-Id": "log-me"})
    h.stop()
    lines = [json.loads(l) for l in h.read_log().splitlines() if l.startswith("{")]
    access = [l for l in lines if l.get("module") == "access" and l.get("request_id") == "log-me"]
    assert access, h.read_log()
    assert access[0]["status"] == 200 and access[0]["path"] == "/v1/version"


def test_sigterm_and_sigint_exit_zero(harmar):
    for sig in (signal.SIGTERM, signal.SIGINT):
        h = harmar()
        assert h.stop(sig) == 0, h.read_log()


def test_body_limit_and_slow_header_limits_apply(harmar):
    h = harmar("--set", "limits.body_bytes=1KiB", "--set", "limits.header_timeout=500ms")
    r = h.request("POST", "/v1/version", body=b"x" * 5000)
    assert r.status == 413
    assert r.json()["code"] == "payload_too_large"
    s = socket.create_connection(("127.0.0.1", h.port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    s.settimeout(5)
    t0 = time.monotonic()
    assert s.recv(1024) == b""  # closed by the server, no response
    assert time.monotonic() - t0 < 4


def test_cli_lists_subcommands_and_prints_version():
    out = subprocess.run([harmar_bin(), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ["serve", "migrate", "config", "version"]:
        assert cmd in out.stdout
    v = subprocess.run([harmar_bin(), "version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("harmar ") and "commit" in v.stdout


def test_config_check_names_the_bad_key(tmp):
    good = tmp / "good.yaml"
    good.write_text("listen: 127.0.0.1:9999\nlimits:\n  body_bytes: 2MiB\n")
    bad = tmp / "bad.yaml"
    bad.write_text("listen: 127.0.0.1:9999\nlimits:\n  body_byte: 2MiB\n")
    ok = subprocess.run([harmar_bin(), "config", "check", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    no = subprocess.run([harmar_bin(), "config", "check", str(bad)], capture_output=True, text=True)
    assert no.returncode == 1
    assert "limits.body_byte" in no.stderr and "line 3" in no.stderr


def test_environment_overrides_file_and_flags_override_environment(tmp, harmar):
    cfg = tmp / "h.yaml"
    cfg.write_text("limits:\n  body_bytes: 100\n")
    h = harmar("--config", str(cfg), env={"HARMAR_LIMITS_BODY_BYTES": "2000"})
    assert h.request("POST", "/v1/version", body=b"x" * 1500).status == 405  # admitted, then 405
    assert h.request("POST", "/v1/version", body=b"x" * 2500).status == 413
    show = subprocess.run([harmar_bin(), "config", "show", "--config", str(cfg), "--set", "limits.body_bytes=5"],
                          capture_output=True, text=True, env={"HARMAR_LIMITS_BODY_BYTES": "2000"})
    assert "limits.body_bytes = 5    # flag" in show.stdout


def test_invalid_configuration_is_refused_at_start(tmp):
    r = subprocess.run([harmar_bin(), "serve", "--set", "workers=lots"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "workers" in r.stderr


def test_postgres_and_redis_backends_are_ready(harmar):
    h = harmar("--db", require_env("HARMAR_TEST_PG_URL"), "--redis", require_env("HARMAR_TEST_REDIS_URL"))
    checks = h.get("/readyz").json()["checks"]
    assert checks == {"database": "ok", "pubsub": "ok", "kv": "ok"}


def test_migrate_command_brings_a_database_up_to_date(tmp):
    db = tmp / "m.db"
    r = subprocess.run([harmar_bin(), "migrate", "--db", f"sqlite://{db}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    tables = subprocess.run(["sqlite3", str(db), ".tables"], capture_output=True, text=True).stdout
    assert "schema_migrations" in tables


def test_configuration_reference_is_current():
    """docs/configuration.md is what `harmar config schema` prints (run `make docs` after adding a key)."""
    import pathlib
    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    out = subprocess.run([harmar_bin(), "config", "schema"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout == doc.read_text(), "docs/configuration.md is stale: run `make docs`"


def test_a_database_from_a_newer_harmar_is_refused_with_a_clear_message(tmp):
    db = tmp / "newer.db"
    ok = subprocess.run([harmar_bin(), "migrate", "--db", f"sqlite://{db}"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr + ok.stdout
    # Pretend a newer harmar migrated the platform module further than this binary knows.
    subprocess.run(["sqlite3", str(db), "UPDATE schema_migrations SET version = 999 WHERE module = 'platform' "
                    "AND version = (SELECT MAX(version) FROM schema_migrations WHERE module = 'platform');"],
                   check=True)
    again = subprocess.run([harmar_bin(), "migrate", "--db", f"sqlite://{db}"], capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 1
    out = again.stdout + again.stderr
    assert "platform" in out and "999" in out, out


def test_log_levels_are_set_per_module(harmar):
    h = harmar("--set", "log.levels=access=warn")
    h.get("/v1/version", headers={"X-Request-Id": "quiet-please"})
    h.stop()
    assert "quiet-please" not in h.read_log()
    h2 = harmar("--set", "log.format=text")
    h2.get("/v1/version", headers={"X-Request-Id": "loud-please"})
    h2.stop()
    text = h2.read_log()
    assert "loud-please" in text and "[access]" in text
