#include "im/service.hpp"

#include <sodium.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <set>

#include "auth/service.hpp"
#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"

namespace harmar::im {

namespace js = boost::json;
using boost::system::error_code;

namespace {

constexpr std::string_view kChannelPrefix = "conversation:";
constexpr int kPresenceFanout = 100;  // conversations told when a user comes online or goes offline
constexpr std::size_t kMaxCiphertextEntries = 256;
constexpr std::size_t kSealBytes = crypto_box_SEALBYTES;

std::shared_ptr<spdlog::logger> logger() { return log::get("im"); }

Error no_conversation() { return Error::not_found("no such conversation"); }

std::string channel_of(const std::string& conversation_id) { return std::string(kChannelPrefix) + conversation_id; }

std::optional<std::string> decode_base64(std::string_view text) {
  std::string out(text.size(), '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(), nullptr,
                        &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size())
    return std::nullopt;
  out.resize(len);
  return out;
}

bool valid_device_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string direct_key(const std::string& a, const std::string& b) { return a < b ? a + ":" + b : b + ":" + a; }

js::object membership_data(const std::string& conversation_id, const std::string& user_id, const std::string& role,
                           const std::string& by, const char* membership) {
  return {{"conversation_id", conversation_id}, {"user_id", user_id}, {"role", role}, {"by", by},
          {"membership", membership}};
}

// Members' view of a conversation in events: without any one member's read state.
js::object shared_json(Conversation c) {
  c.role.clear();
  return to_json(c);
}

bool is_user(const Principal& p) { return p.kind != Principal::Kind::Device && !p.user_id.empty(); }

Error users_only() { return Error::forbidden("instant messaging is for users, not devices"); }

}  // namespace

Options Options::from(const config::Config& c) {
  Options o;
  o.max_group_members = c.get_int("im.max_group_members");
  o.max_message_bytes = c.get_size("im.max_message_bytes");
  o.max_ciphertext_bytes = c.get_size("im.max_ciphertext_bytes");
  o.edit_window_ms = c.get_duration_ms("im.edit_window");
  o.recall_window_ms = c.get_duration_ms("im.recall_window");
  o.attachment_max_bytes = c.get_size("im.attachment_max_bytes");
  o.attachment_types = c.get_list("im.attachment_types");
  o.sync_retention_ms = c.get_duration_ms("im.sync_retention");
  o.presence_ttl_ms = c.get_duration_ms("im.presence_ttl");
  o.max_keys_per_user = c.get_int("im.max_keys_per_user");
  return o;
}

Result<std::string> check_ciphertext(const js::object& map, int64_t max_bytes) {
  if (map.empty()) return Error::validation("ciphertext needs at least one key", {{"ciphertext", "is empty"}});
  if (map.size() > kMaxCiphertextEntries)
    return Error::validation("ciphertext has too many keys",
                             {{"ciphertext", "at most " + std::to_string(kMaxCiphertextEntries) + " keys"}});
  for (const auto& [key, value] : map) {
    std::string field = "ciphertext." + std::string(key);
    if (!is_uuid(key)) return Error::validation("ciphertext keys are device key ids", {{field, "is not a key id"}});
    if (!value.is_string()) return Error::validation("ciphertext values are base64 strings", {{field, "must be a string"}});
    auto bytes = decode_base64(value.get_string());
    if (!bytes) return Error::validation("ciphertext values are base64 strings", {{field, "is not base64"}});
    // A sealed box is at least its ephemeral public key and MAC.
    if (bytes->size() <= kSealBytes)
      return Error::validation("ciphertext values are sealed boxes", {{field, "is too short for a sealed box"}});
  }
  std::string text = js::serialize(map);
  if (static_cast<int64_t>(text.size()) > max_bytes)
    return Error::payload_too_large("the ciphertext is larger than " + std::to_string(max_bytes) + " bytes");
  return text;
}

bool type_allowed(std::string_view content_type, const std::vector<std::string>& patterns) {
  auto semi = content_type.find(';');
  std::string_view base = content_type.substr(0, semi);
  while (!base.empty() && base.back() == ' ') base.remove_suffix(1);
  if (base.empty()) return false;
  std::string lower(base);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& p : patterns) {
    if (p == "*/*" || p == lower) return true;
    if (p.size() > 2 && p.ends_with("/*") && lower.starts_with(p.substr(0, p.size() - 1))) return true;
  }
  return false;
}

Service::Service(platform::Services& services, Options options)
    : services_(services), opts_(std::move(options)), db_(services.db), node_id_(new_id()) {
  publisher_ = services.find<realtime::Publisher>();
  accounts_ = services.find<auth::Accounts>();
}

// --- realtime -------------------------------------------------------------------------------

namespace {

// Completion of a batch of publishes running on the background loop, awaited from another loop.
struct Countdown {
  explicit Countdown(asio::any_io_executor ex, int n) : ex(ex), signal(ex), left(n) {
    signal.expires_at(asio::steady_timer::time_point::max());
  }
  void one_done() {
    if (--left == 0) {
      asio::post(ex, [self = this->self.lock()] {
        if (!self) return;
        self->finished = true;
        self->signal.cancel();
      });
    }
  }
  asio::any_io_executor ex;
  asio::steady_timer signal;  // on the waiter's loop
  std::atomic<int> left;
  bool finished = false;      // touched only on the waiter's loop
  std::weak_ptr<Countdown> self;
};

}  // namespace

