#pragma once
// Email configs (POST /v1/email/config, GET /v1/email/config/{device_id}): per user, a default
// config (device_id "") and one per device, each with its recipients, the kinds of mail it
// wants and, optionally, an SMTP server of its own whose password is sealed with the server key
// (EmailCrypto) and never returned.
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "notify/email_crypto.hpp"
#include "notify/smtp.hpp"
#include "store/sql.hpp"

namespace harmar::notify {

namespace asio = boost::asio;

// The kinds of notification mail (template names) a config may enable.
const std::vector<std::string>& notification_kinds();

struct SmtpOverride {
  std::string host;
  int64_t port = 587;
  std::string security = "starttls";  // starttls (smtp://, STARTTLS required except on loopback) | tls (smtps://)
  std::string user;
  std::optional<std::string> password;  // plain text in memory only; sealed in the table
  std::string from;                     // "" keeps smtp.from
};

struct EmailConfig {
  std::string id;
  std::string user_id;
  std::string device_id;  // "" for the user's default
  std::vector<std::string> recipients;
  std::vector<std::string> kinds;
  bool enabled = true;
  std::optional<SmtpOverride> smtp;
  int64_t created_at = 0, updated_at = 0;

  bool wants(const std::string& kind) const;
  // The DTO: the SMTP password is never in it (`password_set` says whether one is stored).
  boost::json::object to_json() const;
};

// SMTP settings for a config's override, on top of the server's (`base`: timeouts, from).
SmtpSettings smtp_settings(const SmtpOverride& o, const SmtpSettings& base);

class EmailConfigs {
 public:
  EmailConfigs(store::Database& db, std::shared_ptr<const EmailCrypto> crypto) : db_(db), crypto_(std::move(crypto)) {}

  // Creates or replaces the config of (user, device). With `smtp` given but no password, a stored
  // password of the same config is kept.
  asio::awaitable<Result<EmailConfig>> put(EmailConfig cfg);
  asio::awaitable<Result<std::optional<EmailConfig>>> get(std::string user_id, std::string device_id);
  asio::awaitable<Result<std::optional<EmailConfig>>> by_id(std::string id);
  // The device's config, else the user's default, else nullopt.
  asio::awaitable<Result<std::optional<EmailConfig>>> resolve(std::string user_id, std::string device_id);

 private:
  asio::awaitable<Result<std::optional<EmailConfig>>> one(std::string where, store::Params params);
  store::Database& db_;
  std::shared_ptr<const EmailCrypto> crypto_;
};

std::vector<store::Migration> email_config_migrations(int version);

}  // namespace harmar::notify
