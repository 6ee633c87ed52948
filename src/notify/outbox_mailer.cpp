#include "notify/outbox_mailer.hpp"

#include <sodium.h>

#include "core/blocking.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "notify/outbox.hpp"

namespace harmar::notify {
namespace {

std::shared_ptr<const EmailCrypto> ephemeral_crypto() {
  Key32 a{}, b{};
  randombytes_buf(a.data(), a.size());
  randombytes_buf(b.data(), b.size());
  return std::make_shared<EmailCrypto>(a, b);
}

const std::string* var(const TemplateVars& vars, const char* name) {
  auto it = vars.find(name);
  return it == vars.end() || it->second.empty() ? nullptr : &it->second;
}

}  // namespace

MailerSettings MailerSettings::from_config(const config::Config& cfg) {
  MailerSettings s;
  s.from = cfg.get_string("smtp.from");
  s.attempts = static_cast<int>(cfg.get_int("smtp.attempts"));
  s.retry_base_ms = cfg.get_duration_ms("smtp.retry_base");
  s.retry_max_ms = cfg.get_duration_ms("smtp.retry_max");
  s.public_url = cfg.get_string("public_url");
  while (!s.public_url.empty() && s.public_url.back() == '/') s.public_url.pop_back();
  s.product = cfg.get_string("notify.product_name");
  s.reply_address = cfg.get_string("smtp.reply_address");
  if (!cfg.get_string("smtp.url").empty()) {
    SmtpSettings smtp = s.smtp_base();
    smtp.url = cfg.get_string("smtp.url");
    smtp.user = cfg.get_string("smtp.user");
    smtp.password = cfg.get_string("smtp.password");
    std::string tls = cfg.get_string("smtp.starttls");
    smtp.starttls = tls == "required" ? StartTls::Required : tls == "opportunistic" ? StartTls::Opportunistic : StartTls::Auto;
    smtp.timeout_ms = cfg.get_duration_ms("smtp.timeout");
    smtp.connect_timeout_ms = std::min<int64_t>(smtp.timeout_ms, 10'000);
    s.smtp = std::move(smtp);
  }
  return s;
}

SmtpSettings MailerSettings::smtp_base() const {
  SmtpSettings b;
  if (smtp) b = *smtp;
  b.from = from;
  b.url.clear();
  b.user.clear();
  b.password.clear();
  b.starttls = StartTls::Auto;
  return b;
}

OutboxMailer::OutboxMailer(MailerSettings settings, store::Database& db, Templates templates)
    : settings_(std::move(settings)), db_(db), templates_(std::move(templates)) {
  routing_.crypto = ephemeral_crypto();
}

std::string OutboxMailer::reply_address_for(const std::string& token) const {
  auto at = settings_.reply_address.rfind('@');
  if (at == std::string::npos || at == 0) return {};
  return settings_.reply_address.substr(0, at) + "+" + token + settings_.reply_address.substr(at);
}

Result<Mail> OutboxMailer::render(const std::string& name, const std::string& to, const TemplateVars& vars) const {
  TemplateVars all = vars;
  all.emplace("public_url", settings_.public_url);
  all.emplace("product", settings_.product);
  all["to"] = to;
  // The notifications inbox passes a task's `type` and `status`; the templates name them task_*.
  if (auto* type = var(vars, "type")) all.emplace("task_type", *type);
  if (auto* status = var(vars, "status")) all.emplace("task_status", *status);
  if (auto* task = var(vars, "task_id")) all.emplace("task_url", settings_.public_url + "/v1/tasks/" + *task);
  if (auto* device = var(vars, "device_id")) all.emplace("device_url", settings_.public_url + "/v1/devices/" + *device);
  // A mail about a task or a device carries the token a reply brings back.
  std::optional<std::string> token;
  if (auto* task = var(vars, "task_id")) token = routing_.crypto->reply_token('t', *task);
  else if (auto* device = var(vars, "device_id")) token = routing_.crypto->reply_token('d', *device);
  std::string reply_to = token ? reply_address_for(*token) : std::string();
  if (!reply_to.empty()) all["can_reply"] = "yes";
  HARMAR_TRY(Rendered r, templates_.render(name, all));
  Mail m;
  m.to = to;
  m.subject = std::move(r.subject);
  m.text = std::move(r.text);
  m.html = std::move(r.html);
  m.kind = name;
  m.sensitive = r.sensitive;
  m.redacted_text = std::move(r.redacted_text);
  if (token) {
    m.message_id = *token + "." + random_hex(6);
    m.reply_to = reply_to;
  }
  return m;
}

asio::awaitable<Status> OutboxMailer::send_template(std::string name, std::string to, TemplateVars vars) {
  std::vector<std::string> recipients{to};
  std::string config_id;
  bool has_smtp = settings_.smtp.has_value();
  const std::string* user = var(vars, "user_id");
  if (routing_.configs && user && std::find(notification_kinds().begin(), notification_kinds().end(), name) !=
                                      notification_kinds().end()) {
    const std::string* device = var(vars, "device_id");
    std::string user_id = *user, device_id = device ? *device : std::string();  // not inside co_await (g++ 12)
    auto cfg = co_await routing_.configs->resolve(std::move(user_id), std::move(device_id));
    if (!cfg.ok()) co_return cfg.error();
    if (*cfg) {
      const EmailConfig& c = **cfg;
      if (!c.wants(name)) {
        log::get("notify")->debug(log::fields({{"msg", "mail not wanted by the email config"}, {"kind", name},
                                               {"config_id", c.id}}));
        co_return Status{};
      }
      if (!c.recipients.empty()) recipients = c.recipients;
      if (c.smtp) {
        config_id = c.id;
        has_smtp = true;
      }
    }
  }
  for (const auto& r : recipients) {
    auto mail = render(name, r, vars);
    if (!mail.ok()) co_return mail.error();
    mail->smtp_config = config_id;
    auto sent = co_await send_rendered(std::move(mail).value(), has_smtp);
    if (!sent.ok()) co_return sent;
  }
  co_return Status{};
}

asio::awaitable<Status> OutboxMailer::send(Mail mail) {
  bool has_smtp = settings_.smtp.has_value() || !mail.smtp_config.empty();
  co_return co_await send_rendered(std::move(mail), has_smtp);
}

asio::awaitable<Status> OutboxMailer::send_rendered(Mail mail, bool has_smtp) {
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
  row.status = has_smtp ? "queued" : "logged";
  row.created_at = now;
  row.max_attempts = settings_.attempts;
  if (has_smtp) {
    row.message = routing_.crypto->seal(*message);
    row.next_at = now;
    if (!mail.smtp_config.empty()) row.config_id = mail.smtp_config;
  } else {
    row.sent_at = now;
  }
  auto recorded = co_await outbox::insert(db_, row);
  if (!recorded.ok()) co_return recorded.error();

  if (!has_smtp) {
    // Development without SMTP: the log is the delivery, so it carries the whole text.
    logger->info(log::fields({{"msg", "mail (no smtp.url: not sent)"}, {"outbox_id", row.id}, {"kind", mail.kind},
                              {"to", mail.to}, {"subject", mail.subject}, {"text", mail.text}}));
    co_return Status{};
  }
  logger->debug(log::fields({{"msg", "mail queued"}, {"outbox_id", row.id}, {"kind", mail.kind}}));
  if (routing_.queued) routing_.queued();
  co_return Status{};
}

asio::awaitable<Result<SmtpOutcome>> OutboxMailer::send_now(Mail mail, SmtpSettings smtp) {
  int64_t now = now_ms();
  auto message = build_message(mail, smtp.from, now);
  if (!message.ok()) co_return message.error();
  std::string to = mail.to;
  std::string body = std::move(message).value();
  auto transfer = [&smtp, &to, &body] { return smtp_send_sync(smtp, to, body); };  // a named closure (g++ 12)
  SmtpOutcome outcome = co_await run_blocking(transfer);
  outbox::Row row;
  row.id = new_id();
  row.kind = mail.kind;
  row.to = mail.to;
  row.subject = mail.subject;
  row.body = mail.text;
  row.status = outcome.ok ? "sent" : "failed";
  row.attempts = 1;
  row.created_at = now;
  if (outcome.ok) row.sent_at = now_ms();
  else row.error = outcome.error.substr(0, 1000);
  if (!mail.smtp_config.empty()) row.config_id = mail.smtp_config;
  auto recorded = co_await outbox::insert(db_, row);
  if (!recorded.ok()) co_return recorded.error();
  co_return outcome;
}

}  // namespace harmar::notify
