#pragma once
// The auth module's SQL: one function per query, parameterised. Times are Unix milliseconds.
#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>
#include <vector>

#include "auth/service.hpp"
#include "core/result.hpp"
#include "store/sql.hpp"

namespace harmar::auth::repo {

namespace asio = boost::asio;
using store::Querier;

struct UserRow {
  User user;
  std::string password_hash;  // "" when the account has none
};

asio::awaitable<Result<std::optional<UserRow>>> user_by_email(Querier& q, const std::string& email);
asio::awaitable<Result<std::optional<UserRow>>> user_by_id(Querier& q, const std::string& id);
asio::awaitable<Result<std::optional<UserRow>>> user_by_phone(Querier& q, const std::string& phone);
// 409 `conflict` from the store when the email or phone is taken.
asio::awaitable<Status> insert_user(Querier& q, const User& u, const std::string& password_hash);
asio::awaitable<Status> set_password_hash(Querier& q, const std::string& user_id, const std::string& hash);
asio::awaitable<Status> set_email_verified(Querier& q, const std::string& user_id);
asio::awaitable<Result<std::vector<std::string>>> user_roles(Querier& q, const std::string& user_id);
asio::awaitable<Status> add_user_role(Querier& q, const std::string& user_id, const std::string& role);
asio::awaitable<Status> replace_user_roles(Querier& q, const std::string& user_id, const std::vector<std::string>& roles);
asio::awaitable<Result<int64_t>> count_users(Querier& q);
// Ids after `after_id` in id order (announcements to every user page through them).
asio::awaitable<Result<std::vector<std::string>>> user_ids_after(Querier& q, const std::string& after_id, int64_t limit);

asio::awaitable<Result<std::optional<std::string>>> identity_user(Querier& q, const std::string& provider,
                                                                   const std::string& subject);
asio::awaitable<Status> insert_identity(Querier& q, const std::string& provider, const std::string& subject,
                                        const std::string& user_id, const std::string& email);

struct SessionRow {
  std::string id, user_id, method, ip, user_agent;
  int64_t created_at = 0, last_used_at = 0, expires_at = 0;
  std::optional<int64_t> revoked_at;
};
asio::awaitable<Status> insert_session(Querier& q, const SessionRow& s);
asio::awaitable<Result<std::optional<SessionRow>>> session_by_id(Querier& q, const std::string& id);
// Live (not revoked, not expired) sessions of a user, newest first, after `after_id` (paging).
asio::awaitable<Result<std::vector<SessionRow>>> live_sessions(Querier& q, const std::string& user_id, int64_t now,
                                                               int64_t idle_ms, const std::optional<std::string>& before_id,
                                                               int limit);
asio::awaitable<Status> touch_session(Querier& q, const std::string& id, int64_t now, const std::string& ip,
                                      const std::string& user_agent);
// Revokes and returns the ids that were live.
asio::awaitable<Result<std::vector<std::string>>> revoke_session(Querier& q, const std::string& id, int64_t now,
                                                                 const std::string& reason);
asio::awaitable<Result<std::vector<std::string>>> revoke_user_sessions(Querier& q, const std::string& user_id,
                                                                       int64_t now, const std::string& reason);
// Sessions revoked since `since` (for the in-memory revocation list).
asio::awaitable<Result<std::vector<std::pair<std::string, int64_t>>>> revoked_since(Querier& q, int64_t since);

asio::awaitable<Status> insert_refresh_token(Querier& q, const std::string& hash, const std::string& session_id,
                                             int64_t now);
// Marks an unspent token spent; its session id, or nullopt if it was unknown or already spent.
asio::awaitable<Result<std::optional<std::string>>> spend_refresh_token(Querier& q, const std::string& hash, int64_t now);
// The session of a token whatever its state (to detect reuse of a spent one).
asio::awaitable<Result<std::optional<std::string>>> refresh_token_session(Querier& q, const std::string& hash);

asio::awaitable<Status> insert_auth_token(Querier& q, const std::string& hash, const std::string& purpose,
                                          const std::string& user_id, const std::string& email, int64_t now,
                                          int64_t expires_at);
// Spends any unused tokens of this purpose for the user (a new one replaces them).
asio::awaitable<Status> spend_auth_tokens(Querier& q, const std::string& user_id, const std::string& purpose, int64_t now);
struct AuthTokenUse {
  std::string user_id, email;
};
// Marks an unused, unexpired token used; who it was for, or nullopt.
asio::awaitable<Result<std::optional<AuthTokenUse>>> use_auth_token(Querier& q, const std::string& hash,
                                                                    const std::string& purpose, int64_t now);

struct RoleRow {
  std::string name, description;
  bool builtin = false;
  int64_t created_at = 0;
  std::vector<std::string> permissions;
};
asio::awaitable<Result<std::vector<RoleRow>>> all_roles(Querier& q);
asio::awaitable<Status> insert_role(Querier& q, const RoleRow& r);
asio::awaitable<Result<int64_t>> update_role_description(Querier& q, const std::string& name, const std::string& description);
asio::awaitable<Status> replace_role_permissions(Querier& q, const std::string& name,
                                                 const std::vector<std::string>& permissions);
asio::awaitable<Result<int64_t>> delete_role(Querier& q, const std::string& name);

struct ApiKeyRow {
  std::string id, user_id, name, prefix;
  std::vector<std::string> permissions;
  int64_t created_at = 0;
  std::optional<int64_t> expires_at, last_used_at, revoked_at;
};
asio::awaitable<Status> insert_api_key(Querier& q, const ApiKeyRow& k, const std::string& key_hash);
asio::awaitable<Result<std::optional<ApiKeyRow>>> api_key_by_hash(Querier& q, const std::string& key_hash);
asio::awaitable<Result<std::vector<ApiKeyRow>>> api_keys_of(Querier& q, const std::string& user_id,
                                                           const std::optional<std::string>& after_id, int limit);
asio::awaitable<Result<int64_t>> revoke_api_key(Querier& q, const std::string& id, const std::string& user_id, int64_t now);
asio::awaitable<Status> touch_api_key(Querier& q, const std::string& id, int64_t now);

asio::awaitable<Status> insert_audit(Querier& q, const std::string& id, int64_t at, const AuditEvent& e);
struct AuditRow {
  std::string id, user_id, ip, user_agent, event, detail;
  int64_t at = 0;
};
asio::awaitable<Result<std::vector<AuditRow>>> audit_page(Querier& q, const std::optional<std::string>& user_id,
                                                         const std::optional<std::string>& event,
                                                         const std::optional<std::string>& before_id, int limit);

}  // namespace harmar::auth::repo
