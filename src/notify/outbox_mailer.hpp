#pragma once
// The Mailer the notify module provides: records each mail in the outbox, the durable queue that
// notify::Delivery works off (email_delivery.hpp), or, with no SMTP configured, writes it to the log.
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "notify/email_config.hpp"
#include "notify/email_crypto.hpp"
#include "notify/mailer.hpp"
#include "notify/smtp.hpp"
#include "notify/templates.hpp"
#include "store/sql.hpp"

namespace harmar::config {
class Config;
}

namespace harmar::notify {

struct MailerSettings {
  std::optional<SmtpSettings> smtp;  // nullopt: mails go to the log (unless a config has an SMTP server)
  std::string from = "HarmarCloud <no-reply@localhost>";
  int attempts = 6;                     // delivery attempts before a mail is dead
  int64_t retry_base_ms = 30'000;       // before the 2nd attempt; doubles per attempt, with jitter
  int64_t retry_max_ms = 3'600'000;     // the longest wait between attempts
  std::string public_url = "http://127.0.0.1:8080";
  std::string product = "HarmarCloud";
  std::string reply_address;  // "notify@example.com": task and device mails reply to notify+TOKEN@example.com

  static MailerSettings from_config(const config::Config& cfg);
  // Base settings for a per-config SMTP server: timeouts and sender of the server's.
  SmtpSettings smtp_base() const;
};

// What the email module plugs in once every module has provided its services.
struct MailerRouting {
  std::shared_ptr<const EmailCrypto> crypto;
  std::shared_ptr<EmailConfigs> configs;
  std::function<void()> queued;  // wakes the delivery workers of this node
};

class OutboxMailer : public Mailer {
 public:
  OutboxMailer(MailerSettings settings, store::Database& db, Templates templates);

  asio::awaitable<Status> send(Mail mail) override;
  asio::awaitable<Status> send_template(std::string name, std::string to, TemplateVars vars) override;
  Result<Mail> render(const std::string& name, const std::string& to, const TemplateVars& vars) const override;

  // Sends `mail` now through `smtp`, once, bypassing the queue (POST /v1/email/test), and
  // records the outcome in the outbox. 422 for a mail that cannot be built.
  asio::awaitable<Result<SmtpOutcome>> send_now(Mail mail, SmtpSettings smtp);

  // Called once at startup, before any mail is sent (without it: an ephemeral key, no configs).
  void attach(MailerRouting routing) { routing_ = std::move(routing); }
  const MailerSettings& settings() const { return settings_; }
  std::shared_ptr<const EmailCrypto> crypto() const { return routing_.crypto; }
  // The Reply-To address for a reply token, or "" when email.reply_address is not set.
  std::string reply_address_for(const std::string& token) const;

 private:
  asio::awaitable<Status> send_rendered(Mail mail, bool has_smtp);
  MailerSettings settings_;
  store::Database& db_;
  Templates templates_;
  MailerRouting routing_;
};

}  // namespace harmar::notify
