#include "tasks/repo.hpp"

#include <boost/json.hpp>

namespace harmar::tasks {

namespace js = boost::json;

namespace {

constexpr const char* kCols =
    "id, user_id, type, payload, status, priority, attempts, max_attempts, device_id, labels, leased_by, "
    "lease_expires_at, timeout_ms, result, error, progress, run_at, created_at, started_at, finished_at, updated_at, "
    "deps_pending, schedule_id";
constexpr std::size_t kNCols = 23;

js::value parse_value(const std::string& text) {
  if (text.empty()) return nullptr;
  boost::system::error_code ec;
  js::value v = js::parse(text, ec);
  if (ec) return nullptr;
  return v;
}

Task read_task(const store::Row& r) {
  Task t;
  t.id = r.text(0);
  t.user_id = r.text(1);
  t.type = r.text(2);
  t.payload = parse_value(r.text(3));
  t.status = r.text(4);
  t.priority = r.integer(5);
  t.attempts = r.integer(6);
  t.max_attempts = r.integer(7);
  t.device_id = r.opt_text(8);
  t.labels = devices::parse_labels(r.text(9));
  t.leased_by = r.opt_text(10);
  t.lease_expires_at = r.opt_integer(11);
  t.timeout_ms = r.integer(12);
  t.result = parse_value(r.text(13));
  t.error = r.opt_text(14);
  t.progress = r.integer(15);
  t.run_at = r.integer(16);
  t.created_at = r.integer(17);
  t.started_at = r.opt_integer(18);
  t.finished_at = r.opt_integer(19);
  t.updated_at = r.integer(20);
  t.deps_pending = r.integer(21);
  t.schedule_id = r.opt_text(22);
  return t;
}

Result<std::vector<Task>> all_tasks(Result<store::Rows> rows) {
  if (!rows) return std::move(rows).error();
  std::vector<Task> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) out.push_back(read_task(r));
  return out;
}

Result<std::optional<Task>> one_task(Result<store::Rows> rows) {
  if (!rows) return std::move(rows).error();
  if (rows->empty()) return std::optional<Task>{};
  return std::optional<Task>(read_task(rows->front()));
}

std::string ids_json(const std::vector<std::string>& ids) {
  js::array a;
  for (const auto& i : ids) a.emplace_back(i);
  return js::serialize(a);
}

std::string types_json(const std::vector<std::string>& types) { return types.empty() ? "null" : ids_json(types); }

void sort_claimed(std::vector<Task>& v) {
  std::sort(v.begin(), v.end(), [](const Task& a, const Task& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    return a.id < b.id;
  });
}

// Schema: times are Unix ms. `ready` = queued and runnable now (its run_at came and its parents
// succeeded): the claim index covers only those rows, so delayed, waiting and finished tasks cost
// a claim nothing. `labels` is jsonb on PostgreSQL for containment (<@).
std::string tasks_ddl(bool pg) {
  std::string labels = pg ? "JSONB NOT NULL DEFAULT '{}'" : "TEXT NOT NULL DEFAULT '{}'";
  return "CREATE TABLE tasks (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, type TEXT NOT NULL,"
         " payload TEXT NOT NULL DEFAULT 'null', status TEXT NOT NULL, ready INTEGER NOT NULL DEFAULT 0,"
         " priority INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,"
         " max_attempts INTEGER NOT NULL DEFAULT 3, device_id TEXT, labels " + labels + ","
         " leased_by TEXT, lease_expires_at BIGINT, timeout_ms BIGINT NOT NULL DEFAULT 0,"
         " result TEXT NOT NULL DEFAULT 'null', error TEXT, progress INTEGER NOT NULL DEFAULT 0,"
         " run_at BIGINT NOT NULL, created_at BIGINT NOT NULL, started_at BIGINT, finished_at BIGINT,"
         " updated_at BIGINT NOT NULL, deps_pending INTEGER NOT NULL DEFAULT 0,"
         " has_dependents INTEGER NOT NULL DEFAULT 0, schedule_id TEXT, result_lease TEXT,"
         " log_bytes BIGINT NOT NULL DEFAULT 0);"
         "CREATE INDEX tasks_claim ON tasks (user_id, priority DESC, id) WHERE status = 'queued' AND ready = 1;"
         "CREATE INDEX tasks_delayed ON tasks (run_at) WHERE status = 'queued' AND ready = 0 AND deps_pending = 0;"
         "CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'running';"
         "CREATE INDEX tasks_leased_by ON tasks (leased_by) WHERE status = 'running';"
         "CREATE INDEX tasks_user ON tasks (user_id, id);"
         "CREATE INDEX tasks_user_status ON tasks (user_id, status, id);"
         "CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;"
         "CREATE INDEX tasks_target ON tasks (device_id) WHERE device_id IS NOT NULL;"
         "CREATE TABLE task_deps (task_id TEXT NOT NULL, parent_id TEXT NOT NULL, PRIMARY KEY (task_id, parent_id));"
         "CREATE INDEX task_deps_parent ON task_deps (parent_id);"
         "CREATE TABLE task_logs (task_id TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL,"
         " attempt INTEGER NOT NULL, line TEXT NOT NULL, PRIMARY KEY (task_id, seq));"
         "CREATE TABLE task_types (user_id TEXT NOT NULL, type TEXT NOT NULL, paused INTEGER NOT NULL DEFAULT 0,"
         " rate_max BIGINT NOT NULL DEFAULT 0, rate_period_ms BIGINT NOT NULL DEFAULT 0,"
         " window_start BIGINT NOT NULL DEFAULT 0, window_count BIGINT NOT NULL DEFAULT 0,"
         " updated_at BIGINT NOT NULL, PRIMARY KEY (user_id, type));"
         "CREATE TABLE task_schedules (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,"
         " cron TEXT NOT NULL, template TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1, next_run_at BIGINT,"
         " last_run_at BIGINT, last_task_id TEXT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
         "CREATE INDEX task_schedules_user ON task_schedules (user_id, id);"
         "CREATE INDEX task_schedules_due ON task_schedules (next_run_at) WHERE enabled = 1;";
}

constexpr const char* kScheduleCols = "id, user_id, name, cron, template, enabled, next_run_at, last_run_at, last_task_id, created_at";

Schedule read_schedule(const store::Row& r) {
  Schedule s;
  s.id = r.text(0);
  s.user_id = r.text(1);
  s.name = r.text(2);
  s.cron = r.text(3);
  auto tmpl = parse_value(r.text(4));
  if (tmpl.is_object()) s.task = NewTask::from_template(tmpl.as_object());
  s.enabled = r.boolean(5);
  s.next_run_at = r.opt_integer(6);
  s.last_run_at = r.opt_integer(7);
  s.last_task_id = r.opt_text(8);
  s.created_at = r.integer(9);
  return s;
}

}  // namespace

