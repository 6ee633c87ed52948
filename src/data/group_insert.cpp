#include "data/group_insert.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <deque>

#include "core/log.hpp"

namespace harmar::data {

// One create waiting to be written. Its caller sleeps on `signal` (cancelled to wake it) until
// the row is done or it is asked to lead the next statement; every field is read and written
// under GroupInsert::mu_, on the caller's event loop.
struct GroupInsert::Row {
  Row(const asio::any_io_executor& ex, store::Params p) : signal(ex), params(std::move(p)) {
    signal.expires_at(asio::steady_timer::time_point::max());
  }
  asio::steady_timer signal;
  store::Params params;
  Status result;
  bool done = false;
  bool lead = false;  // woken to run the next statement
};

struct GroupInsert::Group {
  std::pair<const void*, std::string> key;
  std::size_t columns = 0;
  std::deque<std::shared_ptr<Row>> queue;  // not yet taken by a statement
  int in_flight = 0;                       // callers running statements, or woken to
  std::map<std::size_t, std::string> sql;  // the statement for each row count used
};

namespace {

// Row counts a statement takes: a few fixed sizes, so that each connection prepares at most a
// dozen statements per collection instead of one per count. What is left waits for the next one.
constexpr std::size_t kSizes[] = {128, 96, 64, 48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1};

std::size_t statement_rows(std::size_t queued, std::size_t columns) {
  std::size_t cap = std::min(GroupInsert::kMaxRows, std::max<std::size_t>(1, GroupInsert::kMaxParams / columns));
  for (std::size_t n : kSizes)
    if (n <= queued && n <= cap) return n;
  return 0;
}

std::string values_sql(const std::string& head, std::size_t columns, std::size_t rows) {
  std::string sql = head + " VALUES ";
  std::size_t p = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    sql += r ? ", (" : "(";
    for (std::size_t c = 0; c < columns; ++c) {
      sql += c ? ", $" : "$";
      sql += std::to_string(++p);
    }
    sql += ')';
  }
  return sql;
}

}  // namespace

asio::awaitable<Status> GroupInsert::insert(std::string head, std::size_t columns, store::Params values) {
  auto ex = co_await asio::this_coro::executor;
  const void* loop = &asio::query(ex, asio::execution::context);
  auto row = std::make_shared<Row>(ex, std::move(values));
  std::shared_ptr<Group> g;
  {
    std::lock_guard lock(mu_);
    auto key = std::make_pair(loop, std::move(head));
    auto& slot = groups_[key];
    if (!slot) {
      slot = std::make_shared<Group>();
      slot->key = std::move(key);
      slot->columns = columns;
    }
    g = slot;
    g->queue.push_back(row);
    if (g->in_flight < kMaxInFlight) {
      ++g->in_flight;
      row->lead = true;
    }
  }
  for (;;) {
    bool lead = false;
    {
      std::lock_guard lock(mu_);
      if (row->done) co_return std::move(row->result);
      lead = std::exchange(row->lead, false);
    }
    if (lead) {
      co_await this->lead(g, row);
      continue;
    }
    boost::system::error_code woken;
    co_await row->signal.async_wait(asio::redirect_error(asio::use_awaitable, woken));
  }
}

// Runs statements for the group until the caller's own row is written or nothing is queued,
// then hands its turn to a caller still waiting.
asio::awaitable<void> GroupInsert::lead(std::shared_ptr<Group> g, std::shared_ptr<Row> self) {
  for (;;) {
    std::vector<std::shared_ptr<Row>> rows;
    std::shared_ptr<Row> helper;
    {
      std::lock_guard lock(mu_);
      std::size_t n = statement_rows(g->queue.size(), g->columns);
      if (n == 0) {
        if (--g->in_flight == 0) groups_.erase(g->key);
        co_return;
      }
      rows.assign(g->queue.begin(), g->queue.begin() + static_cast<std::ptrdiff_t>(n));
      g->queue.erase(g->queue.begin(), g->queue.begin() + static_cast<std::ptrdiff_t>(n));
      largest_ = std::max(largest_, n);
      // Rows left behind by the fixed sizes need not wait for this statement when there is room.
      if (!g->queue.empty() && g->in_flight < kMaxInFlight) {
        for (auto& r : g->queue) {
          if (r->lead) continue;
          r->lead = true;
          ++g->in_flight;
          helper = r;
          break;
        }
      }
    }
    if (helper) wake(helper);
    try {
      co_await write(*g, rows);
    } catch (const std::exception& e) {
      // No caller may be left waiting for a statement that will never finish.
      log::get("data")->error(log::fields({{"msg", "grouped insert failed"}, {"error", e.what()}}));
      for (auto& r : rows) r->result = Error{500, "internal", "the record was not written", {}};
    }
    std::shared_ptr<Row> next;
    bool finished = false;
    {
      std::lock_guard lock(mu_);
      for (auto& r : rows) r->done = true;
      finished = self->done;
      if (finished) {
        for (auto& r : g->queue) {
          if (r->lead) continue;
          r->lead = true;  // the turn passes on: in_flight stays
          next = r;
          break;
        }
        if (!next && --g->in_flight == 0 && g->queue.empty()) groups_.erase(g->key);
      }
    }
    for (auto& r : rows)
      if (r != self) wake(r);
    if (next) wake(next);
    if (finished) co_return;
  }
}

asio::awaitable<void> GroupInsert::write(Group& g, std::vector<std::shared_ptr<Row>>& rows) {
  auto one = [&](Row& r) -> asio::awaitable<void> {
    std::string sql;
    {
      std::lock_guard lock(mu_);
      auto& s = g.sql[1];
      if (s.empty()) s = values_sql(g.key.second, g.columns, 1);
      sql = s;
    }
    auto n = co_await db_.exec(sql, r.params);
    r.result = n.ok() ? Status{} : Status(std::move(n).error());
  };
  if (rows.size() == 1) {
    co_await one(*rows[0]);
    co_return;
  }
  std::string sql;
  {
    std::lock_guard lock(mu_);
    auto& s = g.sql[rows.size()];
    if (s.empty()) s = values_sql(g.key.second, g.columns, rows.size());
    sql = s;
  }
  store::Params params;
  params.reserve(rows.size() * g.columns);
  for (const auto& r : rows) params.insert(params.end(), r->params.begin(), r->params.end());
  auto n = co_await db_.exec(sql, std::move(params));
  if (n.ok() || n.error().status == 503) {
    // Written, or the database is unavailable to every row alike.
    Status s = n.ok() ? Status{} : Status(n.error());
    for (auto& r : rows) r->result = s;
    co_return;
  }
  // One row spoiled the statement (a unique violation, a value the database refuses): each row
  // again, alone, so that only the rows that fail on their own report an error.
  for (auto& r : rows) co_await one(*r);
}

void GroupInsert::wake(const std::shared_ptr<Row>& r) { r->signal.cancel(); }

std::size_t GroupInsert::largest_group() const {
  std::lock_guard lock(mu_);
  return largest_;
}

}  // namespace harmar::data
