// SMS sign-in codes: phone numbers, code lifetime, attempts, limits, and the HTTP provider against
// a real HTTP server (our in-process test server standing in for an SMS gateway).
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "auth/sms.hpp"
#include "support/test_client.hpp"
#include "support/test_support.hpp"

namespace harmar::auth {
namespace {

TEST(SmsPhone, numbers_are_normalised_to_e164) {
  EXPECT_EQ(normalize_phone("+86 138 0013 8000").value_or(""), "+8613800138000");
  EXPECT_EQ(normalize_phone("+1 (415) 555-0123").value_or(""), "+14155550123");
  EXPECT_EQ(normalize_phone("0044 20 7946 0958").value_or(""), "+442079460958");
  EXPECT_EQ(normalize_phone("138.0013.8000", "86").value_or(""), "+8613800138000");
  EXPECT_EQ(normalize_phone("020 7946 0958", "44").value_or(""), "+442079460958");  // trunk 0 dropped
  EXPECT_FALSE(normalize_phone("13800138000").has_value()) << "no + and no default country";
  EXPECT_FALSE(normalize_phone("+0123456789").has_value());
  EXPECT_FALSE(normalize_phone("+1234567").has_value()) << "too short";
  EXPECT_FALSE(normalize_phone("+1234567890123456").has_value()) << "E.164 has at most 15 digits";
  EXPECT_FALSE(normalize_phone("+1 415 555 O123").has_value());
  EXPECT_FALSE(normalize_phone("+1 415+555 0123").has_value());
  EXPECT_FALSE(normalize_phone("").has_value());
  EXPECT_FALSE(normalize_phone(std::string(100, '1')).has_value());
}

// A provider that keeps what it was asked to send (the gateway itself is tested below).
class Recorder : public SmsProvider {
 public:
  asio::awaitable<Status> send_code(std::string phone, std::string code, std::string message) override {
    std::lock_guard lock(mu);
    if (fail) co_return Error{502, "sms_delivery_failed", "down"};
    sent.push_back({phone, code, message});
    co_return Status{};
  }
  struct Sent {
    std::string phone, code, message;
  };
  std::mutex mu;
  std::vector<Sent> sent;
  bool fail = false;
};

struct SmsFixture {
  std::unique_ptr<store::Kv> kv = std::move(store::Kv::open("")).value();
  std::shared_ptr<Recorder> provider = std::make_shared<Recorder>();
  SmsSettings settings;
  SmsFixture() {
    settings.resend_interval_ms = 0;
    settings.per_phone_per_hour = 100;
    settings.per_ip_per_hour = 100;
    settings.login_per_ip_per_hour = 100;
  }
  SmsLogin make() { return SmsLogin(settings, *kv, provider); }
};

TEST(SmsLogin, a_sent_code_signs_in_once) {
  SmsFixture f;
  auto sms = f.make();
  auto sent = testing::run(sms.send("+86 138 0013 8000", "10.0.0.1"));
  ASSERT_TRUE(sent.ok()) << sent.error().detail;
  EXPECT_EQ(sent->phone, "+8613800138000");
  EXPECT_EQ(sent->expires_in_s, 300);
  ASSERT_EQ(f.provider->sent.size(), 1u);
  std::string code = f.provider->sent[0].code;
  ASSERT_EQ(code.size(), 6u);
  for (char c : code) EXPECT_TRUE(c >= '0' && c <= '9');
  EXPECT_EQ(f.provider->sent[0].message, "Your sign-in code is " + code + ". It expires in 5 minutes.");
  auto ok = testing::run(sms.check("+8613800138000", code, "10.0.0.1"));
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_EQ(*ok, "+8613800138000");
  auto again = testing::run(sms.check("+8613800138000", code, "10.0.0.1"));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().status, 401);
  EXPECT_EQ(again.error().code, "invalid_code");
}

TEST(SmsLogin, the_code_is_stored_hashed) {
  SmsFixture f;
  auto sms = f.make();
  ASSERT_TRUE(testing::run(sms.send("+14155550123", "10.0.0.1")).ok());
  auto stored = testing::run(f.kv->get("sms:code:+14155550123"));
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->find(f.provider->sent[0].code), std::string::npos);
}

