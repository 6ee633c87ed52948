#pragma once
// Inbound mail (POST /v1/email/incoming): a raw message, already authenticated by the shared
// secret, is parsed (mime.hpp) on the blocking pool, matched to what it answers, and acted on:
//
//  - its reply token is looked for in the local part of its recipients (notify+TOKEN@domain: the
//    Reply-To of task and device mails), then in In-Reply-To and References (TOKEN.x@domain: the
//    Message-ID of those mails); only a token whose MAC verifies counts;
//  - a task token: the reply's new text (quoted lines and the "On … wrote:" line cut off, at most
//    email.inbound_note_bytes) becomes a note on that task (tasks::TaskNotes::add_note);
//  - a device token: the mail becomes a new task of type "email" on that device, with payload
//    {from, subject, text, message_id}.
// Every message is recorded in the email_inbound table; one that is refused (bad MIME, no token,
// a target that is gone) is also stored whole in the blob store under email/inbound/ID.eml for
// inspection. A message whose Message-ID was already accepted answers the first outcome again
// (an MTA retrying the POST does not make two notes).
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "notify/email_crypto.hpp"
#include "notify/mime.hpp"
#include "platform/module.hpp"

namespace harmar::notify {

namespace asio = boost::asio;

struct IncomingOptions {
  MimeLimits limits;
  std::size_t max_note_bytes = 4096;
};

struct InboundRow {
  std::string id, status, code, reason, from, subject, message_id, blob_key, action, task_id, device_id;
  int64_t size = 0, received_at = 0;
  boost::json::object to_json() const;
};

class Incoming {
 public:
  Incoming(platform::Services& services, std::shared_ptr<const EmailCrypto> crypto, IncomingOptions opts);

  // {id, status: "accepted", action: "note"|"task", task_id}, or the refusal (4xx) after the raw
  // message was stored.
  asio::awaitable<Result<boost::json::object>> receive(std::string raw);
  // The newest inbound records (status "accepted"|"rejected"|"" for both), for admins.
  asio::awaitable<Result<std::vector<InboundRow>>> list(std::string status, std::optional<std::string> before, int limit);

 private:
  asio::awaitable<Error> reject(InboundRow row, const std::string& raw, Error e);
  asio::awaitable<Status> record(const InboundRow& row);

  platform::Services& s_;
  std::shared_ptr<const EmailCrypto> crypto_;
  IncomingOptions opts_;
};

// The text a reply adds: its lines up to the quoted part ("> …" lines, "On … wrote:", a
// "-----Original Message-----" line, or a signature "-- "), trimmed, at most `max` bytes.
std::string reply_text(std::string_view text, std::size_t max);
// The reply token in a local part "x+TOKEN@…", or in a Message-ID "TOKEN.x@…"; "" when none.
std::string token_of_address(std::string_view addr);
std::string token_of_message_id(std::string_view id);

std::vector<store::Migration> inbound_migrations(int version);

}  // namespace harmar::notify
