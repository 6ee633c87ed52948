#include "auth/oauth.hpp"

#include <boost/json.hpp>

#include "auth/jwt.hpp"
#include "auth/signin_common.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "net/http_client.hpp"

namespace harmar::auth::oauth {
namespace {

namespace js = boost::json;

constexpr std::size_t kMaxStateBytes = 128;
constexpr std::size_t kMaxCodeBytes = 2048;
constexpr int64_t kJwksMinRefetchMs = 30'000;

Error invalid_state(std::string detail) { return Error::bad_request("invalid_state", std::move(detail)); }
Error denied(std::string detail) { return Error::unauthorized(std::move(detail), "oauth_denied"); }
Error upstream(std::string detail) {
  Error e;
  e.status = 502;
  e.code = "oauth_provider_error";
  e.detail = std::move(detail);
  return e;
}

std::optional<std::string> str(const js::object& o, std::string_view k) {
  auto it = o.find(k);
  if (it == o.end() || !it->value().is_string()) return std::nullopt;
  return std::string(it->value().as_string());
}

// Printable ASCII, bounded: what a provider's error text may contribute to our messages.
std::string clean(std::string_view s, std::size_t max = 200) {
  std::string out;
  for (char c : s.substr(0, max))
    out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return out;
}

std::string basic_auth(const std::string& id, const std::string& secret) {
  // RFC 6749 2.3.1: form-encode each part before base64.
  std::string raw = net::url_encode(id) + ":" + net::url_encode(secret);
  std::string b64 = jwt::b64url_encode(raw);
  for (char& c : b64) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (b64.size() % 4) b64.push_back('=');
  return "Basic " + b64;
}

std::string cookie_name_for(const std::string& state_hash) { return "harmar_oauth_" + state_hash.substr(0, 16); }

std::optional<std::string> cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    auto semi = header.find(';');
    std::string_view part = header.substr(0, semi);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    auto eq = part.find('=');
    if (eq != std::string_view::npos && part.substr(0, eq) == name) return std::string(part.substr(eq + 1));
    if (semi == std::string_view::npos) break;
    header.remove_prefix(semi + 1);
  }
  return std::nullopt;
}

bool http_url(std::string_view u) { return u.rfind("https://", 0) == 0 || u.rfind("http://", 0) == 0; }

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::GitHub: return "github";
    case Kind::WeChat: return "wechat";
    case Kind::Oidc: return "oidc";
  }
  return "?";
}

}  // namespace

std::string pkce_challenge(std::string_view verifier) { return jwt::b64url_encode(sha256_bytes(verifier)); }

