#include "tasks/service.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

#include <random>
#include <set>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "tasks/cron.hpp"

namespace harmar::tasks {

namespace js = boost::json;

namespace {

std::shared_ptr<spdlog::logger> logger() { return log::get("tasks"); }

constexpr int64_t kPolicyCacheMs = 1000;
constexpr int64_t kMaxClaim = 100;
constexpr std::size_t kMaxLogChunk = 64 * 1024;
constexpr int kMaxSchedulesPerUser = 100;

Error lease_lost() {
  return Error::conflict("this device no longer holds the lease on the task (it expired, was cancelled, or went to "
                         "another device)",
                         "lease_lost");
}

Error no_device() { return Error::unauthorized("the device api key is not valid", "invalid_api_key"); }

std::string lease_of(const std::string& device_id, int64_t attempt) { return device_id + ":" + std::to_string(attempt); }

}  // namespace

Options Options::from(const config::Config& c) {
  Options o;
  o.lease_ms = c.get_duration_ms("tasks.lease");
  o.grace_ms = c.get_duration_ms("tasks.timeout_grace");
  o.tick_ms = c.get_duration_ms("tasks.tick_interval");
  o.backoff_base_ms = c.get_duration_ms("tasks.backoff_base");
  o.backoff_max_ms = c.get_duration_ms("tasks.backoff_max");
  o.retention_ms = c.get_duration_ms("tasks.retention");
  o.max_payload_bytes = c.get_size("tasks.max_payload_bytes");
  o.max_log_bytes = c.get_size("tasks.max_log_bytes");
  return o;
}

Service::Service(platform::Services& s, Options o, std::shared_ptr<devices::Directory> directory)
    : s_(s), opts_(o), repo_(s.db.backend()), directory_(std::move(directory)) {}

int64_t Service::backoff_ms(int64_t attempt) const {
  int64_t shift = std::clamp<int64_t>(attempt - 1, 0, 30);
  int64_t d = opts_.backoff_base_ms;
  for (int64_t i = 0; i < shift && d < opts_.backoff_max_ms; ++i) d *= 2;
  d = std::min(d, opts_.backoff_max_ms);
  // "Equal jitter": half fixed, half random, so retries of many tasks spread out.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  int64_t half = d / 2;
  return half + (half > 0 ? static_cast<int64_t>(rng() % static_cast<uint64_t>(half + 1)) : 0);
}

asio::awaitable<void> Service::publish(std::string type, const Task& t, std::string change) {
  platform::DomainEvent e;
  e.type = std::move(type);
  e.user_id = t.user_id;
  e.subject = t.id;
  e.data = to_json(t);
  if (!change.empty()) e.data["change"] = change;
  co_await s_.events.publish(std::move(e));
}

// ---- wake-ups ------------------------------------------------------------------------------

void Service::kick(std::string payload) {
  {
    std::lock_guard lock(mu_);
    auto [it, fresh] = kicks_.try_emplace(payload, Kick::InFlight);
    if (!fresh) {
      it->second = Kick::Again;  // the NOTIFY in flight may predate our commit: send one more
      return;
    }
  }
  asio::co_spawn(s_.background, send_kicks(std::move(payload)), asio::detached);
}

asio::awaitable<void> Service::send_kicks(std::string payload) {
  auto self = shared_from_this();
  for (;;) {
    auto st = co_await s_.db.notify(kNotifyChannel, payload);
    if (!st.ok()) {
      // Other nodes' waiters still wake at their deadline; ours wake now.
      logger()->warn(log::fields({{"msg", "NOTIFY failed"}, {"error", st.error().detail}}));
      wakeups_.signal(payload);
    }
    std::lock_guard lock(mu_);
    auto it = kicks_.find(payload);
    if (it != kicks_.end() && it->second == Kick::Again) {
      it->second = Kick::InFlight;
      continue;
    }
    kicks_.erase(payload);
    break;
  }
}

void Service::kick_later(const std::string& user_id, int64_t at_ms) {
  auto self = shared_from_this();
  auto timer = std::make_shared<asio::steady_timer>(s_.background);
  timer->expires_after(std::chrono::milliseconds(std::max<int64_t>(1, at_ms - now_ms())));
  timer->async_wait([self, timer, user_id](boost::system::error_code ec) {
    if (!ec) self->kick_user(user_id);
  });
}

// ---- policies ------------------------------------------------------------------------------

asio::awaitable<Result<std::vector<TypePolicy>>> Service::policies_for(const std::string& user_id) {
  {
    std::lock_guard lock(mu_);
    auto it = policies_.find(user_id);
    if (it != policies_.end() && it->second.expires_mono > mono_ms()) co_return it->second.policies;
  }
  auto p = co_await repo_.policies(s_.db, user_id);
  if (!p) co_return std::move(p).error();
  std::lock_guard lock(mu_);
  if (policies_.size() > 50'000) policies_.clear();
  policies_[user_id] = {*p, mono_ms() + kPolicyCacheMs};
  co_return std::move(*p);
}

void Service::forget_policies(const std::string& user_id) {
  std::lock_guard lock(mu_);
  policies_.erase(user_id);
}

// ---- users ---------------------------------------------------------------------------------

asio::awaitable<Result<Task>> Service::create(const Principal& user, NewTask in) {
  int64_t now = now_ms();
  if (in.device_id) {
    auto dev = co_await directory_->find(*in.device_id);
    if (!dev) co_return std::move(dev).error();
    if (!*dev || (*dev)->user_id != user.user_id)
      co_return Error::validation("device_id names no device of yours", {{"device_id", "is not one of your devices"}});
  }
  Task t;
  t.id = new_id();
  t.user_id = user.user_id;
  t.type = std::move(in.type);
  t.payload = std::move(in.payload);
  t.status = "queued";
  t.priority = in.priority;
  t.max_attempts = in.max_attempts;
  t.device_id = std::move(in.device_id);
  t.labels = std::move(in.labels);
  t.timeout_ms = in.timeout_ms;
  t.run_at = in.run_at ? std::max(*in.run_at, int64_t{0}) : now;
  t.created_at = t.updated_at = now;
  t.schedule_id = std::move(in.schedule_id);
  if (in.depends_on.empty()) {
    bool ready = t.run_at <= now;
    auto st = co_await repo_.insert(s_.db, t, ready);
    if (!st) co_return std::move(st).error();
    co_await publish("task.created", t);
    if (ready) kick_user(t.user_id);
    co_return t;
  }
  // With parents: mark them (so their completion looks for us) and count the unfinished, all in
  // one transaction with the insert, so a parent finishing meanwhile is either seen as done or
  // sees us.
  auto tx = co_await s_.db.begin();
  if (!tx) co_return std::move(tx).error();
  std::set<std::string> parents(in.depends_on.begin(), in.depends_on.end());
  for (const auto& p : parents) {
    auto status = co_await repo_.mark_parent(**tx, user.user_id, p);
    if (!status) co_return std::move(status).error();
    if (!*status)
      co_return Error::validation("depends_on names a task that does not exist", {{"depends_on", "unknown task " + p}});
    if (**status == "failed" || **status == "cancelled" || **status == "dead")
      co_return Error::validation("a task it depends on already " + **status,
                                  {{"depends_on", "task " + p + " is " + **status}});
    if (**status != "succeeded") ++t.deps_pending;
  }
  bool ready = t.deps_pending == 0 && t.run_at <= now;
  auto st = co_await repo_.insert(**tx, t, ready);
  if (!st) co_return std::move(st).error();
  for (const auto& p : parents) {
    auto d = co_await repo_.insert_dependency(**tx, t.id, p);
    if (!d) co_return std::move(d).error();
  }
  auto committed = co_await (*tx)->commit();
  if (!committed) co_return std::move(committed).error();
  co_await publish("task.created", t);
  if (ready) kick_user(t.user_id);
  co_return t;
}

asio::awaitable<Result<Submitter::Submitted>> Service::submit(const Principal& user, std::string type,
                                                             boost::json::object payload, std::string device_id) {
  if (boost::json::serialize(payload).size() > static_cast<std::size_t>(opts_.max_payload_bytes))
    co_return Error::validation("the task payload is too large", {{"payload", "exceeds tasks.max_payload_bytes"}});
  NewTask in;
  in.type = std::move(type);
  in.payload = std::move(payload);
  in.device_id = std::move(device_id);
  auto t = co_await create(user, std::move(in));
  if (!t) co_return std::move(t).error();
  co_return Submitted{t->id, t->status};
}

asio::awaitable<Result<Task>> Service::get(const Principal& user, const std::string& id) {
  auto t = co_await repo_.find(s_.db, user.user_id, id);
  if (!t) co_return std::move(t).error();
  if (!*t) co_return Error::not_found("no such task");
  co_return std::move(**t);
}

asio::awaitable<Result<std::vector<Task>>> Service::list(const Principal& user, Repo::ListFilter f) {
  co_return co_await repo_.list(s_.db, user.user_id, f);
}

asio::awaitable<Result<std::vector<Task>>> Service::cascade_cancel(store::Querier& q, const std::string& root, int64_t now) {
  std::vector<Task> all;
  std::vector<std::string> frontier{root};
  for (int depth = 0; depth < 64 && !frontier.empty(); ++depth) {
    auto cancelled = co_await repo_.cancel_dependents(q, frontier, "a task it depends on (" + root + ") did not succeed", now);
    if (!cancelled) co_return std::move(cancelled).error();
    frontier.clear();
    for (auto& t : *cancelled) {
      frontier.push_back(t.id);
      all.push_back(std::move(t));
    }
  }
  co_return all;
}

asio::awaitable<Result<Task>> Service::cancel(const Principal& user, const std::string& id) {
  int64_t now = now_ms();
  auto tx = co_await s_.db.begin();
  if (!tx) co_return std::move(tx).error();
  auto row = co_await repo_.cancel(**tx, user.user_id, id, now);
  if (!row) co_return std::move(row).error();
  if (!*row) {
    (void)co_await (*tx)->rollback();
    auto t = co_await repo_.find(s_.db, user.user_id, id);
    if (!t) co_return std::move(t).error();
    if (!*t) co_return Error::not_found("no such task");
    co_return Error::conflict("the task already " + (*t)->status + "; only queued or running tasks can be cancelled",
                              "not_cancellable");
  }
  std::vector<Task> dependents;
  if ((*row)->has_dependents) {
    auto c = co_await cascade_cancel(**tx, id, now);
    if (!c) co_return std::move(c).error();
    dependents = std::move(*c);
  }
  auto committed = co_await (*tx)->commit();
  if (!committed) co_return std::move(committed).error();
  Task t = std::move((*row)->task);
  bool was_running = t.leased_by && t.started_at;
  if (was_running) kick_device(*t.leased_by);  // its agent hears it at its next long-poll wake-up
  co_await publish("task.updated", t, "cancelled");
  for (const auto& d : dependents) co_await publish("task.updated", d, "cancelled");
  co_return t;
}

asio::awaitable<Result<Task>> Service::retry(const Principal& user, const std::string& id) {
  int64_t now = now_ms();
  auto t = co_await repo_.retry(s_.db, user.user_id, id, now);
  if (!t) co_return std::move(t).error();
  if (!*t) {
    auto found = co_await repo_.find(s_.db, user.user_id, id);
    if (!found) co_return std::move(found).error();
    if (!*found) co_return Error::not_found("no such task");
    co_return Error::conflict("the task is " + (*found)->status + "; only failed, cancelled or dead tasks can be retried",
                              "not_retryable");
  }
  co_await publish("task.updated", **t, "retried");
  if ((*t)->deps_pending == 0) kick_user(user.user_id);
  co_return std::move(**t);
}

asio::awaitable<Result<std::vector<LogLine>>> Service::logs(const Principal& user, const std::string& id, int64_t after,
                                                            int limit) {
  auto t = co_await repo_.find(s_.db, user.user_id, id);
  if (!t) co_return std::move(t).error();
  if (!*t) co_return Error::not_found("no such task");
  co_return co_await repo_.logs(s_.db, id, after, limit);
}

asio::awaitable<Result<js::array>> Service::types(const Principal& user) {
  auto p = co_await repo_.policies(s_.db, user.user_id);
  if (!p) co_return std::move(p).error();
  auto counts = co_await repo_.counts(s_.db, user.user_id);
  if (!counts) co_return std::move(counts).error();
  std::map<std::string, js::object> by_type;
  for (const auto& pol : *p) by_type[pol.type] = to_json(pol);
  for (const auto& [type, status, n] : *counts) {
    auto& o = by_type[type];
    if (o.empty()) {
      TypePolicy none;
      none.type = type;
      o = to_json(none);
      o["updated_at"] = nullptr;
    }
    o[status] = n;
  }
  js::array out;
  for (auto& [type, o] : by_type) {
    if (!o.contains("queued")) o["queued"] = 0;
    if (!o.contains("running")) o["running"] = 0;
    out.push_back(std::move(o));
  }
  co_return out;
}

asio::awaitable<Result<TypePolicy>> Service::set_type(const Principal& user, const std::string& type,
                                                      std::optional<bool> paused,
                                                      std::optional<std::pair<int64_t, int64_t>> rate) {
  auto current = co_await repo_.policies(s_.db, user.user_id);
  if (!current) co_return std::move(current).error();
  TypePolicy p;
  p.type = type;
  for (const auto& c : *current)
    if (c.type == type) p = c;
  if (paused) p.paused = *paused;
  if (rate) {
    p.rate_max = rate->first;
    p.rate_period_ms = rate->second;
  }
  p.updated_at = now_ms();
  auto st = co_await repo_.upsert_policy(s_.db, user.user_id, p);
  if (!st) co_return std::move(st).error();
  forget_policies(user.user_id);
  auto fanned = co_await s_.pubsub.publish(kTypesChannel, user.user_id);
  if (!fanned.ok())
    logger()->warn(log::fields({{"msg", "task type change not fanned out; other nodes see it within a second"},
                                {"error", fanned.error().detail}}));
  if (!p.paused) kick_user(user.user_id);  // resumed or limit raised: waiting devices may claim now
  platform::DomainEvent e;
  e.type = "task.type_updated";
  e.user_id = user.user_id;
  e.subject = type;
  e.data = to_json(p);
  co_await s_.events.publish(std::move(e));
  co_return p;
}

asio::awaitable<Result<Schedule>> Service::create_schedule(const Principal& user, std::string name, std::string cron,
                                                           NewTask tmpl, bool enabled) {
  auto c = Cron::parse(cron);
  if (!c) co_return std::move(c).error();
  if (tmpl.device_id) {
    auto dev = co_await directory_->find(*tmpl.device_id);
    if (!dev) co_return std::move(dev).error();
    if (!*dev || (*dev)->user_id != user.user_id)
      co_return Error::validation("device_id names no device of yours", {{"task.device_id", "is not one of your devices"}});
  }
  auto existing = co_await repo_.schedules(s_.db, user.user_id, std::nullopt, kMaxSchedulesPerUser);
  if (!existing) co_return std::move(existing).error();
  if (static_cast<int>(existing->size()) >= kMaxSchedulesPerUser)
    co_return Error::conflict("an account has at most " + std::to_string(kMaxSchedulesPerUser) + " schedules",
                              "schedule_limit_reached");
  Schedule s;
  s.id = new_id();
  s.user_id = user.user_id;
  s.name = std::move(name);
  s.cron = c->text();
  s.task = std::move(tmpl);
  s.enabled = enabled;
  s.created_at = now_ms();
  s.next_run_at = enabled ? c->next_after(s.created_at) : std::nullopt;
  if (enabled && !s.next_run_at)
    co_return Error::validation("the cron expression never matches", {{"cron", "never matches a date"}});
  auto st = co_await repo_.insert_schedule(s_.db, s);
  if (!st) co_return std::move(st).error();
  co_return s;
}

asio::awaitable<Result<std::vector<Schedule>>> Service::schedules(const Principal& user,
                                                                  const std::optional<std::string>& after, int limit) {
  co_return co_await repo_.schedules(s_.db, user.user_id, after, limit);
}

asio::awaitable<Result<Schedule>> Service::schedule(const Principal& user, const std::string& id) {
  auto s = co_await repo_.schedule(s_.db, user.user_id, id);
  if (!s) co_return std::move(s).error();
  if (!*s) co_return Error::not_found("no such schedule");
  co_return std::move(**s);
}

asio::awaitable<Result<Schedule>> Service::set_schedule_enabled(const Principal& user, const std::string& id,
                                                                bool enabled) {
  auto current = co_await schedule(user, id);
  if (!current) co_return std::move(current).error();
  std::optional<int64_t> next;
  if (enabled) {
    auto c = Cron::parse(current->cron);
    if (!c) co_return std::move(c).error();
    next = c->next_after(now_ms());
  }
  auto s = co_await repo_.set_schedule_enabled(s_.db, user.user_id, id, enabled, next);
  if (!s) co_return std::move(s).error();
  if (!*s) co_return Error::not_found("no such schedule");
  co_return std::move(**s);
}

asio::awaitable<Status> Service::delete_schedule(const Principal& user, const std::string& id) {
  auto gone = co_await repo_.delete_schedule(s_.db, user.user_id, id);
  if (!gone) co_return std::move(gone).error();
  if (!*gone) co_return Error::not_found("no such schedule");
  co_return Status{};
}

// ---- devices -------------------------------------------------------------------------------

asio::awaitable<Result<devices::DeviceInfo>> Service::device_of(const Principal& device) {
  auto d = co_await directory_->find(device.id);
  if (!d) co_return std::move(d).error();
  if (!*d) co_return no_device();
  co_return std::move(**d);
}

asio::awaitable<Result<std::vector<Task>>> Service::claim(const devices::DeviceInfo& d, int64_t max,
                                                          const std::vector<std::string>& types) {
  auto policies = co_await policies_for(d.user_id);
  if (!policies) co_return std::move(policies).error();
  bool limited = std::any_of(policies->begin(), policies->end(), [](const TypePolicy& p) { return p.rate_max > 0; });
  std::vector<Task> claimed;
  if (limited) {
    auto c = co_await claim_rate_limited(d, max, types);
    if (!c) co_return std::move(c).error();
    claimed = std::move(*c);
  } else {
    ClaimFilter f{d, types, {}, max};
    auto c = co_await repo_.claim(s_.db, f, terms(now_ms()));
    if (!c) co_return std::move(c).error();
    claimed = std::move(*c);
  }
  for (const auto& t : claimed) co_await publish("task.updated", t, "claimed");
  co_return claimed;
}

asio::awaitable<Result<std::vector<Task>>> Service::claim_rate_limited(const devices::DeviceInfo& d, int64_t max,
                                                                       const std::vector<std::string>& types) {
  int64_t now = now_ms();
  auto tx = co_await s_.db.begin();
  if (!tx) co_return std::move(tx).error();
  // The user's limited types, locked: rate-limited claims of one user take turns.
  auto windows = co_await repo_.lock_windows(**tx, d.user_id);
  if (!windows) co_return std::move(windows).error();
  std::map<std::string, int64_t> left, used;
  std::vector<std::string> exhausted;
  std::optional<int64_t> reopens;
  for (const auto& w : *windows) {
    bool fresh = now >= w.window_start + w.period_ms;
    left[w.type] = fresh ? w.rate_max : std::max<int64_t>(0, w.rate_max - w.window_count);
    if (left[w.type] == 0) {
      exhausted.push_back(w.type);
      int64_t at = w.window_start + w.period_ms;
      reopens = reopens ? std::min(*reopens, at) : at;
    }
  }
  ClaimFilter f{d, types, exhausted, std::min<int64_t>(max * 4, 4 * kMaxClaim)};
  auto cands = co_await repo_.candidates(**tx, f, now);
  if (!cands) co_return std::move(cands).error();
  std::vector<std::string> chosen;
  bool held_back = false;
  for (const auto& [id, type] : *cands) {
    if (static_cast<int64_t>(chosen.size()) >= max) break;
    if (auto it = left.find(type); it != left.end()) {
      if (it->second <= 0) {
        held_back = true;
        continue;
      }
      --it->second;
      ++used[type];
    }
    chosen.push_back(id);
  }
  std::vector<Task> claimed;
  if (!chosen.empty()) {
    auto leased = co_await repo_.lease_ids(**tx, chosen, d.id, terms(now));
    if (!leased) co_return std::move(leased).error();
    claimed = std::move(*leased);
  }
  for (const auto& w : *windows) {
    auto u = used.find(w.type);
    if (u == used.end()) continue;
    bool fresh = now >= w.window_start + w.period_ms;
    int64_t start = fresh ? now : w.window_start;
    int64_t count = (fresh ? 0 : w.window_count) + u->second;
    auto st = co_await repo_.set_window(**tx, d.user_id, w.type, start, count);
    if (!st) co_return std::move(st).error();
    if (count >= w.rate_max) {
      held_back = true;
      reopens = reopens ? std::min(*reopens, start + w.period_ms) : start + w.period_ms;
    }
  }
  auto committed = co_await (*tx)->commit();
  if (!committed) co_return std::move(committed).error();
  // Waiters held back by a limit are woken when its window reopens, not by polling.
  if ((held_back || !exhausted.empty()) && reopens) kick_later(d.user_id, *reopens);
  co_return claimed;
}

asio::awaitable<Result<Pending>> Service::pending(const Principal& device, PendingInput in) {
  auto d = co_await device_of(device);
  if (!d) co_return std::move(d).error();
  auto ex = co_await asio::this_coro::executor;
  Waiter waiter(wakeups_, d->user_id, d->id, ex);  // before the first look: no wake-up is missed
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(std::min(in.wait_s, opts_.max_wait_s));
  for (;;) {
    Pending out;
    if (wakeups_.departed_since(d->id, waiter.started())) co_return out;  // a poll its agent left behind
    if (in.client_gone && in.client_gone()) co_return out;                   // nobody to answer
    if (in.max > 0) {
      auto claimed = co_await claim(*d, std::min(in.max, kMaxClaim), in.types);
      if (!claimed) co_return std::move(claimed).error();
      out.tasks = std::move(*claimed);
    }
    if (!in.running.empty()) {
      auto still = co_await repo_.extend_leases(s_.db, d->id, in.running, terms(now_ms()));
      if (!still) co_return std::move(still).error();
      std::set<std::string> held(still->begin(), still->end());
      for (const auto& id : in.running)
        if (!held.count(id)) out.cancel.push_back(id);
      // Once told, the agent stops reporting them; stop asking about them within this poll.
      std::erase_if(in.running, [&](const std::string& id) { return !held.count(id); });
    }
    if (!out.tasks.empty() || !out.cancel.empty() || wakeups_.stopping() ||
        std::chrono::steady_clock::now() >= deadline)
      co_return out;
    co_await waiter.wait_until(deadline);
  }
}

// ---- other modules (notes.hpp) ---------------------------------------------------------------

asio::awaitable<Result<std::string>> Service::add_note(std::string task_id, std::string author, std::string text) {
  int64_t now = now_ms();
  std::string line = "[note from " + author + "] " + text;
  if (line.size() > kMaxLogChunk) line.resize(kMaxLogChunk);
  auto p = co_await repo_.reserve_log(s_.db, task_id, static_cast<int64_t>(line.size()), now);
  if (!p) co_return std::move(p).error();
  if (!*p) co_return Error::not_found("no such task");
  if ((*p)->log_bytes <= opts_.max_log_bytes) {
    auto st = co_await repo_.append_log(s_.db, task_id, (*p)->log_bytes, now, (*p)->attempts, line);
    if (!st) co_return std::move(st).error();
  }
  platform::DomainEvent e;
  e.type = "task.updated";
  e.user_id = (*p)->user_id;
  e.subject = task_id;
  e.data = js::object{{"id", task_id}, {"change", "note"}, {"log", line}};
  co_await s_.events.publish(std::move(e));
  co_return (*p)->user_id;
}

asio::awaitable<Result<std::string>> Service::create_for_device(std::string device_id, std::string type,
                                                                js::value payload) {
  auto dev = co_await directory_->find(device_id);
  if (!dev) co_return std::move(dev).error();
  if (!*dev) co_return Error::not_found("no such device");
  Principal owner;
  owner.id = owner.user_id = (*dev)->user_id;
  NewTask in;
  in.type = std::move(type);
  in.payload = std::move(payload);
  in.device_id = std::move(device_id);
  auto t = co_await create(owner, std::move(in));
  if (!t) co_return std::move(t).error();
  co_return t->id;
}

asio::awaitable<Result<js::object>> Service::progress(const Principal& device, const std::string& id, ProgressInput in) {
  int64_t now = now_ms();
  if (in.log.size() > kMaxLogChunk) in.log.resize(kMaxLogChunk);
  auto p = co_await repo_.progress(s_.db, id, device.id, in.attempt, in.progress, static_cast<int64_t>(in.log.size()),
                                   terms(now));
  if (!p) co_return std::move(p).error();
  if (!*p) {
    auto row = co_await repo_.find_row(s_.db, id, false);
    if (!row) co_return std::move(row).error();
    if (!*row || (*row)->task.user_id != device.user_id) co_return Error::not_found("no such task");
    co_return lease_lost();
  }
  bool kept = true;
  if (!in.log.empty()) {
    kept = (*p)->log_bytes <= opts_.max_log_bytes;
    if (kept) {
      auto st = co_await repo_.append_log(s_.db, id, (*p)->log_bytes, now, (*p)->attempts, in.log);
      if (!st) co_return std::move(st).error();
    }
  }
  platform::DomainEvent e;
  e.type = "task.updated";
  e.user_id = (*p)->user_id;
  e.subject = id;
  e.data = js::object{{"id", id}, {"status", "running"}, {"change", "progress"}, {"progress", (*p)->progress}};
  if (!in.log.empty() && kept) e.data["log"] = in.log;
  co_await s_.events.publish(std::move(e));
  co_return js::object{{"id", id},
                       {"status", "running"},
                       {"progress", (*p)->progress},
                       {"lease_expires_at", format_rfc3339(now + opts_.lease_ms)},
                       {"log_truncated", !kept}};
}

asio::awaitable<Result<Task>> Service::result(const Principal& device, const std::string& id, ResultInput in) {
  int64_t now = now_ms();
  std::string result_text = js::serialize(in.result);
  if (in.succeeded) {
    // The common case in one statement: the lease holder finishes a task nobody waits on.
    auto fast = co_await repo_.succeed_fast(s_.db, id, device.id, in.attempt, result_text, now);
    if (!fast) co_return std::move(fast).error();
    if (*fast) {
      co_await publish("task.completed", **fast);
      co_return std::move(**fast);
    }
  }
  auto tx = co_await s_.db.begin();
  if (!tx) co_return std::move(tx).error();
  auto row = co_await repo_.find_row(**tx, id, true);
  if (!row) co_return std::move(row).error();
  if (!*row || (*row)->task.user_id != device.user_id) co_return Error::not_found("no such task");
  const Task& cur = (*row)->task;
  bool holder = cur.status == "running" && cur.leased_by == device.id && (in.attempt < 0 || cur.attempts == in.attempt);
  if (!holder) {
    // The same result again (the agent did not hear our first answer): answer it again.
    int64_t attempt = in.attempt >= 0 ? in.attempt : cur.attempts;
    bool replay = !(*row)->result_lease.empty() && (*row)->result_lease == lease_of(device.id, attempt) &&
                  (in.succeeded ? cur.status == "succeeded" : cur.status != "succeeded");
    (void)co_await (*tx)->rollback();
    if (replay) co_return cur;
    co_return lease_lost();
  }
  std::string lease = lease_of(device.id, cur.attempts);
  std::optional<Task> done;
  std::vector<Task> cancelled;
  std::vector<std::string> wake;
  std::string event;
  if (in.succeeded) {
    auto t = co_await repo_.finish(**tx, id, "succeeded", result_text, std::nullopt, lease, now);
    if (!t) co_return std::move(t).error();
    done = std::move(**t);
    event = "task.completed";
    if ((*row)->has_dependents) {
      auto users = co_await repo_.release_dependents(**tx, id, now);
      if (!users) co_return std::move(users).error();
      wake = std::move(*users);
    }
  } else if (in.retry && cur.attempts < cur.max_attempts) {
    int64_t run_at = now + backoff_ms(cur.attempts);
    auto t = co_await repo_.requeue_after_failure(**tx, id, result_text, in.error, lease, run_at, now);
    if (!t) co_return std::move(t).error();
    done = std::move(**t);
    event = "task.updated";
  } else {
    auto t = co_await repo_.finish(**tx, id, "failed", result_text, in.error.value_or("failed"), lease, now);
    if (!t) co_return std::move(t).error();
    done = std::move(**t);
    event = "task.failed";
    if ((*row)->has_dependents) {
      auto c = co_await cascade_cancel(**tx, id, now);
      if (!c) co_return std::move(c).error();
      cancelled = std::move(*c);
    }
  }
  auto committed = co_await (*tx)->commit();
  if (!committed) co_return std::move(committed).error();
  std::string change = event == "task.updated" ? "retry_scheduled" : "";
  co_await publish(event, *done, std::move(change));
  for (const auto& c : cancelled) co_await publish("task.updated", c, "cancelled");
  std::set<std::string> users(wake.begin(), wake.end());
  for (const auto& u : users) kick_user(u);
  co_return std::move(*done);
}

asio::awaitable<Result<Task>> Service::release(const Principal& device, const std::string& id) {
  auto t = co_await repo_.release_one(s_.db, id, device.id, now_ms());
  if (!t) co_return std::move(t).error();
  if (!*t) co_return lease_lost();
  co_await publish("task.updated", **t, "released");
  kick_user((*t)->user_id);
  co_return std::move(**t);
}

asio::awaitable<Result<devices::HeartbeatTasks>> Service::on_heartbeat(const devices::DeviceInfo& d,
                                                                       std::vector<std::string> running) {
  devices::HeartbeatTasks out;
  auto n = co_await repo_.count_claimable(s_.db, d, 1000);
  if (!n) co_return std::move(n).error();
  out.pending = *n;
  if (!running.empty()) {
    auto still = co_await repo_.extend_leases(s_.db, d.id, running, terms(now_ms()));
    if (!still) co_return std::move(still).error();
    std::set<std::string> held(still->begin(), still->end());
    for (auto& id : running)
      if (!held.count(id)) out.cancel.push_back(std::move(id));
  }
  co_return out;
}

asio::awaitable<void> Service::on_device_gone(devices::DeviceInfo d, bool deleted) {
  int64_t now = now_ms();
  // Long-polls the agent abandoned (on any node) must not lease anything after this.
  wakeups_.depart(d.id);
  kick_goodbye(d.id);
  auto released = co_await repo_.release_device(s_.db, d.id, now);
  if (!released.ok()) {
    logger()->warn(log::fields({{"msg", "could not release a departed device's tasks; their leases will expire"},
                                {"device_id", d.id},
                                {"error", released.error().detail}}));
  } else {
    for (const auto& t : *released) co_await publish("task.updated", t, "released");
    if (!released->empty()) kick_user(d.user_id);
  }
  if (!deleted) co_return;
  auto orphans = co_await repo_.cancel_targeted(s_.db, d.id, now);
  if (!orphans.ok()) {
    logger()->warn(log::fields({{"msg", "could not cancel tasks of a deleted device"}, {"error", orphans.error().detail}}));
    co_return;
  }
  for (const auto& t : *orphans) co_await publish("task.updated", t, "cancelled");
}

// ---- background ----------------------------------------------------------------------------

asio::awaitable<Status> Service::expire_leases(int64_t now) {
  // A read first: the common answer is "nothing", and on SQLite a transaction takes the writer.
  auto probe = co_await repo_.expired(s_.db, now, 1);
  if (!probe) co_return std::move(probe).error();
  if (probe->empty()) co_return Status{};
  auto tx = co_await s_.db.begin();
  if (!tx) co_return std::move(tx).error();
  auto expired = co_await repo_.expired(**tx, now, 200);
  if (!expired) co_return std::move(expired).error();
  std::vector<std::pair<Task, bool>> changed;  // task, dead
  std::vector<Task> cancelled;
  for (const auto& e : *expired) {
    bool timed_out = e.timeout_ms > 0 && now >= e.started_at + e.timeout_ms;
    bool dead = e.attempts >= e.max_attempts;
    std::string why = timed_out ? "timed out after " + std::to_string(e.timeout_ms / 1000) + " s"
                                : "lease expired: the device stopped reporting";
    int64_t run_at = dead ? now : now + backoff_ms(e.attempts);
    auto t = co_await repo_.expire_one(**tx, e.id, dead ? "dead" : "queued", run_at, why, now);
    if (!t) co_return std::move(t).error();
    if (!*t) continue;
    if (dead && e.has_dependents) {
      auto c = co_await cascade_cancel(**tx, e.id, now);
      if (!c) co_return std::move(c).error();
      for (auto& x : *c) cancelled.push_back(std::move(x));
    }
    changed.emplace_back(std::move(**t), dead);
  }
  auto committed = co_await (*tx)->commit();
  if (!committed) co_return std::move(committed).error();
  for (const auto& [t, dead] : changed) {
    logger()->info(log::fields({{"msg", dead ? "task dead: lease expired on its last attempt" : "lease expired; task queued again"},
                                {"task_id", t.id},
                                {"attempts", std::to_string(t.attempts)}}));
    co_await publish(dead ? "task.failed" : "task.updated", t, dead ? "dead" : "lease_expired");
  }
  for (const auto& c : cancelled) co_await publish("task.updated", c, "cancelled");
  co_return Status{};
}

asio::awaitable<Status> Service::promote_due(int64_t now) {
  auto next = co_await repo_.next_delayed(s_.db);
  if (!next) co_return std::move(next).error();
  if (!*next || **next > now) co_return Status{};
  auto users = co_await repo_.promote(s_.db, now, 1000);
  if (!users) co_return std::move(users).error();
  std::set<std::string> distinct(users->begin(), users->end());
  for (const auto& u : distinct) kick_user(u);
  co_return Status{};
}

asio::awaitable<Status> Service::run_schedules(int64_t now) {
  auto next = co_await repo_.next_schedule(s_.db);
  if (!next) co_return std::move(next).error();
  if (!*next || **next > now) co_return Status{};
  auto tx = co_await s_.db.begin();
  if (!tx) co_return std::move(tx).error();
  auto due = co_await repo_.due_schedules(**tx, now, 50);
  if (!due) co_return std::move(due).error();
  std::vector<Task> created;
  for (const auto& s : *due) {
    Task t;
    t.id = new_id();
    t.user_id = s.user_id;
    t.type = s.task.type;
    t.payload = s.task.payload;
    t.status = "queued";
    t.priority = s.task.priority;
    t.max_attempts = s.task.max_attempts;
    t.device_id = s.task.device_id;
    t.labels = s.task.labels;
    t.timeout_ms = s.task.timeout_ms;
    t.run_at = now;
    t.created_at = t.updated_at = now;
    t.schedule_id = s.id;
    auto st = co_await repo_.insert(**tx, t, true);
    if (!st) co_return std::move(st).error();
    // One run per due time even after downtime: the next run is computed from now.
    std::optional<int64_t> next_run;
    if (auto c = Cron::parse(s.cron); c.ok()) next_run = c->next_after(now);
    auto ran = co_await repo_.schedule_ran(**tx, s.id, now, next_run, t.id);
    if (!ran) co_return std::move(ran).error();
    created.push_back(std::move(t));
  }
  auto committed = co_await (*tx)->commit();
  if (!committed) co_return std::move(committed).error();
  std::set<std::string> users;
  for (const auto& t : created) {
    co_await publish("task.created", t, "scheduled");
    users.insert(t.user_id);
  }
  for (const auto& u : users) kick_user(u);
  co_return Status{};
}

asio::awaitable<void> Service::tick_once(bool with_retention) {
  int64_t now = now_ms();
  auto warn = [](const char* what, const Status& st) {
    if (!st.ok()) logger()->warn(log::fields({{"msg", what}, {"error", st.error().detail}}));
  };
  warn("promoting delayed tasks failed", co_await promote_due(now));
  warn("expiring leases failed", co_await expire_leases(now));
  warn("running schedules failed", co_await run_schedules(now));
  if (with_retention && opts_.retention_ms > 0) {
    for (int i = 0; i < 20; ++i) {
      auto tx = co_await s_.db.begin();
      if (!tx) {
        warn("retention failed", std::move(tx).error());
        break;
      }
      auto n = co_await repo_.purge_finished(**tx, now - opts_.retention_ms, 500);
      if (!n) {
        warn("retention failed", std::move(n).error());
        break;
      }
      auto c = co_await (*tx)->commit();
      if (!c) {
        warn("retention failed", c);
        break;
      }
      if (*n < 500) break;
    }
  }
}

asio::awaitable<void> Service::tick_loop() {
  auto self = shared_from_this();
  auto stopped = stopped_;
  auto timer = timer_;
  int64_t last_retention = 0;
  while (!*stopped) {
    bool retention = mono_ms() - last_retention >= 60'000;
    if (retention) last_retention = mono_ms();
    co_await tick_once(retention);
    timer->expires_after(std::chrono::milliseconds(opts_.tick_ms));
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

void Service::start() {
  auto weak = weak_from_this();
  listener_ = s_.db.listen(
      kNotifyChannel, s_.background.get_executor(),
      [weak](std::string_view payload) {
        if (auto self = weak.lock()) self->wakeups_.signal(payload);
      },
      [weak] {
        if (auto self = weak.lock()) self->wakeups_.wake_all();  // we may have missed some
      });
  types_sub_ = s_.pubsub.subscribe(kTypesChannel, s_.background.get_executor(),
                                   [weak](std::string_view, std::string_view user_id) {
                                     if (auto self = weak.lock()) self->forget_policies(std::string(user_id));
                                   });
  timer_ = std::make_shared<asio::steady_timer>(s_.background);
  asio::co_spawn(s_.background, tick_loop(), asio::detached);
}

void Service::drain() { wakeups_.stop(); }

void Service::stop() {
  wakeups_.stop();
  *stopped_ = true;
  if (timer_) asio::post(s_.background, [t = timer_] { t->cancel(); });
  listener_.reset();
  types_sub_.reset();
}

}  // namespace harmar::tasks
