#pragma once
// The notifications inbox (shared/API.md "Notifications inbox", docs/notifications.md): one inbox
// per user, filled from domain events (task.*, device.*) and announcements, each notice also
// mailed and pushed per the user's preferences.
//
// A notice becomes at most one message: deliver() inserts it keyed by (user, dedupe key), so an
// event handled twice (a retried announcement page, a handler run again) stores it once and
// pushes/mails it once. Events are taken with EventBus::on_local, on the node that raised them.
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/principal.hpp"
#include "core/result.hpp"
#include "platform/events.hpp"
#include "store/sql.hpp"

namespace harmar::auth {
class Accounts;
}
namespace harmar::realtime {
class Publisher;
}

namespace harmar::notify {

namespace asio = boost::asio;
class Mailer;

struct InboxMessage {
  std::string id;
  std::string user_id;
  std::string kind;  // "task.failed", "device.offline", "announcement", ...
  std::string title;
  std::string body;
  boost::json::object data;
  std::optional<int64_t> read_at;
  int64_t created_at = 0;

  // {id, kind, title, body, data, read_at, created_at}
  boost::json::object to_json() const;
};

// What a notice goes to. Preferences are kept per kind; a kind the user never set uses its default.
struct ChannelChoice {
  bool inbox = true;
  bool email = false;
};
using Preferences = std::map<std::string, ChannelChoice>;

// The kinds a user has preferences for, with their defaults, in display order.
const std::vector<std::pair<std::string, ChannelChoice>>& default_preferences();
// The mail template of a kind: "task.failed" -> "task-failed".
std::string template_for(const std::string& kind);
boost::json::object preferences_json(const Preferences& p);

// A notice about to become a message.
struct Notice {
  std::string user_id;
  std::string kind;
  std::string title;
  std::string body;
  boost::json::object data;
  std::string dedupe_key;  // unique per user; "" never deduplicates
};

// The notice a domain event becomes, if its kind is one the inbox knows (task.created,
// task.completed, task.failed, device.online, device.offline).
std::optional<Notice> notice_for(const platform::DomainEvent& e);

struct InboxOptions {
  bool email_unverified = false;  // also mail addresses the user has not verified
  int64_t retention_ms = int64_t{90} * 24 * 3600 * 1000;
  int64_t max_per_user = 10'000;  // the sweep deletes a user's oldest messages beyond this
  // Mail is sent beside the inbox (up to this many at once, then inline), so a slow SMTP server
  // does not hold up the messages behind it; 0 sends inline (tests that count mails at once).
  int max_mails_in_flight = 32;
};

struct InboxPage {
  std::vector<InboxMessage> items;  // newest first; up to limit + 1 (the extra says "more")
  int64_t unread_count = 0;
};

class Inbox : public std::enable_shared_from_this<Inbox> {
 public:
  Inbox(store::Database& db, InboxOptions opts) : db_(db), opts_(opts) {}

  // Collaborators found after every module provided (any may be null: that channel is skipped).
  void wire(std::shared_ptr<Mailer> mailer, std::shared_ptr<auth::Accounts> accounts,
            std::shared_ptr<realtime::Publisher> publisher);
  // Called with each new message after it is stored (webhooks hook in here).
  void on_new(std::function<asio::awaitable<void>(const InboxMessage&)> f) { on_new_ = std::move(f); }

  // Stores the notice if the user's preferences keep it in the inbox, pushes `message.new`, and
  // mails it if they ask for email. nullopt when nothing was stored (preference off, or a
  // duplicate). Push and mail failures are logged, never returned: the message is kept.
  asio::awaitable<Result<std::optional<InboxMessage>>> deliver(Notice n);

  asio::awaitable<Result<InboxPage>> list(const Principal& who, std::optional<std::string> after, int limit, bool unread_only);
  asio::awaitable<Result<int64_t>> unread_count(const Principal& who);
  asio::awaitable<Result<InboxMessage>> get(const Principal& who, const std::string& id);
  asio::awaitable<Result<InboxMessage>> mark_read(const Principal& who, const std::string& id);
  // The number of messages marked.
  asio::awaitable<Result<int64_t>> mark_all_read(const Principal& who);
  asio::awaitable<Status> remove(const Principal& who, const std::string& id);

  asio::awaitable<Result<Preferences>> preferences(const std::string& user_id);
  // Merges `changes` (already validated: known kinds) into the user's preferences.
  asio::awaitable<Result<Preferences>> update_preferences(const Principal& who, std::map<std::string, std::map<std::string, bool>> changes);

  // Deletes messages older than the retention and each user's oldest beyond max_per_user; the
  // number deleted.
  asio::awaitable<Result<int64_t>> purge();

 private:
  asio::awaitable<void> push(const InboxMessage& m);
  asio::awaitable<void> mail(Notice n, std::string message_id);

  store::Database& db_;
  InboxOptions opts_;
  std::shared_ptr<Mailer> mailer_;
  std::shared_ptr<auth::Accounts> accounts_;
  std::shared_ptr<realtime::Publisher> publisher_;
  std::function<asio::awaitable<void>(const InboxMessage&)> on_new_;
  std::atomic<int> mails_in_flight_{0};
};

// Announcements from an admin to every user or to a list: stored, then fanned out to inboxes by
// a background worker that resumes after a restart (see announcements.cpp).
struct Announcement {
  std::string id;
  std::string title;
  std::string body;
  boost::json::object data;
  std::optional<std::vector<std::string>> user_ids;  // nullopt: every user
  std::string created_by;
  std::string status;  // "pending" | "done"
  int64_t delivered = 0;
  int64_t created_at = 0;

  boost::json::object to_json() const;
};

class Announcements {
 public:
  Announcements(store::Database& db, std::shared_ptr<Inbox> inbox) : db_(db), inbox_(std::move(inbox)) {}
  void wire(std::shared_ptr<auth::Accounts> accounts) { accounts_ = std::move(accounts); }

  asio::awaitable<Result<Announcement>> create(const Principal& by, Announcement a);
  // Claims one pending announcement (leased, so one node works on it) and delivers its next page
  // of recipients; false when there was nothing to do.
  asio::awaitable<Result<bool>> work_once(int page_size = 200);

 private:
  store::Database& db_;
  std::shared_ptr<Inbox> inbox_;
  std::shared_ptr<auth::Accounts> accounts_;
};

std::vector<store::Migration> inbox_migrations();

}  // namespace harmar::notify
