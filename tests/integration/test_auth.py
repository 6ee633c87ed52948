"""Accounts and authentication on the real binary: every endpoint of shared/API.md "Accounts and
auth" (except captcha images, SMS and third-party login, tested in their own files), and every
refusal: bad input, wrong credentials, forged tokens, spent refresh tokens, rate limits, captchas,
missing permissions. Mails are read from the real SMTP sink (python3-aiosmtpd) and their links
followed."""
import base64
import email
import email.policy
import json
import os
import pathlib
import re
import statistics
import subprocess
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from harness import harmar_bin, require_env, wait_until

PASSWORD = "correct horse battery"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def register(h, email_addr, password=PASSWORD, name="Test User", **kw):
    r = h.request("POST", "/v1/auth/register", {"email": email_addr, "password": password, "name": name}, **kw)
    assert r.status == 201, r.body
    return r.json()


def login(h, email_addr, password=PASSWORD, **extra):
    return h.request("POST", "/v1/auth/login", {"email": email_addr, "password": password, **extra})


def problem(r, status, code):
    assert r.status == status, (r.status, r.body)
    assert r.header("content-type") == "application/problem+json", r.headers
    body = r.json()
    assert body["code"] == code, body
    return body


def smtp_args():
    return ["--set", f"smtp.url={require_env('HARMAR_TEST_SMTP_URL')}"]


def mails_to(address):
    """Every mail the SMTP sink received for `address`, oldest first, as email.message objects."""
    box = pathlib.Path(require_env("HARMAR_TEST_SMTP_DIR")) / "new"
    out = []
    for f in sorted(box.glob("*.eml")) if box.exists() else []:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        if address in (msg.get_all("X-Envelope-To") or []):
            out.append(msg)
    return out


def wait_for_link(address, kind, count=1):
    """The link of kind `kind` ("verify-email" | "reset-password") in the count-th such mail."""
    pattern = re.compile(r"https?://[^\s\"<>]+/" + kind + r"\?token=([A-Za-z0-9_-]+)")

    def found():
        links = []
        for m in mails_to(address):
            body = m.get_body(preferencelist=("plain",))
            text = body.get_content() if body else ""
            links += pattern.findall(text)
        return links if len(links) >= count else None

    links = wait_until(found, timeout=20, what=f"{kind} mail #{count} to {address}")
    return links[count - 1]


def unique(prefix):
    return f"{prefix}.{time.monotonic_ns()}@example.com"


# --- registration and login -------------------------------------------------------------------


