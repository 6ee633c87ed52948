#pragma once
// The SMTP side of the mailer: RFC 5322 / MIME message building and one libcurl SMTP transfer.
// Internal to src/notify (other modules use notify/mailer.hpp).
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "notify/mailer.hpp"

namespace harmar::notify {

// local@domain: 3..254 bytes, printable ASCII without spaces, quotes, brackets, commas or
// semicolons, one '@', a domain with a dot (or a bracketed literal is refused: keep it simple).
bool valid_address(std::string_view addr);

// "Name <local@domain>" or "local@domain" → the address part; nullopt if not valid.
std::optional<std::string> address_of(std::string_view from);

// The whole message (headers and body, CRLF line ends) for `mail`, sent from `from`
// ("Name <addr>" or "addr"). 422 for a header value holding a line break or a bad address.
Result<std::string> build_message(const Mail& mail, const std::string& from, int64_t now_ms);

enum class StartTls { Auto, Required, Opportunistic };

struct SmtpSettings {
  std::string url;  // smtp://host[:port] (STARTTLS) or smtps://host[:port] (TLS from the start)
  std::string user, password;
  std::string from;  // "Name <addr>" or "addr"
  StartTls starttls = StartTls::Auto;  // Auto: Required, except to a loopback host
  int64_t timeout_ms = 30'000;
  int64_t connect_timeout_ms = 10'000;
};

struct SmtpOutcome {
  bool ok = false;
  bool transient = false;  // worth another attempt (connection trouble, 4xx reply)
  std::string error;       // what went wrong, without secrets
};

// One SMTP transaction, blocking: run it on the blocking pool.
SmtpOutcome smtp_send_sync(const SmtpSettings& s, const std::string& to, const std::string& message);

// The URL without user info, for logs.
std::string redact_url(std::string_view url);

}  // namespace harmar::notify
