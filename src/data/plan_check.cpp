#include "data/plan_check.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "data/sqlgen.hpp"

namespace harmar::data {

namespace {

constexpr int64_t kSizeTtlMs = 60'000;
constexpr std::size_t kMaxVerdicts = 2000;

// PostgreSQL: a scan of our table that reads it all (Seq Scan, or an index walked with no
// condition), anywhere in the plan tree.
bool pg_full_scan(const js::value& node, const std::string& table) {
  if (!node.is_object()) return false;
  const auto& o = node.as_object();
  const js::value* rel = o.if_contains("Relation Name");
  const js::value* type = o.if_contains("Node Type");
  if (rel && type && rel->is_string() && rel->as_string() == table && type->is_string()) {
    std::string_view t = type->as_string();
    if (t == "Seq Scan") return true;
    if ((t == "Index Scan" || t == "Index Only Scan") && !o.contains("Index Cond")) return true;
  }
  if (const js::value* plans = o.if_contains("Plans"); plans && plans->is_array())
    for (const auto& p : plans->as_array())
      if (pg_full_scan(p, table)) return true;
  return false;
}

}  // namespace

std::optional<PlanChecker::Mode> PlanChecker::parse_mode(std::string_view s) {
  if (s == "off") return Mode::Off;
  if (s == "warn") return Mode::Warn;
  if (s == "refuse") return Mode::Refuse;
  return std::nullopt;
}

asio::awaitable<Result<int64_t>> PlanChecker::rows_at_least(const Entry& e) {
  std::string table = e.c.table();
  int64_t now = mono_ms();
  {
    std::lock_guard lock(mu_);
    auto it = sizes_.find(table);
    if (it != sizes_.end() && now - it->second.second < kSizeTtlMs) co_return it->second.first;
  }
  // Counting stops at the threshold: the check costs at most min_rows row reads a minute.
  std::string sql = fmt::format("SELECT COUNT(*) FROM (SELECT 1 FROM {} LIMIT $1) AS x", quote_ident(table));
  auto rows = co_await db_.query(sql, {min_rows_});
  if (!rows) co_return std::move(rows).error();
  int64_t n = rows->empty() ? 0 : rows->front().integer(0);
  std::lock_guard lock(mu_);
  sizes_[table] = {n, now};
  co_return n;
}

asio::awaitable<Result<bool>> PlanChecker::scans_everything(const std::string& table, const std::string& sql,
                                                            const store::Params& params) {
  Dialect d = dialect_of(db_);
  if (d == Dialect::Sqlite) {
    auto rows = co_await db_.query("EXPLAIN QUERY PLAN " + sql, params);
    if (!rows) co_return std::move(rows).error();
    bool scan = false, search = false;
    auto detail_col = rows->column("detail").value_or(3);
    for (const auto& r : *rows) {
      std::string detail = r.text(detail_col);
      if (detail.starts_with("SCAN " + table)) scan = true;
      if (detail.starts_with("SEARCH " + table)) search = true;
    }
    co_return scan && !search;
  }
  if (d == Dialect::Mysql) {
    // The table form, not FORMAT=JSON: under ANSI_QUOTES MariaDB writes the conditions in that JSON
    // with the quotes of names ("data", keywords) unescaped, so it often does not parse.
    auto rows = co_await db_.query("EXPLAIN " + sql, params);
    if (!rows) co_return std::move(rows).error();
    auto table_col = rows->column("table").value_or(2);
    auto type_col = rows->column("type").value_or(3);
    for (const auto& r : *rows) {
      if (r.is_null(table_col) || r.is_null(type_col) || r.text(table_col) != table) continue;
      std::string type = r.text(type_col);
      if (type == "ALL" || type == "index") co_return true;  // every row, or a walk of a whole index
    }
    co_return false;
  }
  auto rows = co_await db_.query("EXPLAIN (FORMAT JSON) " + sql, params);
  if (!rows) co_return std::move(rows).error();
  if (rows->empty()) co_return false;
  boost::system::error_code ec;
  js::value plan = js::parse(rows->front().text(0), ec);
  if (ec || !plan.is_array()) co_return false;
  for (const auto& p : plan.as_array())
    if (p.is_object())
      if (const js::value* root = p.as_object().if_contains("Plan"); root && pg_full_scan(*root, table)) co_return true;
  co_return false;
}

asio::awaitable<Result<std::string>> PlanChecker::check(const Entry& e, const std::string& sql, const store::Params& params) {
  if (mode_ == Mode::Off) co_return std::string();
  auto size = co_await rows_at_least(e);
  if (!size) co_return std::move(size).error();
  if (*size < min_rows_) co_return std::string();
  std::optional<bool> verdict;
  {
    std::lock_guard lock(mu_);
    if (auto it = verdicts_.find(sql); it != verdicts_.end()) verdict = it->second;
  }
  if (!verdict) {
    auto scans = co_await scans_everything(e.c.table(), sql, params);
    if (!scans) {
      log::get("data")->warn(log::fields({{"msg", "query plan check failed"}, {"error", scans.error().detail}}));
      co_return std::string();
    }
    verdict = *scans;
    std::lock_guard lock(mu_);
    if (verdicts_.size() >= kMaxVerdicts) verdicts_.clear();
    verdicts_[sql] = *verdict;
  }
  if (!*verdict) co_return std::string();
  std::string msg = fmt::format(
      "this filter reads every record of {} (at least {} record{}): add an index on the fields it compares", e.c.name,
      min_rows_, min_rows_ == 1 ? "" : "s");
  if (mode_ == Mode::Refuse) co_return Error{400, "unindexed_filter", msg, {{"filter", "needs an index"}}};
  log::get("data")->warn(log::fields({{"msg", "unindexed filter"}, {"collection", e.c.name}}));
  co_return msg;
}

}  // namespace harmar::data
