#include "data/eval.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/clock.hpp"

namespace harmar::data {

using expr::Op;
using expr::Operand;

namespace {

Error invalid(std::string_view where, std::string msg) {
  return Error{422, "invalid_expression", std::string(where) + ": " + msg, {{std::string(where), std::move(msg)}}};
}

ValueType column_type(FieldType t) {
  switch (t) {
    case FieldType::Text:
    case FieldType::Relation: return ValueType::Text;
    case FieldType::Number: return ValueType::Number;
    case FieldType::Bool: return ValueType::Bool;
    case FieldType::Datetime: return ValueType::Time;
    case FieldType::Json: return ValueType::Json;
    case FieldType::File: return ValueType::File;
  }
  return ValueType::Any;
}

std::string_view type_word(ValueType t) {
  switch (t) {
    case ValueType::Text: return "text";
    case ValueType::Number: return "a number";
    case ValueType::Bool: return "a bool";
    case ValueType::Time: return "a datetime";
    case ValueType::Json: return "json";
    case ValueType::File: return "a file";
    case ValueType::Any: return "any value";
  }
  return "a value";
}

bool op_allowed(ValueType t, Op op) {
  switch (t) {
    case ValueType::Text:
    case ValueType::Any: return true;
    case ValueType::Number:
    case ValueType::Time: return op != Op::Contains && op != Op::NotContains;
    case ValueType::Bool: return op == Op::Eq || op == Op::Ne;
    case ValueType::Json:
    case ValueType::File: return false;  // only null tests, handled before
  }
  return false;
}

Value from_json(const js::value* v) {
  if (!v || v->is_null()) return Value{};
  if (v->is_string()) return Value::string(std::string(v->get_string()));
  if (v->is_bool()) return Value::boolean(v->get_bool());
  if (v->is_int64()) return Value::number(static_cast<double>(v->get_int64()));
  if (v->is_uint64()) return Value::number(static_cast<double>(v->get_uint64()));
  if (v->is_double()) return Value::number(v->get_double());
  return Value::other();
}

const js::value* json_at(const js::value* v, const std::vector<std::string>& path) {
  for (const auto& seg : path) {
    if (!v || !v->is_object()) return nullptr;
    v = v->as_object().if_contains(seg);
  }
  return v;
}

// The value an operand has on `record`.
Value value_on(const Resolved& r, const js::object& record) {
  switch (r.kind) {
    case Resolved::Kind::Const: return r.value;
    case Resolved::Kind::Column: {
      const js::value* v = record.if_contains(r.field);
      if (!v || v->is_null()) return Value{};
      switch (r.type) {
        case ValueType::Text: return v->is_string() ? Value::string(std::string(v->get_string())) : Value::other();
        case ValueType::Number: {
          Value x = from_json(v);
          return x.kind == Value::Kind::Number ? x : Value::other();
        }
        case ValueType::Bool: return v->is_bool() ? Value::boolean(v->get_bool()) : Value::other();
        case ValueType::Time: {
          if (!v->is_string()) return Value::other();
          auto ms = parse_rfc3339(v->get_string());
          return ms ? Value::number(static_cast<double>(*ms)) : Value::other();
        }
        default: return Value::other();
      }
    }
    case Resolved::Kind::JsonPath: {
      // A document's fields are the record's top level; a json field's path starts inside it.
      const js::value* root = nullptr;
      std::vector<std::string> path = r.path;
      if (r.column == "data" && r.field.empty()) {
        if (path.empty()) return Value::other();
        root = record.if_contains(path.front());
        path.erase(path.begin());
      } else {
        root = record.if_contains(r.field);
      }
      return from_json(json_at(root, path));
    }
    default: return Value{};
  }
}

bool is_null_on(const Resolved& r, const js::object& record) {
  if (r.kind == Resolved::Kind::Roles) return false;
  if (r.kind == Resolved::Kind::Column && (r.type == ValueType::Json || r.type == ValueType::File)) {
    const js::value* v = record.if_contains(r.field);
    return !v || v->is_null();
  }
  return value_on(r, record).kind == Value::Kind::Null;
}

bool member(const std::vector<std::string>& roles, const Value& v) {
  return v.kind == Value::Kind::String && std::find(roles.begin(), roles.end(), v.s) != roles.end();
}

}  // namespace

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::optional<int64_t> parse_time(std::string_view s) {
  if (s.size() < 10 || s.size() > 64) return std::nullopt;
  if (s.size() == 10) return parse_rfc3339(std::string(s) + "T00:00:00Z");
  std::string t(s);
  if (t[10] == ' ') t[10] = 'T';
  if (auto v = parse_rfc3339(t)) return v;
  return parse_rfc3339(t + "Z");  // no offset: UTC
}

std::optional<Value> coerce(const Value& v, ValueType to) {
  switch (to) {
    case ValueType::Text:
      if (v.kind == Value::Kind::String) return v;
      return std::nullopt;
    case ValueType::Number:
      if (v.kind == Value::Kind::Number) return v;
      return std::nullopt;
    case ValueType::Bool:
      if (v.kind == Value::Kind::Bool) return v;
      return std::nullopt;
    case ValueType::Time:
      if (v.kind == Value::Kind::String) {
        if (auto ms = parse_time(v.s)) return Value::number(static_cast<double>(*ms));
      }
      return std::nullopt;
    case ValueType::Any:
      if (v.kind == Value::Kind::String || v.kind == Value::Kind::Number || v.kind == Value::Kind::Bool) return v;
      return std::nullopt;
    case ValueType::Json:
    case ValueType::File: return std::nullopt;
  }
  return std::nullopt;
}

bool compare(const Value& a, Op op, const Value& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::String: {
      if (op == Op::Contains || op == Op::NotContains) {
        bool has = ascii_lower(a.s).find(ascii_lower(b.s)) != std::string::npos;
        return op == Op::Contains ? has : !has;
      }
      int c = a.s.compare(b.s);  // char_traits<char> compares as unsigned char: byte order
      switch (op) {
        case Op::Eq: return c == 0;
        case Op::Ne: return c != 0;
        case Op::Gt: return c > 0;
        case Op::Ge: return c >= 0;
        case Op::Lt: return c < 0;
        case Op::Le: return c <= 0;
        default: return false;
      }
    }
    case Value::Kind::Number:
      switch (op) {
        case Op::Eq: return a.n == b.n;
        case Op::Ne: return a.n != b.n;
        case Op::Gt: return a.n > b.n;
        case Op::Ge: return a.n >= b.n;
        case Op::Lt: return a.n < b.n;
        case Op::Le: return a.n <= b.n;
        default: return false;
      }
    case Value::Kind::Bool:
      if (op == Op::Eq) return a.b == b.b;
      if (op == Op::Ne) return a.b != b.b;
      return false;
    default: return false;
  }
}

