#pragma once
// A config backup: one file a device uploaded, owned by the device's user.
#include <boost/json/object.hpp>

#include <cstdint>
#include <string>

namespace harmar::backups {

struct Backup {
  std::string id;  // UUIDv7: newest sort last
  std::string user_id;
  std::string device_id;
  std::string name;          // the file name the device gave (?name=), "config" by default
  std::string content_type;  // as uploaded; application/octet-stream by default
  int64_t size = 0;
  std::string sha256;  // lowercase hex of the whole file; also its ETag
  std::string blob_key;
  int64_t created_at = 0;  // Unix ms
};

boost::json::object to_json(const Backup& b);

struct Usage {
  int64_t bytes = 0;
  int64_t count = 0;
};

}  // namespace harmar::backups
