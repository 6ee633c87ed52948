"""Third-party sign-in against the real binary.

OpenID Connect: against a REAL provider, the npm `oidc-provider` started by
scripts/test-services.sh (HARMAR_TEST_OIDC_ISSUER; see tests/services/oidc_provider.js). Each test
registers its own client there (dynamic registration) with the callback URL of the harmar it
starts, then drives the whole flow as a browser would: authorize → provider login → callback →
token pair → /v1/auth/me.

GitHub and WeChat cannot be reached from here (no network), so they are tested against small
FAKES of their endpoints written below (FakeGitHub, FakeWeChat). The fakes follow the documented
shapes of the real APIs, but they are fakes: they prove our side of the protocol, not that the
real services answer the same way today.
"""
import base64
import hashlib
import json
import os
import secrets
import threading
import urllib.parse
import urllib.request

import pytest

from harness import require_env
from signin_support import Browser, JsonHandler, ThreadedServer, start_configured


def issuer():
    return require_env("HARMAR_TEST_OIDC_ISSUER")


def unique(prefix):
    return f"{prefix}-{secrets.token_hex(4)}"


def register_client(redirect_uris, alg="RS256"):
    body = {"redirect_uris": redirect_uris, "response_types": ["code"], "grant_types": ["authorization_code"],
            "id_token_signed_response_alg": alg, "token_endpoint_auth_method": "client_secret_basic"}
    req = urllib.request.Request(issuer() + "/reg", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def start_with_oidc(harmar, tmp, alg="RS256", name="idp", extra=None, provider_extra=None):
    """A harmar with one OIDC provider `name`, registered at the real provider for its callback."""
    from signin_support import free_port
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    client = register_client([f"{public}/v1/auth/oauth/{name}/callback"], alg)
    provider = {"type": "oidc", "issuer": issuer(), "client_id": client["client_id"],
                "client_secret": client["client_secret"], **(provider_extra or {})}
    config = {"public_url": public, "auth": {"oauth": {name: provider}}}
    for k, v in (extra or {}).items():
        config.setdefault("auth", {})[k] = v
    path = tmp / f"oidc-{port}.yaml"
    path.write_text(json.dumps(config))
    return harmar("--config", str(path), "--set", f"listen=127.0.0.1:{port}")


def authorize(browser, h, provider="idp", redirect_uri=None):
    url = f"{h.url}/v1/auth/oauth/{provider}/authorize"
    if redirect_uri:
        url += "?" + urllib.parse.urlencode({"redirect_uri": redirect_uri})
    r = browser.get(url)
    assert r.status == 302, (r.status, r.body)
    assert r.header("Cache-Control") == "no-store"
    return r.header("Location")


def provider_login(browser, location, login):
    """Drives the provider: its /auth redirects to our interaction, we log `login` in, and it
    redirects back to harmar's callback. Returns that callback URL."""
    r = browser.get(location)
    assert r.status in (302, 303), (r.status, r.body)
    interaction = urllib.parse.urljoin(issuer(), r.header("Location"))
    details = browser.get(interaction)
    assert details.status == 200, details.body
    assert details.json()["prompt"] == "login"
    r = browser.post(interaction + "/login", {"login": login})
    assert r.status == 303, (r.status, r.body)
    r = browser.get(urllib.parse.urljoin(issuer(), r.header("Location")))
    assert r.status in (302, 303), (r.status, r.body)
    return r.header("Location")


def me(h, access_token):
    r = h.get("/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"})
    assert r.status == 200, r.body
    return r.json()


def problem(reply, status, code):
    assert reply.status == status, (reply.status, reply.body)
    body = json.loads(reply.body)
    assert body["code"] == code, body
    return body


def full_login(browser, h, login, provider="idp"):
    location = authorize(browser, h, provider)
    callback = provider_login(browser, location, login)
    return browser.get(callback)


# ---------------------------------------------------------------- OpenID Connect, real provider

@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_oidc_sign_in_end_to_end_gives_a_token_pair_that_works(harmar, tmp, alg):
    h = start_with_oidc(harmar, tmp, alg)
    browser = Browser()
    location = authorize(browser, h)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
    assert location.startswith(issuer() + "/auth?")
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
    assert q["response_type"] == ["code"] and "openid" in q["scope"][0]
    assert q["nonce"][0] and len(q["state"][0]) >= 43
    assert q["redirect_uri"] == [f"{h.url}/v1/auth/oauth/idp/callback"]
    assert "code_verifier" not in location

    login = unique("alice")
    callback = provider_login(browser, location, login)
    assert callback.startswith(f"{h.url}/v1/auth/oauth/idp/callback?")
    r = browser.get(callback)
    assert r.status == 200, r.body
    assert r.header("Cache-Control") == "no-store"
    pair = r.json()
    assert pair["token_type"] == "Bearer" and pair["expires_in"] > 0 and pair["refresh_token"]
    assert pair["user"]["email"] == f"{login}@example.test"
    who = me(h, pair["access_token"])
    assert who["email"] == f"{login}@example.test"
    assert who["email_verified"] is True
    assert who["id"] == pair["user"]["id"]

    # Signing in again with the same identity reaches the same account.
    again = full_login(Browser(), h, login)
    assert again.status == 200, again.body
    assert again.json()["user"]["id"] == pair["user"]["id"]


