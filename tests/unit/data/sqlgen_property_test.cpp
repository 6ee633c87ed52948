// Property tests of the SQL the expression compiler produces: for random well-formed expressions
// (with hostile literals) and for random junk, the SQL holds only quoted names the collection
// defines, placeholders, and our own fixed words: never a byte of the input.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <cctype>
#include <random>
#include <set>

#include "data/eval.hpp"
#include "data/sqlgen.hpp"
#include "data_fixtures.hpp"

namespace harmar::data {
namespace {

using testing_support::document_collection;
using testing_support::table_collection;

// The SQL the compiler may write besides names and placeholders.
const std::set<std::string> kWords = {
    "AND", "OR", "NOT", "IS", "NULL", "IN", "CASE", "WHEN", "THEN", "END", "COLLATE",
    // SQLite
    "instr", "lower", "json_type", "json_extract",
    // PostgreSQL
    "strpos", "jsonb_typeof", "float8", "text", "jsonb", "boolean",
    // MariaDB / MySQL
    "LOCATE", "LOWER", "JSON_TYPE", "JSON_EXTRACT", "JSON_UNQUOTE", "COALESCE", "utf8mb4_nopad_bin"};
const std::set<std::string> kLiterals = {"'text'", "'integer'", "'real'", "'true'", "'false'", "'string'",
                                         "'number'", "'boolean'", "'STRING'", "'INTEGER'", "'DOUBLE'",
                                         "'UNSIGNED INTEGER'", "'BOOLEAN'", "'NULL'"};
const std::set<std::string> kPunct = {"(", ")", ",", "=", "<>", "<", "<=", ">", ">=", "#>", "#>>", "@>", "::", "[", "]", "+"};
const std::set<std::string> kNumbers = {"1", "0", "0e0"};

// Splits SQL into tokens and checks each against the allowed sets; returns the first offender.
std::optional<std::string> foreign_token(const std::string& sql, const std::set<std::string>& idents, std::size_t nparams) {
  std::size_t i = 0;
  while (i < sql.size()) {
    char c = sql[i];
    if (c == ' ') {
      ++i;
      continue;
    }
    if (c == '"') {
      auto end = sql.find('"', i + 1);
      if (end == std::string::npos) return sql.substr(i);
      std::string name = sql.substr(i + 1, end - i - 1);
      if (!idents.count(name) && name != "C") return "\"" + name + "\"";
      i = end + 1;
      continue;
    }
    if (c == '\'') {
      auto end = sql.find('\'', i + 1);
      if (end == std::string::npos) return sql.substr(i);
      std::string lit = sql.substr(i, end - i + 1);
      if (!kLiterals.count(lit)) return lit;
      i = end + 1;
      continue;
    }
    if (c == '$') {
      std::size_t j = i + 1;
      while (j < sql.size() && std::isdigit(static_cast<unsigned char>(sql[j]))) ++j;
      if (j == i + 1) return std::string("$");
      std::size_t n = std::stoul(sql.substr(i + 1, j - i - 1));
      if (n < 1 || n > nparams) return sql.substr(i, j - i);
      i = j;
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      std::size_t j = i;
      while (j < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[j])) || sql[j] == '_')) ++j;
      std::string w = sql.substr(i, j - i);
      if (!kWords.count(w)) return w;
      i = j;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      std::size_t j = i;
      while (j < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[j])))) ++j;
      std::string w = sql.substr(i, j - i);
      if (!kNumbers.count(w)) return w;
      i = j;
      continue;
    }
    bool matched = false;
    for (std::size_t len : {3u, 2u, 1u}) {
      if (i + len <= sql.size() && kPunct.count(sql.substr(i, len))) {
        i += len;
        matched = true;
        break;
      }
    }
    if (!matched) return sql.substr(i, 1);
  }
  return std::nullopt;
}

std::set<std::string> identifiers(const Collection& c) {
  std::set<std::string> s;
  for (auto f : kSystemFields) s.emplace(f);
  for (const auto& f : c.fields) s.insert(f.name);
  if (c.document) {
    s.insert("data");
    for (const auto& idx : c.indexes) s.insert(path_column(idx[0]));
  }
  return s;
}