Result<Resolved> resolve(const Operand& o, const Collection& c, const RequestContext* ctx, std::string_view where) {
  Resolved r;
  switch (o.kind) {
    case Operand::Kind::Path: {
      const std::string& first = o.path.front();
      if (is_system_field(first)) {
        if (o.path.size() > 1) return invalid(where, fmt::format("{} has no sub-fields", first));
        r.kind = Resolved::Kind::Column;
        r.column = r.field = first;
        r.type = first == "id" ? ValueType::Text : first == "version" ? ValueType::Number : ValueType::Time;
        return r;
      }
      if (c.document) {
        r.kind = Resolved::Kind::JsonPath;
        r.column = "data";
        r.path = o.path;
        return r;
      }
      const Field* f = c.field(first);
      if (!f) return invalid(where, fmt::format("unknown field '{}'", first.substr(0, 64)));
      if (o.path.size() > 1) {
        if (f->type != FieldType::Json)
          return invalid(where, fmt::format("'{}' is {} field: only json fields have sub-fields", first,
                                            type_name(f->type)));
        r.kind = Resolved::Kind::JsonPath;
        r.column = r.field = first;
        r.path.assign(o.path.begin() + 1, o.path.end());
        return r;
      }
      r.kind = Resolved::Kind::Column;
      r.column = r.field = first;
      r.type = column_type(f->type);
      return r;
    }
    case Operand::Kind::String: r.value = Value::string(o.text); return r;
    case Operand::Kind::Number: r.value = Value::number(o.number); return r;
    case Operand::Kind::Bool: r.value = Value::boolean(o.boolean); return r;
    case Operand::Kind::Null: r.literal_null = true; return r;
    case Operand::Kind::AuthRoles: r.kind = Resolved::Kind::Roles; return r;
    case Operand::Kind::AuthId:
      if (!ctx) {
        r.kind = Resolved::Kind::Unknown;
        r.type = ValueType::Text;
        return r;
      }
      r.from_request = true;
      if (ctx->auth_id) r.value = Value::string(*ctx->auth_id);
      return r;
    case Operand::Kind::Body:
      if (!ctx) {
        r.kind = Resolved::Kind::Unknown;
        return r;
      }
      r.from_request = true;
      if (ctx->body) r.value = from_json(ctx->body->if_contains(o.path.front()));
      return r;
  }
  return r;
}

