#include "auth/repo.hpp"

#include <boost/json.hpp>

#include "core/clock.hpp"

namespace harmar::auth::repo {

namespace js = boost::json;
using store::Param;
using store::Row;

namespace {

constexpr const char* kUserColumns = "id, COALESCE(email, ''), COALESCE(phone, ''), name, COALESCE(password_hash, ''), email_verified, created_at";

UserRow user_from(const Row& r) {
  UserRow u;
  u.user.id = r.text(0);
  u.user.email = r.text(1);
  u.user.phone = r.text(2);
  u.user.name = r.text(3);
  u.password_hash = r.text(4);
  u.user.email_verified = r.boolean(5);
  u.user.created_at_ms = r.integer(6);
  return u;
}

asio::awaitable<Result<std::optional<UserRow>>> one_user(Querier& q, std::string sql, std::string arg) {
  auto rows = co_await q.query(sql, {arg});
  if (!rows.ok()) co_return rows.error();
  if (rows->empty()) co_return std::optional<UserRow>{};
  UserRow u = user_from(rows->front());
  auto roles = co_await user_roles(q, u.user.id);
  if (!roles.ok()) co_return roles.error();
  u.user.roles = std::move(*roles);
  co_return std::optional<UserRow>(std::move(u));
}

std::string to_json_array(const std::vector<std::string>& v) {
  js::array a;
  for (const auto& s : v) a.emplace_back(s);
  return js::serialize(a);
}

std::vector<std::string> from_json_array(const std::string& text) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  js::value v = js::parse(text, ec);
  if (ec || !v.is_array()) return out;
  for (const auto& e : v.as_array())
    if (e.is_string()) out.emplace_back(e.as_string().subview());
  return out;
}

SessionRow session_from(const Row& r) {
  SessionRow s;
  s.id = r.text(0);
  s.user_id = r.text(1);
  s.method = r.text(2);
  s.ip = r.text(3);
  s.user_agent = r.text(4);
  s.created_at = r.integer(5);
  s.last_used_at = r.integer(6);
  s.expires_at = r.integer(7);
  s.revoked_at = r.opt_integer(8);
  return s;
}
constexpr const char* kSessionColumns = "id, user_id, method, ip, user_agent, created_at, last_used_at, expires_at, revoked_at";

ApiKeyRow api_key_from(const Row& r) {
  ApiKeyRow k;
  k.id = r.text(0);
  k.user_id = r.text(1);
  k.name = r.text(2);
  k.prefix = r.text(3);
  k.permissions = from_json_array(r.text(4));
  k.created_at = r.integer(5);
  k.expires_at = r.opt_integer(6);
  k.last_used_at = r.opt_integer(7);
  k.revoked_at = r.opt_integer(8);
  return k;
}
constexpr const char* kApiKeyColumns = "id, user_id, name, prefix, permissions, created_at, expires_at, last_used_at, revoked_at";

std::vector<std::string> first_column(const store::Rows& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.text(0));
  return out;
}

}  // namespace

asio::awaitable<Result<std::optional<UserRow>>> user_by_email(Querier& q, const std::string& email) {
  co_return co_await one_user(q, std::string("SELECT ") + kUserColumns + " FROM users WHERE email = $1", email);
}
asio::awaitable<Result<std::optional<UserRow>>> user_by_id(Querier& q, const std::string& id) {
  co_return co_await one_user(q, std::string("SELECT ") + kUserColumns + " FROM users WHERE id = $1", id);
}
asio::awaitable<Result<std::optional<UserRow>>> user_by_phone(Querier& q, const std::string& phone) {
  co_return co_await one_user(q, std::string("SELECT ") + kUserColumns + " FROM users WHERE phone = $1", phone);
}

