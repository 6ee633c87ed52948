#pragma once
// The devices table. One function per query; every SQL text is parameterised.
#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "devices/devices.hpp"
#include "devices/model.hpp"
#include "store/sql.hpp"

namespace harmar::devices::repo {

namespace asio = boost::asio;
using store::Querier;

std::vector<store::Migration> migrations();

asio::awaitable<Status> insert(Querier& q, const Device& d, const std::string& key_hash);
asio::awaitable<Result<int64_t>> count_for_user(Querier& q, const std::string& user_id);
asio::awaitable<Result<std::optional<DeviceInfo>>> find_info(Querier& q, const std::string& id);
asio::awaitable<Result<std::optional<DeviceInfo>>> find_info_by_key(Querier& q, const std::string& key_hash);
asio::awaitable<Result<std::optional<Device>>> find_owned(Querier& q, const std::string& user_id, const std::string& id);
asio::awaitable<Result<std::optional<Device>>> find(Querier& q, const std::string& id);
asio::awaitable<Result<std::vector<Device>>> list(Querier& q, const std::string& user_id,
                                                  const std::optional<std::string>& after, int limit,
                                                  const std::optional<std::string>& status);

struct Beat {
  int64_t config_version = 0;
  bool came_online = false;
};
// Records a heartbeat; nullopt when the device no longer exists.
asio::awaitable<Result<std::optional<Beat>>> heartbeat(Querier& q, const std::string& id, int64_t now,
                                                       const std::string& agent_status, const std::string& metrics);
// Marks the device offline; true if it was online.
asio::awaitable<Result<bool>> set_offline(Querier& q, const std::string& id, int64_t now);
// Devices online whose last heartbeat is older than `seen_before`: now offline.
asio::awaitable<Result<std::vector<DeviceInfo>>> sweep_offline(Querier& q, int64_t seen_before, int64_t now, int limit);

asio::awaitable<Result<std::optional<Device>>> update_config(Querier& q, const std::string& user_id,
                                                             const std::string& id, const std::string& config,
                                                             int64_t now);
asio::awaitable<Result<std::optional<Device>>> update(Querier& q, const std::string& user_id, const std::string& id,
                                                      const std::optional<std::string>& name,
                                                      const std::optional<std::string>& labels, int64_t now);
// Deletes the device; its info if it existed and was the user's.
asio::awaitable<Result<std::optional<DeviceInfo>>> remove(Querier& q, const std::string& user_id, const std::string& id);

}  // namespace harmar::devices::repo
