#include "data/sqlgen.hpp"

#include <boost/json.hpp>

#include <cassert>
#include <cmath>

namespace harmar::data {

using expr::Op;

Dialect dialect_of(const store::Database& db) {
  switch (db.backend()) {
    case store::Backend::Sqlite: return Dialect::Sqlite;
    case store::Backend::Postgres: return Dialect::Postgres;
    case store::Backend::Mysql: return Dialect::Mysql;
  }
  return Dialect::Sqlite;
}

std::string SqlParams::add(store::Param p) {
  params.push_back(std::move(p));
  return "$" + std::to_string(params.size());
}

std::string quote_ident(std::string_view name) {
  assert(!name.empty() && name.find('"') == std::string_view::npos);
  std::string out;
  out.reserve(name.size() + 2);
  out += '"';
  out += name;
  out += '"';
  return out;
}

namespace {

using K = Resolved::Kind;

std::string_view sql_op(Op op) {
  switch (op) {
    case Op::Eq: return "=";
    case Op::Ne: return "<>";
    case Op::Gt: return ">";
    case Op::Ge: return ">=";
    case Op::Lt: return "<";
    case Op::Le: return "<=";
    default: return "=";
  }
}

std::string dotted(const std::vector<std::string>& path) {
  std::string s;
  for (const auto& p : path) {
    if (!s.empty()) s += '.';
    s += p;
  }
  return s;
}

class Compiler {
 public:
  Compiler(const Collection& c, Dialect d, const RequestContext& ctx, SqlParams& params)
      : c_(c), d_(d), ctx_(ctx), p_(params) {}

  Result<std::string> node(const expr::Node& n) {
    if (n.kind == expr::Node::Kind::Compare) return compare(n);
    std::string out = "(";
    const char* sep = n.kind == expr::Node::Kind::And ? " AND " : " OR ";
    for (std::size_t i = 0; i < n.children.size(); ++i) {
      auto part = node(n.children[i]);
      if (!part) return part;
      if (i) out += sep;
      out += *part;
    }
    out += ')';
    return out;
  }

 private:
  // A value bound for comparison with something of type `t`.
  std::string bind(const Value& v, ValueType t) {
    switch (v.kind) {
      case Value::Kind::String: return text_param(v.s);
      case Value::Kind::Number:
        if (t == ValueType::Time) return p_.add(static_cast<int64_t>(v.n));
        if (d_ == Dialect::Postgres) return p_.add(v.n) + "::float8";
        return p_.add(v.n);
      case Value::Kind::Bool:
        if (d_ == Dialect::Postgres) return p_.add(v.b) + "::boolean";
        return p_.add(v.b);
      default: return p_.add(nullptr);
    }
  }

  std::string text_param(const std::string& s) {
    if (d_ == Dialect::Postgres) return p_.add(s) + "::text";
    return p_.add(s);
  }

  // The path as the JSON functions of the dialect take it.
  std::string path_param(const std::vector<std::string>& path) {
    if (d_ == Dialect::Postgres) {
      std::string a = "{";
      for (std::size_t i = 0; i < path.size(); ++i) {
        if (i) a += ',';
        a += path[i];
      }
      a += '}';
      return p_.add(std::move(a)) + "::text[]";
    }
    return p_.add("$." + dotted(path));
  }

  // The generated column of an indexed document path (SQLite, MariaDB), if there is one.
  std::optional<std::string> indexed_path_column(const Resolved& j) const {
    if (d_ == Dialect::Postgres || !c_.document || j.column != "data") return std::nullopt;
    std::string p = dotted(j.path);
    for (const auto& idx : c_.indexes)
      if (idx.size() == 1 && idx[0] == p) return quote_ident(path_column(p));
    return std::nullopt;
  }

  struct JsonSide {
    std::string guard;  // the JSON value has the literal's type
    std::string expr;   // the value, as the SQL type of the literal
  };

