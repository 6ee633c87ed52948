#pragma once
// The Mailer the notify module provides: records each mail in the outbox, then delivers it by
// SMTP (with bounded retries of transient failures) or, with no SMTP configured, to the log.
#include <optional>
#include <string>

#include "notify/mailer.hpp"
#include "notify/smtp.hpp"
#include "notify/templates.hpp"
#include "store/sql.hpp"

namespace harmar::config {
class Config;
}

namespace harmar::notify {

struct MailerSettings {
  std::optional<SmtpSettings> smtp;  // nullopt: mails go to the log
  std::string from = "HarmarCloud <no-reply@localhost>";
  int attempts = 3;               // SMTP tries for a transient failure
  int64_t retry_backoff_ms = 500;  // before the 2nd try; x4 before each later one
  std::string public_url = "http://127.0.0.1:8080";
  std::string product = "HarmarCloud";

  static MailerSettings from_config(const config::Config& cfg);
};

class OutboxMailer : public Mailer {
 public:
  OutboxMailer(MailerSettings settings, store::Database& db, Templates templates);

  asio::awaitable<Status> send(Mail mail) override;
  asio::awaitable<Status> send_template(std::string name, std::string to, TemplateVars vars) override;
  Result<Mail> render(const std::string& name, const std::string& to, const TemplateVars& vars) const override;

  const MailerSettings& settings() const { return settings_; }

 private:
  MailerSettings settings_;
  store::Database& db_;
  Templates templates_;
};

}  // namespace harmar::notify