asio::awaitable<void> Service::push(std::vector<Fanout> changes) {
  if (!publisher_ || changes.empty()) co_return;
  // One coroutine per event, spawned in order: each queues its append before it first waits, so a
  // channel's events are stored in the order of the changes, and the Appender batches them into
  // one transaction. The change's request answers once they are stored: a client that sent one
  // message, then another through another node, finds them in that order in every channel.
  int count = 0;
  for (const auto& c : changes) count += (c.on_conversation ? 1 : 0) + static_cast<int>(c.users.size());
  if (count == 0) co_return;
  auto waiter = std::make_shared<Countdown>(co_await asio::this_coro::executor, count);
  waiter->self = waiter;
  auto ex = services_.background.get_executor();
  auto publisher = publisher_;
  auto publish = [ex, publisher, waiter](std::string channel, std::string type, js::object data) {
    asio::co_spawn(
        ex,
        [publisher, waiter, channel = std::move(channel), type = std::move(type), data = std::move(data)]() mutable
        -> asio::awaitable<void> {
          auto r = co_await publisher->publish(channel, std::move(type), std::move(data));
          if (!r.ok())
            logger()->warn(log::fields({{"msg", "event not pushed; clients catch up through /v1/sync"},
                                        {"channel", channel}, {"error", r.error().detail}}));
          waiter->one_done();
        },
        asio::detached);
  };
  for (auto& c : changes) {
    if (c.on_conversation) publish(channel_of(c.conversation_id), c.type, c.data);
    for (const auto& u : c.users) {
      js::object d = c.data;
      d["pos"] = u.pos;
      if (!d.contains("conversation_id")) d["conversation_id"] = c.conversation_id;
      publish(realtime::user_channel(u.user_id, "user"), c.type, std::move(d));
    }
  }
  while (!waiter->finished) {
    error_code ignored;
    co_await waiter->signal.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
}

asio::awaitable<void> Service::push_ephemeral(std::string channel, std::string type, js::object data) {
  if (!publisher_) co_return;
  auto r = co_await publisher_->publish_ephemeral(std::move(channel), std::move(type), std::move(data));
  if (!r.ok()) logger()->debug(log::fields({{"msg", "ephemeral event not pushed"}, {"error", r.error().detail}}));
}

asio::awaitable<realtime::Access> Service::channel_access(const Principal& who, std::string_view channel) {
  realtime::Access access;
  if (!is_user(who) || !channel.starts_with(kChannelPrefix)) co_return access;
  std::string id(channel.substr(kChannelPrefix.size()));
  std::string me = who.user_id;
  if (!is_uuid(id)) co_return access;
  auto m = co_await repo::find_member(db_, id, me);
  if (!m.ok() || !*m) co_return access;
  access.allowed = true;
  // Membership changes travel on the channel itself, in order, so a socket that stays subscribed
  // stops seeing the conversation when its user is removed (and sees it again if added back).
  // The state lives in the closure (called for every event of every subscribed socket): one
  // allocation fewer to reach per delivery. The filter is moved, never copied, so it is one state.
  access.filter = [me, removed = false](const js::object& data) mutable {
    const js::value* membership = data.if_contains("membership");
    if (!membership) return !removed;
    const js::value* user = data.if_contains("user_id");
    if (membership->is_string() && user && user->is_string() && user->get_string() == me) {
      bool joined = membership->get_string() == "joined";
      bool was_removed = removed;
      removed = !joined;
      return joined || !was_removed;  // the user sees their own removal, once
    }
    return !removed;
  };
  co_return access;
}

// --- helpers --------------------------------------------------------------------------------

asio::awaitable<Result<Member>> Service::require_member(const std::string& id, const std::string& user_id) {
  if (!is_uuid(id)) co_return no_conversation();
  auto m = co_await repo::find_member(db_, id, user_id);
  if (!m) co_return std::move(m).error();
  // A conversation the caller is not in does not exist for them.
  if (!*m) co_return no_conversation();
  co_return std::move(**m);
}

asio::awaitable<Status> Service::check_users_exist(const std::vector<std::string>& ids) {
  if (!accounts_) co_return Status{};
  std::vector<FieldError> unknown;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto u = co_await accounts_->find_user(ids[i]);
    if (!u.ok()) {
      if (u.error().status != 404) co_return u.error();
      unknown.push_back({"member_ids[" + std::to_string(i) + "]", "no such user"});
    }
  }
  if (!unknown.empty()) co_return Error::validation("some users do not exist", std::move(unknown));
  co_return Status{};
}

asio::awaitable<Result<Detail>> Service::detail(const std::string& id, const std::string& user_id) {
  auto c = co_await repo::find_for_member(db_, id, user_id);
  if (!c) co_return std::move(c).error();
  if (!*c) co_return no_conversation();
  auto members = co_await repo::list_members(db_, id, static_cast<int>(opts_.max_group_members) + 1);
  if (!members) co_return std::move(members).error();
  Detail d;
  d.conversation = std::move(**c);
  d.members = std::move(*members);
  co_return d;
}

// --- conversations --------------------------------------------------------------------------