  // Extraction of a JSON path for comparison with a literal of kind `k`.
  JsonSide json_side(const Resolved& j, Value::Kind k) {
    std::string col = quote_ident(j.column);
    std::string path = path_param(j.path);
    JsonSide s;
    switch (d_) {
      case Dialect::Sqlite: {
        std::string type = "json_type(" + col + ", " + path + ")";
        auto gen = indexed_path_column(j);
        std::string extract = gen ? *gen : "json_extract(" + col + ", " + path + ")";
        if (k == Value::Kind::String) s.guard = type + " = 'text'";
        else if (k == Value::Kind::Number) s.guard = type + " IN ('integer', 'real')";
        else s.guard = type + " IN ('true', 'false')";
        s.expr = extract;
        break;
      }
      case Dialect::Postgres: {
        std::string type = "jsonb_typeof(" + col + " #> " + path + ")";
        std::string text = "(" + col + " #>> " + path + ")";
        if (k == Value::Kind::String) {
          s.guard = type + " = 'string'";
          s.expr = text + " COLLATE \"C\"";
        } else if (k == Value::Kind::Number) {
          s.guard = type + " = 'number'";
          s.expr = "(CASE WHEN " + type + " = 'number' THEN " + text + "::float8 END)";
        } else {
          s.guard = type + " = 'boolean'";
          s.expr = "(CASE WHEN " + type + " = 'boolean' THEN " + text + "::boolean END)";
        }
        break;
      }
      case Dialect::Mysql: {
        std::string extract = "JSON_EXTRACT(" + col + ", " + path + ")";
        std::string type = "JSON_TYPE(" + extract + ")";
        if (k == Value::Kind::String) {
          s.guard = type + " = 'STRING'";
          // JSON functions answer in utf8mb4_bin (PAD SPACE); compare without padding, as the
          // text columns (utf8mb4_nopad_bin) and the other backends do. An indexed path's
          // generated column holds the same text in the table's utf8mb4_nopad_bin, and its
          // index serves the comparison (MariaDB 10.11 does not match the expression to it).
          auto gen = indexed_path_column(j);
          s.expr = gen ? *gen : "(JSON_UNQUOTE(" + extract + ") COLLATE utf8mb4_nopad_bin)";
        } else if (k == Value::Kind::Number) {
          s.guard = type + " IN ('INTEGER', 'DOUBLE', 'UNSIGNED INTEGER')";
          s.expr = "(" + extract + " + 0e0)";
        } else {
          s.guard = type + " = 'BOOLEAN'";
          s.expr = "(" + extract + " = 'true')";
        }
        break;
      }
    }
    return s;
  }

  std::string null_test(const Resolved& x, bool want_null) {
    if (x.kind == K::JsonPath) {
      std::string col = quote_ident(x.column);
      std::string path = path_param(x.path);
      std::string is_null;
      switch (d_) {
        case Dialect::Sqlite: is_null = "json_extract(" + col + ", " + path + ") IS NULL"; break;
        case Dialect::Postgres: is_null = "(" + col + " #>> " + path + ") IS NULL"; break;
        case Dialect::Mysql:
          is_null = "COALESCE(JSON_TYPE(JSON_EXTRACT(" + col + ", " + path + ")), 'NULL') = 'NULL'";
          break;
      }
      return want_null ? "(" + is_null + ")" : "(NOT (" + is_null + "))";
    }
    return "(" + quote_ident(x.column) + (want_null ? " IS NULL)" : " IS NOT NULL)");
  }

  std::string lowered(const std::string& e) {
    if (d_ == Dialect::Postgres) return "lower((" + e + ") COLLATE \"C\")";
    if (d_ == Dialect::Mysql) return "LOWER(" + e + ")";
    return "lower(" + e + ")";
  }

  // hay ~ needle (contains, ASCII case folded) or !~.
  std::string contains(const std::string& hay, const std::string& needle, bool negate) {
    std::string pos;
    switch (d_) {
      case Dialect::Sqlite: pos = "instr(" + lowered(hay) + ", " + lowered(needle) + ")"; break;
      case Dialect::Postgres: pos = "strpos(" + lowered(hay) + ", " + lowered(needle) + ")"; break;
      case Dialect::Mysql: pos = "LOCATE(" + lowered(needle) + ", " + lowered(hay) + ")"; break;
    }
    return "(" + pos + (negate ? " = 0)" : " > 0)");
  }

  std::string binary(const std::string& a, Op op, const std::string& b) {
    if (op == Op::Contains || op == Op::NotContains) return contains(a, b, op == Op::NotContains);
    std::string out = "(";
    out += a;
    out += ' ';
    out += sql_op(op);
    out += ' ';
    out += b;
    out += ')';
    return out;
  }

