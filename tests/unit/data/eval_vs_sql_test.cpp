// The two implementations of the expression semantics agree: for random records and random
// well-typed expressions, the records the SQL selects (list filters, list/view rules) are exactly
// those the in-memory evaluator accepts (realtime filters, cached reads, create rules).
#include <fmt/format.h>

#include <random>
#include <set>

#include "data/eval.hpp"
#include "data/sqlgen.hpp"
#include "data_test_support.hpp"

namespace harmar::data::testing_support {
namespace {

const char* const kStrings[] = {"abc", "Abc", "ABC", "", "b", "ab", "é", "Zed", "a%", "_", "x y"};
const char* const kDates[] = {"2026-01-01", "2026-01-01T12:00:00Z", "2025-12-31 23:59:59", "2026-06-15T00:00:00+02:00"};

class Random {
 public:
  explicit Random(uint32_t seed) : rng_(seed) {}
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool coin() { return pick(0, 1) == 1; }
  std::string str() { return kStrings[pick(0, std::size(kStrings) - 1)]; }
  std::string quoted() { return "\"" + str() + "\""; }
  std::string number() { return std::to_string(pick(-2, 2)) + (pick(0, 3) == 0 ? ".5" : ""); }
  js::value json_scalar() {
    switch (pick(0, 5)) {
      case 0: return nullptr;
      case 1: return js::value(str());
      case 2: return js::value(pick(-2, 2));
      case 3: return js::value(pick(-2, 2) + 0.5);
      case 4: return js::value(coin());
      default: return js::array{1, "x"};
    }
  }

