#pragma once
// Expressions (expr.hpp) compiled to SQL with the semantics of eval.hpp, for SQLite, PostgreSQL
// and MariaDB/MySQL. Nothing from the input is ever put into the SQL text: values become
// placeholders ($1..$N, appended to SqlParams), and a name becomes a double-quoted identifier
// only after it was found in the collection's schema (names are [a-z_][a-z0-9_]*, so quoting
// needs no escaping). Everything else in the output is our own fixed text.
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "data/eval.hpp"
#include "data/model.hpp"
#include "store/sql.hpp"

namespace harmar::data {

enum class Dialect : uint8_t { Sqlite, Postgres, Mysql };
Dialect dialect_of(const store::Database& db);

// Placeholders for one statement: add() appends a value and answers its "$N".
class SqlParams {
 public:
  explicit SqlParams(Dialect d = Dialect::Sqlite) : dialect(d) {}
  std::string add(store::Param p);
  std::size_t size() const { return params.size(); }
  Dialect dialect;
  store::Params params;
};

// "name" (the caller has validated `name` as a field, system field or our own column name).
std::string quote_ident(std::string_view name);

// `n` as a boolean SQL expression over the collection's table, for `ctx`.
Result<std::string> compile(const expr::Node& n, const Collection& c, Dialect d, const RequestContext& ctx,
                            SqlParams& params);

// A rule as SQL: "" for anyone (no condition); an error-free "(1=0)" for admins-only (callers
// decide admins before asking).
Result<std::string> compile_rule(const Rule& r, const Collection& c, Dialect d, const RequestContext& ctx,
                                 SqlParams& params);

inline constexpr std::string_view kTrue = "(1=1)";
inline constexpr std::string_view kFalse = "(1=0)";

}  // namespace harmar::data
