#pragma once
// Sign-in with a code sent by SMS: POST /v1/auth/sms/send {phone} → 202, then
// POST /v1/auth/sms/login {phone, code} → 200 token pair (the account of that phone number,
// created on first use).
//
// Codes are 6 digits from the CSPRNG, kept in services.kv only as SHA-256(phone ":" code) under
// "sms:code:" + phone, expiring after auth.sms.code_ttl. A code allows auth.sms.max_attempts
// guesses, then it is gone; it is gone after a successful login too. Sending is limited per phone
// (one per auth.sms.resend_interval, auth.sms.per_phone per hour) and per client IP
// (auth.sms.per_ip per hour); login attempts are limited per client IP.
//
// Providers: "log" (the default: the code goes to the log, for development) or "http": any SMS
// gateway with an HTTP API, described by a URL, a method, a body template and an auth header
// (auth.sms.http.*). Templates are mustache with {{phone}}, {{code}} and {{message}}; values are
// escaped for where they go (URL-encoded in the URL and in form bodies, JSON-escaped in JSON).
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "auth/service.hpp"
#include "core/result.hpp"
#include "store/kv.hpp"

namespace harmar::config {
class Config;
class Schema;
}  // namespace harmar::config

namespace harmar::auth {

class SmsProvider {
 public:
  virtual ~SmsProvider() = default;
  // Sends `message` (which holds `code`) to `phone` (E.164). 502 `sms_delivery_failed` when the
  // gateway refused it or could not be reached.
  virtual asio::awaitable<Status> send_code(std::string phone, std::string code, std::string message) = 0;
};

struct SmsHttpSettings {
  std::string url;  // mustache template
  std::string method = "POST";
  std::string body = R"({"to":"{{phone}}","text":"{{message}}"})";
  std::string content_type = "application/json";
  std::string auth_header;  // "Name: value", e.g. "Authorization: Bearer ..."
  int64_t timeout_ms = 10'000;
};

struct SmsSettings {
  std::string provider = "log";  // log | http
  SmsHttpSettings http;
  std::string message = "Your sign-in code is {{code}}. It expires in {{minutes}} minutes.";
  std::string default_country_code;  // digits, e.g. "86": numbers written without + get it
  int64_t code_ttl_ms = 5 * 60 * 1000;
  int max_attempts = 5;
  int64_t resend_interval_ms = 60 * 1000;
  int per_phone_per_hour = 5;
  int per_ip_per_hour = 20;
  int login_per_ip_per_hour = 60;

  static void add_keys(config::Schema& s);
  static SmsSettings from_config(const config::Config& cfg);
};

// The provider the settings describe.
std::shared_ptr<SmsProvider> make_sms_provider(const SmsSettings& s);

// A phone number in E.164 ("+8613800000000"): spaces, dots, dashes and parentheses dropped, a
// leading "00" read as "+", a number without "+" given `default_country_code` (if set), then
// "+" and 8..15 digits, the first not 0. nullopt when it cannot be one.
std::optional<std::string> normalize_phone(std::string_view raw, std::string_view default_country_code = "");

class SmsLogin {
 public:
  SmsLogin(SmsSettings settings, store::Kv& kv, std::shared_ptr<SmsProvider> provider)
      : settings_(std::move(settings)), kv_(kv), provider_(std::move(provider)) {}

  struct Sent {
    std::string phone;  // normalised
    int64_t expires_in_s = 0;
    int64_t resend_after_s = 0;
  };
  // Makes, stores and sends a code. 422 for a bad number, 429 past a limit, 502 when the
  // provider failed (the code is then withdrawn).
  asio::awaitable<Result<Sent>> send(std::string raw_phone, std::string ip);
  // The normalised phone number when `code` is its live code (consumed then). 401
  // `invalid_code` otherwise (also after too many guesses, which withdraws the code).
  asio::awaitable<Result<std::string>> check(std::string raw_phone, std::string code, std::string ip);

  const SmsSettings& settings() const { return settings_; }

 private:
  SmsSettings settings_;
  store::Kv& kv_;
  std::shared_ptr<SmsProvider> provider_;
};

}  // namespace harmar::auth
