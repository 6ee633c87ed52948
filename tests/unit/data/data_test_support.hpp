#pragma once
// A fresh data module per test on a real database of each backend (SQLite file, PostgreSQL
// schema, MariaDB database), driven synchronously: each call runs its coroutine to the end on one
// io_context the test keeps, so PostgreSQL connections are reused across calls.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "data/collections.hpp"
#include "data/migrations.hpp"
#include "data/records.hpp"
#include "store/blobs.hpp"
#include "support/test_support.hpp"

namespace harmar::data::testing_support {

namespace asio = boost::asio;
namespace js = boost::json;

// Always all three: gtest_discover_tests lists the tests at build time, when the services'
// URLs are not in the environment, so a backend chosen by environment would never be run by
// ctest. A MariaDB case without HARMAR_TEST_MARIADB_URL fails and says why.
inline std::vector<std::string> backends() { return {"sqlite", "postgres", "mariadb"}; }

std::string fresh_mariadb_url(const std::string& name);

inline std::string slug() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string raw = std::string(info->test_suite_name()) + "_" + info->name();
  std::string out;
  for (char c : raw) out += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
  if (out.size() > 50) out = out.substr(out.size() - 50);
  return "t" + out;
}

inline Caller user(const std::string& id, std::vector<std::string> roles = {"user"}) {
  Caller c;
  Principal p;
  p.kind = Principal::Kind::User;
  p.id = p.user_id = id;
  p.roles = std::move(roles);
  c.who = p;
  return c;
}
inline Caller admin() {
  Caller c = user("admin-1", {"admin"});
  c.admin = true;
  return c;
}
inline Caller anonymous() { return Caller{}; }

class DataTest : public ::testing::TestWithParam<std::string> {
 public:
  void SetUp() override {
    std::string backend = GetParam();
    std::string name = slug();
    std::string url;
    if (backend == "sqlite") url = "sqlite://" + harmar::testing::temp_dir() + "/" + name + ".db";
    else if (backend == "postgres") url = harmar::testing::fresh_pg_schema_url(name);
    else url = fresh_mariadb_url(name);
    auto opened = store::Database::open(url);
    ASSERT_TRUE(opened.ok()) << opened.error().detail;
    db = std::move(*opened);
    std::vector<store::ModuleMigrations> m{{"data", migrations()}};
    auto migrated = run(store::migrate(*db, m));
    ASSERT_TRUE(migrated.ok()) << migrated.error().detail;
    auto b = store::BlobStore::open("", harmar::testing::temp_dir() + "/" + name);
    ASSERT_TRUE(b.ok()) << b.error().detail;
    blobs = std::move(*b);
    registry = std::make_unique<Registry>();
    collections = std::make_unique<Collections>(*db, nullptr, *registry);
    records = std::make_unique<Records>(*db, *collections, *blobs, settings());
    records->set_publisher([this](std::string c, std::string type, js::object record) -> asio::awaitable<void> {
      events.push_back({std::move(c), std::move(type), std::move(record)});
      co_return;
    });
  }

  void TearDown() override {
    records.reset();
    collections.reset();
    blobs.reset();
    db.reset();
  }

  virtual RecordSettings settings() { return RecordSettings{}; }

  template <class T>
  T run(asio::awaitable<T> aw) {
    auto wrap = [](asio::awaitable<T> a) -> asio::awaitable<std::optional<T>> { co_return co_await std::move(a); };
    ioc.restart();
    auto fut = asio::co_spawn(ioc, wrap(std::move(aw)), asio::use_future);
    ioc.run();
    return std::move(*fut.get());
  }

  // Creates a collection from its JSON definition (the test fails if it cannot).
  Collection define(std::string_view json) {
    auto c = parse_collection(js::parse(json).as_object());
    if (!c.ok()) {
      ADD_FAILURE() << c.error().detail << (c.error().errors.empty() ? "" : ": " + c.error().errors[0].field + " " + c.error().errors[0].message);
      return {};
    }
    std::vector<Change> changes(1);
    changes[0].after = *c;
    auto plan = run(collections->apply(std::move(changes), "test", false));
    EXPECT_TRUE(plan.ok()) << (plan.ok() ? "" : plan.error().detail);
    return *c;
  }

  js::object create(const std::string& coll, const Caller& who, std::string_view body) {
    auto r = run(records->create(coll, who, js::parse(body).as_object()));
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail + (r.error().errors.empty() ? "" : ": " + r.error().errors[0].field + " " + r.error().errors[0].message));
    return r.ok() ? *r : js::object{};
  }

  // Every record a caller lists (following cursors), with `limit` per page.
  std::vector<js::object> list_all(const std::string& coll, const Caller& who, std::optional<std::string> filter = {},
                                   std::optional<std::string> sort = {}, int limit = 50) {
    std::vector<js::object> out;
    ListQuery q;
    q.filter = filter;
    q.sort = sort;
    q.limit = limit;
    for (int pages = 0; pages < 1000; ++pages) {
      auto page = run(records->list(coll, who, q));
      EXPECT_TRUE(page.ok()) << (page.ok() ? "" : page.error().detail);
      if (!page.ok()) break;
      for (auto& v : page->items) out.push_back(v.as_object());
      if (!page->next) break;
      q.after = page->next;
    }
    return out;
  }

  static std::string id_of(const js::object& r) { return std::string(r.at("id").as_string()); }

  asio::io_context ioc;  // declared first: destroyed after the database's connections
  std::unique_ptr<store::Database> db;
  std::unique_ptr<store::BlobStore> blobs;
  std::unique_ptr<Registry> registry;
  std::unique_ptr<Collections> collections;
  std::unique_ptr<Records> records;
  std::vector<Records::Event> events;
};

}  // namespace harmar::data::testing_support
