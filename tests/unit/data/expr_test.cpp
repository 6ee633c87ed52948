// The expression language: what parses, what does not, and the bounds no input can pass.
#include <gtest/gtest.h>

#include "data/expr.hpp"

namespace harmar::data::expr {
namespace {

Node must_parse(std::string_view text) {
  auto n = parse(text);
  EXPECT_TRUE(n.ok()) << text << ": " << (n.ok() ? "" : n.error().detail);
  return n.ok() ? *n : Node{};
}

std::string parse_error(std::string_view text, const Limits& limits = {}) {
  auto n = parse(text, "filter", limits);
  EXPECT_FALSE(n.ok()) << text << " parsed as " << (n.ok() ? to_string(*n) : "");
  if (n.ok()) return {};
  EXPECT_EQ(n.error().status, 422);
  EXPECT_EQ(n.error().code, "invalid_expression");
  return n.error().detail;
}

TEST(DataExpr, comparison_of_a_field_with_each_kind_of_literal) {
  Node n = must_parse(R"(status = "open")");
  EXPECT_EQ(n.kind, Node::Kind::Compare);
  EXPECT_EQ(n.lhs.kind, Operand::Kind::Path);
  EXPECT_EQ(n.lhs.path, std::vector<std::string>{"status"});
  EXPECT_EQ(n.rhs.kind, Operand::Kind::String);
  EXPECT_EQ(n.rhs.text, "open");
  EXPECT_EQ(must_parse("n >= -1.5e3").rhs.number, -1500.0);
  EXPECT_TRUE(must_parse("done = true").rhs.boolean);
  EXPECT_EQ(must_parse("done != false").op, Op::Ne);
  EXPECT_EQ(must_parse("owner = null").rhs.kind, Operand::Kind::Null);
  EXPECT_EQ(must_parse("title ~ 'a'").op, Op::Contains);
  EXPECT_EQ(must_parse("title !~ 'a'").op, Op::NotContains);
  EXPECT_EQ(must_parse("a < 1").op, Op::Lt);
  EXPECT_EQ(must_parse("a <= 1").op, Op::Le);
  EXPECT_EQ(must_parse("a > 1").op, Op::Gt);
  EXPECT_EQ(must_parse("a == 1").op, Op::Eq);
}

TEST(DataExpr, and_binds_tighter_than_or_and_parentheses_group) {
  Node n = must_parse("a = 1 || b = 2 && c = 3");
  ASSERT_EQ(n.kind, Node::Kind::Or);
  ASSERT_EQ(n.children.size(), 2u);
  EXPECT_EQ(n.children[1].kind, Node::Kind::And);
  Node g = must_parse("(a = 1 || b = 2) && c = 3");
  ASSERT_EQ(g.kind, Node::Kind::And);
  EXPECT_EQ(g.children[0].kind, Node::Kind::Or);
}

TEST(DataExpr, request_operands) {
  Node n = must_parse("owner = @request.auth.id && @request.auth.roles ~ \"editor\" && title = @request.body.title");
  ASSERT_EQ(n.children.size(), 3u);
  EXPECT_EQ(n.children[0].rhs.kind, Operand::Kind::AuthId);
  EXPECT_EQ(n.children[1].lhs.kind, Operand::Kind::AuthRoles);
  EXPECT_EQ(n.children[2].rhs.kind, Operand::Kind::Body);
  EXPECT_EQ(n.children[2].rhs.path, std::vector<std::string>{"title"});
  EXPECT_NE(parse_error("a = @request.auth.email").find("unknown '@request.auth.email'"), std::string::npos);
  parse_error("a = @request.body.x.y");
  parse_error("a = @");
}

TEST(DataExpr, strings_unescape_and_must_be_valid_utf8) {
  EXPECT_EQ(must_parse(R"(a = "q\"uo\\te\n")").rhs.text, "q\"uo\\te\n");
  EXPECT_EQ(must_parse(R"(a = 'it\'s')").rhs.text, "it's");
  EXPECT_EQ(must_parse("a = \"h\xC3\xA9llo\"").rhs.text, "h\xC3\xA9llo");
  parse_error("a = \"\xC3\"");          // truncated sequence
  parse_error("a = \"\xC0\xAF\"");      // overlong
  parse_error("a = \"\xED\xA0\x80\"");  // surrogate
  parse_error("a = \"x\\q\"");          // unknown escape
  parse_error("a = \"unterminated");
  parse_error(std::string("a = \"nul\0\"", 10));
}

TEST(DataExpr, malformed_expressions_name_the_position) {
  EXPECT_NE(parse_error("a =").find("position 4"), std::string::npos);
  EXPECT_NE(parse_error("= 1").find("position 1"), std::string::npos);
  parse_error("");
  parse_error("   ");
  parse_error("a = 1 &&");
  parse_error("a = 1 & b = 2");
  parse_error("a = 1 | b = 2");
  parse_error("(a = 1");
  parse_error("a = 1)");
  parse_error("a = 1 b = 2");
  parse_error("a 1");
  parse_error("a = 1.");
  parse_error("a = 1e");
  parse_error("a = 12abc");
  parse_error("a = 1e999");
  parse_error("a.= 1");
  parse_error("a = ;");
  parse_error("a = 1; DROP TABLE users");
  parse_error("a = `x`");
  parse_error("!a = 1");
}

TEST(DataExpr, bounds_refuse_long_deep_and_wide_inputs) {
  Limits l;
  std::string long_text(l.max_bytes + 1, ' ');
  long_text.append("a=1");
  EXPECT_NE(parse_error(long_text).find("longer than"), std::string::npos);
  std::string deep;
  for (int i = 0; i <= l.max_depth; ++i) deep += '(';
  deep += "a = 1";
  for (int i = 0; i <= l.max_depth; ++i) deep += ')';
  EXPECT_NE(parse_error(deep).find("deeper"), std::string::npos);
  std::string ok_deep;
  for (int i = 0; i < l.max_depth; ++i) ok_deep += '(';
  ok_deep += "a = 1";
  for (int i = 0; i < l.max_depth; ++i) ok_deep += ')';
  must_parse(ok_deep);
  std::string wide = "a = 1";
  for (int i = 1; i <= l.max_terms; ++i) wide += " || a = 1";
  EXPECT_NE(parse_error(wide).find("comparisons"), std::string::npos);
  EXPECT_NE(parse_error("a = \"" + std::string(l.max_string + 1, 'x') + "\"").find("longer than"), std::string::npos);
  parse_error("a.b.c.d.e.f.g.h.i = 1");
  must_parse("a.b.c.d.e.f.g.h = 1");
}

TEST(DataExpr, printing_and_parsing_again_gives_the_same_tree) {
  for (const char* text : {"a = 1", "a = 1 && b != \"x\\\"y\"", "(a = 1 || b = 2) && c ~ 'z'",
                           "a = 1 || (b = 2 && (c = 3 || d = null))", "@request.auth.roles ~ \"admin\"",
                           "x.y.z >= -0.25 && t <= 1e+300", "owner = @request.auth.id || @request.body.f = true"}) {
    Node n = must_parse(text);
    std::string printed = to_string(n);
    Node again = must_parse(printed);
    EXPECT_EQ(n, again) << text << " → " << printed;
  }
}

}  // namespace
}  // namespace harmar::data::expr
