#include <gtest/gtest.h>

#include "net/router.hpp"

namespace harmar::net {
namespace {

Handler noop() {
  return [](Request&) -> asio::awaitable<Response> { co_return Response(200, "{}"); };
}

TEST(Router, literal_segments_win_over_parameters) {
  Router r;
  r.get("/v1/tasks/{id}", noop());
  r.post("/v1/tasks/pending", noop());
  r.get("/v1/tasks", noop());
  Request req;
  auto m = r.match(Method::Get, "/v1/tasks/abc%20d", &req);
  ASSERT_TRUE(m.route);
  EXPECT_EQ(m.route->pattern, "/v1/tasks/{id}");
  EXPECT_EQ(req.param("id"), "abc d");

  Request req2;
  m = r.match(Method::Post, "/v1/tasks/pending", &req2);
  ASSERT_TRUE(m.route);
  EXPECT_EQ(m.route->pattern, "/v1/tasks/pending");

  // GET on the literal path falls back to the parameter route.
  m = r.match(Method::Get, "/v1/tasks/pending", nullptr);
  ASSERT_TRUE(m.route);
  EXPECT_EQ(m.route->pattern, "/v1/tasks/{id}");
}

TEST(Router, unknown_paths_are_404_and_wrong_methods_405_with_allow) {
  Router r;
  r.get("/v1/devices/{id}", noop());
  r.del("/v1/devices/{id}", noop());
  auto m = r.match(Method::Get, "/v1/nothing", nullptr);
  EXPECT_FALSE(m.route);
  EXPECT_EQ(m.allowed, 0);
  m = r.match(Method::Post, "/v1/devices/x", nullptr);
  EXPECT_FALSE(m.route);
  EXPECT_NE(m.allowed, 0);
  EXPECT_EQ(allow_header(m.allowed), "GET, HEAD, DELETE, OPTIONS");
  EXPECT_FALSE(r.match(Method::Get, "/v1/devices/", nullptr).route);  // empty parameter
  EXPECT_FALSE(r.match(Method::Get, "/v1/devices/x/y", nullptr).route);
}

TEST(Router, head_falls_back_to_get_and_rest_parameters_take_the_tail) {
  Router r;
  r.get("/files/{path...}", noop());
  Request req;
  auto m = r.match(Method::Head, "/files/a/b/c.txt", &req);
  ASSERT_TRUE(m.route);
  EXPECT_EQ(req.param("path"), "a/b/c.txt");
}

TEST(Router, duplicate_routes_and_bad_patterns_are_refused) {
  Router r;
  r.get("/a/{id}", noop());
  EXPECT_THROW(r.get("/a/{id}", noop()), std::invalid_argument);
  EXPECT_THROW(r.post("/a/{other}", noop()), std::invalid_argument);
  EXPECT_THROW(r.get("/b/{rest...}/c", noop()), std::invalid_argument);
  EXPECT_THROW(r.get("nope", noop()), std::invalid_argument);
}

TEST(Router, very_deep_paths_match_nothing) {
  Router r;
  r.get("/{a...}", noop());
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "/x";
  EXPECT_FALSE(r.match(Method::Get, deep, nullptr).route);
  EXPECT_TRUE(r.match(Method::Get, "/x/y", nullptr).route);
}

}  // namespace
}  // namespace harmar::net
