// The backend-independent pieces: Row conversions, Params, placeholder rewriting, URL redaction,
// the statement cache.
#include <boost/asio/awaitable.hpp>
#include <gtest/gtest.h>

#include <limits>

#include "store/detail/lru.hpp"
#include "store/detail/sql_common.hpp"
#include "store/sql.hpp"

namespace harmar::store {
namespace {

Rows one_row(std::vector<Rows::Cell> cells) {
  std::vector<std::string> columns;
  for (std::size_t i = 0; i < cells.size(); ++i) columns.push_back("c" + std::to_string(i));
  return Rows(std::move(columns), std::move(cells), 0);
}

TEST(SqlRow, text_cells_convert_like_native_ones) {
  Rows rows = one_row({std::string("t"), std::string("f"), std::string("42"), std::string("-1.5"),
                       std::string("true"), std::string("0"), std::string(" 17 "), std::string("abc")});
  Row r = rows.front();
  EXPECT_TRUE(r.boolean(0));
  EXPECT_FALSE(r.boolean(1));
  EXPECT_EQ(r.integer(2), 42);
  EXPECT_EQ(r.real(3), -1.5);
  EXPECT_EQ(r.integer(3), -1) << "a numeric text truncates like a cast";
  EXPECT_TRUE(r.boolean(4));
  EXPECT_FALSE(r.boolean(5));
  EXPECT_EQ(r.integer(6), 17);
  EXPECT_EQ(r.integer(7), 0) << "not a number";
  EXPECT_EQ(r.integer(0), 1) << "a PostgreSQL 't' read as a number";
}

TEST(SqlRow, native_cells_convert_to_text_and_back) {
  Rows rows = one_row({int64_t{1}, int64_t{0}, 2.5, std::monostate{}, std::numeric_limits<int64_t>::min()});
  Row r = rows.front();
  EXPECT_TRUE(r.boolean(0));
  EXPECT_FALSE(r.boolean(1));
  EXPECT_EQ(r.text(0), "1");
  EXPECT_EQ(r.text(2), "2.5");
  EXPECT_EQ(r.real(0), 1.0);
  EXPECT_EQ(r.integer(2), 2);
  EXPECT_TRUE(r.is_null(3));
  EXPECT_EQ(r.opt_integer(3), std::nullopt);
  EXPECT_EQ(r.opt_text(3), std::nullopt);
  EXPECT_EQ(r.text(4), "-9223372036854775808");
  EXPECT_EQ(r.size(), 5u);
}

TEST(SqlRow, rows_index_and_iterate) {
  Rows rows({"a", "b"}, {int64_t{1}, std::string("x"), int64_t{2}, std::string("y")}, 0);
  EXPECT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows.column("b"), std::optional<std::size_t>(1));
  std::string seen;
  for (Row r : rows) seen += std::to_string(r.integer(0)) + r.text(1);
  EXPECT_EQ(seen, "1x2y");
  EXPECT_TRUE(Rows().empty());
  EXPECT_TRUE(Rows({"a"}, {}, 3).empty());
  EXPECT_EQ(Rows({}, {}, 3).affected(), 3);
}

// Compiles only if a braced parameter list works inside co_await on this compiler.
asio::awaitable<void> braced_params_in_co_await(Querier& q, std::string email) {
  (void)co_await q.query("SELECT $1, $2, $3, $4, $5, $6", {email, 1, 2.5, true, nullptr, Bytes{"b"}});
  (void)co_await q.exec("SELECT 1");
}

TEST(SqlParams, a_braced_list_builds_each_kind) {
  (void)&braced_params_in_co_await;
  Params p{std::string("s"), 7, 2.5, false, nullptr, Bytes{"raw"}, "literal"};
  ASSERT_EQ(p.size(), 7u);
  EXPECT_TRUE(std::holds_alternative<std::string>(p[0]));
  EXPECT_EQ(std::get<int64_t>(p[1]), 7);
  EXPECT_TRUE(std::holds_alternative<double>(p[2]));
  EXPECT_TRUE(std::holds_alternative<bool>(p[3]));
  EXPECT_TRUE(std::holds_alternative<std::nullptr_t>(p[4]));
  EXPECT_TRUE(std::holds_alternative<Bytes>(p[5]));
  EXPECT_EQ(std::get<std::string>(p[6]), "literal");
  std::vector<Param> v{Param(int64_t{1})};
  Params from_vector = v;
  EXPECT_EQ(from_vector.size(), 1u);
  EXPECT_TRUE(Params{}.empty());
  EXPECT_TRUE(std::holds_alternative<std::nullptr_t>(nullable(std::optional<int64_t>())));
  EXPECT_EQ(std::get<int64_t>(nullable(std::optional<int64_t>(5))), 5);
}

TEST(SqlPlaceholders, dollar_numbers_become_question_numbers_outside_quotes_and_comments) {
  using detail::sqlite_placeholders;
  EXPECT_EQ(sqlite_placeholders("SELECT $1, $2"), "SELECT ?1, ?2");
  EXPECT_EQ(sqlite_placeholders("WHERE a = $12 AND b = $2"), "WHERE a = ?12 AND b = ?2");
  EXPECT_EQ(sqlite_placeholders("SELECT '$1', $1"), "SELECT '$1', ?1");
  EXPECT_EQ(sqlite_placeholders("SELECT 'it''s $1', $1"), "SELECT 'it''s $1', ?1");
  EXPECT_EQ(sqlite_placeholders("SELECT \"$1\", [$2], `$3`, $4"), "SELECT \"$1\", [$2], `$3`, ?4");
  EXPECT_EQ(sqlite_placeholders("SELECT $1 -- $2\n, $3"), "SELECT ?1 -- $2\n, ?3");
  EXPECT_EQ(sqlite_placeholders("SELECT /* $1 */ $2"), "SELECT /* $1 */ ?2");
  EXPECT_EQ(sqlite_placeholders("SELECT $name, $, $$"), "SELECT $name, $, $$");
  EXPECT_EQ(sqlite_placeholders("SELECT 'unterminated $1"), "SELECT 'unterminated $1");
  EXPECT_EQ(sqlite_placeholders("SELECT 1 /* open $1"), "SELECT 1 /* open $1");
}

TEST(SqlPlaceholders, blank_tails_are_whitespace_semicolons_and_comments) {
  EXPECT_TRUE(detail::is_blank_sql(""));
  EXPECT_TRUE(detail::is_blank_sql(" ;\n -- trailing\n /* c */ ;"));
  EXPECT_FALSE(detail::is_blank_sql("; SELECT 2"));
}

TEST(SqlUrl, redaction_removes_passwords_only) {
  using detail::redact_url;
  EXPECT_EQ(redact_url("postgres://app:pw@db:5432/x"), "postgres://app@db:5432/x");
  EXPECT_EQ(redact_url("postgres://app@db/x"), "postgres://app@db/x");
  EXPECT_EQ(redact_url("postgres://db/x?password=pw"), "postgres://db/x");
  EXPECT_EQ(redact_url("postgres://db/x?sslmode=require&password=pw&application_name=a"),
            "postgres://db/x?sslmode=require&application_name=a");
  EXPECT_EQ(redact_url("postgres://a:b:c@db/x?options=-csearch_path%3Ds"), "postgres://a@db/x?options=-csearch_path%3Ds");
  EXPECT_EQ(redact_url("sqlite://./data/harmar.db"), "sqlite://./data/harmar.db");
}

TEST(SqlLru, evicts_the_least_recently_used) {
  detail::LruCache<int> cache(2);
  EXPECT_FALSE(cache.put("a", 1));
  EXPECT_FALSE(cache.put("b", 2));
  ASSERT_NE(cache.get("a"), nullptr);  // a is now the most recent
  auto evicted = cache.put("c", 3);
  ASSERT_TRUE(evicted);
  EXPECT_EQ(evicted->first, "b");
  EXPECT_EQ(evicted->second, 2);
  EXPECT_EQ(cache.get("b"), nullptr);
  EXPECT_EQ(*cache.get("c"), 3);
  EXPECT_EQ(cache.take("a"), std::optional<int>(1));
  EXPECT_EQ(cache.size(), 1u);
  int cleared = 0;
  cache.clear([&](int v) { cleared += v; });
  EXPECT_EQ(cleared, 3);
  EXPECT_EQ(cache.size(), 0u);
}

}  // namespace
}  // namespace harmar::store
