"""Image captchas against the real binary: the image, its limits, and the login it unlocks."""
import base64
import struct

from signin_support import start_configured

PASSWORD = "correct horse battery staple"


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def captcha(h):
    r = h.get("/v1/auth/captcha")
    assert r.status == 200, r.body
    assert r.header("Cache-Control") == "no-store"
    return r


def test_a_captcha_is_a_png_data_url_and_does_not_give_its_answer(harmar, tmp):
    h = start_configured(harmar, tmp, {})
    r = captcha(h)
    body = r.json()
    assert set(body) == {"captcha_id", "image", "expires_in"}
    assert body["expires_in"] == 300
    prefix = "data:image/png;base64,"
    assert body["image"].startswith(prefix)
    png = base64.b64decode(body["image"][len(prefix):], validate=True)
    assert png_size(png) == (200, 70)
    assert r.header("X-Captcha-Answer") is None, "answers are only for tests that turn them on"
    other = captcha(h).json()
    assert other["captcha_id"] != body["captcha_id"] and other["image"] != body["image"]


def test_handing_out_captchas_is_limited_per_client(harmar, tmp):
    h = start_configured(harmar, tmp, {"auth": {"captcha": {"per_ip": 3}}})
    for _ in range(3):
        captcha(h)
    r = h.get("/v1/auth/captcha")
    assert r.status == 429, r.body
    assert r.json()["code"] == "rate_limited" and int(r.header("Retry-After")) >= 1


def test_a_solved_captcha_unlocks_login_after_repeated_failures(harmar, tmp):
    # auth.captcha.test_answers: TESTS ONLY, the answer comes back in X-Captcha-Answer.
    h = start_configured(harmar, tmp, {"auth": {"captcha": {"test_answers": True}, "captcha_after_failures": 3}})
    assert "test_answers is on" in h.read_log()
    reg = h.request("POST", "/v1/auth/register", {"email": "cap@example.test", "password": PASSWORD})
    assert reg.status == 201, reg.body
    for _ in range(3):
        assert h.request("POST", "/v1/auth/login", {"email": "cap@example.test", "password": "wrong password!"}).status == 401
    locked = h.request("POST", "/v1/auth/login", {"email": "cap@example.test", "password": PASSWORD})
    assert locked.status == 401 and locked.json()["code"] == "captcha_required", locked.body

    c = captcha(h)
    answer = c.header("X-Captcha-Answer")
    assert answer and len(answer) == 5
    wrong = "A" * 5 if answer != "AAAAA" else "C" * 5
    refused = h.request("POST", "/v1/auth/login", {"email": "cap@example.test", "password": PASSWORD,
                                                   "captcha_id": c.json()["captcha_id"], "captcha_answer": wrong})
    assert refused.status == 401 and refused.json()["code"] == "captcha_required", refused.body
    # That guess spent the captcha: its right answer no longer works either.
    spent = h.request("POST", "/v1/auth/login", {"email": "cap@example.test", "password": PASSWORD,
                                                 "captcha_id": c.json()["captcha_id"], "captcha_answer": answer})
    assert spent.status == 401, spent.body

    c = captcha(h)
    ok = h.request("POST", "/v1/auth/login", {"email": "cap@example.test", "password": PASSWORD,
                                              "captcha_id": c.json()["captcha_id"],
                                              "captcha_answer": c.header("X-Captcha-Answer").lower()})
    assert ok.status == 200, ok.body