Status check(const expr::Node& n, const Collection& c, std::string_view where) {
  if (n.kind != expr::Node::Kind::Compare) {
    for (const auto& child : n.children) {
      auto s = check(child, c, where);
      if (!s) return s;
    }
    return Status{};
  }
  auto lr = resolve(n.lhs, c, nullptr, where);
  if (!lr) return std::move(lr).error();
  auto rr = resolve(n.rhs, c, nullptr, where);
  if (!rr) return std::move(rr).error();
  const Resolved& l = *lr;
  const Resolved& r = *rr;
  std::string text = expr::to_string(n);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  auto bad = [&](std::string why) { return invalid(where, fmt::format("'{}': {}", text, why)); };
  using K = Resolved::Kind;

  if ((l.kind == K::Const && l.literal_null) || (r.kind == K::Const && r.literal_null)) {
    if (n.op != Op::Eq && n.op != Op::Ne) return bad("null compares only with = or !=");
    if (l.kind == K::Roles || r.kind == K::Roles) return bad("@request.auth.roles is never null");
    return Status{};
  }
  if (l.kind == K::Roles || r.kind == K::Roles) {
    const Resolved& other = l.kind == K::Roles ? r : l;
    if (n.op != Op::Eq && n.op != Op::Ne && n.op != Op::Contains && n.op != Op::NotContains)
      return bad("@request.auth.roles compares only with = != ~ !~");
    if (other.kind == K::Roles) return bad("compare @request.auth.roles with one role");
    if (other.kind == K::JsonPath) return bad("compare @request.auth.roles with a text field or a string");
    if (other.kind == K::Column && other.type != ValueType::Text)
      return bad("compare @request.auth.roles with a text field or a string");
    if (other.kind == K::Const && other.value.kind != Value::Kind::String)
      return bad("compare @request.auth.roles with a string");
    return Status{};
  }
  auto column_ok = [&](const Resolved& col) -> Status {
    if (col.type == ValueType::Json || col.type == ValueType::File)
      return bad(fmt::format("'{}' is {} field: it compares only with null (or use a path inside a json field)",
                             col.field, col.type == ValueType::Json ? "a json" : "a file"));
    if (!op_allowed(col.type, n.op))
      return bad(fmt::format("'{}' is {}: operator {} does not apply", col.field, type_word(col.type), op_text(n.op)));
    return Status{};
  };
  if (l.kind == K::Column && r.kind == K::Column) {
    if (auto s = column_ok(l); !s) return s;
    if (l.type != r.type)
      return bad(fmt::format("'{}' is {} and '{}' is {}", l.field, type_word(l.type), r.field, type_word(r.type)));
    return Status{};
  }
  if (l.kind == K::JsonPath && (r.kind == K::JsonPath || r.kind == K::Column))
    return bad("a JSON path compares only with a value");
  if (r.kind == K::JsonPath && l.kind == K::Column) return bad("a JSON path compares only with a value");
  for (const auto* side : {&l, &r}) {
    const Resolved& other = side == &l ? r : l;
    if (side->kind == K::Column) {
      if (auto s = column_ok(*side); !s) return s;
      if (other.kind == K::Const && !coerce(other.value, side->type)) {
        if (side->type == ValueType::Time)
          return bad(fmt::format("'{}' is a datetime: compare it with a date such as \"2026-01-31\" or an RFC 3339 time",
                                 side->field));
        return bad(fmt::format("'{}' is {}: compare it with {}", side->field, type_word(side->type),
                               type_word(side->type)));
      }
    }
    if (side->kind == K::JsonPath && other.kind == K::Const) {
      auto k = other.value.kind;
      if (k == Value::Kind::Bool && n.op != Op::Eq && n.op != Op::Ne) return bad("true and false compare only with = or !=");
      if (k == Value::Kind::Number && (n.op == Op::Contains || n.op == Op::NotContains))
        return bad("~ and !~ apply to strings");
    }
  }
  return Status{};
}

