#pragma once
// The rules of instant messaging, testable without HTTP.
//
// Every change is committed together with one event in the sync log of each user it concerns
// (a per-user position `pos` that only grows), then pushed live through realtime: on
// `conversation:{id}` (members only) and on each concerned user's `user` channel (with its pos).
// A device that reconnects asks GET /v1/sync?since=<the last pos it saw> and gets exactly what
// it missed, whichever node served the change and whether or not the live push got through.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/principal.hpp"
#include "core/result.hpp"
#include "im/model.hpp"
#include "im/repo.hpp"
#include "platform/module.hpp"
#include "realtime/realtime.hpp"

namespace harmar::auth {
class Accounts;
}

namespace harmar::im {

namespace asio = boost::asio;

struct Options {
  int64_t max_group_members = 500;
  int64_t max_message_bytes = 16 * 1024;         // body text
  int64_t max_ciphertext_bytes = 512 * 1024;     // the whole ciphertext map, as JSON
  int64_t edit_window_ms = 24 * 3600 * 1000;     // 0: no limit
  int64_t recall_window_ms = 24 * 3600 * 1000;   // 0: no limit
  int64_t attachment_max_bytes = 25 << 20;
  std::vector<std::string> attachment_types;     // "image/*", "application/pdf", ...
  int64_t sync_retention_ms = int64_t(30) * 86'400'000;
  int64_t presence_ttl_ms = 60'000;
  int64_t max_keys_per_user = 32;

  static Options from(const config::Config& c);
};

struct CreateInput {
  std::string type;  // "direct" | "group"
  std::vector<std::string> member_ids;
  std::string title;
  bool encrypted = false;
  bool open = false;
};

struct SendInput {
  std::string body;
  std::string client_msg_id;
  std::string ciphertext;  // validated JSON object text, or ""
  std::optional<std::string> attachment_id;
};

struct Created {
  Conversation conversation;
  bool created = true;  // false: the direct conversation existed already
};

struct Sent {
  Message message;
  bool replayed = false;  // the client_msg_id was seen before: this is the first message
};

struct ReadState {
  std::string conversation_id;
  int64_t read_seq = 0;
  int64_t unread_count = 0;
};

struct SyncPage {
  std::vector<SyncEvent> events;
  int64_t since = 0;       // where this page starts (after a gap: the oldest position kept - 1)
  int64_t next_since = 0;  // pass this as since next time
  int64_t head = 0;        // the user's newest position
  bool has_more = false;
  bool history_gone = false;  // positions in (asked since, since] were trimmed away
};

struct Presence {
  std::string user_id;
  bool online = false;
  std::optional<int64_t> last_seen_at;
};

// The caller's end of a conversation's detail: the conversation and its members.
struct Detail {
  Conversation conversation;
  std::vector<Member> members;
};

// Validates and normalises a ciphertext map {key id: base64 sealed box} (empty string: none).
Result<std::string> check_ciphertext(const boost::json::object& map, int64_t max_bytes);
// Whether `content_type` is allowed by patterns like "image/*" or "application/pdf".
bool type_allowed(std::string_view content_type, const std::vector<std::string>& patterns);

class Service : public std::enable_shared_from_this<Service> {
 public:
  Service(platform::Services& services, Options options);

  // Registers the conversation: channel rule and the presence watcher; starts the sweepers.
  void start();
  void stop();

  asio::awaitable<Result<Created>> create(Principal who, CreateInput in);
  asio::awaitable<Result<std::vector<Conversation>>> list(Principal who, std::optional<std::string> cursor, int limit);
  asio::awaitable<Result<Detail>> get(Principal who, std::string id);
  asio::awaitable<Result<Detail>> update(Principal who, std::string id, std::optional<std::string> title,
                                         std::optional<bool> open);
  asio::awaitable<Result<Detail>> add_members(Principal who, std::string id, std::vector<std::string> user_ids,
                                              std::string role);
  // Leaving (target == caller) or kicking.
  asio::awaitable<Status> remove_member(Principal who, std::string id, std::string user_id);
  asio::awaitable<Result<Member>> set_role(Principal who, std::string id, std::string user_id, std::string role);

