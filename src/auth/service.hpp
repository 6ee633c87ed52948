#pragma once
// The auth module's public face: what other modules (captcha, SMS and third-party login in
// src/auth, devices, ...) use, found at run time with Services::find<T>():
//
//   auto accounts = services.find<auth::Accounts>();        // users, sessions, identities, audit
//   auto verifiers = services.find<auth::CredentialVerifiers>();  // plug a token prefix into the AuthHook
//
// and the small interfaces the auth module itself consumes from other modules:
//
//   auth::CaptchaVerifier   provided by the captcha code (services.provide<auth::CaptchaVerifier>(...))
//
// The token-pair DTO every login path returns is TokenPair::to_json():
//   {user, access_token, refresh_token, token_type: "Bearer", expires_in}
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/principal.hpp"
#include "core/result.hpp"

namespace harmar::net {
class Request;
}

namespace harmar::auth {

namespace asio = boost::asio;

// The `user` DTO of shared/API.md: {id, email, name, email_verified, roles, created_at}.
struct User {
  std::string id;
  std::string email;  // "" for an account made from a phone number or an identity without email
  std::string name;
  std::string phone;  // E.164 as given to find_or_create_by_phone; not part of the DTO
  bool email_verified = false;
  std::vector<std::string> roles;
  int64_t created_at_ms = 0;

  boost::json::object to_json() const;
};

// What login, register, refresh, SMS login and third-party login answer.
struct TokenPair {
  User user;
  std::string access_token;
  std::string refresh_token;
  int64_t expires_in_s = 0;  // of the access token

  // {user, access_token, refresh_token, token_type: "Bearer", expires_in}
  boost::json::object to_json() const;
};

// Where a request came from: recorded with the session and in the audit log.
struct ClientInfo {
  std::string ip;
  std::string user_agent;  // truncated to 512 bytes

  static ClientInfo from(const net::Request& req);
};

// One row of the audit log (table auth_audit).
struct AuditEvent {
  std::string event;    // "login.ok", "login.failed", "sms.sent", "oauth.login", ...
  std::string user_id;  // "" when unknown
  ClientInfo client;
  boost::json::object detail;  // small; never secrets
};

// Accounts: users, sessions, identities and the audit log, for every way of signing in.
class Accounts {
 public:
  virtual ~Accounts() = default;

  // The user with this email (normalised: trimmed, domain lower-cased), or a new one with no
  // password, `name` and role `user`. `email_verified` true marks the address verified (on an
  // existing user too: the caller proved ownership, e.g. through an OIDC `email_verified` claim).
  // 422 for an invalid email.
  virtual asio::awaitable<Result<User>> find_or_create_by_email(std::string email, std::string name,
                                                                bool email_verified) = 0;
  // The user with this phone number, or a new one with no email and no password. The caller has
  // validated and normalised the number (E.164, "+8613800000000").
  virtual asio::awaitable<Result<User>> find_or_create_by_phone(std::string phone) = 0;

  // A new user with no email, phone or password, and role `user`: for a third-party identity that
  // vouches for no verified email (WeChat; an OIDC account whose email is unverified). The caller
  // links the identity to it right after. (Default: 501, until the auth module implements it.)
  virtual asio::awaitable<Result<User>> create_user_without_email(std::string name) {
    co_return Error{501, "not_implemented", "creating an account without email is not available"};
  }

  // The user linked to (provider, subject), e.g. ("github", "12345"), or nullopt.
  virtual asio::awaitable<Result<std::optional<User>>> find_by_identity(std::string provider,
                                                                        std::string subject) = 0;
  // Links (provider, subject) to `user_id`; linking it again to the same user is a no-op, to
  // another user is 409 `identity_taken`. `email` is what the provider said, kept for display.
  virtual asio::awaitable<Status> link_identity(std::string user_id, std::string provider, std::string subject,
                                                std::string email) = 0;

  // The user by id (404 if none).
  virtual asio::awaitable<Result<User>> find_user(std::string user_id) = 0;

  // Ids of every user after `after_id` in id order, at most `limit` (1..1000): for fan-out to all
  // users (announcements). (Default: 501, until the auth module implements it.)
  virtual asio::awaitable<Result<std::vector<std::string>>> list_user_ids(std::string after_id, int limit) {
    co_return Error{501, "not_implemented", "listing users is not available"};
  }

  // A new session for `user_id`: the same token pair as password login. `method` says how the
  // user proved who they are ("password", "sms", "oauth:github", ...) and is audited.
  virtual asio::awaitable<Result<TokenPair>> start_session(std::string user_id, ClientInfo client,
                                                           std::string method) = 0;

  // Appends to the audit log. Failures are logged, not returned: the audited thing happened.
  virtual asio::awaitable<void> audit(AuditEvent event) = 0;
};

// A solved-captcha check, provided by the captcha code. Single use: the first verify() of an id
// consumes it, right or wrong; an unknown or expired id is false.
class CaptchaVerifier {
 public:
  virtual ~CaptchaVerifier() = default;
  virtual asio::awaitable<bool> verify(std::string captcha_id, std::string answer) = 0;
};

// Keys derived from the server secret (`auth.secret` or DATA_DIR/auth.key), for modules that
// seal data at rest or sign tokens of their own. Provided by the auth module; a module finds it
// lazily (after every provide) and derives one key per purpose:
//
//   auto k = services.find<auth::ServerKeys>()->derive("harmar.email.secrets.v1");
//
// derive() is a KDF: BLAKE2b-256 keyed with the server secret over the context string (libsodium
// crypto_generichash), so keys for different contexts are independent and the secret never
// leaves the auth module. Every node sharing the secret derives the same keys.
class ServerKeys {
 public:
  virtual ~ServerKeys() = default;
  virtual std::array<unsigned char, 32> derive(std::string_view context) const = 0;
};

// Bearer credentials by prefix. The AuthHook hands a bearer token that starts with a registered
// prefix to that verifier; any other token is tried as an access token (JWT). The auth module
// registers "hak_" (API keys); the devices module registers its own prefix in its provide():
//
//   services.find<auth::CredentialVerifiers>()->add("hdk_", verify_device_key);
//
// A verifier answers the Principal (kind Device for devices) or a 401 Error.
class CredentialVerifiers {
 public:
  using Verifier = std::function<asio::awaitable<Result<Principal>>(std::string token)>;

  void add(std::string prefix, Verifier v) {
    std::lock_guard lock(mu_);
    entries_.push_back({std::move(prefix), std::make_shared<Verifier>(std::move(v))});
  }
  // The verifier whose prefix starts `token`, or nullptr.
  std::shared_ptr<Verifier> find(std::string_view token) const {
    std::lock_guard lock(mu_);
    for (const auto& e : entries_)
      if (token.substr(0, e.prefix.size()) == e.prefix) return e.verifier;
    return nullptr;
  }

 private:
  struct Entry {
    std::string prefix;
    std::shared_ptr<Verifier> verifier;
  };
  mutable std::mutex mu_;
  std::vector<Entry> entries_;
};

// The prefix of API keys: "hak_" + 43 base64url characters (256 random bits).
inline constexpr std::string_view kApiKeyPrefix = "hak_";

}  // namespace harmar::auth
