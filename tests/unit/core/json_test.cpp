#include <gtest/gtest.h>

#include "core/json.hpp"

namespace harmar::json {
namespace {

TEST(Json, malformed_and_too_deep_bodies_are_invalid_json) {
  EXPECT_EQ(parse("{").error().code, "invalid_json");
  std::string deep(100, '[');
  deep += std::string(100, ']');
  EXPECT_EQ(parse(deep).error().code, "invalid_json");
  EXPECT_EQ(parse_object("[1]").error().code, "validation_failed");
}

TEST(Json, reader_collects_every_field_error) {
  auto obj = parse_object(R"({"email": 5, "priority": 11, "name": "", "extra": true})").value();
  Reader r(obj);
  r.required_string("email");
  r.required_string("password");
  r.optional_int("priority", 0, 10);
  r.optional_string("name", 1, 10);
  r.reject_unknown({"email", "password", "priority", "name"});
  ASSERT_FALSE(r.ok());
  auto e = r.error();
  EXPECT_EQ(e.status, 422);
  ASSERT_EQ(e.errors.size(), 5u);
  EXPECT_EQ(e.errors[0].field, "email");
  EXPECT_EQ(e.errors[1].field, "password");
  EXPECT_EQ(e.errors[1].message, "is required");
}

TEST(Json, reader_returns_values_in_range) {
  auto obj = parse_object(R"({"n": 3, "labels": ["a","b"], "cfg": {"x": 1}})").value();
  Reader r(obj);
  EXPECT_EQ(r.optional_int("n", 0, 10), 3);
  EXPECT_EQ(r.optional_strings("labels", 10, 5)->size(), 2u);
  EXPECT_TRUE(r.optional_object("cfg"));
  EXPECT_FALSE(r.optional_object("absent"));
  EXPECT_TRUE(r.ok());
}

}  // namespace
}  // namespace harmar::json