asio::awaitable<Result<Created>> Service::create(Principal who, CreateInput in) {
  if (!is_user(who)) co_return users_only();
  const std::string me = who.user_id;
  std::vector<std::string> others;
  {
    std::set<std::string> seen;
    for (auto& id : in.member_ids)
      if (id != me && seen.insert(id).second) others.push_back(id);
  }
  if (in.type == "direct") {
    if (others.size() != 1)
      co_return Error::validation("a direct conversation is between you and one other user",
                                  {{"member_ids", "must name exactly one other user"}});
    if (!in.title.empty() || in.open)
      co_return Error::validation("direct conversations have no title and cannot be open",
                                  {{in.open ? "open" : "title", "is not allowed for direct conversations"}});
  } else if (in.type == "group") {
    if (static_cast<int64_t>(others.size()) + 1 > opts_.max_group_members)
      co_return Error::validation("too many members",
                                  {{"member_ids", "a group has at most " + std::to_string(opts_.max_group_members) +
                                                      " members, you included"}});
  } else {
    co_return Error::validation("type must be direct or group", {{"type", "must be direct or group"}});
  }
  auto users_ok = co_await check_users_exist(others);
  if (!users_ok) co_return std::move(users_ok).error();

  std::optional<std::string> dkey;
  if (in.type == "direct") {
    dkey = direct_key(me, others.front());
    auto existing = co_await repo::find_direct(db_, *dkey);
    if (!existing) co_return std::move(existing).error();
    if (*existing) {
      auto d = co_await repo::find_for_member(db_, **existing, me);
      if (!d) co_return std::move(d).error();
      if (*d) co_return Created{std::move(**d), false};
    }
  }

  int64_t now = now_ms();
  Conversation c;
  c.id = new_id();
  c.type = in.type;
  c.title = in.title;
  c.encrypted = in.encrypted;
  c.open = in.open;
  c.created_by = me;
  c.created_at = c.updated_at = c.last_activity_at = now;
  c.member_count = static_cast<int64_t>(others.size()) + 1;

  HARMAR_CO_TRY(auto tx, co_await db_.begin());
  auto inserted = co_await repo::insert_conversation(*tx, c, dkey);
  if (!inserted) co_return std::move(inserted).error();
  if (!*inserted) {
    // The same direct conversation was made meanwhile: answer that one.
    auto rb = co_await tx->rollback();
    (void)rb;
    auto existing = co_await repo::find_direct(db_, *dkey);
    if (!existing) co_return std::move(existing).error();
    if (!*existing) co_return Error::conflict("the conversation could not be created; retry");
    auto d = co_await repo::find_for_member(db_, **existing, me);
    if (!d) co_return std::move(d).error();
    if (!*d) co_return no_conversation();
    co_return Created{std::move(**d), false};
  }
  auto counted = co_await repo::add_member_count(*tx, c.id, c.member_count);
  if (!counted) co_return std::move(counted).error();
  std::string my_role = in.type == "group" ? kOwner : kMember;
  auto mine = co_await repo::insert_member(*tx, c.id, me, my_role, 0, now);
  if (!mine) co_return std::move(mine).error();
  for (const auto& u : others) {
    auto added = co_await repo::insert_member(*tx, c.id, u, kMember, 0, now);
    if (!added) co_return std::move(added).error();
  }
  js::object data{{"conversation", shared_json(c)}};
  auto positions =
      co_await repo::append_sync_for_members(*tx, c.id, "conversation.created", std::nullopt, js::serialize(data), now);
  if (!positions) co_return std::move(positions).error();
  auto committed = co_await tx->commit();
  if (!committed) co_return std::move(committed).error();

  std::vector<Fanout> out;
  out.push_back({c.id, "conversation.created", std::move(data), false, std::move(*positions)});
  co_await push(std::move(out));
  c.role = my_role;
  co_return Created{std::move(c), true};
}

asio::awaitable<Result<std::vector<Conversation>>> Service::list(Principal who, std::optional<std::string> cursor,
                                                                 int limit) {
  if (!is_user(who)) co_return users_only();
  std::optional<std::pair<int64_t, std::string>> after;
  if (cursor) {
    auto bar = cursor->find('|');
    int64_t at = 0;
    if (bar == std::string::npos) co_return Error::validation("cursor is not one this server issued", {{"cursor", "is invalid"}});
    try {
      at = std::stoll(cursor->substr(0, bar));
    } catch (...) {
      co_return Error::validation("cursor is not one this server issued", {{"cursor", "is invalid"}});
    }
    after = std::make_pair(at, cursor->substr(bar + 1));
  }
  co_return co_await repo::list_for_member(db_, who.user_id, after, limit);
}

asio::awaitable<Result<Detail>> Service::get(Principal who, std::string id) {
  if (!is_user(who)) co_return users_only();
  if (!is_uuid(id)) co_return no_conversation();
  co_return co_await detail(id, who.user_id);
}

asio::awaitable<Result<Detail>> Service::update(Principal who, std::string id, std::optional<std::string> title,
                                                std::optional<bool> open) {
  if (!is_user(who)) co_return users_only();
  HARMAR_CO_TRY(auto me, co_await require_member(id, who.user_id));
  HARMAR_CO_TRY(auto conv, co_await repo::find(db_, id));
  if (!conv) co_return no_conversation();
  if (conv->type != "group") co_return Error::conflict("direct conversations cannot be changed", "direct_conversation");
  if (rank(me.role) < rank(kAdmin)) co_return Error::forbidden("only the owner and admins may change the conversation");
  if (open && rank(me.role) < rank(kOwner)) co_return Error::forbidden("only the owner may open or close the group");
  int64_t now = now_ms();
  HARMAR_CO_TRY(auto tx, co_await db_.begin());
  auto locked = co_await repo::lock_conversation(*tx, id, now);
  if (!locked) co_return std::move(locked).error();
  if (!*locked) co_return no_conversation();
  auto st = co_await repo::update_conversation(*tx, id, title, open, now);
  if (!st) co_return std::move(st).error();
  Conversation c = **locked;
  if (title) c.title = *title;
  if (open) c.open = *open;
  c.updated_at = now;
  js::object data{{"conversation", shared_json(c)}, {"by", who.user_id}};
  auto positions =
      co_await repo::append_sync_for_members(*tx, id, "conversation.updated", std::nullopt, js::serialize(data), now);
  if (!positions) co_return std::move(positions).error();
  auto committed = co_await tx->commit();
  if (!committed) co_return std::move(committed).error();
  std::vector<Fanout> out;
  out.push_back({id, "conversation.updated", std::move(data), true, std::move(*positions)});
  co_await push(std::move(out));
  co_return co_await detail(id, who.user_id);
}

