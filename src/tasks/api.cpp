#include "tasks/api.hpp"

#include <boost/json.hpp>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/json.hpp"
#include "platform/api.hpp"
#include "platform/idempotency.hpp"

namespace harmar::tasks {

namespace js = boost::json;
using net::Request;
using net::Response;

namespace {

using Svc = std::shared_ptr<Service>;

// The fields of a new task, from `o` (POST /v1/tasks, or a schedule's "task"). Failures are
// reported under `prefix` + field.
NewTask read_new_task(json::Reader& r, const js::object& o, const Options& opts, bool allow_deps_and_time) {
  NewTask t;
  t.type = r.required_string("type", 1, 64);
  if (!t.type.empty() && !valid_type(t.type)) r.fail("type", "is 1 to 64 characters of letters, digits and _ . - :");
  t.payload = r.optional_value("payload", static_cast<std::size_t>(opts.max_payload_bytes)).value_or(js::value(nullptr));
  t.device_id = r.optional_string("device_id", 1, 64);
  if (t.device_id && !is_uuid(*t.device_id)) r.fail("device_id", "is not a device id");
  t.labels = devices::read_labels(r, o, "labels").value_or(devices::Labels{});
  t.priority = r.optional_int("priority", 0, 10).value_or(0);
  t.max_attempts = r.optional_int("max_attempts", 1, 100).value_or(3);
  t.timeout_ms = r.optional_int("timeout_s", 0, 7 * 86400).value_or(0) * 1000;
  if (allow_deps_and_time) {
    if (auto run_at = r.optional_string("run_at", 1, 64)) {
      auto ms = parse_rfc3339(*run_at);
      if (!ms) r.fail("run_at", "must be an RFC 3339 date-time");
      t.run_at = ms;
    }
    t.depends_on = r.optional_strings("depends_on", 20, 64).value_or(std::vector<std::string>{});
    for (const auto& d : t.depends_on)
      if (!is_uuid(d)) r.fail("depends_on", "holds something that is not a task id");
  }
  return t;
}

Response task_response(int status, const Task& t) { return Response::json(status, js::object{{"task", to_json(t)}}); }

asio::awaitable<Response> create(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"type", "payload", "device_id", "labels", "priority", "max_attempts", "timeout_s", "run_at", "depends_on"});
  NewTask in = read_new_task(r, body, svc->options(), true);
  if (!r.ok()) co_return r.error();
  auto t = co_await svc->create(platform::principal(req), std::move(in));
  if (!t) co_return t.error();
  Response resp = task_response(201, *t);
  resp.header("Location", "/v1/tasks/" + t->id);
  co_return resp;
}

asio::awaitable<Response> list(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  Repo::ListFilter f;
  f.status = req.query_param("status");
  f.device_id = req.query_param("device_id");
  f.type = req.query_param("type");
  if (f.status && !valid_status(*f.status))
    co_return Error::validation("status is not a task status",
                                {{"status", "must be queued, running, succeeded, failed, cancelled or dead"}});
  if (f.device_id && f.device_id->size() > 64) co_return Error::validation("device_id is too long", {{"device_id", "is invalid"}});
  if (f.type && !valid_type(*f.type)) co_return Error::validation("type is invalid", {{"type", "is invalid"}});
  f.before = page.after;
  f.limit = page.limit + 1;
  auto items = co_await svc->list(platform::principal(req), f);
  if (!items) co_return items.error();
  co_return platform::page_response(*items, page.limit, [](const auto& x) { return to_json(x); },
                                    [](const auto& x) { return x.id; });
}

asio::awaitable<Response> get(Svc svc, Request& req) {
  auto t = co_await svc->get(platform::principal(req), std::string(req.param("id")));
  if (!t) co_return t.error();
  co_return task_response(200, *t);
}

asio::awaitable<Response> cancel(Svc svc, Request& req) {
  auto t = co_await svc->cancel(platform::principal(req), std::string(req.param("id")));
  if (!t) co_return t.error();
  co_return task_response(200, *t);
}

asio::awaitable<Response> retry(Svc svc, Request& req) {
  auto t = co_await svc->retry(platform::principal(req), std::string(req.param("id")));
  if (!t) co_return t.error();
  co_return task_response(200, *t);
}

asio::awaitable<Response> logs(Svc svc, Request& req) {
  int64_t after = 0;
  if (auto a = req.query_param("after")) {
    char* end = nullptr;
    after = std::strtoll(a->c_str(), &end, 10);
    if (a->empty() || *end != '\0' || after < 0)
      co_return Error::validation("after must be a non-negative integer", {{"after", "is invalid"}});
  }
  HARMAR_CO_TRY(auto page, platform::page_params(req, 100, 1000));
  auto lines = co_await svc->logs(platform::principal(req), std::string(req.param("id")), after, page.limit);
  if (!lines) co_return lines.error();
  js::array items;
  int64_t last = after;
  for (const auto& l : *lines) {
    items.push_back(js::object{{"seq", l.seq}, {"at", format_rfc3339(l.at)}, {"attempt", l.attempt}, {"text", l.text}});
    last = l.seq;
  }
  co_return Response::json(200, js::object{{"items", std::move(items)}, {"next_after", last}});
}

