#include "notify/outbox_mailer.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/blocking.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "notify/outbox.hpp"

namespace harmar::notify {

MailerSettings MailerSettings::from_config(const config::Config& cfg) {
  MailerSettings s;
  s.from = cfg.get_string("smtp.from");
  s.attempts = static_cast<int>(cfg.get_int("smtp.attempts"));
  s.public_url = cfg.get_string("public_url");
  while (!s.public_url.empty() && s.public_url.back() == '/') s.public_url.pop_back();
  s.product = cfg.get_string("notify.product_name");
  if (!cfg.get_string("smtp.url").empty()) {
    SmtpSettings smtp;
    smtp.url = cfg.get_string("smtp.url");
    smtp.user = cfg.get_string("smtp.user");
    smtp.password = cfg.get_string("smtp.password");
    smtp.from = s.from;
    std::string tls = cfg.get_string("smtp.starttls");
    smtp.starttls = tls == "required" ? StartTls::Required : tls == "opportunistic" ? StartTls::Opportunistic : StartTls::Auto;
    smtp.timeout_ms = cfg.get_duration_ms("smtp.timeout");
    smtp.connect_timeout_ms = std::min<int64_t>(smtp.timeout_ms, 10'000);
    s.smtp = std::move(smtp);
  }
  return s;
}

OutboxMailer::OutboxMailer(MailerSettings settings, store::Database& db, Templates templates)
    : settings_(std::move(settings)), db_(db), templates_(std::move(templates)) {}

Result<Mail> OutboxMailer::render(const std::string& name, const std::string& to, const TemplateVars& vars) const {
  TemplateVars all = vars;
  all.emplace("public_url", settings_.public_url);
  all.emplace("product", settings_.product);
  all["to"] = to;
  HARMAR_TRY(Rendered r, templates_.render(name, all));
  Mail m;
  m.to = to;
  m.subject = std::move(r.subject);
  m.text = std::move(r.text);
  m.html = std::move(r.html);
  m.kind = name;
  m.sensitive = r.sensitive;
  m.redacted_text = std::move(r.redacted_text);
  return m;
}

asio::awaitable<Status> OutboxMailer::send_template(std::string name, std::string to, TemplateVars vars) {
  auto mail = render(name, to, vars);
  if (!mail.ok()) co_return mail.error();
  co_return co_await send(std::move(mail).value());
}

asio::awaitable<Status> OutboxMailer::send(Mail mail) {
  auto logger = log::get("notify");
  int64_t now = now_ms();
  auto message = build_message(mail, settings_.from, now);
  if (!message.ok()) co_return message.error();

  outbox::Row row;
  row.id = new_id();
  row.kind = mail.kind;
  row.to = mail.to;
  row.subject = mail.subject;
  if (mail.sensitive) {
    row.redacted = true;
    if (!mail.redacted_text.empty()) row.body = mail.redacted_text;
  } else {
    row.body = mail.text;
  }
  row.status = settings_.smtp ? "queued" : "logged";
  row.created_at = now;
  if (!settings_.smtp) row.sent_at = now;
  auto recorded = co_await outbox::insert(db_, row);
  if (!recorded.ok()) co_return recorded.error();

  if (!settings_.smtp) {
    // Development without SMTP: the log is the delivery, so it carries the whole text.
    logger->info(log::fields({{"msg", "mail (no smtp.url: not sent)"}, {"outbox_id", row.id}, {"kind", mail.kind},
                              {"to", mail.to}, {"subject", mail.subject}, {"text", mail.text}}));
    co_return Status{};
  }

  auto ex = co_await asio::this_coro::executor;
  std::string to = mail.to;
  std::string body = std::move(message).value();
  SmtpSettings smtp = *settings_.smtp;
  int attempts = 0;
  SmtpOutcome outcome;
  int64_t backoff = settings_.retry_backoff_ms;
  while (true) {
    ++attempts;
    auto transfer = [&smtp, &to, &body] { return smtp_send_sync(smtp, to, body); };  // a named closure (g++ 12, docs/modules.md)
    outcome = co_await run_blocking(transfer);
    if (outcome.ok || !outcome.transient || attempts >= settings_.attempts) break;
    asio::steady_timer timer(ex, std::chrono::milliseconds(backoff));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    backoff *= 4;
  }
  std::optional<std::string> error;
  if (!outcome.ok) error = outcome.error.substr(0, 1000);
  std::optional<int64_t> sent_at;
  if (outcome.ok) sent_at = now_ms();
  auto finished = co_await outbox::finish(db_, row.id, outcome.ok ? "sent" : "failed", attempts, error, sent_at);
  if (!finished.ok())
    logger->warn(log::fields({{"msg", "outbox row not updated"}, {"outbox_id", row.id}, {"error", finished.error().detail}}));
  if (!outcome.ok) {
    logger->warn(log::fields({{"msg", "mail not delivered"}, {"outbox_id", row.id}, {"kind", mail.kind},
                              {"attempts", std::to_string(attempts)}, {"error", outcome.error}}));
    Error e;
    e.status = 502;
    e.code = "mail_delivery_failed";
    e.detail = "the mail server did not accept the mail";
    co_return e;
  }
  logger->info(log::fields({{"msg", "mail sent"}, {"outbox_id", row.id}, {"kind", mail.kind},
                            {"attempts", std::to_string(attempts)}}));
  co_return Status{};
}

}  // namespace harmar::notify
