#include "tasks/model.hpp"

#include <boost/json.hpp>

#include "core/clock.hpp"

namespace harmar::tasks {

namespace js = boost::json;

namespace {
js::value opt_time(const std::optional<int64_t>& t) {
  if (t) return js::value(format_rfc3339(*t));
  return nullptr;
}
js::value opt_text(const std::optional<std::string>& s) {
  if (s) return js::value(*s);
  return nullptr;
}
}  // namespace

bool valid_type(std::string_view t) {
  if (t.empty() || t.size() > 64) return false;
  for (char c : t) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-' || c == ':';
    if (!ok) return false;
  }
  return true;
}

js::object to_json(const Task& t) {
  js::object o;
  o["id"] = t.id;
  o["type"] = t.type;
  o["payload"] = t.payload;
  o["status"] = t.status;
  o["priority"] = t.priority;
  o["attempts"] = t.attempts;
  o["max_attempts"] = t.max_attempts;
  o["device_id"] = opt_text(t.device_id);
  o["labels"] = devices::labels_json(t.labels);
  o["claimed_by"] = opt_text(t.leased_by);
  o["lease_expires_at"] = opt_time(t.status == "running" ? t.lease_expires_at : std::nullopt);
  o["timeout_s"] = t.timeout_ms / 1000;
  o["result"] = t.result;
  o["error"] = opt_text(t.error);
  o["progress"] = t.progress;
  o["created_at"] = format_rfc3339(t.created_at);
  o["started_at"] = opt_time(t.started_at);
  o["finished_at"] = opt_time(t.finished_at);
  o["run_at"] = format_rfc3339(t.run_at);
  o["updated_at"] = format_rfc3339(t.updated_at);
  o["waiting_for"] = t.deps_pending;
  o["schedule_id"] = opt_text(t.schedule_id);
  return o;
}

js::object NewTask::to_json() const {
  js::object o;
  o["type"] = type;
  o["payload"] = payload;
  if (device_id) o["device_id"] = *device_id;
  o["labels"] = devices::labels_json(labels);
  o["priority"] = priority;
  o["max_attempts"] = max_attempts;
  o["timeout_s"] = timeout_ms / 1000;
  return o;
}

NewTask NewTask::from_template(const js::object& o) {
  NewTask t;
  if (auto* v = o.if_contains("type"); v && v->is_string()) t.type = std::string(v->get_string());
  if (auto* v = o.if_contains("payload")) t.payload = *v;
  if (auto* v = o.if_contains("device_id"); v && v->is_string()) t.device_id = std::string(v->get_string());
  if (auto* v = o.if_contains("labels"); v && v->is_object()) t.labels = devices::parse_labels(js::serialize(*v));
  if (auto* v = o.if_contains("priority"); v && v->is_int64()) t.priority = v->get_int64();
  if (auto* v = o.if_contains("max_attempts"); v && v->is_int64()) t.max_attempts = v->get_int64();
  if (auto* v = o.if_contains("timeout_s"); v && v->is_int64()) t.timeout_ms = v->get_int64() * 1000;
  return t;
}

js::object to_json(const TypePolicy& p) {
  js::object o;
  o["type"] = p.type;
  o["paused"] = p.paused;
  if (p.rate_max > 0) {
    o["rate_limit"] = js::object{{"max", p.rate_max}, {"period_s", static_cast<double>(p.rate_period_ms) / 1000.0}};
  } else {
    o["rate_limit"] = nullptr;
  }
  o["updated_at"] = format_rfc3339(p.updated_at);
  return o;
}

js::object to_json(const Schedule& s) {
  js::object o;
  o["id"] = s.id;
  o["name"] = s.name;
  o["cron"] = s.cron;
  o["task"] = s.task.to_json();
  o["enabled"] = s.enabled;
  o["next_run_at"] = opt_time(s.next_run_at);
  o["last_run_at"] = opt_time(s.last_run_at);
  o["last_task_id"] = opt_text(s.last_task_id);
  o["created_at"] = format_rfc3339(s.created_at);
  return o;
}

}  // namespace harmar::tasks
