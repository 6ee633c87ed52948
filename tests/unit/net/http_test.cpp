#include <gtest/gtest.h>

#include "net/http.hpp"

namespace harmar::net {
namespace {

TEST(Http, query_params_are_decoded) {
  Request r;
  r.set_method("GET");
  r.set_target("/x?a=1&b=hello+world&c=%2Fslash&empty&bad=%zz");
  EXPECT_EQ(r.path(), "/x");
  EXPECT_EQ(r.query_param("a"), "1");
  EXPECT_EQ(r.query_param("b"), "hello world");
  EXPECT_EQ(r.query_param("c"), "/slash");
  EXPECT_EQ(r.query_param("empty"), "");
  EXPECT_FALSE(r.query_param("bad"));
  EXPECT_FALSE(r.query_param("missing"));
}

TEST(Http, headers_are_case_insensitive_and_survive_growth) {
  Request r;
  r.set_method("POST");
  r.set_target("/");
  for (int i = 0; i < 100; ++i) r.add_header("X-N" + std::to_string(i), std::string(100, 'a' + i % 26));
  r.add_header("Content-Type", "application/json");
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.header("x-n0"), std::string(100, 'a'));
  EXPECT_EQ(r.method, Method::Post);
  EXPECT_EQ(r.header("missing"), "");
}

TEST(Http, percent_decode_rejects_nul_and_bad_escapes) {
  EXPECT_EQ(percent_decode("a%41"), "aA");
  EXPECT_FALSE(percent_decode("%00"));
  EXPECT_FALSE(percent_decode("%4"));
  EXPECT_FALSE(percent_decode("%"));
}

TEST(Http, an_error_becomes_problem_json_with_retry_after) {
  Response r = Error::rate_limited(3);
  EXPECT_EQ(r.status, 429);
  EXPECT_STREQ(r.content_type, "application/problem+json");
  EXPECT_EQ(r.find_header("retry-after"), "3");
  EXPECT_NE(r.body.find("\"code\":\"rate_limited\""), std::string::npos);
}

}  // namespace
}  // namespace harmar::net
