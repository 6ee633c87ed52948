#pragma once
// The queue's SQL. Statements are built once per backend (the claim differs: SKIP LOCKED and
// jsonb containment on PostgreSQL, json_each on SQLite) and always parameterised.
#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "devices/devices.hpp"
#include "store/sql.hpp"
#include "tasks/model.hpp"

namespace harmar::tasks {

namespace asio = boost::asio;
using store::Querier;

std::vector<store::Migration> migrations();

// Where a claim or a lease extension stands.
struct LeaseTerms {
  int64_t now = 0;
  int64_t lease_ms = 60'000;
  int64_t grace_ms = 30'000;  // past a task's timeout, before the server takes it back
};

struct ClaimFilter {
  devices::DeviceInfo device;
  std::vector<std::string> types;  // empty: every type
  std::vector<std::string> exclude_types;
  int64_t limit = 1;
};

// A task row with the columns only the queue looks at.
struct TaskRow {
  Task task;
  bool has_dependents = false;
  std::string result_lease;  // "<device>:<attempt>" of the accepted result
};

class Repo {
 public:
  explicit Repo(store::Backend b);
  bool pg() const { return pg_; }

  asio::awaitable<Status> insert(Querier& q, const Task& t, bool ready);
  asio::awaitable<Status> insert_dependency(Querier& q, const std::string& task_id, const std::string& parent_id);
  // Marks `parent_id` (the user's) as having dependents; its status, or nullopt if there is none.
  asio::awaitable<Result<std::optional<std::string>>> mark_parent(Querier& q, const std::string& user_id,
                                                                  const std::string& parent_id);
  asio::awaitable<Result<std::optional<Task>>> find(Querier& q, const std::string& user_id, const std::string& id);
  asio::awaitable<Result<std::optional<TaskRow>>> find_row(Querier& q, const std::string& id, bool lock);
  struct ListFilter {
    std::optional<std::string> status, device_id, type;
    std::optional<std::string> before;  // id cursor (newest first)
    int limit = 50;
  };
  asio::awaitable<Result<std::vector<Task>>> list(Querier& q, const std::string& user_id, const ListFilter& f);

  // The claim: lease up to f.limit eligible tasks in one statement (highest priority first,
  // then oldest). Returns them ordered.
  asio::awaitable<Result<std::vector<Task>>> claim(Querier& q, const ClaimFilter& f, const LeaseTerms& terms);
  // For the rate-limited path: eligible candidates (id, type), locked on PostgreSQL.
  asio::awaitable<Result<std::vector<std::pair<std::string, std::string>>>> candidates(Querier& q, const ClaimFilter& f,
                                                                                      int64_t now);
  asio::awaitable<Result<std::vector<Task>>> lease_ids(Querier& q, const std::vector<std::string>& ids,
                                                       const std::string& device_id, const LeaseTerms& terms);
  asio::awaitable<Result<int64_t>> count_claimable(Querier& q, const devices::DeviceInfo& d, int64_t cap);

  // Fast path of a success: only a task without dependents, still leased by this device.
  asio::awaitable<Result<std::optional<Task>>> succeed_fast(Querier& q, const std::string& id, const std::string& device_id,
                                                            int64_t attempt, const std::string& result, int64_t now);
  asio::awaitable<Result<std::optional<Task>>> finish(Querier& q, const std::string& id, const std::string& status,
                                                      const std::string& result, const std::optional<std::string>& error,
                                                      const std::string& result_lease, int64_t now);
  asio::awaitable<Result<std::optional<Task>>> requeue_after_failure(Querier& q, const std::string& id,
                                                                     const std::string& result,
                                                                     const std::optional<std::string>& error,
                                                                     const std::string& result_lease, int64_t run_at,
                                                                     int64_t now);
  // Dependents of a succeeded parent: one parent fewer to wait for. The users to wake.
  asio::awaitable<Result<std::vector<std::string>>> release_dependents(Querier& q, const std::string& parent_id, int64_t now);
  // Queued dependents of the given parents become cancelled; returns them.
  asio::awaitable<Result<std::vector<Task>>> cancel_dependents(Querier& q, const std::vector<std::string>& parent_ids,
                                                               const std::string& why, int64_t now);

