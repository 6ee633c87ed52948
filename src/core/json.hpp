#pragma once
// JSON at the edges: bounded parsing and a field reader that collects every validation error at
// once, so a client sees all of what is wrong with a body in one 422.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace harmar::json {

namespace js = boost::json;

// Parses a request body. Malformed JSON or nesting deeper than `max_depth` is a 400 `invalid_json`.
Result<js::value> parse(std::string_view text, unsigned max_depth = 32);
// As parse(), and the top level must be an object (422 otherwise).
Result<js::object> parse_object(std::string_view text, unsigned max_depth = 32);

class Reader {
 public:
  explicit Reader(const js::object& obj) : obj_(obj) {}

  std::string required_string(std::string_view field, std::size_t min_len = 1, std::size_t max_len = 1024);
  std::optional<std::string> optional_string(std::string_view field, std::size_t min_len = 0,
                                             std::size_t max_len = 1024);
  std::optional<int64_t> optional_int(std::string_view field, int64_t min, int64_t max);
  std::optional<bool> optional_bool(std::string_view field);
  // An object-valued field; its serialised size is bounded by `max_bytes`.
  std::optional<js::object> optional_object(std::string_view field, std::size_t max_bytes = 64 * 1024);
  std::optional<js::value> optional_value(std::string_view field, std::size_t max_bytes = 64 * 1024);
  std::optional<std::vector<std::string>> optional_strings(std::string_view field, std::size_t max_items,
                                                           std::size_t max_len);
  // Fails every field not in `known` (clients learn about typos instead of silent ignores).
  void reject_unknown(std::initializer_list<std::string_view> known);

  void fail(std::string field, std::string message);
  bool ok() const { return errors_.empty(); }
  // The collected failures as one 422 `validation_failed`.
  Error error() const;

 private:
  const js::value* find(std::string_view field);
  const js::object& obj_;
  std::vector<FieldError> errors_;
};

// Lookups on parsed JSON that tolerate absence and wrong types.
std::optional<std::string_view> get_string(const js::object& o, std::string_view key);
std::optional<int64_t> get_int(const js::object& o, std::string_view key);

// YAML (as used for docs/openapi.yaml and declarative files) to JSON. Quoted scalars stay
// strings; plain ones become null, booleans or numbers when they read as such.
Result<js::value> yaml_to_json(std::string_view yaml_text);

}  // namespace harmar::json
