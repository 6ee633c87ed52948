// Families of configuration keys ("auth.oauth.*"): one key per name the user chooses.
#include <gtest/gtest.h>

#include <fstream>

#include "core/config.hpp"
#include "support/test_support.hpp"

namespace harmar::config {
namespace {

Schema family_schema() {
  Schema s;
  s.add({"auth.oauth.*", Type::StringMap, "", "one login provider per name"});
  s.add({"auth.oauth_state_ttl", Type::Duration, "10m", "exact key whose env name shares the family's prefix"});
  return s;
}

TEST(ConfigFamily, a_yaml_file_sets_one_map_per_name) {
  std::string file = testing::temp_dir() + "/family.yaml";
  std::ofstream(file) << "auth:\n  oauth:\n    github:\n      type: github\n      client_id: abc\n"
                         "    corp-idp:\n      type: oidc\n      scopes: openid email\n";
  auto c = Config::load(family_schema(), file, {}, nullptr);
  ASSERT_TRUE(c.ok()) << c.error().detail;
  EXPECT_EQ(c->names("auth.oauth"), (std::vector<std::string>{"corp-idp", "github"}));
  auto gh = c->get_map("auth.oauth.github");
  EXPECT_EQ(gh["type"], "github");
  EXPECT_EQ(gh["client_id"], "abc");
  EXPECT_EQ(c->get_map("auth.oauth.corp-idp")["scopes"], "openid email");
  EXPECT_EQ(c->source("auth.oauth.github"), "file");
  EXPECT_TRUE(c->get_map("auth.oauth.absent").empty());
}

TEST(ConfigFamily, environment_and_flags_set_members_and_exact_keys_win) {
  std::string env1 = "HARMAR_AUTH_OAUTH_MY_IDP=type=oidc,client_id=x";
  std::string env2 = "HARMAR_AUTH_OAUTH_STATE_TTL=2m";
  char* envp[] = {env1.data(), env2.data(), nullptr};
  auto c = Config::load(family_schema(), "", {{"auth.oauth.gh", "type=github"}}, envp);
  ASSERT_TRUE(c.ok()) << c.error().detail;
  EXPECT_EQ(c->names("auth.oauth"), (std::vector<std::string>{"gh", "my_idp"}));
  EXPECT_EQ(c->get_map("auth.oauth.my_idp")["client_id"], "x");
  EXPECT_EQ(c->get_duration_ms("auth.oauth_state_ttl"), 120'000);
  EXPECT_EQ(c->source("auth.oauth.gh"), "flag");
}

TEST(ConfigFamily, a_bad_member_name_or_nested_key_is_refused) {
  Config c(family_schema());
  EXPECT_FALSE(c.set("auth.oauth.Bad.Name", "type=x", "flag").ok());
  EXPECT_FALSE(c.set("auth.oauth.UPPER", "type=x", "flag").ok());
  EXPECT_FALSE(c.set("auth.oauth.", "type=x", "flag").ok());
  EXPECT_TRUE(c.set("auth.oauth.ok_1", "type=x", "flag").ok());
  std::string file = testing::temp_dir() + "/family-bad.yaml";
  std::ofstream(file) << "auth:\n  oauth:\n    github:\n      nested:\n        no: 1\n";
  EXPECT_FALSE(Config::check_file(family_schema(), file).ok());
}

}  // namespace
}  // namespace harmar::config
