#pragma once
// Small helpers every module's api.cpp uses, so every endpoint reads its input and writes lists
// the same way (see docs/modules.md and shared/API.md "Conventions").
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "net/http.hpp"

namespace harmar::platform {

// The request body as a JSON object: 400 `invalid_json` or 422 when it is not an object. An
// empty body is an empty object.
Result<boost::json::object> json_body(const net::Request& req);

struct Page {
  int limit = 50;
  std::optional<std::string> after;  // the decoded cursor: what the previous page ended with
};
// ?limit= (default 50, 1..200) and ?cursor= (opaque, from a previous next_cursor).
Result<Page> page_params(const net::Request& req, int default_limit = 50, int max_limit = 200);
// Cursors are opaque to clients: base64url of whatever the module needs to resume (e.g. an id).
std::string encode_cursor(std::string_view position);
std::optional<std::string> decode_cursor(std::string_view cursor);
// {"items": [...], "next_cursor": "..."|null}
net::Response list_response(boost::json::array items, const std::optional<std::string>& next_position);

// Lists fetched with LIMIT page.limit + 1: the first `limit` items as JSON, and a next cursor at
// the last one shown when there was one more.
//   auto rows = co_await repo.list(after, page.limit + 1);
//   co_return platform::page_response(*rows, page.limit, to_json, [](auto& d) { return d.id; });
template <class T, class ToJson, class Position>
net::Response page_response(const std::vector<T>& items, int limit, ToJson to_json, Position position) {
  boost::json::array out;
  std::optional<std::string> next;
  std::size_t shown = std::min(items.size(), static_cast<std::size_t>(limit));
  out.reserve(shown);
  for (std::size_t i = 0; i < shown; ++i) out.push_back(to_json(items[i]));
  if (items.size() > shown && shown > 0) next = position(items[shown - 1]);
  return list_response(std::move(out), next);
}

// The authenticated principal of a route that requires one.
const Principal& principal(const net::Request& req);

}  // namespace harmar::platform
