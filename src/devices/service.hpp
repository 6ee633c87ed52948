#pragma once
// The rules of devices: registration with a one-time api key, heartbeats and the offline sweeper,
// config versions, deletion that revokes the key on every node at once.
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/principal.hpp"
#include "core/result.hpp"
#include "devices/devices.hpp"
#include "devices/model.hpp"
#include "platform/module.hpp"

namespace harmar::devices {

struct Options {
  int64_t heartbeat_timeout_ms = 90'000;   // no heartbeat this long: offline
  int64_t heartbeat_interval_ms = 30'000;  // what agents are told to use
  int64_t sweep_interval_ms = 5'000;       // how often the offline sweeper looks
  int64_t auth_cache_ttl_ms = 5'000;       // how long a verified key is trusted without the database
  int64_t max_per_user = 1000;

  static Options from(const config::Config& c);
};

struct RegisterInput {
  std::string name;
  std::string hostname, os, arch, version;
  Labels labels;
};

struct Registered {
  Device device;
  std::string api_key;  // shown once
};

struct HeartbeatInput {
  std::string status;
  boost::json::object metrics;
  std::vector<std::string> running;  // task ids the agent is running
};

// SHA-256 of an api key, as stored.
std::string hash_api_key(std::string_view key);
// A new key: kApiKeyPrefix + 43 base64url characters (256 random bits).
std::string new_api_key();

class Service final : public Directory, public std::enable_shared_from_this<Service> {
 public:
  // The PubSub channel on which every node hears that a device changed or went away.
  static constexpr const char* kChangedChannel = "devices.changed";

  Service(platform::Services& s, Options o) : s_(s), opts_(o) {}

  // Directory
  asio::awaitable<Result<std::optional<DeviceInfo>>> find(std::string device_id) override;
  asio::awaitable<Result<Principal>> authenticate(std::string api_key) override;

  // For users (ownership is checked here: another user's device is 404).
  asio::awaitable<Result<Registered>> register_device(const Principal& user, RegisterInput in);
  asio::awaitable<Result<std::vector<Device>>> list(const Principal& user, const std::optional<std::string>& after,
                                                    int limit, const std::optional<std::string>& status);
  asio::awaitable<Result<Device>> get(const Principal& user, const std::string& id);
  asio::awaitable<Result<Device>> update_config(const Principal& user, const std::string& id, boost::json::object config);
  asio::awaitable<Result<Device>> update(const Principal& user, const std::string& id, std::optional<std::string> name,
                                         std::optional<Labels> labels);
  asio::awaitable<Status> remove(const Principal& user, const std::string& id);

  // For devices.
  asio::awaitable<Result<boost::json::object>> heartbeat(const Principal& device, HeartbeatInput in);
  asio::awaitable<Status> go_offline(const Principal& device);
  asio::awaitable<Result<Device>> self(const Principal& device);

  // Marks devices with no heartbeat for heartbeat_timeout offline; how many.
  asio::awaitable<Result<int>> sweep_once();
  // Background work on services.background: the sweeper and the cross-node cache eviction.
  void start();
  void stop();
  // Forgets what this node cached about a device.
  void evict(const std::string& device_id);

  const Options& options() const { return opts_; }

 private:
  struct Cached {
    DeviceInfo info;
    int64_t expires_mono = 0;
  };
  std::optional<DeviceInfo> cached_by_key(const std::string& hash);
  std::optional<DeviceInfo> cached_by_id(const std::string& id);
  uint64_t generation();
  void remember(const std::string& hash, const DeviceInfo& d, uint64_t seen_generation);
  asio::awaitable<void> changed(const std::string& device_id);
  asio::awaitable<void> publish(std::string type, const std::string& user_id, const std::string& subject,
                                boost::json::object data);
  asio::awaitable<void> sweep_loop();

  platform::Services& s_;
  Options opts_;
  std::mutex mu_;
  uint64_t generation_ = 0;  // bumped by every eviction: a fill that raced one is not kept
  std::unordered_map<std::string, Cached> by_key_;  // key hash → device
  std::unordered_map<std::string, Cached> by_id_;
  std::unordered_map<std::string, std::string> key_of_;  // device id → key hash
  std::unique_ptr<store::Subscription> sub_;
  std::shared_ptr<asio::steady_timer> timer_;
  std::shared_ptr<bool> stopped_ = std::make_shared<bool>(false);
};

}  // namespace harmar::devices