  asio::awaitable<Result<Sent>> send(Principal who, std::string id, SendInput in);
  // Ascending by seq. Paging back: the `limit` messages before `before_seq` (0: the newest);
  // paging forward: those after `after_seq`.
  asio::awaitable<Result<std::vector<Message>>> history(Principal who, std::string id, int64_t before_seq,
                                                        int64_t after_seq, int limit);
  asio::awaitable<Result<Message>> edit(Principal who, std::string id, std::string message_id, std::string body,
                                        std::string ciphertext);
  asio::awaitable<Status> recall(Principal who, std::string id, std::string message_id);
  asio::awaitable<Result<ReadState>> mark_read(Principal who, std::string id, int64_t seq);
  asio::awaitable<Status> typing(Principal who, std::string id, bool typing);

  asio::awaitable<Result<SyncPage>> sync(Principal who, int64_t since, int limit);

  asio::awaitable<Result<Attachment>> upload(Principal who, std::string id, std::string name, std::string content_type,
                                             std::string bytes);
  asio::awaitable<Result<std::pair<Attachment, std::string>>> download(Principal who, std::string id,
                                                                       std::string attachment_id);

  asio::awaitable<Result<DeviceKey>> put_key(Principal who, std::string device_id, std::string public_key);
  // The caller's keys, or (for_user) those of a user who shares a conversation with the caller.
  asio::awaitable<Result<std::vector<DeviceKey>>> keys(Principal who, std::optional<std::string> for_user);
  asio::awaitable<Status> delete_key(Principal who, std::string device_id);
  asio::awaitable<Result<std::vector<DeviceKey>>> conversation_keys(Principal who, std::string id);

  // Presence of the caller and of users who share a conversation with them (others are left out).
  asio::awaitable<Result<std::vector<Presence>>> presence(Principal who, std::vector<std::string> user_ids);

  // The realtime rule for "conversation:{id}": members only; a member removed while subscribed
  // sees the removal and nothing after it (unless added again).
  asio::awaitable<realtime::Access> channel_access(const Principal& who, std::string_view channel);

  // What realtime::Connections reports for this node: queued, and recorded in order by the
  // presence loop (or by presence_tick()).
  void on_presence(const std::string& user_id, bool online);
  // Records the queued presence changes now.
  asio::awaitable<void> presence_tick();
  const std::string& node_id() const { return node_id_; }

 private:
  struct Fanout {
    std::string conversation_id;
    std::string type;
    boost::json::object data;
    bool on_conversation = true;        // also on conversation:{id}
    std::vector<repo::Position> users;  // each on their user channel, with data.pos
  };
  // Pushes committed changes through realtime, in order; completes once they are stored.
  asio::awaitable<void> push(std::vector<Fanout> changes);
  asio::awaitable<void> push_ephemeral(std::string channel, std::string type, boost::json::object data);

  asio::awaitable<Result<Member>> require_member(const std::string& id, const std::string& user_id);
  asio::awaitable<Status> check_users_exist(const std::vector<std::string>& ids);
  asio::awaitable<Result<Detail>> detail(const std::string& id, const std::string& user_id);

  asio::awaitable<void> presence_loop();
  asio::awaitable<void> apply_presence(std::string user_id, bool online);
  asio::awaitable<void> sweep_loop();

  platform::Services& services_;
  Options opts_;
  store::Database& db_;
  std::shared_ptr<realtime::Publisher> publisher_;
  std::shared_ptr<auth::Accounts> accounts_;
  std::string node_id_;

  std::mutex mu_;
  std::deque<std::pair<std::string, bool>> presence_queue_;
  bool stopped_ = false;
  std::unique_ptr<asio::steady_timer> presence_wake_;
  std::unique_ptr<asio::steady_timer> sweep_timer_;
};

}  // namespace harmar::im