TEST(SmsLogin, five_wrong_codes_withdraw_the_code) {
  SmsFixture f;
  auto sms = f.make();
  ASSERT_TRUE(testing::run(sms.send("+14155550123", "10.0.0.1")).ok());
  std::string code = f.provider->sent[0].code;
  std::string wrong = code == "000000" ? "111111" : "000000";
  for (int i = 0; i < 5; ++i) {
    auto r = testing::run(sms.check("+14155550123", wrong, "10.0.0.1"));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, "invalid_code");
  }
  auto right_too_late = testing::run(sms.check("+14155550123", code, "10.0.0.1"));
  ASSERT_FALSE(right_too_late.ok()) << "the code must be gone after max_attempts wrong guesses";
  // A new code starts a new count.
  ASSERT_TRUE(testing::run(sms.send("+14155550123", "10.0.0.1")).ok());
  EXPECT_TRUE(testing::run(sms.check("+14155550123", f.provider->sent[1].code, "10.0.0.1")).ok());
}

TEST(SmsLogin, a_code_expires) {
  SmsFixture f;
  f.settings.code_ttl_ms = 150;
  auto sms = f.make();
  ASSERT_TRUE(testing::run(sms.send("+14155550123", "10.0.0.1")).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto r = testing::run(sms.check("+14155550123", f.provider->sent[0].code, "10.0.0.1"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "invalid_code");
}

TEST(SmsLogin, a_code_for_one_phone_does_not_work_for_another) {
  SmsFixture f;
  auto sms = f.make();
  ASSERT_TRUE(testing::run(sms.send("+14155550123", "10.0.0.1")).ok());
  ASSERT_TRUE(testing::run(sms.send("+14155550124", "10.0.0.1")).ok());
  if (f.provider->sent[0].code == f.provider->sent[1].code) GTEST_SKIP() << "the two random codes happen to be equal";
  EXPECT_FALSE(testing::run(sms.check("+14155550124", f.provider->sent[0].code, "10.0.0.1")).ok());
}

TEST(SmsLogin, bad_input_is_a_validation_error) {
  SmsFixture f;
  auto sms = f.make();
  auto bad_phone = testing::run(sms.send("call me", "10.0.0.1"));
  ASSERT_FALSE(bad_phone.ok());
  EXPECT_EQ(bad_phone.error().status, 422);
  auto bad_code = testing::run(sms.check("+14155550123", "12ab56", "10.0.0.1"));
  ASSERT_FALSE(bad_code.ok());
  EXPECT_EQ(bad_code.error().status, 422);
  EXPECT_TRUE(f.provider->sent.empty());
}

TEST(SmsLogin, resending_waits_for_the_interval_and_per_phone_and_per_ip_limits_hold) {
  SmsFixture f;
  f.settings.resend_interval_ms = 60'000;
  auto sms = f.make();
  ASSERT_TRUE(testing::run(sms.send("+14155550123", "10.0.0.1")).ok());
  auto soon = testing::run(sms.send("+14155550123", "10.0.0.1"));
  ASSERT_FALSE(soon.ok());
  EXPECT_EQ(soon.error().status, 429);
  EXPECT_GE(soon.error().retry_after_s, 59);

  SmsFixture g;
  g.settings.per_phone_per_hour = 2;
  auto sms2 = g.make();
  ASSERT_TRUE(testing::run(sms2.send("+14155550123", "10.0.0.1")).ok());
  ASSERT_TRUE(testing::run(sms2.send("+14155550123", "10.0.0.2")).ok());
  auto third = testing::run(sms2.send("+14155550123", "10.0.0.3"));
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().status, 429);

  SmsFixture h;
  h.settings.per_ip_per_hour = 2;
  auto sms3 = h.make();
  ASSERT_TRUE(testing::run(sms3.send("+14155550001", "10.0.0.7")).ok());
  ASSERT_TRUE(testing::run(sms3.send("+14155550002", "10.0.0.7")).ok());
  auto by_ip = testing::run(sms3.send("+14155550003", "10.0.0.7"));
  ASSERT_FALSE(by_ip.ok());
  EXPECT_EQ(by_ip.error().status, 429);
}

TEST(SmsLogin, a_failed_delivery_withdraws_the_code_and_allows_a_retry) {
  SmsFixture f;
  f.settings.resend_interval_ms = 60'000;
  auto sms = f.make();
  f.provider->fail = true;
  auto r = testing::run(sms.send("+14155550123", "10.0.0.1"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 502);
  auto stored = testing::run(f.kv->get("sms:code:+14155550123"));
  EXPECT_FALSE(stored->has_value());
  f.provider->fail = false;
  EXPECT_TRUE(testing::run(sms.send("+14155550123", "10.0.0.1")).ok()) << "no cooldown after a failed delivery";
}

// ---- the HTTP provider, against a real HTTP server ----

struct Gateway {
  testing::TestServer server;
  std::mutex mu;
  std::vector<std::tuple<std::string, std::string, std::string, std::string>> got;  // target, content type, auth, body
  int status = 200;
  Gateway() {
    auto handler = [this](net::Request& req) -> asio::awaitable<net::Response> {
      std::lock_guard lock(mu);
      got.emplace_back(std::string(req.target()), std::string(req.header("Content-Type")),
                       std::string(req.header("Authorization")), req.body);
      co_return net::Response(status, R"({"ok":true})");
    };
    server.router.post("/sms", handler);
    server.router.get("/sms", handler);
    server.start();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server.port) + "/sms"; }
};

TEST(SmsHttpProvider, posts_the_json_template_with_escaped_values_and_the_auth_header) {
  Gateway gw;
  SmsSettings s;
  s.provider = "http";
  s.http.url = gw.url() + "?to={{phone}}";
  s.http.body = R"({"to":"{{phone}}","text":"{{message}}","code":"{{code}}"})";
  s.http.auth_header = "Authorization: Bearer gw-secret";
  auto provider = make_sms_provider(s);
  auto st = testing::run(provider->send_code("+8613800138000", "123456", "Code \"123456\"\nthanks"));
  ASSERT_TRUE(st.ok()) << st.error().detail;
  ASSERT_EQ(gw.got.size(), 1u);
  auto& [target, type, auth, body] = gw.got[0];
  EXPECT_EQ(target, "/sms?to=%2B8613800138000");
  EXPECT_EQ(type, "application/json");
  EXPECT_EQ(auth, "Bearer gw-secret");
  EXPECT_EQ(body, R"({"to":"+8613800138000","text":"Code \"123456\"\nthanks","code":"123456"})");
}