def test_oidc_links_an_existing_account_by_its_verified_email(harmar, tmp):
    h = start_with_oidc(harmar, tmp)
    login = unique("bob")
    reg = h.request("POST", "/v1/auth/register",
                    {"email": f"{login}@example.test", "password": "correct horse battery", "name": "Bob"})
    assert reg.status == 201, reg.body
    r = full_login(Browser(), h, login)
    assert r.status == 200, r.body
    assert r.json()["user"]["id"] == reg.json()["user"]["id"]
    assert me(h, r.json()["access_token"])["email_verified"] is True
    # Whoever registered the address without proving it (maybe not its owner) is locked out:
    # the password chosen then no longer works and the sessions made with it are over.
    again = h.request("POST", "/v1/auth/login", {"email": f"{login}@example.test", "password": "correct horse battery"})
    assert again.status == 401, again.body
    old = h.request("GET", "/v1/auth/me", headers={"Authorization": f"Bearer {reg.json()['access_token']}"})
    assert old.status == 401, old.body
    stale = h.request("POST", "/v1/auth/refresh", {"refresh_token": reg.json()["refresh_token"]})
    assert stale.status == 401, stale.body


def test_oidc_account_with_an_unverified_email_gets_its_own_account(harmar, tmp):
    h = start_with_oidc(harmar, tmp)
    login = unique("unverified-carol")
    reg = h.request("POST", "/v1/auth/register",
                    {"email": f"{login}@example.test", "password": "correct horse battery", "name": "Carol"})
    assert reg.status == 201, reg.body
    r = full_login(Browser(), h, login)
    assert r.status == 200, r.body
    # The provider does not vouch for the address: it must not open the account that has it.
    assert r.json()["user"]["id"] != reg.json()["user"]["id"]
    assert r.json()["user"]["email"] in ("", None)


def test_oidc_can_end_at_an_allowed_app_url_with_the_tokens_in_the_fragment(harmar, tmp):
    app = "http://app.example.test/signed-in"
    h = start_with_oidc(harmar, tmp, extra={"oauth_redirect_urls": [app]})
    browser = Browser()
    location = authorize(browser, h, redirect_uri=app)
    r = browser.get(provider_login(browser, location, unique("dave")))
    assert r.status == 302, r.body
    target = r.header("Location")
    assert target.startswith(app + "#")
    fragment = urllib.parse.parse_qs(target.split("#", 1)[1])
    assert fragment["token_type"] == ["Bearer"]
    me(h, fragment["access_token"][0])
    # An app URL that is not allow-listed is refused before anything starts.
    bad = Browser().get(f"{h.url}/v1/auth/oauth/idp/authorize?redirect_uri=" +
                        urllib.parse.quote("http://evil.example.test/steal", safe=""))
    problem(bad, 422, "validation_failed")


def test_oidc_refuses_unknown_and_replayed_state_and_another_browser(harmar, tmp):
    h = start_with_oidc(harmar, tmp)
    problem(Browser().get(f"{h.url}/v1/auth/oauth/idp/callback?code=x&state=never-issued"), 400, "invalid_state")
    problem(Browser().get(f"{h.url}/v1/auth/oauth/idp/callback?code=x"), 400, "invalid_state")

    browser = Browser()
    callback = provider_login(browser, authorize(browser, h), unique("erin"))
    # The callback opened in a browser that did not start the flow (login CSRF) is refused ...
    problem(Browser().get(callback), 400, "invalid_state")
    # ... and that spent the state: even the right browser cannot use it now.
    problem(browser.get(callback), 400, "invalid_state")

    browser = Browser()
    callback = provider_login(browser, authorize(browser, h), unique("erin"))
    assert browser.get(callback).status == 200
    problem(browser.get(callback), 400, "invalid_state")  # replayed


