#!/usr/bin/env python3
"""A reverse proxy in front of s3rver that checks AWS Signature V4 the way S3 does.

s3rver 3.7 accepts any V4 signature from a known access key (its V4 check is unimplemented), so a
wrong secret or a mis-signed request would pass unnoticed. This gate recomputes every signature
with botocore (AWS's own SDK core, python3-botocore) from the request as it arrived, checks the
declared payload sha256 against the body, and answers 403 SignatureDoesNotMatch /
XAmzContentSHA256Mismatch like S3; good requests are forwarded unchanged. Unsigned requests pass
(s3rver allows anonymous access; the tests read the bucket that way to check what harmar wrote).

    s3_sigv4_gate.py --port 9001 --upstream 127.0.0.1:9000 --key S3RVER:S3RVER
"""
import argparse
import hashlib
import hmac
import http.client
import http.server
import re
import socketserver

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, ?"
                  r"SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$")
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def s3_error(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            f"</Error>").encode()


class Gate(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    keys = {}
    upstream = None

    def log_message(self, *args):
        pass

    def refuse(self, status, code, message):
        body = s3_error(code, message)
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def check(self, body):
        """None when the request may pass, else (status, code, message)."""
        auth = self.headers.get("Authorization")
        if auth is None:
            return None
        m = AUTH.match(auth)
        if not m:
            return 400, "AuthorizationHeaderMalformed", "the authorization header is malformed"
        access_key, _, region, signed, signature = m.groups()
        secret = self.keys.get(access_key)
        if secret is None:
            return 403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
        declared = self.headers.get("x-amz-content-sha256", "")
        if declared != "UNSIGNED-PAYLOAD" and declared != hashlib.sha256(body).hexdigest():
            return 400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match"
        headers = {}
        for name in signed.split(";"):
            values = self.headers.get_all(name)
            if values is None:
                return 403, "SignatureDoesNotMatch", f"signed header {name} is missing"
            headers[name] = ",".join(values)
        request = AWSRequest(method=self.command, url=f"http://{self.headers['Host']}{self.path}",
                             headers=headers, data=body)
        request.context["timestamp"] = self.headers.get("x-amz-date", "")
        signer = S3SigV4Auth(Credentials(access_key, secret), "s3", region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, signature):
            return 403, "SignatureDoesNotMatch", ("The request signature we calculated does not match the signature "
                                                  "you provided. Check your key and signing method.")
        return None

    def relay(self):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            return self.refuse(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        body = self.rfile.read(int(length)) if length else b""
        refused = self.check(body)
        if refused:
            return self.refuse(*refused)
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            conn.request(self.command, self.path, body=body if body or length else None, headers=headers)
            r = conn.getresponse()
            data = r.read()
            self.send_response(r.status, r.reason)
            for k, v in r.getheaders():
                if k.lower() not in HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            content_length = r.getheader("Content-Length")
            self.send_header("Content-Length", content_length if self.command == "HEAD" and content_length
                             else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            conn.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = relay


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="HOST:PORT of s3rver")
    p.add_argument("--key", action="append", default=[], help="ACCESS_KEY:SECRET, repeatable")
    args = p.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    Gate.upstream = (host, int(port))
    Gate.keys = dict(k.split(":", 1) for k in args.key)
    Server(("127.0.0.1", args.port), Gate).serve_forever()


if __name__ == "__main__":
    main()
