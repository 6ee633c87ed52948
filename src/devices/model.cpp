#include "devices/model.hpp"

#include "core/clock.hpp"

namespace harmar::devices {

namespace js = boost::json;

js::object to_json(const Device& d) {
  js::object o;
  o["id"] = d.id;
  o["name"] = d.name;
  o["hostname"] = d.hostname;
  o["os"] = d.os;
  o["arch"] = d.arch;
  o["version"] = d.version;
  o["labels"] = labels_json(d.labels);
  o["status"] = d.status;
  o["agent_status"] = d.agent_status;
  o["metrics"] = d.metrics;
  if (d.last_seen_at) {
    o["last_seen_at"] = format_rfc3339(*d.last_seen_at);
  } else {
    o["last_seen_at"] = nullptr;
  }
  o["config"] = d.config;
  o["config_version"] = d.config_version;
  o["created_at"] = format_rfc3339(d.created_at);
  o["updated_at"] = format_rfc3339(d.updated_at);
  return o;
}

}  // namespace harmar::devices