  Result<std::string> compare(const expr::Node& n) {
    auto where = std::string_view("filter");
    auto lr = resolve(n.lhs, c_, &ctx_, where);
    if (!lr) return std::move(lr).error();
    auto rr = resolve(n.rhs, c_, &ctx_, where);
    if (!rr) return std::move(rr).error();
    const Resolved& l = *lr;
    const Resolved& r = *rr;
    Op op = n.op;
    auto constant = [](bool v) { return std::string(v ? kTrue : kFalse); };

    bool lnull = l.kind == K::Const && l.literal_null;
    bool rnull = r.kind == K::Const && r.literal_null;
    if (lnull || rnull) {
      if (op != Op::Eq && op != Op::Ne) return constant(false);
      bool want_null = op == Op::Eq;
      if (lnull && rnull) return constant(want_null);
      const Resolved& x = lnull ? r : l;
      if (x.kind == K::Const) return constant((x.value.kind == Value::Kind::Null) == want_null);
      if (x.kind == K::Roles) return constant(!want_null);
      return null_test(x, want_null);
    }

    if (l.kind == K::Roles || r.kind == K::Roles) {
      if (l.kind == K::Roles && r.kind == K::Roles) return constant(false);
      const Resolved& x = l.kind == K::Roles ? r : l;
      bool want_member = op == Op::Eq || op == Op::Contains;
      if (!want_member && op != Op::Ne && op != Op::NotContains) return constant(false);
      if (x.kind == K::Const) {
        if (x.value.kind != Value::Kind::String) return constant(false);
        bool in = std::find(ctx_.roles.begin(), ctx_.roles.end(), x.value.s) != ctx_.roles.end();
        return constant(in == want_member);
      }
      if (x.kind != K::Column || x.type != ValueType::Text) return constant(false);
      std::string col = quote_ident(x.column);
      if (ctx_.roles.empty()) return want_member ? constant(false) : "(" + col + " IS NOT NULL)";
      std::string list;
      for (const auto& role : ctx_.roles) {
        if (!list.empty()) list += ", ";
        list += text_param(role);
      }
      return "(" + col + (want_member ? " IN (" : " NOT IN (") + list + "))";
    }

    if (l.kind == K::Const && r.kind == K::Const) return constant(compare_values(l.value, op, r.value));

    if (l.kind == K::Column && r.kind == K::Column) {
      if (l.type != r.type || l.type == ValueType::Json || l.type == ValueType::File) return constant(false);
      return binary(quote_ident(l.column), op, quote_ident(r.column));
    }

    // One side is a column or a JSON path, the other a value.
    bool left_is_value = l.kind == K::Const;
    const Resolved& x = left_is_value ? r : l;
    const Resolved& v = left_is_value ? l : r;
    if (v.kind != K::Const) return constant(false);  // path vs column: refused by check()
    if (x.kind == K::Column) {
      if (x.type == ValueType::Json || x.type == ValueType::File) return constant(false);
      auto coerced = coerce(v.value, x.type);
      if (!coerced) return constant(false);
      std::string col = quote_ident(x.column);
      std::string val = bind(*coerced, x.type);
      return left_is_value ? binary(val, op, col) : binary(col, op, val);
    }
    // A JSON path: matches only a JSON value of the literal's type.
    auto k = v.value.kind;
    if (k != Value::Kind::String && k != Value::Kind::Number && k != Value::Kind::Bool) return constant(false);
    if (k == Value::Kind::Bool && op != Op::Eq && op != Op::Ne) return constant(false);
    if (k != Value::Kind::String && (op == Op::Contains || op == Op::NotContains)) return constant(false);
    JsonSide js_side = json_side(x, k);
    std::string val;
    if (d_ == Dialect::Mysql && k == Value::Kind::Bool) {
      val = p_.add(v.value.b);
    } else {
      val = bind(v.value, ValueType::Any);
    }
    std::string cmp = left_is_value ? binary(val, op, js_side.expr) : binary(js_side.expr, op, val);
    std::string out = "(";
    if (d_ == Dialect::Postgres && op == Op::Eq && c_.document && x.column == "data") {
      // Lets the GIN index on the document narrow the rows; the typed comparison decides.
      js::value doc = k == Value::Kind::String ? js::value(v.value.s)
                      : k == Value::Kind::Number ? js::value(v.value.n)
                                                 : js::value(v.value.b);
      for (auto it = x.path.rbegin(); it != x.path.rend(); ++it) doc = js::object{{*it, std::move(doc)}};
      out += quote_ident(x.column) + " @> " + p_.add(js::serialize(doc)) + "::jsonb AND ";
    }
    out += js_side.guard;
    out += " AND ";
    out += cmp;
    out += ')';
    return out;
  }

  static bool compare_values(const Value& a, Op op, const Value& b) {
    if (a.kind == Value::Kind::Null || b.kind == Value::Kind::Null) return false;
    return data::compare(a, op, b);
  }

  const Collection& c_;
  Dialect d_;
  const RequestContext& ctx_;
  SqlParams& p_;
};

}  // namespace

Result<std::string> compile(const expr::Node& n, const Collection& c, Dialect d, const RequestContext& ctx,
                            SqlParams& params) {
  auto st = check(n, c, "filter");
  if (!st) return std::move(st).error();
  return Compiler(c, d, ctx, params).node(n);
}

Result<std::string> compile_rule(const Rule& r, const Collection& c, Dialect d, const RequestContext& ctx,
                                 SqlParams& params) {
  if (r.admins_only()) return std::string(kFalse);
  if (!r.expr) return std::string();
  return Compiler(c, d, ctx, params).node(*r.expr);
}

}  // namespace harmar::data
