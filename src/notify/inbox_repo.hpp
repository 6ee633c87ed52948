#pragma once
// The SQL of the inbox, its preferences and announcements (tables inbox_*). Times are Unix ms.
#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "notify/inbox.hpp"
#include "store/sql.hpp"

namespace harmar::notify::inbox_repo {

namespace asio = boost::asio;
using store::Querier;

// Inserts unless (user_id, dedupe_key) exists; true when inserted.
asio::awaitable<Result<bool>> insert(Querier& q, const InboxMessage& m, const std::string& dedupe_key);
// Newest first, ids below `before` (exclusive) if given.
asio::awaitable<Result<std::vector<InboxMessage>>> list(Querier& q, const std::string& user_id,
                                                       const std::optional<std::string>& before, int64_t limit,
                                                       bool unread_only);
asio::awaitable<Result<int64_t>> unread_count(Querier& q, const std::string& user_id);
asio::awaitable<Result<std::optional<InboxMessage>>> find(Querier& q, const std::string& user_id, const std::string& id);
// Sets read_at if unset; false when the message is not the user's.
asio::awaitable<Result<bool>> mark_read(Querier& q, const std::string& user_id, const std::string& id, int64_t now);
asio::awaitable<Result<int64_t>> mark_all_read(Querier& q, const std::string& user_id, int64_t now);
asio::awaitable<Result<bool>> remove(Querier& q, const std::string& user_id, const std::string& id);
// Deletes messages, and finished announcements, created before `before_ms`; the messages deleted.
asio::awaitable<Result<int64_t>> purge(Querier& q, int64_t before_ms);
// Users with more than `keep` messages (at most `limit` of them).
asio::awaitable<Result<std::vector<std::string>>> users_over(Querier& q, int64_t keep, int64_t limit);
// Deletes the user's messages beyond the newest `keep`; the number deleted.
asio::awaitable<Result<int64_t>> trim_user(Querier& q, const std::string& user_id, int64_t keep);

// The user's stored choices (kinds never set are absent).
asio::awaitable<Result<Preferences>> preferences(Querier& q, const std::string& user_id);
asio::awaitable<Status> set_preference(Querier& q, const std::string& user_id, const std::string& kind,
                                       ChannelChoice c, int64_t now);

asio::awaitable<Status> insert_announcement(Querier& q, const Announcement& a);
struct AnnouncementWork {
  Announcement a;
  std::string cursor;  // the last user id delivered to (every user), or the index reached (list)
};
// Leases one unfinished announcement whose lease ran out until `lease_until`.
asio::awaitable<Result<std::optional<AnnouncementWork>>> claim_announcement(store::Database& db, int64_t now,
                                                                           int64_t lease_until);
asio::awaitable<Status> advance_announcement(Querier& q, const std::string& id, const std::string& cursor,
                                             int64_t delivered, bool done);

}  // namespace harmar::notify::inbox_repo
