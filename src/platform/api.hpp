#pragma once
// Small helpers every module's api.cpp uses, so every endpoint reads its input and writes lists
// the same way (see docs/modules.md and shared/API.md "Conventions").
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <string_view>

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

// The authenticated principal of a route that requires one.
const Principal& principal(const net::Request& req);

}  // namespace harmar::platform