asio::awaitable<Status> insert_user(Querier& q, const User& u, const std::string& password_hash) {
  Param email = u.email.empty() ? Param(nullptr) : Param(u.email);
  Param phone = u.phone.empty() ? Param(nullptr) : Param(u.phone);
  Param hash = password_hash.empty() ? Param(nullptr) : Param(password_hash);
  auto r = co_await q.exec(
      "INSERT INTO users (id, email, phone, name, password_hash, email_verified, created_at, updated_at) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
      {u.id, email, phone, u.name, hash, u.email_verified, u.created_at_ms});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Status> set_password_hash(Querier& q, const std::string& user_id, const std::string& hash) {
  auto r = co_await q.exec("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1",
                           {user_id, hash, now_ms()});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Status> set_email_verified(Querier& q, const std::string& user_id) {
  auto r = co_await q.exec("UPDATE users SET email_verified = TRUE, updated_at = $2 WHERE id = $1", {user_id, now_ms()});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Result<std::vector<std::string>>> user_roles(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role", {user_id});
  if (!rows.ok()) co_return rows.error();
  co_return first_column(*rows);
}

asio::awaitable<Status> add_user_role(Querier& q, const std::string& user_id, const std::string& role) {
  auto r = co_await q.exec("INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING", {user_id, role});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Status> replace_user_roles(Querier& q, const std::string& user_id, const std::vector<std::string>& roles) {
  auto d = co_await q.exec("DELETE FROM user_roles WHERE user_id = $1", {user_id});
  if (!d.ok()) co_return d.error();
  for (const auto& role : roles) {
    auto a = co_await add_user_role(q, user_id, role);
    if (!a.ok()) co_return a;
  }
  co_return Status{};
}

asio::awaitable<Result<int64_t>> count_users(Querier& q) {
  auto rows = co_await q.query("SELECT COUNT(*) FROM users");
  if (!rows.ok()) co_return rows.error();
  co_return rows->front().integer(0);
}

asio::awaitable<Result<std::vector<std::string>>> user_ids_after(Querier& q, const std::string& after_id, int64_t limit) {
  auto rows = co_await q.query("SELECT id FROM users WHERE id > $1 ORDER BY id LIMIT $2", {after_id, limit});
  if (!rows.ok()) co_return rows.error();
  std::vector<std::string> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) out.push_back(r.text(0));
  co_return out;
}

asio::awaitable<Result<std::optional<std::string>>> identity_user(Querier& q, const std::string& provider,
                                                                   const std::string& subject) {
  auto rows = co_await q.query("SELECT user_id FROM identities WHERE provider = $1 AND subject = $2", {provider, subject});
  if (!rows.ok()) co_return rows.error();
  if (rows->empty()) co_return std::optional<std::string>{};
  co_return std::optional<std::string>(rows->front().text(0));
}

asio::awaitable<Status> insert_identity(Querier& q, const std::string& provider, const std::string& subject,
                                        const std::string& user_id, const std::string& email) {
  auto r = co_await q.exec(
      "INSERT INTO identities (provider, subject, user_id, email, created_at) VALUES ($1, $2, $3, $4, $5) "
      "ON CONFLICT (provider, subject) DO NOTHING",
      {provider, subject, user_id, email, now_ms()});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Status> insert_session(Querier& q, const SessionRow& s) {
  auto r = co_await q.exec(
      "INSERT INTO sessions (id, user_id, method, ip, user_agent, created_at, last_used_at, expires_at) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      {s.id, s.user_id, s.method, s.ip, s.user_agent, s.created_at, s.last_used_at, s.expires_at});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Result<std::optional<SessionRow>>> session_by_id(Querier& q, const std::string& id) {
  auto rows = co_await q.query(std::string("SELECT ") + kSessionColumns + " FROM sessions WHERE id = $1", {id});
  if (!rows.ok()) co_return rows.error();
  if (rows->empty()) co_return std::optional<SessionRow>{};
  co_return std::optional<SessionRow>(session_from(rows->front()));
}

asio::awaitable<Result<std::vector<SessionRow>>> live_sessions(Querier& q, const std::string& user_id, int64_t now,
                                                               int64_t idle_ms, const std::optional<std::string>& before_id,
                                                               int limit) {
  auto rows = co_await q.query(
      std::string("SELECT ") + kSessionColumns +
          " FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_used_at > $3"
          " AND ($4 = '' OR id < $4) ORDER BY id DESC LIMIT $5",
      {user_id, now, now - idle_ms, before_id.value_or(""), int64_t(limit)});
  if (!rows.ok()) co_return rows.error();
  std::vector<SessionRow> out;
  for (const auto& r : *rows) out.push_back(session_from(r));
  co_return out;
}

asio::awaitable<Status> touch_session(Querier& q, const std::string& id, int64_t now, const std::string& ip,
                                      const std::string& user_agent) {
  auto r = co_await q.exec("UPDATE sessions SET last_used_at = $2, ip = $3, user_agent = $4 WHERE id = $1",
                           {id, now, ip, user_agent});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Result<std::vector<std::string>>> revoke_session(Querier& q, const std::string& id, int64_t now,
                                                                 const std::string& reason) {
  auto rows = co_await q.query(
      "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL RETURNING id",
      {id, now, reason});
  if (!rows.ok()) co_return rows.error();
  co_return first_column(*rows);
}

asio::awaitable<Result<std::vector<std::string>>> revoke_user_sessions(Querier& q, const std::string& user_id,
                                                                       int64_t now, const std::string& reason) {
  auto rows = co_await q.query(
      "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE user_id = $1 AND revoked_at IS NULL RETURNING id",
      {user_id, now, reason});
  if (!rows.ok()) co_return rows.error();
  co_return first_column(*rows);
}

asio::awaitable<Result<std::vector<std::pair<std::string, int64_t>>>> revoked_since(Querier& q, int64_t since) {
  auto rows = co_await q.query("SELECT id, revoked_at FROM sessions WHERE revoked_at > $1", {since});
  if (!rows.ok()) co_return rows.error();
  std::vector<std::pair<std::string, int64_t>> out;
  for (const auto& r : *rows) out.emplace_back(r.text(0), r.integer(1));
  co_return out;
}

asio::awaitable<Status> insert_refresh_token(Querier& q, const std::string& hash, const std::string& session_id,
                                             int64_t now) {
  auto r = co_await q.exec("INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
                           {hash, session_id, now});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Result<std::optional<std::string>>> spend_refresh_token(Querier& q, const std::string& hash, int64_t now) {
  auto rows = co_await q.query(
      "UPDATE refresh_tokens SET spent_at = $2 WHERE token_hash = $1 AND spent_at IS NULL RETURNING session_id",
      {hash, now});
  if (!rows.ok()) co_return rows.error();
  if (rows->empty()) co_return std::optional<std::string>{};
  co_return std::optional<std::string>(rows->front().text(0));
}

asio::awaitable<Result<std::optional<std::string>>> refresh_token_session(Querier& q, const std::string& hash) {
  auto rows = co_await q.query("SELECT session_id FROM refresh_tokens WHERE token_hash = $1", {hash});
  if (!rows.ok()) co_return rows.error();
  if (rows->empty()) co_return std::optional<std::string>{};
  co_return std::optional<std::string>(rows->front().text(0));
}

asio::awaitable<Status> insert_auth_token(Querier& q, const std::string& hash, const std::string& purpose,
                                          const std::string& user_id, const std::string& email, int64_t now,
                                          int64_t expires_at) {
  auto r = co_await q.exec(
      "INSERT INTO auth_tokens (token_hash, purpose, user_id, email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
      {hash, purpose, user_id, email, now, expires_at});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Status> spend_auth_tokens(Querier& q, const std::string& user_id, const std::string& purpose, int64_t now) {
  auto r = co_await q.exec("UPDATE auth_tokens SET used_at = $3 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
                           {user_id, purpose, now});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Result<std::optional<AuthTokenUse>>> use_auth_token(Querier& q, const std::string& hash,
                                                                    const std::string& purpose, int64_t now) {
  auto rows = co_await q.query(
      "UPDATE auth_tokens SET used_at = $3 WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 "
      "RETURNING user_id, email",
      {hash, purpose, now});
  if (!rows.ok()) co_return rows.error();
  if (rows->empty()) co_return std::optional<AuthTokenUse>{};
  co_return std::optional<AuthTokenUse>(AuthTokenUse{rows->front().text(0), rows->front().text(1)});
}

asio::awaitable<Result<std::vector<RoleRow>>> all_roles(Querier& q) {
  auto rows = co_await q.query("SELECT name, description, builtin, created_at FROM roles ORDER BY name");
  if (!rows.ok()) co_return rows.error();
  auto perms = co_await q.query("SELECT role, permission FROM role_permissions ORDER BY role, permission");
  if (!perms.ok()) co_return perms.error();
  std::vector<RoleRow> out;
  for (const auto& r : *rows) {
    RoleRow role;
    role.name = r.text(0);
    role.description = r.text(1);
    role.builtin = r.boolean(2);
    role.created_at = r.integer(3);
    for (const auto& p : *perms)
      if (p.text(0) == role.name) role.permissions.push_back(p.text(1));
    out.push_back(std::move(role));
  }
  co_return out;
}

asio::awaitable<Status> insert_role(Querier& q, const RoleRow& r) {
  auto ins = co_await q.exec("INSERT INTO roles (name, description, builtin, created_at) VALUES ($1, $2, FALSE, $3)",
                             {r.name, r.description, r.created_at});
  if (!ins.ok()) co_return ins.error();
  co_return co_await replace_role_permissions(q, r.name, r.permissions);
}

asio::awaitable<Result<int64_t>> update_role_description(Querier& q, const std::string& name, const std::string& description) {
  co_return co_await q.exec("UPDATE roles SET description = $2 WHERE name = $1", {name, description});
}

asio::awaitable<Status> replace_role_permissions(Querier& q, const std::string& name,
                                                 const std::vector<std::string>& permissions) {
  auto d = co_await q.exec("DELETE FROM role_permissions WHERE role = $1", {name});
  if (!d.ok()) co_return d.error();
  for (const auto& p : permissions) {
    auto a = co_await q.exec("INSERT INTO role_permissions (role, permission) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                             {name, p});
    if (!a.ok()) co_return a.error();
  }
  co_return Status{};
}

asio::awaitable<Result<int64_t>> delete_role(Querier& q, const std::string& name) {
  co_return co_await q.exec("DELETE FROM roles WHERE name = $1 AND builtin = FALSE", {name});
}

asio::awaitable<Status> insert_api_key(Querier& q, const ApiKeyRow& k, const std::string& key_hash) {
  auto r = co_await q.exec(
      "INSERT INTO api_keys (id, user_id, name, key_hash, prefix, permissions, created_at, expires_at) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      {k.id, k.user_id, k.name, key_hash, k.prefix, to_json_array(k.permissions), k.created_at, store::nullable(k.expires_at)});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Result<std::optional<ApiKeyRow>>> api_key_by_hash(Querier& q, const std::string& key_hash) {
  auto rows = co_await q.query(std::string("SELECT ") + kApiKeyColumns + " FROM api_keys WHERE key_hash = $1", {key_hash});
  if (!rows.ok()) co_return rows.error();
  if (rows->empty()) co_return std::optional<ApiKeyRow>{};
  co_return std::optional<ApiKeyRow>(api_key_from(rows->front()));
}

asio::awaitable<Result<std::vector<ApiKeyRow>>> api_keys_of(Querier& q, const std::string& user_id,
                                                           const std::optional<std::string>& after_id, int limit) {
  auto rows = co_await q.query(std::string("SELECT ") + kApiKeyColumns +
                                   " FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL AND ($2 = '' OR id > $2)"
                                   " ORDER BY id LIMIT $3",
                               {user_id, after_id.value_or(""), int64_t(limit)});
  if (!rows.ok()) co_return rows.error();
  std::vector<ApiKeyRow> out;
  for (const auto& r : *rows) out.push_back(api_key_from(r));
  co_return out;
}

asio::awaitable<Result<int64_t>> revoke_api_key(Querier& q, const std::string& id, const std::string& user_id, int64_t now) {
  co_return co_await q.exec("UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
                            {id, user_id, now});
}

asio::awaitable<Status> touch_api_key(Querier& q, const std::string& id, int64_t now) {
  auto r = co_await q.exec("UPDATE api_keys SET last_used_at = $2 WHERE id = $1", {id, now});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Status> insert_audit(Querier& q, const std::string& id, int64_t at, const AuditEvent& e) {
  Param user = e.user_id.empty() ? Param(nullptr) : Param(e.user_id);
  auto r = co_await q.exec(
      "INSERT INTO auth_audit (id, at, user_id, ip, user_agent, event, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
      {id, at, user, e.client.ip, e.client.user_agent, e.event, js::serialize(e.detail)});
  if (!r.ok()) co_return r.error();
  co_return Status{};
}

asio::awaitable<Result<std::vector<AuditRow>>> audit_page(Querier& q, const std::optional<std::string>& user_id,
                                                         const std::optional<std::string>& event,
                                                         const std::optional<std::string>& before_id, int limit) {
  auto rows = co_await q.query(
      "SELECT id, at, COALESCE(user_id, ''), ip, user_agent, event, detail FROM auth_audit"
      " WHERE ($1 = '' OR user_id = $1) AND ($2 = '' OR event = $2) AND ($3 = '' OR id < $3)"
      " ORDER BY id DESC LIMIT $4",
      {user_id.value_or(""), event.value_or(""), before_id.value_or(""), int64_t(limit)});
  if (!rows.ok()) co_return rows.error();
  std::vector<AuditRow> out;
  for (const auto& r : *rows) {
    AuditRow a;
    a.id = r.text(0);
    a.at = r.integer(1);
    a.user_id = r.text(2);
    a.ip = r.text(3);
    a.user_agent = r.text(4);
    a.event = r.text(5);
    a.detail = r.text(6);
    out.push_back(std::move(a));
  }
  co_return out;
}

}  // namespace harmar::auth::repo
