"""HTTP/1.1, h2c (prior knowledge and Upgrade) and h2 over TLS, against the real binary, with curl
and nghttp as clients: every protocol reaches the same handlers with the same answers."""
import asyncio
import json
import ssl
import subprocess

import pytest
import websockets


def curl(*args):
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "-w", "\n%{http_version} %{http_code}", *args],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    body, _, tail = out.stdout.rpartition("\n")
    version, code = tail.split()
    return version, int(code), body


@pytest.fixture
def tls_files(tmp):
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_http11(harmar):
    h = harmar()
    version, code, body = curl("--http1.1", h.url + "/v1/version")
    assert (version, code) == ("1.1", 200)
    assert json.loads(body)["name"] == "harmar"


def test_h2c_prior_knowledge(harmar):
    h = harmar()
    version, code, body = curl("--http2-prior-knowledge", h.url + "/v1/version")
    assert (version, code) == ("2", 200)
    assert json.loads(body)["name"] == "harmar"
    version, code, body = curl("--http2-prior-knowledge", h.url + "/nope")
    assert (version, code) == ("2", 404)
    assert json.loads(body)["code"] == "not_found"


def test_h2c_upgrade(harmar):
    h = harmar()
    version, code, body = curl("--http2", h.url + "/v1/version")
    assert (version, code) == ("2", 200)
    assert json.loads(body)["name"] == "harmar"


def test_nghttp_multiplexes_many_streams(harmar):
    h = harmar()
    # Distinct URLs: nghttp fetches each unique URL once.
    urls = [f"{h.url}/v1/version?i={i}" for i in range(20)] + [f"{h.url}/healthz?i={i}" for i in range(20)]
    out = subprocess.run(["nghttp", "-n", "--stat", *urls], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    statuses = [line.split()[4] for line in out.stdout.splitlines() if "/v1/version?" in line or "/healthz?" in line]
    assert statuses == ["200"] * 40, out.stdout


def test_h2_and_http11_over_tls(harmar, tls_files):
    cert, key = tls_files
    h = harmar("--tls-cert", str(cert), "--tls-key", str(key), wait_ready=False)
    url = f"https://localhost:{h.port}/v1/version"
    resolve = f"localhost:{h.port}:127.0.0.1"
    version, code, body = curl("--cacert", str(cert), "--resolve", resolve, "--http2", url)
    assert (version, code) == ("2", 200)
    assert json.loads(body)["name"] == "harmar"
    version, code, _ = curl("--cacert", str(cert), "--resolve", resolve, "--http1.1", url)
    assert (version, code) == ("1.1", 200)
    # A plain-text request to the TLS port gets nowhere.
    out = subprocess.run(["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{h.port}/healthz"],
                         capture_output=True, text=True)
    assert out.returncode != 0


def test_websocket_over_tls_carries_many_frames_and_closes_cleanly(harmar, tls_files):
    cert, key = tls_files
    h = harmar("--tls-cert", str(cert), "--tls-key", str(key), wait_ready=False)
    resolve = f"localhost:{h.port}:127.0.0.1"
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(cert), "--resolve", resolve,
                          "-H", "Content-Type: application/json", "-d",
                          '{"email":"wss@example.com","password":"a long enough passphrase 42"}',
                          f"https://localhost:{h.port}/v1/auth/register"], capture_output=True, text=True)
    token = json.loads(out.stdout)["access_token"]
    tls = ssl.create_default_context(cafile=str(cert))

    async def scenario():
        async with websockets.connect(f"wss://127.0.0.1:{h.port}/v1/ws?access_token={token}", ssl=tls,
                                      server_hostname="localhost") as ws:
            # Sent back to back, the answers leave the server together: they must arrive whole, in order.
            for _ in range(90):  # within the burst realtime.ops_per_second allows
                await ws.send(json.dumps({"op": "ping"}))
            for _ in range(90):
                assert json.loads(await asyncio.wait_for(ws.recv(), timeout=10)) == {"type": "pong"}
            await ws.close(code=1000)
            assert ws.close_code == 1000

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


def test_tls_with_a_missing_key_is_refused_at_start(harmar, tls_files, tmp):
    cert, _ = tls_files
    import subprocess as sp
    from harness import harmar_bin
    r = sp.run([harmar_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp / "d"),
                "--tls-cert", str(cert), "--tls-key", str(tmp / "missing.pem")], capture_output=True, text=True,
               timeout=30)
    assert r.returncode == 1
    assert "tls.key" in r.stdout + r.stderr