asio::awaitable<Response> pending(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"max", "wait_s", "types", "running"});
  PendingInput in;
  in.max = r.optional_int("max", 0, 100).value_or(1);
  in.wait_s = r.optional_int("wait_s", 0, svc->options().max_wait_s).value_or(0);
  in.types = r.optional_strings("types", 64, 64).value_or(std::vector<std::string>{});
  in.running = r.optional_strings("running", 256, 64).value_or(std::vector<std::string>{});
  if (!r.ok()) co_return r.error();
  in.client_gone = [&req] { return req.client_gone(); };
  auto out = co_await svc->pending(platform::principal(req), std::move(in));
  if (!out) co_return out.error();
  js::array tasks, cancel;
  for (const auto& t : out->tasks) tasks.push_back(to_json(t));
  for (const auto& id : out->cancel) cancel.emplace_back(id);
  co_return Response::json(200, js::object{{"tasks", std::move(tasks)}, {"cancel", std::move(cancel)}});
}

asio::awaitable<Response> progress(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"progress", "log", "attempt"});
  ProgressInput in;
  in.progress = r.optional_int("progress", 0, 100);
  in.log = r.optional_string("log", 0, 1 << 20).value_or("");
  in.attempt = r.optional_int("attempt", 0, 1000).value_or(-1);
  if (!r.ok()) co_return r.error();
  auto out = co_await svc->progress(platform::principal(req), std::string(req.param("id")), std::move(in));
  if (!out) co_return out.error();
  co_return Response::json(200, *out);
}

asio::awaitable<Response> result(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"status", "result", "error", "attempt", "retry"});
  ResultInput in;
  std::string status = r.required_string("status", 1, 16);
  if (!status.empty() && status != "succeeded" && status != "failed") r.fail("status", "must be succeeded or failed");
  in.succeeded = status == "succeeded";
  in.result = r.optional_value("result", static_cast<std::size_t>(svc->options().max_payload_bytes)).value_or(js::value(nullptr));
  in.error = r.optional_string("error", 0, 4096);
  in.attempt = r.optional_int("attempt", 0, 1000).value_or(-1);
  in.retry = r.optional_bool("retry").value_or(true);
  if (!r.ok()) co_return r.error();
  auto t = co_await svc->result(platform::principal(req), std::string(req.param("id")), std::move(in));
  if (!t) co_return t.error();
  co_return task_response(200, *t);
}

asio::awaitable<Response> release(Svc svc, Request& req) {
  auto t = co_await svc->release(platform::principal(req), std::string(req.param("id")));
  if (!t) co_return t.error();
  co_return task_response(200, *t);
}

asio::awaitable<Response> types(Svc svc, Request& req) {
  auto items = co_await svc->types(platform::principal(req));
  if (!items) co_return items.error();
  co_return Response::json(200, js::object{{"items", std::move(*items)}, {"next_cursor", nullptr}});
}

asio::awaitable<Response> set_type(Svc svc, Request& req, std::optional<bool> force_paused) {
  std::string type(req.param("type"));
  if (!valid_type(type)) co_return Error::validation("type is invalid", {{"type", "is invalid"}});
  std::optional<bool> paused = force_paused;
  std::optional<std::pair<int64_t, int64_t>> rate;
  if (!force_paused) {
    HARMAR_CO_TRY(auto body, platform::json_body(req));
    json::Reader r(body);
    r.reject_unknown({"paused", "rate_limit"});
    paused = r.optional_bool("paused");
    if (const js::value* rl = body.if_contains("rate_limit")) {
      if (rl->is_null()) {
        rate = std::make_pair(int64_t{0}, int64_t{0});
      } else if (!rl->is_object()) {
        r.fail("rate_limit", "must be {max, period_s} or null");
      } else {
        json::Reader rr(rl->get_object());
        rr.reject_unknown({"max", "period_s"});
        auto max = rr.optional_int("max", 1, 1'000'000);
        auto period = rr.optional_int("period_s", 1, 86400);
        if (!max) rr.fail("max", "is required");
        if (!period) rr.fail("period_s", "is required");
        if (!rr.ok()) {
          for (const auto& e : rr.error().errors) r.fail("rate_limit." + e.field, e.message);
        } else {
          rate = std::make_pair(*max, *period * 1000);
        }
      }
    }
    if (!r.ok()) co_return r.error();
  }
  auto p = co_await svc->set_type(platform::principal(req), type, paused, rate);
  if (!p) co_return p.error();
  co_return Response::json(200, to_json(*p));
}

