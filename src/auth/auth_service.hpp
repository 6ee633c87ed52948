#pragma once
// The rules of accounts and authentication (issue 3), testable without HTTP: registration and
// password login, sessions with rotating refresh tokens, access tokens, email verification and
// password reset, brute-force limits, roles and permissions, API keys, and the audit log.
// api.cpp turns these into the endpoints of shared/API.md.
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "auth/keys.hpp"
#include "auth/password.hpp"
#include "auth/repo.hpp"
#include "auth/service.hpp"
#include "core/config.hpp"
#include "store/kv.hpp"
#include "store/pubsub.hpp"
#include "store/sql.hpp"

namespace harmar::store::detail {
class AsyncSemaphore;
}

namespace harmar::auth {

// Everything the service reads from `auth.*` configuration.
struct Settings {
  std::string issuer = "harmar";
  std::string public_url = "http://127.0.0.1:8080";
  int64_t access_ttl_ms = 15 * 60 * 1000;
  int64_t refresh_idle_ms = int64_t{14} * 24 * 3600 * 1000;
  int64_t refresh_lifetime_ms = int64_t{90} * 24 * 3600 * 1000;
  int64_t verify_token_ttl_ms = 24 * 3600 * 1000;
  int64_t reset_token_ttl_ms = 3600 * 1000;
  HashParams hash;
  int max_concurrent_hashes = 2;
  int captcha_after_failures = 5;  // 0: never
  int64_t failure_window_ms = 3600 * 1000;
  int rate_limit_ip = 60;        // auth requests per IP per window; 0: off
  int rate_limit_account = 20;   // login attempts per account per window; 0: off
  int64_t rate_limit_window_ms = 60 * 1000;
  bool registration_open = true;
  int64_t api_key_touch_ms = 60 * 1000;
  std::size_t token_cache_entries = 10000;

  static Settings from(const config::Config& cfg);
};

// How an email is sent: through notify::Mailer's template `template_name` with `vars` when that
// module is there, else `subject` and `text` go to the log.
struct Mail {
  std::string to, subject, text;
  std::string template_name;
  std::map<std::string, std::string> vars;
};
using SendMail = std::function<asio::awaitable<Status>(Mail)>;

// Sessions whose access tokens must stop working before they expire, per node.
class RevocationList {
 public:
  void add(const std::string& sid, int64_t at_ms);
  bool contains(std::string_view sid) const;
  // Drops entries older than `before_ms` (their tokens have expired anyway).
  void purge(int64_t before_ms);
  std::size_t size() const;

 private:
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, int64_t> revoked_;
};

class AuthService : public Accounts {
 public:
  AuthService(Settings settings, store::Database& db, store::Kv& kv, store::PubSub& pubsub, ServerSecret secret);
  ~AuthService() override;

  const Settings& settings() const { return settings_; }
  KeyRing& keys() { return keys_; }
  RevocationList& revocations() { return revoked_; }
  CredentialVerifiers& verifiers() { return *verifiers_; }
  std::shared_ptr<CredentialVerifiers> verifiers_ptr() { return verifiers_; }

  // Collaborators that other modules provide; looked up per call (they may come later).
  void set_captcha(std::function<std::shared_ptr<CaptchaVerifier>()> find) { find_captcha_ = std::move(find); }
  void set_mailer(SendMail send) { send_mail_ = std::move(send); }
  // Where fire-and-forget work (mails, forgot-password lookups) runs.
  void set_background(std::function<void(std::function<asio::awaitable<void>()>)> spawn) { spawn_ = std::move(spawn); }

  // Loads signing keys, recent revocations and the role table (once; later calls are free).
  asio::awaitable<Status> ensure_ready();
  // Reloads keys, revocations and roles (periodically and when told through pub/sub).
  asio::awaitable<Status> refresh_state();

  // --- passwords and sessions ---
  struct Credentials {
    std::string email, password, name;
    std::optional<std::string> captcha_id, captcha_answer;
  };
  asio::awaitable<Result<TokenPair>> register_user(Credentials c, ClientInfo client);
  asio::awaitable<Result<TokenPair>> login(Credentials c, ClientInfo client);
  asio::awaitable<Result<TokenPair>> refresh(std::string refresh_token, ClientInfo client);
  // Ends the caller's session (from the access token) and/or the refresh token's session.
  asio::awaitable<Status> logout(std::optional<Principal> who, std::optional<std::string> refresh_token, ClientInfo client);
  asio::awaitable<Result<std::vector<repo::SessionRow>>> sessions(const std::string& user_id,
                                                                  const std::optional<std::string>& before, int limit);
  asio::awaitable<Status> end_session(const Principal& who, std::string session_id, ClientInfo client);

  // --- email flows ---
  asio::awaitable<Result<User>> verify_email(std::string token, ClientInfo client);
  // Sends (again) a verification mail to the user's unverified address.
  asio::awaitable<Status> resend_verification(const std::string& user_id, ClientInfo client);
  // Answers at once; the lookup and the mail happen in the background.
  asio::awaitable<Status> forgot_password(std::string email, ClientInfo client);
  asio::awaitable<Result<User>> reset_password(std::string token, std::string password, ClientInfo client);

  // --- tokens ---
  // The principal for a request's credentials (Authorization: Bearer, or ?access_token= on a
  // WebSocket upgrade).
  asio::awaitable<Result<Principal>> authenticate(const net::Request& req);
  asio::awaitable<Result<Principal>> authenticate_bearer(std::string token);
  asio::awaitable<Result<Principal>> verify_access_token(std::string token);
  bool authorize(const Principal& p, std::string_view permission) const;
  // Every permission `p` holds ("*" for admins).
  std::set<std::string> permissions_of(const std::vector<std::string>& roles) const;

