#include "im/repo.hpp"

#include <boost/json.hpp>

namespace harmar::im::repo {

namespace js = boost::json;
using store::Row;
using store::Rows;

namespace {

// Both backends: BOOLEAN is 0/1 in SQLite; "is_open" because OPEN reads like a keyword.
constexpr const char* kSchema =
    "CREATE TABLE im_conversations (id TEXT PRIMARY KEY, type TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',"
    " encrypted BOOLEAN NOT NULL DEFAULT FALSE, is_open BOOLEAN NOT NULL DEFAULT FALSE, direct_key TEXT,"
    " created_by TEXT NOT NULL, last_seq BIGINT NOT NULL DEFAULT 0, member_count BIGINT NOT NULL DEFAULT 0,"
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, last_activity_at BIGINT NOT NULL);"
    "CREATE UNIQUE INDEX im_conversations_direct ON im_conversations (direct_key);"
    "CREATE TABLE im_members (conversation_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,"
    " read_seq BIGINT NOT NULL DEFAULT 0, joined_at BIGINT NOT NULL, PRIMARY KEY (conversation_id, user_id));"
    "CREATE INDEX im_members_user ON im_members (user_id);"
    "CREATE TABLE im_messages (id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, seq BIGINT NOT NULL,"
    " sender_id TEXT NOT NULL, body TEXT NOT NULL, client_msg_id TEXT NOT NULL, ciphertext TEXT NOT NULL DEFAULT '',"
    " attachment_id TEXT, created_at BIGINT NOT NULL, edited_at BIGINT, deleted_at BIGINT);"
    "CREATE UNIQUE INDEX im_messages_seq ON im_messages (conversation_id, seq);"
    "CREATE UNIQUE INDEX im_messages_client ON im_messages (conversation_id, sender_id, client_msg_id);"
    "CREATE TABLE im_attachments (id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, uploader_id TEXT NOT NULL,"
    " name TEXT NOT NULL, content_type TEXT NOT NULL, size BIGINT NOT NULL, sha256 TEXT NOT NULL, message_id TEXT,"
    " created_at BIGINT NOT NULL);"
    "CREATE INDEX im_attachments_unused ON im_attachments (created_at) WHERE message_id IS NULL;"
    "CREATE TABLE im_sync_heads (user_id TEXT PRIMARY KEY, pos BIGINT NOT NULL);"
    "CREATE TABLE im_sync_events (user_id TEXT NOT NULL, pos BIGINT NOT NULL, type TEXT NOT NULL,"
    " conversation_id TEXT NOT NULL, message_seq BIGINT, data TEXT NOT NULL, created_at BIGINT NOT NULL,"
    " PRIMARY KEY (user_id, pos));"
    "CREATE INDEX im_sync_events_created ON im_sync_events (created_at);"
    "CREATE TABLE im_device_keys (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, device_id TEXT NOT NULL,"
    " public_key TEXT NOT NULL, created_at BIGINT NOT NULL);"
    "CREATE UNIQUE INDEX im_device_keys_device ON im_device_keys (user_id, device_id);"
    "CREATE TABLE im_presence (user_id TEXT NOT NULL, node_id TEXT NOT NULL, seen_at BIGINT NOT NULL,"
    " PRIMARY KEY (user_id, node_id));"
    "CREATE INDEX im_presence_node ON im_presence (node_id);"
    "CREATE TABLE im_last_seen (user_id TEXT PRIMARY KEY, seen_at BIGINT NOT NULL);";

// MariaDB: keyed text is VARCHAR (an index key holds at most 768 utf8mb4 characters), the rest
// LONGTEXT; no partial index (unused attachments are found by (message_id, created_at)).
constexpr const char* kMysqlSchema =
    "CREATE TABLE im_conversations (id VARCHAR(64) PRIMARY KEY, type VARCHAR(16) NOT NULL, title LONGTEXT NOT"
    " NULL DEFAULT '', encrypted BOOLEAN NOT NULL DEFAULT FALSE, is_open BOOLEAN NOT NULL DEFAULT FALSE,"
    " direct_key VARCHAR(255), created_by VARCHAR(64) NOT NULL, last_seq BIGINT NOT NULL DEFAULT 0,"
    " member_count BIGINT NOT NULL DEFAULT 0, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    " last_activity_at BIGINT NOT NULL, UNIQUE INDEX im_conversations_direct (direct_key)) ENGINE=InnoDB"
    " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE im_members (conversation_id VARCHAR(64) NOT NULL, user_id VARCHAR(64) NOT NULL, role"
    " VARCHAR(16) NOT NULL, read_seq BIGINT NOT NULL DEFAULT 0, joined_at BIGINT NOT NULL, PRIMARY KEY"
    " (conversation_id, user_id), INDEX im_members_user (user_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    " COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE im_messages (id VARCHAR(64) PRIMARY KEY, conversation_id VARCHAR(64) NOT NULL, seq BIGINT NOT"
    " NULL, sender_id VARCHAR(64) NOT NULL, body LONGTEXT NOT NULL, client_msg_id VARCHAR(255) NOT NULL,"
    " ciphertext LONGTEXT NOT NULL DEFAULT '', attachment_id VARCHAR(64), created_at BIGINT NOT NULL, edited_at"
    " BIGINT, deleted_at BIGINT, UNIQUE INDEX im_messages_seq (conversation_id, seq), UNIQUE INDEX"
    " im_messages_client (conversation_id, sender_id, client_msg_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    " COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE im_attachments (id VARCHAR(64) PRIMARY KEY, conversation_id VARCHAR(64) NOT NULL, uploader_id"
    " VARCHAR(64) NOT NULL, name LONGTEXT NOT NULL, content_type LONGTEXT NOT NULL, size BIGINT NOT NULL,"
    " sha256 LONGTEXT NOT NULL, message_id VARCHAR(64), created_at BIGINT NOT NULL, INDEX im_attachments_unused"
    " (message_id, created_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE im_sync_heads (user_id VARCHAR(64) PRIMARY KEY, pos BIGINT NOT NULL) ENGINE=InnoDB DEFAULT"
    " CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE im_sync_events (user_id VARCHAR(64) NOT NULL, pos BIGINT NOT NULL, type VARCHAR(64) NOT NULL,"
    " conversation_id VARCHAR(64) NOT NULL, message_seq BIGINT, data LONGTEXT NOT NULL, created_at BIGINT NOT"
    " NULL, PRIMARY KEY (user_id, pos), INDEX im_sync_events_created (created_at)) ENGINE=InnoDB DEFAULT"
    " CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE im_device_keys (id VARCHAR(64) PRIMARY KEY, user_id VARCHAR(64) NOT NULL, device_id"
    " VARCHAR(255) NOT NULL, public_key LONGTEXT NOT NULL, created_at BIGINT NOT NULL, UNIQUE INDEX"
    " im_device_keys_device (user_id, device_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    " COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE im_presence (user_id VARCHAR(64) NOT NULL, node_id VARCHAR(255) NOT NULL, seen_at BIGINT NOT"
    " NULL, PRIMARY KEY (user_id, node_id), INDEX im_presence_node (node_id)) ENGINE=InnoDB DEFAULT"
    " CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE im_last_seen (user_id VARCHAR(64) PRIMARY KEY, seen_at BIGINT NOT NULL) ENGINE=InnoDB DEFAULT"
    " CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;";

constexpr const char* kConvColumns =
    "c.id, c.type, c.title, c.encrypted, c.is_open, c.created_by, c.last_seq, c.member_count, c.created_at,"
    " c.updated_at, c.last_activity_at";
// The same, unqualified, for RETURNING (SQLite's may name only the updated table's columns).
constexpr const char* kConvColumnsBare =
    "id, type, title, encrypted, is_open, created_by, last_seq, member_count, created_at, updated_at, last_activity_at";
// The caller's membership and unread count, after kConvColumns (m is the caller's member row).
constexpr const char* kMemberColumns =
    ", m.role, m.read_seq, (SELECT COUNT(*) FROM im_messages x WHERE x.conversation_id = c.id AND x.seq > m.read_seq"
    " AND x.sender_id <> m.user_id AND x.deleted_at IS NULL)";

constexpr const char* kMessageColumns =
    "m.id, m.conversation_id, m.sender_id, m.seq, m.body, m.client_msg_id, m.ciphertext, m.created_at, m.edited_at,"
    " m.deleted_at, a.id, a.uploader_id, a.name, a.content_type, a.size, a.sha256, a.created_at";
constexpr const char* kMessageFrom =
    " FROM im_messages m LEFT JOIN im_attachments a ON a.id = m.attachment_id AND m.deleted_at IS NULL";

Conversation read_conversation(const Row& r, bool with_member) {
  Conversation c;
  c.id = r.text(0);
  c.type = r.text(1);
  c.title = r.text(2);
  c.encrypted = r.boolean(3);
  c.open = r.boolean(4);
  c.created_by = r.text(5);
  c.last_seq = r.integer(6);
  c.member_count = r.integer(7);
  c.created_at = r.integer(8);
  c.updated_at = r.integer(9);
  c.last_activity_at = r.integer(10);
  if (with_member) {
    c.role = r.text(11);
    c.read_seq = r.integer(12);
    c.unread_count = r.integer(13);
  }
  return c;
}

// The message whose columns start at `col` (kMessageColumns).
Message read_message(const Row& r, std::size_t col = 0) {
  Message m;
  m.id = r.text(col + 0);
  m.conversation_id = r.text(col + 1);
  m.sender_id = r.text(col + 2);
  m.seq = r.integer(col + 3);
  m.body = r.text(col + 4);
  m.client_msg_id = r.text(col + 5);
  m.ciphertext = r.text(col + 6);
  m.created_at = r.integer(col + 7);
  m.edited_at = r.opt_integer(col + 8);
  m.deleted_at = r.opt_integer(col + 9);
  if (!r.is_null(col + 10)) {
    Attachment a;
    a.id = r.text(col + 10);
    a.conversation_id = m.conversation_id;
    a.uploader_id = r.text(col + 11);
    a.name = r.text(col + 12);
    a.content_type = r.text(col + 13);
    a.size = r.integer(col + 14);
    a.sha256 = r.text(col + 15);
    a.created_at = r.integer(col + 16);
    m.attachment = std::move(a);
  }
  return m;
}

Member read_member(const Row& r) { return {r.text(0), r.text(1), r.integer(2), r.integer(3)}; }

Attachment read_attachment(const Row& r) {
  Attachment a;
  a.id = r.text(0);
  a.conversation_id = r.text(1);
  a.uploader_id = r.text(2);
  a.name = r.text(3);
  a.content_type = r.text(4);
  a.size = r.integer(5);
  a.sha256 = r.text(6);
  a.created_at = r.integer(7);
  return a;
}

DeviceKey read_key(const Row& r) { return {r.text(0), r.text(1), r.text(2), r.text(3), r.integer(4)}; }

js::object parse_object(const std::string& text) {
  boost::system::error_code ec;
  js::value v = js::parse(text, ec);
  if (ec || !v.is_object()) return {};
  return std::move(v.as_object());
}

Status done(Result<int64_t> r) {
  if (!r) return std::move(r).error();
  return {};
}

template <class T, class F>
Result<std::optional<T>> first(Result<Rows> rows, F read) {
  if (!rows) return std::move(rows).error();
  if (rows->empty()) return std::optional<T>{};
  return std::optional<T>(read(rows->front()));
}

}  // namespace

std::vector<store::Migration> migrations() {
  return {{1, "conversations, messages, sync log, keys, presence", kSchema, kSchema, kMysqlSchema}};
}

// --- conversations --------------------------------------------------------------------------

asio::awaitable<Result<bool>> insert_conversation(Querier& q, const Conversation& c,
                                                  const std::optional<std::string>& direct_key) {
  auto n = co_await q.exec(
      "INSERT INTO im_conversations (id, type, title, encrypted, is_open, direct_key, created_by, last_seq, member_count,"
      " created_at, updated_at, last_activity_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8, $8, $8)"
      " ON CONFLICT DO NOTHING",
      {c.id, c.type, c.title, c.encrypted, c.open, store::nullable(direct_key), c.created_by, c.created_at});
  if (!n) co_return std::move(n).error();
  co_return *n == 1;
}

asio::awaitable<Result<std::optional<std::string>>> find_direct(Querier& q, const std::string& direct_key) {
  co_return first<std::string>(co_await q.query("SELECT id FROM im_conversations WHERE direct_key = $1", {direct_key}),
                               [](const Row& r) { return r.text(0); });
}

asio::awaitable<Result<std::optional<Conversation>>> find_for_member(Querier& q, const std::string& id,
                                                                      const std::string& user_id) {
  std::string sql = std::string("SELECT ") + kConvColumns + kMemberColumns +
                    " FROM im_conversations c JOIN im_members m ON m.conversation_id = c.id"
                    " WHERE c.id = $1 AND m.user_id = $2";
  co_return first<Conversation>(co_await q.query(sql, {id, user_id}),
                                [](const Row& r) { return read_conversation(r, true); });
}

asio::awaitable<Result<std::optional<Conversation>>> find(Querier& q, const std::string& id) {
  std::string sql = std::string("SELECT ") + kConvColumns + " FROM im_conversations c WHERE c.id = $1";
  co_return first<Conversation>(co_await q.query(sql, {id}), [](const Row& r) { return read_conversation(r, false); });
}

asio::awaitable<Result<std::vector<Conversation>>> list_for_member(Querier& q, const std::string& user_id,
                                                                    std::optional<std::pair<int64_t, std::string>> after,
                                                                    int limit) {
  std::string sql = std::string("SELECT ") + kConvColumns + kMemberColumns +
                    " FROM im_members m JOIN im_conversations c ON c.id = m.conversation_id WHERE m.user_id = $1";
  store::Params params{user_id};
  if (after) {
    sql += " AND (c.last_activity_at < $2 OR (c.last_activity_at = $2 AND c.id < $3))";
    params.push_back(after->first);
    params.push_back(after->second);
  }
  sql += " ORDER BY c.last_activity_at DESC, c.id DESC LIMIT " + std::to_string(limit);
  auto rows = co_await q.query(sql, std::move(params));
  if (!rows) co_return std::move(rows).error();
  std::vector<Conversation> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) out.push_back(read_conversation(r, true));
  co_return out;
}

asio::awaitable<Result<std::optional<Conversation>>> lock_conversation(Querier& q, const std::string& id, int64_t now) {
  std::string sql = std::string("UPDATE im_conversations SET last_activity_at = $2 WHERE id = $1 RETURNING ") +
                    kConvColumnsBare;
  co_return first<Conversation>(co_await q.query(sql, {id, now}), [](const Row& r) { return read_conversation(r, false); });
}

asio::awaitable<Result<std::optional<int64_t>>> next_seq(Querier& q, const std::string& id, int64_t now) {
  co_return first<int64_t>(
      co_await q.query("UPDATE im_conversations SET last_seq = last_seq + 1, last_activity_at = $2 WHERE id = $1"
                       " RETURNING last_seq",
                       {id, now}),
      [](const Row& r) { return r.integer(0); });
}

asio::awaitable<Status> update_conversation(Querier& q, const std::string& id, const std::optional<std::string>& title,
                                            std::optional<bool> open, int64_t now) {
  co_return done(co_await q.exec(
      "UPDATE im_conversations SET title = COALESCE($2, title), is_open = COALESCE($3, is_open), updated_at = $4"
      " WHERE id = $1",
      {id, store::nullable(title), store::nullable(open), now}));
}

asio::awaitable<Status> add_member_count(Querier& q, const std::string& id, int64_t delta) {
  co_return done(co_await q.exec("UPDATE im_conversations SET member_count = member_count + $2 WHERE id = $1", {id, delta}));
}

// --- members --------------------------------------------------------------------------------

asio::awaitable<Result<std::optional<Member>>> find_member(Querier& q, const std::string& conversation_id,
                                                           const std::string& user_id) {
  co_return first<Member>(
      co_await q.query("SELECT user_id, role, read_seq, joined_at FROM im_members WHERE conversation_id = $1"
                       " AND user_id = $2",
                       {conversation_id, user_id}),
      read_member);
}

asio::awaitable<Result<std::vector<Member>>> list_members(Querier& q, const std::string& conversation_id, int limit) {
  auto rows = co_await q.query(
      "SELECT user_id, role, read_seq, joined_at FROM im_members WHERE conversation_id = $1"
      " ORDER BY joined_at, user_id LIMIT $2",
      {conversation_id, int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<Member> out;
  for (const auto& r : *rows) out.push_back(read_member(r));
  co_return out;
}

asio::awaitable<Result<std::vector<std::string>>> member_ids(Querier& q, const std::string& conversation_id) {
  auto rows = co_await q.query("SELECT user_id FROM im_members WHERE conversation_id = $1 ORDER BY user_id",
                               {conversation_id});
  if (!rows) co_return std::move(rows).error();
  std::vector<std::string> out;
  for (const auto& r : *rows) out.push_back(r.text(0));
  co_return out;
}

asio::awaitable<Result<bool>> insert_member(Querier& q, const std::string& conversation_id, const std::string& user_id,
                                            const std::string& role, int64_t read_seq, int64_t now) {
  auto n = co_await q.exec(
      "INSERT INTO im_members (conversation_id, user_id, role, read_seq, joined_at) VALUES ($1, $2, $3, $4, $5)"
      " ON CONFLICT DO NOTHING",
      {conversation_id, user_id, role, read_seq, now});
  if (!n) co_return std::move(n).error();
  co_return *n == 1;
}

asio::awaitable<Result<bool>> delete_member(Querier& q, const std::string& conversation_id, const std::string& user_id) {
  auto n = co_await q.exec("DELETE FROM im_members WHERE conversation_id = $1 AND user_id = $2", {conversation_id, user_id});
  if (!n) co_return std::move(n).error();
  co_return *n == 1;
}

asio::awaitable<Status> set_role(Querier& q, const std::string& conversation_id, const std::string& user_id,
                                 const std::string& role) {
  co_return done(co_await q.exec("UPDATE im_members SET role = $3 WHERE conversation_id = $1 AND user_id = $2",
                                 {conversation_id, user_id, role}));
}

asio::awaitable<Result<bool>> advance_read(Querier& q, const std::string& conversation_id, const std::string& user_id,
                                           int64_t seq) {
  auto n = co_await q.exec(
      "UPDATE im_members SET read_seq = $3 WHERE conversation_id = $1 AND user_id = $2 AND read_seq < $3",
      {conversation_id, user_id, seq});
  if (!n) co_return std::move(n).error();
  co_return *n == 1;
}

asio::awaitable<Result<int64_t>> unread_count(Querier& q, const std::string& conversation_id, const std::string& user_id,
                                              int64_t read_seq) {
  auto rows = co_await q.query(
      "SELECT COUNT(*) FROM im_messages WHERE conversation_id = $1 AND seq > $2 AND sender_id <> $3"
      " AND deleted_at IS NULL",
      {conversation_id, read_seq, user_id});
  if (!rows) co_return std::move(rows).error();
  co_return rows->front().integer(0);
}

asio::awaitable<Result<std::optional<std::string>>> successor(Querier& q, const std::string& conversation_id) {
  co_return first<std::string>(
      co_await q.query("SELECT user_id FROM im_members WHERE conversation_id = $1 AND role <> 'owner'"
                       " ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, user_id LIMIT 1",
                       {conversation_id}),
      [](const Row& r) { return r.text(0); });
}

asio::awaitable<Result<bool>> share_conversation(Querier& q, const std::string& a, const std::string& b) {
  auto rows = co_await q.query(
      "SELECT 1 FROM im_members x JOIN im_members y ON x.conversation_id = y.conversation_id"
      " WHERE x.user_id = $1 AND y.user_id = $2 LIMIT 1",
      {a, b});
  if (!rows) co_return std::move(rows).error();
  co_return !rows->empty();
}

asio::awaitable<Result<std::vector<std::string>>> conversation_ids(Querier& q, const std::string& user_id, int limit) {
  auto rows = co_await q.query(
      "SELECT m.conversation_id FROM im_members m JOIN im_conversations c ON c.id = m.conversation_id"
      " WHERE m.user_id = $1 ORDER BY c.last_activity_at DESC LIMIT $2",
      {user_id, int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<std::string> out;
  for (const auto& r : *rows) out.push_back(r.text(0));
  co_return out;
}

// --- messages -------------------------------------------------------------------------------

asio::awaitable<Result<bool>> insert_message(Querier& q, const Message& m, const std::optional<std::string>& attachment_id) {
  auto n = co_await q.exec(
      "INSERT INTO im_messages (id, conversation_id, seq, sender_id, body, client_msg_id, ciphertext, attachment_id,"
      " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
      {m.id, m.conversation_id, m.seq, m.sender_id, m.body, m.client_msg_id, m.ciphertext,
       store::nullable(attachment_id), m.created_at});
  if (!n) co_return std::move(n).error();
  co_return *n == 1;
}

asio::awaitable<Result<std::optional<Message>>> find_message(Querier& q, const std::string& conversation_id,
                                                             const std::string& id) {
  std::string sql = std::string("SELECT ") + kMessageColumns + kMessageFrom + " WHERE m.conversation_id = $1 AND m.id = $2";
  co_return first<Message>(co_await q.query(sql, {conversation_id, id}), [](const Row& r) { return read_message(r); });
}

asio::awaitable<Result<std::optional<Message>>> find_by_client_id(Querier& q, const std::string& conversation_id,
                                                                  const std::string& sender_id,
                                                                  const std::string& client_msg_id) {
  std::string sql = std::string("SELECT ") + kMessageColumns + kMessageFrom +
                    " WHERE m.conversation_id = $1 AND m.sender_id = $2 AND m.client_msg_id = $3";
  co_return first<Message>(co_await q.query(sql, {conversation_id, sender_id, client_msg_id}),
                           [](const Row& r) { return read_message(r); });
}

asio::awaitable<Result<std::vector<Message>>> list_messages(Querier& q, const std::string& conversation_id,
                                                            int64_t before_seq, int64_t after_seq, int limit) {
  std::string sql = std::string("SELECT ") + kMessageColumns + kMessageFrom + " WHERE m.conversation_id = $1";
  store::Params params{conversation_id};
  if (after_seq > 0) {
    sql += " AND m.seq > $2";
    params.push_back(after_seq);
  }
  if (before_seq > 0) {
    sql += " AND m.seq < $" + std::to_string(params.size() + 1);
    params.push_back(before_seq);
  }
  sql += after_seq > 0 ? " ORDER BY m.seq ASC" : " ORDER BY m.seq DESC";
  sql += " LIMIT " + std::to_string(limit);
  auto rows = co_await q.query(sql, std::move(params));
  if (!rows) co_return std::move(rows).error();
  std::vector<Message> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) out.push_back(read_message(r));
  co_return out;
}

asio::awaitable<Status> edit_message(Querier& q, const std::string& id, const std::string& body,
                                     const std::string& ciphertext, int64_t now) {
  co_return done(co_await q.exec("UPDATE im_messages SET body = $2, ciphertext = $3, edited_at = $4 WHERE id = $1",
                                 {id, body, ciphertext, now}));
}

asio::awaitable<Status> recall_message(Querier& q, const std::string& id, int64_t now) {
  co_return done(co_await q.exec(
      "UPDATE im_messages SET body = '', ciphertext = '', deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL", {id, now}));
}

// --- attachments ----------------------------------------------------------------------------

asio::awaitable<Status> insert_attachment(Querier& q, const Attachment& a) {
  co_return done(co_await q.exec(
      "INSERT INTO im_attachments (id, conversation_id, uploader_id, name, content_type, size, sha256, created_at)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      {a.id, a.conversation_id, a.uploader_id, a.name, a.content_type, a.size, a.sha256, a.created_at}));
}

asio::awaitable<Result<std::optional<Attachment>>> find_attachment(Querier& q, const std::string& conversation_id,
                                                                   const std::string& id) {
  co_return first<Attachment>(
      co_await q.query("SELECT id, conversation_id, uploader_id, name, content_type, size, sha256, created_at"
                       " FROM im_attachments WHERE conversation_id = $1 AND id = $2",
                       {conversation_id, id}),
      read_attachment);
}

asio::awaitable<Result<bool>> claim_attachment(Querier& q, const std::string& id, const std::string& conversation_id,
                                               const std::string& uploader_id, const std::string& message_id) {
  auto n = co_await q.exec(
      "UPDATE im_attachments SET message_id = $4 WHERE id = $1 AND conversation_id = $2 AND uploader_id = $3"
      " AND message_id IS NULL",
      {id, conversation_id, uploader_id, message_id});
  if (!n) co_return std::move(n).error();
  co_return *n == 1;
}

asio::awaitable<Status> release_attachment(Querier& q, const std::string& message_id) {
  // A recalled message's attachment becomes unused: the sweeper removes its blob.
  co_return done(co_await q.exec("UPDATE im_attachments SET message_id = NULL, created_at = 0 WHERE message_id = $1",
                                 {message_id}));
}

asio::awaitable<Result<std::vector<Attachment>>> unused_attachments(Querier& q, int64_t before_ms, int limit) {
  auto rows = co_await q.query(
      "SELECT id, conversation_id, uploader_id, name, content_type, size, sha256, created_at FROM im_attachments"
      " WHERE message_id IS NULL AND created_at < $1 ORDER BY created_at LIMIT $2",
      {before_ms, int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<Attachment> out;
  for (const auto& r : *rows) out.push_back(read_attachment(r));
  co_return out;
}

asio::awaitable<Status> delete_attachment(Querier& q, const std::string& id) {
  co_return done(co_await q.exec("DELETE FROM im_attachments WHERE id = $1 AND message_id IS NULL", {id}));
}

// --- sync log -------------------------------------------------------------------------------

asio::awaitable<Result<std::vector<Position>>> append_sync_for_members(Querier& q, const std::string& conversation_id,
                                                                       const std::string& type,
                                                                       std::optional<int64_t> message_seq,
                                                                       const std::string& data, int64_t now) {
  // Heads in user id order (see the lock order above), then one event per member at its new head.
  auto heads = co_await q.exec(
      "INSERT INTO im_sync_heads (user_id, pos) SELECT user_id, 1 FROM im_members WHERE conversation_id = $1"
      " ORDER BY user_id ON CONFLICT (user_id) DO UPDATE SET pos = im_sync_heads.pos + 1",
      {conversation_id});
  if (!heads) co_return std::move(heads).error();
  auto rows = co_await q.query(
      "INSERT INTO im_sync_events (user_id, pos, type, conversation_id, message_seq, data, created_at)"
      " SELECT h.user_id, h.pos, CAST($2 AS TEXT), CAST($1 AS TEXT), CAST($3 AS BIGINT), CAST($4 AS TEXT),"
      " CAST($5 AS BIGINT) FROM im_members m JOIN im_sync_heads h ON h.user_id = m.user_id"
      " WHERE m.conversation_id = $1 RETURNING user_id, pos",
      {conversation_id, type, store::nullable(message_seq), data, now});
  if (!rows) co_return std::move(rows).error();
  std::vector<Position> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) out.push_back({r.text(0), r.integer(1)});
  co_return out;
}

asio::awaitable<Result<std::vector<Position>>> append_sync_for_users(Querier& q, const std::vector<std::string>& user_ids,
                                                                     const std::string& conversation_id,
                                                                     const std::string& type,
                                                                     std::optional<int64_t> message_seq,
                                                                     const std::string& data, int64_t now) {
  std::vector<Position> out;
  out.reserve(user_ids.size());
  for (const auto& user : user_ids) {
    auto head = co_await q.query(
        "INSERT INTO im_sync_heads (user_id, pos) VALUES ($1, 1) ON CONFLICT (user_id)"
        " DO UPDATE SET pos = im_sync_heads.pos + 1 RETURNING pos",
        {user});
    if (!head) co_return std::move(head).error();
    int64_t pos = head->front().integer(0);
    auto ins = co_await q.exec(
        "INSERT INTO im_sync_events (user_id, pos, type, conversation_id, message_seq, data, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        {user, pos, type, conversation_id, store::nullable(message_seq), data, now});
    if (!ins) co_return std::move(ins).error();
    out.push_back({user, pos});
  }
  co_return out;
}

asio::awaitable<Result<std::vector<SyncEvent>>> read_sync(Querier& q, const std::string& user_id, int64_t after, int limit) {
  std::string sql = std::string("SELECT e.pos, e.type, e.conversation_id, e.data, e.created_at, e.message_seq, ") +
                    kMessageColumns +
                    " FROM im_sync_events e LEFT JOIN im_messages m ON m.conversation_id = e.conversation_id"
                    " AND m.seq = e.message_seq LEFT JOIN im_attachments a ON a.id = m.attachment_id"
                    " AND m.deleted_at IS NULL WHERE e.user_id = $1 AND e.pos > $2 ORDER BY e.pos LIMIT $3";
  auto rows = co_await q.query(sql, {user_id, after, int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<SyncEvent> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) {
    SyncEvent e;
    e.pos = r.integer(0);
    e.type = r.text(1);
    e.conversation_id = r.text(2);
    e.data = parse_object(r.text(3));
    e.created_at = r.integer(4);
    // Message events carry the message as it is now (edited, or recalled).
    if (!r.is_null(5) && !r.is_null(6)) e.data["message"] = to_json(read_message(r, 6));
    out.push_back(std::move(e));
  }
  co_return out;
}

asio::awaitable<Result<SyncBounds>> sync_bounds(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query(
      "SELECT (SELECT pos FROM im_sync_heads WHERE user_id = $1), (SELECT MIN(pos) FROM im_sync_events WHERE user_id = $1)",
      {user_id});
  if (!rows) co_return std::move(rows).error();
  co_return SyncBounds{rows->front().integer(0), rows->front().integer(1)};
}

asio::awaitable<Result<int64_t>> trim_sync(Querier& q, int64_t before_ms) {
  co_return co_await q.exec("DELETE FROM im_sync_events WHERE created_at < $1", {before_ms});
}

// --- device keys ----------------------------------------------------------------------------

asio::awaitable<Status> upsert_key(Querier& q, const DeviceKey& k) {
  co_return done(co_await q.exec(
      "INSERT INTO im_device_keys (id, user_id, device_id, public_key, created_at) VALUES ($1, $2, $3, $4, $5)"
      " ON CONFLICT (user_id, device_id) DO UPDATE SET id = excluded.id, public_key = excluded.public_key,"
      " created_at = excluded.created_at",
      {k.id, k.user_id, k.device_id, k.public_key, k.created_at}));
}

asio::awaitable<Result<std::vector<DeviceKey>>> keys_of(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query(
      "SELECT id, user_id, device_id, public_key, created_at FROM im_device_keys WHERE user_id = $1 ORDER BY device_id",
      {user_id});
  if (!rows) co_return std::move(rows).error();
  std::vector<DeviceKey> out;
  for (const auto& r : *rows) out.push_back(read_key(r));
  co_return out;
}

asio::awaitable<Result<bool>> delete_key(Querier& q, const std::string& user_id, const std::string& device_id) {
  auto n = co_await q.exec("DELETE FROM im_device_keys WHERE user_id = $1 AND device_id = $2", {user_id, device_id});
  if (!n) co_return std::move(n).error();
  co_return *n == 1;
}

asio::awaitable<Result<std::vector<DeviceKey>>> member_keys(Querier& q, const std::string& conversation_id) {
  auto rows = co_await q.query(
      "SELECT k.id, k.user_id, k.device_id, k.public_key, k.created_at FROM im_device_keys k"
      " JOIN im_members m ON m.user_id = k.user_id WHERE m.conversation_id = $1 ORDER BY k.user_id, k.device_id",
      {conversation_id});
  if (!rows) co_return std::move(rows).error();
  std::vector<DeviceKey> out;
  for (const auto& r : *rows) out.push_back(read_key(r));
  co_return out;
}

asio::awaitable<Result<int64_t>> count_keys(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query("SELECT COUNT(*) FROM im_device_keys WHERE user_id = $1", {user_id});
  if (!rows) co_return std::move(rows).error();
  co_return rows->front().integer(0);
}

// --- presence -------------------------------------------------------------------------------

asio::awaitable<Status> presence_online(Querier& q, const std::string& node_id, const std::string& user_id, int64_t now) {
  co_return done(co_await q.exec(
      "INSERT INTO im_presence (user_id, node_id, seen_at) VALUES ($1, $2, $3)"
      " ON CONFLICT (user_id, node_id) DO UPDATE SET seen_at = excluded.seen_at",
      {user_id, node_id, now}));
}

asio::awaitable<Status> presence_offline(Querier& q, const std::string& node_id, const std::string& user_id, int64_t now) {
  auto gone = co_await q.exec("DELETE FROM im_presence WHERE user_id = $1 AND node_id = $2", {user_id, node_id});
  if (!gone) co_return std::move(gone).error();
  co_return done(co_await q.exec(
      "INSERT INTO im_last_seen (user_id, seen_at) VALUES ($1, $2)"
      " ON CONFLICT (user_id) DO UPDATE SET seen_at = excluded.seen_at",
      {user_id, now}));
}

asio::awaitable<Status> presence_refresh(Querier& q, const std::string& node_id, int64_t now) {
  co_return done(co_await q.exec("UPDATE im_presence SET seen_at = $2 WHERE node_id = $1", {node_id, now}));
}

asio::awaitable<Result<int64_t>> presence_sweep(Querier& q, int64_t stale_before) {
  auto seen = co_await q.exec(
      "INSERT INTO im_last_seen (user_id, seen_at) SELECT user_id, MAX(seen_at) FROM im_presence"
      " WHERE seen_at < $1 GROUP BY user_id ON CONFLICT (user_id) DO UPDATE SET seen_at = excluded.seen_at"
      " WHERE excluded.seen_at > im_last_seen.seen_at",
      {stale_before});
  if (!seen) co_return std::move(seen).error();
  co_return co_await q.exec("DELETE FROM im_presence WHERE seen_at < $1", {stale_before});
}

asio::awaitable<Result<int64_t>> presence_nodes(Querier& q, const std::string& user_id, int64_t fresh_after) {
  auto rows = co_await q.query("SELECT COUNT(*) FROM im_presence WHERE user_id = $1 AND seen_at > $2",
                               {user_id, fresh_after});
  if (!rows) co_return std::move(rows).error();
  co_return rows->front().integer(0);
}

asio::awaitable<Result<PresenceRow>> presence_of(Querier& q, const std::string& user_id, int64_t fresh_after) {
  auto rows = co_await q.query(
      "SELECT (SELECT COUNT(*) FROM im_presence WHERE user_id = $1 AND seen_at > $2),"
      " (SELECT seen_at FROM im_last_seen WHERE user_id = $1)",
      {user_id, fresh_after});
  if (!rows) co_return std::move(rows).error();
  PresenceRow p;
  p.user_id = user_id;
  p.online = rows->front().integer(0) > 0;
  p.last_seen_at = rows->front().opt_integer(1);
  co_return p;
}

}  // namespace harmar::im::repo
