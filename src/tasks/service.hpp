#pragma once
// The queue's rules (shared/API.md "Tasks"): a task is never lost and never completed twice.
//
//  - Claim = lease: one statement moves eligible tasks to `running`, sets leased_by, a lease
//    expiry and attempts + 1 (PostgreSQL: FOR UPDATE SKIP LOCKED, so claimers never block each
//    other or take the same row). A device keeps its lease alive with progress and heartbeats.
//  - A result is accepted only from the lease holder (device and attempt); otherwise 409
//    `lease_lost`. A repeated result for the lease that was accepted answers the task again.
//  - A lease that runs out (agent killed, network gone, task past its timeout) returns the task
//    to `queued` with exponential backoff and jitter, or `dead` after max_attempts.
//  - Long-polls register a waiter, claim, and sleep until a NOTIFY for their user or device.
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/principal.hpp"
#include "core/result.hpp"
#include "devices/devices.hpp"
#include "platform/module.hpp"
#include "tasks/model.hpp"
#include "tasks/notes.hpp"
#include "tasks/repo.hpp"
#include "tasks/tasks.hpp"
#include "tasks/wakeups.hpp"

namespace harmar::tasks {

struct Options {
  int64_t lease_ms = 60'000;           // a claim or progress holds the task this long
  int64_t grace_ms = 30'000;           // past a task's timeout_s before the server takes it back
  int64_t tick_ms = 500;               // promoter, lease expiry and cron resolution
  int64_t backoff_base_ms = 1'000;     // first retry delay; doubles per attempt
  int64_t backoff_max_ms = 3'600'000;  // the longest retry delay
  int64_t retention_ms = 7 * 86'400'000LL;  // finished tasks are deleted after this; 0 keeps them
  int64_t max_payload_bytes = 256 * 1024;
  int64_t max_log_bytes = 1 << 20;     // per task
  int64_t max_wait_s = 60;