void OAuthSettings::add_keys(config::Schema& s) {
  using config::Type;
  s.add({"auth.oauth.*", Type::StringMap, "",
         "a sign-in provider called NAME (the {provider} of /v1/auth/oauth/{provider}/...): type (github, wechat or "
         "oidc), client_id, client_secret, issuer (oidc), scopes (space-separated), token_auth (oidc: "
         "client_secret_basic or client_secret_post); authorize_url, token_url, userinfo_url, emails_url, jwks_url "
         "override endpoints (private deployments, tests)"});
  s.add({"auth.oauth_redirect_urls", Type::StringList, "",
         "app URLs a third-party sign-in may end at (?redirect_uri=): exact, or a prefix ending in /"});
  s.add({"auth.oauth_state_ttl", Type::Duration, "10m", "how long a started third-party sign-in may take", 30'000, 3'600'000});
  s.add({"auth.oauth_jwks_cache", Type::Duration, "1h", "how long OIDC discovery documents and keys are cached", 10'000,
         86'400'000});
  s.add({"auth.oauth_http_timeout", Type::Duration, "10s", "bound on each call to a provider", 500, 120'000});
  s.add({"auth.oauth_per_ip", Type::Int, "30", "third-party sign-ins one client IP may start per minute (0: no limit)", 0,
         100'000});
}

Result<OAuthSettings> OAuthSettings::from_config(const config::Config& cfg) {
  OAuthSettings s;
  s.public_url = cfg.get_string("public_url");
  while (!s.public_url.empty() && s.public_url.back() == '/') s.public_url.pop_back();
  s.redirect_urls = cfg.get_list("auth.oauth_redirect_urls");
  s.state_ttl_ms = cfg.get_duration_ms("auth.oauth_state_ttl");
  s.jwks_ttl_ms = cfg.get_duration_ms("auth.oauth_jwks_cache");
  s.http_timeout_ms = cfg.get_duration_ms("auth.oauth_http_timeout");
  s.per_ip_per_minute = static_cast<int>(cfg.get_int("auth.oauth_per_ip"));
  std::vector<FieldError> bad;
  for (const auto& name : cfg.names("auth.oauth")) {
    auto m = cfg.get_map("auth.oauth." + name);
    std::string key = "auth.oauth." + name;
    ProviderConfig p;
    p.name = name;
    static const std::vector<std::string> kFields = {"type", "client_id", "client_secret", "issuer", "scopes", "token_auth",
                                                     "authorize_url", "token_url", "userinfo_url", "emails_url", "jwks_url"};
    for (const auto& [field, value] : m)
      if (std::find(kFields.begin(), kFields.end(), field) == kFields.end()) bad.push_back({key + "." + field, "is not a known field"});
    std::string type = m["type"];
    if (type == "github") {
      p.kind = Kind::GitHub;
      p.authorize_url = "https://github.com/login/oauth/authorize";
      p.token_url = "https://github.com/login/oauth/access_token";
      p.userinfo_url = "https://api.github.com/user";
      p.emails_url = "https://api.github.com/user/emails";
      p.scopes = "read:user user:email";
    } else if (type == "wechat") {
      p.kind = Kind::WeChat;
      p.authorize_url = "https://open.weixin.qq.com/connect/qrconnect";
      p.token_url = "https://api.weixin.qq.com/sns/oauth2/access_token";
      p.userinfo_url = "https://api.weixin.qq.com/sns/userinfo";
      p.scopes = "snsapi_login";
    } else if (type == "oidc") {
      p.kind = Kind::Oidc;
      p.scopes = "openid email profile";
      p.issuer = m["issuer"];
      while (!p.issuer.empty() && p.issuer.back() == '/' && p.issuer.size() > 8) p.issuer.pop_back();
      if (!http_url(p.issuer)) bad.push_back({key + ".issuer", "must be the issuer's https:// URL"});
    } else {
      bad.push_back({key + ".type", "must be github, wechat or oidc"});
    }
    p.client_id = m["client_id"];
    p.client_secret = m["client_secret"];
    if (p.client_id.empty()) bad.push_back({key + ".client_id", "is required"});
    if (p.client_secret.empty()) bad.push_back({key + ".client_secret", "is required"});
    if (!m["scopes"].empty()) p.scopes = m["scopes"];
    if (std::string ta = m["token_auth"]; !ta.empty()) {
      if (ta == "client_secret_post") p.secret_in_body = true;
      else if (ta != "client_secret_basic") bad.push_back({key + ".token_auth", "must be client_secret_basic or client_secret_post"});
    }
    for (auto [field, target] : {std::pair{"authorize_url", &p.authorize_url}, std::pair{"token_url", &p.token_url},
                                 std::pair{"userinfo_url", &p.userinfo_url}, std::pair{"emails_url", &p.emails_url},
                                 std::pair{"jwks_url", &p.jwks_url}}) {
      std::string v = m[field];
      if (v.empty()) continue;
      if (!http_url(v)) bad.push_back({key + "." + field, "must be an http(s) URL"});
      *target = v;
    }
    p.redirect_uri = s.public_url + "/v1/auth/oauth/" + name + "/callback";
    s.providers.push_back(std::move(p));
  }
  if (!bad.empty()) {
    std::string detail = "third-party sign-in configuration:";
    for (const auto& b : bad) detail += " " + b.field + " " + b.message + ";";
    return Error::validation(detail, std::move(bad));
  }
  return s;
}

OAuthService::OAuthService(OAuthSettings settings, store::Kv& kv) : settings_(std::move(settings)), kv_(kv) {}

const ProviderConfig* OAuthService::provider(std::string_view name) const {
  for (const auto& p : settings_.providers)
    if (p.name == name) return &p;
  return nullptr;
}

bool OAuthService::allowed_app_redirect(std::string_view url) const {
  if (url.size() > 2048 || url.find_first_of("#\r\n ") != std::string_view::npos) return false;
  for (const auto& allowed : settings_.redirect_urls) {
    if (url == allowed) return true;
    if (!allowed.empty() && allowed.back() == '/' && url.rfind(allowed, 0) == 0 &&
        url.find("/..", allowed.size() - 1) == std::string_view::npos)
      return true;
  }
  return false;
}

namespace {

net::ClientRequest request(const OAuthSettings& s, std::string method, std::string url) {
  net::ClientRequest r;
  r.method = std::move(method);
  r.url = std::move(url);
  r.timeout_ms = s.http_timeout_ms;
  r.connect_timeout_ms = std::min<int64_t>(s.http_timeout_ms, 5'000);
  r.max_response_bytes = 512 * 1024;
  r.headers.emplace_back("Accept", "application/json");
  return r;
}

struct JsonResponse {
  int status = 0;
  js::value body;
};

asio::awaitable<Result<JsonResponse>> fetch_json(net::ClientRequest req, std::string what) {
  auto resp = co_await net::http_fetch(std::move(req));
  if (!resp.ok()) co_return upstream(what + ": " + resp.error().detail);
  boost::system::error_code ec;
  JsonResponse out;
  out.status = resp->status;
  out.body = js::parse(resp->body, ec);
  if (ec) co_return upstream(what + " answered " + std::to_string(resp->status) + " without JSON");
  co_return out;
}

}  // namespace

asio::awaitable<Result<OAuthService::Discovery>> OAuthService::discovery(const ProviderConfig& p) {
  {
    std::lock_guard lock(mu_);
    auto it = discovery_.find(p.name);
    if (it != discovery_.end() && now_ms() - it->second.fetched_ms < settings_.jwks_ttl_ms) co_return it->second;
  }
  auto req = request(settings_, "GET", p.issuer + "/.well-known/openid-configuration");
  auto doc = co_await fetch_json(std::move(req), "OIDC discovery of " + p.issuer);
  if (!doc.ok()) co_return doc.error();
  if (doc->status != 200 || !doc->body.is_object())
    co_return upstream("OIDC discovery of " + p.issuer + " answered " + std::to_string(doc->status));
  const auto& o = doc->body.as_object();
  // OpenID Connect Discovery 4.3: the document must name exactly the issuer we asked.
  if (str(o, "issuer").value_or("") != p.issuer) co_return upstream("OIDC discovery of " + p.issuer + " names another issuer");
  Discovery d;
  d.authorization_endpoint = !p.authorize_url.empty() ? p.authorize_url : str(o, "authorization_endpoint").value_or("");
  d.token_endpoint = !p.token_url.empty() ? p.token_url : str(o, "token_endpoint").value_or("");
  d.userinfo_endpoint = !p.userinfo_url.empty() ? p.userinfo_url : str(o, "userinfo_endpoint").value_or("");
  d.jwks_uri = !p.jwks_url.empty() ? p.jwks_url : str(o, "jwks_uri").value_or("");
  if (auto it = o.find("authorization_response_iss_parameter_supported"); it != o.end() && it->value().is_bool())
    d.iss_parameter_supported = it->value().as_bool();
  if (!http_url(d.authorization_endpoint) || !http_url(d.token_endpoint) || !http_url(d.jwks_uri))
    co_return upstream("OIDC discovery of " + p.issuer + " lacks an authorization, token or jwks endpoint");
  if (!d.userinfo_endpoint.empty() && !http_url(d.userinfo_endpoint)) d.userinfo_endpoint.clear();
  d.fetched_ms = now_ms();
  std::lock_guard lock(mu_);
  discovery_[p.name] = d;
  co_return d;
}

asio::awaitable<Result<std::shared_ptr<const JwkSet>>> OAuthService::jwks(const ProviderConfig& p,
                                                                         std::optional<std::string> want_kid) {
  {
    std::lock_guard lock(mu_);
    auto it = jwks_.find(p.name);
    if (it != jwks_.end() && it->second.keys) {
      int64_t age = now_ms() - it->second.fetched_ms;
      bool fresh = age < settings_.jwks_ttl_ms;
      bool knows = !want_kid || it->second.keys->has_kid(*want_kid);
      if ((fresh && knows) || (fresh && age < kJwksMinRefetchMs)) co_return it->second.keys;
    }
  }
  auto d = co_await discovery(p);
  if (!d.ok()) co_return d.error();
  auto req = request(settings_, "GET", d->jwks_uri);
  auto resp = co_await net::http_fetch(std::move(req));
  if (!resp.ok()) co_return upstream("JWKS of " + p.issuer + ": " + resp.error().detail);
  if (resp->status != 200) co_return upstream("JWKS of " + p.issuer + " answered " + std::to_string(resp->status));
  auto parsed = JwkSet::parse(resp->body);
  if (!parsed.ok()) co_return parsed.error();
  auto keys = std::make_shared<const JwkSet>(std::move(parsed).value());
  std::lock_guard lock(mu_);
  jwks_[p.name] = KeyCache{keys, now_ms()};
  co_return keys;
}

asio::awaitable<Result<AuthorizeResult>> OAuthService::authorize(const ProviderConfig& p,
                                                                 std::optional<std::string> app_redirect, std::string ip) {
  if (app_redirect && !allowed_app_redirect(*app_redirect))
    co_return Error::validation("redirect_uri is not one of auth.oauth_redirect_urls",
                                {{"redirect_uri", "is not an allowed app URL"}});
  auto allowed = co_await count_and_limit(kv_, "oauth:authorize:ip:" + ip, settings_.per_ip_per_minute, 60'000,
                                          "too many sign-ins started from this address");
  if (!allowed.ok()) co_return allowed.error();

  std::string endpoint = p.authorize_url;
  if (p.kind == Kind::Oidc) {
    auto d = co_await discovery(p);
    if (!d.ok()) co_return d.error();
    endpoint = d->authorization_endpoint;
  }
  std::string state = random_token(32);
  std::string verifier = random_token(32);  // 43 characters, RFC 7636's minimum
  std::string nonce = random_token(16);
  std::string binding = random_token(16);
  std::string state_hash = sha256_hex_of(state);
  js::object record{{"p", p.name}, {"v", verifier}, {"n", nonce}, {"b", sha256_hex_of(binding)}};
  if (app_redirect) record["r"] = *app_redirect;
  auto stored = co_await kv_.set("oauth:state:" + state_hash, js::serialize(record), settings_.state_ttl_ms);
  if (!stored.ok()) co_return stored.error();

  std::vector<std::pair<std::string, std::string>> q;
  switch (p.kind) {
    case Kind::WeChat:
      // WeChat's own parameter names and order, and its fragment; it has no PKCE.
      q = {{"appid", p.client_id}, {"redirect_uri", p.redirect_uri}, {"response_type", "code"}, {"scope", p.scopes},
           {"state", state}};
      break;
    case Kind::GitHub:
      q = {{"client_id", p.client_id}, {"redirect_uri", p.redirect_uri}, {"scope", p.scopes}, {"state", state},
           {"code_challenge", pkce_challenge(verifier)}, {"code_challenge_method", "S256"}};
      break;
    case Kind::Oidc:
      q = {{"response_type", "code"}, {"client_id", p.client_id}, {"redirect_uri", p.redirect_uri}, {"scope", p.scopes},
           {"state", state}, {"nonce", nonce}, {"code_challenge", pkce_challenge(verifier)},
           {"code_challenge_method", "S256"}};
      break;
  }
  AuthorizeResult r;
  r.location = net::with_query(endpoint, q);
  if (p.kind == Kind::WeChat) r.location += "#wechat_redirect";
  r.cookie_name = cookie_name_for(state_hash);
  r.cookie_value = binding;
  co_return r;
}

asio::awaitable<Result<CallbackResult>> OAuthService::callback(const ProviderConfig& p, CallbackParams params,
                                                               std::optional<std::string>* app_redirect_on_error) {
  if (!params.state || params.state->empty() || params.state->size() > kMaxStateBytes)
    co_return invalid_state("state is missing");
  std::string state_hash = sha256_hex_of(*params.state);
  std::string key = "oauth:state:" + state_hash;
  auto stored = co_await kv_.get(key);
  if (!stored.ok()) co_return stored.error();
  if (!stored->has_value()) co_return invalid_state("unknown, expired or already used state");
  // Single use: only the caller that deletes the record continues.
  auto consumed = co_await kv_.del(key);
  if (!consumed.ok()) co_return consumed.error();
  if (!*consumed) co_return invalid_state("this state was just used");
  boost::system::error_code ec;
  auto rec_value = js::parse(**stored, ec);
  if (ec || !rec_value.is_object()) co_return Error::internal("unreadable sign-in state");
  const auto& rec = rec_value.as_object();
  if (str(rec, "p").value_or("") != p.name) co_return invalid_state("the state belongs to another provider");
  CallbackResult out;
  if (auto r = str(rec, "r")) out.app_redirect = *r;
  if (app_redirect_on_error) *app_redirect_on_error = out.app_redirect;
  out.cookie_name = cookie_name_for(state_hash);
  auto binding = cookie_value(params.cookie_header, out.cookie_name);
  if (!binding || !constant_time_equal(sha256_hex_of(*binding), str(rec, "b").value_or("")))
    co_return invalid_state("this sign-in was started in another browser");

  if (params.error)
    co_return denied("the provider refused: " + clean(*params.error) +
                     (params.error_description ? " (" + clean(*params.error_description) + ")" : ""));
  if (!params.code || params.code->empty() || params.code->size() > kMaxCodeBytes)
    co_return Error::bad_request("invalid_callback", "the callback has no code");
  if (p.kind == Kind::Oidc) {
    auto d = co_await discovery(p);
    if (!d.ok()) co_return d.error();
    // RFC 9207: the callback names the issuer that sent it (mix-up defence).
    if (params.iss && *params.iss != p.issuer) co_return invalid_state("the callback comes from another issuer");
    if (!params.iss && d->iss_parameter_supported) co_return invalid_state("the callback lacks the issuer (iss)");
  }

  std::string verifier = str(rec, "v").value_or("");
  std::string nonce = str(rec, "n").value_or("");
  Result<Identity> identity = Error::internal();
  switch (p.kind) {
    case Kind::GitHub: identity = co_await github_identity(p, *params.code, verifier); break;
    case Kind::WeChat: identity = co_await wechat_identity(p, *params.code); break;
    case Kind::Oidc: identity = co_await oidc_identity(p, *params.code, verifier, nonce); break;
  }
  if (!identity.ok()) co_return std::move(identity).error();
  out.identity = std::move(identity).value();
  log::get("auth")->info(log::fields({{"msg", "third-party sign-in"}, {"provider", p.name}, {"type", kind_name(p.kind)},
                                      {"email_verified", out.identity.email_verified ? "true" : "false"}}));
  co_return out;
}

asio::awaitable<Result<Identity>> OAuthService::github_identity(const ProviderConfig& p, const std::string& code,
                                                                const std::string& verifier) {
  auto token_req = request(settings_, "POST", p.token_url);
  token_req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  token_req.body = net::form_encode({{"client_id", p.client_id}, {"client_secret", p.client_secret}, {"code", code},
                                     {"redirect_uri", p.redirect_uri}, {"code_verifier", verifier}});
  auto tok = co_await fetch_json(std::move(token_req), "GitHub token endpoint");
  if (!tok.ok()) co_return tok.error();
  if (!tok->body.is_object()) co_return upstream("GitHub token endpoint answered no object");
  const auto& t = tok->body.as_object();
  // GitHub answers a refused code with 200 and an "error" field.
  if (auto err = str(t, "error"))
    co_return denied("GitHub refused the code: " + clean(*err) + " " + clean(str(t, "error_description").value_or("")));
  auto access = str(t, "access_token");
  if (tok->status != 200 || !access) co_return upstream("GitHub token endpoint answered " + std::to_string(tok->status));

  auto api = [&](const std::string& url) {
    auto r = request(settings_, "GET", url);
    r.headers = {{"Accept", "application/vnd.github+json"}, {"Authorization", "Bearer " + *access},
                 {"X-GitHub-Api-Version", "2022-11-28"}};
    return r;
  };
  auto user_req = api(p.userinfo_url);
  auto user = co_await fetch_json(std::move(user_req), "GitHub user API");
  if (!user.ok()) co_return user.error();
  if (user->status != 200 || !user->body.is_object()) co_return upstream("GitHub user API answered " + std::to_string(user->status));
  const auto& u = user->body.as_object();
  Identity id;
  if (auto it = u.find("id"); it != u.end() && (it->value().is_int64() || it->value().is_uint64()))
    id.subject = it->value().is_int64() ? std::to_string(it->value().as_int64()) : std::to_string(it->value().as_uint64());
  if (id.subject.empty()) co_return upstream("GitHub user API gave no id");
  id.name = str(u, "name").value_or("");
  if (id.name.empty()) id.name = str(u, "login").value_or("");

  // The profile's public email says nothing about verification: ask for the verified ones.
  auto emails_req = api(p.emails_url);
  auto emails = co_await fetch_json(std::move(emails_req), "GitHub emails API");
  if (emails.ok() && emails->status == 200 && emails->body.is_array()) {
    for (int pass = 0; pass < 2 && id.email.empty(); ++pass) {
      for (const auto& e : emails->body.as_array()) {
        if (!e.is_object()) continue;
        const auto& eo = e.as_object();
        bool verified = eo.contains("verified") && eo.at("verified").is_bool() && eo.at("verified").as_bool();
        bool primary = eo.contains("primary") && eo.at("primary").is_bool() && eo.at("primary").as_bool();
        auto addr = str(eo, "email");
        if (verified && addr && (primary || pass == 1)) {
          id.email = *addr;
          id.email_verified = true;
          break;
        }
      }
    }
  }
  co_return id;
}

asio::awaitable<Result<Identity>> OAuthService::wechat_identity(const ProviderConfig& p, const std::string& code) {
  auto token_url = net::with_query(p.token_url, {{"appid", p.client_id}, {"secret", p.client_secret}, {"code", code},
                                                 {"grant_type", "authorization_code"}});
  auto token_req = request(settings_, "GET", token_url);
  auto tok = co_await fetch_json(std::move(token_req), "WeChat token endpoint");
  if (!tok.ok()) co_return tok.error();
  if (!tok->body.is_object()) co_return upstream("WeChat token endpoint answered no object");
  const auto& t = tok->body.as_object();
  // WeChat reports failures as {"errcode": N, "errmsg": "..."}, usually with status 200.
  if (auto it = t.find("errcode"); it != t.end() && !(it->value().is_int64() && it->value().as_int64() == 0))
    co_return denied("WeChat refused the code: " + clean(js::serialize(it->value())) + " " + clean(str(t, "errmsg").value_or("")));
  auto access = str(t, "access_token");
  auto openid = str(t, "openid");
  if (tok->status != 200 || !access || !openid || openid->empty())
    co_return upstream("WeChat token endpoint gave no access_token/openid");
  Identity id;
  id.subject = str(t, "unionid").value_or("");

  auto info_url = net::with_query(p.userinfo_url, {{"access_token", *access}, {"openid", *openid}, {"lang", "en"}});
  auto info_req = request(settings_, "GET", info_url);
  auto info = co_await fetch_json(std::move(info_req), "WeChat userinfo endpoint");
  if (info.ok() && info->status == 200 && info->body.is_object() && !info->body.as_object().contains("errcode")) {
    const auto& i = info->body.as_object();
    id.name = str(i, "nickname").value_or("");
    if (id.subject.empty()) id.subject = str(i, "unionid").value_or("");
  }
  // unionid is the same across a company's WeChat apps; openid is per app.
  if (id.subject.empty()) id.subject = *openid;
  co_return id;
}

asio::awaitable<Result<Identity>> OAuthService::oidc_identity(const ProviderConfig& p, const std::string& code,
                                                              const std::string& verifier, const std::string& nonce) {
  auto d = co_await discovery(p);
  if (!d.ok()) co_return d.error();
  auto token_req = request(settings_, "POST", d->token_endpoint);
  token_req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  std::vector<std::pair<std::string, std::string>> form = {{"grant_type", "authorization_code"}, {"code", code},
                                                           {"redirect_uri", p.redirect_uri}, {"code_verifier", verifier}};
  if (p.secret_in_body) {
    form.emplace_back("client_id", p.client_id);
    form.emplace_back("client_secret", p.client_secret);
  } else {
    token_req.headers.emplace_back("Authorization", basic_auth(p.client_id, p.client_secret));
  }
  token_req.body = net::form_encode(form);
  auto tok = co_await fetch_json(std::move(token_req), "token endpoint of " + p.issuer);
  if (!tok.ok()) co_return tok.error();
  if (!tok->body.is_object()) co_return upstream("token endpoint of " + p.issuer + " answered no object");
  const auto& t = tok->body.as_object();
  if (tok->status != 200) {
    if (tok->status == 400 || tok->status == 401)
      co_return denied("the provider refused the code: " + clean(str(t, "error").value_or("")) + " " +
                       clean(str(t, "error_description").value_or("")));
    co_return upstream("token endpoint of " + p.issuer + " answered " + std::to_string(tok->status));
  }
  auto id_token = str(t, "id_token");
  if (!id_token) co_return Error::unauthorized("the provider sent no id_token", "invalid_id_token");
  HARMAR_CO_TRY(auto kid, id_token_kid(*id_token));
  HARMAR_CO_TRY(auto keys, co_await jwks(p, kid));
  IdTokenExpectations expect;
  expect.issuer = p.issuer;
  expect.client_id = p.client_id;
  expect.nonce = nonce;
  expect.now_s = now_ms() / 1000;
  expect.skew_s = settings_.clock_skew_s;
  HARMAR_CO_TRY(auto claims, verify_id_token(*id_token, *keys, expect));

  Identity id;
  id.subject = claims.sub;
  id.name = claims.name;
  id.email = claims.email;
  id.email_verified = !claims.email.empty() && claims.email_verified.value_or(false);
  auto access = str(t, "access_token");
  if ((id.email.empty() || !claims.email_verified.has_value()) && access && !d->userinfo_endpoint.empty()) {
    auto info_req = request(settings_, "GET", d->userinfo_endpoint);
    info_req.headers.emplace_back("Authorization", "Bearer " + *access);
    auto info = co_await fetch_json(std::move(info_req), "userinfo endpoint of " + p.issuer);
    if (!info.ok()) co_return info.error();
    if (info->status != 200 || !info->body.is_object())
      co_return upstream("userinfo endpoint of " + p.issuer + " answered " + std::to_string(info->status));
    const auto& u = info->body.as_object();
    // OIDC Core 5.3.2: userinfo must be about the same subject as the id_token.
    if (str(u, "sub").value_or("") != claims.sub)
      co_return Error::unauthorized("userinfo names another subject than the id_token", "invalid_id_token");
    id.email = str(u, "email").value_or("");
    bool verified = false;
    if (auto it = u.find("email_verified"); it != u.end())
      verified = (it->value().is_bool() && it->value().as_bool()) || (it->value().is_string() && it->value().as_string() == "true");
    id.email_verified = !id.email.empty() && verified;
    if (id.name.empty()) id.name = str(u, "name").value_or("");
  }
  co_return id;
}

}  // namespace harmar::auth::oauth
