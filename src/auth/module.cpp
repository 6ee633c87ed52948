#include "auth/module.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sodium.h>

#include <stdexcept>

#include "auth/api.hpp"
#include "auth/auth_service.hpp"
#include "auth/migrations.hpp"
#include "core/log.hpp"
// notify/mailer.hpp lands with the notify module; until then mails go to the log.
#if __has_include("notify/mailer.hpp")
#include "notify/mailer.hpp"
#define HARMAR_AUTH_HAS_MAILER 1
#endif

namespace harmar::auth {

using config::Key;
using config::Type;

void add_config_keys(config::Schema& s) {
  constexpr int64_t kDay = 86'400'000;
  s.add({"auth.issuer", Type::String, "harmar", "the `iss` of access tokens"});
  s.add({"auth.secret", Type::String, "",
         "base64 of 32 random bytes that seals the token signing keys (env HARMAR_AUTH_SECRET); empty: generated once "
         "into DATA_DIR/auth.key (mode 0600). Every node of a cluster must share it"});
  s.add({"auth.access_ttl", Type::Duration, "15m", "lifetime of access tokens (JWT)", 60'000, kDay});
  s.add({"auth.refresh_idle_timeout", Type::Duration, "14d",
         "a session not refreshed for this long ends (refresh token idle lifetime)", 60'000, 3650 * kDay});
  s.add({"auth.refresh_lifetime", Type::Duration, "90d",
         "a session ends this long after sign-in, however often it is refreshed (absolute lifetime)", 60'000, 3650 * kDay});
  s.add({"auth.verify_email_ttl", Type::Duration, "24h", "lifetime of an email verification link", 60'000, 30 * kDay});
  s.add({"auth.reset_password_ttl", Type::Duration, "1h", "lifetime of a password reset link", 60'000, kDay});
  s.add({"auth.password.opslimit", Type::Int, "2", "argon2id iterations (t); raising it rehashes at the next login", 2, 64});
  s.add({"auth.password.memlimit", Type::Size, "19MiB",
         "argon2id memory (m); at least OWASP's 19 MiB; raising it rehashes at the next login", 19 << 20,
         int64_t(4) << 30});
  s.add({"auth.password.max_concurrent", Type::Int, "2",
         "password hashes running at once (each holds auth.password.memlimit); others wait", 1, 256});
  s.add({"auth.captcha_after_failures", Type::Int, "5",
         "consecutive failed logins of an account after which login needs a solved captcha (0: never)", 0, 1000});
  s.add({"auth.failure_window", Type::Duration, "1h", "how long failed logins of an account are remembered", 60'000, 30 * kDay});
  s.add({"auth.rate_limit.per_ip", Type::Int, "60",
         "auth requests (register, login, refresh, email flows) per client IP per window (0: no limit)", 0, 1'000'000});
  s.add({"auth.rate_limit.per_account", Type::Int, "20",
         "login attempts (and reset mails) per email address per window (0: no limit)", 0, 1'000'000});
  s.add({"auth.rate_limit.window", Type::Duration, "1m", "the window of the auth rate limits", 1000, kDay});
  s.add({"auth.registration_open", Type::Bool, "true", "whether anyone may sign up with POST /v1/auth/register"});
  s.add({"auth.api_key_touch_interval", Type::Duration, "1m",
         "an API key's last_used_at is written at most this often", 0, kDay});
  s.add({"auth.token_cache_entries", Type::Int, "4096",
         "verified access tokens remembered per worker thread (0: verify every time)", 0, 1'000'000});
}

namespace {

struct State {
  std::shared_ptr<AuthService> svc;
  std::unique_ptr<store::Subscription> revoked_sub, roles_sub;
  std::shared_ptr<asio::steady_timer> timer;
  std::shared_ptr<bool> stopped = std::make_shared<bool>(false);
};

asio::awaitable<void> refresh_forever(std::shared_ptr<AuthService> svc, std::shared_ptr<asio::steady_timer> timer,
                                      std::shared_ptr<bool> stopped) {
  while (!*stopped) {
    // Keys made by other nodes or `harmar auth rotate-keys`, revocations missed while pub/sub was
    // down, and role changes: all converge within one period.
    auto st = co_await svc->refresh_state();
    if (!st.ok())
      log::get("auth")->warn(log::fields({{"msg", "auth state refresh failed"}, {"error", st.error().detail}}));
    timer->expires_after(std::chrono::seconds(30));
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> reload_roles(std::shared_ptr<AuthService> svc) {
  auto st = co_await svc->refresh_state();
  (void)st;
}

// auth::ServerKeys over the server secret (see service.hpp).
class DerivedKeys final : public ServerKeys {
 public:
  explicit DerivedKeys(const ServerSecret& secret) : secret_(secret) {}
  ~DerivedKeys() override { sodium_memzero(secret_.data(), secret_.size()); }
  std::array<unsigned char, 32> derive(std::string_view context) const override {
    std::array<unsigned char, 32> out{};
    crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(context.data()), context.size(),
                       secret_.data(), secret_.size());
    return out;
  }

 private:
  ServerSecret secret_;
};

asio::awaitable<Status> send_mail(platform::Services& s, Mail m) {
#ifdef HARMAR_AUTH_HAS_MAILER
  auto mailer = s.find<notify::Mailer>();
#else
  (void)s;
  std::shared_ptr<void> mailer;
#endif
  if (!mailer) {
    log::get("auth")->info(log::fields({{"msg", "mail (no mailer)"}, {"to", m.to}, {"subject", m.subject}, {"text", m.text}}));
    co_return Status{};
  }
#ifdef HARMAR_AUTH_HAS_MAILER
  notify::TemplateVars vars(m.vars.begin(), m.vars.end());
  co_return co_await mailer->send_template(m.template_name, m.to, std::move(vars));
#else
  co_return Status{};
#endif
}

}  // namespace

platform::Module module() {
  platform::Module m;
  m.name = "auth";
  m.configure = add_config_keys;
  m.migrations = migrations();
  auto state = std::make_shared<State>();

  m.provide = [state](platform::Services& s) {
    auto secret = load_server_secret(s.config);
    if (!secret.ok()) throw std::runtime_error("auth: " + secret.error().detail);
    auto svc = std::make_shared<AuthService>(Settings::from(s.config), s.db, s.kv, s.pubsub, *secret);
    platform::Services* services = &s;
    svc->set_captcha([services] { return services->find<CaptchaVerifier>(); });
    svc->set_mailer([services](Mail mail) { return send_mail(*services, std::move(mail)); });
    svc->set_background([services](std::function<asio::awaitable<void>()> work) {
      asio::co_spawn(services->background, std::move(work), asio::detached);
    });
    s.provide<Accounts>(svc);
    s.provide<AuthService>(svc);
    s.provide<CredentialVerifiers>(svc->verifiers_ptr());
    s.provide<ServerKeys>(std::make_shared<DerivedKeys>(*secret));
    s.auth.authenticate = [svc](net::Request& req) { return svc->authenticate(req); };
    s.auth.authorize = [svc](const Principal& p, std::string_view permission) { return svc->authorize(p, permission); };
    state->svc = std::move(svc);
  };

  m.routes = [state](net::Router& router, platform::Services& s) { install_routes(router, s, state->svc); };

  m.start = [state](platform::Services& s) {
    auto svc = state->svc;
    auto ex = s.background.get_executor();
    state->revoked_sub = s.pubsub.subscribe(AuthService::kRevokedChannel, ex, [svc](std::string_view, std::string_view payload) {
      svc->on_revoked_message(payload);
    });
    state->roles_sub = s.pubsub.subscribe(AuthService::kRolesChannel, ex, [svc, ex](std::string_view, std::string_view) {
      asio::co_spawn(ex, reload_roles(svc), asio::detached);
    });
    state->timer = std::make_shared<asio::steady_timer>(s.background);
    asio::co_spawn(s.background, refresh_forever(svc, state->timer, state->stopped), asio::detached);
  };

  m.stop = [state] {
    *state->stopped = true;
    if (state->timer) asio::post(state->timer->get_executor(), [t = state->timer] { t->cancel(); });
    state->revoked_sub.reset();
    state->roles_sub.reset();
  };
  return m;
}

}  // namespace harmar::auth
