#pragma once
// The nouns of the queue (shared/API.md "Tasks") and their JSON forms.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "devices/labels.hpp"

namespace harmar::tasks {

// queued → running → succeeded | failed | dead, and cancelled from queued or running.
inline bool is_terminal(std::string_view status) {
  return status == "succeeded" || status == "failed" || status == "cancelled" || status == "dead";
}
inline bool valid_status(std::string_view s) { return s == "queued" || s == "running" || is_terminal(s); }
// Task types and the like: 1..64 of [A-Za-z0-9_.:-].
bool valid_type(std::string_view t);

struct Task {
  std::string id;
  std::string user_id;
  std::string type;
  boost::json::value payload;
  std::string status;
  int64_t priority = 0;
  int64_t attempts = 0;
  int64_t max_attempts = 3;
  std::optional<std::string> device_id;  // the target device, if any
  devices::Labels labels;                // required device labels
  std::optional<std::string> leased_by;  // the device that holds (or last held) the lease
  std::optional<int64_t> lease_expires_at;
  int64_t timeout_ms = 0;  // 0: none
  boost::json::value result;
  std::optional<std::string> error;
  int64_t progress = 0;
  int64_t run_at = 0;
  int64_t created_at = 0;
  std::optional<int64_t> started_at;
  std::optional<int64_t> finished_at;
  int64_t updated_at = 0;
  int64_t deps_pending = 0;
  std::optional<std::string> schedule_id;
};

boost::json::object to_json(const Task& t);

// What a new task is made from (POST /v1/tasks, or a schedule's template).
struct NewTask {
  std::string type;
  boost::json::value payload;
  std::optional<std::string> device_id;
  devices::Labels labels;
  int64_t priority = 0;
  int64_t max_attempts = 3;
  int64_t timeout_ms = 0;
  std::optional<int64_t> run_at;
  std::vector<std::string> depends_on;
  std::optional<std::string> schedule_id;

  boost::json::object to_json() const;  // the template form stored with a schedule
  static NewTask from_template(const boost::json::object& o);
};

struct TypePolicy {
  std::string type;
  bool paused = false;
  int64_t rate_max = 0;        // tasks that may start per period; 0: unlimited
  int64_t rate_period_ms = 0;
  int64_t updated_at = 0;
};
boost::json::object to_json(const TypePolicy& p);

struct Schedule {
  std::string id;
  std::string user_id;
  std::string name;
  std::string cron;
  NewTask task;
  bool enabled = true;
  std::optional<int64_t> next_run_at;
  std::optional<int64_t> last_run_at;
  std::optional<std::string> last_task_id;
  int64_t created_at = 0;
};
boost::json::object to_json(const Schedule& s);

struct LogLine {
  int64_t seq = 0;
  int64_t at = 0;
  int64_t attempt = 0;
  std::string text;
};

}  // namespace harmar::tasks
