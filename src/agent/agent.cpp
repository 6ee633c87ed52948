#include "agent/agent.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "agent/client.hpp"
#include "agent/runner.hpp"
#include "core/clock.hpp"
#include "core/log.hpp"
#include "core/version.hpp"

namespace harmar::agent {

namespace js = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

std::shared_ptr<spdlog::logger> logger() { return log::get("agent"); }

js::value parse_json(const std::string& s) {
  boost::system::error_code ec;
  js::value v = js::parse(s, ec);
  return ec ? js::value(nullptr) : v;
}

std::string str(const js::object& o, std::string_view k) {
  auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

int64_t integer(const js::object& o, std::string_view k, int64_t fallback = 0) {
  auto* v = o.if_contains(k);
  return v && v->is_int64() ? v->get_int64() : fallback;
}

std::string error_code_of(const HttpResult& r) {
  auto v = parse_json(r.body);
  return v.is_object() ? str(v.get_object(), "code") : std::string();
}

// Exponential backoff with jitter, for reconnecting.
class Backoff {
 public:
  std::chrono::milliseconds next() {
    auto d = current_;
    current_ = std::min(current_ * 2, std::chrono::milliseconds(30'000));
    std::uniform_int_distribution<int64_t> jitter(0, d.count() / 2);
    return d / 2 + std::chrono::milliseconds(jitter(rng_));
  }
  void reset() { current_ = std::chrono::milliseconds(500); }

 private:
  std::chrono::milliseconds current_{500};
  std::mt19937_64 rng_{std::random_device{}()};
};

struct State {
  std::string server, device_id, api_key;
  js::object config;
  int64_t config_version = -1;
};

std::optional<State> load_state(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  auto v = parse_json(ss.str());
  if (!v.is_object()) return std::nullopt;
  const auto& o = v.get_object();
  State s{str(o, "server"), str(o, "device_id"), str(o, "api_key"), {}, integer(o, "config_version", -1)};
  if (auto* c = o.if_contains("config"); c && c->is_object()) s.config = c->get_object();
  return s;
}

bool save_state(const std::string& path, const State& s) {
  std::string tmp = path + ".tmp";
  mode_t old = umask(077);  // the api key is a secret: owner-only
  bool ok = false;
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << js::serialize(js::object{{"server", s.server},
                                    {"device_id", s.device_id},
                                    {"api_key", s.api_key},
                                    {"config", s.config},
                                    {"config_version", s.config_version}})
        << "\n";
    ok = static_cast<bool>(out);
  }
  umask(old);
  return ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}

std::string hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

struct RunningTask {
  std::string id;
  int64_t attempt = 0;
  std::atomic<bool> cancel{false};
  std::atomic<bool> release{false};  // at shutdown: give it back instead of reporting
  std::mutex mu;
  std::string pending_log;
  Clock::time_point next_keepalive;
  std::chrono::milliseconds keepalive{20'000};
};

class Agent {
 public:
  explicit Agent(Options o) : o_(std::move(o)), runners_(default_runners()) {
    if (!o_.types.empty())
      std::erase_if(runners_, [&](const auto& kv) {
        return std::find(o_.types.begin(), o_.types.end(), kv.first) == o_.types.end();
      });
  }

  bool idle() {
    std::lock_guard lock(tasks_mu_);
    return running_.empty();
  }

  int run(const sigset_t& signals) {
    if (!credentials()) return stopping_ ? 0 : 1;
    logger()->info(log::fields({{"msg", "agent running"}, {"device_id", state_.device_id}, {"server", o_.server},
                                {"concurrency", std::to_string(o_.concurrency)}}));
    std::thread heartbeat([this] { heartbeat_loop(); });
    std::thread poll([this] { poll_loop(); });
    std::thread reporter([this] { report_loop(); });
    std::thread signal_waiter([this, signals] {
      int sig = 0;
      sigwait(&signals, &sig);
      logger()->info(log::fields({{"msg", "stopping"}, {"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}}));
      stop();
    });
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_.load(); });
    }
    poll.join();
    shutdown_tasks();
    heartbeat.join();
    reporter.join();
    goodbye();
    // The signal thread is still in sigwait when we stop for another reason (auth lost).
    if (!signalled_) pthread_kill(signal_waiter.native_handle(), SIGTERM);
    signal_waiter.join();
    return fatal_ ? 1 : 0;
  }

 private:
  void stop() {
    {
      std::lock_guard lock(mu_);
      signalled_ = true;
      stopping_ = true;
      abort_poll_ = true;
    }
    cv_.notify_all();
  }

  void fail(const std::string& why) {
    logger()->error(log::fields({{"msg", why}}));
    fatal_ = true;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      abort_poll_ = true;
    }
    cv_.notify_all();
  }

  // Sleeps up to `d`; false if the agent is stopping.
  bool sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [this] { return stopping_.load(); });
  }

  std::unique_ptr<HttpClient> client() {
    std::lock_guard lock(clients_mu_);
    if (!clients_.empty()) {
      auto c = std::move(clients_.back());
      clients_.pop_back();
      c->set_bearer(state_.api_key);
      return c;
    }
    return std::make_unique<HttpClient>(o_.server, state_.api_key);
  }
  void give_back(std::unique_ptr<HttpClient> c) {
    std::lock_guard lock(clients_mu_);
    if (clients_.size() < 16) clients_.push_back(std::move(c));
  }

  // The api key: from the state file, --api-key, or by registering with --token.
  bool credentials() {
    auto st = load_state(o_.state_file);
    if (st && !st->api_key.empty() && (st->server.empty() || st->server == o_.server)) {
      state_ = std::move(*st);
      return true;
    }
    if (!o_.api_key.empty()) {
      state_.server = o_.server;
      state_.api_key = o_.api_key;
      save_state(o_.state_file, state_);
      return true;
    }
    if (o_.token.empty()) {
      logger()->error(log::fields({{"msg", "no device key: pass --token (to register) or --api-key"}}));
      return false;
    }
    return register_device();
  }

  bool register_device() {
    struct utsname u {};
    uname(&u);
    js::object labels;
    for (const auto& [k, v] : o_.labels) labels[k] = v;
    std::string body = js::serialize(js::object{{"name", o_.name.empty() ? hostname() : o_.name},
                                                {"hostname", hostname()},
                                                {"os", std::string(u.sysname)},
                                                {"arch", std::string(u.machine)},
                                                {"version", build::kVersion},
                                                {"labels", std::move(labels)}});
    HttpClient c(o_.server, o_.token);
    Backoff backoff;
    for (;;) {
      auto r = c.request("POST", "/v1/daemon/register", body, 15'000, &stopping_);
      if (r.status == 201) {
        auto v = parse_json(r.body);
        if (!v.is_object()) return false;
        state_.server = o_.server;
        state_.api_key = str(v.get_object(), "api_key");
        if (auto* d = v.get_object().if_contains("device"); d && d->is_object()) state_.device_id = str(d->get_object(), "id");
        if (!save_state(o_.state_file, state_))
          logger()->warn(log::fields({{"msg", "cannot write the state file; the key lives only in memory"},
                                      {"path", o_.state_file}}));
        logger()->info(log::fields({{"msg", "registered"}, {"device_id", state_.device_id}}));
        return true;
      }
      if (r.status == 401 || r.status == 403 || r.status == 422 || r.status == 409) {
        logger()->error(log::fields({{"msg", "registration refused"}, {"status", std::to_string(r.status)},
                                     {"body", r.body.substr(0, 300)}}));
        return false;
      }
      auto d = backoff.next();
      logger()->warn(log::fields({{"msg", "cannot register yet; retrying"}, {"error", r.status ? std::to_string(r.status) : r.error},
                                  {"retry_ms", std::to_string(d.count())}}));
      if (!sleep_for(d)) return false;
    }
  }

  // The key stopped working (the device was deleted): register again if we can, else stop.
  void key_rejected() {
    std::lock_guard lock(auth_mu_);
    if (o_.token.empty()) {
      fail("the server no longer accepts this device's key (deleted?); pass --token to register again");
      return;
    }
    logger()->warn(log::fields({{"msg", "device key rejected; registering again"}}));
    std::remove(o_.state_file.c_str());
    if (!register_device()) fail("could not register again");
  }

  std::vector<std::string> running_ids() {
    std::lock_guard lock(tasks_mu_);
    std::vector<std::string> ids;
    for (const auto& [id, t] : running_) ids.push_back(id);
    return ids;
  }

  void cancel(const js::array& ids) {
    std::lock_guard lock(tasks_mu_);
    for (const auto& v : ids) {
      if (!v.is_string()) continue;
      auto it = running_.find(std::string(v.get_string()));
      if (it == running_.end()) continue;
      logger()->info(log::fields({{"msg", "task cancelled by the server"}, {"task_id", it->first}}));
      it->second->cancel = true;
    }
  }

  void heartbeat_loop() {
    auto c = std::make_unique<HttpClient>(o_.server, state_.api_key);
    Backoff backoff;
    int64_t interval_s = o_.heartbeat_s > 0 ? o_.heartbeat_s : 30;
    while (!stopping_) {
      c->set_bearer(state_.api_key);
      auto ids = running_ids();
      js::array running;
      for (auto& id : ids) running.emplace_back(id);
      double load[1] = {0};
      getloadavg(load, 1);
      std::string body = js::serialize(js::object{
          {"status", ids.empty() ? "idle" : "busy"},
          {"metrics", js::object{{"running", ids.size()}, {"concurrency", o_.concurrency}, {"load1", load[0]}}},
          {"running", std::move(running)}});
      auto r = c->request("POST", "/v1/daemon/heartbeat", body, 15'000, &stopping_);
      std::chrono::milliseconds next = std::chrono::seconds(interval_s);
      if (r.ok()) {
        backoff.reset();
        auto v = parse_json(r.body);
        if (v.is_object()) {
          const auto& o = v.get_object();
          if (auto* cl = o.if_contains("cancel"); cl && cl->is_array()) cancel(cl->get_array());
          if (o_.heartbeat_s <= 0) interval_s = std::max<int64_t>(1, integer(o, "heartbeat_interval_s", 30));
          next = std::chrono::seconds(interval_s);
          int64_t version = integer(o, "config_version", -1);
          if (version != state_.config_version) fetch_config(*c);
        }
      } else if (r.status == 401 && error_code_of(r) == "invalid_api_key") {
        key_rejected();
        continue;
      } else if (!stopping_) {
        next = std::min(backoff.next(), next);
        logger()->warn(log::fields({{"msg", "heartbeat failed"}, {"error", r.status ? std::to_string(r.status) : r.error}}));
      }
      if (!sleep_for(next)) break;
    }
  }

  void fetch_config(HttpClient& c) {
    auto r = c.request("GET", "/v1/daemon/config", "", 15'000, &stopping_);
    if (!r.ok()) return;
    auto v = parse_json(r.body);
    if (!v.is_object()) return;
    const auto& o = v.get_object();
    if (auto* cfg = o.if_contains("config"); cfg && cfg->is_object()) state_.config = cfg->get_object();
    state_.config_version = integer(o, "config_version", state_.config_version);
    save_state(o_.state_file, state_);
    logger()->info(log::fields({{"msg", "configuration updated"}, {"config_version", std::to_string(state_.config_version)}}));
  }

  void poll_loop() {
    HttpClient c(o_.server, state_.api_key);
    Backoff backoff;
    js::array types;
    for (const auto& [t, r] : runners_) types.emplace_back(t);
    while (!stopping_) {
      c.set_bearer(state_.api_key);
      auto ids = running_ids();
      int64_t free = std::max<int64_t>(0, o_.concurrency - static_cast<int64_t>(ids.size()));
      js::array running;
      for (auto& id : ids) running.emplace_back(id);
      std::string body = js::serialize(
          js::object{{"max", free}, {"wait_s", o_.wait_s}, {"types", types}, {"running", std::move(running)}});
      // Only a poll that cannot claim (max 0: it waits for cancels) is cut short when a slot frees
      // up. One that may claim runs to its answer: abandoned, it could still lease tasks for us
      // that nobody would hear about until the lease ran out.
      abort_poll_ = false;
      const std::atomic<bool>* abort = free == 0 ? &abort_poll_ : &stopping_;
      auto r = c.request("POST", "/v1/daemon/tasks/pending", body, (o_.wait_s + 15) * 1000L, abort);
      if (r.aborted) continue;  // a slot freed up, or we are stopping
      if (r.status == 401 && error_code_of(r) == "invalid_api_key") {
        key_rejected();
        continue;
      }
      if (!r.ok()) {
        auto d = backoff.next();
        logger()->warn(log::fields({{"msg", "cannot reach the server; retrying"},
                                    {"error", r.status ? std::to_string(r.status) + " " + r.body.substr(0, 200) : r.error},
                                    {"retry_ms", std::to_string(d.count())}}));
        if (!sleep_for(d)) break;
        continue;
      }
      backoff.reset();
      auto v = parse_json(r.body);
      if (!v.is_object()) continue;
      const auto& o = v.get_object();
      if (auto* cl = o.if_contains("cancel"); cl && cl->is_array()) cancel(cl->get_array());
      if (auto* ts = o.if_contains("tasks"); ts && ts->is_array())
        for (const auto& t : ts->get_array())
          if (t.is_object()) start_task(t.get_object());
    }
  }

  void start_task(const js::object& t) {
    auto rt = std::make_shared<RunningTask>();
    rt->id = str(t, "id");
    rt->attempt = integer(t, "attempts", -1);
    // Keep the lease alive at a third of its length (the server tells it in lease_expires_at).
    rt->keepalive = std::chrono::milliseconds(20'000);
    if (auto expires = parse_rfc3339(str(t, "lease_expires_at"))) {
      // The claim just happened, so "now + lease" is what it says.
      int64_t lease_ms = std::max<int64_t>(*expires - now_ms(), 600);
      rt->keepalive = std::chrono::milliseconds(std::max<int64_t>(lease_ms / 3, 200));
    }
    rt->next_keepalive = Clock::now() + rt->keepalive;
    {
      std::lock_guard lock(tasks_mu_);
      running_[rt->id] = rt;
    }
    js::object task = t;
    std::thread([this, rt, task = std::move(task)]() mutable { execute(rt, std::move(task)); }).detach();
  }

  void execute(std::shared_ptr<RunningTask> rt, js::object t) {
    TaskContext ctx;
    ctx.id = rt->id;
    ctx.type = str(t, "type");
    if (auto* p = t.if_contains("payload")) ctx.payload = *p;
    ctx.timeout_s = integer(t, "timeout_s", 0);
    ctx.cancelled = &rt->cancel;
    ctx.max_output = o_.max_output;
    ctx.log = [rt](std::string_view chunk) {
      std::lock_guard lock(rt->mu);
      if (rt->pending_log.size() < (4u << 20)) rt->pending_log.append(chunk);
    };
    logger()->info(log::fields({{"msg", "task started"}, {"task_id", rt->id}, {"type", ctx.type},
                                {"attempt", std::to_string(rt->attempt)}}));
    Outcome out;
    auto runner = runners_.find(ctx.type);
    if (runner == runners_.end()) {
      out.succeeded = false;
      out.error = "this agent does not run tasks of type " + ctx.type;
      out.retry = false;
    } else {
      try {
        out = runner->second->run(ctx);
      } catch (const std::exception& e) {
        out.succeeded = false;
        out.error = std::string("the runner failed: ") + e.what();
      }
    }
    flush_log(*rt);
    if (rt->release) {
      give_up(*rt);
    } else {
      report(*rt, out);
    }
    {
      std::lock_guard lock(tasks_mu_);
      running_.erase(rt->id);
    }
    abort_poll_ = true;  // a slot is free: ask for more work now
    cv_.notify_all();
  }

  void flush_log(RunningTask& rt) {
    std::string chunk;
    {
      std::lock_guard lock(rt.mu);
      chunk.swap(rt.pending_log);
    }
    bool keepalive_due = Clock::now() >= rt.next_keepalive;
    if (chunk.empty() && !keepalive_due) return;
    rt.next_keepalive = Clock::now() + rt.keepalive;
    std::string body = js::serialize(js::object{{"log", chunk}, {"attempt", rt.attempt}});
    auto c = client();
    auto r = c->request("POST", "/v1/daemon/tasks/" + rt.id + "/progress", body, 15'000, nullptr);
    give_back(std::move(c));
    if (r.status == 409 || r.status == 404) {
      logger()->warn(log::fields({{"msg", "lease lost; stopping the task"}, {"task_id", rt.id}}));
      rt.cancel = true;
    }
  }

  // Streams logs and keeps leases alive for every running task.
  void report_loop() {
    while (sleep_for(std::chrono::milliseconds(250))) {
      std::vector<std::shared_ptr<RunningTask>> tasks;
      {
        std::lock_guard lock(tasks_mu_);
        for (auto& [id, t] : running_) tasks.push_back(t);
      }
      for (auto& t : tasks) {
        bool has_log;
        {
          std::lock_guard lock(t->mu);
          has_log = !t->pending_log.empty();
        }
        if (has_log || Clock::now() >= t->next_keepalive) flush_log(*t);
      }
    }
  }

  void report(RunningTask& rt, const Outcome& out) {
    js::object body{{"status", out.succeeded ? "succeeded" : "failed"}, {"result", out.result}, {"attempt", rt.attempt}};
    if (!out.succeeded) {
      body["error"] = out.error.substr(0, 4000);
      if (!out.retry) body["retry"] = false;
    }
    std::string text = js::serialize(body);
    Backoff backoff;
    auto deadline = Clock::now() + std::chrono::minutes(5);
    for (;;) {
      auto c = client();
      auto r = c->request("POST", "/v1/daemon/tasks/" + rt.id + "/result", text, 30'000, nullptr);
      give_back(std::move(c));
      if (r.ok()) {
        logger()->info(log::fields({{"msg", out.succeeded ? "task succeeded" : "task failed"}, {"task_id", rt.id},
                                    {"error", out.error}}));
        return;
      }
      if (r.status == 409 || r.status == 404 || r.status == 422) {
        logger()->warn(log::fields({{"msg", "result refused"}, {"task_id", rt.id}, {"status", std::to_string(r.status)},
                                    {"body", r.body.substr(0, 300)}}));
        return;
      }
      // The server is away: keep the result until it is back (its lease may expire meanwhile:
      // then the server answers 409 and the task runs again elsewhere, never twice to completion).
      if (Clock::now() >= deadline || (stopping_ && shutdown_deadline_passed())) {
        logger()->error(log::fields({{"msg", "giving up reporting a result"}, {"task_id", rt.id}}));
        return;
      }
      auto d = backoff.next();
      std::this_thread::sleep_for(std::min(d, std::chrono::milliseconds(5000)));
    }
  }

  void give_up(RunningTask& rt) {
    auto c = client();
    auto r = c->request("POST", "/v1/daemon/tasks/" + rt.id + "/release", "{}", 10'000, nullptr);
    give_back(std::move(c));
    logger()->info(log::fields({{"msg", "task released"}, {"task_id", rt.id}, {"status", std::to_string(r.status)}}));
  }

  bool shutdown_deadline_passed() { return Clock::now() >= shutdown_deadline_; }

  void shutdown_tasks() {
    shutdown_deadline_ = Clock::now() + std::chrono::seconds(o_.grace_s) + std::chrono::seconds(10);
    auto grace_end = Clock::now() + std::chrono::seconds(o_.grace_s);
    auto empty = [this] {
      std::lock_guard lock(tasks_mu_);
      return running_.empty();
    };
    while (!empty() && Clock::now() < grace_end) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (empty()) return;
    {
      std::lock_guard lock(tasks_mu_);
      for (auto& [id, t] : running_) {
        logger()->info(log::fields({{"msg", "grace period over; stopping and releasing the task"}, {"task_id", id}}));
        t->release = true;
        t->cancel = true;
      }
    }
    auto hard_end = Clock::now() + std::chrono::seconds(10);
    while (!empty() && Clock::now() < hard_end) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  void goodbye() {
    if (fatal_) return;
    HttpClient c(o_.server, state_.api_key);
    auto r = c.request("POST", "/v1/daemon/offline", "", 5'000, nullptr);
    logger()->info(log::fields({{"msg", "said goodbye"}, {"status", std::to_string(r.status)}}));
  }

  Options o_;
  Runners runners_;
  State state_;
  std::atomic<bool> stopping_{false}, abort_poll_{false}, fatal_{false}, signalled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::mutex auth_mu_;
  std::mutex tasks_mu_;
  std::map<std::string, std::shared_ptr<RunningTask>> running_;
  std::mutex clients_mu_;
  std::vector<std::unique_ptr<HttpClient>> clients_;
  Clock::time_point shutdown_deadline_ = Clock::time_point::max();
};

}  // namespace

int run(const Options& opts) {
  if (opts.server.empty() || !(opts.server.starts_with("http://") || opts.server.starts_with("https://"))) {
    std::fprintf(stderr, "harmar agent: --server must be an http:// or https:// URL\n");
    return 2;
  }
  if (opts.concurrency < 1 || opts.concurrency > 256 || opts.wait_s < 0 || opts.wait_s > 60) {
    std::fprintf(stderr, "harmar agent: --concurrency is 1..256 and --wait 0..60\n");
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // every thread from here on: sigwait takes them
  signal(SIGPIPE, SIG_IGN);
  log::init({"json", opts.log_level, {}});
  curl_global_init(CURL_GLOBAL_DEFAULT);
  auto* agent = new Agent(opts);
  int rc = agent->run(signals);
  // Task threads are detached and use the Agent: if one is somehow still finishing (a process
  // that ignored even SIGKILL's pipe close), the process exits around it instead of freeing it.
  if (agent->idle()) {
    delete agent;
    curl_global_cleanup();
  }
  logger()->info(log::fields({{"msg", "agent stopped"}}));
  logger()->flush();
  return rc;
}

}  // namespace harmar::agent
