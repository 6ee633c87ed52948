#include "core/json.hpp"

#include <boost/json.hpp>
#include <yaml-cpp/yaml.h>

#include <charconv>

namespace harmar::json {

Result<js::value> parse(std::string_view text, unsigned max_depth) {
  js::parse_options opt;
  opt.max_depth = max_depth;
  boost::system::error_code ec;
  js::value v = js::parse(text, ec, {}, opt);
  if (ec) return Error::bad_request("invalid_json", "request body is not valid JSON: " + ec.message());
  return v;
}

Result<js::object> parse_object(std::string_view text, unsigned max_depth) {
  HARMAR_TRY(js::value v, parse(text, max_depth));
  if (!v.is_object()) return Error::validation("request body must be a JSON object");
  return std::move(v.as_object());
}

const js::value* Reader::find(std::string_view field) {
  const js::value* v = obj_.if_contains(field);
  return (v && !v->is_null()) ? v : nullptr;
}

void Reader::fail(std::string field, std::string message) { errors_.push_back({std::move(field), std::move(message)}); }

Error Reader::error() const {
  std::string detail = errors_.size() == 1 ? errors_[0].field + ": " + errors_[0].message
                                           : std::to_string(errors_.size()) + " fields are invalid";
  return Error::validation(std::move(detail), errors_);
}

std::string Reader::required_string(std::string_view field, std::size_t min_len, std::size_t max_len) {
  if (!find(field)) {
    fail(std::string(field), "is required");
    return {};
  }
  return optional_string(field, min_len, max_len).value_or(std::string());
}

std::optional<std::string> Reader::optional_string(std::string_view field, std::size_t min_len, std::size_t max_len) {
  const js::value* v = find(field);
  if (!v) return std::nullopt;
  if (!v->is_string()) {
    fail(std::string(field), "must be a string");
    return std::nullopt;
  }
  const js::string& s = v->get_string();
  if (s.size() < min_len) {
    fail(std::string(field), min_len == 1 ? "must not be empty" : "must be at least " + std::to_string(min_len) + " characters");
    return std::nullopt;
  }
  if (s.size() > max_len) {
    fail(std::string(field), "must be at most " + std::to_string(max_len) + " characters");
    return std::nullopt;
  }
  return std::string(s);
}

std::optional<int64_t> Reader::optional_int(std::string_view field, int64_t min, int64_t max) {
  const js::value* v = find(field);
  if (!v) return std::nullopt;
  int64_t n;
  if (v->is_int64()) {
    n = v->get_int64();
  } else if (v->is_uint64() && v->get_uint64() <= uint64_t(INT64_MAX)) {
    n = static_cast<int64_t>(v->get_uint64());
  } else if (v->is_double() && v->get_double() == static_cast<double>(static_cast<int64_t>(v->get_double()))) {
    n = static_cast<int64_t>(v->get_double());
  } else {
    fail(std::string(field), "must be an integer");
    return std::nullopt;
  }
  if (n < min || n > max) {
    fail(std::string(field), "must be between " + std::to_string(min) + " and " + std::to_string(max));
    return std::nullopt;
  }
  return n;
}

std::optional<bool> Reader::optional_bool(std::string_view field) {
  const js::value* v = find(field);
  if (!v) return std::nullopt;
  if (!v->is_bool()) {
    fail(std::string(field), "must be true or false");
    return std::nullopt;
  }
  return v->get_bool();
}

std::optional<js::value> Reader::optional_value(std::string_view field, std::size_t max_bytes) {
  const js::value* v = find(field);
  if (!v) return std::nullopt;
  if (js::serialize(*v).size() > max_bytes) {
    fail(std::string(field), "must be at most " + std::to_string(max_bytes) + " bytes of JSON");
    return std::nullopt;
  }
  return *v;
}

std::optional<js::object> Reader::optional_object(std::string_view field, std::size_t max_bytes) {
  const js::value* v = find(field);
  if (!v) return std::nullopt;
  if (!v->is_object()) {
    fail(std::string(field), "must be an object");
    return std::nullopt;
  }
  auto val = optional_value(field, max_bytes);
  if (!val) return std::nullopt;
  return std::move(val->as_object());
}

std::optional<std::vector<std::string>> Reader::optional_strings(std::string_view field, std::size_t max_items,
                                                                 std::size_t max_len) {
  const js::value* v = find(field);
  if (!v) return std::nullopt;
  if (!v->is_array()) {
    fail(std::string(field), "must be an array of strings");
    return std::nullopt;
  }
  const js::array& a = v->get_array();
  if (a.size() > max_items) {
    fail(std::string(field), "must have at most " + std::to_string(max_items) + " items");
    return std::nullopt;
  }
  std::vector<std::string> out;
  out.reserve(a.size());
  for (const auto& item : a) {
    if (!item.is_string() || item.get_string().size() > max_len) {
      fail(std::string(field), "items must be strings of at most " + std::to_string(max_len) + " characters");
      return std::nullopt;
    }
    out.emplace_back(item.get_string());
  }
  return out;
}

void Reader::reject_unknown(std::initializer_list<std::string_view> known) {
  for (const auto& kv : obj_) {
    bool found = false;
    for (auto k : known) found = found || kv.key() == k;
    if (!found) fail(std::string(kv.key()), "is not a known field");
  }
}

std::optional<std::string_view> get_string(const js::object& o, std::string_view key) {
  const js::value* v = o.if_contains(key);
  if (!v || !v->is_string()) return std::nullopt;
  return std::string_view(v->get_string());
}

std::optional<int64_t> get_int(const js::object& o, std::string_view key) {
  const js::value* v = o.if_contains(key);
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->get_uint64());
  return std::nullopt;
}

namespace {

js::value scalar_to_json(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return js::string(s);  // quoted: always a string
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  int64_t i = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
  if (ec == std::errc() && p == s.data() + s.size()) return i;
  double d = 0;
  auto [pd, ecd] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ecd == std::errc() && pd == s.data() + s.size()) return d;
  return js::string(s);
}

js::value node_to_json(const YAML::Node& n, int depth) {
  if (depth > 64) throw YAML::Exception(n.Mark(), "nesting deeper than 64 levels");
  switch (n.Type()) {
    case YAML::NodeType::Scalar: return scalar_to_json(n);
    case YAML::NodeType::Sequence: {
      js::array a;
      for (const auto& item : n) a.push_back(node_to_json(item, depth + 1));
      return a;
    }
    case YAML::NodeType::Map: {
      js::object o;
      for (const auto& kv : n) {
        if (!kv.first.IsScalar()) throw YAML::Exception(kv.first.Mark(), "mapping keys must be scalars");
        o[kv.first.as<std::string>()] = node_to_json(kv.second, depth + 1);
      }
      return o;
    }
    default: return nullptr;
  }
}

}  // namespace

Result<js::value> yaml_to_json(std::string_view yaml_text) {
  try {
    return node_to_json(YAML::Load(std::string(yaml_text)), 0);
  } catch (const YAML::Exception& e) {
    return Error::validation(std::string("invalid YAML: ") + e.what());
  }
}

}  // namespace harmar::json