 private:
  std::mt19937 rng_;
};

std::string table_comparison(Random& r) {
  static const char* ops[] = {"=", "!=", ">", ">=", "<", "<=", "~", "!~"};
  std::string op = ops[r.pick(0, 7)];
  std::string eq = r.coin() ? "=" : "!=";
  switch (r.pick(0, 11)) {
    case 0: return "title " + op + " " + (r.coin() ? r.quoted() : "other");
    case 1: return r.quoted() + " " + op + " title";
    case 2: return "count " + std::string(ops[r.pick(0, 5)]) + " " + (r.coin() ? r.number() : "version");
    case 3: return "done " + eq + " " + (r.coin() ? "true" : r.coin() ? "false" : "null");
    case 4: return "when " + std::string(ops[r.pick(0, 5)]) + " \"" + kDates[r.pick(0, 3)] + "\"";
    case 5: return "meta " + eq + " null";
    case 6: {
      std::string path = r.coin() ? "meta.a" : "meta.b.c";
      switch (r.pick(0, 3)) {
        case 0: return path + " " + op + " " + r.quoted();
        case 1: return path + " " + ops[r.pick(0, 5)] + " " + r.number();
        case 2: return path + " " + eq + " " + (r.coin() ? "true" : "false");
        default: return path + " " + eq + " null";
      }
    }
    case 7: return "title " + eq + " @request.auth.id";
    case 8: return "@request.auth.roles " + std::string(r.coin() ? "~" : "!~") + " " + (r.coin() ? "title" : r.quoted());
    case 9: return "title " + op + " @request.body.title";
    case 10: return "count " + std::string(ops[r.pick(0, 5)]) + " @request.body.count";
    default: return "other " + eq + " null";
  }
}

std::string document_comparison(Random& r) {
  static const char* ops[] = {"=", "!=", ">", ">=", "<", "<=", "~", "!~"};
  static const char* paths[] = {"a.b", "c", "title", "a.z", "a"};
  std::string path = paths[r.pick(0, 4)];
  std::string eq = r.coin() ? "=" : "!=";
  switch (r.pick(0, 4)) {
    case 0: return path + " " + ops[r.pick(0, 7)] + " " + r.quoted();
    case 1: return path + " " + ops[r.pick(0, 5)] + " " + r.number();
    case 2: return path + " " + eq + " " + (r.coin() ? "true" : "false");
    case 3: return path + " " + eq + " null";
    default: return "version " + std::string(ops[r.pick(0, 5)]) + " 1";
  }
}

std::string expression(Random& r, bool document, int depth = 0) {
  int k = r.pick(0, depth >= 2 ? 0 : 3);
  if (k <= 1) return document ? document_comparison(r) : table_comparison(r);
  std::string sep = k == 2 ? " && " : " || ";
  return "(" + expression(r, document, depth + 1) + sep + expression(r, document, depth + 1) + ")";
}

using EvalVsSql = DataTest;

void compare_on(DataTest& t, const std::string& coll, bool document, uint32_t seed) {
  auto entry = t.run(t.collections->get(coll));
  ASSERT_TRUE(entry.ok());
  const Collection& c = (*entry)->c;
  auto records = t.list_all(coll, admin(), std::nullopt, std::nullopt, 200);
  ASSERT_GT(records.size(), 20u);
  Random r(seed);
  int checked = 0, matched_some = 0;
  Dialect d = dialect_of(*t.db);
  for (int i = 0; i < 400; ++i) {
    std::string text = expression(r, document);
    auto n = expr::parse(text);
    ASSERT_TRUE(n.ok()) << text << ": " << n.error().detail;
    if (!check(*n, c, "filter").ok()) continue;
    js::object body{{"title", r.str()}, {"count", r.pick(-2, 2)}};
    if (r.pick(0, 3) == 0) body["title"] = r.pick(0, 1);
    RequestContext ctx;
    if (r.coin()) ctx.auth_id = r.str();
    if (r.coin()) ctx.roles = {r.str(), r.str()};
    ctx.body = &body;
    SqlParams p(d);
    auto sql = compile(*n, c, d, ctx, p);
    ASSERT_TRUE(sql.ok()) << text << ": " << sql.error().detail;
    auto rows = t.run(t.db->query("SELECT \"id\" FROM " + quote_ident(c.table()) + " WHERE " + *sql, p.params));
    ASSERT_TRUE(rows.ok()) << text << "\n" << *sql << "\n" << rows.error().detail;
    std::set<std::string> by_sql, by_eval;
    for (const auto& row : *rows) by_sql.insert(row.text(0));
    for (const auto& rec : records)
      if (evaluate(*n, c, rec, ctx)) by_eval.insert(std::string(rec.at("id").as_string()));
    if (by_sql != by_eval) {
      std::string diff;
      for (const auto& rec : records) {
        std::string id(rec.at("id").as_string());
        if (by_sql.count(id) != by_eval.count(id))
          diff += fmt::format("  {} sql={} eval={}\n", js::serialize(rec), by_sql.count(id), by_eval.count(id));
      }
      ADD_FAILURE() << "SQL and memory disagree on " << text << "\nSQL: " << *sql << "\nauth " << ctx.auth_id.value_or("null")
                    << " body " << js::serialize(body) << "\n" << diff;
      return;
    }
    ++checked;
    matched_some += !by_sql.empty() && by_sql.size() < records.size();
  }
  EXPECT_GT(checked, 250);
  EXPECT_GT(matched_some, 60) << "too few expressions split the records to prove much";
}

TEST_P(EvalVsSql, table_collections_agree_on_random_expressions) {
  define(R"({"name": "mix", "fields": [{"name": "title", "type": "text"}, {"name": "other", "type": "text"},
             {"name": "count", "type": "number"}, {"name": "done", "type": "bool"}, {"name": "when", "type": "datetime"},
             {"name": "meta", "type": "json"}], "indexes": [["title"]], "rules": {"create": ""}})");
  Random r(7);
  for (int i = 0; i < 40; ++i) {
    js::object o;
    if (r.pick(0, 5)) o["title"] = r.str();
    if (r.pick(0, 5)) o["other"] = r.str();
    if (r.pick(0, 5)) o["count"] = r.pick(0, 3) ? js::value(r.pick(-2, 2)) : js::value(r.pick(-2, 2) + 0.5);
    if (r.pick(0, 5)) o["done"] = r.coin();
    static const char* whens[] = {"2026-01-01T00:00:00Z", "2026-01-01T12:00:00Z", "2025-12-31T23:59:59Z",
                                  "2026-06-14T22:00:00Z"};
    if (r.pick(0, 5)) o["when"] = whens[r.pick(0, 3)];
    if (r.pick(0, 5)) o["meta"] = js::object{{"a", r.json_scalar()}, {"b", js::object{{"c", r.json_scalar()}}}};
    else if (r.coin()) o["meta"] = r.json_scalar();
    ASSERT_TRUE(run(records->create("mix", admin(), o)).ok()) << js::serialize(o);
  }
  compare_on(*this, "mix", false, 11);
}

TEST_P(EvalVsSql, document_collections_agree_on_random_expressions) {
  define(R"({"name": "mixdoc", "type": "document", "indexes": [["a.b"], ["c"]], "rules": {"create": ""}})");
  Random r(8);
  for (int i = 0; i < 40; ++i) {
    js::object o;
    if (r.pick(0, 4)) o["a"] = r.pick(0, 5) ? js::value(js::object{{"b", r.json_scalar()}}) : r.json_scalar();
    if (r.pick(0, 4)) o["c"] = r.json_scalar();
    if (r.pick(0, 4)) o["title"] = r.json_scalar();
    ASSERT_TRUE(run(records->create("mixdoc", admin(), o)).ok()) << js::serialize(o);
  }
  compare_on(*this, "mixdoc", true, 12);
}

INSTANTIATE_TEST_SUITE_P(Backends, EvalVsSql, ::testing::ValuesIn(backends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace harmar::data::testing_support