namespace {

bool eval_compare(const expr::Node& n, const Collection& c, const js::object& record, const RequestContext& ctx) {
  auto lr = resolve(n.lhs, c, &ctx, "rule");
  auto rr = resolve(n.rhs, c, &ctx, "rule");
  if (!lr || !rr) return false;  // the schema changed under the rule: deny
  const Resolved& l = *lr;
  const Resolved& r = *rr;
  using K = Resolved::Kind;
  bool lnull = l.kind == K::Const && l.literal_null;
  bool rnull = r.kind == K::Const && r.literal_null;
  if (lnull || rnull) {
    if (n.op != Op::Eq && n.op != Op::Ne) return false;
    bool is_null = lnull && rnull ? true : is_null_on(lnull ? r : l, record);
    return n.op == Op::Eq ? is_null : !is_null;
  }
  if (l.kind == K::Roles || r.kind == K::Roles) {
    if (l.kind == K::Roles && r.kind == K::Roles) return false;
    Value other = value_on(l.kind == K::Roles ? r : l, record);
    if (other.kind != Value::Kind::String) return false;
    bool in = member(ctx.roles, other);
    if (n.op == Op::Eq || n.op == Op::Contains) return in;
    if (n.op == Op::Ne || n.op == Op::NotContains) return !in;
    return false;
  }
  Value a = value_on(l, record);
  Value b = value_on(r, record);
  // A value compared with a column takes the column's type (a date string becomes a time).
  if (l.kind == K::Column && r.kind == K::Const) {
    auto v = coerce(b, l.type);
    if (!v) return false;
    b = std::move(*v);
  } else if (r.kind == K::Column && l.kind == K::Const) {
    auto v = coerce(a, r.type);
    if (!v) return false;
    a = std::move(*v);
  } else if (l.kind == K::Column && r.kind == K::Column && (l.type != r.type || l.type == ValueType::Json ||
                                                             l.type == ValueType::File)) {
    return false;
  }
  return compare(a, n.op, b);
}

}  // namespace

bool evaluate(const expr::Node& n, const Collection& c, const js::object& record, const RequestContext& ctx) {
  switch (n.kind) {
    case expr::Node::Kind::Compare: return eval_compare(n, c, record, ctx);
    case expr::Node::Kind::And:
      for (const auto& child : n.children)
        if (!evaluate(child, c, record, ctx)) return false;
      return true;
    case expr::Node::Kind::Or:
      for (const auto& child : n.children)
        if (evaluate(child, c, record, ctx)) return true;
      return false;
  }
  return false;
}

bool rule_allows(const Rule& r, const Collection& c, const js::object& record, const RequestContext& ctx) {
  if (r.admins_only()) return false;
  if (!r.expr) return true;
  return evaluate(*r.expr, c, record, ctx);
}

}  // namespace harmar::data
