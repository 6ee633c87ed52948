#include "auth/sms.hpp"

#include <kainjow/mustache.hpp>
#include <sodium.h>

#include <cctype>
#include <cstdio>

#include "auth/signin_common.hpp"
#include "core/config.hpp"
#include "core/log.hpp"
#include "net/http_client.hpp"

namespace harmar::auth {
namespace {

namespace mu = kainjow::mustache;

constexpr int64_t kHourMs = 3'600'000;

Error invalid_code(std::string detail) { return Error::unauthorized(std::move(detail), "invalid_code"); }

Error delivery_failed() {
  Error e;
  e.status = 502;
  e.code = "sms_delivery_failed";
  e.detail = "the SMS gateway did not accept the message; try again later";
  return e;
}

std::string json_escape(const std::string& s) {
  std::string out;
  log::escape_json(s, out);
  return out;
}

std::string no_escape(const std::string& s) { return s; }

std::string render(const std::string& source, const mu::data& vars, const std::function<std::string(const std::string&)>& esc) {
  mu::mustache t(source);
  t.set_custom_escape(esc);
  return t.render(vars);
}

mu::data template_vars(const std::string& phone, const std::string& code, const std::string& message) {
  mu::data d;
  d.set("phone", phone);
  d.set("code", code);
  d.set("message", message);
  return d;
}

class LogSmsProvider : public SmsProvider {
 public:
  asio::awaitable<Status> send_code(std::string phone, std::string code, std::string message) override {
    // Development without a gateway: the log is the delivery.
    log::get("auth")->info(log::fields({{"msg", "sms (auth.sms.provider=log: not sent)"}, {"phone", phone}, {"text", message}}));
    co_return Status{};
  }
};

class HttpSmsProvider : public SmsProvider {
 public:
  explicit HttpSmsProvider(SmsHttpSettings s) : s_(std::move(s)) {}

