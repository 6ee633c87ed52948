#include "notify/inbox.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

#include <algorithm>

#include "auth/service.hpp"
#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "notify/inbox_repo.hpp"
#include "notify/mailer.hpp"
#include "realtime/realtime.hpp"

namespace harmar::notify {

namespace js = boost::json;

namespace {

auto logger() { return log::get("inbox"); }

std::string str(const js::object& o, const char* key) {
  const js::value* v = o.if_contains(key);
  if (!v) return {};
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_int64()) return std::to_string(v->get_int64());
  return {};
}

// The facts of an event worth carrying in a message's `data` (not the whole task payload).
js::object task_data(const platform::DomainEvent& e) {
  js::object d;
  d["task_id"] = e.subject;
  for (const char* k : {"type", "status", "device_id", "error", "attempts", "max_attempts", "change"})
    if (const js::value* v = e.data.if_contains(k); v && !v->is_null()) d[k] = *v;
  return d;
}

}  // namespace

js::object InboxMessage::to_json() const {
  js::object o;
  o["id"] = id;
  o["kind"] = kind;
  o["title"] = title;
  o["body"] = body;
  o["data"] = data;
  o["read_at"] = read_at ? js::value(format_rfc3339(*read_at)) : js::value(nullptr);
  o["created_at"] = format_rfc3339(created_at);
  return o;
}

const std::vector<std::pair<std::string, ChannelChoice>>& default_preferences() {
  // Task creation is the user's own action: nothing by default. Failures are what people want
  // to hear about wherever they are; the rest lands in the inbox only.
  static const std::vector<std::pair<std::string, ChannelChoice>> kDefaults = {
      {"task.created", {false, false}},  {"task.completed", {true, false}}, {"task.failed", {true, true}},
      {"device.online", {true, false}},  {"device.offline", {true, false}}, {"announcement", {true, true}},
  };
  return kDefaults;
}

std::string template_for(const std::string& kind) {
  std::string t = kind;
  for (char& c : t)
    if (c == '.') c = '-';
  return t;
}

js::object preferences_json(const Preferences& p) {
  js::object o;
  for (const auto& [kind, c] : p) o[kind] = js::object{{"inbox", c.inbox}, {"email", c.email}};
  return o;
}

std::optional<Notice> notice_for(const platform::DomainEvent& e) {
  if (e.user_id.empty()) return std::nullopt;
  Notice n;
  n.user_id = e.user_id;
  n.kind = e.type;
  // One message per event: the node that raised it handles it once (on_local); the key makes a
  // second handling (should one ever happen) a no-op.
  n.dedupe_key = e.type + ":" + e.subject + ":" + std::to_string(e.at_ms);
  if (e.type.starts_with("task.")) {
    std::string type = str(e.data, "type");
    n.data = task_data(e);
    if (e.type == "task.created") {
      n.title = "Task " + type + " created";
      n.body = "Task " + e.subject + " (" + type + ") was queued.";
    } else if (e.type == "task.completed") {
      n.title = "Task " + type + " succeeded";
      n.body = "Task " + e.subject + " (" + type + ") finished successfully.";
    } else if (e.type == "task.failed") {
      std::string error = str(e.data, "error");
      bool dead = str(e.data, "change") == "dead";
      n.title = "Task " + type + " failed";
      n.body = "Task " + e.subject + " (" + type + ") " + (dead ? "gave up: " : "failed: ") +
               (error.empty() ? "no error message" : error);
    } else {
      return std::nullopt;
    }
    return n;
  }
  if (e.type == "device.online" || e.type == "device.offline") {
    std::string name = str(e.data, "name");
    std::string reason = str(e.data, "reason");
    n.data = js::object{{"device_id", e.subject}, {"name", name}, {"reason", reason}};
    bool online = e.type == "device.online";
    n.title = "Device " + name + (online ? " is online" : " went offline");
    n.body = online ? "Device " + name + " is sending heartbeats again."
                    : (reason == "heartbeat_timeout" ? "Device " + name + " stopped sending heartbeats."
                                                     : "Device " + name + " signed off.");
    return n;
  }
  return std::nullopt;
}

void Inbox::wire(std::shared_ptr<Mailer> mailer, std::shared_ptr<auth::Accounts> accounts,
                 std::shared_ptr<realtime::Publisher> publisher) {
  mailer_ = std::move(mailer);
  accounts_ = std::move(accounts);
  publisher_ = std::move(publisher);
}

asio::awaitable<Result<Preferences>> Inbox::preferences(const std::string& user_id) {
  auto stored = co_await inbox_repo::preferences(db_, user_id);
  if (!stored) co_return std::move(stored).error();
  Preferences out;
  for (const auto& [kind, c] : default_preferences()) {
    auto it = stored->find(kind);
    out[kind] = it == stored->end() ? c : it->second;
  }
  co_return out;
}

