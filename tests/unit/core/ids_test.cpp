#include <gtest/gtest.h>

#include <set>

#include "core/ids.hpp"

namespace harmar {
namespace {

TEST(Ids, uuid_v7_has_version_and_variant_bits) {
  auto id = new_id();
  ASSERT_TRUE(is_uuid(id)) << id;
  EXPECT_EQ(id[14], '7');
  EXPECT_TRUE(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b') << id;
}

TEST(Ids, ids_from_one_thread_strictly_increase) {
  std::string prev = new_id();
  for (int i = 0; i < 20000; ++i) {
    auto next = new_id();
    ASSERT_LT(prev, next);
    prev = next;
  }
}

TEST(Ids, tokens_are_random_and_url_safe) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto t = random_token(32);
    EXPECT_EQ(t.size(), 43u);
    EXPECT_EQ(t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), std::string::npos);
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(random_hex(16).size(), 32u);
  EXPECT_NE(next_request_id(), next_request_id());
}

TEST(Ids, is_uuid_rejects_malformed) {
  EXPECT_FALSE(is_uuid("not-a-uuid"));
  EXPECT_FALSE(is_uuid("0190f5f6-6a1b-7c3d-8e4f-5a6b7c8d9e0"));
  EXPECT_FALSE(is_uuid("0190f5f6x6a1b-7c3d-8e4f-5a6b7c8d9e0f"));
  EXPECT_TRUE(is_uuid("0190f5f6-6a1b-7c3d-8e4f-5a6b7c8d9e0f"));
}

}  // namespace
}  // namespace harmar
