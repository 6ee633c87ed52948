#pragma once
// Sending email: the interface other modules find with `services.find<notify::Mailer>()`.
//
//   notify::TemplateVars vars;                 // build it before the co_await (g++ 12)
//   vars["token"] = token;
//   vars["name"] = user.name;
//   auto sent = co_await mailer->send_template("verify-email", user.email, std::move(vars));
//
// Every mail is recorded in the `outbox` table (who, what kind, subject, status, attempts, error,
// times). With SMTP configured (`smtp.url`) it is delivered by SMTP; without, it is written to
// the log (status `logged`), which is how a development setup reads its links.
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
  std::string kind = "mail";  // what it is, recorded in the outbox ("verify-email", ...)
  bool sensitive = false;     // the body holds a secret: the outbox keeps redacted_text only
  std::string redacted_text;  // with sensitive: the body with its secrets removed ("" keeps none)
};

using TemplateVars = std::map<std::string, std::string>;

class Mailer {
 public:
  virtual ~Mailer() = default;

  // Validates, records and delivers `mail` (SMTP with bounded retries of transient failures, or
  // the log). 422 for a bad address or header; 502 `mail_delivery_failed` when SMTP refused it
  // or could not be reached after the last attempt (the outbox says `failed`).
  virtual asio::awaitable<Status> send(Mail mail) = 0;

  // Renders the text, HTML and subject of template `name` with `vars` and sends the result.
  // Every template also sees `public_url` (links start there), `product` and `to`.
  // Built in: "verify-email" {token, name?, expires?}, "reset-password" {token, name?, expires?}.
  // 404 for an unknown template.
  virtual asio::awaitable<Status> send_template(std::string name, std::string to, TemplateVars vars) = 0;

  // The Mail send_template would send, for previews and tests.
  virtual Result<Mail> render(const std::string& name, const std::string& to, const TemplateVars& vars) const = 0;
};

}  // namespace harmar::notify