TEST(SmsHttpProvider, form_bodies_are_url_encoded_and_get_has_no_body) {
  Gateway gw;
  SmsSettings s;
  s.provider = "http";
  s.http.url = gw.url();
  s.http.content_type = "application/x-www-form-urlencoded";
  s.http.body = "to={{phone}}&msg={{message}}";
  ASSERT_TRUE(testing::run(make_sms_provider(s)->send_code("+14155550123", "654321", "a b&c")).ok());
  EXPECT_EQ(std::get<3>(gw.got[0]), "to=%2B14155550123&msg=a%20b%26c");

  SmsSettings g;
  g.provider = "http";
  g.http.method = "GET";
  g.http.url = gw.url() + "?phone={{phone}}&code={{code}}";
  ASSERT_TRUE(testing::run(make_sms_provider(g)->send_code("+14155550123", "654321", "x")).ok());
  EXPECT_EQ(std::get<0>(gw.got[1]), "/sms?phone=%2B14155550123&code=654321");
  EXPECT_EQ(std::get<3>(gw.got[1]), "");
}

TEST(SmsHttpProvider, a_gateway_error_or_an_unreachable_gateway_is_502) {
  Gateway gw;
  gw.status = 500;
  SmsSettings s;
  s.provider = "http";
  s.http.url = gw.url();
  auto st = testing::run(make_sms_provider(s)->send_code("+14155550123", "654321", "x"));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().status, 502);
  EXPECT_EQ(st.error().code, "sms_delivery_failed");

  SmsSettings down;
  down.provider = "http";
  down.http.url = "http://127.0.0.1:1/sms";
  down.http.timeout_ms = 2000;
  auto st2 = testing::run(make_sms_provider(down)->send_code("+14155550123", "654321", "x"));
  ASSERT_FALSE(st2.ok());
  EXPECT_EQ(st2.error().status, 502);
}

}  // namespace
}  // namespace harmar::auth
