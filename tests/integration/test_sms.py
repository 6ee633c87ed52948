"""SMS code sign-in against the real binary. The HTTP provider talks to a real HTTP receiver run
by the test (a python http.server standing in for an SMS gateway); the test reads the code from
what the gateway received, as a phone would."""
import json
import re
import threading

from signin_support import JsonHandler, ThreadedServer, start_configured


class Gateway(JsonHandler):
    received = []
    status = 200
    lock = threading.Lock()

    def do_POST(self):
        with Gateway.lock:
            Gateway.received.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                     "type": self.headers.get("Content-Type"), "body": json.loads(self.body())})
        self.send_json(Gateway.status, {"ok": Gateway.status == 200})


def gateway_config(gw, **sms):
    return {"auth": {"sms": {"provider": "http", "http": {
        "url": gw.url + "/send?to={{phone}}",
        "body": '{"to":"{{phone}}","text":"{{message}}"}',
        "auth_header": "Authorization: Bearer gateway-token"}, **sms}}}


def fresh_gateway():
    Gateway.received = []
    Gateway.status = 200


def code_sent_to(phone):
    for r in reversed(Gateway.received):
        if r["body"]["to"] == phone:
            m = re.search(r"\b(\d{6})\b", r["body"]["text"])
            assert m, r
            return m.group(1)
    raise AssertionError(f"the gateway received nothing for {phone}: {Gateway.received}")


def problem(r, status, code):
    assert r.status == status, (r.status, r.body)
    assert r.json()["code"] == code, r.body
    return r.json()


def test_a_code_sent_through_the_gateway_signs_in_once(harmar, tmp):
    fresh_gateway()
    with ThreadedServer(Gateway) as gw:
        h = start_configured(harmar, tmp, gateway_config(gw))
        r = h.request("POST", "/v1/auth/sms/send", {"phone": "+86 138-0013-8000"})
        assert r.status == 202, r.body
        assert r.json() == {"phone": "+8613800138000", "expires_in": 300, "resend_after": 60}
        assert len(Gateway.received) == 1
        sent = Gateway.received[0]
        assert sent["path"] == "/send?to=%2B8613800138000"
        assert sent["auth"] == "Bearer gateway-token"
        assert sent["type"] == "application/json"
        code = code_sent_to("+8613800138000")

        r = h.request("POST", "/v1/auth/sms/login", {"phone": "+8613800138000", "code": code})
        assert r.status == 200, r.body
        pair = r.json()
        assert pair["token_type"] == "Bearer" and pair["refresh_token"]
        me = h.get("/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
        assert me.status == 200 and me.json()["id"] == pair["user"]["id"]

        problem(h.request("POST", "/v1/auth/sms/login", {"phone": "+8613800138000", "code": code}), 401, "invalid_code")


def test_the_same_phone_signs_in_to_the_same_account(harmar, tmp):
    fresh_gateway()
    with ThreadedServer(Gateway) as gw:
        h = start_configured(harmar, tmp, gateway_config(gw, resend_interval="0s"))
        ids = []
        for written in ("+1 415 555 0199", "001-415-555-0199"):
            assert h.request("POST", "/v1/auth/sms/send", {"phone": written}).status == 202
            r = h.request("POST", "/v1/auth/sms/login", {"phone": written, "code": code_sent_to("+14155550199")})
            assert r.status == 200, r.body
            ids.append(r.json()["user"]["id"])
        assert ids[0] == ids[1]


def test_wrong_codes_bad_numbers_and_resending_too_soon_are_refused(harmar, tmp):
    fresh_gateway()
    with ThreadedServer(Gateway) as gw:
        h = start_configured(harmar, tmp, gateway_config(gw))
        problem(h.request("POST", "/v1/auth/sms/send", {"phone": "not a number"}), 422, "validation_failed")
        problem(h.request("POST", "/v1/auth/sms/send", {"phone": "13800138000"}), 422, "validation_failed")
        problem(h.request("POST", "/v1/auth/sms/send", {"phone": "+14155550100", "extra": 1}), 422, "validation_failed")
        problem(h.request("POST", "/v1/auth/sms/login", {"phone": "+14155550100", "code": "123456"}), 401, "invalid_code")

        assert h.request("POST", "/v1/auth/sms/send", {"phone": "+14155550100"}).status == 202
        again = h.request("POST", "/v1/auth/sms/send", {"phone": "+14155550100"})
        problem(again, 429, "rate_limited")
        assert int(again.header("Retry-After")) >= 1

        code = code_sent_to("+14155550100")
        wrong = "000000" if code != "000000" else "111111"
        problem(h.request("POST", "/v1/auth/sms/login", {"phone": "+14155550100", "code": "12345"}), 422, "validation_failed")
        for _ in range(5):
            problem(h.request("POST", "/v1/auth/sms/login", {"phone": "+14155550100", "code": wrong}), 401, "invalid_code")
        # Five wrong guesses withdrew the code: the right one no longer works.
        problem(h.request("POST", "/v1/auth/sms/login", {"phone": "+14155550100", "code": code}), 401, "invalid_code")


def test_a_gateway_failure_is_502_and_can_be_retried_at_once(harmar, tmp):
    fresh_gateway()
    with ThreadedServer(Gateway) as gw:
        h = start_configured(harmar, tmp, gateway_config(gw))
        Gateway.status = 500
        problem(h.request("POST", "/v1/auth/sms/send", {"phone": "+14155550111"}), 502, "sms_delivery_failed")
        Gateway.status = 200
        assert h.request("POST", "/v1/auth/sms/send", {"phone": "+14155550111"}).status == 202


def test_without_a_gateway_the_code_goes_to_the_log(harmar, tmp):
    h = start_configured(harmar, tmp, {})
    assert h.request("POST", "/v1/auth/sms/send", {"phone": "+14155550122"}).status == 202
    m = None
    for line in h.read_log().splitlines():
        if "sms (auth.sms.provider=log" in line:
            m = re.search(r"code is (\d{6})", json.loads(line)["text"])
    assert m, h.read_log()
    r = h.request("POST", "/v1/auth/sms/login", {"phone": "+14155550122", "code": m.group(1)})
    assert r.status == 200, r.body