  // --- roles ---
  asio::awaitable<Result<std::vector<repo::RoleRow>>> roles();
  asio::awaitable<Result<repo::RoleRow>> create_role(repo::RoleRow r, const Principal& by, ClientInfo client);
  asio::awaitable<Result<repo::RoleRow>> update_role(std::string name, std::optional<std::string> description,
                                                     std::optional<std::vector<std::string>> permissions,
                                                     const Principal& by, ClientInfo client);
  asio::awaitable<Status> delete_role(std::string name, const Principal& by, ClientInfo client);
  asio::awaitable<Result<User>> set_user_roles(std::string user_id, std::vector<std::string> roles, const Principal& by,
                                               ClientInfo client);

  // --- API keys ---
  struct NewApiKey {
    repo::ApiKeyRow key;
    std::string secret;  // shown once
  };
  asio::awaitable<Result<NewApiKey>> create_api_key(const Principal& by, std::string name,
                                                    std::vector<std::string> permissions,
                                                    std::optional<int64_t> expires_at, ClientInfo client);
  asio::awaitable<Result<std::vector<repo::ApiKeyRow>>> api_keys(const std::string& user_id,
                                                                 const std::optional<std::string>& after, int limit);
  asio::awaitable<Status> revoke_api_key(const Principal& by, std::string id, ClientInfo client);
  asio::awaitable<Result<Principal>> verify_api_key(std::string secret);

  // --- audit ---
  asio::awaitable<Result<std::vector<repo::AuditRow>>> audit_log(std::optional<std::string> user_id,
                                                                 std::optional<std::string> event,
                                                                 std::optional<std::string> before, int limit);

  // --- admin (CLI) ---
  // Creates a user with a password and roles (no policy bypass); 409 if the email is taken.
  asio::awaitable<Result<User>> create_user(std::string email, std::string password, std::string name,
                                            std::vector<std::string> roles);

  // --- Accounts (for SMS, OAuth, ...) ---
  asio::awaitable<Result<User>> find_or_create_by_email(std::string email, std::string name, bool email_verified) override;
  asio::awaitable<Result<User>> find_or_create_by_phone(std::string phone) override;
  asio::awaitable<Result<User>> create_user_without_email(std::string name) override;
  asio::awaitable<Result<std::optional<User>>> find_by_identity(std::string provider, std::string subject) override;
  asio::awaitable<Status> link_identity(std::string user_id, std::string provider, std::string subject,
                                        std::string email) override;
  asio::awaitable<Result<User>> find_user(std::string user_id) override;
  asio::awaitable<Result<std::vector<std::string>>> list_user_ids(std::string after_id, int limit) override;
  asio::awaitable<Result<TokenPair>> start_session(std::string user_id, ClientInfo client, std::string method) override;
  asio::awaitable<void> audit(AuditEvent event) override;

  // Marks sessions revoked on this node and tells the others (pub/sub channel kRevokedChannel).
  asio::awaitable<void> broadcast_revoked(std::vector<std::string> session_ids);
  static constexpr const char* kRevokedChannel = "auth.sessions.revoked";
  static constexpr const char* kRolesChannel = "auth.roles.changed";
  // Applies a message of kRevokedChannel / kRolesChannel from any node.
  void on_revoked_message(std::string_view payload);

 private:
  // Stores `u` as a new account with the role "user" (id and time filled in) in one transaction
  // and audits it as made `via` (a string literal). A unique-key clash is returned as the store's
  // conflict, for callers that then look the account up again.
  asio::awaitable<Result<User>> insert_plain_user(User u, const char* via);
  asio::awaitable<Status> rate_limit(std::string key, int limit);
  asio::awaitable<Result<TokenPair>> issue(const User& user, const repo::SessionRow& session);
  std::string sign_access_token(const User& user, const repo::SessionRow& session, int64_t now);
  asio::awaitable<Status> load_roles();
  asio::awaitable<void> send_verification(User user, ClientInfo client);
  asio::awaitable<void> send_reset(std::string email, ClientInfo client);
  asio::awaitable<Status> mail(Mail m);
  void spawn(std::function<asio::awaitable<void>()> work);
  asio::awaitable<Result<std::string>> issue_email_token(const std::string& user_id, const std::string& email,
                                                         const std::string& purpose, int64_t ttl_ms);
  asio::awaitable<Status> check_roles_exist(const std::vector<std::string>& roles);

  Settings settings_;
  store::Database& db_;
  store::Kv& kv_;
  store::PubSub& pubsub_;
  KeyRing keys_;
  PasswordHasher hasher_;
  RevocationList revoked_;
  std::shared_ptr<CredentialVerifiers> verifiers_;
  std::function<std::shared_ptr<CaptchaVerifier>()> find_captcha_;
  SendMail send_mail_;
  std::function<void(std::function<asio::awaitable<void>()>)> spawn_;

  std::atomic<bool> ready_{false};
  std::unique_ptr<store::detail::AsyncSemaphore> ready_lock_;
  std::atomic<int64_t> last_key_reload_ms_{0};

  mutable std::shared_mutex roles_mu_;
  std::unordered_map<std::string, std::set<std::string>> role_permissions_;
};

// Email addresses: trimmed, lower-cased, 3..254 bytes, one '@', a dotted domain; nullopt if not.
std::optional<std::string> normalize_email(std::string_view email);
// SHA-256 of `s` as lowercase hex (how refresh tokens, API keys and email tokens are stored).
std::string sha256_hex(std::string_view s);

}  // namespace harmar::auth
