"""`harmar serve --blobs s3://…` on a real S3-compatible server (npm s3rver from
scripts/test-services.sh, HARMAR_TEST_S3_URL): IM attachments land in the bucket, a wrong secret
stops the server at startup with a clear error, and the secret never shows in logs or config."""
import os
import subprocess
import urllib.parse
import urllib.request
import uuid

from harness import harmar_bin, require_env
from im_support import User, group
# Imported under another name so that pytest does not collect it here as well.
from test_backups import test_a_100_mb_upload_streams_with_flat_server_memory as backups_100_mb_flat_memory


def s3_url(prefix, secret=None):
    """The test URL with a key prefix after the bucket (and another secret, if given)."""
    url = require_env("HARMAR_TEST_S3_URL")
    base, _, query = url.partition("?")
    if secret is not None:
        scheme, rest = base.split("://", 1)
        userinfo, host = rest.split("@", 1)
        base = f"{scheme}://{userinfo.split(':')[0]}:{secret}@{host}"
    return f"{base}/{prefix}" + (f"?{query}" if query else "")


def bucket_http():
    """http://HOST:PORT/BUCKET of the test server, for plain (unsigned) reads that s3rver allows."""
    parts = urllib.parse.urlsplit(require_env("HARMAR_TEST_S3_URL").replace("s3://", "http://", 1))
    return f"http://{parts.hostname}:{parts.port}{parts.path}"


def test_im_attachments_are_stored_in_the_s3_bucket(harmar):
    prefix = f"it-{uuid.uuid4().hex[:12]}"
    h = harmar("--blobs", s3_url(prefix))
    alice, bob = User(h, "s3-alice@example.com"), User(h, "s3-bob@example.com")
    gid = group(alice, [bob])
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(300_000)
    att = alice.call("POST", f"/v1/conversations/{gid}/attachments?name=cat.png", png,
                     headers={"Content-Type": "image/png"}, expect=201).json()["attachment"]
    got = bob.call("GET", att["url"], expect=200)
    assert got.body == png

    # The object is in the bucket, under the URL's prefix, byte for byte: asked of the server
    # directly, not through harmar.
    key = f"{prefix}/im/{gid}/{att['id']}"
    with urllib.request.urlopen(f"{bucket_http()}?list-type=2&prefix={prefix}/", timeout=10) as r:
        listing = r.read().decode()
    assert f"<Key>{key}</Key>" in listing, listing
    with urllib.request.urlopen(f"{bucket_http()}/{key}", timeout=10) as r:
        assert r.read() == png


def test_config_backups_stream_100_mb_through_s3_with_flat_server_memory(harmar):
    """The config-backups 100 MB test (upload, then download with its checksum; the server's peak
    RSS grows by less than 16 MB) with the blobs on S3: multipart upload, windowed ranged reads."""
    url = s3_url(f"bk-{uuid.uuid4().hex[:12]}")
    backups_100_mb_flat_memory(lambda *args, **kw: harmar(*args, "--blobs", url, **kw))


def test_a_wrong_secret_stops_the_server_at_startup_without_showing_it(tmp_path):
    secret = "wrong-secret-zq81"
    r = subprocess.run([harmar_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
                        "--blobs", s3_url("x", secret=secret)], capture_output=True, timeout=60, text=True)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "refused our credentials" in out and "SignatureDoesNotMatch" in out, out
    assert secret not in out


def test_config_show_hides_the_secret_of_the_blobs_url():
    secret = "sekrit-value-q7"
    r = subprocess.run([harmar_bin(), "config", "show", "--blobs", f"s3://AKID:{secret}@s3.example.com/bucket"],
                       capture_output=True, timeout=30, text=True)
    assert r.returncode == 0, r.stderr
    assert "blobs = s3://AKID:***@s3.example.com/bucket" in r.stdout, r.stdout
    assert secret not in r.stdout