  asio::awaitable<Status> send_code(std::string phone, std::string code, std::string message) override {
    auto vars = template_vars(phone, code, message);
    net::ClientRequest req;
    req.method = s_.method;
    req.url = render(s_.url, vars, net::url_encode);
    req.timeout_ms = s_.timeout_ms;
    req.connect_timeout_ms = std::min<int64_t>(s_.timeout_ms, 5'000);
    req.max_response_bytes = 64 * 1024;
    if (req.method != "GET") {
      bool json = s_.content_type.find("json") != std::string::npos;
      bool form = s_.content_type.find("x-www-form-urlencoded") != std::string::npos;
      std::function<std::string(const std::string&)> escape = no_escape;
      if (json) escape = json_escape;
      if (form) escape = [](const std::string& v) { return net::url_encode(v); };
      req.body = render(s_.body, vars, escape);
      req.headers.emplace_back("Content-Type", s_.content_type);
    }
    if (auto colon = s_.auth_header.find(':'); colon != std::string::npos) {
      std::string value = s_.auth_header.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(value.begin());
      req.headers.emplace_back(s_.auth_header.substr(0, colon), value);
    }
    auto resp = co_await net::http_fetch(std::move(req));
    auto logger = log::get("auth");
    if (!resp.ok()) {
      logger->warn(log::fields({{"msg", "sms gateway unreachable"}, {"error", resp.error().detail}}));
      co_return delivery_failed();
    }
    if (resp->status < 200 || resp->status >= 300) {
      logger->warn(log::fields({{"msg", "sms gateway refused"}, {"status", std::to_string(resp->status)},
                                {"body", resp->body.substr(0, 300)}}));
      co_return delivery_failed();
    }
    co_return Status{};
  }

 private:
  SmsHttpSettings s_;
};

std::string code_key(const std::string& phone) { return "sms:code:" + phone; }
std::string tries_key(const std::string& phone) { return "sms:tries:" + phone; }
std::string code_hash(const std::string& phone, const std::string& code) { return sha256_hex_of(phone + ":" + code); }

Error bad_phone() {
  return Error::validation("phone must be a number in international format, e.g. +14155550123",
                           {{"phone", "is not a phone number in international (E.164) format"}});
}

}  // namespace

void SmsSettings::add_keys(config::Schema& s) {
  using config::Type;
  s.add({"auth.sms.provider", Type::String, "log",
         "where SMS codes go: log (development: the log) or http (any gateway, see auth.sms.http.*)", 0, 0, {"log", "http"}});
  s.add({"auth.sms.http.url", Type::String, "",
         "gateway URL, a mustache template with {{phone}}, {{code}}, {{message}} (URL-encoded)"});
  s.add({"auth.sms.http.method", Type::String, "POST", "gateway request method", 0, 0, {"POST", "PUT", "GET"}});
  s.add({"auth.sms.http.body", Type::String, R"({"to":"{{phone}}","text":"{{message}}"})",
         "request body template with {{phone}}, {{code}}, {{message}} (escaped for auth.sms.http.content_type)"});
  s.add({"auth.sms.http.content_type", Type::String, "application/json", "Content-Type of the gateway request body"});
  s.add({"auth.sms.http.auth_header", Type::String, "",
         "one header \"Name: value\" that authenticates us to the gateway (prefer HARMAR_AUTH_SMS_HTTP_AUTH_HEADER)"});
  s.add({"auth.sms.http.timeout", Type::Duration, "10s", "bound on one gateway request", 500, 120'000});
  s.add({"auth.sms.message", Type::String, "Your sign-in code is {{code}}. It expires in {{minutes}} minutes.",
         "the SMS text, a mustache template with {{code}} and {{minutes}}"});
  s.add({"auth.sms.default_country_code", Type::String, "",
         "country calling code (digits, e.g. 86) for numbers written without +; empty requires +"});
  s.add({"auth.sms.code_ttl", Type::Duration, "5m", "how long an SMS code works", 30'000, 3'600'000});
  s.add({"auth.sms.max_attempts", Type::Int, "5", "wrong guesses of one code before it is withdrawn", 1, 20});
  s.add({"auth.sms.resend_interval", Type::Duration, "60s", "time between two codes to one phone", 0, 3'600'000});
  s.add({"auth.sms.per_phone", Type::Int, "5", "codes sent to one phone per hour (0: no limit)", 0, 1000});
  s.add({"auth.sms.per_ip", Type::Int, "20", "codes requested from one client IP per hour (0: no limit)", 0, 100'000});
  s.add({"auth.sms.login_per_ip", Type::Int, "60", "SMS login attempts from one client IP per hour (0: no limit)", 0, 100'000});
}

SmsSettings SmsSettings::from_config(const config::Config& cfg) {
  SmsSettings s;
  s.provider = cfg.get_string("auth.sms.provider");
  s.http.url = cfg.get_string("auth.sms.http.url");
  s.http.method = cfg.get_string("auth.sms.http.method");
  s.http.body = cfg.get_string("auth.sms.http.body");
  s.http.content_type = cfg.get_string("auth.sms.http.content_type");
  s.http.auth_header = cfg.get_string("auth.sms.http.auth_header");
  s.http.timeout_ms = cfg.get_duration_ms("auth.sms.http.timeout");
  s.message = cfg.get_string("auth.sms.message");
  s.default_country_code = cfg.get_string("auth.sms.default_country_code");
  s.code_ttl_ms = cfg.get_duration_ms("auth.sms.code_ttl");
  s.max_attempts = static_cast<int>(cfg.get_int("auth.sms.max_attempts"));
  s.resend_interval_ms = cfg.get_duration_ms("auth.sms.resend_interval");
  s.per_phone_per_hour = static_cast<int>(cfg.get_int("auth.sms.per_phone"));
  s.per_ip_per_hour = static_cast<int>(cfg.get_int("auth.sms.per_ip"));
  s.login_per_ip_per_hour = static_cast<int>(cfg.get_int("auth.sms.login_per_ip"));
  return s;
}

std::shared_ptr<SmsProvider> make_sms_provider(const SmsSettings& s) {
  if (s.provider == "http") return std::make_shared<HttpSmsProvider>(s.http);
  return std::make_shared<LogSmsProvider>();
}

std::optional<std::string> normalize_phone(std::string_view raw, std::string_view default_country_code) {
  if (raw.size() > 40) return std::nullopt;
  std::string digits;
  bool plus = false;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '\t') continue;
    if (c == '+' && digits.empty() && !plus) {
      plus = true;
      continue;
    }
    if (c < '0' || c > '9') return std::nullopt;
    digits.push_back(c);
  }
  if (!plus && digits.rfind("00", 0) == 0) {
    plus = true;
    digits.erase(0, 2);
  }
  if (!plus) {
    if (default_country_code.empty()) return std::nullopt;
    if (!digits.empty() && digits.front() == '0') digits.erase(0, 1);  // a national trunk prefix
    digits = std::string(default_country_code) + digits;
  }
  if (digits.size() < 8 || digits.size() > 15 || digits.front() == '0') return std::nullopt;
  return "+" + digits;
}

asio::awaitable<Result<SmsLogin::Sent>> SmsLogin::send(std::string raw_phone, std::string ip) {
  auto phone = normalize_phone(raw_phone, settings_.default_country_code);
  if (!phone) co_return bad_phone();
  auto by_ip = co_await count_and_limit(kv_, "sms:send:ip:" + ip, settings_.per_ip_per_hour, kHourMs,
                                        "too many codes requested from this address");
  if (!by_ip.ok()) co_return by_ip.error();
  if (settings_.resend_interval_ms > 0) {
    auto first = co_await kv_.set_if_absent("sms:cooldown:" + *phone, "1", settings_.resend_interval_ms);
    if (!first.ok()) co_return first.error();
    if (!*first) {
      auto left = co_await kv_.ttl("sms:cooldown:" + *phone);
      int64_t ms = left.ok() && left->has_value() ? **left : settings_.resend_interval_ms;
      co_return Error::rate_limited(static_cast<int>((ms + 999) / 1000), "a code was just sent to this phone; wait before asking again");
    }
  }
  auto by_phone = co_await count_and_limit(kv_, "sms:send:phone:" + *phone, settings_.per_phone_per_hour, kHourMs,
                                           "too many codes sent to this phone; try again later");
  if (!by_phone.ok()) co_return by_phone.error();

  char code[8];
  std::snprintf(code, sizeof(code), "%06u", static_cast<unsigned>(randombytes_uniform(1'000'000)));
  auto stored = co_await kv_.set(code_key(*phone), code_hash(*phone, code), settings_.code_ttl_ms);
  if (!stored.ok()) co_return stored.error();
  auto reset = co_await kv_.del(tries_key(*phone));
  if (!reset.ok()) co_return reset.error();

  mu::data mvars;
  mvars.set("code", std::string(code));
  mvars.set("minutes", std::to_string((settings_.code_ttl_ms + 59'999) / 60'000));
  std::string message = render(settings_.message, mvars, no_escape);
  auto sent = co_await provider_->send_code(*phone, code, message);
  if (!sent.ok()) {
    auto withdrawn = co_await kv_.del(code_key(*phone));
    (void)withdrawn;
    auto cooled = co_await kv_.del("sms:cooldown:" + *phone);  // the user may retry at once
    (void)cooled;
    co_return sent.error();
  }
  Sent out;
  out.phone = *phone;
  out.expires_in_s = settings_.code_ttl_ms / 1000;
  out.resend_after_s = settings_.resend_interval_ms / 1000;
  co_return out;
}

asio::awaitable<Result<std::string>> SmsLogin::check(std::string raw_phone, std::string code, std::string ip) {
  auto phone = normalize_phone(raw_phone, settings_.default_country_code);
  if (!phone) co_return bad_phone();
  bool six_digits = code.size() == 6;
  for (char c : code) six_digits = six_digits && c >= '0' && c <= '9';
  if (!six_digits) co_return Error::validation("code must be the 6 digits sent by SMS", {{"code", "must be 6 digits"}});
  auto by_ip = co_await count_and_limit(kv_, "sms:login:ip:" + ip, settings_.login_per_ip_per_hour, kHourMs,
                                        "too many SMS login attempts from this address");
  if (!by_ip.ok()) co_return by_ip.error();

  auto stored = co_await kv_.get(code_key(*phone));
  if (!stored.ok()) co_return stored.error();
  if (!stored->has_value()) co_return invalid_code("no live code for this phone; request a new one");
  auto tries = co_await kv_.incr(tries_key(*phone), 1, settings_.code_ttl_ms);
  if (!tries.ok()) co_return tries.error();
  if (*tries > settings_.max_attempts) {
    auto withdrawn = co_await kv_.del(code_key(*phone));
    (void)withdrawn;
    co_return invalid_code("too many wrong codes; request a new one");
  }
  if (!constant_time_equal(**stored, code_hash(*phone, code))) {
    if (*tries == settings_.max_attempts) {
      auto withdrawn = co_await kv_.del(code_key(*phone));
      (void)withdrawn;
    }
    co_return invalid_code("wrong code");
  }
  // Whoever deletes the code owns it: a concurrent second use of the same code fails.
  auto consumed = co_await kv_.del(code_key(*phone));
  if (!consumed.ok()) co_return consumed.error();
  if (!*consumed) co_return invalid_code("this code was just used");
  auto cleared = co_await kv_.del(tries_key(*phone));
  (void)cleared;
  co_return *phone;
}

}  // namespace harmar::auth