asio::awaitable<Result<Preferences>> Inbox::update_preferences(const Principal& who,
                                                               std::map<std::string, std::map<std::string, bool>> changes) {
  auto current = co_await preferences(who.user_id);
  if (!current) co_return std::move(current).error();
  int64_t now = now_ms();
  auto tx = co_await db_.begin();
  if (!tx) co_return std::move(tx).error();
  for (const auto& [kind, channels] : changes) {
    ChannelChoice c = (*current)[kind];
    for (const auto& [channel, on] : channels) (channel == "inbox" ? c.inbox : c.email) = on;
    auto st = co_await inbox_repo::set_preference(**tx, who.user_id, kind, c, now);
    if (!st) co_return std::move(st).error();
    (*current)[kind] = c;
  }
  auto committed = co_await (*tx)->commit();
  if (!committed) co_return std::move(committed).error();
  co_return std::move(*current);
}

asio::awaitable<Result<std::optional<InboxMessage>>> Inbox::deliver(Notice n) {
  auto prefs = co_await preferences(n.user_id);
  if (!prefs) co_return std::move(prefs).error();
  ChannelChoice choice;
  if (auto it = prefs->find(n.kind); it != prefs->end()) choice = it->second;
  std::optional<InboxMessage> stored;
  if (choice.inbox) {
    InboxMessage m;
    m.id = new_id();
    m.user_id = n.user_id;
    m.kind = n.kind;
    m.title = n.title;
    m.body = n.body;
    m.data = n.data;
    m.created_at = now_ms();
    auto fresh = co_await inbox_repo::insert(db_, m, n.dedupe_key);
    if (!fresh) co_return std::move(fresh).error();
    if (!*fresh) co_return std::optional<InboxMessage>{};  // handled before: pushed and mailed then
    stored = std::move(m);
    static auto& counted = metrics::registry().counter("harmar_inbox_messages_total", "Inbox messages stored.");
    counted.inc();
    co_await push(*stored);
    if (on_new_) co_await on_new_(*stored);
  }
  if (choice.email) {
    std::string message_id = stored ? stored->id : "";
    if (mails_in_flight_.load() < opts_.max_mails_in_flight) {
      mails_in_flight_.fetch_add(1);
      auto ex = co_await asio::this_coro::executor;
      asio::co_spawn(ex, mail(std::move(n), std::move(message_id)),
                     [self = shared_from_this()](std::exception_ptr) { self->mails_in_flight_.fetch_sub(1); });
    } else {
      co_await mail(std::move(n), std::move(message_id));  // backpressure: past the bound, wait for it
    }
  }
  co_return stored;
}

asio::awaitable<void> Inbox::push(const InboxMessage& m) {
  if (!publisher_) co_return;
  auto unread = co_await inbox_repo::unread_count(db_, m.user_id);
  js::object data{{"inbox", true}, {"message", m.to_json()}};
  if (unread) data["unread_count"] = *unread;
  auto seq = co_await publisher_->publish(realtime::user_channel(m.user_id, "user"), "message.new", std::move(data));
  if (!seq)
    logger()->warn(log::fields({{"msg", "message.new not pushed"}, {"message_id", m.id}, {"error", seq.error().detail}}));
}

asio::awaitable<void> Inbox::mail(Notice n, std::string message_id) {
  if (!mailer_ || !accounts_) co_return;
  auto user = co_await accounts_->find_user(n.user_id);
  if (!user) {
    logger()->warn(log::fields({{"msg", "notification not mailed: user unknown"}, {"kind", n.kind}, {"error", user.error().detail}}));
    co_return;
  }
  if (user->email.empty() || (!user->email_verified && !opts_.email_unverified)) co_return;
  TemplateVars vars;
  for (const auto& [k, v] : n.data) {
    if (v.is_string()) vars[std::string(k)] = std::string(v.get_string());
    else if (v.is_int64()) vars[std::string(k)] = std::to_string(v.get_int64());
  }
  vars["kind"] = n.kind;
  vars["title"] = n.title;
  vars["body"] = n.body;
  vars["name"] = user->name;
  vars["user_id"] = n.user_id;  // the user's email config (recipients, kinds, SMTP server) applies
  if (!message_id.empty()) vars["message_id"] = message_id;
  std::string name = template_for(n.kind);
  std::string to = user->email;
  auto sent = co_await mailer_->send_template(name, std::move(to), std::move(vars));
  if (!sent) {
    bool missing = sent.error().status == 404;
    logger()->warn(log::fields({{"msg", missing ? "notification not mailed: no such mail template" : "notification not mailed"},
                                {"template", name},
                                {"user_id", n.user_id},
                                {"error", sent.error().detail}}));
  }
}

asio::awaitable<Result<InboxPage>> Inbox::list(const Principal& who, std::optional<std::string> after, int limit,
                                               bool unread_only) {
  InboxPage page;
  auto items = co_await inbox_repo::list(db_, who.user_id, after, limit + 1, unread_only);
  if (!items) co_return std::move(items).error();
  page.items = std::move(*items);
  auto unread = co_await inbox_repo::unread_count(db_, who.user_id);
  if (!unread) co_return std::move(unread).error();
  page.unread_count = *unread;
  co_return page;
}