// Strings meant to escape a naive compiler.
const char* const kHostile[] = {"'; DROP TABLE c_notes; --", "\" OR 1=1 --", "$1", "?1", "%", "_", "\\",
                                "a' || 'b", "*/ /*", "\"title\"", "NULL", "h\xC3\xA9", "", " ", "'", "''",
                                "owner) OR (1=1", "x\ny", "@request.auth.id", "`", "0x00", "$$", "::text"};

class Gen {
 public:
  explicit Gen(uint32_t seed, const Collection& c) : rng_(seed), c_(c) {}

  std::string expression(int depth = 0) {
    int pick = pick_int(0, depth > 3 ? 0 : 4);
    if (pick <= 2) return comparison();
    std::string sep = pick == 3 ? " && " : " || ";
    int n = pick_int(2, 3);
    std::string out = "(";
    for (int i = 0; i < n; ++i) {
      if (i) out += sep;
      out += expression(depth + 1);
    }
    return out + ")";
  }

  std::string comparison() {
    static const char* ops[] = {"=", "!=", ">", ">=", "<", "<=", "~", "!~"};
    std::string op = ops[pick_int(0, 7)];
    std::string lhs = operand();
    std::string rhs = operand();
    if (pick_int(0, 1)) std::swap(lhs, rhs);
    return lhs + " " + op + " " + rhs;
  }

  std::string operand() {
    switch (pick_int(0, 9)) {
      case 0: case 1: case 2: return path();
      case 3: return quote(kHostile[pick_int(0, sizeof(kHostile) / sizeof(kHostile[0]) - 1)]);
      case 4: return quote(random_text());
      case 5: return std::to_string(pick_int(-1000, 1000)) + (pick_int(0, 1) ? ".5" : "");
      case 6: return pick_int(0, 1) ? "true" : "false";
      case 7: return "null";
      case 8: return pick_int(0, 1) ? "@request.auth.id" : "@request.auth.roles";
      default: return "@request.body." + path_segment();
    }
  }

  std::string path() {
    if (c_.document || pick_int(0, 4) == 0) {
      std::string p = path_segment();
      for (int i = pick_int(0, 2); i > 0; --i) p += "." + path_segment();
      return p;
    }
    int k = pick_int(0, static_cast<int>(c_.fields.size()) + 3);
    if (k < 4) return std::string(kSystemFields[k]);
    const Field& f = c_.fields[k - 4];
    if (f.type == FieldType::Json && pick_int(0, 1)) return f.name + "." + path_segment();
    return f.name;
  }

  std::string path_segment() {
    static const char* names[] = {"title", "a", "b", "meta", "color", "address", "city", "Count", "_x", "drop"};
    return names[pick_int(0, 9)];
  }

  std::string random_text() {
    std::string s;
    for (int i = pick_int(0, 12); i > 0; --i) s += static_cast<char>(pick_int(0x20, 0x7e));
    return s;
  }

  static std::string quote(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    return out + "\"";
  }

  std::string junk() {
    static const char* pieces[] = {"(", ")", "&&", "||", "=", "!=", "~", "!~", "<", ">=", "\"", "'", "@request",
                                   ".auth", ".id", "title", "null", "1", "-", ".", "e9", "\\", "$1", ";", "--",
                                   " ", "\xC3", "\xFF", "@", "\n", "true", "meta.a"};
    std::string s;
    for (int i = pick_int(1, 20); i > 0; --i) {
      if (pick_int(0, 5) == 0) s += static_cast<char>(pick_int(0, 255));
      else s += pieces[pick_int(0, sizeof(pieces) / sizeof(pieces[0]) - 1)];
    }
    return s;
  }

  int pick_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

 private:
  std::mt19937 rng_;
  const Collection& c_;
};

RequestContext hostile_context(Gen& g) {
  static boost::json::object body = {{"title", "'; DROP TABLE x; --"}, {"a", 5}, {"b", true}, {"meta", nullptr}};
  RequestContext ctx;
  if (g.pick_int(0, 2)) ctx.auth_id = "\" OR 1=1 --";
  if (g.pick_int(0, 1)) ctx.roles = {"admin'--", "editor", "\"x\""};
  ctx.body = &body;
  return ctx;
}

