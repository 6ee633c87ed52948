#include "devices/service.hpp"

#include <openssl/evp.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/json.hpp>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "devices/repo.hpp"

namespace harmar::devices {

namespace js = boost::json;

namespace {

std::shared_ptr<spdlog::logger> logger() { return log::get("devices"); }

constexpr std::size_t kKeyLength = 4 + 43;  // "hdk_" + base64url of 32 bytes

bool plausible_key(std::string_view k) {
  if (k.size() != kKeyLength || !k.starts_with(kApiKeyPrefix)) return false;
  for (char c : k.substr(kApiKeyPrefix.size())) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

js::object status_data(const std::string& id, const std::string& name, const char* status, const char* reason) {
  js::object o;
  o["id"] = id;
  o["name"] = name;
  o["status"] = status;
  o["reason"] = reason;
  return o;
}

Error invalid_key() { return Error::unauthorized("the device api key is not valid", "invalid_api_key"); }

}  // namespace

Options Options::from(const config::Config& c) {
  Options o;
  o.heartbeat_timeout_ms = c.get_duration_ms("devices.heartbeat_timeout");
  o.heartbeat_interval_ms = c.get_duration_ms("devices.heartbeat_interval");
  o.sweep_interval_ms = c.get_duration_ms("devices.sweep_interval");
  o.auth_cache_ttl_ms = c.get_duration_ms("devices.auth_cache_ttl");
  o.max_per_user = c.get_int("devices.max_per_user");
  return o;
}

std::string hash_api_key(std::string_view key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::string new_api_key() { return std::string(kApiKeyPrefix) + random_token(32); }

// ---- cache ---------------------------------------------------------------------------------

std::optional<DeviceInfo> Service::cached_by_key(const std::string& hash) {
  std::lock_guard lock(mu_);
  auto it = by_key_.find(hash);
  if (it == by_key_.end()) return std::nullopt;
  if (it->second.expires_mono < mono_ms()) {
    by_key_.erase(it);
    return std::nullopt;
  }
  return it->second.info;
}

std::optional<DeviceInfo> Service::cached_by_id(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  if (it->second.expires_mono < mono_ms()) {
    by_id_.erase(it);
    return std::nullopt;
  }
  return it->second.info;
}

uint64_t Service::generation() {
  std::lock_guard lock(mu_);
  return generation_;
}

void Service::remember(const std::string& hash, const DeviceInfo& d, uint64_t seen_generation) {
  if (opts_.auth_cache_ttl_ms <= 0) return;
  std::lock_guard lock(mu_);
  // An eviction since the database read means the row may be gone or changed: do not keep it.
  if (generation_ != seen_generation) return;
  if (by_key_.size() > 100'000) by_key_.clear();  // a bound, not a policy: entries are cheap to refill
  if (by_id_.size() > 100'000) by_id_.clear();
  int64_t expires = mono_ms() + opts_.auth_cache_ttl_ms;
  if (!hash.empty()) {
    by_key_[hash] = {d, expires};
    key_of_[d.id] = hash;
  }
  by_id_[d.id] = {d, expires};
}

void Service::evict(const std::string& device_id) {
  std::lock_guard lock(mu_);
  ++generation_;
  by_id_.erase(device_id);
  if (auto it = key_of_.find(device_id); it != key_of_.end()) {
    by_key_.erase(it->second);
    key_of_.erase(it);
  }
}

asio::awaitable<void> Service::changed(const std::string& device_id) {
  evict(device_id);  // this node: at once, before the answer goes out
  auto st = co_await s_.pubsub.publish(kChangedChannel, device_id);
  if (!st.ok())
    logger()->warn(log::fields({{"msg", "device change not fanned out; other nodes keep their cache until it expires"},
                                {"device_id", device_id},
                                {"error", st.error().detail}}));
}

asio::awaitable<void> Service::publish(std::string type, const std::string& user_id, const std::string& subject,
                                       js::object data) {
  platform::DomainEvent e;
  e.type = std::move(type);
  e.user_id = user_id;
  e.subject = subject;
  e.data = std::move(data);
  co_await s_.events.publish(std::move(e));
}

// ---- Directory -----------------------------------------------------------------------------

asio::awaitable<Result<std::optional<DeviceInfo>>> Service::find(std::string device_id) {
  if (auto c = cached_by_id(device_id)) co_return std::optional<DeviceInfo>(std::move(*c));
  uint64_t gen = generation();
  auto found = co_await repo::find_info(s_.db, device_id);
  if (!found) co_return std::move(found).error();
  if (*found) remember("", **found, gen);
  co_return std::move(*found);
}

asio::awaitable<Result<Principal>> Service::authenticate(std::string api_key) {
  if (!plausible_key(api_key)) co_return invalid_key();
  std::string hash = hash_api_key(api_key);
  std::optional<DeviceInfo> info = cached_by_key(hash);
  if (!info) {
    uint64_t gen = generation();
    auto found = co_await repo::find_info_by_key(s_.db, hash);
    if (!found) co_return std::move(found).error();
    if (!*found) co_return invalid_key();
    remember(hash, **found, gen);
    info = std::move(**found);
  }
  Principal p;
  p.kind = Principal::Kind::Device;
  p.id = info->id;
  p.user_id = info->user_id;
  co_return p;
}

// ---- users ---------------------------------------------------------------------------------

asio::awaitable<Result<Registered>> Service::register_device(const Principal& user, RegisterInput in) {
  auto count = co_await repo::count_for_user(s_.db, user.user_id);
  if (!count) co_return std::move(count).error();
  if (*count >= opts_.max_per_user)
    co_return Error::conflict("this account already has " + std::to_string(*count) + " devices (the limit)",
                              "device_limit_reached");
  Device d;
  d.id = new_id();
  d.user_id = user.user_id;
  d.name = std::move(in.name);
  d.hostname = std::move(in.hostname);
  d.os = std::move(in.os);
  d.arch = std::move(in.arch);
  d.version = std::move(in.version);
  d.labels = std::move(in.labels);
  d.created_at = d.updated_at = now_ms();
  std::string key = new_api_key();
  auto st = co_await repo::insert(s_.db, d, hash_api_key(key));
  if (!st) co_return std::move(st).error();
  co_await publish("device.created", d.user_id, d.id, to_json(d));
  co_return Registered{std::move(d), std::move(key)};
}

asio::awaitable<Result<std::vector<Device>>> Service::list(const Principal& user, const std::optional<std::string>& after,
                                                           int limit, const std::optional<std::string>& status) {
  co_return co_await repo::list(s_.db, user.user_id, after, limit, status);
}

asio::awaitable<Result<Device>> Service::get(const Principal& user, const std::string& id) {
  auto d = co_await repo::find_owned(s_.db, user.user_id, id);
  if (!d) co_return std::move(d).error();
  if (!*d) co_return Error::not_found("no such device");
  co_return std::move(**d);
}

asio::awaitable<Result<Device>> Service::update_config(const Principal& user, const std::string& id, js::object config) {
  auto d = co_await repo::update_config(s_.db, user.user_id, id, js::serialize(config), now_ms());
  if (!d) co_return std::move(d).error();
  if (!*d) co_return Error::not_found("no such device");
  js::object data = to_json(**d);
  data["change"] = "config";
  co_await publish("device.updated", user.user_id, id, std::move(data));
  co_return std::move(**d);
}

asio::awaitable<Result<Device>> Service::update(const Principal& user, const std::string& id,
                                                std::optional<std::string> name, std::optional<Labels> labels) {
  std::optional<std::string> labels_json;
  if (labels) labels_json = labels_text(*labels);
  auto d = co_await repo::update(s_.db, user.user_id, id, name, labels_json, now_ms());
  if (!d) co_return std::move(d).error();
  if (!*d) co_return Error::not_found("no such device");
  co_await changed(id);  // labels decide which tasks the device may take, on every node
  js::object data = to_json(**d);
  data["change"] = "device";
  co_await publish("device.updated", user.user_id, id, std::move(data));
  co_return std::move(**d);
}

asio::awaitable<Status> Service::remove(const Principal& user, const std::string& id) {
  auto gone = co_await repo::remove(s_.db, user.user_id, id);
  if (!gone) co_return std::move(gone).error();
  if (!*gone) co_return Error::not_found("no such device");
  co_await changed(id);
  if (auto hooks = s_.find<TaskHooks>()) co_await hooks->on_device_gone(**gone, true);
  js::object data;
  data["id"] = id;
  data["name"] = (*gone)->name;
  co_await publish("device.deleted", user.user_id, id, std::move(data));
  co_return Status{};
}

// ---- devices -------------------------------------------------------------------------------

asio::awaitable<Result<js::object>> Service::heartbeat(const Principal& device, HeartbeatInput in) {
  int64_t now = now_ms();
  auto beat = co_await repo::heartbeat(s_.db, device.id, now, in.status, js::serialize(in.metrics));
  if (!beat) co_return std::move(beat).error();
  if (!*beat) {
    evict(device.id);
    co_return invalid_key();  // deleted meanwhile
  }
  auto info = co_await find(device.id);
  if (!info) co_return std::move(info).error();
  if (!*info) co_return invalid_key();
  if ((*beat)->came_online) {
    js::object data = status_data(device.id, (*info)->name, "online", "heartbeat");
    co_await publish("device.online", device.user_id, device.id, std::move(data));
  }
  HeartbeatTasks tasks;
  if (auto hooks = s_.find<TaskHooks>()) {
    auto t = co_await hooks->on_heartbeat(**info, std::move(in.running));
    if (!t) co_return std::move(t).error();
    tasks = std::move(*t);
  }
  js::array cancel;
  for (auto& id : tasks.cancel) cancel.emplace_back(id);
  co_return js::object{{"server_time", format_rfc3339(now)},
                       {"config_version", (*beat)->config_version},
                       {"pending_tasks", tasks.pending},
                       {"cancel", std::move(cancel)},
                       {"heartbeat_interval_s", opts_.heartbeat_interval_ms / 1000}};
}

asio::awaitable<Status> Service::go_offline(const Principal& device) {
  auto info = co_await find(device.id);
  if (!info) co_return std::move(info).error();
  if (!*info) co_return invalid_key();
  auto was_online = co_await repo::set_offline(s_.db, device.id, now_ms());
  if (!was_online) co_return std::move(was_online).error();
  if (auto hooks = s_.find<TaskHooks>()) co_await hooks->on_device_gone(**info, false);
  if (*was_online) {
    js::object data = status_data(device.id, (*info)->name, "offline", "goodbye");
    co_await publish("device.offline", device.user_id, device.id, std::move(data));
  }
  co_return Status{};
}

asio::awaitable<Result<Device>> Service::self(const Principal& device) {
  auto d = co_await repo::find(s_.db, device.id);
  if (!d) co_return std::move(d).error();
  if (!*d) co_return invalid_key();
  co_return std::move(**d);
}

// ---- background ----------------------------------------------------------------------------

asio::awaitable<Result<int>> Service::sweep_once() {
  int64_t now = now_ms();
  int total = 0;
  for (;;) {
    auto gone = co_await repo::sweep_offline(s_.db, now - opts_.heartbeat_timeout_ms, now, 500);
    if (!gone) co_return std::move(gone).error();
    for (const auto& d : *gone) {
      js::object data = status_data(d.id, d.name, "offline", "heartbeat_timeout");
      co_await publish("device.offline", d.user_id, d.id, std::move(data));
    }
    total += static_cast<int>(gone->size());
    if (gone->size() < 500) break;
  }
  co_return total;
}

asio::awaitable<void> Service::sweep_loop() {
  auto self = shared_from_this();
  auto stopped = stopped_;
  auto timer = timer_;
  while (!*stopped) {
    auto n = co_await sweep_once();
    if (!n.ok())
      logger()->warn(log::fields({{"msg", "offline sweep failed"}, {"error", n.error().detail}}));
    timer->expires_after(std::chrono::milliseconds(opts_.sweep_interval_ms));
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

void Service::start() {
  auto weak = weak_from_this();
  sub_ = s_.pubsub.subscribe(kChangedChannel, s_.background.get_executor(),
                             [weak](std::string_view, std::string_view device_id) {
                               if (auto self = weak.lock()) self->evict(std::string(device_id));
                             });
  timer_ = std::make_shared<asio::steady_timer>(s_.background);
  asio::co_spawn(s_.background, sweep_loop(), asio::detached);
}

void Service::stop() {
  *stopped_ = true;
  if (timer_) asio::post(s_.background, [t = timer_] { t->cancel(); });
  sub_.reset();
}

}  // namespace harmar::devices