  static Options from(const config::Config& c);
};

struct PendingInput {
  int64_t max = 1;
  int64_t wait_s = 0;
  std::vector<std::string> types;    // what the agent can run; empty: anything
  std::vector<std::string> running;  // what it runs now: leases extended, lost ones returned in `cancel`
  // Asked before each claim: true once the agent has hung up (killed mid-poll), so its poll
  // leases nothing that would wait out a lease on a dead machine.
  std::function<bool()> client_gone;
};

struct Pending {
  std::vector<Task> tasks;
  std::vector<std::string> cancel;
};

struct ResultInput {
  bool succeeded = true;
  boost::json::value result;
  std::optional<std::string> error;
  int64_t attempt = -1;  // the lease's attempt number, if the agent says it
  bool retry = true;     // false: a failure is final whatever attempts are left
};

struct ProgressInput {
  std::optional<int64_t> progress;
  std::string log;
  int64_t attempt = -1;
};

class Service final : public devices::TaskHooks, public Submitter, public TaskNotes,
                      public std::enable_shared_from_this<Service> {
 public:
  static constexpr const char* kNotifyChannel = "harmar_tasks";
  static constexpr const char* kTypesChannel = "tasks.types";

  Service(platform::Services& s, Options o, std::shared_ptr<devices::Directory> directory);

  // Users.
  asio::awaitable<Result<Task>> create(const Principal& user, NewTask in);
  asio::awaitable<Result<Task>> get(const Principal& user, const std::string& id);
  asio::awaitable<Result<std::vector<Task>>> list(const Principal& user, Repo::ListFilter f);
  asio::awaitable<Result<Task>> cancel(const Principal& user, const std::string& id);
  asio::awaitable<Result<Task>> retry(const Principal& user, const std::string& id);
  asio::awaitable<Result<std::vector<LogLine>>> logs(const Principal& user, const std::string& id, int64_t after, int limit);

  asio::awaitable<Result<boost::json::array>> types(const Principal& user);
  // nullopt leaves a setting as it is; rate_max 0 removes the limit.
  asio::awaitable<Result<TypePolicy>> set_type(const Principal& user, const std::string& type, std::optional<bool> paused,
                                               std::optional<std::pair<int64_t, int64_t>> rate);

  asio::awaitable<Result<Schedule>> create_schedule(const Principal& user, std::string name, std::string cron,
                                                    NewTask tmpl, bool enabled);
  asio::awaitable<Result<std::vector<Schedule>>> schedules(const Principal& user, const std::optional<std::string>& after,
                                                           int limit);
  asio::awaitable<Result<Schedule>> schedule(const Principal& user, const std::string& id);
  asio::awaitable<Result<Schedule>> set_schedule_enabled(const Principal& user, const std::string& id, bool enabled);
  asio::awaitable<Status> delete_schedule(const Principal& user, const std::string& id);

  // Devices.
  asio::awaitable<Result<Pending>> pending(const Principal& device, PendingInput in);
  asio::awaitable<Result<boost::json::object>> progress(const Principal& device, const std::string& id, ProgressInput in);
  asio::awaitable<Result<Task>> result(const Principal& device, const std::string& id, ResultInput in);
  // The device gives one task back (shutting down): queued again, the attempt not counted.
  asio::awaitable<Result<Task>> release(const Principal& device, const std::string& id);

  // Submitter
  asio::awaitable<Result<Submitted>> submit(const Principal& user, std::string type, boost::json::object payload,
                                            std::string device_id) override;

  // TaskNotes (notes.hpp)
  asio::awaitable<Result<std::string>> add_note(std::string task_id, std::string author, std::string text) override;
  asio::awaitable<Result<std::string>> create_for_device(std::string device_id, std::string type,
                                                         boost::json::value payload) override;

  // devices::TaskHooks
  asio::awaitable<Result<devices::HeartbeatTasks>> on_heartbeat(const devices::DeviceInfo& d,
                                                                std::vector<std::string> running) override;
  asio::awaitable<void> on_device_gone(devices::DeviceInfo d, bool deleted) override;

  // One pass of the background work: promote due tasks, expire leases, run due schedules, and
  // (every minute) purge finished tasks past retention.
  asio::awaitable<void> tick_once(bool with_retention);
  void start();
  // Wakes every long-poll so they answer now (shutdown).
  void drain();
  void stop();

  Wakeups& wakeups() { return wakeups_; }
  const Options& options() const { return opts_; }
  // The delay before retry number `attempt` (1-based): base * 2^(attempt-1), capped, with jitter.
  int64_t backoff_ms(int64_t attempt) const;

 private:
  asio::awaitable<Result<std::vector<Task>>> claim(const devices::DeviceInfo& d, int64_t max,
                                                   const std::vector<std::string>& types);
  asio::awaitable<Result<std::vector<Task>>> claim_rate_limited(const devices::DeviceInfo& d, int64_t max,
                                                                const std::vector<std::string>& types);
  asio::awaitable<Result<std::vector<TypePolicy>>> policies_for(const std::string& user_id);
  void forget_policies(const std::string& user_id);
  asio::awaitable<Result<devices::DeviceInfo>> device_of(const Principal& device);
  asio::awaitable<Result<std::vector<Task>>> cascade_cancel(store::Querier& q, const std::string& root, int64_t now);
  asio::awaitable<Status> expire_leases(int64_t now);
  asio::awaitable<Status> promote_due(int64_t now);
  asio::awaitable<Status> run_schedules(int64_t now);
  asio::awaitable<void> tick_loop();
  asio::awaitable<void> publish(std::string type, const Task& t, std::string change = {});
  LeaseTerms terms(int64_t now) const { return {now, opts_.lease_ms, opts_.grace_ms}; }

  // Cross-node wake-ups, coalesced: at most one NOTIFY per payload in flight.
  void kick(std::string payload);
  void kick_user(const std::string& user_id) { kick("u:" + user_id); }
  void kick_device(const std::string& device_id) { kick("d:" + device_id); }
  void kick_goodbye(const std::string& device_id) { kick("g:" + device_id); }
  void kick_later(const std::string& user_id, int64_t at_ms);
  asio::awaitable<void> send_kicks(std::string payload);

  platform::Services& s_;
  Options opts_;
  Repo repo_;
  Wakeups wakeups_;
  std::shared_ptr<devices::Directory> directory_;

  std::mutex mu_;
  enum class Kick { InFlight, Again };
  std::unordered_map<std::string, Kick> kicks_;
  struct CachedPolicies {
    std::vector<TypePolicy> policies;
    int64_t expires_mono = 0;
  };
  std::unordered_map<std::string, CachedPolicies> policies_;

  std::unique_ptr<store::Listener> listener_;
  std::unique_ptr<store::Subscription> types_sub_;
  std::shared_ptr<asio::steady_timer> timer_;
  std::shared_ptr<bool> stopped_ = std::make_shared<bool>(false);
};

}  // namespace harmar::tasks