asio::awaitable<Result<Detail>> Service::add_members(Principal who, std::string id, std::vector<std::string> user_ids,
                                                     std::string role) {
  if (!is_user(who)) co_return users_only();
  const std::string me = who.user_id;
  if (!is_uuid(id)) co_return no_conversation();
  if (role != kMember && role != kAdmin)
    co_return Error::validation("role must be member or admin", {{"role", "must be member or admin"}});
  std::vector<std::string> ids;
  {
    std::set<std::string> seen;
    for (auto& u : user_ids)
      if (seen.insert(u).second) ids.push_back(u);
  }
  if (ids.empty()) co_return Error::validation("name at least one user", {{"user_ids", "is empty"}});
  HARMAR_CO_TRY(auto conv, co_await repo::find(db_, id));
  if (!conv) co_return no_conversation();
  HARMAR_CO_TRY(auto caller, co_await repo::find_member(db_, id, me));
  bool self_join = !caller && ids.size() == 1 && ids.front() == me;
  if (!caller && !(self_join && conv->open)) co_return no_conversation();
  if (conv->type != "group") co_return Error::conflict("direct conversations have exactly two members", "direct_conversation");
  if (!self_join) {
    int r = rank(caller->role);
    // Admins and the owner add people; anyone in an open group may; only the owner makes admins.
    if (r < rank(kAdmin) && !conv->open) co_return Error::forbidden("only the owner and admins may add members");
    if (role == kAdmin && r < rank(kOwner)) co_return Error::forbidden("only the owner may add admins");
  } else if (role != kMember) {
    co_return Error::forbidden("you may join only as a member");
  }
  auto users_ok = co_await check_users_exist(ids);
  if (!users_ok) co_return std::move(users_ok).error();

  int64_t now = now_ms();
  HARMAR_CO_TRY(auto tx, co_await db_.begin());
  auto locked = co_await repo::lock_conversation(*tx, id, now);
  if (!locked) co_return std::move(locked).error();
  if (!*locked) co_return no_conversation();
  std::vector<std::string> added;
  for (const auto& u : ids) {
    auto ins = co_await repo::insert_member(*tx, id, u, role, (*locked)->last_seq, now);
    if (!ins) co_return std::move(ins).error();
    if (*ins) added.push_back(u);
  }
  if ((*locked)->member_count + static_cast<int64_t>(added.size()) > opts_.max_group_members)
    co_return Error::conflict("a group has at most " + std::to_string(opts_.max_group_members) + " members",
                              "too_many_members");
  auto counted = co_await repo::add_member_count(*tx, id, static_cast<int64_t>(added.size()));
  if (!counted) co_return std::move(counted).error();
  std::vector<Fanout> out;
  for (const auto& u : added) {
    js::object data = membership_data(id, u, role, me, "joined");
    auto positions = co_await repo::append_sync_for_members(*tx, id, "member.joined", std::nullopt, js::serialize(data), now);
    if (!positions) co_return std::move(positions).error();
    out.push_back({id, "member.joined", std::move(data), true, std::move(*positions)});
  }
  auto committed = co_await tx->commit();
  if (!committed) co_return std::move(committed).error();
  co_await push(std::move(out));
  co_return co_await detail(id, me);
}

asio::awaitable<Status> Service::remove_member(Principal who, std::string id, std::string user_id) {
  if (!is_user(who)) co_return users_only();
  const std::string me = who.user_id;
  HARMAR_CO_TRY(auto caller, co_await require_member(id, me));
  HARMAR_CO_TRY(auto conv, co_await repo::find(db_, id));
  if (!conv) co_return no_conversation();
  if (conv->type != "group") co_return Error::conflict("direct conversations have exactly two members", "direct_conversation");
  bool leaving = user_id == me;
  int64_t now = now_ms();
  HARMAR_CO_TRY(auto tx, co_await db_.begin());
  auto locked = co_await repo::lock_conversation(*tx, id, now);
  if (!locked) co_return std::move(locked).error();
  if (!*locked) co_return no_conversation();
  auto target = co_await repo::find_member(*tx, id, user_id);
  if (!target) co_return std::move(target).error();
  if (!*target) co_return Error::not_found("no such member");
  if (!leaving) {
    int mine = rank(caller.role);
    if (mine < rank(kAdmin)) co_return Error::forbidden("only the owner and admins may remove members");
    if (rank((*target)->role) >= mine) co_return Error::forbidden("you may remove only members of a lower role");
  }
  // Who is told: everyone who was a member, the one leaving included (sorted: lock order).
  auto everyone = co_await repo::member_ids(*tx, id);
  if (!everyone) co_return std::move(everyone).error();
  auto gone = co_await repo::delete_member(*tx, id, user_id);
  if (!gone) co_return std::move(gone).error();
  auto counted = co_await repo::add_member_count(*tx, id, -1);
  if (!counted) co_return std::move(counted).error();
  std::vector<Fanout> out;
  const char* type = leaving ? "member.left" : "member.removed";
  js::object data = membership_data(id, user_id, (*target)->role, me, leaving ? "left" : "removed");
  auto positions = co_await repo::append_sync_for_users(*tx, *everyone, id, type, std::nullopt, js::serialize(data), now);
  if (!positions) co_return std::move(positions).error();
  out.push_back({id, type, std::move(data), true, std::move(*positions)});
  if ((*target)->role == std::string(kOwner)) {
    // An owner who leaves hands the group to the longest-standing admin, else member.
    auto next = co_await repo::successor(*tx, id);
    if (!next) co_return std::move(next).error();
    if (*next) {
      auto promoted = co_await repo::set_role(*tx, id, **next, kOwner);
      if (!promoted) co_return std::move(promoted).error();
      js::object d{{"conversation_id", id}, {"user_id", **next}, {"role", kOwner}, {"by", me}};
      auto pos = co_await repo::append_sync_for_members(*tx, id, "member.role_changed", std::nullopt, js::serialize(d), now);
      if (!pos) co_return std::move(pos).error();
      out.push_back({id, "member.role_changed", std::move(d), true, std::move(*pos)});
    }
  }
  auto committed = co_await tx->commit();
  if (!committed) co_return std::move(committed).error();
  co_await push(std::move(out));
  co_return Status{};
}

asio::awaitable<Result<Member>> Service::set_role(Principal who, std::string id, std::string user_id, std::string role) {
  if (!is_user(who)) co_return users_only();
  const std::string me = who.user_id;
  if (rank(role) == 0) co_return Error::validation("role must be owner, admin or member", {{"role", "is not a role"}});
  HARMAR_CO_TRY(auto caller, co_await require_member(id, me));
  if (caller.role != std::string(kOwner)) co_return Error::forbidden("only the owner may change roles");
  if (user_id == me) co_return Error::conflict("hand ownership to another member instead", "owner_required");
  int64_t now = now_ms();
  HARMAR_CO_TRY(auto tx, co_await db_.begin());
  auto locked = co_await repo::lock_conversation(*tx, id, now);
  if (!locked) co_return std::move(locked).error();
  if (!*locked) co_return no_conversation();
  if ((*locked)->type != "group") co_return Error::conflict("direct conversations have no roles", "direct_conversation");
  auto target = co_await repo::find_member(*tx, id, user_id);
  if (!target) co_return std::move(target).error();
  if (!*target) co_return Error::not_found("no such member");
  std::vector<Fanout> out;
  auto changed = co_await repo::set_role(*tx, id, user_id, role);
  if (!changed) co_return std::move(changed).error();
  if (role == std::string(kOwner)) {
    // Handing over ownership: the old owner becomes an admin.
    auto demoted = co_await repo::set_role(*tx, id, me, kAdmin);
    if (!demoted) co_return std::move(demoted).error();
  }
  js::object data{{"conversation_id", id}, {"user_id", user_id}, {"role", role}, {"by", me}};
  auto pos = co_await repo::append_sync_for_members(*tx, id, "member.role_changed", std::nullopt, js::serialize(data), now);
  if (!pos) co_return std::move(pos).error();
  out.push_back({id, "member.role_changed", std::move(data), true, std::move(*pos)});
  if (role == std::string(kOwner)) {
    js::object d{{"conversation_id", id}, {"user_id", me}, {"role", kAdmin}, {"by", me}};
    auto p2 = co_await repo::append_sync_for_members(*tx, id, "member.role_changed", std::nullopt, js::serialize(d), now);
    if (!p2) co_return std::move(p2).error();
    out.push_back({id, "member.role_changed", std::move(d), true, std::move(*p2)});
  }
  auto committed = co_await tx->commit();
  if (!committed) co_return std::move(committed).error();
  co_await push(std::move(out));
  Member m = **target;
  m.role = role;
  co_return m;
}

