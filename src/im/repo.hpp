#pragma once
// The SQL of instant messaging: one function per query, every text parameterised.
//
// Lock order (PostgreSQL row locks), so concurrent writers never deadlock: a conversation row
// first (lock_conversation / next_seq), then member or message rows, and sync heads last, in
// ascending user id order (append_sync_for_members sorts; append_sync_for_users expects sorted ids).
#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/result.hpp"
#include "im/model.hpp"
#include "store/sql.hpp"

namespace harmar::im::repo {

namespace asio = boost::asio;
using store::Querier;

std::vector<store::Migration> migrations();

// --- conversations --------------------------------------------------------------------------
// "direct_key" is "{a}:{b}" with a < b, the two members of a direct conversation; unique.
asio::awaitable<Result<bool>> insert_conversation(Querier& q, const Conversation& c,
                                                  const std::optional<std::string>& direct_key);
asio::awaitable<Result<std::optional<std::string>>> find_direct(Querier& q, const std::string& direct_key);
// The conversation as `user_id` sees it (role, read_seq, unread_count); nullopt unless a member.
asio::awaitable<Result<std::optional<Conversation>>> find_for_member(Querier& q, const std::string& id,
                                                                      const std::string& user_id);
asio::awaitable<Result<std::optional<Conversation>>> find(Querier& q, const std::string& id);
// The user's conversations, most recent activity first, after the cursor (activity ms, id).
asio::awaitable<Result<std::vector<Conversation>>> list_for_member(Querier& q, const std::string& user_id,
                                                                    std::optional<std::pair<int64_t, std::string>> after,
                                                                    int limit);
// Locks the row (touching last_activity_at); nullopt if there is no such conversation.
asio::awaitable<Result<std::optional<Conversation>>> lock_conversation(Querier& q, const std::string& id, int64_t now);
// Allocates the next message seq under the row lock.
asio::awaitable<Result<std::optional<int64_t>>> next_seq(Querier& q, const std::string& id, int64_t now);
asio::awaitable<Status> update_conversation(Querier& q, const std::string& id, const std::optional<std::string>& title,
                                            std::optional<bool> open, int64_t now);
asio::awaitable<Status> add_member_count(Querier& q, const std::string& id, int64_t delta);

// --- members --------------------------------------------------------------------------------
asio::awaitable<Result<std::optional<Member>>> find_member(Querier& q, const std::string& conversation_id,
                                                           const std::string& user_id);
asio::awaitable<Result<std::vector<Member>>> list_members(Querier& q, const std::string& conversation_id, int limit);
// Sorted by user id.
asio::awaitable<Result<std::vector<std::string>>> member_ids(Querier& q, const std::string& conversation_id);
// False if already a member.
asio::awaitable<Result<bool>> insert_member(Querier& q, const std::string& conversation_id, const std::string& user_id,
                                            const std::string& role, int64_t read_seq, int64_t now);
asio::awaitable<Result<bool>> delete_member(Querier& q, const std::string& conversation_id, const std::string& user_id);
asio::awaitable<Status> set_role(Querier& q, const std::string& conversation_id, const std::string& user_id,
                                 const std::string& role);
// Moves the read position forward only; true if it moved.
asio::awaitable<Result<bool>> advance_read(Querier& q, const std::string& conversation_id, const std::string& user_id,
                                           int64_t seq);
asio::awaitable<Result<int64_t>> unread_count(Querier& q, const std::string& conversation_id, const std::string& user_id,
                                              int64_t read_seq);
// The member who should own a group its owner left: the longest-standing admin, else member.
asio::awaitable<Result<std::optional<std::string>>> successor(Querier& q, const std::string& conversation_id);
// Whether `a` and `b` are members of some common conversation.
asio::awaitable<Result<bool>> share_conversation(Querier& q, const std::string& a, const std::string& b);
// The ids of the user's conversations (newest activity first), at most `limit`.
asio::awaitable<Result<std::vector<std::string>>> conversation_ids(Querier& q, const std::string& user_id, int limit);

// --- messages -------------------------------------------------------------------------------
// False when (conversation, sender, client_msg_id) exists already.
asio::awaitable<Result<bool>> insert_message(Querier& q, const Message& m, const std::optional<std::string>& attachment_id);
asio::awaitable<Result<std::optional<Message>>> find_message(Querier& q, const std::string& conversation_id,
                                                             const std::string& id);
asio::awaitable<Result<std::optional<Message>>> find_by_client_id(Querier& q, const std::string& conversation_id,
                                                                  const std::string& sender_id,
                                                                  const std::string& client_msg_id);
// seq in (after_seq, before_seq) (0 = unbounded); newest first when paging back (after_seq 0),
// oldest first when paging forward; at most `limit`.
asio::awaitable<Result<std::vector<Message>>> list_messages(Querier& q, const std::string& conversation_id,
                                                            int64_t before_seq, int64_t after_seq, int limit);
asio::awaitable<Status> edit_message(Querier& q, const std::string& id, const std::string& body,
                                     const std::string& ciphertext, int64_t now);
asio::awaitable<Status> recall_message(Querier& q, const std::string& id, int64_t now);

// --- attachments ----------------------------------------------------------------------------
asio::awaitable<Status> insert_attachment(Querier& q, const Attachment& a);
asio::awaitable<Result<std::optional<Attachment>>> find_attachment(Querier& q, const std::string& conversation_id,
                                                                   const std::string& id);
// Binds an unused attachment the sender uploaded to the message; false if it is not that.
asio::awaitable<Result<bool>> claim_attachment(Querier& q, const std::string& id, const std::string& conversation_id,
                                               const std::string& uploader_id, const std::string& message_id);
asio::awaitable<Status> release_attachment(Querier& q, const std::string& message_id);
// Attachments no message uses, created before `before_ms` (the sweeper removes their blobs).
asio::awaitable<Result<std::vector<Attachment>>> unused_attachments(Querier& q, int64_t before_ms, int limit);
asio::awaitable<Status> delete_attachment(Querier& q, const std::string& id);

// --- sync log -------------------------------------------------------------------------------
struct Position {
  std::string user_id;
  int64_t pos = 0;
};
// One event for every member of the conversation, each at their next position.
asio::awaitable<Result<std::vector<Position>>> append_sync_for_members(Querier& q, const std::string& conversation_id,
                                                                       const std::string& type,
                                                                       std::optional<int64_t> message_seq,
                                                                       const std::string& data, int64_t now);
// One event for each of `user_ids` (sorted ascending, no duplicates).
asio::awaitable<Result<std::vector<Position>>> append_sync_for_users(Querier& q, const std::vector<std::string>& user_ids,
                                                                     const std::string& conversation_id,
                                                                     const std::string& type,
                                                                     std::optional<int64_t> message_seq,
                                                                     const std::string& data, int64_t now);
asio::awaitable<Result<std::vector<SyncEvent>>> read_sync(Querier& q, const std::string& user_id, int64_t after, int limit);
struct SyncBounds {
  int64_t head = 0;
  int64_t oldest = 0;  // 0 when nothing is kept
};
asio::awaitable<Result<SyncBounds>> sync_bounds(Querier& q, const std::string& user_id);
asio::awaitable<Result<int64_t>> trim_sync(Querier& q, int64_t before_ms);

// --- device keys ----------------------------------------------------------------------------
asio::awaitable<Status> upsert_key(Querier& q, const DeviceKey& k);
asio::awaitable<Result<std::vector<DeviceKey>>> keys_of(Querier& q, const std::string& user_id);
asio::awaitable<Result<bool>> delete_key(Querier& q, const std::string& user_id, const std::string& device_id);
asio::awaitable<Result<std::vector<DeviceKey>>> member_keys(Querier& q, const std::string& conversation_id);
asio::awaitable<Result<int64_t>> count_keys(Querier& q, const std::string& user_id);

// --- presence -------------------------------------------------------------------------------
asio::awaitable<Status> presence_online(Querier& q, const std::string& node_id, const std::string& user_id, int64_t now);
// Also records last seen.
asio::awaitable<Status> presence_offline(Querier& q, const std::string& node_id, const std::string& user_id, int64_t now);
asio::awaitable<Status> presence_refresh(Querier& q, const std::string& node_id, int64_t now);
// Rows of nodes that stopped refreshing: removed, their users' last seen set. Returns how many.
asio::awaitable<Result<int64_t>> presence_sweep(Querier& q, int64_t stale_before);
// Nodes (other than gone ones) where the user is online now.
asio::awaitable<Result<int64_t>> presence_nodes(Querier& q, const std::string& user_id, int64_t fresh_after);
struct PresenceRow {
  std::string user_id;
  bool online = false;
  std::optional<int64_t> last_seen_at;
};
asio::awaitable<Result<PresenceRow>> presence_of(Querier& q, const std::string& user_id, int64_t fresh_after);

}  // namespace harmar::im::repo
