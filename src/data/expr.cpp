#include "data/expr.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace harmar::data::expr {

std::string_view op_text(Op op) {
  switch (op) {
    case Op::Eq: return "=";
    case Op::Ne: return "!=";
    case Op::Gt: return ">";
    case Op::Ge: return ">=";
    case Op::Lt: return "<";
    case Op::Le: return "<=";
    case Op::Contains: return "~";
    case Op::NotContains: return "!~";
  }
  return "?";
}

Op mirror(Op op) {
  switch (op) {
    case Op::Gt: return Op::Lt;
    case Op::Ge: return Op::Le;
    case Op::Lt: return Op::Gt;
    case Op::Le: return Op::Ge;
    default: return op;
  }
}

namespace {

enum class Tok : uint8_t { End, LParen, RParen, And, Or, Oper, String, Number, Name, At };

struct Token {
  Tok kind = Tok::End;
  std::size_t pos = 0;
  Op op = Op::Eq;
  std::string text;  // String: decoded; Name / At: the dotted name as written
  double number = 0;
};

bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }
bool digit(char c) { return c >= '0' && c <= '9'; }

// Length of the UTF-8 sequence starting at s[i] if it is well formed (no overlongs, no
// surrogates, at most U+10FFFF), else 0.
std::size_t utf8_len(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (n == 0 || c > 0xF4 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  if (c == 0xE0 && b(i + 1) < 0xA0) return 0;  // overlong
  if (c == 0xED && b(i + 1) >= 0xA0) return 0;  // surrogates
  if (c == 0xF0 && b(i + 1) < 0x90) return 0;  // overlong
  if (c == 0xF4 && b(i + 1) >= 0x90) return 0;  // > U+10FFFF
  return n;
}

class Parser {
 public:
  Parser(std::string_view text, std::string_view field, const Limits& limits)
      : s_(text), field_(field), limits_(limits) {}

  Result<Node> run() {
    if (s_.size() > limits_.max_bytes) return fail(0, fmt::format("is longer than {} bytes", limits_.max_bytes));
    if (!next()) return std::move(error_);
    if (tok_.kind == Tok::End) return fail(0, "is empty");
    auto n = parse_or(0);
    if (!n) return n;
    if (tok_.kind != Tok::End) return fail(tok_.pos, "unexpected " + describe(tok_) + " after a complete expression");
    return n;
  }

 private:
  Error fail(std::size_t pos, std::string what) {
    std::string msg = fmt::format("{} (at position {})", what, pos + 1);
    return Error{422, "invalid_expression", std::string(field_) + " " + msg, {{std::string(field_), msg}}};
  }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case Tok::End: return "end of text";
      case Tok::LParen: return "'('";
      case Tok::RParen: return "')'";
      case Tok::And: return "'&&'";
      case Tok::Or: return "'||'";
      case Tok::Oper: return fmt::format("operator '{}'", op_text(t.op));
      case Tok::String: return "a string";
      case Tok::Number: return "a number";
      case Tok::Name: return fmt::format("'{}'", t.text.size() > 40 ? t.text.substr(0, 40) + "..." : t.text);
      case Tok::At: return fmt::format("'@{}'", t.text.size() > 40 ? t.text.substr(0, 40) + "..." : t.text);
    }
    return "a token";
  }

  // Reads the next token into tok_; false (with error_ set) on a lexical error.
  bool next() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    tok_ = Token{};
    tok_.pos = i_;
    if (i_ >= s_.size()) return true;
    char c = s_[i_];
    char n = i_ + 1 < s_.size() ? s_[i_ + 1] : '\0';
    auto oper = [&](Op op, std::size_t len) {
      tok_.kind = Tok::Oper;
      tok_.op = op;
      i_ += len;
      return true;
    };
    switch (c) {
      case '(': tok_.kind = Tok::LParen; ++i_; return true;
      case ')': tok_.kind = Tok::RParen; ++i_; return true;
      case '&':
        if (n == '&') { tok_.kind = Tok::And; i_ += 2; return true; }
        return lex_error("'&' must be '&&'");
      case '|':
        if (n == '|') { tok_.kind = Tok::Or; i_ += 2; return true; }
        return lex_error("'|' must be '||'");
      case '=': return oper(Op::Eq, n == '=' ? 2 : 1);  // "==" is accepted as "="
      case '!':
        if (n == '=') return oper(Op::Ne, 2);
        if (n == '~') return oper(Op::NotContains, 2);
        return lex_error("'!' must be '!=' or '!~'");
      case '>': return n == '=' ? oper(Op::Ge, 2) : oper(Op::Gt, 1);
      case '<': return n == '=' ? oper(Op::Le, 2) : oper(Op::Lt, 1);
      case '~': return oper(Op::Contains, 1);
      case '"': case '\'': return lex_string(c);
      case '@': {
        ++i_;
        if (!lex_name()) return false;
        tok_.kind = Tok::At;
        return true;
      }
      default: break;
    }
    if (digit(c) || (c == '-' && (digit(n) || n == '.')) || (c == '.' && digit(n))) return lex_number();
    if (name_start(c)) {
      if (!lex_name()) return false;
      tok_.kind = Tok::Name;
      return true;
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return lex_error("unexpected control character");
    return lex_error(fmt::format("unexpected character '{}'", static_cast<unsigned char>(c) < 0x80 ? std::string(1, c) : std::string("\\u…")));
  }

  bool lex_error(std::string what) {
    error_ = fail(i_, std::move(what));
    return false;
  }

  bool lex_name() {
    std::size_t start = i_;
    std::size_t segments = 0;
    for (;;) {
      if (i_ >= s_.size() || !name_start(s_[i_])) return lex_error("expected a name");
      while (i_ < s_.size() && name_char(s_[i_])) ++i_;
      if (++segments > limits_.max_segments)
        return lex_error(fmt::format("a path has at most {} segments", limits_.max_segments));
      if (i_ < s_.size() && s_[i_] == '.') {
        ++i_;
        continue;
      }
      break;
    }
    if (i_ - start > 256) return lex_error("a name is longer than 256 characters");
    tok_.text.assign(s_.substr(start, i_ - start));
    return true;
  }

  bool lex_number() {
    std::size_t start = i_;
    if (s_[i_] == '-') ++i_;
    while (i_ < s_.size() && digit(s_[i_])) ++i_;
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (i_ >= s_.size() || !digit(s_[i_])) return lex_error("a number needs digits after '.'");
      while (i_ < s_.size() && digit(s_[i_])) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (i_ >= s_.size() || !digit(s_[i_])) return lex_error("a number needs digits in its exponent");
      while (i_ < s_.size() && digit(s_[i_])) ++i_;
    }
    if (i_ < s_.size() && name_char(s_[i_])) return lex_error("a number runs into a name");
    if (i_ - start > 64) return lex_error("a number is longer than 64 characters");
    std::string text(s_.substr(start, i_ - start));
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || !std::isfinite(v)) return lex_error("number out of range");
    tok_.kind = Tok::Number;
    tok_.number = v == 0 ? 0.0 : v;  // no negative zero
    return true;
  }

  bool lex_string(char quote) {
    ++i_;
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) return lex_error("unterminated string");
      char c = s_[i_];
      if (c == quote) {
        ++i_;
        break;
      }
      if (c == '\\') {
        if (i_ + 1 >= s_.size()) return lex_error("unterminated string");
        char e = s_[i_ + 1];
        switch (e) {
          case '\\': out += '\\'; break;
          case '"': out += '"'; break;
          case '\'': out += '\''; break;
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          default: return lex_error("unknown escape in a string (use \\\\, \\\", \\', \\n, \\t or \\r)");
        }
        i_ += 2;
      } else if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
        return lex_error("control character in a string");
      } else {
        std::size_t n = utf8_len(s_, i_);
        if (n == 0) return lex_error("a string is not valid UTF-8");
        out.append(s_.substr(i_, n));
        i_ += n;
      }
      if (out.size() > limits_.max_string)
        return lex_error(fmt::format("a string is longer than {} bytes", limits_.max_string));
    }
    tok_.kind = Tok::String;
    tok_.text = std::move(out);
    return true;
  }

  Result<Node> parse_or(int depth) {
    auto first = parse_and(depth);
    if (!first) return first;
    if (tok_.kind != Tok::Or) return first;
    Node n;
    n.kind = Node::Kind::Or;
    n.children.push_back(std::move(*first));
    while (tok_.kind == Tok::Or) {
      if (!next()) return std::move(error_);
      auto c = parse_and(depth);
      if (!c) return c;
      n.children.push_back(std::move(*c));
    }
    return n;
  }

  Result<Node> parse_and(int depth) {
    auto first = parse_primary(depth);
    if (!first) return first;
    if (tok_.kind != Tok::And) return first;
    Node n;
    n.kind = Node::Kind::And;
    n.children.push_back(std::move(*first));
    while (tok_.kind == Tok::And) {
      if (!next()) return std::move(error_);
      auto c = parse_primary(depth);
      if (!c) return c;
      n.children.push_back(std::move(*c));
    }
    return n;
  }

  Result<Node> parse_primary(int depth) {
    if (tok_.kind == Tok::LParen) {
      if (depth + 1 > limits_.max_depth)
        return fail(tok_.pos, fmt::format("nests parentheses deeper than {}", limits_.max_depth));
      if (!next()) return std::move(error_);
      auto inner = parse_or(depth + 1);
      if (!inner) return inner;
      if (tok_.kind != Tok::RParen) return fail(tok_.pos, "expected ')' but found " + describe(tok_));
      if (!next()) return std::move(error_);
      return inner;
    }
    if (++terms_ > limits_.max_terms) return fail(tok_.pos, fmt::format("has more than {} comparisons", limits_.max_terms));
    Node n;
    n.kind = Node::Kind::Compare;
    auto lhs = operand();
    if (!lhs) return std::move(lhs).error();
    n.lhs = std::move(*lhs);
    if (tok_.kind != Tok::Oper) return fail(tok_.pos, "expected an operator (= != > >= < <= ~ !~) but found " + describe(tok_));
    n.op = tok_.op;
    if (!next()) return std::move(error_);
    auto rhs = operand();
    if (!rhs) return std::move(rhs).error();
    n.rhs = std::move(*rhs);
    return n;
  }

  Result<Operand> operand() {
    Operand o;
    switch (tok_.kind) {
      case Tok::String:
        o.kind = Operand::Kind::String;
        o.text = std::move(tok_.text);
        break;
      case Tok::Number:
        o.kind = Operand::Kind::Number;
        o.number = tok_.number;
        break;
      case Tok::Name:
        if (tok_.text == "true" || tok_.text == "false") {
          o.kind = Operand::Kind::Bool;
          o.boolean = tok_.text == "true";
        } else if (tok_.text == "null") {
          o.kind = Operand::Kind::Null;
        } else {
          o.kind = Operand::Kind::Path;
          std::string_view t = tok_.text;
          while (true) {
            auto dot = t.find('.');
            o.path.emplace_back(t.substr(0, dot));
            if (dot == std::string_view::npos) break;
            t.remove_prefix(dot + 1);
          }
        }
        break;
      case Tok::At:
        if (tok_.text == "request.auth.id") {
          o.kind = Operand::Kind::AuthId;
        } else if (tok_.text == "request.auth.roles") {
          o.kind = Operand::Kind::AuthRoles;
        } else if (tok_.text.starts_with("request.body.") && tok_.text.find('.', 13) == std::string::npos) {
          o.kind = Operand::Kind::Body;
          o.path.push_back(tok_.text.substr(13));
        } else {
          return fail(tok_.pos, "unknown '@" + tok_.text.substr(0, 40) +
                                    "': use @request.auth.id, @request.auth.roles or @request.body.FIELD");
        }
        break;
      default:
        return fail(tok_.pos, "expected a field or a value but found " + describe(tok_));
    }
    if (!next()) return std::move(error_);
    return o;
  }

  std::string_view s_;
  std::string_view field_;
  const Limits& limits_;
  std::size_t i_ = 0;
  Token tok_;
  Error error_;
  int terms_ = 0;
};

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default: out += c;
    }
  }
  out += '"';
  return out;
}

