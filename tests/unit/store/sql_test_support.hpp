#pragma once
// Helpers for the SQL store tests: a fresh database of either backend per test, and assertions
// that work inside coroutines (gtest's ASSERT_* `return`, which a coroutine cannot).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include <cctype>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "store/sql.hpp"
#include "support/test_support.hpp"

namespace harmar::store {
inline const char* backend_name(Backend b) {
  return b == Backend::Sqlite ? "Sqlite" : b == Backend::Postgres ? "Postgres" : "Mariadb";
}
// Names the backend in gtest output and test names ("…/Sqlite", "…/Postgres", "…/Mariadb").
inline void PrintTo(Backend b, std::ostream* os) { *os << backend_name(b); }
}  // namespace harmar::store

namespace harmar::store::sqltest {

namespace asio = boost::asio;

// Fails the test and leaves the coroutine when `expr` (a Result/Status) is an error.
#define SQL_CO_ASSERT_OK(expr)                                                                   \
  do {                                                                                           \
    auto&& sql_co_r_ = (expr);                                                                   \
    if (!sql_co_r_.ok()) {                                                                       \
      ADD_FAILURE() << #expr << " failed: " << sql_co_r_.error().status << " "                  \
                    << sql_co_r_.error().code << " " << sql_co_r_.error().detail;                \
      co_return;                                                                                 \
    }                                                                                            \
  } while (0)

// `auto& var = value of expr`, or fail the test and leave the coroutine.
#define SQL_CO_ASSIGN_OK(var, expr)                                                              \
  auto var##_result_ = (expr);                                                                   \
  if (!var##_result_.ok()) {                                                                     \
    ADD_FAILURE() << #expr << " failed: " << var##_result_.error().status << " "                \
                  << var##_result_.error().code << " " << var##_result_.error().detail;          \
    co_return;                                                                                   \
  }                                                                                              \
  auto& var = *var##_result_

// A name for the running test usable as a file name or a PostgreSQL schema (<= 63 bytes).
inline std::string test_slug() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string raw = std::string(info->test_suite_name()) + "_" + info->name();
  std::string out;
  for (char c : raw) out += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
  if (out.size() > 50) out = out.substr(0, 40) + "_" + std::to_string(std::hash<std::string>{}(out) % 1000000000);
  return "t_" + out;
}

// A new, empty MariaDB database `name` on HARMAR_TEST_MARIADB_URL's server, and its URL.
inline std::string fresh_mariadb_url(const std::string& name) {
  std::string base = harmar::testing::require_env("HARMAR_TEST_MARIADB_URL");
  auto db = Database::open(base);
  if (!db.ok()) throw std::runtime_error("cannot open " + base + ": " + db.error().detail);
  std::string script = "DROP DATABASE IF EXISTS \"" + name + "\"; CREATE DATABASE \"" + name +
                       "\" DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_nopad_bin";
  auto st = harmar::testing::run((*db)->exec_script(script));
  if (!st.ok()) throw std::runtime_error("cannot create database " + name + ": " + st.error().detail);
  return base.substr(0, base.rfind('/') + 1) + name;
}

// A URL of an empty database of backend `b`: a new SQLite file, a new PostgreSQL schema or a new
// MariaDB database.
inline std::string fresh_url(Backend b) {
  if (b == Backend::Postgres) return harmar::testing::fresh_pg_schema_url(test_slug());
  if (b == Backend::Mysql) return fresh_mariadb_url(test_slug());
  std::string path = harmar::testing::temp_dir() + "/" + test_slug() + ".db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);  // --gtest_repeat
  return "sqlite://" + path;
}

inline std::unique_ptr<Database> open_or_fail(const std::string& url, const Database::Options& opts = {}) {
  auto db = Database::open(url, opts);
  if (!db) {
    ADD_FAILURE() << "cannot open " << url << ": " << db.error().detail;
    throw std::runtime_error("cannot open database");
  }
  return std::move(db).value();
}

// Runs a coroutine returning void to completion on a private io_context.
inline void run(asio::awaitable<void> aw) { harmar::testing::run(std::move(aw)); }

// Lets every other ready handler of this executor run once.
inline asio::awaitable<void> yield() {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
}

// co_spawn's completion handler that fails the test if the coroutine threw.
inline auto fail_on_exception(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      ADD_FAILURE() << what << " threw: " << ex.what();
    }
  };
}

// The suite that runs against both backends.
class BackendTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    url_ = fresh_url(GetParam());
    db_ = open_or_fail(url_);
  }

  std::unique_ptr<Database> open(const Database::Options& opts = {}) const { return open_or_fail(url_, opts); }
  bool pg() const { return GetParam() == Backend::Postgres; }
  bool mysql() const { return GetParam() == Backend::Mysql; }
  // The DDL (or other backend-specific SQL) for the backend under test; MariaDB takes the SQLite
  // form unless it has its own.
  std::string pick(std::string sqlite, std::string postgres) const { return pg() ? postgres : sqlite; }
  std::string pick(std::string sqlite, std::string postgres, std::string mysql) const {
    return pg() ? postgres : this->mysql() ? mysql : sqlite;
  }

  std::string url_;
  std::unique_ptr<Database> db_;
};

inline std::string param_name(const ::testing::TestParamInfo<Backend>& info) { return backend_name(info.param); }

}  // namespace harmar::store::sqltest