asio::awaitable<Response> create_schedule(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"name", "cron", "task", "enabled"});
  std::string name = r.optional_string("name", 0, 200).value_or("");
  std::string cron = r.required_string("cron", 1, 200);
  bool enabled = r.optional_bool("enabled").value_or(true);
  NewTask tmpl;
  const js::value* task = body.if_contains("task");
  if (!task || !task->is_object()) {
    r.fail("task", "is required: {type, payload?, device_id?, labels?, priority?, max_attempts?, timeout_s?}");
  } else {
    json::Reader tr(task->get_object());
    tr.reject_unknown({"type", "payload", "device_id", "labels", "priority", "max_attempts", "timeout_s"});
    tmpl = read_new_task(tr, task->get_object(), svc->options(), false);
    if (!tr.ok())
      for (const auto& e : tr.error().errors) r.fail("task." + e.field, e.message);
  }
  if (!r.ok()) co_return r.error();
  auto s = co_await svc->create_schedule(platform::principal(req), std::move(name), std::move(cron), std::move(tmpl), enabled);
  if (!s) co_return s.error();
  Response resp = Response::json(201, to_json(*s));
  resp.header("Location", "/v1/task-schedules/" + s->id);
  co_return resp;
}

asio::awaitable<Response> list_schedules(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto page, platform::page_params(req));
  auto items = co_await svc->schedules(platform::principal(req), page.after, page.limit + 1);
  if (!items) co_return items.error();
  co_return platform::page_response(*items, page.limit, [](const auto& x) { return to_json(x); },
                                    [](const auto& x) { return x.id; });
}

asio::awaitable<Response> get_schedule(Svc svc, Request& req) {
  auto s = co_await svc->schedule(platform::principal(req), std::string(req.param("id")));
  if (!s) co_return s.error();
  co_return Response::json(200, to_json(*s));
}

asio::awaitable<Response> patch_schedule(Svc svc, Request& req) {
  HARMAR_CO_TRY(auto body, platform::json_body(req));
  json::Reader r(body);
  r.reject_unknown({"enabled"});
  auto enabled = r.optional_bool("enabled");
  if (r.ok() && !enabled) r.fail("enabled", "is required");
  if (!r.ok()) co_return r.error();
  auto s = co_await svc->set_schedule_enabled(platform::principal(req), std::string(req.param("id")), *enabled);
  if (!s) co_return s.error();
  co_return Response::json(200, to_json(*s));
}

asio::awaitable<Response> delete_schedule(Svc svc, Request& req) {
  auto st = co_await svc->delete_schedule(platform::principal(req), std::string(req.param("id")));
  if (!st) co_return st.error();
  co_return Response::no_content();
}

}  // namespace

void install_routes(net::Router& router, platform::Services& services, std::shared_ptr<Service> svc) {
  using net::Auth;
  auto idem = platform::idempotent(services);
  net::RouteOptions user{.auth = Auth::User};
  net::RouteOptions device{.auth = Auth::Device};
  router.post("/v1/tasks", [svc](Request& r) { return create(svc, r); }, {.auth = Auth::User, .middleware = {idem}});
  router.get("/v1/tasks", [svc](Request& r) { return list(svc, r); }, user);
  router.get("/v1/tasks/{id}", [svc](Request& r) { return get(svc, r); }, user);
  router.post("/v1/tasks/{id}/cancel", [svc](Request& r) { return cancel(svc, r); }, user);
  router.post("/v1/tasks/{id}/retry", [svc](Request& r) { return retry(svc, r); }, user);
  router.get("/v1/tasks/{id}/logs", [svc](Request& r) { return logs(svc, r); }, user);

  router.get("/v1/task-types", [svc](Request& r) { return types(svc, r); }, user);
  router.patch("/v1/task-types/{type}", [svc](Request& r) { return set_type(svc, r, std::nullopt); }, user);
  router.post("/v1/task-types/{type}/pause", [svc](Request& r) { return set_type(svc, r, true); }, user);
  router.post("/v1/task-types/{type}/resume", [svc](Request& r) { return set_type(svc, r, false); }, user);

  router.post("/v1/task-schedules", [svc](Request& r) { return create_schedule(svc, r); },
              {.auth = Auth::User, .middleware = {idem}});
  router.get("/v1/task-schedules", [svc](Request& r) { return list_schedules(svc, r); }, user);
  router.get("/v1/task-schedules/{id}", [svc](Request& r) { return get_schedule(svc, r); }, user);
  router.patch("/v1/task-schedules/{id}", [svc](Request& r) { return patch_schedule(svc, r); }, user);
  router.del("/v1/task-schedules/{id}", [svc](Request& r) { return delete_schedule(svc, r); }, user);

  router.post("/v1/daemon/tasks/pending", [svc](Request& r) { return pending(svc, r); }, device);
  router.post("/v1/daemon/tasks/{id}/progress", [svc](Request& r) { return progress(svc, r); },
              {.auth = Auth::Device, .body_limit = 2 << 20});
  router.post("/v1/daemon/tasks/{id}/result", [svc](Request& r) { return result(svc, r); },
              {.auth = Auth::Device, .body_limit = 2 << 20});
  router.post("/v1/daemon/tasks/{id}/release", [svc](Request& r) { return release(svc, r); }, device);
}

}  // namespace harmar::tasks
