#include <gtest/gtest.h>

#include "core/result.hpp"

namespace harmar {
namespace {

Result<int> half(int n) {
  if (n % 2) return Error::validation("odd");
  return n / 2;
}

Result<int> quarter(int n) {
  HARMAR_TRY(int h, half(n));
  HARMAR_TRY(int q, half(h));
  return q;
}

TEST(Result, try_propagates_the_first_error) {
  EXPECT_EQ(quarter(8).value(), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "validation_failed");
  EXPECT_EQ(r.error().status, 422);
}

TEST(Result, problem_json_has_the_rfc9457_members_and_field_errors) {
  auto e = Error::validation("bad", {{"email", "is required"}});
  auto body = problem_json(e);
  EXPECT_NE(body.find("\"status\":422"), std::string::npos);
  EXPECT_NE(body.find("\"code\":\"validation_failed\""), std::string::npos);
  EXPECT_NE(body.find("\"title\":\"Unprocessable Content\""), std::string::npos);
  EXPECT_NE(body.find("\"field\":\"email\""), std::string::npos);
  EXPECT_EQ(Error::rate_limited(0).retry_after_s, 1);
}

}  // namespace
}  // namespace harmar