def test_register_answers_201_with_the_token_pair_and_the_user(harmar):
    h = harmar()
    r = h.request("POST", "/v1/auth/register", {"email": "  Alice@Example.COM ", "password": PASSWORD, "name": "Alice"})
    assert r.status == 201, r.body
    body = r.json()
    assert set(body) == {"user", "access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    user = body["user"]
    assert set(user) == {"id", "email", "name", "email_verified", "roles", "created_at"}
    assert user["email"] == "alice@example.com" and user["name"] == "Alice"
    assert user["email_verified"] is False and user["roles"] == ["user"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", user["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", user["created_at"])
    assert r.header("cache-control") == "no-store"

    me = h.get("/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status == 200
    assert me.json() == user


def test_register_refusals(harmar):
    h = harmar()
    register(h, "taken@example.com")
    problem(h.request("POST", "/v1/auth/register", {"email": "TAKEN@example.com", "password": PASSWORD}), 409, "email_taken")
    bad = problem(h.request("POST", "/v1/auth/register", {"email": "not-an-email", "password": "short"}), 422,
                  "validation_failed")
    fields = {e["field"] for e in bad["errors"]}
    assert fields == {"email", "password"}, bad
    common = problem(h.request("POST", "/v1/auth/register", {"email": "c@example.com", "password": "Password1"}), 422,
                     "validation_failed")
    assert common["errors"] == [{"field": "password", "message": "is too common"}]
    problem(h.request("POST", "/v1/auth/register", {"email": "x@example.com", "password": "y" * 257}), 422,
            "validation_failed")
    problem(h.request("POST", "/v1/auth/register", {"email": "x@example.com", "password": PASSWORD, "admin": True}),
            422, "validation_failed")
    problem(h.request("POST", "/v1/auth/register", b"{not json", headers={"Content-Type": "application/json"}), 400,
            "invalid_json")


def test_registration_can_be_closed(harmar):
    h = harmar("--set", "auth.registration_open=false")
    problem(h.request("POST", "/v1/auth/register", {"email": "a@example.com", "password": PASSWORD}), 403,
            "registration_closed")


def test_register_is_idempotent_with_an_idempotency_key(harmar):
    h = harmar()
    body = {"email": "idem@example.com", "password": PASSWORD}
    a = h.request("POST", "/v1/auth/register", body, headers={"Idempotency-Key": "reg-1"})
    b = h.request("POST", "/v1/auth/register", body, headers={"Idempotency-Key": "reg-1"})
    assert a.status == b.status == 201
    assert a.body == b.body and b.header("idempotent-replayed") == "true"


def test_login_wrong_password_and_unknown_email_look_the_same(harmar):
    h = harmar()
    register(h, "bob@example.com")
    ok = login(h, "BOB@example.com")
    assert ok.status == 200 and set(ok.json()) == {"user", "access_token", "refresh_token", "token_type", "expires_in"}
    wrong = problem(login(h, "bob@example.com", "not the password"), 401, "invalid_credentials")
    unknown = problem(login(h, "nobody@example.com", "not the password"), 401, "invalid_credentials")
    assert wrong == unknown

    # Same time too: both run one argon2id verification (medians within a loose bound).
    def timed(addr):
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            login(h, addr, "not the password either")
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    known_t, unknown_t = timed("bob@example.com"), timed("ghost@example.com")
    assert unknown_t > known_t / 3 and unknown_t < known_t * 3, (known_t, unknown_t)


# --- tokens ----------------------------------------------------------------------------------


def test_access_token_is_an_eddsa_jwt_verifiable_with_the_published_jwks(harmar):
    h = harmar()
    pair = register(h, "jwks@example.com")
    header_b64, payload_b64, sig_b64 = pair["access_token"].split(".")
    header = json.loads(b64url_decode(header_b64))
    claims = json.loads(b64url_decode(payload_b64))
    assert header["alg"] == "EdDSA" and header["typ"] == "JWT" and header["kid"]
    assert set(claims) == {"iss", "sub", "sid", "roles", "iat", "nbf", "exp", "jti"}
    assert claims["sub"] == pair["user"]["id"] and claims["roles"] == ["user"]
    assert claims["exp"] - claims["iat"] == 900

    jwks = h.get("/.well-known/jwks.json")
    assert jwks.status == 200
    keys = {k["kid"]: k for k in jwks.json()["keys"]}
    key = keys[header["kid"]]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA"
    Ed25519PublicKey.from_public_bytes(b64url_decode(key["x"])).verify(
        b64url_decode(sig_b64), f"{header_b64}.{payload_b64}".encode())  # raises if invalid


def test_forged_and_malformed_access_tokens_are_refused(harmar):
    h = harmar()
    pair = register(h, "forge@example.com")
    header_b64, payload_b64, sig_b64 = pair["access_token"].split(".")
    claims = json.loads(b64url_decode(payload_b64))
    admin_claims = b64url(json.dumps({**claims, "roles": ["admin"]}).encode())
    none_header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": json.loads(b64url_decode(header_b64))["kid"]}).encode())
    hs_header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    jwk_x = h.get("/.well-known/jwks.json").json()["keys"][0]["x"]
    import hmac, hashlib
    hs_input = f"{hs_header}.{admin_claims}"
    hs_sig = b64url(hmac.new(b64url_decode(jwk_x), hs_input.encode(), hashlib.sha256).digest())
    forged = {
        "alg none": f"{none_header}.{admin_claims}.",
        "HS256 with the public key": f"{hs_input}.{hs_sig}",
        "tampered payload": f"{header_b64}.{admin_claims}.{sig_b64}",
        "truncated": f"{header_b64}.{payload_b64}",
        "garbage": "not-a-token",
        "oversized": "a" * 5000,
    }
    for what, token in forged.items():
        r = h.get("/v1/auth/me", headers=bearer(token))
        assert r.status == 401, (what, r.body)
        assert r.json()["code"] in ("invalid_token", "unauthorized"), (what, r.body)
    problem(h.get("/v1/auth/me"), 401, "unauthorized")
    problem(h.get("/v1/auth/me", headers={"Authorization": f"Basic {pair['access_token']}"}), 401, "unauthorized")
    # Query tokens are for WebSocket upgrades only.
    problem(h.get(f"/v1/auth/me?access_token={pair['access_token']}"), 401, "unauthorized")


def test_refresh_rotates_and_a_reused_token_ends_the_session(harmar):
    h = harmar()
    first = register(h, "carol@example.com")
    r = h.request("POST", "/v1/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert r.status == 200, r.body
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"] and second["user"]["id"] == first["user"]["id"]
    assert h.get("/v1/auth/me", headers=bearer(second["access_token"])).status == 200

    problem(h.request("POST", "/v1/auth/refresh", {"refresh_token": first["refresh_token"]}), 401, "refresh_token_reused")
    # The whole session is over: its newest refresh token and its access tokens too.
    problem(h.request("POST", "/v1/auth/refresh", {"refresh_token": second["refresh_token"]}), 401, "invalid_token")
    problem(h.get("/v1/auth/me", headers=bearer(second["access_token"])), 401, "invalid_token")
    problem(h.request("POST", "/v1/auth/refresh", {"refresh_token": "hrt_made_up"}), 401, "invalid_token")
    problem(h.request("POST", "/v1/auth/refresh", {}), 422, "validation_failed")


def test_logout_ends_the_session(harmar):
    h = harmar()
    a = register(h, "dave@example.com")
    b = login(h, "dave@example.com").json()
    r = h.request("POST", "/v1/auth/logout", {}, headers=bearer(a["access_token"]))
    assert r.status == 204, r.body
    problem(h.get("/v1/auth/me", headers=bearer(a["access_token"])), 401, "invalid_token")
    problem(h.request("POST", "/v1/auth/refresh", {"refresh_token": a["refresh_token"]}), 401, "invalid_token")
    assert h.get("/v1/auth/me", headers=bearer(b["access_token"])).status == 200
    # With the refresh token alone.
    assert h.request("POST", "/v1/auth/logout", {"refresh_token": b["refresh_token"]}).status == 204
    problem(h.get("/v1/auth/me", headers=bearer(b["access_token"])), 401, "invalid_token")
    problem(h.request("POST", "/v1/auth/logout", {}), 401, "unauthorized")
    # An expired or ended access token does not stop a logout by refresh token.
    c = login(h, "dave@example.com").json()
    r = h.request("POST", "/v1/auth/logout", {"refresh_token": c["refresh_token"]}, headers=bearer(a["access_token"]))
    assert r.status == 204, r.body
    problem(h.request("POST", "/v1/auth/refresh", {"refresh_token": c["refresh_token"]}), 401, "invalid_token")
    problem(h.request("POST", "/v1/auth/logout", {}, headers=bearer(a["access_token"])), 401, "invalid_token")
    problem(h.request("POST", "/v1/auth/logout", {"refresh_token": "hrt_unknown"}), 401, "invalid_token")


def test_sessions_list_and_end_only_ones_own(harmar):
    h = harmar()
    a = register(h, "erin@example.com", headers={"User-Agent": "browser-a"})
    b = h.request("POST", "/v1/auth/login", {"email": "erin@example.com", "password": PASSWORD},
                  headers={"User-Agent": "phone-b"}).json()
    r = h.get("/v1/auth/sessions", headers=bearer(b["access_token"]))
    assert r.status == 200
    items = r.json()["items"]
    assert len(items) == 2 and r.json()["next_cursor"] is None
    assert {s["user_agent"] for s in items} == {"browser-a", "phone-b"}
    assert all(s["ip"] == "127.0.0.1" for s in items)
    current = [s for s in items if s["current"]]
    assert len(current) == 1 and current[0]["user_agent"] == "phone-b"
    other = [s for s in items if not s["current"]][0]
    for k in ("created_at", "last_used_at", "expires_at"):
        assert other[k].endswith("Z")
    page = h.get("/v1/auth/sessions?limit=1", headers=bearer(b["access_token"])).json()
    assert len(page["items"]) == 1 and page["next_cursor"]

    mallory = register(h, "mallory@example.com")
    problem(h.request("DELETE", f"/v1/auth/sessions/{other['id']}", headers=bearer(mallory["access_token"])), 404,
            "not_found")
    assert h.request("DELETE", f"/v1/auth/sessions/{other['id']}", headers=bearer(b["access_token"])).status == 204
    problem(h.get("/v1/auth/me", headers=bearer(a["access_token"])), 401, "invalid_token")
    assert len(h.get("/v1/auth/sessions", headers=bearer(b["access_token"])).json()["items"]) == 1
    problem(h.get("/v1/auth/sessions"), 401, "unauthorized")


# --- email flows (real SMTP) ------------------------------------------------------------------


def test_email_verification_link_from_the_real_mail_verifies_once(harmar):
    h = harmar(*smtp_args())
    addr = unique("verify")
    pair = register(h, addr)
    token = wait_for_link(addr, "verify-email")
    r = h.request("POST", "/v1/auth/verify-email", {"token": token})
    assert r.status == 200, r.body
    assert r.json()["user"]["email_verified"] is True
    assert h.get("/v1/auth/me", headers=bearer(pair["access_token"])).json()["email_verified"] is True
    problem(h.request("POST", "/v1/auth/verify-email", {"token": token}), 400, "invalid_token")
    problem(h.request("POST", "/v1/auth/verify-email", {"token": "made-up"}), 400, "invalid_token")
    # Already verified: no new mail.
    problem(h.request("POST", "/v1/auth/verify-email/resend", headers=bearer(pair["access_token"])), 409,
            "already_verified")


def test_verification_mail_can_be_sent_again(harmar):
    h = harmar(*smtp_args())
    addr = unique("resend")
    pair = register(h, addr)
    first = wait_for_link(addr, "verify-email")
    r = h.request("POST", "/v1/auth/verify-email/resend", headers=bearer(pair["access_token"]))
    assert r.status == 202, r.body
    second = wait_for_link(addr, "verify-email", count=2)
    assert second != first
    # The new link replaces the old one.
    problem(h.request("POST", "/v1/auth/verify-email", {"token": first}), 400, "invalid_token")
    assert h.request("POST", "/v1/auth/verify-email", {"token": second}).status == 200


def test_password_reset_through_the_mailed_link_ends_every_session(harmar):
    h = harmar(*smtp_args())
    addr = unique("reset")
    a = register(h, addr)
    b = login(h, addr).json()
    r = h.request("POST", "/v1/auth/forgot-password", {"email": addr.upper()})
    assert r.status == 202, r.body
    token = wait_for_link(addr, "reset-password")

    problem(h.request("POST", "/v1/auth/reset-password", {"token": token, "password": "password"}), 422,
            "validation_failed")
    r = h.request("POST", "/v1/auth/reset-password", {"token": token, "password": "a whole new passphrase"})
    assert r.status == 200, r.body
    assert r.json()["user"]["email"] == addr
    for pair in (a, b):
        problem(h.get("/v1/auth/me", headers=bearer(pair["access_token"])), 401, "invalid_token")
        problem(h.request("POST", "/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}), 401, "invalid_token")
    problem(login(h, addr), 401, "invalid_credentials")
    assert login(h, addr, "a whole new passphrase").status == 200
    problem(h.request("POST", "/v1/auth/reset-password", {"token": token, "password": "yet another passphrase"}),
            400, "invalid_token")


def test_forgot_password_answers_202_alike_for_unknown_addresses(harmar):
    h = harmar(*smtp_args())
    known = unique("known")
    register(h, known)
    ghost = unique("ghost")

    def timed(addr):
        t0 = time.perf_counter()
        r = h.request("POST", "/v1/auth/forgot-password", {"email": addr})
        return r, time.perf_counter() - t0

    samples_known, samples_ghost = [], []
    for _ in range(3):
        rk, tk = timed(known)
        rg, tg = timed(ghost)
        assert rk.status == rg.status == 202
        assert rk.body == rg.body
        samples_known.append(tk)
        samples_ghost.append(tg)
    # The lookup and the mail happen after the answer: both answer at once.
    assert statistics.median(samples_known) < 0.25 and statistics.median(samples_ghost) < 0.25
    wait_for_link(known, "reset-password", count=3)
    assert mails_to(ghost) == []
    problem(h.request("POST", "/v1/auth/forgot-password", {"email": "nope"}), 422, "validation_failed")


# --- brute force ------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(harmar):
    h = harmar("--set", "auth.rate_limit.per_ip=4", "--set", "auth.rate_limit.window=1m")
    for _ in range(4):
        problem(login(h, "rl@example.com", "wrong password"), 401, "invalid_credentials")
    r = login(h, "rl@example.com", "wrong password")
    problem(r, 429, "rate_limited")
    assert 1 <= int(r.header("retry-after")) <= 60
    problem(h.request("POST", "/v1/auth/register", {"email": "rl2@example.com", "password": PASSWORD}), 429,
            "rate_limited")


def test_per_account_limit_holds_across_addresses_of_clients(harmar):
    h = harmar("--set", "auth.rate_limit.per_account=3", "--set", "auth.captcha_after_failures=0")
    for _ in range(3):
        problem(login(h, "victim@example.com", "guess"), 401, "invalid_credentials")
    r = login(h, "victim@example.com", "guess")
    problem(r, 429, "rate_limited")
    assert int(r.header("retry-after")) >= 1
    # Other accounts are not affected.
    problem(login(h, "other@example.com", "guess"), 401, "invalid_credentials")


def test_captcha_required_after_failures_until_one_is_solved(harmar):
    h = harmar("--set", "auth.captcha_after_failures=2", "--set", "auth.captcha.test_answers=true")
    register(h, "frank@example.com")
    for _ in range(2):
        problem(login(h, "frank@example.com", "wrong password"), 401, "invalid_credentials")
    problem(login(h, "frank@example.com"), 401, "captcha_required")

    c = h.get("/v1/auth/captcha")
    assert c.status == 200, c.body
    captcha = c.json()
    assert captcha["image"].startswith("data:image/png;base64,")
    answer = c.header("x-captcha-answer")
    assert answer
    problem(login(h, "frank@example.com", captcha_id=captcha["captcha_id"], captcha_answer=answer + "X"), 401,
            "captcha_required")
    # A captcha is single use: the same id with the right answer is now refused too.
    problem(login(h, "frank@example.com", captcha_id=captcha["captcha_id"], captcha_answer=answer), 401,
            "captcha_required")
    c2 = h.get("/v1/auth/captcha")
    r = login(h, "frank@example.com", captcha_id=c2.json()["captcha_id"], captcha_answer=c2.header("x-captcha-answer"))
    assert r.status == 200, r.body
    assert login(h, "frank@example.com").status == 200  # success cleared the failures


def test_captcha_answers_are_not_exposed_by_default(harmar):
    h = harmar()
    c = h.get("/v1/auth/captcha")
    assert c.status == 200
    assert c.header("x-captcha-answer") is None


# --- API keys ---------------------------------------------------------------------------------


def test_api_keys_are_shown_once_usable_as_bearer_and_revocable(harmar):
    h = harmar()
    owner = register(h, "grace@example.com")
    auth = bearer(owner["access_token"])
    r = h.request("POST", "/v1/api-keys", {"name": "ci"}, headers=auth)
    assert r.status == 201, r.body
    key = r.json()
    assert key["key"].startswith("hak_") and len(key["key"]) == 47
    assert key["name"] == "ci" and key["permissions"] == [] and key["last_used_at"] is None
    assert key["prefix"] == key["key"][:12]
    listed = h.get("/v1/api-keys", headers=auth).json()
    assert [k["id"] for k in listed["items"]] == [key["id"]]
    assert "key" not in listed["items"][0]

    me = h.get("/v1/auth/me", headers=bearer(key["key"]))
    assert me.status == 200 and me.json()["id"] == owner["user"]["id"]
    assert h.get("/v1/api-keys", headers=auth).json()["items"][0]["last_used_at"] is not None
    # A key cannot mint keys or see sessions.
    problem(h.request("POST", "/v1/api-keys", {"name": "child"}, headers=bearer(key["key"])), 403, "forbidden")
    problem(h.get("/v1/auth/sessions", headers=bearer(key["key"])), 403, "forbidden")

    other = register(h, "heidi@example.com")
    problem(h.request("DELETE", f"/v1/api-keys/{key['id']}", headers=bearer(other["access_token"])), 404, "not_found")
    assert h.request("DELETE", f"/v1/api-keys/{key['id']}", headers=auth).status == 204
    problem(h.get("/v1/auth/me", headers=bearer(key["key"])), 401, "invalid_token")
    assert h.get("/v1/api-keys", headers=auth).json()["items"] == []
    problem(h.request("DELETE", f"/v1/api-keys/{key['id']}", headers=auth), 404, "not_found")
    problem(h.get("/v1/auth/me", headers=bearer("hak_" + "A" * 43)), 401, "invalid_token")


def test_api_key_permissions_must_be_held_by_the_creator(harmar):
    h = harmar()
    user = register(h, "ivan@example.com")
    problem(h.request("POST", "/v1/api-keys", {"name": "x", "permissions": ["roles.manage"]},
                      headers=bearer(user["access_token"])), 403, "forbidden")
    problem(h.request("POST", "/v1/api-keys", {"name": "x", "permissions": ["*"]}, headers=bearer(user["access_token"])),
            403, "forbidden")
    problem(h.request("POST", "/v1/api-keys", {"name": ""}, headers=bearer(user["access_token"])), 422,
            "validation_failed")
    problem(h.request("POST", "/v1/api-keys", {"name": "x", "expires_at": "2001-01-01T00:00:00Z"},
                      headers=bearer(user["access_token"])), 422, "validation_failed")
    problem(h.request("POST", "/v1/api-keys", {"name": "x"}), 401, "unauthorized")


# --- roles, admin, audit ----------------------------------------------------------------------


def create_admin(h, email_addr="root@example.com", password="root passphrase 1"):
    out = subprocess.run([harmar_bin(), "admin", "create-user", "--data-dir", str(h.dir / "data"), *h.db_args,
                          "--email", email_addr,
                          "--password", password, "--role", "admin", "--log-level", "warn"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    user = json.loads(out.stdout)
    assert user["roles"] == ["admin"] and user["email_verified"] is True
    r = login(h, email_addr, password)
    assert r.status == 200, r.body
    return r.json()


def test_admin_cli_custom_roles_and_permission_checks(harmar):
    h = harmar()
    admin = create_admin(h)
    a = bearer(admin["access_token"])
    user = register(h, "judy@example.com")
    u = bearer(user["access_token"])

    problem(h.get("/v1/roles", headers=u), 403, "forbidden")
    problem(h.get("/v1/auth/audit", headers=u), 403, "forbidden")
    roles = h.get("/v1/roles", headers=a).json()["items"]
    assert {r["name"] for r in roles} == {"admin", "user"} and all(r["builtin"] for r in roles)

    r = h.request("POST", "/v1/roles", {"name": "auditor", "description": "reads the audit log",
                                        "permissions": ["audit.read"]}, headers=a)
    assert r.status == 201, r.body
    assert r.json()["permissions"] == ["audit.read"] and r.json()["builtin"] is False
    problem(h.request("POST", "/v1/roles", {"name": "auditor"}, headers=a), 409, "role_exists")
    problem(h.request("POST", "/v1/roles", {"name": "Bad Name"}, headers=a), 422, "validation_failed")
    problem(h.request("POST", "/v1/roles", {"name": "x", "permissions": ["UPPER"]}, headers=a), 422, "validation_failed")
    problem(h.request("DELETE", "/v1/roles/admin", headers=a), 409, "role_builtin")
    problem(h.request("PUT", "/v1/roles/admin", {"permissions": []}, headers=a), 409, "role_builtin")
    problem(h.get("/v1/roles/nope", headers=a), 404, "not_found")

    r = h.request("PUT", f"/v1/users/{user['user']['id']}/roles", {"roles": ["user", "auditor"]}, headers=a)
    assert r.status == 200, r.body
    assert r.json()["user"]["roles"] == ["auditor", "user"]
    problem(h.request("PUT", f"/v1/users/{user['user']['id']}/roles", {"roles": ["ghost"]}, headers=a), 422,
            "validation_failed")
    problem(h.request("PUT", "/v1/users/no-such-user/roles", {"roles": ["user"]}, headers=a), 404, "not_found")

    # New roles reach the access token at the next refresh.
    fresh = h.request("POST", "/v1/auth/refresh", {"refresh_token": user["refresh_token"]}).json()
    assert fresh["user"]["roles"] == ["auditor", "user"]
    audit = h.get(f"/v1/auth/audit?user_id={user['user']['id']}", headers=bearer(fresh["access_token"]))
    assert audit.status == 200, audit.body
    events = [e["event"] for e in audit.json()["items"]]
    assert {"register", "role.assigned", "refresh"} <= set(events), events
    entry = audit.json()["items"][0]
    assert set(entry) == {"id", "at", "user_id", "ip", "user_agent", "event", "detail"}

    # A role's permissions can change; removing it takes them away at the next token.
    r = h.request("PUT", "/v1/roles/auditor", {"permissions": []}, headers=a)
    assert r.status == 200 and r.json()["permissions"] == []
    problem(h.get("/v1/auth/audit", headers=bearer(fresh["access_token"])), 403, "forbidden")
    assert h.request("DELETE", "/v1/roles/auditor", headers=a).status == 204
    problem(h.get("/v1/roles/auditor", headers=a), 404, "not_found")


def test_every_auth_event_lands_in_the_audit_log(harmar):
    h = harmar()
    admin = create_admin(h)
    a = bearer(admin["access_token"])
    u = register(h, "kate@example.com")
    login(h, "kate@example.com", "wrong password")
    r2 = h.request("POST", "/v1/auth/refresh", {"refresh_token": u["refresh_token"]}).json()
    h.request("POST", "/v1/auth/refresh", {"refresh_token": u["refresh_token"]})  # reuse
    fresh = login(h, "kate@example.com").json()
    key = h.request("POST", "/v1/api-keys", {"name": "k"}, headers=bearer(fresh["access_token"])).json()
    h.request("DELETE", f"/v1/api-keys/{key['id']}", headers=bearer(fresh["access_token"]))
    h.request("POST", "/v1/auth/logout", {}, headers=bearer(fresh["access_token"]))
    assert r2["user"]["id"] == u["user"]["id"]
    items = h.get(f"/v1/auth/audit?user_id={u['user']['id']}&limit=200", headers=a).json()["items"]
    events = {e["event"] for e in items}
    assert {"register", "login.failed", "refresh", "refresh.reuse", "login.ok", "api_key.created", "api_key.revoked",
            "logout"} <= events, events
    assert all(e["ip"] == "127.0.0.1" for e in items)
    failed = [e for e in items if e["event"] == "login.failed"][0]
    assert failed["detail"] == {"email": "kate@example.com"}
    assert PASSWORD not in json.dumps(items) and "wrong password" not in json.dumps(items)
    only = h.get("/v1/auth/audit?event=logout", headers=a).json()["items"]
    assert [e["event"] for e in only] == ["logout"]


def test_rotated_keys_keep_old_tokens_valid_and_stay_published(harmar, tmp):
    h = harmar()
    old = register(h, "leo@example.com")
    old_kid = json.loads(b64url_decode(old["access_token"].split(".")[0]))["kid"]
    h.stop()
    out = subprocess.run([harmar_bin(), "auth", "rotate-keys", "--data-dir", str(h.dir / "data"), *h.db_args,
                          "--log-level", "warn"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    h.start()
    new = login(h, "leo@example.com").json()
    new_kid = json.loads(b64url_decode(new["access_token"].split(".")[0]))["kid"]
    assert new_kid != old_kid and new_kid in out.stdout
    kids = {k["kid"] for k in h.get("/.well-known/jwks.json").json()["keys"]}
    assert kids == {old_kid, new_kid}
    assert h.get("/v1/auth/me", headers=bearer(old["access_token"])).status == 200
    assert h.get("/v1/auth/me", headers=bearer(new["access_token"])).status == 200


def test_the_server_secret_is_kept_private_and_must_match(harmar, tmp):
    h = harmar()
    pair = register(h, "mia@example.com")
    key_file = h.dir / "data" / "auth.key"
    assert key_file.exists() and (key_file.stat().st_mode & 0o777) == 0o600
    h.stop()
    # Same data, another secret: the sealed signing key cannot be opened, and the server says so.
    other = base64.b64encode(os.urandom(32)).decode()
    h.env["HARMAR_AUTH_SECRET"] = other
    h.start()
    r = h.get("/v1/auth/me", headers=bearer(pair["access_token"]))
    assert r.status >= 500 or r.status == 401
    h.stop()
    del h.env["HARMAR_AUTH_SECRET"]
    h.start()
    assert h.get("/v1/auth/me", headers=bearer(pair["access_token"])).status == 200


def test_every_auth_endpoint_is_in_the_openapi_document(harmar):
    h = harmar()
    paths = h.get("/v1/openapi.json").json()["paths"]
    for path, methods in {
        "/v1/auth/register": ["post"], "/v1/auth/login": ["post"], "/v1/auth/refresh": ["post"],
        "/v1/auth/logout": ["post"], "/v1/auth/verify-email": ["post"], "/v1/auth/verify-email/resend": ["post"],
        "/v1/auth/forgot-password": ["post"], "/v1/auth/reset-password": ["post"], "/v1/auth/me": ["get"],
        "/v1/auth/sessions": ["get"], "/v1/auth/sessions/{id}": ["delete"], "/v1/auth/audit": ["get"],
        "/.well-known/jwks.json": ["get"], "/v1/api-keys": ["get", "post"], "/v1/api-keys/{id}": ["delete"],
        "/v1/roles": ["get", "post"], "/v1/roles/{name}": ["get", "put", "delete"], "/v1/users/{id}/roles": ["put"],
    }.items():
        assert path in paths, path
        for m in methods:
            assert m in paths[path], (path, m)


def fresh_pg_url():
    """A new, empty PostgreSQL schema, as a URL whose search_path is that schema."""
    base = require_env("HARMAR_TEST_PG_URL")
    schema = "auth_" + os.urandom(8).hex()
    subprocess.run(["psql", base, "-q", "-c", f"CREATE SCHEMA {schema}"], check=True, capture_output=True)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def test_two_nodes_share_accounts_keys_and_revocations(harmar):
    env = {"HARMAR_AUTH_SECRET": base64.b64encode(os.urandom(32)).decode()}
    args = ["--db", fresh_pg_url(), "--redis", require_env("HARMAR_TEST_REDIS_URL")]
    a = harmar(*args, env=env)
    b = harmar(*args, env=env)
    pair = register(a, "nina@example.com")
    # b verifies what a signed (the key is in the shared database), and remembers it verified.
    assert b.get("/v1/auth/me", headers=bearer(pair["access_token"])).status == 200
    assert b.get("/v1/auth/me", headers=bearer(pair["access_token"])).status == 200
    # A logout on a reaches b through Redis pub/sub, long before b's periodic reload (30 s).
    assert a.request("POST", "/v1/auth/logout", {}, headers=bearer(pair["access_token"])).status == 204
    wait_until(lambda: b.get("/v1/auth/me", headers=bearer(pair["access_token"])).status == 401, timeout=5,
               what="the revocation to reach the other node")
    # Refresh tokens and failures are shared too.
    second = login(b, "nina@example.com").json()
    r = a.request("POST", "/v1/auth/refresh", {"refresh_token": second["refresh_token"]})
    assert r.status == 200, r.body
    problem(b.request("POST", "/v1/auth/refresh", {"refresh_token": second["refresh_token"]}), 401,
            "refresh_token_reused")


def test_auth_keys_are_in_the_configuration_schema():
    out = subprocess.run([harmar_bin(), "config", "schema"], capture_output=True, text=True)
    assert out.returncode == 0
    for key in ("auth.access_ttl", "auth.refresh_idle_timeout", "auth.refresh_lifetime", "auth.secret",
                "auth.captcha_after_failures", "auth.rate_limit.per_ip", "auth.password.memlimit", "auth.issuer"):
        assert key in out.stdout, key
