#include "im/model.hpp"

#include <boost/json.hpp>

#include "core/clock.hpp"

namespace harmar::im {

namespace js = boost::json;

int rank(std::string_view role) {
  if (role == kOwner) return 3;
  if (role == kAdmin) return 2;
  if (role == kMember) return 1;
  return 0;
}

js::object to_json(const Conversation& c) {
  js::object o;
  o["id"] = c.id;
  o["type"] = c.type;
  o["title"] = c.title;
  o["encrypted"] = c.encrypted;
  o["open"] = c.open;
  o["created_by"] = c.created_by;
  o["last_seq"] = c.last_seq;
  o["member_count"] = c.member_count;
  o["created_at"] = format_rfc3339(c.created_at);
  o["updated_at"] = format_rfc3339(c.updated_at);
  o["last_activity_at"] = format_rfc3339(c.last_activity_at);
  if (!c.role.empty()) {
    o["role"] = c.role;
    o["read_seq"] = c.read_seq;
    o["unread_count"] = c.unread_count;
  }
  return o;
}

js::object to_json(const Member& m) {
  return {{"user_id", m.user_id}, {"role", m.role}, {"read_seq", m.read_seq}, {"joined_at", format_rfc3339(m.joined_at)}};
}

js::object to_json(const Attachment& a) {
  return {{"id", a.id},
          {"conversation_id", a.conversation_id},
          {"uploader_id", a.uploader_id},
          {"name", a.name},
          {"content_type", a.content_type},
          {"size", a.size},
          {"sha256", a.sha256},
          {"url", "/v1/conversations/" + a.conversation_id + "/attachments/" + a.id},
          {"created_at", format_rfc3339(a.created_at)}};
}

js::object to_json(const Message& m) {
  js::object o;
  o["id"] = m.id;
  o["conversation_id"] = m.conversation_id;
  o["sender_id"] = m.sender_id;
  o["seq"] = m.seq;
  o["body"] = m.body;
  o["client_msg_id"] = m.client_msg_id;
  o["created_at"] = format_rfc3339(m.created_at);
  if (!m.ciphertext.empty()) {
    boost::system::error_code ec;
    js::value v = js::parse(m.ciphertext, ec);
    o["ciphertext"] = !ec && v.is_object() ? std::move(v) : js::value(js::object{});
  }
  if (m.attachment) o["attachment"] = to_json(*m.attachment);
  o["edited_at"] = m.edited_at ? js::value(format_rfc3339(*m.edited_at)) : js::value(nullptr);
  o["deleted"] = m.deleted_at.has_value();
  if (m.deleted_at) o["deleted_at"] = format_rfc3339(*m.deleted_at);
  return o;
}

js::object to_json(const DeviceKey& k) {
  return {{"id", k.id},
          {"user_id", k.user_id},
          {"device_id", k.device_id},
          {"public_key", k.public_key},
          {"created_at", format_rfc3339(k.created_at)}};
}

js::object to_json(const SyncEvent& e) {
  return {{"pos", e.pos},
          {"type", e.type},
          {"conversation_id", e.conversation_id},
          {"data", e.data},
          {"created_at", format_rfc3339(e.created_at)}};
}

}  // namespace harmar::im
