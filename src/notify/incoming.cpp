#include "notify/incoming.hpp"

#include <boost/json.hpp>

#include "core/blocking.hpp"
#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "tasks/notes.hpp"

namespace harmar::notify {

namespace js = boost::json;

namespace {


std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

// At most `max` bytes of `s`, cut at a character (PostgreSQL TEXT must stay valid UTF-8).
std::string utf8_prefix(std::string_view s, std::size_t max) {
  if (s.size() <= max) return std::string(s);
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return std::string(s.substr(0, end));
}

constexpr const char* kColumns =
    "id, status, code, reason, from_addr, subject, message_id, blob_key, action, task_id, device_id, size, received_at";

}  // namespace

js::object InboundRow::to_json() const {
  auto opt = [](const std::string& v) { return v.empty() ? js::value(nullptr) : js::value(v); };
  return js::object{{"id", id},           {"status", status},          {"code", opt(code)},
                    {"reason", opt(reason)}, {"from", opt(from)},      {"subject", opt(subject)},
                    {"message_id", opt(message_id)}, {"blob_key", opt(blob_key)}, {"action", opt(action)},
                    {"task_id", opt(task_id)}, {"device_id", opt(device_id)}, {"size", size},
                    {"received_at", format_rfc3339(received_at)}};
}

std::vector<store::Migration> inbound_migrations(int version) {
  const char* sql =
      "CREATE TABLE email_inbound (id TEXT PRIMARY KEY, status TEXT NOT NULL, code TEXT, reason TEXT, from_addr TEXT,"
      " subject TEXT, message_id TEXT, blob_key TEXT, action TEXT, task_id TEXT, device_id TEXT, size BIGINT NOT NULL,"
      " received_at BIGINT NOT NULL);"
      "CREATE INDEX email_inbound_message ON email_inbound (message_id, status);"
      "CREATE INDEX email_inbound_status ON email_inbound (status, id);";
  const char* mysql =
      "CREATE TABLE email_inbound (id VARCHAR(64) PRIMARY KEY, status VARCHAR(32) NOT NULL, code LONGTEXT,"
      " reason LONGTEXT, from_addr LONGTEXT, subject LONGTEXT, message_id VARCHAR(255), blob_key LONGTEXT,"
      " action LONGTEXT, task_id VARCHAR(64), device_id VARCHAR(64), size BIGINT NOT NULL, received_at BIGINT"
      " NOT NULL, INDEX email_inbound_message (message_id, status), INDEX email_inbound_status (status, id))"
      " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;";
  return {{version, "email_inbound", sql, sql, mysql}};
}

std::string reply_text(std::string_view text, std::size_t max) {
  std::string out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t eol = text.find('\n', pos);
    std::string_view line = text.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::string_view t = trim(line);
    if (!t.empty() && t.front() == '>') break;
    if (line == "-- " || line == "--") break;
    if (t.find("-----Original Message-----") != std::string_view::npos) break;
    if (t.size() >= 6 && t.substr(0, 3) == "On " && t.substr(t.size() - 6) == "wrote:") break;
    out.append(line);
    out.push_back('\n');
    if (eol == std::string_view::npos) break;
    pos = eol + 1;
  }
  std::string result(trim(out));
  if (result.size() > max) {
    std::size_t end = max;
    while (end > 0 && (static_cast<unsigned char>(result[end]) & 0xC0) == 0x80) --end;
    result.resize(end);
  }
  return result;
}

std::string token_of_address(std::string_view addr) {
  auto at = addr.rfind('@');
  std::string_view local = addr.substr(0, at);
  auto plus = local.find('+');
  if (plus == std::string_view::npos) return {};
  return std::string(local.substr(plus + 1));
}

std::string token_of_message_id(std::string_view id) {
  auto at = id.find('@');
  std::string_view left = id.substr(0, at);
  return std::string(left.substr(0, left.find('.')));
}

Incoming::Incoming(platform::Services& services, std::shared_ptr<const EmailCrypto> crypto, IncomingOptions opts)
    : s_(services), crypto_(std::move(crypto)), opts_(opts) {}

asio::awaitable<Status> Incoming::record(const InboundRow& row) {
  auto opt = [](const std::string& v) { return v.empty() ? store::Param(nullptr) : store::Param(v); };
  store::Params params{row.id,   row.status,    opt(row.code),      opt(row.reason),   opt(row.from),
                       opt(row.subject), opt(row.message_id), opt(row.blob_key), opt(row.action), opt(row.task_id),
                       opt(row.device_id), row.size, row.received_at};
  auto done = co_await s_.db.exec(std::string("INSERT INTO email_inbound (") + kColumns +
                                      ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                                  std::move(params));
  if (!done.ok()) co_return done.error();
  co_return Status{};
}

asio::awaitable<Error> Incoming::reject(InboundRow row, const std::string& raw, Error e) {
  auto logger = log::get("notify");
  row.status = "rejected";
  row.code = e.code;
  row.reason = utf8_prefix(e.detail, 500);
  row.blob_key = "email/inbound/" + row.id + ".eml";
  auto stored = co_await s_.blobs.put(row.blob_key, raw);
  if (!stored.ok()) {
    logger->warn(log::fields({{"msg", "a refused inbound mail could not be stored"}, {"inbound_id", row.id},
                              {"error", stored.error().detail}}));
    row.blob_key.clear();
  }
  auto recorded = co_await record(row);
  if (!recorded.ok())
    logger->warn(log::fields({{"msg", "inbound mail not recorded"}, {"inbound_id", row.id}, {"error", recorded.error().detail}}));
  logger->info(log::fields({{"msg", "inbound mail refused"}, {"inbound_id", row.id}, {"code", e.code}, {"size", std::to_string(row.size)}}));
  e.detail += " (kept as inbound mail " + row.id + ")";
  co_return e;
}

