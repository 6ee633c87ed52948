#pragma once
// The expression language that filters (`?filter=`) and access rules share (shared/API.md "Data
// services"):
//
//   expr       := and ( "||" and )*
//   and        := primary ( "&&" primary )*
//   primary    := "(" expr ")" | operand OP operand
//   OP         := "=" | "!=" | ">" | ">=" | "<" | "<=" | "~" (contains) | "!~" (does not contain)
//   operand    := path | "string" | 'string' | number | true | false | null
//               | @request.auth.id | @request.auth.roles | @request.body.NAME
//   path       := NAME ( "." NAME )*          NAME := [A-Za-z_][A-Za-z0-9_]*
//
// Our own lexer and recursive-descent parser, with hard bounds on the text's length, the nesting
// depth and the number of comparisons, so no input can make it use unbounded time or stack.
// What an expression means (types, nulls, how it becomes SQL) is in eval.hpp and sqlgen.hpp.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace harmar::data::expr {

enum class Op : uint8_t { Eq, Ne, Gt, Ge, Lt, Le, Contains, NotContains };
std::string_view op_text(Op op);
// The operator with its operands swapped (a < b ⇔ b > a); Contains has no mirror.
Op mirror(Op op);

struct Operand {
  enum class Kind : uint8_t { Path, String, Number, Bool, Null, AuthId, AuthRoles, Body };
  Kind kind = Kind::Null;
  std::vector<std::string> path;  // Path: its segments; Body: the one field name
  std::string text;               // String: the decoded literal
  double number = 0;
  bool boolean = false;

  bool operator==(const Operand&) const = default;
};

struct Node {
  enum class Kind : uint8_t { Compare, And, Or };
  Kind kind = Kind::Compare;
  Op op = Op::Eq;
  Operand lhs, rhs;            // Compare
  std::vector<Node> children;  // And / Or: two or more

  bool operator==(const Node&) const = default;
};

struct Limits {
  std::size_t max_bytes = 4096;   // of the whole text
  int max_depth = 16;             // nested parentheses
  int max_terms = 64;             // comparisons
  std::size_t max_string = 1024;  // bytes of one string literal (after unescaping)
  std::size_t max_segments = 8;   // of one path
};

// Parses `text`; a 422 `invalid_expression` naming the position of what is wrong. `field` is the
// name the error is reported under ("filter", "rules.list").
Result<Node> parse(std::string_view text, std::string_view field = "filter", const Limits& limits = {});

// The canonical text of `n` (parse(to_string(n)) == n).
std::string to_string(const Node& n);
std::string to_string(const Operand& o);

// Visits every operand (for checks such as "every path names a field").
template <class F>
void for_each_operand(const Node& n, F&& f) {
  if (n.kind == Node::Kind::Compare) {
    f(n.lhs);
    f(n.rhs);
    return;
  }
  for (const auto& c : n.children) for_each_operand(c, f);
}

}  // namespace harmar::data::expr
