#include "data/model.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <cmath>
#include <regex>
#include <set>

#include "core/clock.hpp"
#include "data/eval.hpp"
#include "data/jsonschema.hpp"

namespace harmar::data {

std::string_view type_name(FieldType t) {
  switch (t) {
    case FieldType::Text: return "text";
    case FieldType::Number: return "number";
    case FieldType::Bool: return "bool";
    case FieldType::Datetime: return "datetime";
    case FieldType::Json: return "json";
    case FieldType::Relation: return "relation";
    case FieldType::File: return "file";
  }
  return "text";
}

std::optional<FieldType> parse_type(std::string_view s) {
  for (auto t : {FieldType::Text, FieldType::Number, FieldType::Bool, FieldType::Datetime, FieldType::Json,
                 FieldType::Relation, FieldType::File})
    if (type_name(t) == s) return t;
  return std::nullopt;
}

std::string_view operation_name(Operation op) {
  switch (op) {
    case Operation::List: return "list";
    case Operation::View: return "view";
    case Operation::Create: return "create";
    case Operation::Update: return "update";
    case Operation::Delete: return "delete";
  }
  return "list";
}

bool Field::operator==(const Field& o) const {
  return name == o.name && type == o.type && required == o.required && unique == o.unique &&
         default_value == o.default_value && min == o.min && max == o.max && regex == o.regex &&
         collection == o.collection && types == o.types;
}

const Field* Collection::field(std::string_view n) const {
  for (const auto& f : fields)
    if (f.name == n) return &f;
  return nullptr;
}

bool is_system_field(std::string_view name) {
  for (auto s : kSystemFields)
    if (s == name) return true;
  return false;
}

namespace {

bool lower_or_digit(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

// Names a record may not use besides the system fields: what the API adds to records.
bool reserved_name(std::string_view s) { return s == "expand" || s == "data"; }

bool valid_path_segment(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  char c = s[0];
  if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')) return false;
  for (char x : s)
    if (!((x >= 'a' && x <= 'z') || (x >= 'A' && x <= 'Z') || (x >= '0' && x <= '9') || x == '_')) return false;
  return true;
}

uint32_t fnv1a(std::string_view s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

bool valid_media_type(std::string_view t) {
  auto slash = t.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 >= t.size() || t.size() > 127) return false;
  auto token = [](std::string_view s) {
    if (s == "*") return true;
    for (char c : s)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.')) return false;
    return !s.empty();
  };
  return token(t.substr(0, slash)) && t.substr(0, slash) != "*" && token(t.substr(slash + 1));
}

class DefinitionReader {
 public:
  DefinitionReader(const js::object& o, const Limits& limits) : o_(o), limits_(limits) {}

  Result<Collection> run() {
    for (const auto& [k, v] : o_) {
      std::string_view key = k;
      if (key != "name" && key != "type" && key != "fields" && key != "indexes" && key != "rules" && key != "schema")
        fail(std::string(key.substr(0, 64)), "is not a collection property (name, type, fields, indexes, rules, schema)");
    }
    Collection c;
    const js::value* name = o_.if_contains("name");
    if (!name || !name->is_string()) {
      fail("name", "is required (a string)");
    } else if (!valid_collection_name(name->get_string())) {
      fail("name", "must be 1..48 characters of a-z, 0-9 and _, starting with a letter");
    } else {
      c.name = std::string(name->get_string());
    }
    if (const js::value* t = o_.if_contains("type")) {
      if (t->is_string() && t->get_string() == "document") {
        c.document = true;
      } else if (!t->is_string() || t->get_string() != "table") {
        fail("type", "must be \"table\" or \"document\"");
      }
    }
    read_fields(c);
    read_indexes(c);
    read_schema(c);
    read_rules(c);
    if (!errors_.empty()) return Error::validation("invalid collection definition", std::move(errors_));
    return c;
  }

 private:
  void fail(std::string field, std::string msg) {
    if (errors_.size() < 100) errors_.push_back({std::move(field), std::move(msg)});
  }

  void read_fields(Collection& c) {
    const js::value* fv = o_.if_contains("fields");
    if (!fv || fv->is_null()) return;
    if (!fv->is_array()) return fail("fields", "must be a list");
    const auto& arr = fv->get_array();
    if (c.document && !arr.empty())
      return fail("fields", "document collections have no fields: validate their documents with a schema");
    if (arr.size() > limits_.max_fields) return fail("fields", fmt::format("at most {} fields", limits_.max_fields));
    std::set<std::string> seen;
    for (std::size_t i = 0; i < arr.size(); ++i) {
      std::string at = fmt::format("fields[{}]", i);
      if (!arr[i].is_object()) {
        fail(at, "must be an object");
        continue;
      }
      auto f = read_field(arr[i].get_object(), at);
      if (!f) continue;
      if (!seen.insert(f->name).second) {
        fail(at + ".name", "duplicates another field");
        continue;
      }
      c.fields.push_back(std::move(*f));
    }
  }

  std::optional<Field> read_field(const js::object& o, const std::string& at) {
    std::size_t before = errors_.size();
    for (const auto& [k, v] : o) {
      std::string_view key = k;
      static const std::set<std::string_view> known = {"name", "type", "required", "unique", "default", "min",
                                                      "max", "regex", "collection", "types"};
      if (!known.count(key)) fail(at + "." + std::string(key.substr(0, 64)), "is not a field option");
    }
    Field f;
    const js::value* name = o.if_contains("name");
    if (!name || !name->is_string()) {
      fail(at + ".name", "is required (a string)");
    } else if (!valid_field_name(name->get_string())) {
      fail(at + ".name", is_system_field(name->get_string()) || reserved_name(name->get_string())
                             ? "is reserved (id, created_at, updated_at, version, expand, data)"
                             : "must be 1..63 characters of a-z, 0-9 and _, not starting with a digit");
    } else {
      f.name = std::string(name->get_string());
    }
    const js::value* type = o.if_contains("type");
    std::optional<FieldType> t;
    if (type && type->is_string()) t = parse_type(type->get_string());
    if (!t) {
      fail(at + ".type", "must be one of text, number, bool, datetime, json, relation, file");
      return std::nullopt;
    }
    f.type = *t;
    auto flag = [&](const char* key, bool& out) {
      if (const js::value* v = o.if_contains(key)) {
        if (v->is_bool()) out = v->get_bool();
        else fail(at + "." + key, "must be true or false");
      }
    };
    flag("required", f.required);
    flag("unique", f.unique);
    if (f.unique && (f.type == FieldType::Json || f.type == FieldType::File))
      fail(at + ".unique", "does not apply to json and file fields");
    auto number = [&](const char* key) -> std::optional<double> {
      const js::value* v = o.if_contains(key);
      if (!v || v->is_null()) return std::nullopt;
      if (!v->is_number()) {
        fail(at + "." + key, "must be a number");
        return std::nullopt;
      }
      return v->to_number<double>();
    };
    f.min = number("min");
    f.max = number("max");
    bool bounds_allowed = f.type == FieldType::Text || f.type == FieldType::Number || f.type == FieldType::Json ||
                          f.type == FieldType::File;
    if ((f.min || f.max) && !bounds_allowed) fail(at, "min and max apply to text, number, json and file fields");
    if (f.type == FieldType::Text || f.type == FieldType::Json || f.type == FieldType::File) {
      for (auto [key, v] : {std::pair{"min", f.min}, std::pair{"max", f.max}})
        if (v && (*v < 0 || std::floor(*v) != *v || *v > 1e12)) fail(at + "." + key, "must be a non-negative integer");
      if ((f.type == FieldType::Json || f.type == FieldType::File) && f.min) fail(at + ".min", "applies to text and number fields");
    }
    if (f.min && f.max && *f.min > *f.max) fail(at + ".min", "is more than max");
    if (const js::value* r = o.if_contains("regex"); r && !r->is_null()) {
      if (f.type != FieldType::Text) {
        fail(at + ".regex", "applies to text fields");
      } else if (!r->is_string() || r->get_string().empty() || r->get_string().size() > 256) {
        fail(at + ".regex", "must be a pattern of 1..256 characters");
      } else {
        try {
          std::regex re(std::string(r->get_string()), std::regex::ECMAScript);
          f.regex = std::string(r->get_string());
        } catch (const std::regex_error&) {
          fail(at + ".regex", "is not a valid ECMAScript pattern");
        }
      }
    }
    if (const js::value* col = o.if_contains("collection"); col && !col->is_null()) {
      if (f.type != FieldType::Relation) fail(at + ".collection", "applies to relation fields");
      else if (!col->is_string() || !valid_collection_name(col->get_string())) fail(at + ".collection", "must name a collection");
      else f.collection = std::string(col->get_string());
    } else if (f.type == FieldType::Relation) {
      fail(at + ".collection", "is required: the collection the relation points to");
    }
    if (const js::value* ty = o.if_contains("types"); ty && !ty->is_null()) {
      if (f.type != FieldType::File) {
        fail(at + ".types", "applies to file fields");
      } else if (!ty->is_array() || ty->get_array().size() > 32) {
        fail(at + ".types", "must be a list of at most 32 media types");
      } else {
        for (const auto& m : ty->get_array()) {
          if (!m.is_string() || !valid_media_type(m.get_string())) {
            fail(at + ".types", "must list media types such as \"image/png\" or \"image/*\"");
            break;
          }
          f.types.emplace_back(m.get_string());
        }
      }
    }
    if (const js::value* d = o.if_contains("default"); d && !d->is_null()) {
      bool ok = false;
      switch (f.type) {
        case FieldType::Text:
        case FieldType::Relation: ok = d->is_string() && d->get_string().size() <= 4096; break;
        case FieldType::Number: ok = d->is_number(); break;
        case FieldType::Bool: ok = d->is_bool(); break;
        case FieldType::Datetime: ok = d->is_string() && parse_rfc3339(d->get_string()).has_value(); break;
        case FieldType::Json: ok = js::serialize(*d).size() <= 16 * 1024; break;
        case FieldType::File: ok = false; break;
      }
      if (!ok) fail(at + ".default", fmt::format("is not a valid {} value", type_name(f.type)));
      else f.default_value = *d;
    }
    if (errors_.size() != before) return std::nullopt;
    return f;
  }

  void read_indexes(Collection& c) {
    const js::value* iv = o_.if_contains("indexes");
    if (!iv || iv->is_null()) return;
    if (!iv->is_array()) return fail("indexes", "must be a list of lists of field names");
    const auto& arr = iv->get_array();
    if (arr.size() > limits_.max_indexes) return fail("indexes", fmt::format("at most {} indexes", limits_.max_indexes));
    std::set<Index> seen;
    for (std::size_t i = 0; i < arr.size(); ++i) {
      std::string at = fmt::format("indexes[{}]", i);
      if (!arr[i].is_array() || arr[i].get_array().empty() || arr[i].get_array().size() > limits_.max_index_columns) {
        fail(at, fmt::format("must be a list of 1..{} field names", limits_.max_index_columns));
        continue;
      }
      Index idx;
      bool ok = true;
      for (const auto& n : arr[i].get_array()) {
        if (!n.is_string()) {
          fail(at, "must list names");
          ok = false;
          break;
        }
        std::string name(n.get_string());
        if (c.document) {
          if (arr[i].get_array().size() != 1) {
            fail(at, "a document index is one JSON path, e.g. [\"address.city\"]");
            ok = false;
            break;
          }
          if (!is_system_field(name) && !valid_json_path(name)) {
            fail(at, "must be a JSON path of up to 8 names joined by '.'");
            ok = false;
            break;
          }
        } else if (!is_system_field(name)) {
          const Field* f = c.field(name);
          if (!f) {
            fail(at, "names an unknown field '" + name.substr(0, 64) + "'");
            ok = false;
            break;
          }
          if (f->type == FieldType::Json || f->type == FieldType::File) {
            fail(at, "json and file fields cannot be indexed");
            ok = false;
            break;
          }
        }
        if (std::find(idx.begin(), idx.end(), name) != idx.end()) {
          fail(at, "names a field twice");
          ok = false;
          break;
        }
        idx.push_back(std::move(name));
      }
      if (!ok) continue;
      if (!seen.insert(idx).second) {
        fail(at, "duplicates another index");
        continue;
      }
      c.indexes.push_back(std::move(idx));
    }
  }

  void read_schema(Collection& c) {
    const js::value* sv = o_.if_contains("schema");
    if (!sv || sv->is_null()) return;
    if (!c.document) return fail("schema", "applies to document collections");
    if (!sv->is_object()) return fail("schema", "must be an object (a JSON schema)");
    if (js::serialize(*sv).size() > limits_.max_schema_bytes)
      return fail("schema", fmt::format("is larger than {} bytes", limits_.max_schema_bytes));
    auto st = jsonschema::check_schema(sv->get_object());
    if (!st) {
      for (const auto& e : st.error().errors) fail(e.field, e.message);
      return;
    }
    c.schema = sv->get_object();
  }

  void read_rules(Collection& c) {
    const js::value* rv = o_.if_contains("rules");
    if (!rv || rv->is_null()) return;
    if (!rv->is_object()) return fail("rules", "must be an object of list, view, create, update, delete");
    for (const auto& [k, v] : rv->get_object()) {
      std::string_view key = k;
      if (key != "list" && key != "view" && key != "create" && key != "update" && key != "delete")
        fail("rules." + std::string(key.substr(0, 64)), "is not an operation (list, view, create, update, delete)");
    }
    for (Operation op : kOperations) {
      std::string at = "rules." + std::string(operation_name(op));
      const js::value* v = rv->get_object().if_contains(operation_name(op));
      if (!v || v->is_null()) continue;
      if (!v->is_string()) {
        fail(at, "must be a string (\"\" lets anyone) or null (admins only)");
        continue;
      }
      if (v->get_string().size() > limits_.max_rule_bytes) {
        fail(at, fmt::format("is longer than {} bytes", limits_.max_rule_bytes));
        continue;
      }
      Rule& r = c.rules[static_cast<int>(op)];
      r.text = std::string(v->get_string());
      if (r.text->find_first_not_of(" \t\r\n") == std::string::npos) {
        r.text = std::string();
        continue;
      }
      auto node = expr::parse(*r.text, at);
      if (!node) {
        for (const auto& e : node.error().errors) fail(e.field, e.message);
        continue;
      }
      auto st = check(*node, c, at);
      if (!st) {
        for (const auto& e : st.error().errors) fail(e.field, e.message);
        continue;
      }
      r.expr = std::move(*node);
    }
  }

  const js::object& o_;
  const Limits& limits_;
  std::vector<FieldError> errors_;
};

js::value optional_number(const std::optional<double>& v) {
  if (!v) return nullptr;
  if (std::floor(*v) == *v && std::fabs(*v) < 9e15) return js::value(static_cast<int64_t>(*v));
  return js::value(*v);
}

}  // namespace

bool valid_collection_name(std::string_view s) {
  if (s.empty() || s.size() > 48 || !(s[0] >= 'a' && s[0] <= 'z')) return false;
  for (char c : s)
    if (!lower_or_digit(c)) return false;
  return true;
}

bool valid_field_name(std::string_view s) {
  if (s.empty() || s.size() > 63 || (s[0] >= '0' && s[0] <= '9')) return false;
  for (char c : s)
    if (!lower_or_digit(c)) return false;
  return !is_system_field(s) && !reserved_name(s);
}

bool valid_json_path(std::string_view dotted) {
  std::size_t segments = 0;
  while (true) {
    auto dot = dotted.find('.');
    if (!valid_path_segment(dotted.substr(0, dot)) || ++segments > 8) return false;
    if (dot == std::string_view::npos) return true;
    dotted.remove_prefix(dot + 1);
  }
}

std::string index_name(const Collection& c, const Index& idx, bool unique_field) {
  std::string cols;
  for (const auto& i : idx) {
    if (!cols.empty()) cols += ',';
    cols += i;
  }
  // At most 63 characters (PostgreSQL's limit): a readable part, then a hash of the whole.
  std::string name = (unique_field ? "ux_" : "ix_") + c.name + "_";
  for (char ch : cols) {
    if (name.size() >= 54) break;
    name += (ch == '.' || ch == ',') ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  return name + fmt::format("_{:08x}", fnv1a(c.name + "/" + cols));
}

std::string path_column(std::string_view dotted_path) {
  std::string readable;
  for (char ch : dotted_path) readable += ch == '.' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (readable.size() > 32) readable.resize(32);
  return "p_" + readable + fmt::format("_{:08x}", fnv1a(dotted_path));
}

bool accepts_media_type(const Field& f, std::string_view type) {
  if (f.types.empty()) return true;
  for (const auto& t : f.types) {
    if (t == type) return true;
    if (t.ends_with("/*") && type.starts_with(std::string_view(t).substr(0, t.size() - 1))) return true;
  }
  return false;
}

Result<Collection> parse_collection(const js::object& o, const Limits& limits) {
  return DefinitionReader(o, limits).run();
}

js::object to_json(const Collection& c) {
  js::object o;
  o["name"] = c.name;
  o["type"] = c.document ? "document" : "table";
  js::array fields;
  for (const auto& f : c.fields) {
    js::object fo;
    fo["name"] = f.name;
    fo["type"] = type_name(f.type);
    if (f.required) fo["required"] = true;
    if (f.unique) fo["unique"] = true;
    if (f.default_value) fo["default"] = *f.default_value;
    if (f.min) fo["min"] = optional_number(f.min);
    if (f.max) fo["max"] = optional_number(f.max);
    if (!f.regex.empty()) fo["regex"] = f.regex;
    if (!f.collection.empty()) fo["collection"] = f.collection;
    if (!f.types.empty()) {
      js::array t;
      for (const auto& x : f.types) t.emplace_back(x);
      fo["types"] = std::move(t);
    }
    fields.push_back(std::move(fo));
  }
  o["fields"] = std::move(fields);
  js::array indexes;
  for (const auto& idx : c.indexes) {
    js::array a;
    for (const auto& n : idx) a.emplace_back(n);
    indexes.push_back(std::move(a));
  }
  o["indexes"] = std::move(indexes);
  js::object rules;
  for (Operation op : kOperations) {
    const Rule& r = c.rule(op);
    if (r.text) rules[operation_name(op)] = *r.text;
  }
  o["rules"] = std::move(rules);
  if (c.schema) o["schema"] = *c.schema;
  return o;
}

}  // namespace harmar::data