// --- messages -------------------------------------------------------------------------------

asio::awaitable<Result<Sent>> Service::send(Principal who, std::string id, SendInput in) {
  if (!is_user(who)) co_return users_only();
  const std::string me = who.user_id;
  HARMAR_CO_TRY(auto member, co_await require_member(id, me));
  (void)member;
  // A retry of a message already stored answers that message (the first one wins).
  auto existing = co_await repo::find_by_client_id(db_, id, me, in.client_msg_id);
  if (!existing) co_return std::move(existing).error();
  if (*existing) co_return Sent{std::move(**existing), true};

  HARMAR_CO_TRY(auto conv, co_await repo::find(db_, id));
  if (!conv) co_return no_conversation();
  if (conv->encrypted) {
    if (!in.body.empty())
      co_return Error::validation("this conversation is end-to-end encrypted: send ciphertext, not body",
                                  {{"body", "must be empty in an encrypted conversation"}});
    if (in.ciphertext.empty())
      co_return Error::validation("this conversation is end-to-end encrypted: send ciphertext",
                                  {{"ciphertext", "is required in an encrypted conversation"}});
  } else {
    if (!in.ciphertext.empty())
      co_return Error::validation("ciphertext belongs in encrypted conversations", {{"ciphertext", "is not allowed here"}});
    if (in.body.empty() && !in.attachment_id)
      co_return Error::validation("a message needs a body or an attachment", {{"body", "is empty"}});
  }
  std::optional<Attachment> attachment;
  if (in.attachment_id) {
    if (!is_uuid(*in.attachment_id))
      co_return Error::validation("no such attachment", {{"attachment_id", "is not an attachment of this conversation"}});
    HARMAR_CO_TRY(auto a, co_await repo::find_attachment(db_, id, *in.attachment_id));
    if (!a || a->uploader_id != me)
      co_return Error::validation("no such attachment", {{"attachment_id", "is not an attachment you uploaded here"}});
    attachment = std::move(*a);
  }

  int64_t now = now_ms();
  Message m;
  m.id = new_id();
  m.conversation_id = id;
  m.sender_id = me;
  m.body = std::move(in.body);
  m.client_msg_id = std::move(in.client_msg_id);
  m.ciphertext = std::move(in.ciphertext);
  m.attachment = attachment;
  m.created_at = now;

  HARMAR_CO_TRY(auto tx, co_await db_.begin());
  auto seq = co_await repo::next_seq(*tx, id, now);
  if (!seq) co_return std::move(seq).error();
  if (!*seq) co_return no_conversation();
  m.seq = **seq;
  auto still = co_await repo::find_member(*tx, id, me);  // removed meanwhile?
  if (!still) co_return std::move(still).error();
  if (!*still) co_return no_conversation();
  auto inserted = co_await repo::insert_message(*tx, m, in.attachment_id);
  if (!inserted) co_return std::move(inserted).error();
  if (!*inserted) {
    // The same client_msg_id raced in through another request: answer the stored one.
    auto rb = co_await tx->rollback();
    (void)rb;
    auto first = co_await repo::find_by_client_id(db_, id, me, m.client_msg_id);
    if (!first) co_return std::move(first).error();
    if (!*first) co_return Error::conflict("the message could not be stored; retry");
    co_return Sent{std::move(**first), true};
  }
  if (in.attachment_id) {
    auto claimed = co_await repo::claim_attachment(*tx, *in.attachment_id, id, me, m.id);
    if (!claimed) co_return std::move(claimed).error();
    if (!*claimed)
      co_return Error::validation("the attachment belongs to another message", {{"attachment_id", "is already used"}});
  }
  auto positions = co_await repo::append_sync_for_members(*tx, id, "message.new", m.seq, "{}", now);
  if (!positions) co_return std::move(positions).error();
  auto committed = co_await tx->commit();
  if (!committed) co_return std::move(committed).error();

  js::object data{{"message", to_json(m)}};
  std::vector<Fanout> out;
  out.push_back({id, "message.new", std::move(data), true, std::move(*positions)});
  co_await push(std::move(out));
  co_return Sent{std::move(m), false};
}

asio::awaitable<Result<std::vector<Message>>> Service::history(Principal who, std::string id, int64_t before_seq,
                                                               int64_t after_seq, int limit) {
  if (!is_user(who)) co_return users_only();
  HARMAR_CO_TRY(auto member, co_await require_member(id, who.user_id));
  (void)member;
  HARMAR_CO_TRY(auto items, co_await repo::list_messages(db_, id, before_seq, after_seq, limit));
  if (after_seq <= 0) std::reverse(items.begin(), items.end());
  co_return items;
}

