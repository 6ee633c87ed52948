#include "auth/auth_service.hpp"

#include <openssl/evp.h>

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <regex>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "net/http.hpp"
#include "store/detail/async_semaphore.hpp"

namespace harmar::auth {

namespace js = boost::json;

// ---------------------------------------------------------------------------------------------
// DTOs

js::object User::to_json() const {
  js::array r;
  for (const auto& role : roles) r.emplace_back(role);
  // email is "" for accounts without one: clients read it as a string, always.
  return js::object{{"id", id}, {"email", email}, {"name", name}, {"email_verified", email_verified},
                    {"roles", std::move(r)}, {"created_at", format_rfc3339(created_at_ms)}};
}

js::object TokenPair::to_json() const {
  return js::object{{"user", user.to_json()},
                    {"access_token", access_token},
                    {"refresh_token", refresh_token},
                    {"token_type", "Bearer"},
                    {"expires_in", expires_in_s}};
}

ClientInfo ClientInfo::from(const net::Request& req) {
  ClientInfo c;
  c.ip = std::string(req.remote_ip());
  std::string_view ua = req.header("User-Agent");
  c.user_agent = std::string(ua.substr(0, 512));
  return c;
}

Settings Settings::from(const config::Config& cfg) {
  Settings s;
  s.issuer = cfg.get_string("auth.issuer");
  // One public URL for every link the server mails (the key is the notify module's).
  if (cfg.schema().find("public_url")) s.public_url = cfg.get_string("public_url");
  while (!s.public_url.empty() && s.public_url.back() == '/') s.public_url.pop_back();
  s.access_ttl_ms = cfg.get_duration_ms("auth.access_ttl");
  s.refresh_idle_ms = cfg.get_duration_ms("auth.refresh_idle_timeout");
  s.refresh_lifetime_ms = cfg.get_duration_ms("auth.refresh_lifetime");
  s.verify_token_ttl_ms = cfg.get_duration_ms("auth.verify_email_ttl");
  s.reset_token_ttl_ms = cfg.get_duration_ms("auth.reset_password_ttl");
  s.hash.opslimit = static_cast<uint64_t>(cfg.get_int("auth.password.opslimit"));
  s.hash.memlimit = static_cast<std::size_t>(cfg.get_size("auth.password.memlimit"));
  s.max_concurrent_hashes = static_cast<int>(cfg.get_int("auth.password.max_concurrent"));
  s.captcha_after_failures = static_cast<int>(cfg.get_int("auth.captcha_after_failures"));
  s.failure_window_ms = cfg.get_duration_ms("auth.failure_window");
  s.rate_limit_ip = static_cast<int>(cfg.get_int("auth.rate_limit.per_ip"));
  s.rate_limit_account = static_cast<int>(cfg.get_int("auth.rate_limit.per_account"));
  s.rate_limit_window_ms = cfg.get_duration_ms("auth.rate_limit.window");
  s.registration_open = cfg.get_bool("auth.registration_open");
  s.api_key_touch_ms = cfg.get_duration_ms("auth.api_key_touch_interval");
  s.token_cache_entries = static_cast<std::size_t>(cfg.get_int("auth.token_cache_entries"));
  return s;
}

// ---------------------------------------------------------------------------------------------
// Helpers

std::string sha256_hex(std::string_view s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::optional<std::string> normalize_email(std::string_view e) {
  while (!e.empty() && std::isspace(static_cast<unsigned char>(e.front()))) e.remove_prefix(1);
  while (!e.empty() && std::isspace(static_cast<unsigned char>(e.back()))) e.remove_suffix(1);
  if (e.size() < 3 || e.size() > 254) return std::nullopt;
  auto at = e.rfind('@');
  if (at == std::string_view::npos || at == 0 || at > 64 || at + 1 >= e.size()) return std::nullopt;
  if (e.find('@') != at) return std::nullopt;
  std::string_view domain = e.substr(at + 1);
  if (domain.find('.') == std::string_view::npos || domain.front() == '.' || domain.back() == '.' ||
      domain.find("..") != std::string_view::npos)
    return std::nullopt;
  std::string out;
  out.reserve(e.size());
  for (unsigned char c : e) {
    if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' || c == '\\') return std::nullopt;
    out += static_cast<char>(std::tolower(c));
  }
  return out;
}

namespace {

constexpr int64_t kLeewayS = 5;
constexpr std::string_view kRefreshPrefix = "hrt_";
constexpr std::size_t kMaxOpaqueToken = 256;

auto logger() {
  static auto l = log::get("auth");
  return l;
}

Error invalid_token(std::string detail) { return Error::unauthorized(std::move(detail), "invalid_token"); }
Error invalid_link() { return Error::bad_request("invalid_token", "the link is invalid, expired or was already used"); }

bool valid_role_name(std::string_view s) {
  if (s.empty() || s.size() > 64 || !std::islower(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::islower(c) || std::isdigit(c) || c == '_' || c == '-' || c == '.';
  });
}

bool valid_permission(std::string_view s) {
  if (s == "*") return true;
  if (s.empty() || s.size() > 128 || !std::islower(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::islower(c) || std::isdigit(c) || c == '_' || c == '-' || c == '.' || c == ':' || c == '*';
  });
}

bool is_conflict(const Error& e) { return e.status == 409; }

struct CachedToken {
  Principal principal;
  int64_t exp_s = 0;
};

// Verified access tokens of this thread (each worker has its own: no lock on the hot path).
std::unordered_map<std::string, CachedToken>& token_cache() {
  thread_local std::unordered_map<std::string, CachedToken> cache;
  return cache;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// RevocationList

void RevocationList::add(const std::string& sid, int64_t at_ms) {
  std::unique_lock lock(mu_);
  revoked_.emplace(sid, at_ms);
}

bool RevocationList::contains(std::string_view sid) const {
  std::shared_lock lock(mu_);
  return revoked_.find(std::string(sid)) != revoked_.end();
}

void RevocationList::purge(int64_t before_ms) {
  std::unique_lock lock(mu_);
  for (auto it = revoked_.begin(); it != revoked_.end();) it = it->second < before_ms ? revoked_.erase(it) : std::next(it);
}

std::size_t RevocationList::size() const {
  std::shared_lock lock(mu_);
  return revoked_.size();
}

// ---------------------------------------------------------------------------------------------
// AuthService: state

AuthService::AuthService(Settings settings, store::Database& db, store::Kv& kv, store::PubSub& pubsub, ServerSecret secret)
    : settings_(std::move(settings)),
      db_(db),
      kv_(kv),
      pubsub_(pubsub),
      keys_(db, secret, settings_.access_ttl_ms),
      hasher_(settings_.hash, static_cast<std::size_t>(std::max(1, settings_.max_concurrent_hashes))),
      verifiers_(std::make_shared<CredentialVerifiers>()),
      ready_lock_(std::make_unique<store::detail::AsyncSemaphore>(1)) {
  verifiers_->add(std::string(kApiKeyPrefix),
                  [this](std::string token) { return verify_api_key(std::move(token)); });
}

AuthService::~AuthService() = default;

asio::awaitable<Status> AuthService::ensure_ready() {
  if (ready_.load(std::memory_order_acquire)) co_return Status{};
  bool got = co_await ready_lock_->acquire(std::chrono::seconds(30));
  if (!got) co_return Error::unavailable("the auth module is still starting");
  store::detail::SemaphorePermit permit(*ready_lock_);
  if (ready_.load(std::memory_order_acquire)) co_return Status{};
  auto st = co_await refresh_state();
  if (!st.ok()) co_return st;
  ready_.store(true, std::memory_order_release);
  co_return Status{};
}

asio::awaitable<Status> AuthService::refresh_state() {
  auto k = co_await keys_.reload();
  if (!k.ok()) co_return k;
  last_key_reload_ms_.store(mono_ms());
  int64_t now = now_ms();
  int64_t horizon = now - settings_.access_ttl_ms - 60'000;
  auto revoked = co_await repo::revoked_since(db_, horizon);
  if (!revoked.ok()) co_return revoked.error();
  for (const auto& [sid, at] : *revoked) revoked_.add(sid, at);
  revoked_.purge(horizon);
  co_return co_await load_roles();
}

asio::awaitable<Status> AuthService::load_roles() {
  auto roles = co_await repo::all_roles(db_);
  if (!roles.ok()) co_return roles.error();
  std::unordered_map<std::string, std::set<std::string>> map;
  for (auto& r : *roles) map[r.name] = std::set<std::string>(r.permissions.begin(), r.permissions.end());
  std::unique_lock lock(roles_mu_);
  role_permissions_ = std::move(map);
  co_return Status{};
}

void AuthService::on_revoked_message(std::string_view payload) {
  int64_t now = now_ms();
  while (!payload.empty()) {
    auto comma = payload.find(',');
    auto sid = payload.substr(0, comma);
    if (!sid.empty() && sid.size() <= 64) revoked_.add(std::string(sid), now);
    if (comma == std::string_view::npos) break;
    payload.remove_prefix(comma + 1);
  }
}

asio::awaitable<void> AuthService::broadcast_revoked(std::vector<std::string> session_ids) {
  if (session_ids.empty()) co_return;
  int64_t now = now_ms();
  std::string payload;
  for (const auto& sid : session_ids) {
    revoked_.add(sid, now);
    if (!payload.empty()) payload += ',';
    payload += sid;
  }
  auto st = co_await pubsub_.publish(kRevokedChannel, payload);
  if (!st.ok())
    logger()->warn(log::fields({{"msg", "revocation not broadcast; other nodes learn it at their next reload"},
                                {"error", st.error().detail}}));
}

asio::awaitable<Status> AuthService::rate_limit(std::string key, int limit) {
  if (limit <= 0) co_return Status{};
  auto n = co_await kv_.incr(key, 1, settings_.rate_limit_window_ms);
  if (!n.ok()) co_return n.error();
  if (*n <= limit) co_return Status{};
  auto ttl = co_await kv_.ttl(key);
  int64_t ms = settings_.rate_limit_window_ms;
  if (ttl.ok() && ttl->has_value()) ms = **ttl;
  int secs = static_cast<int>(std::max<int64_t>(1, (ms + 999) / 1000));
  co_return Error::rate_limited(secs, "too many attempts; retry later");
}

void AuthService::spawn(std::function<asio::awaitable<void>()> work) {
  if (spawn_) spawn_(std::move(work));
}

asio::awaitable<Status> AuthService::mail(Mail m) {
  if (send_mail_) co_return co_await send_mail_(std::move(m));
  logger()->info(log::fields({{"msg", "mail (no mailer configured)"}, {"to", m.to}, {"subject", m.subject}, {"text", m.text}}));
  co_return Status{};
}

asio::awaitable<void> AuthService::audit(AuditEvent event) {
  auto st = co_await repo::insert_audit(db_, new_id(), now_ms(), event);
  if (!st.ok())
    logger()->error(log::fields({{"msg", "audit event not recorded"}, {"event", event.event}, {"error", st.error().detail}}));
}

// ---------------------------------------------------------------------------------------------
// Sessions and tokens

std::string AuthService::sign_access_token(const User& user, const repo::SessionRow& session, int64_t now) {
  auto signer = keys_.signer();
  if (!signer) return {};
  jwt::Claims c;
  c.iss = settings_.issuer;
  c.sub = user.id;
  c.sid = session.id;
  c.roles = user.roles;
  c.iat = now / 1000;
  c.nbf = c.iat;
  c.exp = std::min(now + settings_.access_ttl_ms, session.expires_at) / 1000;
  c.jti = random_token(12);
  return jwt::sign(c, signer->kid, signer->sk);
}

asio::awaitable<Result<TokenPair>> AuthService::issue(const User& user, const repo::SessionRow& session) {
  auto ready = co_await ensure_ready();
  if (!ready.ok()) co_return ready.error();
  int64_t now = now_ms();
  TokenPair pair;
  pair.user = user;
  pair.refresh_token = std::string(kRefreshPrefix) + random_token(32);
  auto stored = co_await repo::insert_refresh_token(db_, sha256_hex(pair.refresh_token), session.id, now);
  if (!stored.ok()) co_return stored.error();
  pair.access_token = sign_access_token(user, session, now);
  if (pair.access_token.empty()) co_return Error::unavailable("no signing key is loaded");
  pair.expires_in_s = std::min(now + settings_.access_ttl_ms, session.expires_at) / 1000 - now / 1000;
  co_return pair;
}

asio::awaitable<Result<TokenPair>> AuthService::start_session(std::string user_id, ClientInfo client, std::string method) {
  auto user = co_await repo::user_by_id(db_, user_id);
  if (!user.ok()) co_return user.error();
  if (!*user) co_return Error::not_found("no such user");
  int64_t now = now_ms();
  repo::SessionRow s;
  s.id = new_id();
  s.user_id = user_id;
  s.method = method.substr(0, 64);
  s.ip = client.ip;
  s.user_agent = client.user_agent;
  s.created_at = now;
  s.last_used_at = now;
  s.expires_at = now + settings_.refresh_lifetime_ms;
  auto ins = co_await repo::insert_session(db_, s);
  if (!ins.ok()) co_return ins.error();
  auto pair = co_await issue((*user)->user, s);
  if (!pair.ok()) co_return pair;
  AuditEvent e;
  e.event = method == "register" ? "register" : "login.ok";
  e.user_id = user_id;
  e.client = client;
  e.detail = js::object{{"method", method == "register" ? "password" : method}, {"session_id", s.id}};
  co_await audit(std::move(e));
  co_return pair;
}

asio::awaitable<Result<TokenPair>> AuthService::register_user(Credentials c, ClientInfo client) {
  if (!settings_.registration_open) co_return Error{403, "registration_closed", "this server does not take sign-ups"};
  auto email = normalize_email(c.email);
  std::vector<FieldError> errors;
  if (!email) errors.push_back({"email", "is not a valid email address"});
  auto policy = check_password_policy(c.password);
  if (!policy.ok()) errors.push_back(policy.error().errors.front());
  if (c.name.size() > 200) errors.push_back({"name", "must be at most 200 bytes"});
  if (!errors.empty()) co_return Error::validation("the registration is invalid", std::move(errors));
  auto limited = co_await rate_limit("auth:rl:ip:" + client.ip, settings_.rate_limit_ip);
  if (!limited.ok()) co_return limited.error();

  auto existing = co_await repo::user_by_email(db_, *email);
  if (!existing.ok()) co_return existing.error();
  if (*existing) co_return Error::conflict("an account with this email exists", "email_taken");
  auto hash = co_await hasher_.hash(std::move(c.password));
  if (!hash.ok()) co_return hash.error();

  User u;
  u.id = new_id();
  u.email = *email;
  u.name = c.name;
  u.created_at_ms = now_ms();
  u.roles = {"user"};
  {
    auto tx = co_await db_.begin();
    if (!tx.ok()) co_return tx.error();
    auto ins = co_await repo::insert_user(**tx, u, *hash);
    if (!ins.ok()) {
      if (is_conflict(ins.error())) co_return Error::conflict("an account with this email exists", "email_taken");
      co_return ins.error();
    }
    auto role = co_await repo::add_user_role(**tx, u.id, "user");
    if (!role.ok()) co_return role.error();
    auto committed = co_await (*tx)->commit();
    if (!committed.ok()) co_return committed.error();
  }
  auto pair = co_await start_session(u.id, client, "register");
  if (!pair.ok()) co_return pair;
  if (spawn_) {
    spawn([this, u, client] { return send_verification(u, client); });
  } else {
    co_await send_verification(u, client);
  }
  co_return pair;
}

asio::awaitable<Result<TokenPair>> AuthService::login(Credentials c, ClientInfo client) {
  auto email = normalize_email(c.email);
  if (!email) co_return Error::validation("email is not a valid email address", {{"email", "is not a valid email address"}});
  if (c.password.size() > kMaxPasswordChars * 4)
    co_return Error::validation("the password is too long", {{"password", "is too long"}});
  auto by_ip = co_await rate_limit("auth:rl:ip:" + client.ip, settings_.rate_limit_ip);
  if (!by_ip.ok()) co_return by_ip.error();
  auto by_account = co_await rate_limit("auth:rl:acct:" + *email, settings_.rate_limit_account);
  if (!by_account.ok()) co_return by_account.error();

  std::string fail_key = "auth:fail:" + *email;
  if (settings_.captcha_after_failures > 0) {
    auto failures = co_await kv_.get(fail_key);
    if (!failures.ok()) co_return failures.error();
    int64_t n = failures->has_value() ? std::strtoll((*failures)->c_str(), nullptr, 10) : 0;
    if (n >= settings_.captcha_after_failures) {
      if (!c.captcha_id || !c.captcha_answer || c.captcha_id->empty())
        co_return Error::unauthorized("solve a captcha (GET /v1/auth/captcha) and send captcha_id and captcha_answer",
                                      "captcha_required");
      auto verifier = find_captcha_ ? find_captcha_() : nullptr;
      if (!verifier) co_return Error::unauthorized("no captcha service is available on this server", "captcha_required");
      bool solved = co_await verifier->verify(*c.captcha_id, *c.captcha_answer);
      if (!solved) {
        AuditEvent e{"login.captcha_failed", "", client, js::object{{"email", *email}}};
        co_await audit(std::move(e));
        co_return Error::unauthorized("the captcha answer was wrong or expired; solve a new one", "captcha_required");
      }
    }
  }

  auto found = co_await repo::user_by_email(db_, *email);
  if (!found.ok()) co_return found.error();
  std::string stored = *found ? (*found)->password_hash : std::string();
  auto verdict = co_await hasher_.verify(stored, std::move(c.password));
  if (!verdict.ok()) co_return verdict.error();
  if (!verdict->ok) {
    if (settings_.captcha_after_failures > 0) {
      auto n = co_await kv_.incr(fail_key, 1, settings_.failure_window_ms);
      (void)n;
    }
    AuditEvent e{"login.failed", *found ? (*found)->user.id : "", client, js::object{{"email", *email}}};
    co_await audit(std::move(e));
    co_return Error::unauthorized("wrong email or password", "invalid_credentials");
  }
  const repo::UserRow& row = **found;
  if (settings_.captcha_after_failures > 0) {
    auto cleared = co_await kv_.del(fail_key);
    (void)cleared;
  }
  if (!verdict->rehashed.empty()) {
    auto up = co_await repo::set_password_hash(db_, row.user.id, verdict->rehashed);
    if (!up.ok()) logger()->warn(log::fields({{"msg", "rehash not stored"}, {"error", up.error().detail}}));
  }
  co_return co_await start_session(row.user.id, client, "password");
}

asio::awaitable<Result<TokenPair>> AuthService::refresh(std::string token, ClientInfo client) {
  auto limited = co_await rate_limit("auth:rl:ip:" + client.ip, settings_.rate_limit_ip);
  if (!limited.ok()) co_return limited.error();
  if (token.size() > kMaxOpaqueToken || token.rfind(kRefreshPrefix, 0) != 0) co_return invalid_token("unknown refresh token");
  std::string hash = sha256_hex(token);
  int64_t now = now_ms();
  auto spent = co_await repo::spend_refresh_token(db_, hash, now);
  if (!spent.ok()) co_return spent.error();
  if (!*spent) {
    auto sid = co_await repo::refresh_token_session(db_, hash);
    if (!sid.ok()) co_return sid.error();
    if (!*sid) co_return invalid_token("unknown refresh token");
    // A spent token came back: someone holds a copy. End the whole session (RFC 9700 §4.14.2).
    auto session = co_await repo::session_by_id(db_, **sid);
    auto ended = co_await repo::revoke_session(db_, **sid, now, "refresh_reuse");
    if (!ended.ok()) co_return ended.error();
    co_await broadcast_revoked(*ended);
    AuditEvent e{"refresh.reuse", session.ok() && *session ? (*session)->user_id : "", client,
                 js::object{{"session_id", **sid}}};
    co_await audit(std::move(e));
    co_return Error::unauthorized("this refresh token was already used; the session has been ended", "refresh_token_reused");
  }
  auto session = co_await repo::session_by_id(db_, **spent);
  if (!session.ok()) co_return session.error();
  if (!*session) co_return invalid_token("unknown session");
  repo::SessionRow s = std::move(**session);
  if (s.revoked_at) co_return invalid_token("the session has ended");
  if (s.expires_at <= now || s.last_used_at + settings_.refresh_idle_ms <= now) {
    auto ended = co_await repo::revoke_session(db_, s.id, now, "expired");
    if (ended.ok()) co_await broadcast_revoked(*ended);
    co_return invalid_token("the session has expired; sign in again");
  }
  auto user = co_await repo::user_by_id(db_, s.user_id);
  if (!user.ok()) co_return user.error();
  if (!*user) co_return invalid_token("the account no longer exists");
  auto touched = co_await repo::touch_session(db_, s.id, now, client.ip, client.user_agent);
  if (!touched.ok()) co_return touched.error();
  auto pair = co_await issue((*user)->user, s);
  if (!pair.ok()) co_return pair;
  AuditEvent e{"refresh", s.user_id, client, js::object{{"session_id", s.id}}};
  co_await audit(std::move(e));
  co_return pair;
}

asio::awaitable<Status> AuthService::logout(std::optional<Principal> who, std::optional<std::string> refresh_token,
                                            ClientInfo client) {
  std::vector<std::string> sids;
  std::string user_id;
  if (who && who->kind == Principal::Kind::User && !who->session_id.empty()) {
    sids.push_back(who->session_id);
    user_id = who->user_id;
  }
  if (refresh_token && !refresh_token->empty()) {
    if (refresh_token->size() > kMaxOpaqueToken) co_return invalid_token("unknown refresh token");
    auto sid = co_await repo::refresh_token_session(db_, sha256_hex(*refresh_token));
    if (!sid.ok()) co_return sid.error();
    if (!*sid) co_return invalid_token("unknown refresh token");
    if (std::find(sids.begin(), sids.end(), **sid) == sids.end()) sids.push_back(**sid);
  }
  if (sids.empty()) co_return Error::unauthorized("send an access token or a refresh_token");
  int64_t now = now_ms();
  std::vector<std::string> ended;
  for (const auto& sid : sids) {
    if (user_id.empty()) {
      auto s = co_await repo::session_by_id(db_, sid);
      if (s.ok() && *s) user_id = (*s)->user_id;
    }
    auto r = co_await repo::revoke_session(db_, sid, now, "logout");
    if (!r.ok()) co_return r.error();
    ended.insert(ended.end(), r->begin(), r->end());
  }
  co_await broadcast_revoked(ended);
  js::array ids;
  for (const auto& s : sids) ids.emplace_back(s);
  AuditEvent e{"logout", user_id, client, js::object{{"session_ids", std::move(ids)}}};
  co_await audit(std::move(e));
  co_return Status{};
}

asio::awaitable<Result<std::vector<repo::SessionRow>>> AuthService::sessions(const std::string& user_id,
                                                                             const std::optional<std::string>& before,
                                                                             int limit) {
  co_return co_await repo::live_sessions(db_, user_id, now_ms(), settings_.refresh_idle_ms, before, limit);
}

asio::awaitable<Status> AuthService::end_session(const Principal& who, std::string session_id, ClientInfo client) {
  auto s = co_await repo::session_by_id(db_, session_id);
  if (!s.ok()) co_return s.error();
  if (!*s || (*s)->user_id != who.user_id) co_return Error::not_found("no such session");
  auto ended = co_await repo::revoke_session(db_, session_id, now_ms(), "ended_by_user");
  if (!ended.ok()) co_return ended.error();
  co_await broadcast_revoked(*ended);
  AuditEvent e{"session.ended", who.user_id, client, js::object{{"session_id", session_id}}};
  co_await audit(std::move(e));
  co_return Status{};
}

// ---------------------------------------------------------------------------------------------
// Authentication of requests

asio::awaitable<Result<Principal>> AuthService::authenticate(const net::Request& req) {
  std::string token;
  std::string_view h = req.header("Authorization");
  if (!h.empty()) {
    if (h.size() <= 7 || !net::iequals(h.substr(0, 7), "Bearer "))
      co_return Error::unauthorized("use Authorization: Bearer <token>");
    h.remove_prefix(7);
    while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
    while (!h.empty() && h.back() == ' ') h.remove_suffix(1);
    token = std::string(h);
  } else if (auto q = req.query_param("access_token"); q && net::iequals(req.header("Upgrade"), "websocket")) {
    token = std::move(*q);
  } else {
    co_return Error::unauthorized("authentication required: send Authorization: Bearer <token>");
  }
  co_return co_await authenticate_bearer(std::move(token));
}

asio::awaitable<Result<Principal>> AuthService::authenticate_bearer(std::string token) {
  if (token.empty() || token.size() > jwt::kMaxTokenBytes) co_return invalid_token("malformed bearer token");
  if (auto v = verifiers_->find(token)) co_return co_await (*v)(std::move(token));
  co_return co_await verify_access_token(std::move(token));
}

asio::awaitable<Result<Principal>> AuthService::verify_access_token(std::string token) {
  auto ready = co_await ensure_ready();
  if (!ready.ok()) co_return ready.error();
  int64_t now_s = now_ms() / 1000;
  auto& cache = token_cache();
  if (auto it = cache.find(token); it != cache.end()) {
    if (it->second.exp_s > now_s - kLeewayS) {
      if (revoked_.contains(it->second.principal.session_id)) co_return invalid_token("the session has ended");
      co_return it->second.principal;
    }
    cache.erase(it);
  }
  auto key_for = [this](std::string_view kid) { return keys_.public_key(kid); };
  jwt::VerifyOptions opts{settings_.issuer, now_s, kLeewayS};
  auto claims = jwt::verify(token, key_for, opts);
  if (!claims.ok() && claims.error().detail == "unknown kid") {
    // A key another node (or `harmar auth rotate-keys`) just made; look again, at most every 2 s.
    int64_t last = last_key_reload_ms_.load();
    if (mono_ms() - last > 2000 && last_key_reload_ms_.compare_exchange_strong(last, mono_ms())) {
      auto reloaded = co_await keys_.reload();
      if (reloaded.ok()) claims = jwt::verify(token, key_for, opts);
    }
  }
  if (!claims.ok()) co_return claims.error();
  if (revoked_.contains(claims->sid)) co_return invalid_token("the session has ended");
  Principal p;
  p.kind = Principal::Kind::User;
  p.id = claims->sub;
  p.user_id = claims->sub;
  p.session_id = claims->sid;
  p.roles = std::move(claims->roles);
  if (cache.size() >= settings_.token_cache_entries) cache.clear();
  if (settings_.token_cache_entries > 0) cache.emplace(std::move(token), CachedToken{p, claims->exp});
  co_return p;
}

std::set<std::string> AuthService::permissions_of(const std::vector<std::string>& roles) const {
  std::set<std::string> out;
  if (std::find(roles.begin(), roles.end(), "admin") != roles.end()) out.insert("*");
  std::shared_lock lock(roles_mu_);
  for (const auto& r : roles)
    if (auto it = role_permissions_.find(r); it != role_permissions_.end()) out.insert(it->second.begin(), it->second.end());
  return out;
}

bool AuthService::authorize(const Principal& p, std::string_view permission) const {
  auto holds = [&](const auto& perms) {
    for (const auto& h : perms) {
      if (h == "*" || h == permission) return true;
      // "devices.*" holds "devices.read"
      if (h.size() >= 2 && h.back() == '*' && permission.substr(0, h.size() - 1) == std::string_view(h).substr(0, h.size() - 1))
        return true;
    }
    return false;
  };
  if (p.kind != Principal::Kind::User) return holds(p.permissions);
  if (p.is_admin()) return true;
  if (holds(p.permissions)) return true;
  std::shared_lock lock(roles_mu_);
  for (const auto& r : p.roles)
    if (auto it = role_permissions_.find(r); it != role_permissions_.end() && holds(it->second)) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Email verification and password reset

asio::awaitable<Result<std::string>> AuthService::issue_email_token(const std::string& user_id, const std::string& email,
                                                                    const std::string& purpose, int64_t ttl_ms) {
  int64_t now = now_ms();
  auto spent = co_await repo::spend_auth_tokens(db_, user_id, purpose, now);
  if (!spent.ok()) co_return spent.error();
  std::string token = random_token(32);
  auto ins = co_await repo::insert_auth_token(db_, sha256_hex(token), purpose, user_id, email, now, now + ttl_ms);
  if (!ins.ok()) co_return ins.error();
  co_return token;
}

asio::awaitable<void> AuthService::send_verification(User user, ClientInfo client) {
  if (user.email.empty() || user.email_verified) co_return;
  auto token = co_await issue_email_token(user.id, user.email, "verify_email", settings_.verify_token_ttl_ms);
  if (!token.ok()) {
    logger()->error(log::fields({{"msg", "verification mail not sent"}, {"error", token.error().detail}}));
    co_return;
  }
  std::string link = settings_.public_url + "/verify-email?token=" + *token;
  Mail m;
  m.to = user.email;
  m.template_name = "verify-email";
  m.vars = {{"token", *token}, {"link", link}, {"name", user.name},
            {"expires", std::to_string(settings_.verify_token_ttl_ms / 3600000) + " hours"}};
  m.subject = "Verify your email address";
  m.text = "Hello" + (user.name.empty() ? std::string() : " " + user.name) +
           ",\n\nconfirm that this is your email address by opening this link:\n\n" + settings_.public_url +
           "/verify-email?token=" + *token + "\n\nThe link works once and expires in " +
           std::to_string(settings_.verify_token_ttl_ms / 3600000) + " hours. If you did not sign up, ignore this mail.\n";
  auto sent = co_await mail(std::move(m));
  AuditEvent e{"email.verification_sent", user.id, client, js::object{{"ok", sent.ok()}}};
  co_await audit(std::move(e));
}

asio::awaitable<Status> AuthService::resend_verification(const std::string& user_id, ClientInfo client) {
  auto limited = co_await rate_limit("auth:rl:verify:" + user_id, 5);
  if (!limited.ok()) co_return limited;
  auto u = co_await repo::user_by_id(db_, user_id);
  if (!u.ok()) co_return u.error();
  if (!*u) co_return Error::not_found("no such user");
  if ((*u)->user.email.empty()) co_return Error::conflict("this account has no email address", "no_email");
  if ((*u)->user.email_verified) co_return Error::conflict("the email address is already verified", "already_verified");
  co_await send_verification((*u)->user, client);
  co_return Status{};
}

asio::awaitable<Result<User>> AuthService::verify_email(std::string token, ClientInfo client) {
  auto limited = co_await rate_limit("auth:rl:ip:" + client.ip, settings_.rate_limit_ip);
  if (!limited.ok()) co_return limited.error();
  if (token.empty() || token.size() > kMaxOpaqueToken) co_return invalid_link();
  auto used = co_await repo::use_auth_token(db_, sha256_hex(token), "verify_email", now_ms());
  if (!used.ok()) co_return used.error();
  if (!*used) co_return invalid_link();
  auto u = co_await repo::user_by_id(db_, (*used)->user_id);
  if (!u.ok()) co_return u.error();
  if (!*u || (*u)->user.email != (*used)->email) co_return invalid_link();
  auto set = co_await repo::set_email_verified(db_, (*u)->user.id);
  if (!set.ok()) co_return set.error();
  User user = (*u)->user;
  user.email_verified = true;
  AuditEvent e{"email.verified", user.id, client, js::object{}};
  co_await audit(std::move(e));
  co_return user;
}

asio::awaitable<void> AuthService::send_reset(std::string email, ClientInfo client) {
  auto u = co_await repo::user_by_email(db_, email);
  if (!u.ok()) {
    logger()->error(log::fields({{"msg", "password reset lookup failed"}, {"error", u.error().detail}}));
    co_return;
  }
  if (!*u) {
    AuditEvent e{"password.forgot", "", client, js::object{{"known", false}}};
    co_await audit(std::move(e));
    co_return;
  }
  const User& user = (*u)->user;
  auto token = co_await issue_email_token(user.id, user.email, "reset_password", settings_.reset_token_ttl_ms);
  if (!token.ok()) {
    logger()->error(log::fields({{"msg", "reset mail not sent"}, {"error", token.error().detail}}));
    co_return;
  }
  std::string link = settings_.public_url + "/reset-password?token=" + *token;
  Mail m;
  m.to = user.email;
  m.template_name = "reset-password";
  m.vars = {{"token", *token}, {"link", link}, {"name", user.name},
            {"expires", std::to_string(settings_.reset_token_ttl_ms / 60000) + " minutes"}};
  m.subject = "Reset your password";
  m.text = "Someone asked to reset the password of this account. To choose a new password, open:\n\n" +
           settings_.public_url + "/reset-password?token=" + *token + "\n\nThe link works once and expires in " +
           std::to_string(settings_.reset_token_ttl_ms / 60000) +
           " minutes. If it was not you, ignore this mail: your password stays as it is.\n";
  auto sent = co_await mail(std::move(m));
  AuditEvent e{"password.forgot", user.id, client, js::object{{"known", true}, {"ok", sent.ok()}}};
  co_await audit(std::move(e));
}

asio::awaitable<Status> AuthService::forgot_password(std::string email, ClientInfo client) {
  auto normal = normalize_email(email);
  if (!normal) co_return Error::validation("email is not a valid email address", {{"email", "is not a valid email address"}});
  auto by_ip = co_await rate_limit("auth:rl:ip:" + client.ip, settings_.rate_limit_ip);
  if (!by_ip.ok()) co_return by_ip;
  auto by_account = co_await rate_limit("auth:rl:forgot:" + *normal, settings_.rate_limit_account);
  if (!by_account.ok()) co_return by_account;
  if (spawn_) {
    std::string e = *normal;
    spawn([this, e, client] { return send_reset(e, client); });
  } else {
    co_await send_reset(*normal, client);
  }
  co_return Status{};
}

asio::awaitable<Result<User>> AuthService::reset_password(std::string token, std::string password, ClientInfo client) {
  auto policy = check_password_policy(password);
  if (!policy.ok()) co_return policy.error();
  auto limited = co_await rate_limit("auth:rl:ip:" + client.ip, settings_.rate_limit_ip);
  if (!limited.ok()) co_return limited.error();
  if (token.empty() || token.size() > kMaxOpaqueToken) co_return invalid_link();
  int64_t now = now_ms();
  auto used = co_await repo::use_auth_token(db_, sha256_hex(token), "reset_password", now);
  if (!used.ok()) co_return used.error();
  if (!*used) co_return invalid_link();
  auto u = co_await repo::user_by_id(db_, (*used)->user_id);
  if (!u.ok()) co_return u.error();
  if (!*u) co_return invalid_link();
  auto hash = co_await hasher_.hash(std::move(password));
  if (!hash.ok()) co_return hash.error();
  auto set = co_await repo::set_password_hash(db_, (*u)->user.id, *hash);
  if (!set.ok()) co_return set.error();
  User user = (*u)->user;
  if (user.email == (*used)->email && !user.email_verified) {
    auto v = co_await repo::set_email_verified(db_, user.id);
    if (v.ok()) user.email_verified = true;
  }
  auto ended = co_await repo::revoke_user_sessions(db_, user.id, now, "password_reset");
  if (!ended.ok()) co_return ended.error();
  co_await broadcast_revoked(*ended);
  auto cleared = co_await kv_.del("auth:fail:" + user.email);
  (void)cleared;
  AuditEvent e{"password.reset", user.id, client, js::object{{"sessions_ended", ended->size()}}};
  co_await audit(std::move(e));
  co_return user;
}

// ---------------------------------------------------------------------------------------------
// Roles

asio::awaitable<Result<std::vector<repo::RoleRow>>> AuthService::roles() { co_return co_await repo::all_roles(db_); }

namespace {

Status check_permissions(const std::vector<std::string>& perms) {
  if (perms.size() > 256) return Error::validation("too many permissions", {{"permissions", "at most 256"}});
  for (const auto& p : perms)
    if (!valid_permission(p))
      return Error::validation("invalid permission name " + p,
                               {{"permissions", "names are lower-case letters, digits and _ - . : * (at most 128)"}});
  return {};
}

}  // namespace

asio::awaitable<Result<repo::RoleRow>> AuthService::create_role(repo::RoleRow r, const Principal& by, ClientInfo client) {
  if (!valid_role_name(r.name))
    co_return Error::validation("invalid role name", {{"name", "lower-case letters, digits and _ - . (at most 64), starting with a letter"}});
  auto perms = check_permissions(r.permissions);
  if (!perms.ok()) co_return perms.error();
  if (r.description.size() > 500) co_return Error::validation("description too long", {{"description", "at most 500 bytes"}});
  r.created_at = now_ms();
  r.builtin = false;
  {
    auto tx = co_await db_.begin();
    if (!tx.ok()) co_return tx.error();
    auto ins = co_await repo::insert_role(**tx, r);
    if (!ins.ok()) {
      if (is_conflict(ins.error())) co_return Error::conflict("a role with this name exists", "role_exists");
      co_return ins.error();
    }
    auto c = co_await (*tx)->commit();
    if (!c.ok()) co_return c.error();
  }
  auto loaded = co_await load_roles();
  (void)loaded;
  auto published = co_await pubsub_.publish(kRolesChannel, r.name);
  (void)published;
  js::array ps;
  for (const auto& p : r.permissions) ps.emplace_back(p);
  AuditEvent e{"role.created", by.user_id, client, js::object{{"role", r.name}, {"permissions", std::move(ps)}}};
  co_await audit(std::move(e));
  co_return r;
}

asio::awaitable<Result<repo::RoleRow>> AuthService::update_role(std::string name, std::optional<std::string> description,
                                                                std::optional<std::vector<std::string>> permissions,
                                                                const Principal& by, ClientInfo client) {
  if (permissions) {
    auto perms = check_permissions(*permissions);
    if (!perms.ok()) co_return perms.error();
    if (name == "admin") co_return Error::conflict("the admin role holds every permission; it cannot be changed", "role_builtin");
  }
  if (description && description->size() > 500)
    co_return Error::validation("description too long", {{"description", "at most 500 bytes"}});
  {
    auto tx = co_await db_.begin();
    if (!tx.ok()) co_return tx.error();
    auto exists = co_await (*tx)->query("SELECT description FROM roles WHERE name = $1", {name});
    if (!exists.ok()) co_return exists.error();
    if (exists->empty()) co_return Error::not_found("no such role");
    if (description) {
      auto d = co_await repo::update_role_description(**tx, name, *description);
      if (!d.ok()) co_return d.error();
    }
    if (permissions) {
      auto p = co_await repo::replace_role_permissions(**tx, name, *permissions);
      if (!p.ok()) co_return p.error();
    }
    auto c = co_await (*tx)->commit();
    if (!c.ok()) co_return c.error();
  }
  auto loaded = co_await load_roles();
  (void)loaded;
  auto published = co_await pubsub_.publish(kRolesChannel, name);
  (void)published;
  AuditEvent e{"role.updated", by.user_id, client, js::object{{"role", name}}};
  co_await audit(std::move(e));
  auto all = co_await repo::all_roles(db_);
  if (!all.ok()) co_return all.error();
  for (auto& r : *all)
    if (r.name == name) co_return std::move(r);
  co_return Error::not_found("no such role");
}

asio::awaitable<Status> AuthService::delete_role(std::string name, const Principal& by, ClientInfo client) {
  if (name == "admin" || name == "user") co_return Error::conflict("built-in roles cannot be deleted", "role_builtin");
  auto n = co_await repo::delete_role(db_, name);
  if (!n.ok()) co_return n.error();
  if (*n == 0) co_return Error::not_found("no such role");
  auto loaded = co_await load_roles();
  (void)loaded;
  auto published = co_await pubsub_.publish(kRolesChannel, name);
  (void)published;
  AuditEvent e{"role.deleted", by.user_id, client, js::object{{"role", name}}};
  co_await audit(std::move(e));
  co_return Status{};
}

asio::awaitable<Status> AuthService::check_roles_exist(const std::vector<std::string>& roles) {
  auto all = co_await repo::all_roles(db_);
  if (!all.ok()) co_return all.error();
  for (const auto& r : roles) {
    bool found = std::any_of(all->begin(), all->end(), [&](const repo::RoleRow& x) { return x.name == r; });
    if (!found) co_return Error::validation("no role named " + r, {{"roles", "unknown role " + r}});
  }
  co_return Status{};
}

asio::awaitable<Result<User>> AuthService::set_user_roles(std::string user_id, std::vector<std::string> roles,
                                                          const Principal& by, ClientInfo client) {
  if (roles.size() > 64) co_return Error::validation("too many roles", {{"roles", "at most 64"}});
  std::sort(roles.begin(), roles.end());
  roles.erase(std::unique(roles.begin(), roles.end()), roles.end());
  auto exist = co_await check_roles_exist(roles);
  if (!exist.ok()) co_return exist.error();
  auto u = co_await repo::user_by_id(db_, user_id);
  if (!u.ok()) co_return u.error();
  if (!*u) co_return Error::not_found("no such user");
  {
    auto tx = co_await db_.begin();
    if (!tx.ok()) co_return tx.error();
    auto r = co_await repo::replace_user_roles(**tx, user_id, roles);
    if (!r.ok()) co_return r.error();
    auto c = co_await (*tx)->commit();
    if (!c.ok()) co_return c.error();
  }
  User user = (*u)->user;
  js::array before, after;
  for (const auto& r : user.roles) before.emplace_back(r);
  for (const auto& r : roles) after.emplace_back(r);
  user.roles = roles;
  AuditEvent e{"role.assigned", user_id, client,
               js::object{{"by", by.user_id}, {"before", std::move(before)}, {"after", std::move(after)}}};
  co_await audit(std::move(e));
  co_return user;
}

// ---------------------------------------------------------------------------------------------
// API keys

asio::awaitable<Result<AuthService::NewApiKey>> AuthService::create_api_key(const Principal& by, std::string name,
                                                                            std::vector<std::string> permissions,
                                                                            std::optional<int64_t> expires_at,
                                                                            ClientInfo client) {
  if (by.kind != Principal::Kind::User) co_return Error::forbidden("API keys are created by a signed-in user, not by a key");
  auto perms = check_permissions(permissions);
  if (!perms.ok()) co_return perms.error();
  std::sort(permissions.begin(), permissions.end());
  permissions.erase(std::unique(permissions.begin(), permissions.end()), permissions.end());
  for (const auto& p : permissions) {
    // "*" and wildcards only from someone who holds everything they could match.
    bool held = p.find('*') != std::string::npos ? authorize(by, "*") || by.is_admin() : authorize(by, p);
    if (!held) co_return Error::forbidden("you do not hold the permission " + p + ", so a key of yours cannot either");
  }
  if (expires_at && *expires_at <= now_ms())
    co_return Error::validation("expires_at is in the past", {{"expires_at", "must be in the future"}});
  NewApiKey out;
  out.secret = std::string(kApiKeyPrefix) + random_token(32);
  out.key.id = new_id();
  out.key.user_id = by.user_id;
  out.key.name = std::move(name);
  out.key.prefix = out.secret.substr(0, 12);
  out.key.permissions = std::move(permissions);
  out.key.created_at = now_ms();
  out.key.expires_at = expires_at;
  auto ins = co_await repo::insert_api_key(db_, out.key, sha256_hex(out.secret));
  if (!ins.ok()) co_return ins.error();
  js::array ps;
  for (const auto& p : out.key.permissions) ps.emplace_back(p);
  AuditEvent e{"api_key.created", by.user_id, client,
               js::object{{"api_key_id", out.key.id}, {"name", out.key.name}, {"permissions", std::move(ps)}}};
  co_await audit(std::move(e));
  co_return out;
}

asio::awaitable<Result<std::vector<repo::ApiKeyRow>>> AuthService::api_keys(const std::string& user_id,
                                                                            const std::optional<std::string>& after,
                                                                            int limit) {
  co_return co_await repo::api_keys_of(db_, user_id, after, limit);
}

asio::awaitable<Status> AuthService::revoke_api_key(const Principal& by, std::string id, ClientInfo client) {
  auto n = co_await repo::revoke_api_key(db_, id, by.user_id, now_ms());
  if (!n.ok()) co_return n.error();
  if (*n == 0) co_return Error::not_found("no such API key");
  AuditEvent e{"api_key.revoked", by.user_id, client, js::object{{"api_key_id", id}}};
  co_await audit(std::move(e));
  co_return Status{};
}

asio::awaitable<Result<Principal>> AuthService::verify_api_key(std::string secret) {
  if (secret.size() != kApiKeyPrefix.size() + 43) co_return invalid_token("unknown or revoked API key");
  auto row = co_await repo::api_key_by_hash(db_, sha256_hex(secret));
  if (!row.ok()) co_return row.error();
  int64_t now = now_ms();
  if (!*row || (*row)->revoked_at || ((*row)->expires_at && *(*row)->expires_at <= now))
    co_return invalid_token("unknown or revoked API key");
  auto ready = co_await ensure_ready();
  if (!ready.ok()) co_return ready.error();
  const repo::ApiKeyRow& k = **row;
  auto roles = co_await repo::user_roles(db_, k.user_id);
  if (!roles.ok()) co_return roles.error();
  // What the key may do is what it was given and its owner still holds.
  Principal owner;
  owner.kind = Principal::Kind::User;
  owner.id = k.user_id;
  owner.user_id = k.user_id;
  owner.roles = *roles;
  Principal p;
  p.kind = Principal::Kind::ApiKey;
  p.id = k.id;
  p.user_id = k.user_id;
  for (const auto& perm : k.permissions)
    if (perm.find('*') != std::string::npos ? owner.is_admin() : authorize(owner, perm)) p.permissions.push_back(perm);
  if (!k.last_used_at || now - *k.last_used_at >= settings_.api_key_touch_ms) {
    auto touched = co_await repo::touch_api_key(db_, k.id, now);
    (void)touched;
  }
  co_return p;
}

// ---------------------------------------------------------------------------------------------
// Audit

asio::awaitable<Result<std::vector<repo::AuditRow>>> AuthService::audit_log(std::optional<std::string> user_id,
                                                                            std::optional<std::string> event,
                                                                            std::optional<std::string> before, int limit) {
  co_return co_await repo::audit_page(db_, user_id, event, before, limit);
}

// ---------------------------------------------------------------------------------------------
// Accounts for other sign-in methods

asio::awaitable<Result<User>> AuthService::create_user(std::string email, std::string password, std::string name,
                                                       std::vector<std::string> roles) {
  auto normal = normalize_email(email);
  if (!normal) co_return Error::validation("email is not a valid email address", {{"email", "is not a valid email address"}});
  auto policy = check_password_policy(password);
  if (!policy.ok()) co_return policy.error();
  if (roles.empty()) roles.push_back("user");
  auto exist = co_await check_roles_exist(roles);
  if (!exist.ok()) co_return exist.error();
  auto hash = co_await hasher_.hash(std::move(password));
  if (!hash.ok()) co_return hash.error();
  User u;
  u.id = new_id();
  u.email = *normal;
  u.name = std::move(name);
  u.email_verified = true;  // an operator vouches for it
  u.created_at_ms = now_ms();
  std::sort(roles.begin(), roles.end());
  u.roles = roles;
  auto tx = co_await db_.begin();
  if (!tx.ok()) co_return tx.error();
  auto ins = co_await repo::insert_user(**tx, u, *hash);
  if (!ins.ok()) {
    if (is_conflict(ins.error())) co_return Error::conflict("an account with this email exists", "email_taken");
    co_return ins.error();
  }
  auto r = co_await repo::replace_user_roles(**tx, u.id, roles);
  if (!r.ok()) co_return r.error();
  auto c = co_await (*tx)->commit();
  if (!c.ok()) co_return c.error();
  js::array rs;
  for (const auto& x : roles) rs.emplace_back(x);
  AuditEvent e{"user.created", u.id, ClientInfo{"", "harmar admin create-user"}, js::object{{"roles", std::move(rs)}}};
  co_await audit(std::move(e));
  co_return u;
}

asio::awaitable<Result<User>> AuthService::find_or_create_by_email(std::string email, std::string name, bool email_verified) {
  auto normal = normalize_email(email);
  if (!normal) co_return Error::validation("email is not a valid email address", {{"email", "is not a valid email address"}});
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto found = co_await repo::user_by_email(db_, *normal);
    if (!found.ok()) co_return found.error();
    if (*found) {
      User u = (*found)->user;
      if (email_verified && !u.email_verified) {
        // The provider proved this address belongs to the person signing in; whoever registered
        // it without proving it (possibly someone else, pre-registering to hijack it) loses the
        // password they chose and every session they hold. The owner can set a password through
        // forgot-password.
        auto v = co_await repo::set_email_verified(db_, u.id);
        if (!v.ok()) co_return v.error();
        auto cleared = co_await repo::set_password_hash(db_, u.id, "");
        if (!cleared.ok()) co_return cleared.error();
        auto ended = co_await repo::revoke_user_sessions(db_, u.id, now_ms(), "email_claimed");
        if (!ended.ok()) co_return ended.error();
        co_await broadcast_revoked(*ended);
        AuditEvent e{"user.email_claimed", u.id, ClientInfo{}, js::object{{"via", "verified identity"}}};
        co_await audit(std::move(e));
        u.email_verified = true;
      }
      co_return u;
    }
    User u;
    u.email = *normal;
    u.name = name.substr(0, 200);
    u.email_verified = email_verified;
    auto made = co_await insert_plain_user(std::move(u), "email");
    if (!made.ok() && is_conflict(made.error())) continue;  // made meanwhile by another request: read it
    co_return made;
  }
  co_return Error::conflict("the account changed while it was being made; retry", "conflict");
}

asio::awaitable<Result<User>> AuthService::find_or_create_by_phone(std::string phone) {
  if (phone.empty() || phone.size() > 32) co_return Error::validation("invalid phone number", {{"phone", "is invalid"}});
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto found = co_await repo::user_by_phone(db_, phone);
    if (!found.ok()) co_return found.error();
    if (*found) co_return (*found)->user;
    User u;
    u.phone = phone;
    auto made = co_await insert_plain_user(std::move(u), "phone");
    if (!made.ok() && is_conflict(made.error())) continue;
    co_return made;
  }
  co_return Error::conflict("the account changed while it was being made; retry", "conflict");
}

asio::awaitable<Result<User>> AuthService::create_user_without_email(std::string name) {
  User u;
  u.name = name.substr(0, 200);
  co_return co_await insert_plain_user(std::move(u), "identity");
}

asio::awaitable<Result<User>> AuthService::insert_plain_user(User u, const char* via) {
  u.id = new_id();
  u.created_at_ms = now_ms();
  u.roles = {"user"};
  auto tx = co_await db_.begin();
  if (!tx.ok()) co_return tx.error();
  auto ins = co_await repo::insert_user(**tx, u, "");
  if (!ins.ok()) co_return ins.error();
  auto role = co_await repo::add_user_role(**tx, u.id, "user");
  if (!role.ok()) co_return role.error();
  auto c = co_await (*tx)->commit();
  if (!c.ok()) co_return c.error();
  AuditEvent e{"user.created", u.id, ClientInfo{}, js::object{{"via", via}}};
  co_await audit(std::move(e));
  co_return u;
}

asio::awaitable<Result<std::optional<User>>> AuthService::find_by_identity(std::string provider, std::string subject) {
  auto uid = co_await repo::identity_user(db_, provider, subject);
  if (!uid.ok()) co_return uid.error();
  if (!*uid) co_return std::optional<User>{};
  auto u = co_await repo::user_by_id(db_, **uid);
  if (!u.ok()) co_return u.error();
  if (!*u) co_return std::optional<User>{};
  co_return std::optional<User>((*u)->user);
}

asio::awaitable<Status> AuthService::link_identity(std::string user_id, std::string provider, std::string subject,
                                                   std::string email) {
  if (provider.empty() || provider.size() > 64 || subject.empty() || subject.size() > 255)
    co_return Error::validation("invalid identity", {{"subject", "provider 1..64 and subject 1..255 bytes"}});
  auto ins = co_await repo::insert_identity(db_, provider, subject, user_id, email.substr(0, 254));
  if (!ins.ok()) co_return ins;
  auto owner = co_await repo::identity_user(db_, provider, subject);
  if (!owner.ok()) co_return owner.error();
  if (!*owner || **owner != user_id)
    co_return Error::conflict("this " + provider + " account is linked to another user", "identity_taken");
  AuditEvent e{"identity.linked", user_id, ClientInfo{}, js::object{{"provider", provider}}};
  co_await audit(std::move(e));
  co_return Status{};
}

asio::awaitable<Result<User>> AuthService::find_user(std::string user_id) {
  auto u = co_await repo::user_by_id(db_, user_id);
  if (!u.ok()) co_return u.error();
  if (!*u) co_return Error::not_found("no such user");
  co_return (*u)->user;
}

asio::awaitable<Result<std::vector<std::string>>> AuthService::list_user_ids(std::string after_id, int limit) {
  co_return co_await repo::user_ids_after(db_, after_id, std::clamp(limit, 1, 1000));
}

}  // namespace harmar::auth
