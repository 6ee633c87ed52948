#pragma once
// What an expression means. The SQL compiler (sqlgen.hpp) and the in-memory evaluator here
// implement the same semantics, so a list filtered in SQL and a realtime event filtered in
// memory agree (tests/unit/data/eval_vs_sql_test.cpp checks the two against each other):
//
// - An operand is a field of the collection (system fields id, created_at, updated_at, version
//   included), a JSON path inside a `json` field or inside a document, a literal, or a value of
//   the request (@request.auth.id: the caller's user id, null when anonymous; @request.auth.roles;
//   @request.body.NAME: a top-level value of the request body, null when absent).
// - Comparisons are typed. text/relation/id compare with strings (byte order); number/version
//   with numbers; bool with true/false (= and != only); datetime/created_at/updated_at with
//   RFC 3339 strings or dates ("2026-01-01"); a JSON path with any literal, and it matches only a
//   JSON value of the literal's type. Mixing types in a definition is a 422; a request value of
//   the wrong type makes the comparison false.
// - `x = null` / `x != null` test for null (a JSON path is null when it is missing or JSON
//   null). Otherwise any comparison with a null side is false, `!=` included (SQL's rule): so
//   `owner = @request.auth.id` never matches for an anonymous caller.
// - `a ~ b`: a contains b, ignoring ASCII case; `!~` is its negation when neither side is null.
// - @request.auth.roles: `roles = x` and `roles ~ x` hold when x is one of the roles; `!=` and
//   `!~` when x is not null and none of them.
#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/result.hpp"
#include "data/expr.hpp"
#include "data/model.hpp"

namespace harmar::data {

// What a rule or filter knows about the request.
struct RequestContext {
  std::optional<std::string> auth_id;  // nullopt: anonymous
  std::vector<std::string> roles;
  const js::object* body = nullptr;  // create/update: the request body
};

// A value an operand has at evaluation time.
struct Value {
  enum class Kind : uint8_t { Null, String, Number, Bool, Other };
  Kind kind = Kind::Null;
  std::string s;
  double n = 0;
  bool b = false;

  static Value string(std::string v) { Value x; x.kind = Kind::String; x.s = std::move(v); return x; }
  static Value number(double v) { Value x; x.kind = Kind::Number; x.n = v; return x; }
  static Value boolean(bool v) { Value x; x.kind = Kind::Bool; x.b = v; return x; }
  static Value other() { Value x; x.kind = Kind::Other; return x; }
};

// The type an operand compares as.
enum class ValueType : uint8_t { Text, Number, Bool, Time, Json, File, Any };

// An operand after looking at the collection's schema.
struct Resolved {
  enum class Kind : uint8_t { Column, JsonPath, Const, Roles, Unknown };
  Kind kind = Kind::Const;
  ValueType type = ValueType::Any;
  std::string column;             // Column / JsonPath: the SQL column ("data" for documents)
  std::vector<std::string> path;  // JsonPath: inside the column
  std::string field;              // Column: the field name as the record shows it
  Value value;                    // Const
  bool literal_null = false;      // Const: the literal `null`
  bool from_request = false;      // Const: came from @request (type known only now)
};

// Resolves `o` against `c`. With `ctx` null (checking a definition), request values are Unknown.
Result<Resolved> resolve(const expr::Operand& o, const Collection& c, const RequestContext* ctx,
                         std::string_view where);

// Checks that every path names a field and every comparison is well typed (the 422s above).
Status check(const expr::Node& n, const Collection& c, std::string_view where);

// A literal converted to the type of what it is compared with; nullopt if it does not convert
// (a string that is not a time, a number compared with text...).
std::optional<Value> coerce(const Value& v, ValueType to);

// a OP b for two non-literal-null values (see the semantics above).
bool compare(const Value& a, expr::Op op, const Value& b);
// ASCII lower-casing, the case folding of `~`.
std::string ascii_lower(std::string_view s);
// "2026-01-01", "2026-01-01 10:00:00", "2026-01-01T10:00:00Z", RFC 3339 → Unix ms.
std::optional<int64_t> parse_time(std::string_view s);

// Evaluates `n` on `record` (in its API form: datetimes as RFC 3339 strings, a document's fields
// at the top level). Used for realtime events and cached reads.
bool evaluate(const expr::Node& n, const Collection& c, const js::object& record, const RequestContext& ctx);

// Whether a rule lets `ctx` do `op` on `record` (admins are not special here; callers check).
bool rule_allows(const Rule& r, const Collection& c, const js::object& record, const RequestContext& ctx);

}  // namespace harmar::data
