// The password policy and argon2id hashing, including the rehash when the cost is raised.
#include <gtest/gtest.h>
#include <sodium.h>

#include "auth/password.hpp"
#include "support/test_support.hpp"

namespace harmar::auth {
namespace {

TEST(PasswordPolicy, length_must_be_8_to_256_characters) {
  EXPECT_FALSE(check_password_policy("short1!").ok());
  EXPECT_TRUE(check_password_policy("eight ch").ok());
  EXPECT_TRUE(check_password_policy(std::string(256, 'x') .replace(0, 5, "uniq-")).ok());
  auto too_long = check_password_policy(std::string(257, 'y'));
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().status, 422);
  EXPECT_EQ(too_long.error().errors.at(0).field, "password");
  // Characters, not bytes: seven 3-byte characters are still too short; eight are enough.
  EXPECT_FALSE(check_password_policy("\u6f22\u6f22\u6f22\u6f22\u6f22\u6f22\u6f22").ok());
  EXPECT_TRUE(check_password_policy("\u6f22\u5b57\u6f22\u5b57\u6f22\u5b57\u6f22\u5b57").ok());
}

TEST(PasswordPolicy, the_most_common_passwords_are_refused_whatever_their_case) {
  for (const char* p : {"password", "PASSWORD", "Password", "12345678", "baseball", "qwertyuiop", "iloveyou", "trustno1"}) {
    auto r = check_password_policy(p);
    ASSERT_FALSE(r.ok()) << p;
    EXPECT_EQ(r.error().errors.at(0).message, "is too common") << p;
  }
  EXPECT_TRUE(is_common_password("freepass"));  // the last line of the list
  EXPECT_TRUE(is_common_password("123456"));     // the first
  EXPECT_FALSE(is_common_password("correct horse battery staple"));
  EXPECT_TRUE(check_password_policy("correct horse battery staple").ok());
}

TEST(PasswordHash, argon2id_with_parameters_in_the_hash) {
  HashParams p;
  std::string h = hash_password_blocking("correct horse", p);
  EXPECT_EQ(h.rfind("$argon2id$", 0), 0u) << h;
  EXPECT_NE(h.find("m=19456,t=2,p=1"), std::string::npos) << h;
  EXPECT_TRUE(verify_password_blocking(h, "correct horse"));
  EXPECT_FALSE(verify_password_blocking(h, "correct horsf"));
  EXPECT_FALSE(verify_password_blocking("", "correct horse"));
  EXPECT_FALSE(verify_password_blocking("$argon2id$garbage", "correct horse"));
  EXPECT_FALSE(hash_needs_rehash(h, p));
}

TEST(PasswordHash, a_hash_below_the_configured_cost_is_rehashed_on_verify) {
  HashParams weak{1, 8 << 20};
  std::string old_hash = hash_password_blocking("correct horse", weak);
  HashParams strong;  // 19 MiB, t=2
  EXPECT_TRUE(hash_needs_rehash(old_hash, strong));
  PasswordHasher hasher(strong, 2);
  auto v = testing::run(hasher.verify(old_hash, "correct horse"));
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok);
  ASSERT_FALSE(v->rehashed.empty());
  EXPECT_NE(v->rehashed.find("m=19456,t=2"), std::string::npos);
  EXPECT_TRUE(verify_password_blocking(v->rehashed, "correct horse"));
  // A wrong password is not rehashed, and a strong hash is left alone.
  auto wrong = testing::run(hasher.verify(old_hash, "wrong horse"));
  ASSERT_TRUE(wrong.ok());
  EXPECT_FALSE(wrong->ok);
  EXPECT_TRUE(wrong->rehashed.empty());
  auto same = testing::run(hasher.verify(v->rehashed, "correct horse"));
  ASSERT_TRUE(same.ok());
  EXPECT_TRUE(same->ok);
  EXPECT_TRUE(same->rehashed.empty());
}

TEST(PasswordHash, an_unknown_user_costs_a_full_verify_and_always_fails) {
  PasswordHasher hasher(HashParams{}, 1);
  auto t0 = std::chrono::steady_clock::now();
  auto v = testing::run(hasher.verify("", "whatever password"));
  auto dummy_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  std::string real = hash_password_blocking("whatever password", HashParams{});
  t0 = std::chrono::steady_clock::now();
  auto r = testing::run(hasher.verify(real, "not the password"));
  auto real_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  // Both run one argon2id verification at the same cost: within a factor, not orders apart.
  EXPECT_GT(dummy_ms, real_ms / 3) << dummy_ms << " vs " << real_ms;
  EXPECT_LT(dummy_ms, real_ms * 3) << dummy_ms << " vs " << real_ms;
}

}  // namespace
}  // namespace harmar::auth
