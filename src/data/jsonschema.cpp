#include "data/jsonschema.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <cmath>

namespace harmar::data::jsonschema {

namespace js = boost::json;

namespace {

constexpr int kMaxDepth = 16;
constexpr std::size_t kMaxErrors = 50;
const char* const kTypes[] = {"object", "array", "string", "number", "integer", "boolean", "null"};

bool known_type(std::string_view t) {
  for (auto k : kTypes)
    if (t == k) return true;
  return false;
}

bool non_negative_integer(const js::value& v) {
  if (v.is_int64()) return v.get_int64() >= 0;
  if (v.is_uint64()) return true;
  if (v.is_double()) return v.get_double() >= 0 && std::floor(v.get_double()) == v.get_double();
  return false;
}

double as_number(const js::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double()) return v.get_double();
  return 0;
}

Status check_at(const js::object& s, const std::string& where, int depth) {
  auto bad = [&](std::string msg) {
    std::string field = where.empty() ? "schema" : "schema." + where;
    return Error::validation("invalid schema: " + field + " " + msg, {{field, msg}});
  };
  if (depth > kMaxDepth) return bad(fmt::format("nests deeper than {}", kMaxDepth));
  for (const auto& [key, v] : s) {
    std::string k(key);
    if (k == "type") {
      if (v.is_string()) {
        if (!known_type(v.get_string())) return bad("has an unknown type " + std::string(v.get_string()));
      } else if (v.is_array()) {
        if (v.get_array().empty()) return bad("type lists no types");
        for (const auto& t : v.get_array())
          if (!t.is_string() || !known_type(t.get_string())) return bad("type lists an unknown type");
      } else {
        return bad("type must be a string or a list of strings");
      }
    } else if (k == "properties") {
      if (!v.is_object()) return bad("properties must be an object");
      for (const auto& [name, sub] : v.get_object()) {
        if (!sub.is_object()) return bad("properties." + std::string(name) + " must be an object");
        auto st = check_at(sub.get_object(), (where.empty() ? "" : where + ".") + "properties." + std::string(name), depth + 1);
        if (!st) return st;
      }
    } else if (k == "items") {
      if (!v.is_object()) return bad("items must be an object");
      auto st = check_at(v.get_object(), (where.empty() ? "" : where + ".") + "items", depth + 1);
      if (!st) return st;
    } else if (k == "required") {
      if (!v.is_array()) return bad("required must be a list of names");
      for (const auto& n : v.get_array())
        if (!n.is_string()) return bad("required must be a list of names");
    } else if (k == "additionalProperties") {
      if (!v.is_bool()) return bad("additionalProperties must be true or false");
    } else if (k == "enum") {
      if (!v.is_array() || v.get_array().empty()) return bad("enum must be a non-empty list");
    } else if (k == "minimum" || k == "maximum") {
      if (!v.is_number()) return bad(k + " must be a number");
    } else if (k == "minLength" || k == "maxLength" || k == "minItems" || k == "maxItems") {
      if (!non_negative_integer(v)) return bad(k + " must be a non-negative integer");
    } else if (k == "title" || k == "description" || k == "$comment") {
      // annotations
    } else {
      return bad("uses '" + k.substr(0, 40) +
                 "', which is not supported (type, properties, required, additionalProperties, items, enum, "
                 "minimum, maximum, minLength, maxLength, minItems, maxItems)");
    }
  }
  return Status{};
}

bool has_type(const js::value& v, std::string_view t) {
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer")
    return v.is_int64() || v.is_uint64() || (v.is_double() && std::floor(v.get_double()) == v.get_double());
  if (t == "boolean") return v.is_bool();
  if (t == "null") return v.is_null();
  return false;
}

std::size_t code_points(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

void validate_at(const js::value& v, const js::object& s, const std::string& where, std::vector<FieldError>& out) {
  if (out.size() >= kMaxErrors) return;
  auto fail = [&](std::string msg) { out.push_back({where.empty() ? "$" : where, std::move(msg)}); };
  if (const auto* t = s.if_contains("type")) {
    bool ok = false;
    if (t->is_string()) {
      ok = has_type(v, t->get_string());
    } else {
      for (const auto& x : t->get_array()) ok = ok || has_type(v, x.get_string());
    }
    if (!ok) {
      fail("has the wrong type (expected " + js::serialize(*t) + ")");
      return;
    }
  }
  if (const auto* e = s.if_contains("enum")) {
    bool found = false;
    for (const auto& x : e->get_array()) found = found || x == v;
    if (!found) fail("is not one of the allowed values");
  }
  if (v.is_number()) {
    double n = as_number(v);
    if (const auto* m = s.if_contains("minimum"); m && n < as_number(*m)) fail("is less than " + js::serialize(*m));
    if (const auto* m = s.if_contains("maximum"); m && n > as_number(*m)) fail("is more than " + js::serialize(*m));
  }
  if (v.is_string()) {
    std::size_t len = code_points(v.get_string());
    if (const auto* m = s.if_contains("minLength"); m && len < as_number(*m)) fail("is shorter than " + js::serialize(*m));
    if (const auto* m = s.if_contains("maxLength"); m && len > as_number(*m)) fail("is longer than " + js::serialize(*m));
  }
  if (v.is_array()) {
    const auto& a = v.get_array();
    if (const auto* m = s.if_contains("minItems"); m && a.size() < as_number(*m)) fail("has fewer than " + js::serialize(*m) + " items");
    if (const auto* m = s.if_contains("maxItems"); m && a.size() > as_number(*m)) fail("has more than " + js::serialize(*m) + " items");
    if (const auto* items = s.if_contains("items")) {
      for (std::size_t i = 0; i < a.size() && out.size() < kMaxErrors; ++i)
        validate_at(a[i], items->get_object(), where + "[" + std::to_string(i) + "]", out);
    }
  }
  if (v.is_object()) {
    const auto& o = v.get_object();
    const js::object* props = nullptr;
    if (const auto* p = s.if_contains("properties")) props = &p->get_object();
    if (const auto* req = s.if_contains("required")) {
      for (const auto& name : req->get_array())
        if (!o.contains(name.get_string()))
          out.push_back({(where.empty() ? "" : where + ".") + std::string(name.get_string()), "is required"});
    }
    for (const auto& [key, val] : o) {
      std::string path = (where.empty() ? "" : where + ".") + std::string(key);
      const js::value* sub = props ? props->if_contains(key) : nullptr;
      if (sub) {
        validate_at(val, sub->get_object(), path, out);
      } else if (const auto* ap = s.if_contains("additionalProperties"); ap && !ap->get_bool()) {
        out.push_back({path, "is not allowed"});
      }
    }
  }
}

}  // namespace

Status check_schema(const js::object& schema) { return check_at(schema, "", 0); }

std::vector<FieldError> validate(const js::value& doc, const js::object& schema) {
  std::vector<FieldError> out;
  validate_at(doc, schema, "", out);
  return out;
}

}  // namespace harmar::data::jsonschema
