#pragma once
// Image captchas: GET /v1/auth/captcha hands out {captcha_id, image}; login (and anything else
// that needs a human) checks the answer through auth::CaptchaVerifier.
//
// The answer is stored in services.kv only as SHA-256(id ":" ANSWER), under "captcha:" + id, with
// an expiry (auth.captcha.ttl). A captcha is single use: the first verify() of an id consumes it,
// right or wrong, so each image allows exactly one guess. Answers are case-insensitive and ignore
// spaces. Handing out captchas is rate limited per client IP.
//
// auth.captcha.test_answers=true adds the answer to the response as X-Captcha-Answer, so
// integration tests can solve captchas. It defeats the captcha: never turn it on in production
// (the server logs a warning at start when it is on).
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>

#include "auth/service.hpp"
#include "core/result.hpp"
#include "store/kv.hpp"

namespace harmar::config {
class Config;
class Schema;
}  // namespace harmar::config

namespace harmar::auth {

struct CaptchaSettings {
  int64_t ttl_ms = 5 * 60 * 1000;
  int length = 5;
  int per_ip_per_minute = 30;  // 0: no limit
  bool test_answers = false;

  static void add_keys(config::Schema& s);
  static CaptchaSettings from_config(const config::Config& cfg);
};

struct CaptchaChallenge {
  std::string id;
  std::string png;     // the image
  std::string answer;  // for the test header only; never logged
  int64_t expires_in_s = 0;
};

class CaptchaService : public CaptchaVerifier {
 public:
  CaptchaService(CaptchaSettings settings, store::Kv& kv) : settings_(settings), kv_(kv) {}

  // A new captcha for a client at `ip` (429 past auth.captcha.per_ip). Rendering runs on the
  // blocking pool.
  asio::awaitable<Result<CaptchaChallenge>> create(std::string ip);
  // True once for the right answer to a live captcha; consumes it either way.
  asio::awaitable<bool> verify(std::string captcha_id, std::string answer) override;

  const CaptchaSettings& settings() const { return settings_; }

 private:
  CaptchaSettings settings_;
  store::Kv& kv_;
};

// Random captcha text of `length` characters from kCaptchaAlphabet (CSPRNG).
std::string random_captcha_text(int length);

}  // namespace harmar::auth