def test_oidc_refuses_a_callback_that_names_another_issuer(harmar, tmp):
    h = start_with_oidc(harmar, tmp)
    browser = Browser()
    callback = provider_login(browser, authorize(browser, h), unique("frank"))
    parts = urllib.parse.urlparse(callback)
    q = dict(urllib.parse.parse_qsl(parts.query))
    assert q["iss"] == issuer()
    q["iss"] = "http://127.0.0.1:9/other-issuer"
    problem(browser.get(parts._replace(query=urllib.parse.urlencode(q)).geturl()), 400, "invalid_state")


def test_oidc_user_refusal_at_the_provider_is_oauth_denied(harmar, tmp):
    h = start_with_oidc(harmar, tmp)
    browser = Browser()
    r = browser.get(authorize(browser, h))
    interaction = urllib.parse.urljoin(issuer(), r.header("Location"))
    r = browser.post(interaction + "/abort", {})
    r = browser.get(urllib.parse.urljoin(issuer(), r.header("Location")))
    callback = r.header("Location")
    assert "error=access_denied" in callback
    problem(browser.get(callback), 401, "oauth_denied")


def test_unknown_provider_is_404(harmar, tmp):
    h = start_with_oidc(harmar, tmp)
    problem(Browser().get(f"{h.url}/v1/auth/oauth/nope/authorize"), 404, "not_found")
    problem(Browser().get(f"{h.url}/v1/auth/oauth/nope/callback?state=x&code=y"), 404, "not_found")


# A man in the middle of the token endpoint: harmar's token_url points here, this forwards to the
# real provider and changes the id_token in the answer. With `resign` it signs the changed token
# with the provider's own key (HARMAR_TEST_OIDC_KEYS), so only harmar's claim checks can catch it.

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def provider_key(kid):
    with open(require_env("HARMAR_TEST_OIDC_KEYS")) as f:
        for k in json.load(f)["keys"]:
            if k["kid"] == kid:
                return k
    raise AssertionError(f"no provider key {kid}")


def sign_like_the_provider(header, claims):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    jwk = provider_key(header["kid"])
    num = lambda name: int.from_bytes(b64url_decode(jwk[name]), "big")  # noqa: E731
    signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    if jwk["kty"] == "RSA":
        pub = rsa.RSAPublicNumbers(num("e"), num("n"))
        key = rsa.RSAPrivateNumbers(num("p"), num("q"), num("d"), num("dp"), num("dq"), num("qi"), pub).private_key()
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        pub = ec.EllipticCurvePublicNumbers(num("x"), num("y"), ec.SECP256R1())
        key = ec.EllipticCurvePrivateNumbers(num("d"), pub).private_key()
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input.decode() + "." + b64url(sig)


class TokenProxy(JsonHandler):
    mode = "pass"  # pass | tamper | nonce | resign
    seen = []

    def do_POST(self):
        body = self.body()
        req = urllib.request.Request(issuer() + "/token", data=body, headers={
            "Content-Type": self.headers["Content-Type"], "Authorization": self.headers.get("Authorization", "")})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, answer = r.status, json.load(r)
        except urllib.error.HTTPError as e:
            status, answer = e.code, json.load(e)
        if status == 200 and "id_token" in answer:
            head_b64, payload_b64, sig = answer["id_token"].split(".")
            header = json.loads(b64url_decode(head_b64))
            claims = json.loads(b64url_decode(payload_b64))
            TokenProxy.seen.append(claims)
            if self.mode == "tamper":  # a changed payload under the original signature
                claims["sub"] = "someone-else"
                answer["id_token"] = head_b64 + "." + b64url(json.dumps(claims).encode()) + "." + sig
            elif self.mode == "nonce":
                claims["nonce"] = "nonce-of-another-sign-in"
                answer["id_token"] = sign_like_the_provider(header, claims)
            elif self.mode == "resign":
                answer["id_token"] = sign_like_the_provider(header, claims)
        self.send_json(status, answer)


@pytest.mark.parametrize("mode,ok", [("resign", True), ("tamper", False), ("nonce", False)])
def test_oidc_refuses_a_tampered_id_token_and_a_wrong_nonce(harmar, tmp, mode, ok):
    TokenProxy.mode = mode
    TokenProxy.seen = []
    with ThreadedServer(TokenProxy) as proxy:
        h = start_with_oidc(harmar, tmp, provider_extra={"token_url": proxy.url + "/token"})
        r = full_login(Browser(), h, unique("mallory"))
        assert TokenProxy.seen, "the token request did not go through the proxy"
        if ok:
            # Control: re-signing alone (with the provider's key) is accepted, so the refusals
            # below are about the claims, not about the proxy.
            assert r.status == 200, r.body
        else:
            body = problem(r, 401, "invalid_id_token")
            assert ("nonce" in body["detail"]) == (mode == "nonce"), body
            assert ("signature" in body["detail"]) == (mode == "tamper"), body


