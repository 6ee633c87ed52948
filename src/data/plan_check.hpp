#pragma once
// The query-plan check: before a filtered list runs over a large collection, ask the database how
// it would run it (EXPLAIN QUERY PLAN on SQLite, EXPLAIN (FORMAT JSON) on PostgreSQL, EXPLAIN on
// MariaDB) and warn about, or refuse (400 `unindexed_filter`), a plan that reads
// every record: a full table scan, or walking a whole index without a condition on it.
// Verdicts are remembered per statement shape, collection sizes for a minute.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "core/result.hpp"
#include "data/registry.hpp"
#include "store/sql.hpp"

namespace harmar::data {

namespace asio = boost::asio;

class PlanChecker {
 public:
  enum class Mode { Off, Warn, Refuse };
  static std::optional<Mode> parse_mode(std::string_view s);

  PlanChecker(store::Database& db, Mode mode, int64_t min_rows) : db_(db), mode_(mode), min_rows_(min_rows) {}

  // "" when the plan is fine (or the collection is small); a warning (Warn); 400 (Refuse).
  asio::awaitable<Result<std::string>> check(const Entry& e, const std::string& sql, const store::Params& params);
  // Whether the database would read every row of `table` for `sql` (exposed for tests).
  asio::awaitable<Result<bool>> scans_everything(const std::string& table, const std::string& sql, const store::Params& params);

 private:
  asio::awaitable<Result<int64_t>> rows_at_least(const Entry& e);

  store::Database& db_;
  Mode mode_;
  int64_t min_rows_;
  std::mutex mu_;
  std::map<std::string, std::pair<int64_t, int64_t>> sizes_;  // table → (rows, checked at)
  std::map<std::string, bool> verdicts_;                      // statement → scans everything
};

}  // namespace harmar::data