asio::awaitable<Result<Message>> Service::edit(Principal who, std::string id, std::string message_id, std::string body,
                                               std::string ciphertext) {
  if (!is_user(who)) co_return users_only();
  const std::string me = who.user_id;
  HARMAR_CO_TRY(auto member, co_await require_member(id, me));
  (void)member;
  if (!is_uuid(message_id)) co_return Error::not_found("no such message");
  HARMAR_CO_TRY(auto conv, co_await repo::find(db_, id));
  if (!conv) co_return no_conversation();
  HARMAR_CO_TRY(auto found, co_await repo::find_message(db_, id, message_id));
  if (!found) co_return Error::not_found("no such message");
  Message m = std::move(*found);
  if (m.sender_id != me) co_return Error::forbidden("you may edit only your own messages");
  if (m.deleted_at) co_return Error::conflict("the message was recalled", "message_recalled");
  int64_t now = now_ms();
  if (opts_.edit_window_ms > 0 && now - m.created_at > opts_.edit_window_ms)
    co_return Error::conflict("messages can be edited for " + std::to_string(opts_.edit_window_ms / 1000) +
                                  " seconds after sending",
                              "edit_window_passed");
  if (conv->encrypted ? (!body.empty() || ciphertext.empty()) : (!ciphertext.empty() || body.empty()))
    co_return Error::validation(conv->encrypted ? "send ciphertext (and no body) in an encrypted conversation"
                                                : "send a non-empty body (and no ciphertext)",
                                {{conv->encrypted ? "ciphertext" : "body", "is required"}});
  HARMAR_CO_TRY(auto tx, co_await db_.begin());
  auto st = co_await repo::edit_message(*tx, m.id, body, ciphertext, now);
  if (!st) co_return std::move(st).error();
  auto positions = co_await repo::append_sync_for_members(*tx, id, "message.edited", m.seq, "{}", now);
  if (!positions) co_return std::move(positions).error();
  auto committed = co_await tx->commit();
  if (!committed) co_return std::move(committed).error();
  m.body = std::move(body);
  m.ciphertext = std::move(ciphertext);
  m.edited_at = now;
  js::object data{{"message", to_json(m)}};
  std::vector<Fanout> out;
  out.push_back({id, "message.edited", std::move(data), true, std::move(*positions)});
  co_await push(std::move(out));
  co_return m;
}

asio::awaitable<Status> Service::recall(Principal who, std::string id, std::string message_id) {
  if (!is_user(who)) co_return users_only();
  const std::string me = who.user_id;
  HARMAR_CO_TRY(auto member, co_await require_member(id, me));
  (void)member;
  if (!is_uuid(message_id)) co_return Error::not_found("no such message");
  HARMAR_CO_TRY(auto found, co_await repo::find_message(db_, id, message_id));
  if (!found) co_return Error::not_found("no such message");
  Message m = std::move(*found);
  if (m.sender_id != me) co_return Error::forbidden("you may recall only your own messages");
  if (m.deleted_at) co_return Status{};  // recalling twice is a no-op
  int64_t now = now_ms();
  if (opts_.recall_window_ms > 0 && now - m.created_at > opts_.recall_window_ms)
    co_return Error::conflict("messages can be recalled for " + std::to_string(opts_.recall_window_ms / 1000) +
                                  " seconds after sending",
                              "recall_window_passed");
  HARMAR_CO_TRY(auto tx, co_await db_.begin());
  auto st = co_await repo::recall_message(*tx, m.id, now);
  if (!st) co_return std::move(st).error();
  auto released = co_await repo::release_attachment(*tx, m.id);
  if (!released) co_return std::move(released).error();
  auto positions = co_await repo::append_sync_for_members(*tx, id, "message.deleted", m.seq, "{}", now);
  if (!positions) co_return std::move(positions).error();
  auto committed = co_await tx->commit();
  if (!committed) co_return std::move(committed).error();
  m.body.clear();
  m.ciphertext.clear();
  m.attachment.reset();
  m.deleted_at = now;
  js::object data{{"message", to_json(m)}};
  std::vector<Fanout> out;
  out.push_back({id, "message.deleted", std::move(data), true, std::move(*positions)});
  co_await push(std::move(out));
  co_return Status{};
}

asio::awaitable<Result<ReadState>> Service::mark_read(Principal who, std::string id, int64_t seq) {
  if (!is_user(who)) co_return users_only();
  const std::string me = who.user_id;
  HARMAR_CO_TRY(auto member, co_await require_member(id, me));
  HARMAR_CO_TRY(auto conv, co_await repo::find(db_, id));
  if (!conv) co_return no_conversation();
  int64_t upto = std::min(seq, conv->last_seq);  // nothing beyond the newest message can be read
  ReadState state{id, member.read_seq, 0};
  if (upto > member.read_seq) {
    int64_t now = now_ms();
    HARMAR_CO_TRY(auto tx, co_await db_.begin());
    auto moved = co_await repo::advance_read(*tx, id, me, upto);
    if (!moved) co_return std::move(moved).error();
    if (*moved) {
      auto unread = co_await repo::unread_count(*tx, id, me, upto);
      if (!unread) co_return std::move(unread).error();
      js::object data{{"conversation_id", id}, {"read_seq", upto}, {"unread_count", *unread}};
      std::vector<std::string> just_me{me};
      auto positions =
          co_await repo::append_sync_for_users(*tx, just_me, id, "conversation.read", std::nullopt, js::serialize(data), now);
      if (!positions) co_return std::move(positions).error();
      auto committed = co_await tx->commit();
      if (!committed) co_return std::move(committed).error();
      std::vector<Fanout> out;
      out.push_back({id, "conversation.read", std::move(data), false, std::move(*positions)});
      co_await push(std::move(out));
      // Read receipts for the other members: live only, the state is in GET /v1/conversations/{id}.
      js::object receipt{{"conversation_id", id}, {"user_id", me}, {"read_seq", upto}};
      co_await push_ephemeral(channel_of(id), "read.updated", std::move(receipt));
      state.read_seq = upto;
      state.unread_count = *unread;
      co_return state;
    }
    auto rb = co_await tx->rollback();
    (void)rb;
    HARMAR_CO_TRY(auto fresh, co_await repo::find_member(db_, id, me));
    if (fresh) state.read_seq = fresh->read_seq;
  }
  HARMAR_CO_TRY(auto unread, co_await repo::unread_count(db_, id, me, state.read_seq));
  state.unread_count = unread;
  co_return state;
}

