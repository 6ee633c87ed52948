#include "auth/captcha.hpp"

#include <sodium.h>

#include <cctype>

#include "auth/captcha_png.hpp"
#include "auth/signin_common.hpp"
#include "core/blocking.hpp"
#include "core/config.hpp"
#include "core/ids.hpp"

namespace harmar::auth {
namespace {

constexpr std::size_t kMaxIdBytes = 64;
constexpr std::size_t kMaxAnswerBytes = 32;

std::string kv_key(std::string_view id) { return "captcha:" + std::string(id); }

std::string answer_hash(std::string_view id, std::string_view answer) {
  return sha256_hex_of(std::string(id) + ":" + std::string(answer));
}

// Upper case, without spaces; nullopt when it cannot be an answer at all.
std::optional<std::string> normalize_answer(std::string_view a) {
  if (a.size() > kMaxAnswerBytes) return std::nullopt;
  std::string out;
  for (unsigned char c : a) {
    if (std::isspace(c)) continue;
    if (!std::isalnum(c)) return std::nullopt;
    out.push_back(static_cast<char>(std::toupper(c)));
  }
  if (out.empty()) return std::nullopt;
  return out;
}

bool plausible_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdBytes) return false;
  for (unsigned char c : id)
    if (!(std::isalnum(c) || c == '-' || c == '_')) return false;
  return true;
}

}  // namespace

void CaptchaSettings::add_keys(config::Schema& s) {
  using config::Type;
  s.add({"auth.captcha.ttl", Type::Duration, "5m", "how long a captcha can be solved", 10'000, 3'600'000});
  s.add({"auth.captcha.length", Type::Int, "5", "characters in a captcha", 4, 8});
  s.add({"auth.captcha.per_ip", Type::Int, "30", "captchas one client IP may fetch per minute (0: no limit)", 0, 100'000});
  s.add({"auth.captcha.test_answers", Type::Bool, "false",
         "TESTS ONLY: send each captcha's answer in the X-Captcha-Answer response header. Defeats the captcha; never in production"});
}

CaptchaSettings CaptchaSettings::from_config(const config::Config& cfg) {
  CaptchaSettings s;
  s.ttl_ms = cfg.get_duration_ms("auth.captcha.ttl");
  s.length = static_cast<int>(cfg.get_int("auth.captcha.length"));
  s.per_ip_per_minute = static_cast<int>(cfg.get_int("auth.captcha.per_ip"));
  s.test_answers = cfg.get_bool("auth.captcha.test_answers");
  return s;
}

std::string random_captcha_text(int length) {
  std::string out;
  for (int i = 0; i < length; ++i)
    out.push_back(kCaptchaAlphabet[randombytes_uniform(static_cast<uint32_t>(kCaptchaAlphabet.size()))]);
  return out;
}

asio::awaitable<Result<CaptchaChallenge>> CaptchaService::create(std::string ip) {
  auto allowed = co_await count_and_limit(kv_, "captcha:rate:" + ip, settings_.per_ip_per_minute, 60'000,
                                          "too many captchas from this address; wait a little");
  if (!allowed.ok()) co_return allowed.error();
  CaptchaChallenge c;
  c.id = random_token(18);
  c.answer = random_captcha_text(settings_.length);
  // The closure is named: g++ 12 destroys a capturing lambda temporary in a co_await twice.
  std::string text = c.answer;
  auto render = [text] { return render_captcha_png(text); };
  c.png = co_await run_blocking(std::move(render));
  auto stored = co_await kv_.set(kv_key(c.id), answer_hash(c.id, c.answer), settings_.ttl_ms);
  if (!stored.ok()) co_return stored.error();
  c.expires_in_s = settings_.ttl_ms / 1000;
  co_return c;
}

asio::awaitable<bool> CaptchaService::verify(std::string captcha_id, std::string answer) {
  if (!plausible_id(captcha_id)) co_return false;
  auto stored = co_await kv_.get(kv_key(captcha_id));
  if (!stored.ok() || !stored->has_value()) co_return false;
  // Whoever deletes the key owns this captcha's one guess; a concurrent second guess gets false.
  auto consumed = co_await kv_.del(kv_key(captcha_id));
  if (!consumed.ok() || !*consumed) co_return false;
  auto normalized = normalize_answer(answer);
  if (!normalized) co_return false;
  co_return constant_time_equal(**stored, answer_hash(captcha_id, *normalized));
}

}  // namespace harmar::auth
