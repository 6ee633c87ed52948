#include "auth/signin_module.hpp"

#include <boost/json.hpp>
#include <sodium.h>

#include <stdexcept>

#include "auth/captcha.hpp"
#include "auth/oauth.hpp"
#include "auth/service.hpp"
#include "auth/sms.hpp"
#include "core/json.hpp"
#include "core/log.hpp"
#include "net/http_client.hpp"
#include "platform/api.hpp"

namespace harmar::auth {
namespace {

namespace js = boost::json;
using net::Request;
using net::Response;

struct State {
  std::shared_ptr<CaptchaService> captcha;
  std::shared_ptr<SmsLogin> sms;
  std::shared_ptr<oauth::OAuthService> oauth;
};

std::string base64(std::string_view in) {
  std::string out(sodium_base64_encoded_len(in.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(in.data()), in.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);
  return out;
}

Response no_store(Response r) {
  r.header("Cache-Control", "no-store");
  return r;
}

// "+8613812345678" → "+86*******5678": enough to tell numbers apart in the audit log.
std::string masked(const std::string& phone) {
  if (phone.size() <= 7) return phone;
  return phone.substr(0, 3) + std::string(phone.size() - 7, '*') + phone.substr(phone.size() - 4);
}

// ---- captcha ----

asio::awaitable<Response> get_captcha(std::shared_ptr<CaptchaService> captcha, Request& req) {
  auto c = co_await captcha->create(ClientInfo::from(req).ip);
  if (!c.ok()) co_return c.error();
  js::object body{{"captcha_id", c->id},
                  {"image", "data:image/png;base64," + base64(c->png)},
                  {"expires_in", c->expires_in_s}};
  Response r = no_store(Response::json(200, body));
  if (captcha->settings().test_answers) r.header("X-Captcha-Answer", c->answer);
  co_return r;
}

// ---- SMS ----

asio::awaitable<Response> sms_send(std::shared_ptr<SmsLogin> sms, std::shared_ptr<Accounts> accounts, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  std::string phone = r.required_string("phone", 1, 40);
  r.reject_unknown({"phone"});
  if (!r.ok()) co_return r.error();
  ClientInfo client = ClientInfo::from(req);
  auto sent = co_await sms->send(phone, client.ip);
  if (!sent.ok()) co_return sent.error();
  AuditEvent e{"sms.sent", "", client, js::object{{"phone", masked(sent->phone)}}};
  co_await accounts->audit(std::move(e));
  js::object out{{"phone", sent->phone}, {"expires_in", sent->expires_in_s}, {"resend_after", sent->resend_after_s}};
  co_return Response::json(202, out);
}

asio::awaitable<Response> sms_login(std::shared_ptr<SmsLogin> sms, std::shared_ptr<Accounts> accounts, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  std::string phone = r.required_string("phone", 1, 40);
  std::string code = r.required_string("code", 1, 16);
  r.reject_unknown({"phone", "code"});
  if (!r.ok()) co_return r.error();
  ClientInfo client = ClientInfo::from(req);
  auto checked = co_await sms->check(phone, code, client.ip);
  if (!checked.ok()) {
    if (checked.error().status == 401) {
      AuditEvent e{"sms.login.failed", "", client, js::object{{"reason", checked.error().detail}}};
      co_await accounts->audit(std::move(e));
    }
    co_return checked.error();
  }
  auto user = co_await accounts->find_or_create_by_phone(*checked);
  if (!user.ok()) co_return user.error();
  auto pair = co_await accounts->start_session(user->id, client, "sms");
  if (!pair.ok()) co_return pair.error();
  co_return no_store(Response::json(200, pair->to_json()));
}

// ---- third-party login ----

// The account of a third-party identity: the one already linked to it; else, with a verified
// email, the account of that email (made if needed); else a new account without email.
asio::awaitable<Result<User>> account_for(Accounts& accounts, const std::string& provider, const oauth::Identity& id,
                                          bool* created) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto linked = co_await accounts.find_by_identity(provider, id.subject);
    if (!linked.ok()) co_return linked.error();
    if (linked->has_value()) co_return std::move(**linked);
    Result<User> user = Error::internal();
    if (id.email_verified && !id.email.empty()) {
      user = co_await accounts.find_or_create_by_email(id.email, id.name, true);
    } else {
      // An unverified email proves nothing: it must not reach anybody's existing account.
      user = co_await accounts.create_user_without_email(id.name);
      *created = true;
    }
    if (!user.ok()) co_return user.error();
    auto link = co_await accounts.link_identity(user->id, provider, id.subject, id.email);
    if (link.ok()) co_return std::move(user).value();
    if (link.error().code != "identity_taken") co_return link.error();
    // Another request linked this identity meanwhile: take its account.
  }
  co_return Error::conflict("the identity was being linked by another request; retry", "conflict");
}

std::string cookie(const std::string& name, const std::string& value, const std::string& path, int64_t max_age_s,
                   bool secure) {
  return name + "=" + value + "; Path=" + path + "; Max-Age=" + std::to_string(max_age_s) + "; HttpOnly; SameSite=Lax" +
         (secure ? "; Secure" : "");
}

std::string callback_path(const std::string& provider) { return "/v1/auth/oauth/" + provider + "/callback"; }

asio::awaitable<Response> oauth_authorize(std::shared_ptr<oauth::OAuthService> svc, Request& req) {
  const oauth::ProviderConfig* p = svc->provider(req.param("provider"));
  if (!p) co_return Error::not_found("no sign-in provider called '" + std::string(req.param("provider")) + "'");
  auto app = req.query_param("redirect_uri");
  auto started = co_await svc->authorize(*p, app, ClientInfo::from(req).ip);
  if (!started.ok()) co_return started.error();
  bool secure = svc->settings().public_url.rfind("https://", 0) == 0;
  Response r(302, "", nullptr);
  r.header("Location", started->location);
  r.header("Set-Cookie", cookie(started->cookie_name, started->cookie_value, callback_path(p->name),
                                svc->settings().state_ttl_ms / 1000, secure));
  r.header("Referrer-Policy", "no-referrer");
  co_return no_store(std::move(r));
}

Response redirect_with_fragment(const std::string& app, const std::vector<std::pair<std::string, std::string>>& fields) {
  Response r(302, "", nullptr);
  r.header("Location", app + "#" + net::form_encode(fields));
  r.header("Referrer-Policy", "no-referrer");
  return no_store(std::move(r));
}

asio::awaitable<Response> oauth_callback(std::shared_ptr<oauth::OAuthService> svc, std::shared_ptr<Accounts> accounts,
                                         Request& req) {
  const oauth::ProviderConfig* p = svc->provider(req.param("provider"));
  if (!p) co_return Error::not_found("no sign-in provider called '" + std::string(req.param("provider")) + "'");
  ClientInfo client = ClientInfo::from(req);
  oauth::CallbackParams params;
  params.code = req.query_param("code");
  params.state = req.query_param("state");
  params.iss = req.query_param("iss");
  params.error = req.query_param("error");
  params.error_description = req.query_param("error_description");
  params.cookie_header = std::string(req.header("Cookie"));
  std::optional<std::string> app_on_error;
  auto done = co_await svc->callback(*p, std::move(params), &app_on_error);
  Result<TokenPair> pair = Error::internal();
  bool created = false;
  if (done.ok()) {
    auto user = co_await account_for(*accounts, p->name, done->identity, &created);
    if (user.ok()) {
      pair = co_await accounts->start_session(user->id, client, "oauth:" + p->name);
    } else {
      pair = std::move(user).error();
    }
  } else {
    pair = std::move(done).error();
  }
  if (!pair.ok()) {
    const Error& e = pair.error();
    AuditEvent ev{"oauth.login.failed", "", client, js::object{{"provider", p->name}, {"code", e.code}}};
    co_await accounts->audit(std::move(ev));
    if (app_on_error) {
      std::vector<std::pair<std::string, std::string>> fields = {{"error", e.code}, {"error_description", e.detail}};
      co_return redirect_with_fragment(*app_on_error, fields);
    }
    co_return e;
  }
  AuditEvent ev{"oauth.login", pair->user.id, client, js::object{{"provider", p->name}, {"new_account", created}}};
  co_await accounts->audit(std::move(ev));
  bool secure = svc->settings().public_url.rfind("https://", 0) == 0;
  std::string clear = cookie(done->cookie_name, "", callback_path(p->name), 0, secure);
  if (done->app_redirect) {
    std::vector<std::pair<std::string, std::string>> fields = {{"access_token", pair->access_token},
                                                               {"refresh_token", pair->refresh_token},
                                                               {"token_type", "Bearer"},
                                                               {"expires_in", std::to_string(pair->expires_in_s)}};
    Response r = redirect_with_fragment(*done->app_redirect, fields);
    r.header("Set-Cookie", clear);
    co_return r;
  }
  Response r = no_store(Response::json(200, pair->to_json()));
  r.header("Set-Cookie", clear);
  co_return r;
}

}  // namespace

