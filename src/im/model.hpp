#pragma once
// The nouns of instant messaging, as stored and as shown (shared/API.md "Instant messaging").
#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace harmar::im {

inline constexpr const char* kOwner = "owner";
inline constexpr const char* kAdmin = "admin";
inline constexpr const char* kMember = "member";

// Higher ranks may manage lower ones: owner 3, admin 2, member 1, anything else 0.
int rank(std::string_view role);

struct Conversation {
  std::string id;
  std::string type;  // "direct" | "group"
  std::string title;
  bool encrypted = false;  // end-to-end: messages carry only ciphertext
  bool open = false;       // a group anyone may join by adding themselves
  std::string created_by;
  int64_t last_seq = 0;    // the seq of the newest message (0 when none)
  int64_t member_count = 0;
  int64_t created_at = 0;
  int64_t updated_at = 0;
  int64_t last_activity_at = 0;
  // The caller's membership, when read for a member.
  std::string role;
  int64_t read_seq = 0;
  int64_t unread_count = 0;
};

struct Member {
  std::string user_id;
  std::string role;
  int64_t read_seq = 0;
  int64_t joined_at = 0;
};

struct Attachment {
  std::string id;
  std::string conversation_id;
  std::string uploader_id;
  std::string name;
  std::string content_type;
  int64_t size = 0;
  std::string sha256;
  int64_t created_at = 0;
};

struct Message {
  std::string id;
  std::string conversation_id;
  std::string sender_id;
  int64_t seq = 0;
  std::string body;             // "" in end-to-end conversations, and once recalled
  std::string client_msg_id;
  std::string ciphertext;       // JSON object text {device key id: base64 sealed box}; "" if none
  std::optional<Attachment> attachment;
  int64_t created_at = 0;
  std::optional<int64_t> edited_at;
  std::optional<int64_t> deleted_at;  // recalled: body, ciphertext and attachment are gone
};

// A user's device key for end-to-end conversations (X25519 public key, 32 bytes).
struct DeviceKey {
  std::string id;  // the key id: what the ciphertext map of a message names
  std::string user_id;
  std::string device_id;
  std::string public_key;  // standard base64 with padding (44 characters)
  int64_t created_at = 0;
};

// One entry of a user's sync log: what changed for them, at their position `pos`.
struct SyncEvent {
  int64_t pos = 0;
  std::string type;  // message.new, message.edited, message.deleted, conversation.*, member.*
  std::string conversation_id;
  boost::json::object data;
  int64_t created_at = 0;
};

boost::json::object to_json(const Conversation& c);
boost::json::object to_json(const Member& m);
boost::json::object to_json(const Attachment& a);
boost::json::object to_json(const Message& m);
boost::json::object to_json(const DeviceKey& k);
boost::json::object to_json(const SyncEvent& e);

}  // namespace harmar::im