asio::awaitable<Result<int64_t>> Inbox::unread_count(const Principal& who) {
  co_return co_await inbox_repo::unread_count(db_, who.user_id);
}

asio::awaitable<Result<InboxMessage>> Inbox::get(const Principal& who, const std::string& id) {
  auto m = co_await inbox_repo::find(db_, who.user_id, id);
  if (!m) co_return std::move(m).error();
  if (!*m) co_return Error::not_found("no such message");
  co_return std::move(**m);
}

asio::awaitable<Result<InboxMessage>> Inbox::mark_read(const Principal& who, const std::string& id) {
  auto ok = co_await inbox_repo::mark_read(db_, who.user_id, id, now_ms());
  if (!ok) co_return std::move(ok).error();
  if (!*ok) co_return Error::not_found("no such message");
  co_return co_await get(who, id);
}

asio::awaitable<Result<int64_t>> Inbox::mark_all_read(const Principal& who) {
  co_return co_await inbox_repo::mark_all_read(db_, who.user_id, now_ms());
}

asio::awaitable<Status> Inbox::remove(const Principal& who, const std::string& id) {
  auto ok = co_await inbox_repo::remove(db_, who.user_id, id);
  if (!ok) co_return std::move(ok).error();
  if (!*ok) co_return Error::not_found("no such message");
  co_return Status{};
}

asio::awaitable<Result<int64_t>> Inbox::purge() {
  auto old = co_await inbox_repo::purge(db_, now_ms() - opts_.retention_ms);
  if (!old) co_return std::move(old).error();
  auto crowded = co_await inbox_repo::users_over(db_, opts_.max_per_user, 1000);
  if (!crowded) co_return std::move(crowded).error();
  int64_t total = *old;
  for (const auto& user_id : *crowded) {
    auto n = co_await inbox_repo::trim_user(db_, user_id, opts_.max_per_user);
    if (!n) co_return std::move(n).error();
    total += *n;
  }
  co_return total;
}

// ---- announcements -------------------------------------------------------------------------

js::object Announcement::to_json() const {
  js::object o;
  o["id"] = id;
  o["title"] = title;
  o["body"] = body;
  o["data"] = data;
  if (user_ids) {
    js::array a;
    for (const auto& u : *user_ids) a.emplace_back(u);
    o["user_ids"] = std::move(a);
  } else {
    o["user_ids"] = nullptr;
  }
  o["status"] = status;
  o["created_at"] = format_rfc3339(created_at);
  return o;
}

asio::awaitable<Result<Announcement>> Announcements::create(const Principal& by, Announcement a) {
  if (!a.user_ids && !accounts_) co_return Error{501, "not_implemented", "announcing to every user needs the auth module"};
  a.id = new_id();
  a.created_by = by.user_id;
  a.created_at = now_ms();
  a.status = "pending";
  auto st = co_await inbox_repo::insert_announcement(db_, a);
  if (!st) co_return std::move(st).error();
  co_return a;
}

asio::awaitable<Result<bool>> Announcements::work_once(int page_size) {
  int64_t now = now_ms();
  auto claimed = co_await inbox_repo::claim_announcement(db_, now, now + 60'000);
  if (!claimed) co_return std::move(claimed).error();
  if (!*claimed) co_return false;
  auto& w = **claimed;
  // The next page of recipients after the cursor: an index into the list, or the last user id.
  std::vector<std::string> recipients;
  std::string next_cursor;
  bool done = false;
  if (w.a.user_ids) {
    std::size_t from = w.cursor.empty() ? 0 : std::stoul(w.cursor);
    std::size_t to = std::min(w.a.user_ids->size(), from + static_cast<std::size_t>(page_size));
    recipients.assign(w.a.user_ids->begin() + static_cast<std::ptrdiff_t>(from),
                      w.a.user_ids->begin() + static_cast<std::ptrdiff_t>(to));
    next_cursor = std::to_string(to);
    done = to >= w.a.user_ids->size();
  } else {
    if (!accounts_) co_return Error::internal("no accounts to announce to");
    auto ids = co_await accounts_->list_user_ids(w.cursor, page_size);
    if (!ids) co_return std::move(ids).error();
    recipients = std::move(*ids);
    next_cursor = recipients.empty() ? w.cursor : recipients.back();
    done = static_cast<int>(recipients.size()) < page_size;
  }
  int64_t delivered = 0;
  for (const auto& user_id : recipients) {
    Notice n;
    n.user_id = user_id;
    n.kind = "announcement";
    n.title = w.a.title;
    n.body = w.a.body;
    n.data = w.a.data;
    n.data["announcement_id"] = w.a.id;
    n.dedupe_key = "announcement:" + w.a.id;  // a page delivered again after a crash stores nothing twice
    auto d = co_await inbox_->deliver(std::move(n));
    if (!d) co_return std::move(d).error();  // the lease runs out and the page is retried
    if (*d) ++delivered;
  }
  auto st = co_await inbox_repo::advance_announcement(db_, w.a.id, next_cursor, delivered, done);
  if (!st) co_return std::move(st).error();
  co_return true;
}

}  // namespace harmar::notify