platform::Module signin_module() {
  platform::Module m;
  m.name = "auth-signin";
  m.configure = [](config::Schema& s) {
    CaptchaSettings::add_keys(s);
    SmsSettings::add_keys(s);
    oauth::OAuthSettings::add_keys(s);
  };
  auto state = std::make_shared<State>();
  m.provide = [state](platform::Services& s) {
    auto logger = log::get("auth");
    auto captcha = CaptchaSettings::from_config(s.config);
    if (captcha.test_answers)
      logger->warn(log::fields({{"msg", "auth.captcha.test_answers is on: every captcha's answer is sent with it. Tests only, never production"}}));
    state->captcha = std::make_shared<CaptchaService>(captcha, s.kv);
    s.provide<CaptchaVerifier>(state->captcha);

    auto sms = SmsSettings::from_config(s.config);
    if (sms.provider == "http" && sms.http.url.empty()) throw std::runtime_error("auth.sms.provider=http needs auth.sms.http.url");
    state->sms = std::make_shared<SmsLogin>(sms, s.kv, make_sms_provider(sms));

    auto oauth = oauth::OAuthSettings::from_config(s.config);
    if (!oauth.ok()) {
      logger->critical(log::fields({{"msg", "invalid configuration"}, {"error", oauth.error().detail}}));
      throw std::runtime_error(oauth.error().detail);
    }
    state->oauth = std::make_shared<oauth::OAuthService>(std::move(oauth).value(), s.kv);
  };
  m.routes = [state](net::Router& router, platform::Services& s) {
    auto captcha = state->captcha;
    router.get("/v1/auth/captcha", [captcha](Request& req) { return get_captcha(captcha, req); });

    auto accounts = s.find<Accounts>();
    if (!accounts) {
      log::get("auth")->error(log::fields({{"msg", "no auth module: SMS and third-party sign-in are off"}}));
      return;
    }
    auto sms = state->sms;
    router.post("/v1/auth/sms/send", [sms, accounts](Request& req) { return sms_send(sms, accounts, req); },
                {.body_limit = 4096});
    router.post("/v1/auth/sms/login", [sms, accounts](Request& req) { return sms_login(sms, accounts, req); },
                {.body_limit = 4096});
    auto svc = state->oauth;
    router.get("/v1/auth/oauth/{provider}/authorize", [svc](Request& req) { return oauth_authorize(svc, req); });
    router.get("/v1/auth/oauth/{provider}/callback",
               [svc, accounts](Request& req) { return oauth_callback(svc, accounts, req); });
  };
  return m;
}

}  // namespace harmar::auth