void expect_clean(const std::string& text, const Collection& c, Gen& g, int& compiled) {
  auto n = expr::parse(text);
  if (!n) return;
  EXPECT_EQ(*expr::parse(expr::to_string(*n)), *n) << text;
  auto idents = identifiers(c);
  for (Dialect d : {Dialect::Sqlite, Dialect::Postgres, Dialect::Mysql}) {
    RequestContext ctx = hostile_context(g);
    SqlParams params;
    auto sql = compile(*n, c, d, ctx, params);
    if (!sql) {
      EXPECT_EQ(sql.error().status, 422) << text;
      continue;
    }
    ++compiled;
    auto bad = foreign_token(*sql, idents, params.size());
    EXPECT_FALSE(bad.has_value()) << "foreign token " << bad.value_or("") << " in\n" << *sql << "\nfrom " << text;
    // Every literal travels as a parameter, never as text.
    for (const char* h : kHostile) {
      std::string s(h);
      if (s.size() >= 4 && s != "NULL" && s != "\"title\"" && s != "::text") {
        EXPECT_EQ(sql->find(s), std::string::npos) << s << " in " << *sql;
      }
    }
  }
}

TEST(DataSqlgenProperty, random_expressions_compile_to_sql_of_known_names_placeholders_and_our_words) {
  for (const Collection* c : {&table_collection(), &document_collection()}) {
    Gen g(1234, *c);
    int compiled = 0;
    for (int i = 0; i < 4000; ++i) expect_clean(g.expression(), *c, g, compiled);
    EXPECT_GT(compiled, 1000) << "too few generated expressions were well typed to prove anything";
  }
}

TEST(DataSqlgenProperty, random_junk_is_refused_or_compiles_to_clean_sql) {
  for (const Collection* c : {&table_collection(), &document_collection()}) {
    Gen g(99, *c);
    int compiled = 0;
    for (int i = 0; i < 20000; ++i) expect_clean(g.junk(), *c, g, compiled);
  }
}

TEST(DataSqlgenProperty, field_names_outside_the_schema_are_refused) {
  const Collection& c = table_collection();
  RequestContext ctx;
  for (const char* text : {"nope = 1", "title.x = \"a\"", "id.x = 1", "sqlite_master = 1", "c_notes = 1"}) {
    auto n = expr::parse(text);
    ASSERT_TRUE(n.ok()) << text;
    SqlParams p;
    auto sql = compile(*n, c, Dialect::Sqlite, ctx, p);
    ASSERT_FALSE(sql.ok()) << text << " → " << *sql;
    EXPECT_EQ(sql.error().code, "invalid_expression");
  }
}

TEST(DataSqlgenProperty, typed_comparisons_refuse_mixed_types_at_definition) {
  const Collection& c = table_collection();
  for (const char* text : {"title = 1", "count = \"1\"", "done > true", "done = 1", "when = \"yesterday\"",
                           "meta = 1", "attachment = \"x\"", "count ~ 1", "@request.auth.roles > \"a\"",
                           "@request.auth.roles = count", "meta.a > true", "meta.a ~ 1", "title = meta.a",
                           "title < null"}) {
    auto n = expr::parse(text);
    ASSERT_TRUE(n.ok()) << text;
    EXPECT_FALSE(check(*n, c, "filter").ok()) << text;
  }
  for (const char* text : {"title = \"1\"", "count >= 1", "done = true", "when > \"2026-01-01\"",
                           "when < \"2026-01-01T10:00:00+02:00\"", "meta = null", "attachment != null",
                           "meta.a > 1", "meta.a ~ \"x\"", "title = other", "@request.auth.roles ~ title",
                           "created_at > \"2026-01-01\"", "version = 3", "id = @request.auth.id"}) {
    auto n = expr::parse(text);
    ASSERT_TRUE(n.ok()) << text;
    auto st = check(*n, c, "filter");
    EXPECT_TRUE(st.ok()) << text << ": " << (st.ok() ? "" : st.error().detail);
  }
}

}  // namespace
}  // namespace harmar::data