void print(const Node& n, std::string& out, bool nested) {
  if (n.kind == Node::Kind::Compare) {
    out += to_string(n.lhs);
    out += ' ';
    out += op_text(n.op);
    out += ' ';
    out += to_string(n.rhs);
    return;
  }
  if (nested) out += '(';
  const char* sep = n.kind == Node::Kind::And ? " && " : " || ";
  for (std::size_t i = 0; i < n.children.size(); ++i) {
    if (i) out += sep;
    print(n.children[i], out, n.children[i].kind != Node::Kind::Compare);
  }
  if (nested) out += ')';
}

}  // namespace

Result<Node> parse(std::string_view text, std::string_view field, const Limits& limits) {
  return Parser(text, field, limits).run();
}

std::string to_string(const Operand& o) {
  switch (o.kind) {
    case Operand::Kind::Path: {
      std::string s;
      for (std::size_t i = 0; i < o.path.size(); ++i) {
        if (i) s += '.';
        s += o.path[i];
      }
      return s;
    }
    case Operand::Kind::String: return quote(o.text);
    case Operand::Kind::Number: return fmt::format("{}", o.number);
    case Operand::Kind::Bool: return o.boolean ? "true" : "false";
    case Operand::Kind::Null: return "null";
    case Operand::Kind::AuthId: return "@request.auth.id";
    case Operand::Kind::AuthRoles: return "@request.auth.roles";
    case Operand::Kind::Body: return "@request.body." + (o.path.empty() ? std::string() : o.path[0]);
  }
  return "null";
}

std::string to_string(const Node& n) {
  std::string out;
  print(n, out, false);
  return out;
}

}  // namespace harmar::data::expr
