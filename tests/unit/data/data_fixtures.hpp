#pragma once
// Collections the data tests share: one table collection with a field of every type, and one
// document collection with an indexed JSON path.
#include <boost/json.hpp>

#include <stdexcept>

#include "data/model.hpp"

namespace harmar::data::testing_support {

inline Collection parse_or_throw(std::string_view json) {
  auto c = parse_collection(boost::json::parse(json).as_object());
  if (!c.ok()) {
    std::string why = c.error().detail;
    for (const auto& e : c.error().errors) why += "; " + e.field + " " + e.message;
    throw std::runtime_error(why);
  }
  return *c;
}

inline const Collection& table_collection() {
  static const Collection c = parse_or_throw(R"({
    "name": "notes", "type": "table",
    "fields": [
      {"name": "title", "type": "text"},
      {"name": "other", "type": "text"},
      {"name": "count", "type": "number"},
      {"name": "done", "type": "bool"},
      {"name": "when", "type": "datetime"},
      {"name": "meta", "type": "json"},
      {"name": "attachment", "type": "file"},
      {"name": "owner", "type": "relation", "collection": "people"},
      {"name": "role", "type": "text"}
    ],
    "indexes": [["owner"], ["title", "count"]],
    "rules": {"list": "owner = @request.auth.id", "view": "", "create": "@request.auth.id != null"}
  })");
  return c;
}

inline const Collection& document_collection() {
  static const Collection c = parse_or_throw(R"({
    "name": "docs", "type": "document",
    "indexes": [["address.city"], ["color"]],
    "rules": {"list": "owner = @request.auth.id", "view": ""}
  })");
  return c;
}

}  // namespace harmar::data::testing_support