asio::awaitable<Status> Service::typing(Principal who, std::string id, bool typing) {
  if (!is_user(who)) co_return users_only();
  HARMAR_CO_TRY(auto member, co_await require_member(id, who.user_id));
  (void)member;
  js::object data{{"conversation_id", id}, {"user_id", who.user_id}};
  std::string type = typing ? "typing.started" : "typing.stopped";
  co_await push_ephemeral(channel_of(id), std::move(type), std::move(data));
  co_return Status{};
}

// --- sync -----------------------------------------------------------------------------------

asio::awaitable<Result<SyncPage>> Service::sync(Principal who, int64_t since, int limit) {
  if (!is_user(who)) co_return users_only();
  const std::string me = who.user_id;
  if (since < 0) co_return Error::validation("since must not be negative", {{"since", "must be >= 0"}});
  HARMAR_CO_TRY(auto bounds, co_await repo::sync_bounds(db_, me));
  if (since > bounds.head)
    co_return Error::conflict("since " + std::to_string(since) + " is ahead of your newest position " +
                                  std::to_string(bounds.head) + "; sync from 0",
                              "since_ahead");
  SyncPage page;
  page.head = bounds.head;
  page.since = since;
  // What was trimmed away is said, never skipped silently.
  int64_t first_kept = bounds.oldest ? bounds.oldest : bounds.head + 1;
  if (since + 1 < first_kept) {
    page.history_gone = true;
    page.since = first_kept - 1;
  }
  HARMAR_CO_TRY(auto events, co_await repo::read_sync(db_, me, page.since, limit));
  page.next_since = events.empty() ? page.since : events.back().pos;
  page.has_more = page.next_since < page.head;
  page.events = std::move(events);
  co_return page;
}

// --- attachments ----------------------------------------------------------------------------

asio::awaitable<Result<Attachment>> Service::upload(Principal who, std::string id, std::string name,
                                                    std::string content_type, std::string bytes) {
  if (!is_user(who)) co_return users_only();
  HARMAR_CO_TRY(auto member, co_await require_member(id, who.user_id));
  (void)member;
  if (bytes.empty()) co_return Error::validation("the attachment is empty", {{"body", "is empty"}});
  if (static_cast<int64_t>(bytes.size()) > opts_.attachment_max_bytes)
    co_return Error::payload_too_large("attachments are at most " + std::to_string(opts_.attachment_max_bytes) + " bytes");
  if (!type_allowed(content_type, opts_.attachment_types))
    co_return Error{415, "unsupported_media_type", "attachments of type '" + content_type + "' are not accepted"};
  Attachment a;
  a.id = new_id();
  a.conversation_id = id;
  a.uploader_id = who.user_id;
  a.name = std::move(name);
  a.content_type = std::move(content_type);
  a.created_at = now_ms();
  HARMAR_CO_TRY(auto info, co_await services_.blobs.put("im/" + id + "/" + a.id, bytes));
  a.size = info.size;
  a.sha256 = info.sha256;
  auto st = co_await repo::insert_attachment(db_, a);
  if (!st) {
    auto removed = co_await services_.blobs.remove("im/" + id + "/" + a.id);
    (void)removed;
    co_return std::move(st).error();
  }
  co_return a;
}

asio::awaitable<Result<std::pair<Attachment, std::string>>> Service::download(Principal who, std::string id,
                                                                              std::string attachment_id) {
  if (!is_user(who)) co_return users_only();
  HARMAR_CO_TRY(auto member, co_await require_member(id, who.user_id));
  (void)member;
  if (!is_uuid(attachment_id)) co_return Error::not_found("no such attachment");
  HARMAR_CO_TRY(auto a, co_await repo::find_attachment(db_, id, attachment_id));
  if (!a) co_return Error::not_found("no such attachment");
  HARMAR_CO_TRY(auto bytes, co_await services_.blobs.get("im/" + id + "/" + a->id));
  co_return std::make_pair(std::move(*a), std::move(bytes));
}

// --- keys -----------------------------------------------------------------------------------

asio::awaitable<Result<DeviceKey>> Service::put_key(Principal who, std::string device_id, std::string public_key) {
  if (!is_user(who)) co_return users_only();
  if (!valid_device_id(device_id))
    co_return Error::validation("device ids are 1 to 64 of [A-Za-z0-9._-]", {{"device_id", "is not a valid device id"}});
  auto raw = decode_base64(public_key);
  if (!raw || raw->size() != crypto_box_PUBLICKEYBYTES)
    co_return Error::validation("public_key is the base64 of a 32-byte X25519 public key",
                                {{"public_key", "must be base64 of 32 bytes"}});
  HARMAR_CO_TRY(auto mine, co_await repo::keys_of(db_, who.user_id));
  bool replacing = std::any_of(mine.begin(), mine.end(), [&](const DeviceKey& k) { return k.device_id == device_id; });
  if (!replacing && static_cast<int64_t>(mine.size()) >= opts_.max_keys_per_user)
    co_return Error::conflict("at most " + std::to_string(opts_.max_keys_per_user) + " device keys per user",
                              "too_many_keys");
  DeviceKey k{new_id(), who.user_id, std::move(device_id), std::move(public_key), now_ms()};
  auto st = co_await repo::upsert_key(db_, k);
  if (!st) co_return std::move(st).error();
  co_return k;
}

asio::awaitable<Result<std::vector<DeviceKey>>> Service::keys(Principal who, std::optional<std::string> for_user) {
  if (!is_user(who)) co_return users_only();
  std::string user = for_user.value_or(who.user_id);
  if (user != who.user_id) {
    HARMAR_CO_TRY(bool shared, co_await repo::share_conversation(db_, who.user_id, user));
    if (!shared) co_return Error::not_found("no such user among your conversations");
  }
  co_return co_await repo::keys_of(db_, user);
}

asio::awaitable<Status> Service::delete_key(Principal who, std::string device_id) {
  if (!is_user(who)) co_return users_only();
  HARMAR_CO_TRY(bool gone, co_await repo::delete_key(db_, who.user_id, device_id));
  if (!gone) co_return Error::not_found("no key for this device");
  co_return Status{};
}