// MariaDB: keyed text is VARCHAR, the rest LONGTEXT; labels are JSON (checked, compared with
// JSON_CONTAINS). No partial indexes: each becomes an index led by the columns it filtered on.
constexpr const char* kMysqlTasksDdl =
    "CREATE TABLE tasks (id VARCHAR(64) PRIMARY KEY, user_id VARCHAR(64) NOT NULL, type VARCHAR(64) NOT NULL,"
    " payload LONGTEXT NOT NULL DEFAULT 'null', status VARCHAR(16) NOT NULL, ready INTEGER NOT NULL DEFAULT 0,"
    " priority INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL"
    " DEFAULT 3, device_id VARCHAR(64), labels JSON NOT NULL DEFAULT '{}', leased_by VARCHAR(64),"
    " lease_expires_at BIGINT, timeout_ms BIGINT NOT NULL DEFAULT 0, result LONGTEXT NOT NULL DEFAULT 'null',"
    " error LONGTEXT, progress INTEGER NOT NULL DEFAULT 0, run_at BIGINT NOT NULL, created_at BIGINT NOT NULL,"
    " started_at BIGINT, finished_at BIGINT, updated_at BIGINT NOT NULL, deps_pending INTEGER NOT NULL DEFAULT"
    " 0, has_dependents INTEGER NOT NULL DEFAULT 0, schedule_id VARCHAR(64), result_lease LONGTEXT, log_bytes"
    " BIGINT NOT NULL DEFAULT 0, INDEX tasks_claim (status, ready, user_id, priority DESC, id), INDEX"
    " tasks_delayed (status, ready, deps_pending, run_at), INDEX tasks_leases (status, lease_expires_at), INDEX"
    " tasks_leased_by (leased_by, status), INDEX tasks_user (user_id, id), INDEX tasks_user_status (user_id,"
    " status, id), INDEX tasks_finished (finished_at), INDEX tasks_target (device_id)) ENGINE=InnoDB DEFAULT"
    " CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE task_deps (task_id VARCHAR(64) NOT NULL, parent_id VARCHAR(64) NOT NULL, PRIMARY KEY"
    " (task_id, parent_id), INDEX task_deps_parent (parent_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    " COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE task_logs (task_id VARCHAR(64) NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, attempt"
    " INTEGER NOT NULL, line LONGTEXT NOT NULL, PRIMARY KEY (task_id, seq)) ENGINE=InnoDB DEFAULT"
    " CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE task_types (user_id VARCHAR(64) NOT NULL, type VARCHAR(64) NOT NULL, paused INTEGER NOT NULL"
    " DEFAULT 0, rate_max BIGINT NOT NULL DEFAULT 0, rate_period_ms BIGINT NOT NULL DEFAULT 0, window_start"
    " BIGINT NOT NULL DEFAULT 0, window_count BIGINT NOT NULL DEFAULT 0, updated_at BIGINT NOT NULL, PRIMARY"
    " KEY (user_id, type)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;"
    "CREATE TABLE task_schedules (id VARCHAR(64) PRIMARY KEY, user_id VARCHAR(64) NOT NULL, name LONGTEXT NOT"
    " NULL, cron LONGTEXT NOT NULL, template LONGTEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1, next_run_at"
    " BIGINT, last_run_at BIGINT, last_task_id VARCHAR(64), created_at BIGINT NOT NULL, updated_at BIGINT NOT"
    " NULL, INDEX task_schedules_user (user_id, id), INDEX task_schedules_due (enabled, next_run_at))"
    " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;";

std::vector<store::Migration> migrations() {
  return {{1, "tasks queue", tasks_ddl(false), tasks_ddl(true), kMysqlTasksDdl}};
}

std::string Repo::ids_in(int param) const {
  if (pg_) return fmt::format("(SELECT jsonb_array_elements_text(${}::jsonb))", param);
  if (mysql_) return fmt::format("(SELECT value FROM JSON_TABLE(${}, '$[*]' COLUMNS (value VARCHAR(255) PATH '$')) AS j)", param);
  return fmt::format("(SELECT value FROM json_each(${}))", param);
}

const char* Repo::row_lock() const { return pg_ || mysql_ ? " FOR UPDATE" : ""; }

Repo::Repo(store::Backend b) : pg_(b == store::Backend::Postgres), mysql_(b == store::Backend::Mysql) {
  // The claim parameters: $1 user, $2 device, $3 device labels (JSON), $4 types (JSON array or
  // 'null'), $5 excluded types (same), $6 limit; leases add $7 now, $8 lease ms, $9 grace ms.
  std::string labels = pg_      ? "t.labels <@ $3::jsonb"
                       : mysql_ ? "JSON_CONTAINS($3, t.labels)"
                                : "(t.labels = '{}' OR NOT EXISTS (SELECT 1 FROM json_each(t.labels) j"
                                  " WHERE json_extract($3, '$.\"' || j.key || '\"') IS NOT j.value))";
  std::string types = pg_ ? "($4::jsonb = 'null'::jsonb OR $4::jsonb ? t.type)"
                          : "($4 = 'null' OR t.type IN " + ids_in(4) + ")";
  std::string exclude = pg_ ? "($5::jsonb = 'null'::jsonb OR NOT ($5::jsonb ? t.type))"
                            : "($5 = 'null' OR t.type NOT IN " + ids_in(5) + ")";
  eligible_ =
      "t.status = 'queued' AND t.ready = 1 AND t.user_id = $1 AND (t.device_id IS NULL OR t.device_id = $2) AND " +
      labels + " AND " + types + " AND " + exclude +
      " AND NOT EXISTS (SELECT 1 FROM task_types p WHERE p.user_id = t.user_id AND p.type = t.type AND p.paused = 1)";
  std::string lock = pg_ ? " FOR UPDATE SKIP LOCKED" : "";
  claim_sql_ = fmt::format(
      "UPDATE tasks SET status = 'running', ready = 0, leased_by = $2, attempts = attempts + 1, started_at = $7,"
      " updated_at = $7, progress = 0,"
      " lease_expires_at = $7 + CASE WHEN timeout_ms > 0 AND timeout_ms + $9 < $8 THEN timeout_ms + $9 ELSE $8 END"
      " WHERE id IN (SELECT t.id FROM tasks t WHERE {} ORDER BY t.priority DESC, t.id LIMIT $6{}) AND status = 'queued'"
      " RETURNING {}",
      eligible_, lock, kCols);
  candidates_sql_ =
      fmt::format("SELECT t.id, t.type FROM tasks t WHERE {} ORDER BY t.priority DESC, t.id LIMIT $6{}", eligible_, lock);
  count_sql_ = fmt::format("SELECT COUNT(*) FROM (SELECT 1 FROM tasks t WHERE {} LIMIT $6) x", eligible_);
  std::string in_ids = ids_in(1);
  lease_ids_sql_ = fmt::format(
      "UPDATE tasks SET status = 'running', ready = 0, leased_by = $2, attempts = attempts + 1, started_at = $3,"
      " updated_at = $3, progress = 0,"
      " lease_expires_at = $3 + CASE WHEN timeout_ms > 0 AND timeout_ms + $5 < $4 THEN timeout_ms + $5 ELSE $4 END"
      " WHERE id IN {} AND status = 'queued' RETURNING {}",
      in_ids, kCols);
}

asio::awaitable<Status> Repo::insert(Querier& q, const Task& t, bool ready) {
  std::string sql = fmt::format(
      "INSERT INTO tasks (id, user_id, type, payload, status, ready, priority, attempts, max_attempts, device_id,"
      " labels, timeout_ms, run_at, created_at, updated_at, deps_pending, schedule_id)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, {}, $11, $12, $13, $13, $14, $15)",
      pg_ ? "$10::jsonb" : "$10");
  auto n = co_await q.exec(sql, {t.id, t.user_id, t.type, js::serialize(t.payload), t.status, int64_t(ready ? 1 : 0),
                                 t.priority, t.max_attempts, store::nullable(t.device_id), devices::labels_text(t.labels),
                                 t.timeout_ms, t.run_at, t.created_at, t.deps_pending, store::nullable(t.schedule_id)});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Status> Repo::insert_dependency(Querier& q, const std::string& task_id, const std::string& parent_id) {
  auto n = co_await q.exec("INSERT INTO task_deps (task_id, parent_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                           {task_id, parent_id});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Result<std::optional<std::string>>> Repo::mark_parent(Querier& q, const std::string& user_id,
                                                                      const std::string& parent_id) {
  auto rows = co_await q.query("UPDATE tasks SET has_dependents = 1 WHERE id = $1 AND user_id = $2 RETURNING status",
                               {parent_id, user_id});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<std::string>{};
  co_return std::optional<std::string>(rows->front().text(0));
}

asio::awaitable<Result<std::optional<Task>>> Repo::find(Querier& q, const std::string& user_id, const std::string& id) {
  co_return one_task(
      co_await q.query(fmt::format("SELECT {} FROM tasks WHERE id = $1 AND user_id = $2", kCols), {id, user_id}));
}

asio::awaitable<Result<std::optional<TaskRow>>> Repo::find_row(Querier& q, const std::string& id, bool lock) {
  auto rows = co_await q.query(fmt::format("SELECT {}, has_dependents, result_lease FROM tasks WHERE id = $1{}", kCols,
                                           lock ? row_lock() : ""),
                               {id});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<TaskRow>{};
  auto r = rows->front();
  TaskRow row{read_task(r), r.boolean(kNCols), r.text(kNCols + 1)};
  co_return std::optional<TaskRow>(std::move(row));
}

asio::awaitable<Result<std::vector<Task>>> Repo::list(Querier& q, const std::string& user_id, const ListFilter& f) {
  std::string sql = fmt::format(
      "SELECT {} FROM tasks WHERE user_id = $1 AND ($2 = '' OR id < $2) AND ($3 = '' OR status = $3)"
      " AND ($4 = '' OR device_id = $4 OR leased_by = $4) AND ($5 = '' OR type = $5) ORDER BY id DESC LIMIT $6",
      kCols);
  co_return all_tasks(co_await q.query(sql, {user_id, f.before.value_or(""), f.status.value_or(""), f.device_id.value_or(""),
                                             f.type.value_or(""), int64_t(f.limit)}));
}

asio::awaitable<Result<std::vector<Task>>> Repo::claim(Querier& q, const ClaimFilter& f, const LeaseTerms& terms) {
  auto tasks = all_tasks(co_await q.query(
      claim_sql_, {f.device.user_id, f.device.id, devices::labels_text(f.device.labels), types_json(f.types),
                   types_json(f.exclude_types), f.limit, terms.now, terms.lease_ms, terms.grace_ms}));
  if (tasks) sort_claimed(*tasks);
  co_return tasks;
}

asio::awaitable<Result<std::vector<std::pair<std::string, std::string>>>> Repo::candidates(Querier& q, const ClaimFilter& f,
                                                                                          int64_t) {
  auto rows = co_await q.query(candidates_sql_, {f.device.user_id, f.device.id, devices::labels_text(f.device.labels),
                                                 types_json(f.types), types_json(f.exclude_types), f.limit});
  if (!rows) co_return std::move(rows).error();
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : *rows) out.emplace_back(r.text(0), r.text(1));
  co_return out;
}

asio::awaitable<Result<std::vector<Task>>> Repo::lease_ids(Querier& q, const std::vector<std::string>& ids,
                                                           const std::string& device_id, const LeaseTerms& terms) {
  auto tasks = all_tasks(co_await q.query(lease_ids_sql_, {ids_json(ids), device_id, terms.now, terms.lease_ms, terms.grace_ms}));
  if (tasks) sort_claimed(*tasks);
  co_return tasks;
}

asio::awaitable<Result<int64_t>> Repo::count_claimable(Querier& q, const devices::DeviceInfo& d, int64_t cap) {
  std::string null_json = "null";
  auto rows = co_await q.query(count_sql_, {d.user_id, d.id, devices::labels_text(d.labels), null_json, null_json, cap});
  if (!rows) co_return std::move(rows).error();
  co_return rows->front().integer(0);
}

asio::awaitable<Result<std::optional<Task>>> Repo::succeed_fast(Querier& q, const std::string& id,
                                                                const std::string& device_id, int64_t attempt,
                                                                const std::string& result, int64_t now) {
  co_return one_task(co_await q.query(
      fmt::format("UPDATE tasks SET status = 'succeeded', result = $4, error = NULL, progress = 100, finished_at = $5,"
                  " updated_at = $5, lease_expires_at = NULL, result_lease = $2 || ':' || CAST(attempts AS TEXT)"
                  " WHERE id = $1 AND status = 'running' AND leased_by = $2 AND ($3 < 0 OR attempts = $3)"
                  " AND has_dependents = 0 RETURNING {}",
                  kCols),
      {id, device_id, attempt, result, now}));
}

asio::awaitable<Result<std::optional<Task>>> Repo::finish(Querier& q, const std::string& id, const std::string& status,
                                                          const std::string& result,
                                                          const std::optional<std::string>& error,
                                                          const std::string& result_lease, int64_t now) {
  co_return one_task(co_await q.query(
      fmt::format("UPDATE tasks SET status = $2, result = $3, error = $4, finished_at = $6, updated_at = $6,"
                  " lease_expires_at = NULL, ready = 0, result_lease = $5,"
                  " progress = CASE WHEN $2 = 'succeeded' THEN 100 ELSE progress END"
                  " WHERE id = $1 RETURNING {}",
                  kCols),
      {id, status, result, store::nullable(error), result_lease, now}));
}

asio::awaitable<Result<std::optional<Task>>> Repo::requeue_after_failure(Querier& q, const std::string& id,
                                                                         const std::string& result,
                                                                         const std::optional<std::string>& error,
                                                                         const std::string& result_lease, int64_t run_at,
                                                                         int64_t now) {
  co_return one_task(co_await q.query(
      fmt::format("UPDATE tasks SET status = 'queued', ready = 0, result = $2, error = $3, result_lease = $4,"
                  " run_at = $5, updated_at = $6, leased_by = NULL, lease_expires_at = NULL WHERE id = $1 RETURNING {}",
                  kCols),
      {id, result, store::nullable(error), result_lease, run_at, now}));
}

asio::awaitable<Result<std::vector<std::string>>> Repo::release_dependents(Querier& q, const std::string& parent_id,
                                                                           int64_t now) {
  auto rows = co_await q.query(
      "UPDATE tasks SET deps_pending = deps_pending - 1, updated_at = $2,"
      " ready = CASE WHEN deps_pending = 1 AND run_at <= $2 THEN 1 ELSE 0 END"
      " WHERE id IN (SELECT task_id FROM task_deps WHERE parent_id = $1) AND status = 'queued' AND deps_pending > 0"
      " RETURNING user_id",
      {parent_id, now});
  if (!rows) co_return std::move(rows).error();
  std::vector<std::string> users;
  for (const auto& r : *rows) users.push_back(r.text(0));
  co_return users;
}

asio::awaitable<Result<std::vector<Task>>> Repo::cancel_dependents(Querier& q, const std::vector<std::string>& parent_ids,
                                                                   const std::string& why, int64_t now) {
  std::string in_parents = ids_in(1);
  co_return all_tasks(co_await q.query(
      fmt::format("UPDATE tasks SET status = 'cancelled', ready = 0, error = $2, finished_at = $3, updated_at = $3"
                  " WHERE id IN (SELECT task_id FROM task_deps WHERE parent_id IN {}) AND status = 'queued' RETURNING {}",
                  in_parents, kCols),
      {ids_json(parent_ids), why, now}));
}

asio::awaitable<Result<std::optional<Repo::Progress>>> Repo::progress(Querier& q, const std::string& id,
                                                                      const std::string& device_id, int64_t attempt,
                                                                      std::optional<int64_t> progress, int64_t log_len,
                                                                      const LeaseTerms& terms) {
  // The lease runs lease_ms from now, but never past the task's own timeout (plus grace).
  auto rows = co_await q.query(
      "UPDATE tasks SET progress = COALESCE($4, progress), updated_at = $5, log_bytes = log_bytes + $6,"
      " lease_expires_at = CASE WHEN timeout_ms > 0 AND started_at + timeout_ms + CAST($8 AS BIGINT) < CAST($5 AS BIGINT) + CAST($7 AS BIGINT)"
      " THEN started_at + timeout_ms + CAST($8 AS BIGINT) ELSE CAST($5 AS BIGINT) + CAST($7 AS BIGINT) END"
      " WHERE id = $1 AND status = 'running' AND leased_by = $2 AND ($3 < 0 OR attempts = $3)"
      " RETURNING user_id, attempts, log_bytes, progress",
      {id, device_id, attempt, store::nullable(progress), terms.now, log_len, terms.lease_ms, terms.grace_ms});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<Progress>{};
  auto r = rows->front();
  co_return std::optional<Progress>(Progress{r.text(0), r.integer(1), r.integer(2), r.integer(3)});
}

asio::awaitable<Result<std::optional<Repo::Progress>>> Repo::reserve_log(Querier& q, const std::string& id, int64_t len,
                                                                         int64_t now) {
  auto rows = co_await q.query(
      "UPDATE tasks SET log_bytes = log_bytes + $2, updated_at = $3 WHERE id = $1 RETURNING user_id, attempts, log_bytes, progress",
      {id, len, now});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<Progress>{};
  auto r = rows->front();
  co_return std::optional<Progress>(Progress{r.text(0), r.integer(1), r.integer(2), r.integer(3)});
}

asio::awaitable<Status> Repo::append_log(Querier& q, const std::string& id, int64_t seq, int64_t at, int64_t attempt,
                                         const std::string& text) {
  auto n = co_await q.exec(
      "INSERT INTO task_logs (task_id, seq, at, attempt, line) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
      {id, seq, at, attempt, text});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Result<std::vector<LogLine>>> Repo::logs(Querier& q, const std::string& id, int64_t after, int limit) {
  auto rows = co_await q.query(
      "SELECT seq, at, attempt, line FROM task_logs WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
      {id, after, int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<LogLine> out;
  for (const auto& r : *rows) out.push_back({r.integer(0), r.integer(1), r.integer(2), r.text(3)});
  co_return out;
}

asio::awaitable<Result<std::vector<std::string>>> Repo::extend_leases(Querier& q, const std::string& device_id,
                                                                      const std::vector<std::string>& running,
                                                                      const LeaseTerms& terms) {
  std::string in_ids = ids_in(1);
  auto rows = co_await q.query(
      fmt::format("UPDATE tasks SET lease_expires_at = CASE WHEN timeout_ms > 0 AND started_at + timeout_ms + CAST($5 AS BIGINT)"
                  " < CAST($3 AS BIGINT) + CAST($4 AS BIGINT)"
                  " THEN started_at + timeout_ms + CAST($5 AS BIGINT) ELSE CAST($3 AS BIGINT) + CAST($4 AS BIGINT) END"
                  " WHERE id IN {} AND status = 'running' AND leased_by = $2 RETURNING id",
                  in_ids),
      {ids_json(running), device_id, terms.now, terms.lease_ms, terms.grace_ms});
  if (!rows) co_return std::move(rows).error();
  std::vector<std::string> out;
  for (const auto& r : *rows) out.push_back(r.text(0));
  co_return out;
}

asio::awaitable<Result<std::vector<Task>>> Repo::release_device(Querier& q, const std::string& device_id, int64_t now) {
  // Given back, not failed: the attempt does not count.
  co_return all_tasks(co_await q.query(
      fmt::format("UPDATE tasks SET status = 'queued', ready = CASE WHEN deps_pending = 0 THEN 1 ELSE 0 END,"
                  " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, leased_by = NULL,"
                  " lease_expires_at = NULL, started_at = NULL, run_at = $2, updated_at = $2"
                  " WHERE leased_by = $1 AND status = 'running' RETURNING {}",
                  kCols),
      {device_id, now}));
}

asio::awaitable<Result<std::optional<Task>>> Repo::release_one(Querier& q, const std::string& id,
                                                               const std::string& device_id, int64_t now) {
  co_return one_task(co_await q.query(
      fmt::format("UPDATE tasks SET status = 'queued', ready = CASE WHEN deps_pending = 0 THEN 1 ELSE 0 END,"
                  " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, leased_by = NULL,"
                  " lease_expires_at = NULL, started_at = NULL, run_at = $3, updated_at = $3"
                  " WHERE id = $1 AND leased_by = $2 AND status = 'running' RETURNING {}",
                  kCols),
      {id, device_id, now}));
}

asio::awaitable<Result<std::vector<Task>>> Repo::cancel_targeted(Querier& q, const std::string& device_id, int64_t now) {
  co_return all_tasks(co_await q.query(
      fmt::format("UPDATE tasks SET status = 'cancelled', ready = 0, error = 'the target device was deleted',"
                  " finished_at = $2, updated_at = $2 WHERE device_id = $1 AND status = 'queued' RETURNING {}",
                  kCols),
      {device_id, now}));
}

asio::awaitable<Result<std::optional<TaskRow>>> Repo::cancel(Querier& q, const std::string& user_id,
                                                             const std::string& id, int64_t now) {
  auto rows = co_await q.query(
      fmt::format("UPDATE tasks SET status = 'cancelled', ready = 0, finished_at = $3, updated_at = $3,"
                  " lease_expires_at = NULL, error = COALESCE(error, 'cancelled')"
                  " WHERE id = $1 AND user_id = $2 AND status IN ('queued', 'running')"
                  " RETURNING {}, has_dependents, result_lease",
                  kCols),
      {id, user_id, now});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<TaskRow>{};
  auto r = rows->front();
  co_return std::optional<TaskRow>(TaskRow{read_task(r), r.boolean(kNCols), r.text(kNCols + 1)});
}

asio::awaitable<Result<std::optional<Task>>> Repo::retry(Querier& q, const std::string& user_id, const std::string& id,
                                                         int64_t now) {
  const char* waiting =
      "(SELECT COUNT(*) FROM task_deps d JOIN tasks p ON p.id = d.parent_id WHERE d.task_id = $1"
      " AND p.status <> 'succeeded')";
  co_return one_task(co_await q.query(
      fmt::format("UPDATE tasks SET status = 'queued', attempts = 0, result = 'null', error = NULL, progress = 0,"
                  " started_at = NULL, finished_at = NULL, leased_by = NULL, lease_expires_at = NULL,"
                  " result_lease = NULL, run_at = $3, updated_at = $3, deps_pending = {0},"
                  " ready = CASE WHEN {0} = 0 THEN 1 ELSE 0 END"
                  " WHERE id = $1 AND user_id = $2 AND status IN ('failed', 'cancelled', 'dead') RETURNING {1}",
                  waiting, kCols),
      {id, user_id, now}));
}

asio::awaitable<Result<std::vector<Repo::Expired>>> Repo::expired(Querier& q, int64_t now, int limit) {
  auto rows = co_await q.query(
      fmt::format("SELECT id, attempts, max_attempts, timeout_ms, started_at, has_dependents FROM tasks"
                  " WHERE status = 'running' AND lease_expires_at < $1 ORDER BY lease_expires_at LIMIT $2{}",
                  pg_ ? " FOR UPDATE SKIP LOCKED" : ""),
      {now, int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<Expired> out;
  for (const auto& r : *rows)
    out.push_back({r.text(0), r.integer(1), r.integer(2), r.integer(3), r.integer(4), r.boolean(5)});
  co_return out;
}

asio::awaitable<Result<std::optional<Task>>> Repo::expire_one(Querier& q, const std::string& id, const std::string& status,
                                                              int64_t run_at, const std::string& error, int64_t now) {
  co_return one_task(co_await q.query(
      fmt::format("UPDATE tasks SET status = $2, ready = 0, run_at = $3, error = $4, updated_at = $5,"
                  " lease_expires_at = NULL, leased_by = CASE WHEN $2 = 'dead' THEN leased_by ELSE NULL END,"
                  " finished_at = CASE WHEN $2 = 'dead' THEN CAST($5 AS BIGINT) ELSE NULL END"
                  " WHERE id = $1 AND status = 'running' RETURNING {}",
                  kCols),
      {id, status, run_at, error, now}));
}

asio::awaitable<Result<std::vector<std::string>>> Repo::promote(Querier& q, int64_t now, int limit) {
  auto rows = co_await q.query(
      fmt::format("UPDATE tasks SET ready = 1 WHERE id IN (SELECT id FROM tasks WHERE status = 'queued' AND ready = 0"
                  " AND deps_pending = 0 AND run_at <= $1 ORDER BY run_at LIMIT $2{})"
                  " AND status = 'queued' AND ready = 0 RETURNING user_id",
                  pg_ ? " FOR UPDATE SKIP LOCKED" : ""),
      {now, int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<std::string> users;
  for (const auto& r : *rows) users.push_back(r.text(0));
  co_return users;
}

asio::awaitable<Result<std::optional<int64_t>>> Repo::next_delayed(Querier& q) {
  auto rows = co_await q.query(
      "SELECT MIN(run_at) FROM tasks WHERE status = 'queued' AND ready = 0 AND deps_pending = 0", {});
  if (!rows) co_return std::move(rows).error();
  co_return rows->front().opt_integer(0);
}

asio::awaitable<Result<int64_t>> Repo::purge_finished(Querier& q, int64_t finished_before, int limit) {
  auto rows = co_await q.query(
      "SELECT id FROM tasks WHERE finished_at IS NOT NULL AND finished_at < $1"
      " AND status IN ('succeeded', 'failed', 'cancelled', 'dead') LIMIT $2",
      {finished_before, int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return int64_t{0};
  std::vector<std::string> ids;
  for (const auto& r : *rows) ids.push_back(r.text(0));
  std::string list = ids_json(ids);
  std::string in_ids = ids_in(1);
  auto logs = co_await q.exec(fmt::format("DELETE FROM task_logs WHERE task_id IN {}", in_ids), {list});
  if (!logs) co_return std::move(logs).error();
  auto deps = co_await q.exec(fmt::format("DELETE FROM task_deps WHERE task_id IN {0} OR parent_id IN {0}", in_ids), {list});
  if (!deps) co_return std::move(deps).error();
  auto gone = co_await q.exec(fmt::format("DELETE FROM tasks WHERE id IN {}", in_ids), {list});
  if (!gone) co_return std::move(gone).error();
  co_return *gone;
}

asio::awaitable<Result<std::vector<TypePolicy>>> Repo::policies(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query(
      "SELECT type, paused, rate_max, rate_period_ms, updated_at FROM task_types WHERE user_id = $1 ORDER BY type",
      {user_id});
  if (!rows) co_return std::move(rows).error();
  std::vector<TypePolicy> out;
  for (const auto& r : *rows) out.push_back({r.text(0), r.boolean(1), r.integer(2), r.integer(3), r.integer(4)});
  co_return out;
}

asio::awaitable<Status> Repo::upsert_policy(Querier& q, const std::string& user_id, const TypePolicy& p) {
  auto n = co_await q.exec(
      "INSERT INTO task_types (user_id, type, paused, rate_max, rate_period_ms, updated_at)"
      " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, type) DO UPDATE SET paused = excluded.paused,"
      " rate_max = excluded.rate_max, rate_period_ms = excluded.rate_period_ms, updated_at = excluded.updated_at",
      {user_id, p.type, int64_t(p.paused ? 1 : 0), p.rate_max, p.rate_period_ms, p.updated_at});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Result<std::vector<Repo::Window>>> Repo::lock_windows(Querier& q, const std::string& user_id) {
  auto rows = co_await q.query(fmt::format("SELECT type, rate_max, rate_period_ms, window_start, window_count FROM task_types"
                                           " WHERE user_id = $1 AND rate_max > 0 ORDER BY type{}",
                                           row_lock()),
                               {user_id});
  if (!rows) co_return std::move(rows).error();
  std::vector<Window> out;
  for (const auto& r : *rows) out.push_back({r.text(0), r.integer(1), r.integer(2), r.integer(3), r.integer(4)});
  co_return out;
}

asio::awaitable<Status> Repo::set_window(Querier& q, const std::string& user_id, const std::string& type, int64_t start,
                                         int64_t count) {
  auto n = co_await q.exec("UPDATE task_types SET window_start = $3, window_count = $4 WHERE user_id = $1 AND type = $2",
                           {user_id, type, start, count});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Result<std::vector<std::tuple<std::string, std::string, int64_t>>>> Repo::counts(
    Querier& q, const std::string& user_id) {
  auto rows = co_await q.query(
      "SELECT type, status, COUNT(*) FROM tasks WHERE user_id = $1 AND status IN ('queued', 'running')"
      " GROUP BY type, status",
      {user_id});
  if (!rows) co_return std::move(rows).error();
  std::vector<std::tuple<std::string, std::string, int64_t>> out;
  for (const auto& r : *rows) out.emplace_back(r.text(0), r.text(1), r.integer(2));
  co_return out;
}

asio::awaitable<Status> Repo::insert_schedule(Querier& q, const Schedule& s) {
  auto n = co_await q.exec(
      "INSERT INTO task_schedules (id, user_id, name, cron, template, enabled, next_run_at, created_at, updated_at)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
      {s.id, s.user_id, s.name, s.cron, js::serialize(s.task.to_json()), int64_t(s.enabled ? 1 : 0),
       store::nullable(s.next_run_at), s.created_at});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

asio::awaitable<Result<std::vector<Schedule>>> Repo::schedules(Querier& q, const std::string& user_id,
                                                               const std::optional<std::string>& after, int limit) {
  auto rows = co_await q.query(
      fmt::format("SELECT {} FROM task_schedules WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3", kScheduleCols),
      {user_id, after.value_or(""), int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<Schedule> out;
  for (const auto& r : *rows) out.push_back(read_schedule(r));
  co_return out;
}

asio::awaitable<Result<std::optional<Schedule>>> Repo::schedule(Querier& q, const std::string& user_id,
                                                                const std::string& id) {
  auto rows = co_await q.query(fmt::format("SELECT {} FROM task_schedules WHERE id = $1 AND user_id = $2", kScheduleCols),
                               {id, user_id});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<Schedule>{};
  co_return std::optional<Schedule>(read_schedule(rows->front()));
}

asio::awaitable<Result<std::optional<Schedule>>> Repo::set_schedule_enabled(Querier& q, const std::string& user_id,
                                                                            const std::string& id, bool enabled,
                                                                            std::optional<int64_t> next_run_at) {
  auto rows = co_await q.query(
      fmt::format("UPDATE task_schedules SET enabled = $3, next_run_at = $4 WHERE id = $1 AND user_id = $2 RETURNING {}",
                  kScheduleCols),
      {id, user_id, int64_t(enabled ? 1 : 0), store::nullable(next_run_at)});
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return std::optional<Schedule>{};
  co_return std::optional<Schedule>(read_schedule(rows->front()));
}

asio::awaitable<Result<bool>> Repo::delete_schedule(Querier& q, const std::string& user_id, const std::string& id) {
  auto n = co_await q.exec("DELETE FROM task_schedules WHERE id = $1 AND user_id = $2", {id, user_id});
  if (!n) co_return std::move(n).error();
  co_return *n > 0;
}

asio::awaitable<Result<std::optional<int64_t>>> Repo::next_schedule(Querier& q) {
  auto rows = co_await q.query("SELECT MIN(next_run_at) FROM task_schedules WHERE enabled = 1", {});
  if (!rows) co_return std::move(rows).error();
  co_return rows->front().opt_integer(0);
}

asio::awaitable<Result<std::vector<Schedule>>> Repo::due_schedules(Querier& q, int64_t now, int limit) {
  auto rows = co_await q.query(fmt::format("SELECT {} FROM task_schedules WHERE enabled = 1 AND next_run_at <= $1"
                                           " ORDER BY next_run_at LIMIT $2{}",
                                           kScheduleCols, pg_ ? " FOR UPDATE SKIP LOCKED" : ""),
                               {now, int64_t(limit)});
  if (!rows) co_return std::move(rows).error();
  std::vector<Schedule> out;
  for (const auto& r : *rows) out.push_back(read_schedule(r));
  co_return out;
}

asio::awaitable<Status> Repo::schedule_ran(Querier& q, const std::string& id, int64_t ran_at,
                                           std::optional<int64_t> next_run_at, const std::string& task_id) {
  auto n = co_await q.exec(
      "UPDATE task_schedules SET last_run_at = $2, next_run_at = $3, last_task_id = $4, updated_at = $2,"
      " enabled = CASE WHEN CAST($3 AS BIGINT) IS NULL THEN 0 ELSE enabled END WHERE id = $1",
      {id, ran_at, store::nullable(next_run_at), task_id});
  if (!n) co_return std::move(n).error();
  co_return Status{};
}

}  // namespace harmar::tasks
