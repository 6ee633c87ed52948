#pragma once
// The devices module's public face (see shared/API.md "Devices"): what other modules may use.
//
//  - Directory (provided by devices, found with Services::find<devices::Directory>()): who a
//    device is, from its id or its api key. Device keys look like "hdk_" + 43 base64url
//    characters (256 random bits); only their SHA-256 is stored.
//  - TaskHooks (provided by the tasks module, found by devices): what a heartbeat reports about
//    a device's tasks, and what happens to its leased tasks when it goes offline or is deleted.
#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/principal.hpp"
#include "core/result.hpp"
#include "devices/labels.hpp"
#include "platform/module.hpp"

namespace harmar::devices {

namespace asio = boost::asio;

inline constexpr std::string_view kApiKeyPrefix = "hdk_";

struct DeviceInfo {
  std::string id;
  std::string user_id;
  std::string name;
  Labels labels;
};

class Directory {
 public:
  virtual ~Directory() = default;
  // The device with this id, or nullopt when there is none (deleted devices are gone at once).
  virtual asio::awaitable<Result<std::optional<DeviceInfo>>> find(std::string device_id) = 0;
  // A device principal for an api key ("hdk_…"); 401 `invalid_api_key` when it is unknown.
  virtual asio::awaitable<Result<Principal>> authenticate(std::string api_key) = 0;
};

struct HeartbeatTasks {
  int64_t pending = 0;              // tasks this device could claim now
  std::vector<std::string> cancel;  // of the tasks the agent says it runs: those it must stop
};

class TaskHooks {
 public:
  virtual ~TaskHooks() = default;
  // Called on every heartbeat. `running` is what the agent says it is running; their leases are
  // extended, and those no longer leased to this device come back in `cancel`.
  virtual asio::awaitable<Result<HeartbeatTasks>> on_heartbeat(const DeviceInfo& d,
                                                               std::vector<std::string> running) = 0;
  // The device said goodbye (`deleted` false) or was deleted: its leased tasks go back to the queue.
  virtual asio::awaitable<void> on_device_gone(DeviceInfo d, bool deleted) = 0;
};

platform::Module module();

}  // namespace harmar::devices