asio::awaitable<Result<std::vector<DeviceKey>>> Service::conversation_keys(Principal who, std::string id) {
  if (!is_user(who)) co_return users_only();
  HARMAR_CO_TRY(auto member, co_await require_member(id, who.user_id));
  (void)member;
  co_return co_await repo::member_keys(db_, id);
}

// --- presence -------------------------------------------------------------------------------

asio::awaitable<Result<std::vector<Presence>>> Service::presence(Principal who, std::vector<std::string> user_ids) {
  if (!is_user(who)) co_return users_only();
  std::vector<Presence> out;
  int64_t fresh_after = now_ms() - opts_.presence_ttl_ms;
  for (const auto& u : user_ids) {
    if (u != who.user_id) {
      HARMAR_CO_TRY(bool shared, co_await repo::share_conversation(db_, who.user_id, u));
      if (!shared) continue;
    }
    HARMAR_CO_TRY(auto row, co_await repo::presence_of(db_, u, fresh_after));
    out.push_back({row.user_id, row.online, row.last_seen_at});
  }
  co_return out;
}

void Service::on_presence(const std::string& user_id, bool online) {
  std::lock_guard lock(mu_);
  if (stopped_) return;
  presence_queue_.emplace_back(user_id, online);
  if (presence_wake_) presence_wake_->cancel();
}

asio::awaitable<void> Service::apply_presence(std::string user_id, bool online) {
  int64_t now = now_ms();
  Status st;
  if (online) {
    st = co_await repo::presence_online(db_, node_id_, user_id, now);
  } else {
    st = co_await repo::presence_offline(db_, node_id_, user_id, now);
  }
  if (!st) {
    logger()->warn(log::fields({{"msg", "presence not recorded"}, {"error", st.error().detail}}));
    co_return;
  }
  // Tell the user's conversations when this was the change for the whole cluster.
  auto nodes = co_await repo::presence_nodes(db_, user_id, now - opts_.presence_ttl_ms);
  if (!nodes) co_return;
  bool changed = online ? *nodes == 1 : *nodes == 0;
  if (!changed) co_return;
  auto convs = co_await repo::conversation_ids(db_, user_id, kPresenceFanout);
  if (!convs) co_return;
  js::object data{{"user_id", user_id}, {"online", online}};
  data["last_seen_at"] = online ? js::value(nullptr) : js::value(format_rfc3339(now));
  for (const auto& c : *convs) co_await push_ephemeral(channel_of(c), "presence.changed", data);
}

asio::awaitable<void> Service::presence_tick() {
  for (;;) {
    std::pair<std::string, bool> next;
    {
      std::lock_guard lock(mu_);
      if (presence_queue_.empty()) break;
      next = std::move(presence_queue_.front());
      presence_queue_.pop_front();
    }
    co_await apply_presence(std::move(next.first), next.second);
  }
}

asio::awaitable<void> Service::presence_loop() {
  auto self = shared_from_this();
  int64_t next_refresh = 0;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopped_) co_return;
    }
    co_await presence_tick();
    int64_t now = now_ms();
    if (now >= next_refresh) {
      // This node's users stay online while it lives; rows of nodes that died expire.
      auto refreshed = co_await repo::presence_refresh(db_, node_id_, now);
      if (!refreshed) logger()->warn(log::fields({{"msg", "presence refresh failed"}, {"error", refreshed.error().detail}}));
      auto swept = co_await repo::presence_sweep(db_, now - opts_.presence_ttl_ms);
      (void)swept;
      next_refresh = now + std::max<int64_t>(opts_.presence_ttl_ms / 3, 100);
    }
    {
      std::lock_guard lock(mu_);
      if (!presence_queue_.empty()) continue;  // arrived while refreshing: its wake-up found no waiter
    }
    presence_wake_->expires_after(std::chrono::milliseconds(std::max<int64_t>(next_refresh - now_ms(), 1)));
    error_code ignored;
    co_await presence_wake_->async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
}

asio::awaitable<void> Service::sweep_loop() {
  auto self = shared_from_this();
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopped_) co_return;
    }
    int64_t now = now_ms();
    auto trimmed = co_await repo::trim_sync(db_, now - opts_.sync_retention_ms);
    if (!trimmed) logger()->warn(log::fields({{"msg", "sync log trim failed"}, {"error", trimmed.error().detail}}));
    // Uploads no message took within an hour, and attachments of recalled messages.
    auto unused = co_await repo::unused_attachments(db_, now - 3'600'000, 500);
    if (unused) {
      for (const auto& a : *unused) {
        auto removed = co_await services_.blobs.remove("im/" + a.conversation_id + "/" + a.id);
        if (removed.ok() || removed.error().status == 404) {
          auto st = co_await repo::delete_attachment(db_, a.id);
          (void)st;
        }
      }
    }
    sweep_timer_->expires_after(std::chrono::minutes(10));
    error_code ignored;
    co_await sweep_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
}

void Service::start() {
  if (auto channels = services_.find<realtime::Channels>()) {
    std::weak_ptr<Service> weak = shared_from_this();
    channels->add_rule(std::string(kChannelPrefix),
                       [weak](const Principal& p, std::string_view ch) -> asio::awaitable<realtime::Access> {
                         auto self = weak.lock();
                         if (!self) co_return realtime::Access{};
                         co_return co_await self->channel_access(p, ch);
                       });
  }
  presence_wake_ = std::make_unique<asio::steady_timer>(services_.background);
  sweep_timer_ = std::make_unique<asio::steady_timer>(services_.background);
  if (auto conns = services_.find<realtime::Connections>()) {
    std::weak_ptr<Service> weak = shared_from_this();
    conns->watch([weak](const std::string& user_id, bool online) {
      if (auto self = weak.lock()) self->on_presence(user_id, online);
    });
  }
  asio::co_spawn(services_.background, presence_loop(), asio::detached);
  asio::co_spawn(services_.background, sweep_loop(), asio::detached);
}

void Service::stop() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  auto self = shared_from_this();
  asio::post(services_.background, [self] {
    if (self->presence_wake_) self->presence_wake_->cancel();
    if (self->sweep_timer_) self->sweep_timer_->cancel();
  });
}

}  // namespace harmar::im
