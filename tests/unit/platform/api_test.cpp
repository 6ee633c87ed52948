#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "platform/api.hpp"

namespace harmar::platform {
namespace {

net::Request get(std::string target) {
  net::Request r;
  r.set_method("GET");
  r.set_target(target);
  return r;
}

TEST(Api, page_defaults_and_bounds) {
  auto p = page_params(get("/x"));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->limit, 50);
  EXPECT_FALSE(p->after);
  EXPECT_EQ(page_params(get("/x?limit=200"))->limit, 200);
  for (auto bad : {"/x?limit=0", "/x?limit=201", "/x?limit=abc", "/x?limit=5x"}) {
    auto r = page_params(get(bad));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, "validation_failed");
    EXPECT_EQ(r.error().errors.at(0).field, "limit");
  }
}

TEST(Api, cursors_round_trip_and_forged_ones_are_refused) {
  std::string pos = "0190f5f6-6a1b-7c3d-8e4f-5a6b7c8d9e0f|2026";
  auto c = encode_cursor(pos);
  EXPECT_EQ(c.find_first_of("+/="), std::string::npos);
  auto p = page_params(get("/x?cursor=" + c));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->after, pos);
  EXPECT_FALSE(page_params(get("/x?cursor=!!!")).ok());
  EXPECT_FALSE(page_params(get("/x?cursor=" + std::string(2000, 'A'))).ok());
}

TEST(Api, list_response_has_items_and_a_nullable_cursor) {
  auto r = list_response(boost::json::array{1, 2}, std::nullopt);
  auto o = boost::json::parse(r.body).as_object();
  EXPECT_EQ(o["items"].as_array().size(), 2u);
  EXPECT_TRUE(o["next_cursor"].is_null());
  r = list_response({}, std::string("abc"));
  o = boost::json::parse(r.body).as_object();
  EXPECT_EQ(decode_cursor(o["next_cursor"].as_string()), "abc");
}

TEST(Api, empty_body_is_an_empty_object_and_bad_bodies_are_errors) {
  net::Request r = get("/x");
  EXPECT_TRUE(json_body(r)->empty());
  r.body = "  ";
  EXPECT_TRUE(json_body(r).ok());
  r.body = "[1]";
  EXPECT_EQ(json_body(r).error().status, 422);
  r.body = "{";
  EXPECT_EQ(json_body(r).error().code, "invalid_json");
}

}  // namespace
}  // namespace harmar::platform
