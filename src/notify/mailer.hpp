#pragma once
// Sending email: the interface other modules find with `services.find<notify::Mailer>()`.
//
//   notify::TemplateVars vars;                 // build it before the co_await (g++ 12)
//   vars["token"] = token;
//   vars["name"] = user.name;
//   auto sent = co_await mailer->send_template("verify-email", user.email, std::move(vars));
//
// Every mail is recorded in the `outbox` table (who, what kind, subject, status, attempts, error,
// times), which is also the durable queue: with SMTP configured (`smtp.url`, or the SMTP server of
// the recipient's email config) send() returns once the mail is stored, and the delivery workers
// of every node send it, retrying transient failures with exponential backoff across restarts
// until it is `sent`, `failed` (refused for good) or `dead` (smtp.attempts used up). Without SMTP
// it is written to the log (status `logged`), which is how a development setup reads its links.
//
// Notification mails (docs/mail.md "Notification templates"): pass `user_id` and `device_id` /
// `task_id` in vars; the user's email config for that device (or their default) then decides
// whether the kind is wanted, who receives it and through which SMTP server, and task and device
// mails carry a reply token (Reply-To notify+TOKEN@…, Message-ID) that POST /v1/email/incoming
// turns back into a task note or a new task.
//
// Secrets and the outbox: a templated mail names the variables that are secret (the token of
// verify-email and reset-password); the outbox keeps the text body rendered with those replaced
// by "[redacted]", never the real one. A hand-built Mail with `sensitive = true` keeps
// `redacted_text` (or no body at all). The HTML part is never stored.
#include <boost/asio/awaitable.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/result.hpp"

namespace harmar::notify {

namespace asio = boost::asio;

struct Mail {
  std::string to;       // one address: local@domain (no display name)
  std::string subject;  // one line
  std::string text;     // the text/plain body (required)
  std::string html;     // a text/html alternative, if not empty
  std::string reply_to;  // an address, if not empty
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers, e.g. List-Unsubscribe
  std::string message_id;     // the Message-ID's left part (before '@'); empty: a random one
  std::string smtp_config;    // id of the email config whose SMTP server delivers it; empty: smtp.url
  std::string kind = "mail";  // what it is, recorded in the outbox ("verify-email", ...)
  bool sensitive = false;     // the body holds a secret: the outbox keeps redacted_text only
  std::string redacted_text;  // with sensitive: the body with its secrets removed ("" keeps none)
};

using TemplateVars = std::map<std::string, std::string>;

class Mailer {
 public:
  virtual ~Mailer() = default;

  // Validates and records `mail`, queued for delivery (or written to the log without SMTP).
  // 422 for a bad address or header. Delivery happens after it returns: its outcome is in the
  // outbox (GET /v1/email/outbox).
  virtual asio::awaitable<Status> send(Mail mail) = 0;

  // Renders the text, HTML and subject of template `name` with `vars` and sends the result.
  // Every template also sees `public_url` (links start there), `product` and `to`.
  // Built in: "verify-email" {token, name?, expires?}, "reset-password" {token, name?, expires?},
  // and the notification templates "task-created", "task-completed", "task-failed",
  // "device-online", "device-offline", "announcement" (their vars: docs/mail.md).
  // 404 for an unknown template. A notification the recipient's email config does not want is
  // not sent (and is no error).
  virtual asio::awaitable<Status> send_template(std::string name, std::string to, TemplateVars vars) = 0;

  // The Mail send_template would send, for previews and tests.
  virtual Result<Mail> render(const std::string& name, const std::string& to, const TemplateVars& vars) const = 0;
};

}  // namespace harmar::notify
