#pragma once
// The device, as stored and as shown (shared/API.md "Devices").
#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "devices/labels.hpp"

namespace harmar::devices {

struct Device {
  std::string id;
  std::string user_id;
  std::string name;
  std::string hostname, os, arch, version;
  Labels labels;
  std::string status = "offline";  // "online" | "offline"
  std::string agent_status;        // what the agent last reported ("idle", "busy", ...)
  boost::json::object metrics;     // what the agent last reported
  std::optional<int64_t> last_seen_at;
  boost::json::object config;
  int64_t config_version = 0;
  int64_t created_at = 0;
  int64_t updated_at = 0;
};

boost::json::object to_json(const Device& d);

}  // namespace harmar::devices
