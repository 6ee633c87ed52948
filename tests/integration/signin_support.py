"""Shared pieces of the sign-in integration tests (test_oauth.py, test_sms.py, test_captcha.py):
a cookie-keeping browser that does not follow redirects, free ports, a harmar started with a
YAML configuration at a known public URL, and small HTTP servers run in a thread."""
import http.cookiejar
import http.server
import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    def json(self):
        return json.loads(self.body)


class Browser:
    """Keeps cookies per site like a browser, never follows redirects (the test does, step by step)."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def request(self, method, url, data=None, headers=None, timeout=30):
        if isinstance(data, dict):
            data = urllib.parse.urlencode(data).encode()
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            r = self.opener.open(req, timeout=timeout)
            return Reply(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.headers, e.read())

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, data, **kw):
        return self.request("POST", url, data=data, **kw)


def start_configured(harmar, tmp, config, env=None):
    """A harmar on a port chosen here, so that public_url (and OAuth callback URLs) are known in
    advance. `config` is a dict written as YAML-compatible JSON."""
    port = free_port()
    cfg = dict(config)
    cfg.setdefault("public_url", f"http://127.0.0.1:{port}")
    path = tmp / f"harmar-{port}.yaml"
    path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
    return harmar("--config", str(path), "--set", f"listen=127.0.0.1:{port}", env=env)


class ThreadedServer:
    """A small HTTP server on a free loopback port, run in a thread for one test."""

    def __init__(self, handler_class):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """BaseHTTPRequestHandler with helpers; quiet."""

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def query(self):
        return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).items()}

    def send_json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()
