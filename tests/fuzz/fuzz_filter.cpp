// The filter and rule expression language (src/data/expr.hpp): any bytes either parse or are
// refused with a 422; what parses prints and parses back to the same tree, compiles to SQL for
// every dialect without crashing, and evaluates in memory without crashing.
#include <boost/json.hpp>

#include "data/eval.hpp"
#include "data/sqlgen.hpp"

using namespace harmar::data;

namespace {

const Collection& collection(bool document) {
  static const Collection table = *parse_collection(boost::json::parse(R"({
    "name": "notes", "fields": [
      {"name": "title", "type": "text"}, {"name": "count", "type": "number"}, {"name": "done", "type": "bool"},
      {"name": "when", "type": "datetime"}, {"name": "meta", "type": "json"}, {"name": "owner", "type": "text"}]})")
                                                   .as_object());
  static const Collection doc = *parse_collection(
      boost::json::parse(R"({"name": "docs", "type": "document", "indexes": [["a.b"]]})").as_object());
  return document ? doc : table;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto n = expr::parse(in);
  if (!n) {
    if (n.error().status != 422) __builtin_trap();
    return 0;
  }
  auto again = expr::parse(expr::to_string(*n));
  if (!again || !(*again == *n)) __builtin_trap();
  static const boost::json::object body = {{"title", "x"}, {"count", 2}};
  static const boost::json::object record = {{"id", "0190a000-0000-7000-8000-000000000000"}, {"title", "Hello"},
                                             {"count", 3}, {"done", true}, {"when", "2026-01-01T00:00:00.000Z"},
                                             {"meta", {{"a", {{"b", "x"}}}}}, {"owner", "u1"},
                                             {"created_at", "2026-01-01T00:00:00.000Z"}, {"version", 1}};
  RequestContext ctx;
  ctx.auth_id = "u1";
  ctx.roles = {"user"};
  ctx.body = &body;
  for (bool document : {false, true}) {
    const Collection& c = collection(document);
    for (Dialect d : {Dialect::Sqlite, Dialect::Postgres, Dialect::Mysql}) {
      SqlParams params;
      auto sql = compile(*n, c, d, ctx, params);
      if (!sql && sql.error().status != 422) __builtin_trap();
      if (sql && sql->find('\'') != std::string::npos) {
        // Our only quoted literals are JSON type names: no input byte may open a string.
        for (std::size_t i = sql->find('\''); i != std::string::npos; i = sql->find('\'', i + 1)) {
          auto end = sql->find('\'', i + 1);
          if (end == std::string::npos || end - i > 20) __builtin_trap();
          i = end;
        }
      }
    }
    if (check(*n, c, "filter").ok()) (void)evaluate(*n, c, record, ctx);
  }
  return 0;
}