  struct Progress {
    std::string user_id;
    int64_t attempts = 0;
    int64_t log_bytes = 0;
    int64_t progress = 0;
  };
  asio::awaitable<Result<std::optional<Progress>>> progress(Querier& q, const std::string& id, const std::string& device_id,
                                                            int64_t attempt, std::optional<int64_t> progress,
                                                            int64_t log_len, const LeaseTerms& terms);
  // Reserves `len` bytes of the task's log whatever its state (a note); nullopt if no such task.
  asio::awaitable<Result<std::optional<Progress>>> reserve_log(Querier& q, const std::string& id, int64_t len, int64_t now);
  asio::awaitable<Status> append_log(Querier& q, const std::string& id, int64_t seq, int64_t at, int64_t attempt,
                                     const std::string& text);
  asio::awaitable<Result<std::vector<LogLine>>> logs(Querier& q, const std::string& id, int64_t after, int limit);
  // Of `running`, the ids still leased to the device (their leases extended).
  asio::awaitable<Result<std::vector<std::string>>> extend_leases(Querier& q, const std::string& device_id,
                                                                  const std::vector<std::string>& running,
                                                                  const LeaseTerms& terms);
  asio::awaitable<Result<std::vector<Task>>> release_device(Querier& q, const std::string& device_id, int64_t now);
  asio::awaitable<Result<std::optional<Task>>> release_one(Querier& q, const std::string& id, const std::string& device_id,
                                                           int64_t now);
  // Queued tasks aimed at a device that no longer exists can never run: cancelled.
  asio::awaitable<Result<std::vector<Task>>> cancel_targeted(Querier& q, const std::string& device_id, int64_t now);

  asio::awaitable<Result<std::optional<TaskRow>>> cancel(Querier& q, const std::string& user_id, const std::string& id,
                                                         int64_t now);
  asio::awaitable<Result<std::optional<Task>>> retry(Querier& q, const std::string& user_id, const std::string& id,
                                                     int64_t now);

  struct Expired {
    std::string id;
    int64_t attempts = 0, max_attempts = 0, timeout_ms = 0, started_at = 0;
    bool has_dependents = false;
  };
  asio::awaitable<Result<std::vector<Expired>>> expired(Querier& q, int64_t now, int limit);
  asio::awaitable<Result<std::optional<Task>>> expire_one(Querier& q, const std::string& id, const std::string& status,
                                                          int64_t run_at, const std::string& error, int64_t now);
  // Delayed tasks whose time came: ready now. The users to wake.
  asio::awaitable<Result<std::vector<std::string>>> promote(Querier& q, int64_t now, int limit);
  asio::awaitable<Result<std::optional<int64_t>>> next_delayed(Querier& q);
  asio::awaitable<Result<int64_t>> purge_finished(Querier& q, int64_t finished_before, int limit);

  // Task types.
  asio::awaitable<Result<std::vector<TypePolicy>>> policies(Querier& q, const std::string& user_id);
  asio::awaitable<Status> upsert_policy(Querier& q, const std::string& user_id, const TypePolicy& p);
  struct Window {
    std::string type;
    int64_t rate_max = 0, period_ms = 0, window_start = 0, window_count = 0;
  };
  asio::awaitable<Result<std::vector<Window>>> lock_windows(Querier& q, const std::string& user_id);
  asio::awaitable<Status> set_window(Querier& q, const std::string& user_id, const std::string& type, int64_t start,
                                     int64_t count);
  asio::awaitable<Result<std::vector<std::tuple<std::string, std::string, int64_t>>>> counts(Querier& q,
                                                                                            const std::string& user_id);

  // Schedules.
  asio::awaitable<Status> insert_schedule(Querier& q, const Schedule& s);
  asio::awaitable<Result<std::vector<Schedule>>> schedules(Querier& q, const std::string& user_id,
                                                           const std::optional<std::string>& after, int limit);
  asio::awaitable<Result<std::optional<Schedule>>> schedule(Querier& q, const std::string& user_id, const std::string& id);
  asio::awaitable<Result<std::optional<Schedule>>> set_schedule_enabled(Querier& q, const std::string& user_id,
                                                                        const std::string& id, bool enabled,
                                                                        std::optional<int64_t> next_run_at);
  asio::awaitable<Result<bool>> delete_schedule(Querier& q, const std::string& user_id, const std::string& id);
  asio::awaitable<Result<std::optional<int64_t>>> next_schedule(Querier& q);
  asio::awaitable<Result<std::vector<Schedule>>> due_schedules(Querier& q, int64_t now, int limit);
  asio::awaitable<Status> schedule_ran(Querier& q, const std::string& id, int64_t ran_at,
                                       std::optional<int64_t> next_run_at, const std::string& task_id);

 private:
  // The per-backend pieces of SQL.
  std::string ids_in(int param) const;  // (subquery of the text elements of the JSON array $param)
  const char* row_lock() const;         // FOR UPDATE where rows can be locked (not SQLite)

  bool pg_;
  bool mysql_;
  std::string claim_sql_, candidates_sql_, count_sql_, lease_ids_sql_;
  std::string eligible_;  // the WHERE of a claim
};

}  // namespace harmar::tasks