# ---------------------------------------------------------------- GitHub (FAKE: github.com is unreachable here)

class FakeGitHub(JsonHandler):
    """A FAKE of github.com's OAuth endpoints and api.github.com's /user and /user/emails, because
    the real GitHub cannot be reached from the test machine. It checks what GitHub checks: client
    id and secret, the redirect_uri, and the PKCE verifier against the challenge."""
    client_id, client_secret = "gh-client", "gh-secret"
    codes = {}  # code → (challenge, redirect_uri)
    emails = [{"email": "octo@example.test", "primary": True, "verified": True}]
    user = {"id": 583231, "login": "octocat", "name": "The Octocat"}

    def do_GET(self):
        path = urllib.parse.urlparse(self.path).path
        q = self.query()
        if path == "/login/oauth/authorize":
            assert q["client_id"] == self.client_id and q["code_challenge_method"] == "S256"
            code = secrets.token_hex(10)
            FakeGitHub.codes[code] = (q["code_challenge"], q["redirect_uri"])
            # The user approves at once.
            return self.redirect(q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]}))
        if self.headers.get("Authorization") != "Bearer gho_faketoken":
            return self.send_json(401, {"message": "Bad credentials"})
        if path == "/user":
            return self.send_json(200, self.user)
        if path == "/user/emails":
            return self.send_json(200, self.emails)
        self.send_json(404, {"message": "Not Found"})

    def do_POST(self):
        f = {k: v[0] for k, v in urllib.parse.parse_qs(self.body().decode()).items()}
        code = FakeGitHub.codes.pop(f.get("code"), None)
        if (f.get("client_id"), f.get("client_secret")) != (self.client_id, self.client_secret):
            return self.send_json(200, {"error": "incorrect_client_credentials"})
        if code is None or code[1] != f.get("redirect_uri"):
            return self.send_json(200, {"error": "bad_verification_code", "error_description": "The code is wrong"})
        challenge = b64url(hashlib.sha256(f.get("code_verifier", "").encode()).digest())
        if challenge != code[0]:
            return self.send_json(200, {"error": "bad_verification_code", "error_description": "PKCE failed"})
        self.send_json(200, {"access_token": "gho_faketoken", "token_type": "bearer", "scope": "read:user,user:email"})


def start_with_fake(harmar, tmp, name, provider):
    return start_configured(harmar, tmp, {"auth": {"oauth": {name: provider}}})


def github_provider(fake):
    return {"type": "github", "client_id": FakeGitHub.client_id, "client_secret": FakeGitHub.client_secret,
            "authorize_url": fake.url + "/login/oauth/authorize", "token_url": fake.url + "/login/oauth/access_token",
            "userinfo_url": fake.url + "/user", "emails_url": fake.url + "/user/emails"}


def fake_flow(browser, h, provider):
    location = authorize(browser, h, provider)
    r = browser.get(location)  # the fake provider approves and redirects back
    assert r.status == 302, r.body
    return browser.get(r.header("Location"))


def test_github_sign_in_with_pkce_against_a_fake_github(harmar, tmp):
    FakeGitHub.emails = [{"email": "old@example.test", "primary": False, "verified": True},
                         {"email": "octo@example.test", "primary": True, "verified": True}]
    with ThreadedServer(FakeGitHub) as fake:
        h = start_with_fake(harmar, tmp, "github", github_provider(fake))
        browser = Browser()
        location = authorize(browser, h, "github")
        q = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
        assert q["scope"] == ["read:user user:email"] and q["code_challenge_method"] == ["S256"]
        r = fake_flow(browser, h, "github")
        assert r.status == 200, r.body
        pair = r.json()
        who = me(h, pair["access_token"])
        assert who["email"] == "octo@example.test" and who["email_verified"] is True
        assert who["name"] == "The Octocat"
        again = fake_flow(Browser(), h, "github")
        assert again.json()["user"]["id"] == pair["user"]["id"]


def test_github_without_a_verified_email_gets_an_account_without_email(harmar, tmp):
    FakeGitHub.emails = [{"email": "unconfirmed@example.test", "primary": True, "verified": False}]
    with ThreadedServer(FakeGitHub) as fake:
        h = start_with_fake(harmar, tmp, "github", github_provider(fake))
        r = fake_flow(Browser(), h, "github")
        assert r.status == 200, r.body
        assert r.json()["user"]["email"] in ("", None)