asio::awaitable<Result<js::object>> Incoming::receive(std::string raw) {
  InboundRow row;
  row.id = new_id();
  row.received_at = now_ms();
  row.size = static_cast<int64_t>(raw.size());
  MimeLimits limits = opts_.limits;
  auto parse = [&raw, &limits] { return parse_mime(raw, limits); };  // a named closure (g++ 12)
  auto parsed = co_await run_blocking(parse);
  if (!parsed.ok()) {
    Error e = parsed.error();
    co_return co_await reject(std::move(row), raw, std::move(e));
  }
  ParsedMail& mail = *parsed;
  row.from = utf8_prefix(mail.from, 320);
  row.subject = utf8_prefix(mail.subject, 500);
  row.message_id = utf8_prefix(mail.message_id, 500);

  // The same message again (an MTA retrying): the first outcome.
  if (!row.message_id.empty()) {
    store::Params p{row.message_id, row.from};
    auto seen = co_await s_.db.query(std::string("SELECT ") + kColumns +
                                         " FROM email_inbound WHERE message_id = $1 AND from_addr = $2 AND status = 'accepted'",
                                     std::move(p));
    if (!seen.ok()) co_return seen.error();
    if (!seen->empty()) {
      const auto& r = seen->front();
      co_return js::object{{"id", r.text(0)}, {"status", "accepted"}, {"action", r.text(8)}, {"task_id", r.text(9)},
                           {"duplicate", true}};
    }
  }

  std::optional<ReplyTarget> target;
  for (const auto& a : mail.recipients) {
    if (target) break;
    std::string t = token_of_address(a);
    if (!t.empty()) target = crypto_->verify_token(t);
  }
  for (const auto& id : mail.references) {
    if (target) break;
    target = crypto_->verify_token(token_of_message_id(id));
  }
  if (!target) {
    Error e = Error{422, "no_reply_token", "the mail answers no task or device mail of this server"};
    co_return co_await reject(std::move(row), raw, std::move(e));
  }

  auto tasks = s_.find<tasks::TaskNotes>();
  if (!tasks) {
    Error e = Error::unavailable("the tasks module is not running");
    co_return co_await reject(std::move(row), raw, std::move(e));
  }
  std::string text = reply_text(mail.text, opts_.max_note_bytes);
  if (target->kind == 't') {
    row.task_id = target->id;
    row.action = "note";
    std::string note = text.empty() ? "(no text) " + row.subject : text;
    auto added = co_await tasks->add_note(target->id, row.from, std::move(note));
    if (!added.ok()) {
      Error e = added.error();
      if (e.status == 404) e = Error{422, "reply_target_gone", "the task this mail answers no longer exists"};
      co_return co_await reject(std::move(row), raw, std::move(e));
    }
  } else {
    row.device_id = target->id;
    row.action = "task";
    js::object payload{{"from", row.from}, {"subject", row.subject}, {"text", text}, {"message_id", row.message_id}};
    std::string type = "email";
    js::value task_payload(std::move(payload));
    auto created = co_await tasks->create_for_device(target->id, std::move(type), std::move(task_payload));
    if (!created.ok()) {
      Error e = created.error();
      if (e.status == 404) e = Error{422, "reply_target_gone", "the device this mail answers no longer exists"};
      co_return co_await reject(std::move(row), raw, std::move(e));
    }
    row.task_id = *created;
  }
  row.status = "accepted";
  auto recorded = co_await record(row);
  if (!recorded.ok()) co_return recorded.error();
  log::get("notify")->info(log::fields({{"msg", "inbound mail accepted"}, {"inbound_id", row.id}, {"action", row.action},
                                        {"task_id", row.task_id}}));
  co_return js::object{{"id", row.id}, {"status", "accepted"}, {"action", row.action}, {"task_id", row.task_id}};
}

asio::awaitable<Result<std::vector<InboundRow>>> Incoming::list(std::string status, std::optional<std::string> before,
                                                                 int limit) {
  store::Params p{status, before.value_or(""), int64_t(limit)};
  auto rows = co_await s_.db.query(std::string("SELECT ") + kColumns +
                                       " FROM email_inbound WHERE ($1 = '' OR status = $1) AND ($2 = '' OR id < $2)"
                                       " ORDER BY id DESC LIMIT $3",
                                   std::move(p));
  if (!rows.ok()) co_return rows.error();
  std::vector<InboundRow> out;
  for (const auto& r : *rows) {
    InboundRow o;
    o.id = r.text(0);
    o.status = r.text(1);
    o.code = r.text(2);
    o.reason = r.text(3);
    o.from = r.text(4);
    o.subject = r.text(5);
    o.message_id = r.text(6);
    o.blob_key = r.text(7);
    o.action = r.text(8);
    o.task_id = r.text(9);
    o.device_id = r.text(10);
    o.size = r.integer(11);
    o.received_at = r.integer(12);
    out.push_back(std::move(o));
  }
  co_return out;
}

}  // namespace harmar::notify
