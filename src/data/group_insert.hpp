#pragma once
// Group commit for record creates: concurrent single-row INSERTs of the same statement on one
// event loop become one multi-row INSERT, so a burst of creates costs the database one statement
// and one commit instead of one each.
//
//   GroupInsert inserts(db);
//   Status s = co_await inserts.insert("INSERT INTO \"c_notes\" (\"id\", \"title\")", 2, {id, title});
//
// At most kMaxInFlight statements of one kind run at once per event loop; a create that arrives
// while they are busy waits for the next one, which takes everything that queued meanwhile. When
// the database is idle a create goes alone, at once: grouping only ever replaces waiting. One
// statement at a time makes the largest groups, and costs a create at most one statement's wait.
// Each caller gets its own row's outcome: when a grouped statement fails (a unique violation in
// one row, a value the database refuses) its rows are written again one by one; only 503
// `unavailable` (the database, not a row) is given to every row of the statement at once.
// Rows are written outside any transaction (each statement commits on its own); a create inside
// a batch or an import goes through its transaction, not through here.
// An event loop is an io_context run by one thread, as harmar's workers are: a statement's
// callers wake each other directly.
#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "core/result.hpp"
#include "store/sql.hpp"

namespace harmar::data {

namespace asio = boost::asio;

class GroupInsert {
 public:
  static constexpr int kMaxInFlight = 1;           // statements of one kind at once per event loop
  static constexpr std::size_t kMaxRows = 128;    // rows in one statement
  static constexpr std::size_t kMaxParams = 8000;  // parameters in one statement (SQLite allows 32766)

  explicit GroupInsert(store::Database& db) : db_(db) {}
  GroupInsert(const GroupInsert&) = delete;
  GroupInsert& operator=(const GroupInsert&) = delete;

  // Inserts one row: `head` is "INSERT INTO t (c1, ..., cN)" and `row` its N values.
  // The errors are those of Querier::exec for that row alone.
  asio::awaitable<Status> insert(std::string head, std::size_t columns, store::Params row);

  // The most rows one statement has carried so far (for tests).
  std::size_t largest_group() const;

 private:
  struct Row;
  struct Group;
  asio::awaitable<void> lead(std::shared_ptr<Group> g, std::shared_ptr<Row> self);
  asio::awaitable<void> write(Group& g, std::vector<std::shared_ptr<Row>>& rows);
  void wake(const std::shared_ptr<Row>& r);

  store::Database& db_;
  mutable std::mutex mu_;
  // By event loop and statement head. A group lives while rows queue or statements run on it.
  std::map<std::pair<const void*, std::string>, std::shared_ptr<Group>> groups_;
  std::size_t largest_ = 0;
};

}  // namespace harmar::data