def test_github_refusing_the_code_is_oauth_denied(harmar, tmp):
    with ThreadedServer(FakeGitHub) as fake:
        provider = github_provider(fake)
        provider["client_secret"] = "wrong-secret"
        h = start_with_fake(harmar, tmp, "github", provider)
        problem(fake_flow(Browser(), h, "github"), 401, "oauth_denied")


# ---------------------------------------------------------------- WeChat (FAKE: WeChat is unreachable here)

class FakeWeChat(JsonHandler):
    """A FAKE of WeChat's open platform (qrconnect, sns/oauth2/access_token, sns/userinfo), because
    the real service cannot be reached from the test machine. Like WeChat it uses appid/secret
    query parameters, has no PKCE, and reports errors as {errcode, errmsg} with status 200."""
    appid, secret = "wx-app", "wx-secret"
    codes = set()
    unionid = "o6_bmasdasdsad6_2sgVt7hMZOPfL"

    def do_GET(self):
        path = urllib.parse.urlparse(self.path).path
        q = self.query()
        if path == "/connect/qrconnect":
            assert q["appid"] == self.appid and q["response_type"] == "code" and "code_challenge" not in q
            code = secrets.token_hex(8)
            FakeWeChat.codes.add(code)
            return self.redirect(q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]}))
        if path == "/sns/oauth2/access_token":
            if (q.get("appid"), q.get("secret")) != (self.appid, self.secret):
                return self.send_json(200, {"errcode": 40125, "errmsg": "invalid appsecret"})
            if q.get("grant_type") != "authorization_code" or q.get("code") not in FakeWeChat.codes:
                return self.send_json(200, {"errcode": 40029, "errmsg": "invalid code"})
            FakeWeChat.codes.discard(q["code"])
            return self.send_json(200, {"access_token": "wx-access", "expires_in": 7200, "refresh_token": "wx-refresh",
                                        "openid": "oLVPpjqs9BhvzwPj5A-vTYAX3GLc", "scope": "snsapi_login",
                                        "unionid": self.unionid})
        if path == "/sns/userinfo":
            if q.get("access_token") != "wx-access":
                return self.send_json(200, {"errcode": 40001, "errmsg": "invalid credential"})
            return self.send_json(200, {"openid": q["openid"], "nickname": "微信用户", "unionid": self.unionid})
        self.send_json(404, {"errcode": -1, "errmsg": "no such API"})


def wechat_provider(fake, secret=FakeWeChat.secret):
    return {"type": "wechat", "client_id": FakeWeChat.appid, "client_secret": secret,
            "authorize_url": fake.url + "/connect/qrconnect", "token_url": fake.url + "/sns/oauth2/access_token",
            "userinfo_url": fake.url + "/sns/userinfo"}


def test_wechat_sign_in_against_a_fake_wechat(harmar, tmp):
    FakeWeChat.unionid = unique("union")
    with ThreadedServer(FakeWeChat) as fake:
        h = start_with_fake(harmar, tmp, "wechat", wechat_provider(fake))
        browser = Browser()
        location = authorize(browser, h, "wechat")
        assert location.endswith("#wechat_redirect")
        q = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
        assert list(q)[:5] == ["appid", "redirect_uri", "response_type", "scope", "state"]
        r = browser.get(location.split("#")[0])
        r = browser.get(r.header("Location"))
        assert r.status == 200, r.body
        pair = r.json()
        assert pair["user"]["email"] in ("", None) and pair["user"]["name"] == "微信用户"
        me(h, pair["access_token"])
        b2 = Browser()
        r2 = b2.get(authorize(b2, h, "wechat").split("#")[0])
        r2 = b2.get(r2.header("Location"))
        assert r2.json()["user"]["id"] == pair["user"]["id"], "the unionid identifies the same account"


def test_wechat_errcode_is_oauth_denied(harmar, tmp):
    with ThreadedServer(FakeWeChat) as fake:
        h = start_with_fake(harmar, tmp, "wechat", wechat_provider(fake, secret="wrong"))
        browser = Browser()
        r = browser.get(authorize(browser, h, "wechat").split("#")[0])
        body = problem(browser.get(r.header("Location")), 401, "oauth_denied")
        assert "40125" in body["detail"]


def test_a_misconfigured_provider_stops_the_server_with_the_key_named(tmp):
    import subprocess
    from harness import harmar_bin
    cfg = tmp / "bad.yaml"
    cfg.write_text(json.dumps({"auth": {"oauth": {"corp": {"type": "oidc", "client_id": "x"}}}}))
    out = subprocess.run([harmar_bin(), "serve", "--config", str(cfg), "--listen", "127.0.0.1:0",
                          "--data-dir", str(tmp / "data")], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "auth.oauth.corp.issuer" in out.stdout + out.stderr
